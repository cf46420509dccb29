//! The `axon` command line: run the server, check a config, list the
//! compiled-in modules, generate a sample config.

use crate::config::{self, HomeserverConfig};
use crate::module::{compiled_modules, LoadedModules, ServerInfo};
use crate::server::RunningServer;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "axon",
    version,
    about = "Axon: a Matrix homeserver with compile-time modules"
)]
pub struct Cli {
    /// The homeserver config (YAML, Synapse-shaped).
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Validate the whole config, module configs included, print every
    /// problem, and exit non-zero if there is any.
    #[arg(long)]
    pub check_config: bool,
    /// Print the module paths compiled into this binary, one per line.
    #[arg(long)]
    pub list_modules: bool,
    /// With --list-modules: print each module's path, crate, version,
    /// callbacks and description as JSON.
    #[arg(long, requires = "list_modules")]
    pub json: bool,
    /// Write a commented sample config to --config (or standard output).
    #[arg(long, requires = "server_name")]
    pub generate_config: bool,
    /// The server name for --generate-config.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
}

/// Runs the command line; the stock binary's and custom builds' `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list_modules {
        if cli.json {
            let modules: Vec<serde_json::Value> = compiled_modules()
                .iter()
                .map(|d| {
                    let callbacks: Vec<String> = d
                        .callbacks
                        .iter()
                        .map(|(c, n)| format!("{c}.{n}"))
                        .collect();
                    serde_json::json!({
                        "path": d.path,
                        "crate": d.crate_name,
                        "version": d.crate_version,
                        "callbacks": callbacks,
                        "description": d.description,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(modules));
        } else {
            for path in compiled_modules().paths() {
                println!("{path}");
            }
        }
        return ExitCode::SUCCESS;
    }
    if cli.generate_config {
        return generate(&cli);
    }
    let Some(path) = cli.config.clone() else {
        eprintln!("error: --config PATH is required (try --generate-config --server-name localhost --config homeserver.yaml)");
        return ExitCode::from(2);
    };
    init_logging();
    let parsed = match HomeserverConfig::load(&path) {
        Ok(parsed) => parsed,
        Err(problems) => {
            eprintln!(
                "error: {} has {} problem{}:",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for p in problems {
                eprintln!("  - {p}");
            }
            return ExitCode::FAILURE;
        }
    };
    for warning in &parsed.warnings {
        tracing::warn!("{warning}");
    }
    if cli.check_config {
        return check(&path, parsed.config);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(parsed.config))
}

fn generate(cli: &Cli) -> ExitCode {
    let name = cli.server_name.clone().unwrap_or_default();
    if ruma::ServerName::parse(&name).is_err() {
        eprintln!("error: `{name}` is not a valid server name (such as `example.com` or `localhost:8448`)");
        return ExitCode::from(2);
    }
    let text = config::generate(&name);
    match &cli.config {
        Some(path) => {
            if path.exists() {
                eprintln!("error: {} exists; not overwriting it", path.display());
                return ExitCode::FAILURE;
            }
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}

fn check(path: &std::path::Path, config: HomeserverConfig) -> ExitCode {
    let server = ServerInfo {
        server_name: config.server_name.clone(),
        public_baseurl: config.public_baseurl(),
    };
    let modules = match &config.modules {
        serde_yaml::Value::Null => None,
        other => Some(other),
    };
    match LoadedModules::load(modules, server) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: config OK ({} module{} loaded)",
                path.display(),
                loaded.modules.len(),
                if loaded.modules.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("error: {errors}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: HomeserverConfig) -> ExitCode {
    // Install the signal handlers before anything listens: a SIGTERM that
    // arrives right after "listening on" must shut down cleanly.
    let shutdown = match ShutdownSignal::install() {
        Ok(signal) => signal,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match RunningServer::start(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    shutdown.recv().await;
    tracing::info!("shutting down: draining requests, then stopping modules");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGINT or SIGTERM.
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignal {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(ShutdownSignal {})
    }

    #[cfg(unix)]
    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn recv(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs to standard error; `AXON_LOG=debug` (or error, warn, info, trace) sets the level.
pub fn init_logging() {
    let level = match std::env::var("AXON_LOG")
        .unwrap_or_default()
        .to_lowercase()
        .as_str()
    {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
