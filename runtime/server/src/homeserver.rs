//! The running homeserver: what the services share ([`Homeserver`]), and
//! starting and stopping it ([`RunningServer`]).

use crate::config::HomeserverConfig;
use crate::storage::{Storage, StorageError};
use axon::callbacks::Callbacks;
use axon::module::{LoadedModules, ServerInfo};
use ruma::OwnedServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The homeserver: config, storage, the modules' callbacks, and what the
/// services share. Built once at start-up, after the modules are loaded and
/// before anything listens; handlers and the modules' `Host` reach the
/// service layer through it (the services are its methods, in `service/`).
pub struct Homeserver {
    pub config: HomeserverConfig,
    pub server_name: OwnedServerName,
    pub storage: Storage,
    pub callbacks: Arc<Callbacks>,
    pub rate_limiter: crate::service::RateLimiter,
    /// Other servers' requests in progress (`rc_federation`).
    pub federation_limiter: crate::service::FederationLimiter,
    /// Bounded password hashing.
    pub passwords: crate::service::Passwords,
    /// Login types modules handle (`ModuleApi::register_login_type`).
    pub login_types: std::collections::BTreeMap<String, axon::module::LoginType>,
    /// Nonces handed out by `GET /_synapse/admin/v1/register`, with their expiry.
    pub(crate) registration_nonces:
        std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Requests and module callbacks, counted (and timed with `enable_metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The loaded modules, in config order.
    pub modules: Vec<crate::api::ModuleSummary>,
    /// Who is typing where.
    pub typing: crate::service::Typing,
    /// Users' push rules, once read.
    pub push_rules_cache: crate::service::push_rules::RulesetCache,
    /// User-interactive auth sessions in progress.
    pub uia_sessions: crate::service::uia::UiaSessions,
    /// Registrations in progress.
    pub registration_sessions: crate::service::uia::RegistrationSessions,
    /// Where devices were last seen, as recently written.
    pub client_ips: crate::service::ClientIps,
    /// The pushers this process runs.
    pub pushers: crate::service::pushers::Pushers,
    /// This server's signing key, and the old ones it publishes.
    pub server_keys: crate::service::server_keys::ServerKeys,
    /// Requests to other servers.
    pub federation: crate::federation::FederationClient,
    /// Other servers' keys being fetched.
    pub key_fetches: crate::service::server_keys::KeyFetches,
    /// The outbound federation queue's sender.
    pub outbox: crate::service::outbox::Outbox,
}

impl Homeserver {
    pub fn server_name(&self) -> &str {
        self.server_name.as_str()
    }
}

/// A running homeserver.
pub struct RunningServer {
    pub addrs: Vec<SocketAddr>,
    pub homeserver: Arc<Homeserver>,
    modules: LoadedModules,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Why the server did not start.
#[derive(Debug)]
pub enum StartError {
    Config(Vec<String>),
    Modules(axon::module::LoadErrors),
    Storage(StorageError),
    Listen(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(errors) => {
                write!(
                    f,
                    "{} error{} in the config:",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                )?;
                for e in errors {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
            StartError::Modules(e) => write!(f, "{e}"),
            StartError::Storage(e) => write!(f, "cannot open the database: {e}"),
            StartError::Listen(e) => write!(f, "cannot listen: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl RunningServer {
    /// Loads the modules, opens the database, runs the modules' start hooks,
    /// then binds the listeners: nothing listens until all of that worked.
    pub async fn start(config: HomeserverConfig) -> Result<RunningServer, StartError> {
        let server = ServerInfo {
            server_name: config.server_name.clone(),
            public_baseurl: config.public_baseurl(),
            measure_callbacks: config.enable_metrics,
        };
        let modules_yaml = match &config.modules {
            serde_yaml::Value::Null => None,
            other => Some(other),
        };
        let mut modules = LoadedModules::load(modules_yaml, server).map_err(StartError::Modules)?;
        for warning in &modules.warnings {
            tracing::warn!("{warning}");
        }
        let storage = Storage::open(&config.database.args.database).map_err(StartError::Storage)?;
        std::fs::create_dir_all(&config.media_store_path).map_err(|e| {
            StartError::Listen(format!(
                "cannot create media_store_path {}: {e}",
                config.media_store_path.display()
            ))
        })?;
        let server_keys = crate::service::server_keys::ServerKeys::load_or_generate(
            config.server_name.as_str(),
            &config.signing_key_path(),
            &config.old_signing_keys,
        )
        .map_err(|e| StartError::Config(vec![format!("signing_key_path: {e}")]))?;
        let tls = match (&config.tls_certificate_path, &config.tls_private_key_path) {
            (Some(certificate), Some(key)) if config.listeners.iter().any(|l| l.tls) => Some(
                crate::http::tls_acceptor(certificate, key)
                    .map_err(|e| StartError::Config(vec![e]))?,
            ),
            _ => None,
        };
        let pushers = crate::service::pushers::Pushers::new(
            storage.clone(),
            crate::outbound::OutboundClient::new(&config),
        );
        let federation = crate::federation::FederationClient::new(&config)
            .map_err(|e| StartError::Config(vec![e]))?;
        let state = Arc::new(Homeserver {
            server_keys,
            federation,
            key_fetches: Default::default(),
            outbox: Default::default(),
            server_name: config.server_name.clone(),
            callbacks: modules.callbacks.clone(),
            storage,
            rate_limiter: Default::default(),
            federation_limiter: Default::default(),
            passwords: crate::service::Passwords::start(),
            login_types: modules.login_types.clone(),
            registration_nonces: Default::default(),
            typing: Default::default(),
            push_rules_cache: Default::default(),
            uia_sessions: Default::default(),
            registration_sessions: Default::default(),
            client_ips: Default::default(),
            pushers,
            metrics: crate::metrics::Metrics::new(
                config.enable_metrics,
                modules.callback_records.clone(),
            ),
            modules: modules
                .modules
                .iter()
                .map(|m| crate::api::ModuleSummary {
                    index: m.module.index,
                    path: m.module.path.clone(),
                    crate_name: m.descriptor.crate_name,
                    version: m.descriptor.crate_version,
                    status: m.descriptor.status,
                })
                .collect(),
            config,
        });
        // Modules' tables exist before their start hooks run.
        for (module, migrations) in &modules.migrations {
            let prefix = axon::db::table_prefix(module);
            if let Err(e) = state
                .storage
                .migrate_module(module.clone(), prefix, migrations.clone())
                .await
            {
                let error = axon::module::LoadError::new(
                    None,
                    Some(module),
                    "modules",
                    format!("database migration failed: {e}"),
                );
                return Err(StartError::Modules(axon::module::LoadErrors(vec![error])));
            }
        }
        state
            .pushers
            .start_all()
            .await
            .map_err(StartError::Storage)?;
        state.outbox.start(Arc::downgrade(&state));
        // Modules may use the server from their start hooks on.
        let host: Arc<dyn axon::module::Host> = state.clone();
        modules.bind(Arc::downgrade(&host));
        modules.start().await.map_err(StartError::Modules)?;
        let app = crate::api::router(state.clone(), &modules.web)
            .map_err(|e| StartError::Modules(axon::module::LoadErrors(vec![e])))?;
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        let limits = state.config.http;
        let cap = crate::http::connection_cap(&limits);
        tracing::info!(
            "serving at most {cap} connections; a request head within {}, body gaps of at most {}",
            humantime_like(limits.header_timeout.0),
            humantime_like(limits.body_timeout.0)
        );
        let connections = Arc::new(tokio::sync::Semaphore::new(cap));
        for listener in &state.config.listeners {
            let app = crate::api::listener_router(&state, listener, &app);
            for ip in &listener.bind_addresses {
                let addr = SocketAddr::new(*ip, listener.port);
                let socket = match TcpListener::bind(addr).await {
                    Ok(s) => s,
                    Err(e) => {
                        modules.stop().await;
                        return Err(StartError::Listen(format!("{addr}: {e}")));
                    }
                };
                let local = socket
                    .local_addr()
                    .map_err(|e| StartError::Listen(e.to_string()))?;
                let scheme = if listener.tls { "https" } else { "http" };
                tracing::info!("listening on {scheme}://{local}");
                addrs.push(local);
                tasks.push(tokio::spawn(crate::http::serve(
                    socket,
                    app.clone(),
                    limits,
                    connections.clone(),
                    listener.tls.then(|| tls.clone()).flatten(),
                    shutdown_rx.clone(),
                )));
            }
        }
        Ok(RunningServer {
            addrs,
            homeserver: state,
            modules,
            shutdown,
            tasks,
        })
    }

    /// The first listener's base URL, such as `http://127.0.0.1:8008`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addrs[0])
    }

    /// Stops accepting requests, lets in-flight ones finish, then stops the
    /// modules in reverse order.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.homeserver.pushers.stop();
        self.homeserver.outbox.stop();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.modules.stop().await;
    }
}

/// `30s`, `1500ms`: a duration as the config writes it.
fn humantime_like(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
