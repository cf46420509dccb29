//! Rooms: creation, memberships, sending, state, members, history.

use super::extract::{ApiPath, ApiQuery, Auth, JsonBody, Requester};
use super::room_ops::{create_room, send_event, update_membership, Actor, SendOptions};
use super::{now_ms, ApiResult, AppState, MatrixError};
use crate::events::{client_event, EventDraft};
use crate::storage::StoredEvent;
use axon::ErrCode;
use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/createRoom", post(create))
        .route("/join/{room}", post(join_by_id_or_alias))
        .route("/rooms/{room}/join", post(join))
        .route("/rooms/{room}/invite", post(invite))
        .route("/rooms/{room}/leave", post(leave))
        .route("/rooms/{room}/kick", post(kick))
        .route("/rooms/{room}/ban", post(ban))
        .route("/rooms/{room}/unban", post(unban))
        .route("/joined_rooms", get(joined_rooms))
        .route("/rooms/{room}/send/{event_type}/{txn_id}", put(send))
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
}

/// What a shadow-banned user's send answers with: an event ID that looks
/// real, for an event nobody else sees (as Synapse does).
fn shadow_event_id() -> String {
    format!("${}", super::random_string(43))
}

fn check_room_id(room: &str) -> Result<(), MatrixError> {
    if room.starts_with('!') && room.len() > 1 {
        Ok(())
    } else {
        Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid room ID `{room}`"),
        ))
    }
}

fn check_user_id(user: &str) -> Result<(), MatrixError> {
    ruma::UserId::parse(user).map(|_| ()).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid user ID `{user}`: {e}"),
        )
    })
}

/// The viewer's membership must let them read the room; returns the highest
/// stream position they may see (`i64::MAX` while joined).
pub(crate) async fn visible_upto(
    state: &AppState,
    user: &str,
    room_id: &str,
) -> Result<i64, MatrixError> {
    match state.storage.membership(user, room_id).await? {
        Some((m, _)) if m == "join" => Ok(i64::MAX),
        Some((m, at)) if m == "leave" || m == "ban" => Ok(at),
        _ => Err(MatrixError::forbidden(format!(
            "User {user} not in room {room_id}, and room previews are disabled"
        ))),
    }
}

/// Events in the client format, with the fields modules add to `unsigned`.
pub(crate) async fn serve_events(
    state: &AppState,
    events: &[StoredEvent],
    viewer: &Requester,
    with_room_id: bool,
) -> Result<Vec<Value>, MatrixError> {
    let now = now_ms();
    let unsigned_slot = &state.callbacks.add_extra_fields_to_unsigned_client_event;
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let mut client = client_event(
            event,
            Some((&viewer.user_id, &viewer.device_id)),
            with_room_id,
            now,
        );
        if !unsigned_slot.add_field_to_unsigned_callback.is_empty() {
            if let Some(module_event) = event.to_module_event() {
                let mut extra = unsigned_slot
                    .add_field_to_unsigned_callback(&module_event)
                    .await?;
                // Modules cannot override the server's own unsigned fields.
                for own in ["age", "transaction_id", "prev_content", "redacted_because"] {
                    extra.remove(own);
                }
                client.unsigned.extra = extra;
            }
        }
        out.push(serde_json::to_value(&client).map_err(|e| MatrixError::internal(e.to_string()))?);
    }
    Ok(out)
}

async fn create(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    let (room_id, alias) = create_room(&state, &Actor::from(&requester), body).await?;
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

async fn join_by_id_or_alias(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult {
    let room_id = if room.starts_with('#') {
        ruma::RoomAliasId::parse(&room).map_err(|e| {
            MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("invalid room alias `{room}`: {e}"),
            )
        })?;
        match state.storage.get_alias(&room).await? {
            Some((room_id, _)) => room_id,
            None => {
                return Err(MatrixError::new(
                    404,
                    ErrCode::NotFound,
                    format!("Room alias {room} not found"),
                ))
            }
        }
    } else {
        check_room_id(&room)?;
        room
    };
    update_membership(
        &state,
        &Actor::from(&requester),
        &requester.user_id,
        &room_id,
        "join",
        body.reason,
    )
    .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

async fn join(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult {
    check_room_id(&room)?;
    update_membership(
        &state,
        &Actor::from(&requester),
        &requester.user_id,
        &room,
        "join",
        body.reason,
    )
    .await?;
    Ok(Json(json!({ "room_id": room })))
}

#[derive(Deserialize)]
struct TargetBody {
    user_id: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn targeted(
    state: &AppState,
    requester: &Requester,
    room: &str,
    body: TargetBody,
    membership: &str,
) -> ApiResult {
    check_room_id(room)?;
    check_user_id(&body.user_id)?;
    if membership == "unban" {
        let current = state.storage.membership(&body.user_id, room).await?;
        if !matches!(current, Some((ref m, _)) if m == "ban") {
            return Err(MatrixError::forbidden(format!(
                "{} is not banned",
                body.user_id
            )));
        }
    }
    if membership == "invite" && requester.shadow_banned {
        // A shadow-banned user's invites vanish silently, as in Synapse.
        return Ok(Json(json!({})));
    }
    let membership = if membership == "unban" || membership == "kick" {
        "leave"
    } else {
        membership
    };
    update_membership(
        state,
        &Actor::from(requester),
        &body.user_id,
        room,
        membership,
        body.reason,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn invite(
    State(state): State<Arc<AppState>>,
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
    let body: TargetBody = super::extract::parse_json(body)?;
    targeted(&state, &requester, &room, body, "invite").await
}

async fn kick(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult {
    targeted(&state, &requester, &room, body, "kick").await
}

async fn ban(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult {
    targeted(&state, &requester, &room, body, "ban").await
}

async fn unban(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> ApiResult {
    targeted(&state, &requester, &room, body, "unban").await
}

async fn leave(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult {
    check_room_id(&room)?;
    update_membership(
        &state,
        &Actor::from(&requester),
        &requester.user_id,
        &room,
        "leave",
        body.reason,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn joined_rooms(State(state): State<Arc<AppState>>, Auth(requester): Auth) -> ApiResult {
    let rooms: Vec<String> = state
        .storage
        .memberships(&requester.user_id)
        .await?
        .into_iter()
        .filter(|m| m.membership == "join")
        .map(|m| m.room_id)
        .collect();
    Ok(Json(json!({ "joined_rooms": rooms })))
}

async fn send(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((room, event_type, txn_id)): ApiPath<(String, String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    check_room_id(&room)?;
    state
        .ratelimit_user("rc_message", &requester.user_id, state.config.rc_message)
        .await?;
    let draft = EventDraft {
        sender: requester.user_id.clone(),
        event_type,
        state_key: None,
        content,
    };
    if requester.shadow_banned {
        return Ok(Json(json!({ "event_id": shadow_event_id() })));
    }
    let options = SendOptions {
        txn: Some((requester.device_id.clone(), txn_id)),
        spam_check: true,
    };
    let event_id = send_event(&state, &room, draft, options).await?;
    Ok(Json(json!({ "event_id": event_id })))
}

async fn put_state_impl(
    state: &AppState,
    requester: &Requester,
    room: String,
    event_type: String,
    state_key: String,
    content: Map<String, Value>,
) -> ApiResult {
    check_room_id(&room)?;
    if event_type == "m.room.member" {
        let membership = content
            .get("membership")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        check_user_id(&state_key)?;
        let reason = content
            .get("reason")
            .and_then(|r| r.as_str())
            .map(str::to_string);
        let event_id = update_membership(
            state,
            &Actor::from(requester),
            &state_key,
            &room,
            &membership,
            reason,
        )
        .await?;
        return Ok(Json(json!({ "event_id": event_id })));
    }
    state
        .ratelimit_user("rc_message", &requester.user_id, state.config.rc_message)
        .await?;
    let spam = &state.callbacks.spam_checker;
    if !requester.admin && !spam.user_may_send_state_event.is_empty() {
        if let (Ok(user), Ok(room_id)) = (
            ruma::UserId::parse(&requester.user_id),
            ruma::RoomId::parse(&room),
        ) {
            if let axon::callbacks::SpamCheck::Deny {
                errcode,
                extra_fields,
            } = spam
                .user_may_send_state_event(&user, &room_id, &event_type, &state_key, &content)
                .await?
            {
                let mut error = MatrixError::new(
                    403,
                    errcode,
                    "You are not permitted to send the state event",
                );
                error.extra_fields = extra_fields;
                return Err(error);
            }
        }
    }
    if requester.shadow_banned {
        return Ok(Json(json!({ "event_id": shadow_event_id() })));
    }
    let draft = EventDraft {
        sender: requester.user_id.clone(),
        event_type,
        state_key: Some(state_key),
        content,
    };
    let options = SendOptions {
        txn: None,
        spam_check: true,
    };
    let event_id = send_event(state, &room, draft, options).await?;
    Ok(Json(json!({ "event_id": event_id })))
}

async fn put_state(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((room, event_type, state_key)): ApiPath<(String, String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    put_state_impl(&state, &requester, room, event_type, state_key, content).await
}

async fn put_state_empty_key(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((room, event_type)): ApiPath<(String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    put_state_impl(&state, &requester, room, event_type, String::new(), content).await
}

async fn state_events_visible(
    state: &AppState,
    requester: &Requester,
    room: &str,
) -> Result<Vec<StoredEvent>, MatrixError> {
    check_room_id(room)?;
    let upto = visible_upto(state, &requester.user_id, room).await?;
    if upto == i64::MAX {
        Ok(state.storage.current_state(room).await?)
    } else {
        Ok(state.storage.state_at(room, upto).await?)
    }
}

async fn get_state_impl(
    state: &AppState,
    requester: &Requester,
    room: String,
    event_type: String,
    state_key: String,
) -> ApiResult {
    let events = state_events_visible(state, requester, &room).await?;
    let found = events
        .iter()
        .find(|e| e.event_type == event_type && e.state_key.as_deref() == Some(state_key.as_str()));
    match found {
        Some(event) => Ok(Json(
            serde_json::from_str(event.content.get())
                .map_err(|e| MatrixError::internal(e.to_string()))?,
        )),
        None => Err(MatrixError::new(404, ErrCode::NotFound, "Event not found.")),
    }
}

async fn get_state(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((room, event_type, state_key)): ApiPath<(String, String, String)>,
) -> ApiResult {
    get_state_impl(&state, &requester, room, event_type, state_key).await
}

async fn get_state_empty_key(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((room, event_type)): ApiPath<(String, String)>,
) -> ApiResult {
    get_state_impl(&state, &requester, room, event_type, String::new()).await
}

async fn all_state(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    let events = state_events_visible(&state, &requester, &room).await?;
    Ok(Json(Value::Array(
        serve_events(&state, &events, &requester, true).await?,
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
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<MembersQuery>,
) -> ApiResult {
    let events: Vec<StoredEvent> = state_events_visible(&state, &requester, &room)
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
        json!({ "chunk": serve_events(&state, &events, &requester, true).await? }),
    ))
}

async fn joined_members(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    let events = state_events_visible(&state, &requester, &room).await?;
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
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> ApiResult {
    check_room_id(&room)?;
    let backwards = match q.dir.as_deref() {
        Some("b") | None => true,
        Some("f") => false,
        Some(other) => {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("dir must be `b` or `f`, not `{other}`"),
            ))
        }
    };
    let upto = visible_upto(&state, &requester.user_id, &room).await?;
    let current = state.storage.current_position();
    let from = match &q.from {
        Some(token) => parse_token(token)?,
        None if backwards => current,
        None => 0,
    };
    let to = q.to.as_deref().map(parse_token).transpose()?;
    let limit = q.limit.unwrap_or(10).clamp(1, 1000);
    let mut events = if backwards {
        state
            .storage
            .room_messages(&room, from.min(upto), true, to, limit)
            .await?
    } else {
        let to = Some(to.unwrap_or(i64::MAX).min(upto));
        state
            .storage
            .room_messages(&room, from, false, to, limit)
            .await?
    };
    events.retain(|e| e.stream <= upto);
    let end = events.last().map(|e| {
        if backwards {
            format!("s{}", e.stream - 1)
        } else {
            format!("s{}", e.stream)
        }
    });
    let mut response = json!({
        "chunk": serve_events(&state, &events, &requester, true).await?,
        "start": format!("s{from}"),
    });
    if let Some(end) = end {
        response["end"] = json!(end);
    }
    Ok(Json(response))
}

async fn event(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((room, event_id)): ApiPath<(String, String)>,
) -> ApiResult {
    check_room_id(&room)?;
    let upto = visible_upto(&state, &requester.user_id, &room).await?;
    let event = state
        .storage
        .get_event(&event_id)
        .await?
        .filter(|e| e.room_id == room && e.stream <= upto)
        .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "Event not found."))?;
    let mut served = serve_events(&state, std::slice::from_ref(&event), &requester, true).await?;
    Ok(Json(served.pop().unwrap_or_default()))
}
