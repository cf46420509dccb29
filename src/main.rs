//! The stock Axon homeserver: the runtime and the bundled modules.

fn main() -> std::process::ExitCode {
    axon::cli::main()
}
