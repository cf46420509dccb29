//! The server-server API other servers call: keys (this server's and, as
//! a notary, others'), the version, and queries. Every request but the key
//! endpoints and `/version` carries `X-Matrix` auth ([`ServerAuth`]).

use super::extract::{body_timeout, read_body, ApiPath, ApiQuery};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use axon::ErrCode;
use axum::extract::{FromRequest, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest request body another server may send (a transaction of 50
/// PDUs of 64 KiB and 100 EDUs fits).
const MAX_FEDERATION_BODY: usize = 16 * 1024 * 1024;

/// A request another server signed: its name, and the JSON body (`()` for
/// requests without one).
pub struct ServerAuth<T = ()> {
    pub origin: ruma::OwnedServerName,
    pub body: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<Homeserver>> for ServerAuth<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, hs: &Arc<Homeserver>) -> Result<Self, MatrixError> {
        let idle = body_timeout(req.extensions());
        let (parts, body) = req.into_parts();
        let bytes = read_body(body, MAX_FEDERATION_BODY, idle).await?;
        // The signature covers the URI as sent, before any routing.
        let uri = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map(|u| u.0.clone())
            .unwrap_or_else(|| parts.uri.clone());
        let mut request = axum::http::Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .body(bytes)
            .map_err(|e| MatrixError::new(400, ErrCode::Unknown, e.to_string()))?;
        *request.headers_mut() = parts.headers;
        let origin = hs.authenticate_server(&request).await?;
        let bytes = request.into_body();
        let value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|_| MatrixError::new(400, ErrCode::NotJson, "Content not JSON."))?
        };
        let body = super::parse_json(value)?;
        Ok(ServerAuth { origin, body })
    }
}

/// `keys`: what every server must serve.
pub fn key_routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/_matrix/key/v2/server", get(server_keys))
        .route("/_matrix/key/v2/query", post(query_keys))
        .route("/_matrix/key/v2/query/{server}", get(query_server_keys))
}

/// `federation`: the server-server API.
pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/_matrix/federation/v1/version", get(version))
        .route("/_matrix/federation/v1/query/profile", get(query_profile))
}

/// `GET /_matrix/key/v2/server`: this server's keys, signed.
async fn server_keys(State(hs): State<Arc<Homeserver>>) -> Json<Value> {
    Json(hs.server_keys.key_response(axon::time::now_ms() as u64))
}

#[derive(Deserialize)]
struct KeyCriteria {
    #[serde(default)]
    minimum_valid_until_ts: Option<i64>,
}

#[derive(Deserialize)]
struct KeyQuery {
    server_keys: BTreeMap<ruma::OwnedServerName, BTreeMap<String, KeyCriteria>>,
}

/// `POST /_matrix/key/v2/query`: other servers' keys, as this server
/// fetched them, countersigned.
async fn query_keys(
    State(hs): State<Arc<Homeserver>>,
    super::extract::JsonBody(query): super::extract::JsonBody<KeyQuery>,
) -> ApiResult {
    let now = axon::time::now_ms();
    let query = query
        .server_keys
        .into_iter()
        .map(|(server, keys)| {
            let keys = keys
                .into_iter()
                .map(|(id, c)| (id, c.minimum_valid_until_ts.unwrap_or(now)))
                .collect();
            (server, keys)
        })
        .collect();
    Ok(Json(
        json!({ "server_keys": hs.notary_answer(query).await? }),
    ))
}

#[derive(Deserialize)]
struct MinimumValidity {
    #[serde(default)]
    minimum_valid_until_ts: Option<i64>,
}

/// `GET /_matrix/key/v2/query/{serverName}`: all of one server's keys.
async fn query_server_keys(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(server): ApiPath<String>,
    ApiQuery(params): ApiQuery<MinimumValidity>,
) -> ApiResult {
    let server = ruma::OwnedServerName::try_from(server)
        .map_err(|e| MatrixError::new(400, ErrCode::InvalidParam, format!("server name: {e}")))?;
    let mut criteria = BTreeMap::new();
    if let Some(minimum) = params.minimum_valid_until_ts {
        // No key named: the minimum applies to whichever it has.
        criteria.insert(String::new(), minimum);
    }
    let query = BTreeMap::from([(server, criteria)]);
    Ok(Json(
        json!({ "server_keys": hs.notary_answer(query).await? }),
    ))
}

/// `GET /_matrix/federation/v1/version`.
async fn version() -> Json<Value> {
    Json(json!({ "server": { "name": "Axon", "version": env!("CARGO_PKG_VERSION") } }))
}

#[derive(Deserialize)]
struct ProfileQuery {
    user_id: String,
    #[serde(default)]
    field: Option<String>,
}

/// `GET /_matrix/federation/v1/query/profile`: one of this server's users.
async fn query_profile(
    State(hs): State<Arc<Homeserver>>,
    ApiQuery(query): ApiQuery<ProfileQuery>,
    _auth: ServerAuth,
) -> ApiResult {
    let user = crate::service::user_id_param(&query.user_id)?;
    if user.server_name() != hs.server_name {
        return Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            "User is not hosted on this homeserver",
        ));
    }
    let mut profile = hs.profile(&user).await?;
    match query.field.as_deref() {
        None => {}
        Some(field @ ("displayname" | "avatar_url")) => {
            profile.retain(|k, _| k == field);
        }
        Some(other) => {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("Invalid field: {other}"),
            ))
        }
    }
    Ok(Json(Value::Object(profile)))
}
