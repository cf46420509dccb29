//! The Axon homeserver: the Matrix client-server API on axum, over SQLite
//! storage, with the modules of the `modules:` config loaded through the
//! module SDK ([`axon`]).
//!
//! Modules reach this crate only through [`axon::module::Host`], which it
//! implements in `host.rs`; they never name its types.

pub mod api;
pub mod cli;
pub mod config;
pub mod events;
mod host;
mod mail;
pub mod metrics;
pub mod storage;

pub use api::RunningServer;

/// The `main` of a homeserver binary with these module crates.
///
/// A crate that nothing refers to is left out by the linker, and its
/// modules with it, silently. This macro names each crate, so every module
/// listed here is in the binary:
///
/// ```ignore
/// axon_server::homeserver_main!(axon_demo, my_module);
/// ```
#[macro_export]
macro_rules! homeserver_main {
    ($($module_crate:ident),* $(,)?) => {
        $(
            #[allow(unused_imports)]
            use $module_crate as _;
        )*
        fn main() -> ::std::process::ExitCode {
            $crate::cli::main()
        }
    };
}
