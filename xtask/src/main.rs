//! `cargo xtask …`: project tasks, in Rust, depending only on the catalog.
//!
//! - `codegen [--check]`: write the files generated from the catalog and
//!   the sample config template (`--check`: fail if one is stale).
//! - `new-module NAME`: start a module crate under `modules/`, linked into
//!   the stock binary, with a passing end-to-end test.
//! - `build-server --modules a,b [--out PATH] [--release]`: build a
//!   homeserver with exactly those module crates.
//! - `list-modules`: the modules under `modules/`, their paths and callbacks.

mod build_server;
mod codegen;
mod list_modules;
mod new_module;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage:
  cargo xtask codegen [--check]
  cargo xtask new-module NAME
  cargo xtask build-server --modules a,b [--out PATH] [--release]
  cargo xtask list-modules";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let root = util::project_root();
    let result = match args.first().map(String::as_str) {
        Some("new-module") => match args.get(1) {
            Some(name) if args.len() == 2 => new_module::run(&root, name),
            _ => Err(format!("new-module takes one NAME\n{USAGE}")),
        },
        Some("build-server") => build_server::parse(&args[1..])
            .and_then(|options| build_server::run(&root, &options).map(|_| ())),
        Some("list-modules") => list_modules::run(&root),
        Some("codegen") => match &args[1..] {
            [] => codegen::run(&root, false),
            [check] if check == "--check" => codegen::run(&root, true),
            _ => Err(format!("codegen takes only --check\n{USAGE}")),
        },
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
