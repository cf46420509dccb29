//! The client API's legacy reads, which the Matrix test suite and old
//! clients still call: `GET /initialSync`, `GET /rooms/{room}/initialSync`
//! and the event stream `GET /events`. Each is `/sync` (the same
//! computation, visibility and ignoring rules) in the old shape.

use super::extract::{ApiPath, ApiQuery, Auth};
use super::rooms::parse_token;
use super::sync::{compute, long_poll, SyncFilter};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/initialSync", get(initial_sync))
        .route("/rooms/{room}/initialSync", get(room_initial_sync))
        .route("/events", get(events))
}

fn events_of(section: &Value, key: &str) -> Vec<Value> {
    section[key]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// One room of `/sync` in the legacy shape: the latest messages, the
/// room's current state (the state before the timeline, updated by the
/// timeline's state events), its account data and receipts.
fn legacy_room(room_id: &str, membership: &str, room: &Value, end: &str) -> Value {
    let with_room_id = |mut e: Value| {
        e["room_id"] = json!(room_id);
        e
    };
    let timeline = events_of(room, "timeline");
    let mut state: Vec<Value> = events_of(room, "state");
    for event in timeline.iter().filter(|e| e.get("state_key").is_some()) {
        state.retain(|s| s["type"] != event["type"] || s["state_key"] != event["state_key"]);
        state.push(event.clone());
    }
    let receipts: Vec<Value> = events_of(room, "ephemeral")
        .into_iter()
        .filter(|e| e["type"] == "m.receipt")
        .map(with_room_id)
        .collect();
    json!({
        "room_id": room_id,
        "membership": membership,
        "messages": {
            "chunk": timeline.into_iter().map(with_room_id).collect::<Vec<_>>(),
            "start": room["timeline"]["prev_batch"],
            "end": end,
        },
        "state": state.into_iter().map(with_room_id).collect::<Vec<_>>(),
        "account_data": events_of(room, "account_data"),
        "receipts": receipts,
    })
}

#[derive(Deserialize)]
struct InitialSyncQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    archived: Option<bool>,
}

async fn initial_sync(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiQuery(q): ApiQuery<InitialSyncQuery>,
) -> ApiResult {
    let filter = SyncFilter {
        timeline_limit: q.limit.unwrap_or(10).clamp(1, 1000),
        lazy_load_members: false,
    };
    let upto = hs.storage.current_position();
    let (sync, _, _) = Box::pin(compute(&hs, &requester, None, upto, false, &filter)).await?;
    let end = sync["next_batch"].as_str().unwrap_or_default().to_string();
    let mut rooms = Vec::new();
    for (id, room) in sync["rooms"]["join"].as_object().into_iter().flatten() {
        rooms.push(legacy_room(id, "join", room, &end));
    }
    for (id, room) in sync["rooms"]["invite"].as_object().into_iter().flatten() {
        let state = events_of(room, "invite_state");
        let inviter = state
            .iter()
            .find(|e| e["type"] == "m.room.member" && e["state_key"] == requester.user_id.as_str())
            .map(|e| e["sender"].clone());
        rooms.push(json!({ "room_id": id, "membership": "invite", "invite": { "sender": inviter }, "state": state }));
    }
    if q.archived == Some(true) {
        for (id, room) in sync["rooms"]["leave"].as_object().into_iter().flatten() {
            rooms.push(legacy_room(id, "leave", room, &end));
        }
    }
    Ok(Json(json!({
        "end": end,
        "rooms": rooms,
        "presence": events_of(&sync, "presence"),
        "account_data": events_of(&sync, "account_data"),
    })))
}

async fn room_initial_sync(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    let room = super::rooms::room_id(&room)?;
    hs.room_access(&requester.user_id, &room).await?;
    let filter = SyncFilter {
        timeline_limit: 10,
        lazy_load_members: false,
    };
    let upto = hs.storage.current_position();
    let (sync, _, _) = Box::pin(compute(&hs, &requester, None, upto, false, &filter)).await?;
    let end = sync["next_batch"].as_str().unwrap_or_default().to_string();
    let found = ["join", "leave"]
        .into_iter()
        .find_map(|m| sync["rooms"][m].get(room.as_str()).map(|r| (m, r)));
    let Some((membership, synced)) = found else {
        return Err(MatrixError::forbidden(format!(
            "User {} not in room {room}",
            requester.user_id
        )));
    };
    let mut body = legacy_room(room.as_str(), membership, synced, &end);
    let presence: Vec<Value> = events_of(&sync, "presence");
    body["presence"] = json!(presence);
    let visibility = if hs
        .storage
        .room_snapshot(&room)
        .await?
        .is_some_and(|s| s.is_public)
    {
        "public"
    } else {
        "private"
    };
    body["visibility"] = json!(visibility);
    Ok(Json(body))
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

/// `GET /events`: what happened after `from` (now, without it) in the
/// user's rooms, waiting up to `timeout` for something to happen.
async fn events(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult {
    let since = match q.from.as_deref() {
        Some(token) => parse_token(token)?,
        None => hs.storage.current_position(),
    };
    let filter = SyncFilter {
        timeline_limit: 100,
        lazy_load_members: false,
    };
    let timeout = Duration::from_millis(q.timeout.unwrap_or(30_000));
    let sync = long_poll(&hs, &requester, Some(since), false, &filter, timeout).await?;
    let mut chunk = Vec::new();
    for section in ["join", "leave"] {
        for (id, room) in sync["rooms"][section].as_object().into_iter().flatten() {
            for key in ["timeline", "ephemeral"] {
                for mut event in events_of(room, key) {
                    event["room_id"] = json!(id);
                    chunk.push(event);
                }
            }
        }
    }
    chunk.extend(events_of(&sync, "presence"));
    Ok(Json(json!({
        "start": format!("s{since}"),
        "end": sync["next_batch"],
        "chunk": chunk,
    })))
}
