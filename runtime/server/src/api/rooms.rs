//! Rooms: creation, memberships, sending, state, members, history. Each
//! handler parses the request, calls its service, and answers.

use super::extract::{ApiPath, ApiQuery, Auth, JsonBody};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::{Actor, MembershipChange, Requester};
use crate::storage::StoredEvent;
use axon::{ErrCode, Membership};
use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ruma::{EventId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/createRoom", post(create))
        .route("/join/{room}", post(join_by_id_or_alias))
        .route("/knock/{room}", post(knock))
        .route("/rooms/{room}/join", post(join))
        .route("/rooms/{room}/invite", post(invite))
        .route("/rooms/{room}/leave", post(leave))
        .route("/rooms/{room}/forget", post(forget))
        .route("/rooms/{room}/upgrade", post(upgrade))
        .route("/rooms/{room}/kick", post(kick))
        .route("/rooms/{room}/ban", post(ban))
        .route("/rooms/{room}/unban", post(unban))
        .route("/joined_rooms", get(joined_rooms))
        .route("/rooms/{room}/send/{event_type}/{txn_id}", put(send))
        .route("/rooms/{room}/send/{event_type}", post(send_without_txn))
        .route("/rooms/{room}/redact/{event_id}/{txn_id}", put(redact))
        .route("/rooms/{room}/state", get(all_state))
        .route(
            "/rooms/{room}/state/{event_type}",
            get(get_state_empty_key).put(put_state_empty_key),
        )
        .route(
            "/rooms/{room}/state/{event_type}/",
            get(get_state_empty_key).put(put_state_empty_key),
        )
        .route(
            "/rooms/{room}/state/{event_type}/{state_key}",
            get(get_state).put(put_state),
        )
        .route("/rooms/{room}/members", get(members))
        .route("/rooms/{room}/joined_members", get(joined_members))
        .route("/rooms/{room}/messages", get(messages))
        .route("/rooms/{room}/event/{event_id}", get(event))
        .route("/rooms/{room}/context/{event_id}", get(context))
        .route("/rooms/{room}/report/{event_id}", post(report))
        .route("/search", post(search))
}

/// A room ID from a request; `M_INVALID_PARAM` if it is not one.
pub(crate) fn room_id(room: &str) -> Result<OwnedRoomId, MatrixError> {
    RoomId::parse(room)
        .ok()
        .filter(|_| room.len() > 1)
        .ok_or_else(|| {
            MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("invalid room ID `{room}`"),
            )
        })
}

/// A user ID from a request; `M_INVALID_PARAM` if it is not one.
pub(crate) fn user_id(user: &str) -> Result<OwnedUserId, MatrixError> {
    crate::service::user_id_param(user)
}

async fn create(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    let (room_id, alias) = hs.create_room(&Actor::client(&requester), body).await?;
    let mut response = json!({ "room_id": room_id });
    if let Some(alias) = alias {
        response["room_alias"] = json!(alias);
    }
    Ok(Json(response))
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn join_room(
    hs: &Homeserver,
    requester: &Requester,
    room: &RoomId,
    reason: Option<String>,
    via: Vec<ruma::OwnedServerName>,
) -> ApiResult {
    let mut change =
        MembershipChange::new(room, &requester.user_id, Membership::Join).with_reason(reason);
    change.via = via;
    hs.change_membership(&Actor::client(requester), change)
        .await?;
    Ok(Json(json!({ "room_id": room })))
}

/// A room named by ID or by alias (another server's is asked of it), and
/// the servers to reach it through.
async fn room_id_or_alias(
    hs: &Homeserver,
    room: &str,
) -> Result<(ruma::OwnedRoomId, Vec<ruma::OwnedServerName>), MatrixError> {
    if !room.starts_with('#') {
        return Ok((room_id(room)?, Vec::new()));
    }
    let alias = RoomAliasId::parse(room).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid room alias `{room}`: {e}"),
        )
    })?;
    hs.resolve_alias(&alias).await
}

/// The servers a client names to join through (`via`, and the older
/// `server_name`), each repeatable.
fn via_servers(query: Option<&str>) -> Vec<ruma::OwnedServerName> {
    ["via", "server_name"]
        .into_iter()
        .flat_map(|name| super::extract::url_params(query, name))
        .filter_map(|server| ruma::OwnedServerName::try_from(server).ok())
        .collect()
}

async fn join_by_id_or_alias(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult {
    let (room_id, mut servers) = room_id_or_alias(&hs, &room).await?;
    servers.extend(via_servers(query.as_deref()));
    join_room(&hs, &requester, &room_id, body.reason, servers).await
}

/// `POST /knock/{roomIdOrAlias}`: asks to be let into a room whose join
/// rule is `knock`; its members then invite (or kick) the knocker.
async fn knock(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult {
    let (room_id, mut servers) = room_id_or_alias(&hs, &room).await?;
    servers.extend(via_servers(query.as_deref()));
    let mut change = MembershipChange::new(&room_id, &requester.user_id, Membership::Knock)
        .with_reason(body.reason);
    change.via = servers;
    hs.change_membership(&Actor::client(&requester), change)
        .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

async fn join(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult {
    join_room(&hs, &requester, &room_id(&room)?, body.reason, Vec::new()).await
}

#[derive(Deserialize)]
struct TargetBody {
    user_id: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Invite, kick, ban: a membership of the user the body names.
async fn targeted(
    hs: &Homeserver,
    requester: &Requester,
    room: &str,
    body: TargetBody,
    membership: Membership,
) -> ApiResult {
    let room = room_id(room)?;
    let target = user_id(&body.user_id)?;
    let change = MembershipChange::new(&room, &target, membership).with_reason(body.reason);
    hs.change_membership(&Actor::client(requester), change)
        .await?;
    Ok(Json(json!({})))
}

async fn invite(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    if body.get("medium").is_some() || body.get("id_server").is_some() {
        return Err(MatrixError::new(
            400,
            ErrCode::Unrecognized,
            "Third-party invites need an identity server, which Axon does not support",
        ));
    }
    let body: TargetBody = super::parse_json(body)?;
    targeted(&hs, &requester, &room, body, Membership::Invite).await
}

async fn kick(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult {
    targeted(&hs, &requester, &room, body, Membership::Leave).await
}

async fn ban(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult {
    targeted(&hs, &requester, &room, body, Membership::Ban).await
}

async fn unban(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult {
    let room = room_id(&room)?;
    let target = user_id(&body.user_id)?;
    hs.unban(&Actor::client(&requester), &room, &target, body.reason)
        .await?;
    Ok(Json(json!({})))
}

async fn leave(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult {
    let room = room_id(&room)?;
    let change = MembershipChange::new(&room, &requester.user_id, Membership::Leave)
        .with_reason(body.reason);
    hs.change_membership(&Actor::client(&requester), change)
        .await?;
    Ok(Json(json!({})))
}

async fn joined_rooms(State(hs): State<Arc<Homeserver>>, Auth(requester): Auth) -> ApiResult {
    let rooms: Vec<OwnedRoomId> = hs
        .storage
        .memberships(&requester.user_id)
        .await?
        .into_iter()
        .filter(|m| m.membership == Membership::Join)
        .map(|m| m.room_id)
        .collect();
    Ok(Json(json!({ "joined_rooms": rooms })))
}

async fn send(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_type, txn_id)): ApiPath<(String, String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    let room = room_id(&room)?;
    let event_id = hs
        .send_message(
            &Actor::client(&requester),
            &room,
            event_type,
            content,
            Some(txn_id),
        )
        .await?;
    Ok(Json(json!({ "event_id": event_id })))
}

async fn forget(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    hs.forget_room(&Actor::client(&requester), &room_id(&room)?)
        .await?;
    Ok(Json(json!({})))
}

async fn upgrade(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    let version = match body.get("new_version") {
        Some(Value::String(v)) => v.clone(),
        Some(_) => {
            return Err(MatrixError::new(
                400,
                ErrCode::BadJson,
                "new_version must be a string",
            ))
        }
        None => {
            return Err(MatrixError::new(
                400,
                ErrCode::MissingParam,
                "Missing params: ['new_version']",
            ))
        }
    };
    let new = hs
        .upgrade_room(&Actor::client(&requester), &room_id(&room)?, &version)
        .await?;
    Ok(Json(json!({ "replacement_room": new })))
}

/// A paging direction: `b` (the default) or `f`; true for backwards.
fn backwards(dir: Option<&str>) -> Result<bool, MatrixError> {
    match dir {
        Some("b") | None => Ok(true),
        Some("f") => Ok(false),
        Some(other) => Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("dir must be `b` or `f`, not `{other}`"),
        )),
    }
}

/// The client-server API's `v1` endpoints about rooms.
pub fn v1_routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route(
            "/_matrix/client/v1/rooms/{room}/timestamp_to_event",
            get(timestamp_to_event),
        )
        .route(
            "/_matrix/client/v1/rooms/{room}/relations/{event_id}",
            get(relations_any),
        )
        .route("/_matrix/client/v1/rooms/{room}/threads", get(threads))
        .route("/_matrix/client/v1/rooms/{room}/hierarchy", get(hierarchy))
        .route(
            "/_matrix/client/v1/rooms/{room}/relations/{event_id}/{rel_type}",
            get(relations_of_type),
        )
        .route(
            "/_matrix/client/v1/rooms/{room}/relations/{event_id}/{rel_type}/{event_type}",
            get(relations_of_type_and_event_type),
        )
}

#[derive(Deserialize)]
struct HierarchyQuery {
    #[serde(default)]
    suggested_only: bool,
    max_depth: Option<u32>,
    limit: Option<u32>,
    from: Option<String>,
}

async fn hierarchy(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<HierarchyQuery>,
) -> ApiResult {
    let room = room_id(&room)?;
    let skip = match q.from.as_deref() {
        None => 0,
        Some(token) => token
            .strip_prefix('h')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                MatrixError::new(400, ErrCode::InvalidParam, "Unknown pagination token")
            })?,
    };
    let request = crate::service::spaces::HierarchyRequest {
        suggested_only: q.suggested_only,
        max_depth: q.max_depth,
        limit: q.limit.unwrap_or(50).clamp(1, 100),
        skip,
    };
    let found = hs
        .space_hierarchy(&Actor::client(&requester), &room, request)
        .await?;
    let mut response = json!({ "rooms": found.rooms });
    if let Some(next) = found.next_skip {
        response["next_batch"] = json!(format!("h{next}"));
    }
    Ok(Json(response))
}

#[derive(Deserialize)]
struct ThreadsQuery {
    include: Option<String>,
    from: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/rooms/{room}/threads`: the room's threads, the most recently
/// replied to first, each root with its `m.thread` summary; `participated`
/// keeps those the user started or replied in.
async fn threads(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<ThreadsQuery>,
) -> ApiResult {
    let room = room_id(&room)?;
    let upto = hs.room_access(&requester.user_id, &room).await?.upto;
    let participant = match q.include.as_deref() {
        None | Some("all") => None,
        Some("participated") => Some(&*requester.user_id),
        Some(other) => {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("include must be `all` or `participated`, not `{other}`"),
            ))
        }
    };
    let before = match q.from.as_deref() {
        Some(token) => parse_token(token)?,
        None => i64::MAX,
    };
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let roots = hs
        .storage
        .thread_roots(
            &room,
            before.min(upto.saturating_add(1)),
            participant,
            limit,
        )
        .await?;
    let next = (roots.len() == limit as usize)
        .then(|| roots.last().map(|(_, latest)| *latest))
        .flatten();
    let events = roots.into_iter().map(|(root, _)| root).collect();
    let events = hs.visible_events(&requester.user_id, &room, events).await?;
    let mut response = json!({ "chunk": hs.serve_events(&events, &requester, true).await? });
    if let Some(next) = next {
        response["next_batch"] = json!(format!("s{next}"));
    }
    Ok(Json(response))
}

#[derive(Deserialize)]
struct RelationsQuery {
    from: Option<String>,
    limit: Option<u32>,
    dir: Option<String>,
}

async fn relations_any(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<RelationsQuery>,
) -> ApiResult {
    relations(&hs, &requester, room, event_id, None, None, q).await
}

async fn relations_of_type(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_id, rel_type)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<RelationsQuery>,
) -> ApiResult {
    relations(&hs, &requester, room, event_id, Some(rel_type), None, q).await
}

async fn relations_of_type_and_event_type(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_id, rel_type, event_type)): ApiPath<(String, String, String, String)>,
    ApiQuery(q): ApiQuery<RelationsQuery>,
) -> ApiResult {
    relations(
        &hs,
        &requester,
        room,
        event_id,
        Some(rel_type),
        Some(event_type),
        q,
    )
    .await
}

/// The events relating to one the user may see, newest first by default,
/// a page at a time (5 by default, as Synapse), with `next_batch` while
/// there may be more.
async fn relations(
    hs: &Homeserver,
    requester: &Requester,
    room: String,
    event_id: String,
    rel_type: Option<String>,
    event_type: Option<String>,
    q: RelationsQuery,
) -> ApiResult {
    let room = room_id(&room)?;
    let upto = hs.room_access(&requester.user_id, &room).await?.upto;
    let parent = hs
        .visible_event(&requester.user_id, &room, &event_id)
        .await?
        .event_id;
    let backwards = backwards(q.dir.as_deref())?;
    let from = q.from.as_deref().map(parse_token).transpose()?;
    let limit = q.limit.unwrap_or(5).clamp(1, 1000);
    let events = hs
        .storage
        .relations(&parent, rel_type, event_type, from, backwards, limit, upto)
        .await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last())
        .flatten()
        .map(|e| if backwards { e.stream - 1 } else { e.stream });
    let events = hs.visible_events(&requester.user_id, &room, events).await?;
    let mut response = json!({ "chunk": hs.serve_events(&events, requester, true).await? });
    if let Some(next) = next {
        response["next_batch"] = json!(format!("s{next}"));
    }
    if let Some(from) = &q.from {
        response["prev_batch"] = json!(from);
    }
    Ok(Json(response))
}

#[derive(Deserialize)]
struct SearchQuery {
    next_batch: Option<String>,
}

#[derive(Deserialize)]
struct SearchBody {
    search_categories: SearchCategories,
}

#[derive(Deserialize)]
struct SearchCategories {
    room_events: Option<RoomEventsCriteria>,
}

#[derive(Deserialize)]
struct RoomEventsCriteria {
    search_term: String,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    filter: Option<Value>,
}

/// `POST /search` over room events: the most relevant (or, with
/// `order_by: recent`, the newest) events the user may see in the rooms
/// they are in, 10 a page by default.
async fn search(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiQuery(q): ApiQuery<SearchQuery>,
    JsonBody(body): JsonBody<SearchBody>,
) -> ApiResult {
    let Some(criteria) = body.search_categories.room_events else {
        return Ok(Json(json!({ "search_categories": {} })));
    };
    let by_rank = match criteria.order_by.as_deref() {
        None | Some("rank") => true,
        Some("recent") => false,
        Some(other) => {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("order_by must be `rank` or `recent`, not `{other}`"),
            ))
        }
    };
    let skip = match q.next_batch.as_deref() {
        None => 0,
        Some(token) => token
            .strip_prefix('n')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| MatrixError::new(400, ErrCode::InvalidParam, "Invalid next_batch"))?,
    };
    let filter = criteria.filter.unwrap_or_default();
    let limit = filter["limit"]
        .as_u64()
        .map_or(10, |l| l.clamp(1, 100) as u32);
    let only_rooms = filter.get("rooms").map(|rooms| {
        rooms
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().and_then(|r| OwnedRoomId::try_from(r).ok()))
            .collect()
    });
    let found = hs
        .search_room_events(
            &Actor::client(&requester),
            &criteria.search_term,
            only_rooms,
            by_rank,
            skip,
            limit,
        )
        .await?;
    let mut results = Vec::new();
    for (event, rank) in &found.results {
        let mut served = hs
            .serve_events(std::slice::from_ref(event), &requester, true)
            .await?;
        results.push(json!({ "rank": rank, "result": served.pop().unwrap_or_default() }));
    }
    let mut room_events = json!({
        "count": found.count,
        "results": results,
        "highlights": found.words,
    });
    if let Some(next) = found.next_skip {
        room_events["next_batch"] = json!(format!("n{next}"));
    }
    Ok(Json(
        json!({ "search_categories": { "room_events": room_events } }),
    ))
}

#[derive(Deserialize)]
struct ReportBody {
    reason: Option<String>,
    score: Option<Value>,
}

async fn report(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_id)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody<ReportBody>,
) -> ApiResult {
    let room = room_id(&room)?;
    let event_id = EventId::parse(&event_id)
        .map_err(|_| MatrixError::new(404, ErrCode::NotFound, "Unable to get event"))?;
    hs.report_event(
        &Actor::client(&requester),
        &room,
        &event_id,
        body.reason,
        body.score,
    )
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct TimestampQuery {
    ts: Option<i64>,
    dir: Option<String>,
}

async fn timestamp_to_event(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<TimestampQuery>,
) -> ApiResult {
    let room = room_id(&room)?;
    let ts = q.ts.ok_or_else(|| {
        MatrixError::new(
            400,
            ErrCode::MissingParam,
            "Missing integer query parameter 'ts'",
        )
    })?;
    let forward = match q.dir.as_deref() {
        Some("f") => true,
        Some("b") => false,
        _ => {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                "dir must be `f` or `b`",
            ))
        }
    };
    let event = hs
        .event_near_time(&Actor::client(&requester), &room, ts, forward)
        .await?;
    Ok(Json(json!({
        "event_id": event.event_id,
        "origin_server_ts": event.origin_server_ts,
    })))
}

/// The legacy `POST /rooms/{room}/send/{type}`: a send with no transaction
/// ID, so a retry sends again (the test suite still uses it).
async fn send_without_txn(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_type)): ApiPath<(String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    let room = room_id(&room)?;
    let event_id = hs
        .send_message(&Actor::client(&requester), &room, event_type, content, None)
        .await?;
    Ok(Json(json!({ "event_id": event_id })))
}

#[derive(Deserialize)]
struct RedactBody {
    reason: Option<String>,
}

async fn redact(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_id, txn_id)): ApiPath<(String, String, String)>,
    JsonBody(body): JsonBody<RedactBody>,
) -> ApiResult {
    let room = room_id(&room)?;
    let target = EventId::parse(&event_id).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid event ID `{event_id}`: {e}"),
        )
    })?;
    let event_id = hs
        .redact_event(
            &Actor::client(&requester),
            &room,
            &target,
            body.reason,
            Some(txn_id),
        )
        .await?;
    Ok(Json(json!({ "event_id": event_id })))
}

async fn put_state_impl(
    hs: &Homeserver,
    requester: &Requester,
    room: String,
    event_type: String,
    state_key: String,
    content: Map<String, Value>,
) -> ApiResult {
    let room = room_id(&room)?;
    let event_id = hs
        .set_state(
            &Actor::client(requester),
            &room,
            event_type,
            state_key,
            content,
        )
        .await?;
    Ok(Json(json!({ "event_id": event_id })))
}

async fn put_state(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_type, state_key)): ApiPath<(String, String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    put_state_impl(&hs, &requester, room, event_type, state_key, content).await
}

async fn put_state_empty_key(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_type)): ApiPath<(String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    put_state_impl(&hs, &requester, room, event_type, String::new(), content).await
}

async fn state_events_visible(
    hs: &Homeserver,
    requester: &Requester,
    room: &str,
) -> Result<Vec<StoredEvent>, MatrixError> {
    let room = room_id(room)?;
    let upto = hs.room_access(&requester.user_id, &room).await?.upto;
    if upto == i64::MAX {
        Ok(hs.storage.current_state(&room).await?)
    } else {
        Ok(hs.storage.state_at(&room, upto).await?)
    }
}

async fn get_state_impl(
    hs: &Homeserver,
    requester: &Requester,
    room: String,
    event_type: String,
    state_key: String,
    whole_event: bool,
) -> ApiResult {
    let events = state_events_visible(hs, requester, &room).await?;
    let found = events
        .iter()
        .find(|e| e.event_type == event_type && e.state_key.as_deref() == Some(state_key.as_str()));
    let Some(event) = found else {
        return Err(MatrixError::new(404, ErrCode::NotFound, "Event not found."));
    };
    // Served as every read serves it: redacted, if it was.
    let served = hs
        .serve_events(std::slice::from_ref(event), requester, true)
        .await?;
    let mut event = served.into_iter().next().unwrap_or_default();
    Ok(Json(if whole_event {
        event
    } else {
        event["content"].take()
    }))
}

/// `?format=event` asks for the whole event rather than its content.
#[derive(Deserialize)]
struct StateQuery {
    #[serde(default)]
    format: Option<String>,
}

impl StateQuery {
    fn whole_event(&self) -> Result<bool, MatrixError> {
        match self.format.as_deref() {
            None | Some("content") => Ok(false),
            Some("event") => Ok(true),
            Some(other) => Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("format must be `content` or `event`, not `{other}`"),
            )),
        }
    }
}

async fn get_state(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_type, state_key)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<StateQuery>,
) -> ApiResult {
    let whole = q.whole_event()?;
    get_state_impl(&hs, &requester, room, event_type, state_key, whole).await
}

async fn get_state_empty_key(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_type)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<StateQuery>,
) -> ApiResult {
    let whole = q.whole_event()?;
    get_state_impl(&hs, &requester, room, event_type, String::new(), whole).await
}

async fn all_state(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    let events = state_events_visible(&hs, &requester, &room).await?;
    Ok(Json(Value::Array(
        hs.serve_events(&events, &requester, true).await?,
    )))
}

#[derive(Deserialize)]
struct MembersQuery {
    #[serde(default)]
    membership: Option<String>,
    #[serde(default)]
    not_membership: Option<String>,
}

async fn members(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<MembersQuery>,
) -> ApiResult {
    let events: Vec<StoredEvent> = state_events_visible(&hs, &requester, &room)
        .await?
        .into_iter()
        .filter(|e| e.event_type == "m.room.member")
        .filter(|e| {
            let membership = serde_json::from_str::<Value>(e.content.get())
                .ok()
                .and_then(|c| {
                    c.get("membership")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            q.membership.as_ref().is_none_or(|m| *m == membership)
                && q.not_membership.as_ref().is_none_or(|m| *m != membership)
        })
        .collect();
    Ok(Json(
        json!({ "chunk": hs.serve_events(&events, &requester, true).await? }),
    ))
}

async fn joined_members(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    let events = state_events_visible(&hs, &requester, &room).await?;
    let mut joined = Map::new();
    for event in events.iter().filter(|e| e.event_type == "m.room.member") {
        let content: Value = serde_json::from_str(event.content.get()).unwrap_or_default();
        if content.get("membership").and_then(|m| m.as_str()) == Some("join") {
            if let Some(user) = &event.state_key {
                joined.insert(
                    user.clone(),
                    json!({ "display_name": content.get("displayname"), "avatar_url": content.get("avatar_url") }),
                );
            }
        }
    }
    Ok(Json(json!({ "joined": joined })))
}

#[derive(Deserialize)]
struct MessagesQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Stream tokens look like `s42` (a plain number is accepted too).
pub(crate) fn parse_token(token: &str) -> Result<i64, MatrixError> {
    token.trim_start_matches('s').parse::<i64>().map_err(|_| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid pagination token `{token}`"),
        )
    })
}

async fn messages(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> ApiResult {
    let room = room_id(&room)?;
    let backwards = backwards(q.dir.as_deref())?;
    let upto = hs.room_access(&requester.user_id, &room).await?.upto;
    let current = hs.storage.current_position();
    let from = match &q.from {
        Some(token) => parse_token(token)?,
        None if backwards => current,
        None => 0,
    };
    let to = q.to.as_deref().map(parse_token).transpose()?;
    let limit = q.limit.unwrap_or(10).clamp(1, 1000);
    let mut events = if backwards {
        hs.storage
            .room_messages(&room, from.min(upto), true, to, limit)
            .await?
    } else {
        let to = Some(to.unwrap_or(i64::MAX).min(upto));
        hs.storage
            .room_messages(&room, from, false, to, limit)
            .await?
    };
    events.retain(|e| e.stream <= upto);
    // The page ends after what was read, whatever of it the user may see.
    let end = events.last().map(|e| {
        if backwards {
            format!("s{}", e.stream - 1)
        } else {
            format!("s{}", e.stream)
        }
    });
    let events = hs.visible_events(&requester.user_id, &room, events).await?;
    let mut response = json!({
        "chunk": hs.serve_events(&events, &requester, true).await?,
        "start": format!("s{from}"),
    });
    if let Some(end) = end {
        response["end"] = json!(end);
    }
    Ok(Json(response))
}

async fn event(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_id)): ApiPath<(String, String)>,
) -> ApiResult {
    let room = room_id(&room)?;
    let event = hs
        .visible_event(&requester.user_id, &room, &event_id)
        .await?;
    let mut served = hs
        .serve_events(std::slice::from_ref(&event), &requester, true)
        .await?;
    Ok(Json(served.pop().unwrap_or_default()))
}

#[derive(Deserialize)]
struct ContextQuery {
    #[serde(default)]
    limit: Option<u32>,
    /// A `RoomEventFilter` as JSON; `lazy_load_members` and `limit` are read.
    #[serde(default)]
    filter: Option<String>,
}

/// `GET /rooms/{room}/context/{event}`: the event with up to `limit` events
/// around it (half before, as Synapse splits them), tokens to page on from
/// either end, and the room state at the last event returned — with a
/// lazy-loading filter, only the members who sent what is returned.
async fn context(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, event_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ContextQuery>,
) -> ApiResult {
    let room = room_id(&room)?;
    let upto = hs.room_access(&requester.user_id, &room).await?.upto;
    let filter: Value = match q.filter.as_deref() {
        Some(text) => serde_json::from_str(text).map_err(|_| {
            MatrixError::new(
                400,
                ErrCode::BadJson,
                "filter must be a JSON RoomEventFilter",
            )
        })?,
        None => json!({}),
    };
    let lazy = filter["lazy_load_members"] == json!(true);
    let limit = filter["limit"]
        .as_u64()
        .map(|l| l as u32)
        .or(q.limit)
        .unwrap_or(10)
        .min(100);
    let event = hs
        .visible_event(&requester.user_id, &room, &event_id)
        .await?;
    let at = event.stream;
    let before_limit = limit / 2;
    let after_limit = limit - before_limit;
    let before = match before_limit {
        0 => Vec::new(),
        n => {
            hs.storage
                .room_messages(&room, at - 1, true, None, n)
                .await?
        }
    };
    let after = match after_limit {
        0 => Vec::new(),
        n => {
            hs.storage
                .room_messages(&room, at, false, Some(upto), n)
                .await?
        }
    };
    let start = before.last().map_or(at - 1, |e| e.stream - 1);
    let end = after.last().map_or(at, |e| e.stream);
    let before = hs.visible_events(&requester.user_id, &room, before).await?;
    let after = hs.visible_events(&requester.user_id, &room, after).await?;
    let mut state = hs.storage.state_at(&room, end).await?;
    if lazy {
        let senders: std::collections::HashSet<&str> = before
            .iter()
            .chain(&after)
            .chain(std::iter::once(&event))
            .map(|e| e.sender.as_str())
            .collect();
        state.retain(|e| {
            e.event_type != "m.room.member"
                || e.state_key.as_deref().is_some_and(|k| senders.contains(k))
        });
    }
    let mut served = hs
        .serve_events(std::slice::from_ref(&event), &requester, true)
        .await?;
    Ok(Json(json!({
        "event": served.pop().unwrap_or_default(),
        "events_before": hs.serve_events(&before, &requester, true).await?,
        "events_after": hs.serve_events(&after, &requester, true).await?,
        "start": format!("s{start}"),
        "end": format!("s{end}"),
        "state": hs.serve_events(&state, &requester, true).await?,
    })))
}
