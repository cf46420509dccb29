//! The Axon test kit: what every test of the workspace uses to drive a
//! real homeserver, shared by the end-to-end tests, the SDK's tests, each
//! module crate's tests and the `cargo xtask new-module` template.
//!
//! - [`TestServer`]: a homeserver on an ephemeral loopback port with a
//!   temporary data directory, and a client that talks to it as a Matrix
//!   client does (register, create rooms, send, the raw request).
//! - [`log`]: the call log test modules write and tests read.
//! - [`rules`]: `test.Rules`, a module implementing every callback, each
//!   answering what its config says and logging its arguments.
//! - [`operator`]: `test.Operator`, which performs operations through its
//!   `ModuleApi` when a test asks, to drive the module entry point.
//! - [`scripted`]: `test.Scripted`, `test.Hooked` and `test.Bare`, for the
//!   loader and the dispatchers without a server.
//! - [`smtp_sink`]: a loopback SMTP server that keeps what it receives.
//! - [`tls`]: a test certificate authority, for servers that federate.
//! - [`federation`]: servers named `127.0.0.1:PORT` that federate over TLS.
//! - [`synapse`]: Synapse from PyPI as the federation peer.
//!
//! A test binary that uses a module crate must name it (`use my_module as
//! _;`), or the linker drops the module's registration.

pub mod federation;
pub mod log;
pub mod operator;
pub mod rules;
pub mod scripted;
mod server;
pub mod smtp_sink;
pub mod synapse;
pub mod tls;

pub use log::{calls, only, record, wait_for_call};
pub use reqwest::{Method, StatusCode};
pub use scripted::{load, load_errors, modules_load_error};
pub use serde_json::{json, Value};
pub use server::*;

/// The server name of every test server.
pub const SERVER_NAME: &str = "test.local";
