//! Room aliases, room directory visibility and the public room list.

use super::extract::{ApiPath, ApiQuery, Auth, JsonBody};
use super::rooms::room_id;
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::Actor;
use axon::callbacks::Visibility;
use axon::ErrCode;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ruma::{OwnedRoomAliasId, RoomAliasId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route(
            "/directory/room/{alias}",
            get(get_alias).put(put_alias).delete(delete_alias),
        )
        .route(
            "/directory/list/room/{room}",
            get(get_visibility).put(put_visibility),
        )
        .route(
            "/publicRooms",
            get(public_rooms_get).post(public_rooms_post),
        )
        .route("/rooms/{room}/aliases", get(room_aliases))
}

/// `GET /rooms/{room}/aliases`: the room's local aliases, for those who may
/// read the room.
async fn room_aliases(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    let room = room_id(&room)?;
    hs.room_access(&requester.user_id, &room).await?;
    Ok(Json(
        json!({ "aliases": hs.storage.aliases_of(&room).await? }),
    ))
}

/// A room alias from a request; `M_INVALID_PARAM` if it is not one.
fn alias_id(alias: &str) -> Result<OwnedRoomAliasId, MatrixError> {
    RoomAliasId::parse(alias).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid room alias `{alias}`: {e}"),
        )
    })
}

#[derive(Deserialize)]
struct AliasBody {
    room_id: String,
}

async fn put_alias(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(alias): ApiPath<String>,
    JsonBody(body): JsonBody<AliasBody>,
) -> ApiResult {
    let alias = alias_id(&alias)?;
    let room = room_id(&body.room_id)?;
    hs.create_alias(&Actor::client(&requester), &alias, &room)
        .await?;
    Ok(Json(json!({})))
}

async fn get_alias(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(alias): ApiPath<String>,
) -> ApiResult {
    let alias = alias_id(&alias)?;
    let (room_id, servers) = hs.resolve_alias(&alias).await?;
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

async fn delete_alias(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(alias): ApiPath<String>,
) -> ApiResult {
    let alias = alias_id(&alias)?;
    hs.delete_alias(&Actor::client(&requester), &alias).await?;
    Ok(Json(json!({})))
}

fn unknown_room() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "Unknown room")
}

async fn get_visibility(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    let room = room_id(&room).map_err(|_| unknown_room())?;
    match hs.storage.room_snapshot(&room).await? {
        Some(snapshot) => Ok(Json(
            json!({ "visibility": if snapshot.is_public { "public" } else { "private" } }),
        )),
        None => Err(unknown_room()),
    }
}

#[derive(Deserialize)]
struct VisibilityBody {
    visibility: Visibility,
}

async fn put_visibility(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<VisibilityBody>,
) -> ApiResult {
    let room = room_id(&room).map_err(|_| unknown_room())?;
    hs.set_room_visibility(&Actor::client(&requester), &room, body.visibility)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
struct PublicRoomsQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    since: Option<String>,
}

#[derive(Deserialize, Default)]
struct PublicRoomsBody {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    filter: Option<Value>,
}

async fn public_rooms_get(
    State(hs): State<Arc<Homeserver>>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<PublicRoomsQuery>,
) -> ApiResult {
    public_rooms(&hs, q.limit, q.since, None).await
}

async fn public_rooms_post(
    State(hs): State<Arc<Homeserver>>,
    _auth: Auth,
    JsonBody(body): JsonBody<PublicRoomsBody>,
) -> ApiResult {
    let term = body
        .filter
        .as_ref()
        .and_then(|f| f.get("generic_search_term"))
        .and_then(|t| t.as_str())
        .map(str::to_lowercase);
    public_rooms(&hs, body.limit, body.since, term).await
}

async fn public_rooms(
    hs: &Homeserver,
    limit: Option<usize>,
    since: Option<String>,
    term: Option<String>,
) -> ApiResult {
    let rooms = hs.storage.public_rooms().await?;
    let mut chunk = Vec::new();
    for room in rooms {
        let mut entry = json!({
            "room_id": room.room_id,
            "num_joined_members": room.num_joined_members,
            "world_readable": false,
            "guest_can_join": false,
            "join_rule": "invite",
        });
        for (event_type, content) in &room.state {
            match event_type.as_str() {
                "m.room.name" => entry["name"] = content["name"].clone(),
                "m.room.topic" => entry["topic"] = content["topic"].clone(),
                "m.room.canonical_alias" => entry["canonical_alias"] = content["alias"].clone(),
                "m.room.avatar" => entry["avatar_url"] = content["url"].clone(),
                "m.room.join_rules" => entry["join_rule"] = content["join_rule"].clone(),
                "m.room.history_visibility" => {
                    entry["world_readable"] =
                        json!(content["history_visibility"] == "world_readable")
                }
                "m.room.guest_access" => {
                    entry["guest_can_join"] = json!(content["guest_access"] == "can_join")
                }
                "m.room.create" => {
                    if let Some(t) = content.get("type") {
                        entry["room_type"] = t.clone();
                    }
                }
                _ => {}
            }
        }
        if let Some(term) = &term {
            let haystack = format!(
                "{} {} {}",
                entry["name"].as_str().unwrap_or_default(),
                entry["topic"].as_str().unwrap_or_default(),
                entry["canonical_alias"].as_str().unwrap_or_default()
            )
            .to_lowercase();
            if !haystack.contains(term.as_str()) {
                continue;
            }
        }
        chunk.push(entry);
    }
    let total = chunk.len();
    let start = match since {
        Some(token) => token
            .trim_start_matches('p')
            .parse::<usize>()
            .map_err(|_| MatrixError::new(400, ErrCode::InvalidParam, "invalid since token"))?,
        None => 0,
    };
    let limit = limit.unwrap_or(usize::MAX).max(1);
    let page: Vec<Value> = chunk.into_iter().skip(start).take(limit).collect();
    let mut response = json!({ "chunk": page, "total_room_count_estimate": total });
    // Without a limit, `start + limit` would wrap around to before `start`.
    let end = start.saturating_add(limit);
    if end < total {
        response["next_batch"] = json!(format!("p{end}"));
    }
    if start > 0 {
        response["prev_batch"] = json!(format!("p{}", start.saturating_sub(limit)));
    }
    Ok(Json(response))
}
