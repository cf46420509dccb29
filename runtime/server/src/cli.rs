//! The `axon` command line: run the server, check a config, list the
//! compiled-in modules, generate a sample config.

use crate::config::{self, HomeserverConfig};
use crate::RunningServer;
use axon::module::{compiled_modules, LoadedModules, ModuleDescriptor, ServerInfo};
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
    /// license, status, callbacks by category, web resources and
    /// description as JSON.
    #[arg(long, requires = "list_modules")]
    pub json: bool,
    /// With --list-modules: the same, for people.
    #[arg(long, requires = "list_modules")]
    pub verbose: bool,
    /// Print Axon's version and the modules compiled into this binary.
    #[arg(long)]
    pub build_info: bool,
    /// Print the JSON Schema of the config: the homeserver's keys and each
    /// compiled-in module's `config:` (for editors: yaml-language-server).
    #[arg(long)]
    pub config_schema: bool,
    /// With --config: for each callback, the modules that implement it, in
    /// the order they run.
    #[arg(long, requires = "config")]
    pub show_order: bool,
    /// With --check-config: warnings (such as unsupported keys) fail the check too.
    #[arg(long, requires = "check_config")]
    pub deny_warnings: bool,
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
            let modules: Vec<serde_json::Value> =
                compiled_modules().iter().map(module_json).collect();
            println!("{}", serde_json::Value::Array(modules));
        } else if cli.verbose {
            for descriptor in compiled_modules().iter() {
                print!("{}", module_text(descriptor));
            }
        } else {
            for path in compiled_modules().paths() {
                println!("{path}");
            }
        }
        return ExitCode::SUCCESS;
    }
    if cli.config_schema {
        match serde_json::to_string_pretty(&crate::config::config_schema()) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    if cli.build_info {
        print!("{}", build_info());
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
    if cli.show_order {
        return show_order(parsed.config);
    }
    if cli.check_config {
        let warned = !parsed.warnings.is_empty();
        return check(&path, parsed.config, warned, cli.deny_warnings);
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

/// Loads the modules of a config as the server would (each validated and
/// constructed), without opening the database or a listener.
fn load_modules(config: &HomeserverConfig) -> Result<LoadedModules, axon::module::LoadErrors> {
    let server = ServerInfo {
        server_name: config.server_name.clone(),
        public_baseurl: config.public_baseurl(),
        measure_callbacks: config.enable_metrics,
    };
    let modules = match &config.modules {
        serde_yaml::Value::Null => None,
        other => Some(other),
    };
    LoadedModules::load(modules, server)
}

fn check(
    path: &std::path::Path,
    config: HomeserverConfig,
    mut warned: bool,
    deny_warnings: bool,
) -> ExitCode {
    match load_modules(&config) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
                warned = true;
            }
            if warned && deny_warnings {
                eprintln!("error: warnings are denied (--deny-warnings)");
                return ExitCode::FAILURE;
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

fn show_order(config: HomeserverConfig) -> ExitCode {
    let loaded = match load_modules(&config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("error: {errors}");
            return ExitCode::FAILURE;
        }
    };
    let mut any = false;
    loaded.callbacks.for_each_callback(|name, modules| {
        if !modules.is_empty() {
            any = true;
            let names: Vec<String> = modules.iter().map(|m| m.path.clone()).collect();
            println!("{name}: {}", names.join(", "));
        }
    });
    if !any {
        println!("no callbacks: no module in the config implements one");
    }
    ExitCode::SUCCESS
}

/// The callbacks a module implements, by category, in catalog order.
fn callbacks_by_category(d: &ModuleDescriptor) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (category, name) in d.callbacks {
        match out.iter_mut().find(|(c, _)| c == category) {
            Some((_, names)) => names.push(name),
            None => out.push((category, vec![name])),
        }
    }
    out
}

fn module_json(d: &ModuleDescriptor) -> serde_json::Value {
    let callbacks: serde_json::Map<String, serde_json::Value> = callbacks_by_category(d)
        .into_iter()
        .map(|(category, names)| (category.to_string(), serde_json::json!(names)))
        .collect();
    serde_json::json!({
        "path": d.path,
        "crate": d.crate_name,
        "version": d.crate_version,
        "license": d.license,
        "status": d.status,
        "callbacks": callbacks,
        "web_resources": d.serves_web,
        "hooks": { "start": d.has_start, "stop": d.has_stop },
        "description": d.description,
        "example": d.example,
    })
}

fn module_text(d: &ModuleDescriptor) -> String {
    let mut out = format!("{}\n", d.path);
    let license = if d.license.is_empty() {
        "none given"
    } else {
        d.license
    };
    out += &format!(
        "  crate:          {} {} (license: {license})\n",
        d.crate_name, d.crate_version
    );
    out += &format!("  status:         {}\n", d.status);
    if !d.description.is_empty() {
        let first = d.description.lines().next().unwrap_or_default();
        out += &format!("  description:    {first}\n");
    }
    let callbacks = callbacks_by_category(d);
    if callbacks.is_empty() {
        out += "  callbacks:      none\n";
    }
    for (i, (category, names)) in callbacks.iter().enumerate() {
        let label = if i == 0 { "callbacks:" } else { "" };
        out += &format!("  {label:<15} {category}: {}\n", names.join(", "));
    }
    out += &format!(
        "  web resources:  {}\n",
        if d.serves_web { "yes" } else { "no" }
    );
    let hooks: Vec<&str> = [("start", d.has_start), ("stop", d.has_stop)]
        .into_iter()
        .filter_map(|(name, has)| has.then_some(name))
        .collect();
    if !hooks.is_empty() {
        out += &format!("  hooks:          {}\n", hooks.join(", "));
    }
    out
}

fn build_info() -> String {
    let modules = compiled_modules();
    let mut out = format!("axon {}\n", env!("CARGO_PKG_VERSION"));
    let count = modules.iter().count();
    out += &format!(
        "{count} module{} compiled in:\n",
        if count == 1 { "" } else { "s" }
    );
    for d in modules.iter() {
        out += &format!(
            "  {} ({} {}, {})\n",
            d.path, d.crate_name, d.crate_version, d.status
        );
    }
    out
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
