//! The Axon homeserver, built on the module SDK ([`axon`]):
//!
//! - [`api`]: HTTP handlers (client-server, media, admin, status page):
//!   parse, call a service, answer;
//! - [`service`]: each Matrix operation once, whoever asks for it, with its
//!   rate limits, module callbacks, auth rules, storage and notifications;
//! - [`storage`]: SQLite behind one interface; [`events`]: building and
//!   authorising events; [`config`], [`cli`], [`metrics`].
//!
//! Modules reach this crate only through [`axon::module::Host`], which
//! `host.rs` implements over the services; they never name its types.

pub mod api;
pub mod cli;
pub mod config;
pub mod events;
pub mod federation;
mod homeserver;
mod host;
pub mod http;
mod mail;
pub mod metrics;
mod outbound;
pub mod service;
pub mod storage;

pub use homeserver::{Homeserver, RunningServer, StartError};

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

#[cfg(test)]
mod tidy {
    /// Callbacks are dispatched in the service layer only: an operation with
    /// a second entry point must not grow a second copy of its checks.
    #[test]
    fn no_callback_is_dispatched_outside_the_service_layer() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut offenders = Vec::new();
        for file in files {
            if file.starts_with(src.join("service")) {
                continue;
            }
            let text: String = std::fs::read_to_string(&file)
                .unwrap()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            for category in axon::callbacks::CATALOG {
                if text.contains(&format!("callbacks.{}", category.name)) {
                    offenders.push(format!(
                        "{} dispatches `{}` callbacks",
                        file.strip_prefix(&src).unwrap_or(&file).display(),
                        category.name
                    ));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "dispatch callbacks from the service layer (src/service/), not here:\n{}",
            offenders.join("\n")
        );
    }

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
}
