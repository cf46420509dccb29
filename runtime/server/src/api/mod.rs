//! The HTTP APIs on axum: the client-server API, media, Synapse's admin
//! API and the module status page, with the modules' web resources. Each
//! handler parses the request, calls the service layer (`crate::service`),
//! and answers; the rules and the modules' callbacks live there.

mod account;
mod admin;
mod devices;
mod directory;
pub mod discovery;
mod extract;
pub mod federation;
mod integrations;
mod key_backup;
mod keys;
mod legacy;
mod media;
mod profile;
mod push;
mod receipts;
mod rooms;
mod status;
mod sync;

pub(crate) use extract::{authenticate, stalled};
pub use extract::{parse_json, Auth, AuthAllowExpired};
pub use status::ModuleSummary;

use crate::homeserver::Homeserver;
use crate::storage::StorageError;
use axon::ErrCode;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub use crate::service::MatrixError;

/// What handlers answer with.
pub type ApiResult<T = Json<serde_json::Value>> = Result<T, MatrixError>;

impl From<StorageError> for MatrixError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Refused(why) => MatrixError::forbidden(why),
            other => {
                tracing::error!("{other}");
                MatrixError::new(500, ErrCode::Unknown, "Internal server error")
            }
        }
    }
}

/// The client-server API (one copy served under `v3` and `r0`).
fn client_api() -> Router<Arc<Homeserver>> {
    Router::new()
        .merge(account::routes())
        .merge(rooms::routes())
        .merge(sync::routes())
        .merge(directory::routes())
        .merge(profile::routes())
        .merge(push::routes())
        .merge(receipts::routes())
        .merge(devices::routes())
        .merge(integrations::routes())
        .merge(legacy::routes())
        .merge(keys::routes())
        .merge(key_backup::routes())
}

/// The whole HTTP surface: Matrix APIs, the modules' web resources, and
/// Matrix errors for unknown paths and methods.
pub fn router(
    state: Arc<Homeserver>,
    module_resources: &axon::module::WebResources,
) -> Result<Router, axon::module::LoadError> {
    let client = client_api();
    let matrix = Router::new()
        .merge(discovery::routes())
        .nest("/_matrix/client/v3", client.clone())
        .nest("/_matrix/client/r0", client)
        .merge(rooms::v1_routes())
        .merge(media::routes(&state))
        .merge(account::admin_routes())
        .merge(admin::routes())
        .merge(integrations::admin_routes())
        .merge(status::routes())
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    Ok(module_resources
        .merge_into(matrix)?
        .layer(axum::middleware::from_fn_with_state(state, measure))
        .layer(axum::middleware::from_fn(cors)))
}

/// What one listener serves: the client API (with the metrics resource if
/// named), or only metrics.
pub(crate) fn listener_router(
    state: &Arc<Homeserver>,
    listener: &crate::config::ListenerConfig,
    app: &Router,
) -> Router {
    let metrics = Router::new().route("/_synapse/metrics", get(render_metrics));
    let router = match (listener.serves_client(), listener.serves_metrics()) {
        (true, true) => app.clone().merge(metrics.with_state(state.clone())),
        (true, false) => app.clone(),
        (false, _) => metrics
            .route("/metrics", get(render_metrics))
            .with_state(state.clone()),
    };
    let router = if listener.serves_keys() {
        router.merge(federation::key_routes().with_state(state.clone()))
    } else {
        router
    };
    let router = if listener.serves_federation() {
        router.merge(federation::routes().with_state(state.clone()))
    } else {
        router
    };
    let router = if listener.serves_openid() {
        router.merge(integrations::openid_routes().with_state(state.clone()))
    } else {
        router
    };
    if listener.x_forwarded {
        router.layer(axum::Extension(extract::TrustForwardedFor))
    } else {
        router
    }
}

async fn render_metrics(State(state): State<Arc<Homeserver>>) -> Response {
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
async fn measure(State(state): State<Arc<Homeserver>>, request: Request, next: Next) -> Response {
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
