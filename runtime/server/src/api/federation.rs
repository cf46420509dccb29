//! The server-server API other servers call: keys (this server's and, as
//! a notary, others'), the version, and queries. Every request but the key
//! endpoints and `/version` carries `X-Matrix` auth ([`ServerAuth`]).

use super::extract::{body_timeout, read_body, url_params, ApiPath, ApiQuery};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use axon::{ErrCode, Membership};
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::routing::{get, post, put};
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
    /// The request's place under `rc_federation`, held until it is answered.
    pub permit: crate::service::FederationPermit,
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
        let permit = hs.admit_federation_request(origin.as_str()).await?;
        hs.heard_from(&origin).await;
        let bytes = request.into_body();
        let value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|_| MatrixError::new(400, ErrCode::NotJson, "Content not JSON."))?
        };
        let body = super::parse_json(value)?;
        Ok(ServerAuth {
            origin,
            body,
            permit,
        })
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
        .route(
            "/_matrix/federation/v1/query/directory",
            get(query_directory),
        )
        .route(
            "/_matrix/federation/v1/make_join/{room}/{user}",
            make_route(Membership::Join),
        )
        .route(
            "/_matrix/federation/v1/make_leave/{room}/{user}",
            make_route(Membership::Leave),
        )
        .route(
            "/_matrix/federation/v1/make_knock/{room}/{user}",
            make_route(Membership::Knock),
        )
        .route(
            "/_matrix/federation/v2/send_leave/{room}/{event}",
            send_route(Membership::Leave),
        )
        .route(
            "/_matrix/federation/v1/send_knock/{room}/{event}",
            send_route(Membership::Knock),
        )
        .route(
            "/_matrix/federation/v2/send_join/{room}/{event}",
            put(send_join),
        )
        .route("/_matrix/federation/v2/invite/{room}/{event}", put(invite))
        .route("/_matrix/federation/v1/send/{txn}", put(send_transaction))
        .route("/_matrix/federation/v1/event/{event}", get(event))
        .route(
            "/_matrix/federation/v1/get_missing_events/{room}",
            post(missing_events),
        )
        .route("/_matrix/federation/v1/state_ids/{room}", get(state_ids))
        .route("/_matrix/federation/v1/backfill/{room}", get(backfill))
        .route("/_matrix/federation/v1/state/{room}", get(state))
        .route(
            "/_matrix/federation/v1/publicRooms",
            get(public_rooms_get).post(public_rooms_post),
        )
        .route(
            "/_matrix/federation/v1/event_auth/{room}/{event}",
            get(event_auth),
        )
        .route(
            "/_matrix/federation/v1/user/devices/{user}",
            get(user_devices),
        )
        .route(
            "/_matrix/federation/v1/user/keys/query",
            post(user_keys_query),
        )
        .route(
            "/_matrix/federation/v1/user/keys/claim",
            post(user_keys_claim),
        )
}

fn room_param(room: &str) -> Result<ruma::OwnedRoomId, MatrixError> {
    ruma::OwnedRoomId::try_from(room)
        .map_err(|e| MatrixError::new(400, ErrCode::InvalidParam, format!("room ID: {e}")))
}

fn event_param(event: &str) -> Result<ruma::OwnedEventId, MatrixError> {
    ruma::OwnedEventId::try_from(event)
        .map_err(|e| MatrixError::new(400, ErrCode::InvalidParam, format!("event ID: {e}")))
}

#[derive(Deserialize)]
struct DirectoryQuery {
    room_alias: String,
}

/// `GET /_matrix/federation/v1/query/directory`: one of this server's aliases.
async fn query_directory(
    State(hs): State<Arc<Homeserver>>,
    ApiQuery(query): ApiQuery<DirectoryQuery>,
    _auth: ServerAuth,
) -> ApiResult {
    let alias = ruma::OwnedRoomAliasId::try_from(query.room_alias.as_str())
        .map_err(|e| MatrixError::new(400, ErrCode::InvalidParam, format!("room alias: {e}")))?;
    if alias.server_name() != hs.server_name {
        return Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            "Room alias is not hosted on this homeserver",
        ));
    }
    let (room, _) = hs.resolve_alias(&alias).await?;
    let snapshot = hs.storage.room_snapshot(&room).await?;
    let mut servers: Vec<String> = vec![hs.server_name.to_string()];
    if let Some(snapshot) = snapshot {
        servers.extend(
            crate::service::remote_servers(&snapshot, &hs.server_name)
                .into_iter()
                .map(|s| s.to_string()),
        );
    }
    Ok(Json(json!({ "room_id": room, "servers": servers })))
}

/// `GET /v1/make_join|make_leave|make_knock/{room}/{user}?ver=…`.
async fn make_membership(
    membership: Membership,
    hs: Arc<Homeserver>,
    (room, user): (String, String),
    query: Option<String>,
    auth: ServerAuth,
) -> ApiResult {
    let room = room_param(&room)?;
    let user = crate::service::user_id_param(&user)?;
    let versions = url_params(query.as_deref(), "ver");
    Ok(Json(
        hs.make_membership(&auth.origin, &room, &user, membership, &versions)
            .await?,
    ))
}

/// The route of one `make_` endpoint.
fn make_route(membership: Membership) -> axum::routing::MethodRouter<Arc<Homeserver>> {
    get(
        move |State(hs): State<Arc<Homeserver>>,
              ApiPath(params): ApiPath<(String, String)>,
              RawQuery(query): RawQuery,
              auth: ServerAuth| make_membership(membership, hs, params, query, auth),
    )
}

/// The route of `send_leave` (v2) or `send_knock` (v1).
fn send_route(membership: Membership) -> axum::routing::MethodRouter<Arc<Homeserver>> {
    put(
        move |State(hs): State<Arc<Homeserver>>,
              ApiPath((room, event)): ApiPath<(String, String)>,
              auth: ServerAuth<Value>| async move {
            let room = room_param(&room)?;
            let event = event_param(&event)?;
            let answer = hs
                .send_leave_or_knock(&auth.origin, &room, &event, auth.body, membership)
                .await?;
            ApiResult::Ok(Json(answer))
        },
    )
}

/// `PUT /v2/send_join/{room}/{event}`.
async fn send_join(
    State(hs): State<Arc<Homeserver>>,
    ApiPath((room, event)): ApiPath<(String, String)>,
    auth: ServerAuth<Value>,
) -> ApiResult {
    let room = room_param(&room)?;
    let event = event_param(&event)?;
    Ok(Json(
        hs.send_join(&auth.origin, &room, &event, auth.body).await?,
    ))
}

/// `PUT /v2/invite/{room}/{event}`.
async fn invite(
    State(hs): State<Arc<Homeserver>>,
    ApiPath((room, event)): ApiPath<(String, String)>,
    auth: ServerAuth<Value>,
) -> ApiResult {
    let room = room_param(&room)?;
    let event = event_param(&event)?;
    Ok(Json(
        hs.receive_invite(&auth.origin, &room, &event, auth.body)
            .await?,
    ))
}

/// `PUT /v1/send/{txnId}`.
async fn send_transaction(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(_txn): ApiPath<String>,
    auth: ServerAuth<Value>,
) -> ApiResult {
    if !auth.body.is_object() {
        return Err(MatrixError::new(
            400,
            ErrCode::BadJson,
            "A transaction is a JSON object",
        ));
    }
    Ok(Json(hs.receive_transaction(&auth.origin, auth.body).await?))
}

/// `GET /v1/event/{event}`.
async fn event(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(event): ApiPath<String>,
    auth: ServerAuth,
) -> ApiResult {
    let event = event_param(&event)?;
    Ok(Json(hs.serve_event(&auth.origin, &event).await?))
}

#[derive(Deserialize)]
struct MissingEventsBody {
    #[serde(default)]
    earliest_events: Vec<String>,
    latest_events: Vec<String>,
    #[serde(default = "ten")]
    limit: usize,
}

fn ten() -> usize {
    10
}

/// `POST /v1/get_missing_events/{room}`.
async fn missing_events(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(room): ApiPath<String>,
    auth: ServerAuth<MissingEventsBody>,
) -> ApiResult {
    let room = room_param(&room)?;
    let body = auth.body;
    Ok(Json(
        hs.missing_events(
            &auth.origin,
            &room,
            body.earliest_events,
            body.latest_events,
            body.limit,
        )
        .await?,
    ))
}

/// `GET /v1/backfill/{room}?v=…&limit=`.
async fn backfill(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(room): ApiPath<String>,
    RawQuery(query): RawQuery,
    auth: ServerAuth,
) -> ApiResult {
    let room = room_param(&room)?;
    let from = url_params(query.as_deref(), "v");
    let limit = super::extract::url_param(query.as_deref().unwrap_or_default(), "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10);
    Ok(Json(hs.backfill(&auth.origin, &room, from, limit).await?))
}

#[derive(Deserialize)]
struct AtEvent {
    event_id: String,
}

/// `GET /v1/state_ids/{room}?event_id=`.
async fn state_ids(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(room): ApiPath<String>,
    ApiQuery(at): ApiQuery<AtEvent>,
    auth: ServerAuth,
) -> ApiResult {
    let room = room_param(&room)?;
    let event = event_param(&at.event_id)?;
    Ok(Json(
        hs.state_at_event(&auth.origin, &room, &event, true).await?,
    ))
}

/// `GET /v1/state/{room}?event_id=`.
async fn state(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(room): ApiPath<String>,
    ApiQuery(at): ApiQuery<AtEvent>,
    auth: ServerAuth,
) -> ApiResult {
    let room = room_param(&room)?;
    let event = event_param(&at.event_id)?;
    Ok(Json(
        hs.state_at_event(&auth.origin, &room, &event, false)
            .await?,
    ))
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

/// `GET /v1/user/devices/{userId}`.
async fn user_devices(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(user): ApiPath<String>,
    _auth: ServerAuth,
) -> ApiResult {
    let user = crate::service::user_id_param(&user)?;
    Ok(Json(hs.user_devices(&user).await?))
}

/// The object a keys request names its users in.
fn users_field(body: &Value, field: &str) -> Result<serde_json::Map<String, Value>, MatrixError> {
    body.get(field)
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| {
            MatrixError::new(
                400,
                ErrCode::MissingParam,
                format!("Missing params: ['{field}']"),
            )
        })
}

/// `POST /v1/user/keys/query`: this server's users' keys.
async fn user_keys_query(State(hs): State<Arc<Homeserver>>, auth: ServerAuth<Value>) -> ApiResult {
    let wanted = users_field(&auth.body, "device_keys")?;
    let mut answer = hs.local_keys(None, &wanted).await?;
    if let Some(answer) = answer.as_object_mut() {
        answer.remove("failures");
    }
    Ok(Json(answer))
}

/// `POST /v1/user/keys/claim`: one-time keys of this server's users.
async fn user_keys_claim(State(hs): State<Arc<Homeserver>>, auth: ServerAuth<Value>) -> ApiResult {
    let wanted = users_field(&auth.body, "one_time_keys")?;
    Ok(Json(
        json!({ "one_time_keys": hs.claim_local_keys(&wanted).await? }),
    ))
}

#[derive(Deserialize)]
struct PublicRoomsQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    since: Option<String>,
}

/// 403 unless the operator shares the directory with other servers.
fn check_directory_shared(hs: &Homeserver) -> Result<(), MatrixError> {
    if hs.config.allow_public_rooms_over_federation {
        Ok(())
    } else {
        Err(MatrixError::forbidden(
            "This server does not share its public rooms with other servers",
        ))
    }
}

/// `GET /v1/publicRooms`: this server's public room directory.
async fn public_rooms_get(
    State(hs): State<Arc<Homeserver>>,
    ApiQuery(query): ApiQuery<PublicRoomsQuery>,
    _auth: ServerAuth,
) -> ApiResult {
    check_directory_shared(&hs)?;
    Ok(Json(
        hs.public_rooms_page(query.limit, query.since, None).await?,
    ))
}

/// `POST /v1/publicRooms`: the same, with a search filter.
async fn public_rooms_post(
    State(hs): State<Arc<Homeserver>>,
    auth: ServerAuth<Value>,
) -> ApiResult {
    check_directory_shared(&hs)?;
    let body: super::directory::PublicRoomsBody = super::parse_json(auth.body)?;
    let term = body.term();
    Ok(Json(
        hs.public_rooms_page(body.limit, body.since, term).await?,
    ))
}

/// `GET /v1/event_auth/{room}/{event}`: the event's auth chain.
async fn event_auth(
    State(hs): State<Arc<Homeserver>>,
    ApiPath((room, event)): ApiPath<(String, String)>,
    auth: ServerAuth,
) -> ApiResult {
    let room = room_param(&room)?;
    let event = event_param(&event)?;
    Ok(Json(hs.event_auth(&auth.origin, &room, &event).await?))
}
