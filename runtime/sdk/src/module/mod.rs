//! Modules: their compiled-in descriptors, loading them from the `modules:`
//! config, the `ModuleApi` they receive, and the web resources they serve.

mod api;
mod api_server;
mod descriptor;
mod error;
mod host;
mod loader;
mod outbound;
pub mod schema;
mod tasks;
mod web;

pub use api::{LoginType, ModuleApi, ServerInfo};
pub use api_server::{AuthenticatedUser, NewEventContent, Threepid, UserInfo};
pub use descriptor::{compiled_modules, CompiledModules, ModuleDescriptor};
pub use error::{LoadError, LoadErrors};
pub use host::{DbJob, Host, HostFuture};
pub use loader::{
    parse_entries, LoadContext, LoadedModule, LoadedModules, ModuleConfig, ModuleEntry, Registrar,
    DEFAULT_CALLBACK_TIMEOUT,
};
pub use outbound::HttpClient;
pub use schema::modules_schema;
pub use tasks::Cache;
pub use web::{IntoWebResource, WebResource, WebResources};
