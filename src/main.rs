//! The stock Axon homeserver: the runtime and the bundled modules.

// Each bundled module crate is named here so the linker keeps its
// registration (a crate nothing refers to is dropped, module and all).
use axon_demo as _;

fn main() -> std::process::ExitCode {
    axon::cli::main()
}
