//! The homeserver: the Matrix client-server API on axum, over [`Storage`],
//! with the modules' callbacks and web resources.

mod account;
mod admin;
mod directory;
mod extract;
mod media;
mod profile;
mod ratelimit;
pub(crate) mod room_ops;
mod rooms;
mod status;
mod sync;

pub(crate) use account::{check_localpart, create_user, deactivate_account, new_device};
pub(crate) use extract::authenticate;
pub use extract::{Auth, AuthAllowExpired, Requester};
pub(crate) use profile::profile_changed;
pub use room_ops::{create_room, send_event, update_membership, Actor, SendOptions};

use crate::config::{HomeserverConfig, RateLimit};
use crate::storage::{Storage, StorageError};
use axon::callbacks::Callbacks;
use axon::module::{LoadedModules, ServerInfo};
use axon::{ErrCode, ModuleError};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ruma::OwnedServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A Matrix error response: the same type modules return.
pub type MatrixError = ModuleError;

/// What handlers answer with.
pub type ApiResult<T = Json<serde_json::Value>> = Result<T, MatrixError>;

impl From<StorageError> for MatrixError {
    fn from(e: StorageError) -> Self {
        tracing::error!("{e}");
        MatrixError::new(500, ErrCode::Unknown, "Internal server error")
    }
}

/// Everything a request handler needs, built once at start-up.
pub struct AppState {
    pub config: HomeserverConfig,
    pub server_name: OwnedServerName,
    pub storage: Storage,
    pub callbacks: Arc<Callbacks>,
    pub rate_limiter: ratelimit::RateLimiter,
    /// Login types modules handle (`ModuleApi::register_login_type`).
    pub login_types: std::collections::BTreeMap<String, axon::module::LoginType>,
    /// Nonces handed out by `GET /_synapse/admin/v1/register`, with their expiry.
    pub(crate) registration_nonces:
        std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Requests and module callbacks, counted (and timed with `enable_metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The loaded modules, in config order.
    pub modules: Vec<status::ModuleSummary>,
}

impl AppState {
    pub fn server_name(&self) -> &str {
        self.server_name.as_str()
    }

    /// Rate-limits `user` on `limiter`, unless a module overrides their limit.
    pub async fn ratelimit_user(
        &self,
        limiter: &'static str,
        user: &str,
        limit: RateLimit,
    ) -> Result<(), MatrixError> {
        let mut limit = limit;
        if let Ok(user_id) = ruma::UserId::parse(user) {
            if let Some(o) = self
                .callbacks
                .ratelimit
                .get_ratelimit_override_for_user(&user_id, limiter)
                .await?
            {
                limit = RateLimit {
                    per_second: o.per_second,
                    burst_count: o.burst_count as f64,
                };
            }
        }
        self.rate_limiter.check(limiter, user, limit)
    }
}

pub use axon::time::now_ms;

/// A random string of `len` letters.
pub(crate) fn random_string(len: usize) -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The client-server API (one copy served under `v3` and `r0`).
fn client_api() -> Router<Arc<AppState>> {
    Router::new()
        .merge(account::routes())
        .merge(rooms::routes())
        .merge(sync::routes())
        .merge(directory::routes())
        .merge(profile::routes())
}

/// The whole HTTP surface: Matrix APIs, the modules' web resources, and
/// Matrix errors for unknown paths and methods.
pub fn router(state: Arc<AppState>, module_resources: Router) -> Router {
    let client = client_api();
    let matrix = Router::new()
        .route("/_matrix/client/versions", get(versions))
        .nest("/_matrix/client/v3", client.clone())
        .nest("/_matrix/client/r0", client)
        .merge(media::routes(&state))
        .merge(account::admin_routes())
        .merge(admin::routes())
        .merge(status::routes())
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    matrix
        .merge(module_resources)
        .layer(axum::middleware::from_fn_with_state(state, measure))
        .layer(axum::middleware::from_fn(cors))
}

/// What one listener serves: the client API (with the metrics resource if
/// named), or only metrics.
fn listener_router(
    state: &Arc<AppState>,
    listener: &crate::config::ListenerConfig,
    app: &Router,
) -> Router {
    let metrics = Router::new().route("/_synapse/metrics", get(render_metrics));
    match (listener.serves_client(), listener.serves_metrics()) {
        (true, true) => app.clone().merge(metrics.with_state(state.clone())),
        (true, false) => app.clone(),
        (false, _) => metrics
            .route("/metrics", get(render_metrics))
            .with_state(state.clone()),
    }
}

async fn render_metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts and times each request by its route's pattern (with `enable_metrics`).
async fn measure(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !state.metrics.enabled {
        return next.run(request).await;
    }
    let started = std::time::Instant::now();
    let method = request.method().as_str().to_string();
    let endpoint = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    state.metrics.observe_request(
        &method,
        &endpoint,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn versions() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "versions": ["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"],
        "unstable_features": {}
    }))
}

async fn unrecognized() -> MatrixError {
    MatrixError::new(404, ErrCode::Unrecognized, "Unrecognized request")
}

async fn method_not_allowed() -> MatrixError {
    MatrixError::new(405, ErrCode::Unrecognized, "Unrecognized request")
}

/// Browsers' clients (Element Web) need CORS on every response.
async fn cors(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight {
        StatusCode::OK.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization, Date"),
    );
    response
}

/// A running homeserver.
pub struct RunningServer {
    pub addrs: Vec<SocketAddr>,
    pub state: Arc<AppState>,
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
        let state = Arc::new(AppState {
            server_name: config.server_name.clone(),
            callbacks: modules.callbacks.clone(),
            storage,
            rate_limiter: Default::default(),
            login_types: modules.login_types.clone(),
            registration_nonces: Default::default(),
            metrics: crate::metrics::Metrics::new(
                config.enable_metrics,
                modules.callback_records.clone(),
            ),
            modules: modules
                .modules
                .iter()
                .map(|m| status::ModuleSummary {
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
        // Modules may use the server from their start hooks on.
        let host: Arc<dyn axon::module::Host> = state.clone();
        modules.bind(Arc::downgrade(&host));
        modules.start().await.map_err(StartError::Modules)?;
        let app = router(state.clone(), modules.web.router());
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for listener in &state.config.listeners {
            let app = listener_router(&state, listener, &app);
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
                tracing::info!("listening on http://{local}");
                addrs.push(local);
                let app = app
                    .clone()
                    .into_make_service_with_connect_info::<SocketAddr>();
                let mut rx = shutdown_rx.clone();
                tasks.push(tokio::spawn(async move {
                    axum::serve(socket, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.wait_for(|stop| *stop).await;
                        })
                        .await
                }));
            }
        }
        Ok(RunningServer {
            addrs,
            state,
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
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.modules.stop().await;
    }
}
