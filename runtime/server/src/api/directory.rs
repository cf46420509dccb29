//! Room aliases, room directory visibility and the public room list.

use super::extract::{ApiPath, ApiQuery, Auth, JsonBody};
use super::rooms::visible_upto;
use super::{ApiResult, AppState, MatrixError};
use crate::events::PowerLevels;
use crate::storage::StorageError;
use axon::callbacks::SpamCheck;
use axon::ErrCode;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
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
}

fn local_alias(state: &AppState, alias: &str) -> Result<(), MatrixError> {
    let parsed = ruma::RoomAliasId::parse(alias).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid room alias `{alias}`: {e}"),
        )
    })?;
    if parsed.server_name().as_str() != state.server_name() {
        return Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            "Room alias must be local",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct AliasBody {
    room_id: String,
}

async fn put_alias(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(alias): ApiPath<String>,
    JsonBody(body): JsonBody<AliasBody>,
) -> ApiResult {
    local_alias(&state, &alias)?;
    if !state.storage.room_exists(&body.room_id).await? {
        return Err(MatrixError::new(404, ErrCode::NotFound, "Room not found"));
    }
    visible_upto(&state, &requester.user_id, &body.room_id).await?;
    if let (Ok(user), Ok(parsed)) = (
        ruma::UserId::parse(&requester.user_id),
        ruma::RoomAliasId::parse(&alias),
    ) {
        if let SpamCheck::Deny {
            errcode,
            extra_fields,
        } = state
            .callbacks
            .spam_checker
            .user_may_create_room_alias(&user, &parsed)
            .await?
        {
            let mut error = MatrixError::new(
                403,
                errcode,
                "This user is not permitted to create this alias",
            );
            error.extra_fields = extra_fields;
            return Err(error);
        }
    }
    match state
        .storage
        .create_alias(&alias, &body.room_id, &requester.user_id)
        .await
    {
        Ok(()) => Ok(Json(json!({}))),
        Err(StorageError::Conflict(_)) => Err(MatrixError::new(
            409,
            ErrCode::Unknown,
            format!("Room alias {alias} already exists"),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn get_alias(
    State(state): State<Arc<AppState>>,
    ApiPath(alias): ApiPath<String>,
) -> ApiResult {
    ruma::RoomAliasId::parse(&alias).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid room alias `{alias}`: {e}"),
        )
    })?;
    match state.storage.get_alias(&alias).await? {
        Some((room_id, _)) => Ok(Json(
            json!({ "room_id": room_id, "servers": [state.server_name()] }),
        )),
        None => Err(MatrixError::new(
            404,
            ErrCode::NotFound,
            format!("Room alias {alias} not found"),
        )),
    }
}

async fn delete_alias(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(alias): ApiPath<String>,
) -> ApiResult {
    local_alias(&state, &alias)?;
    let Some((room_id, creator)) = state.storage.get_alias(&alias).await? else {
        return Err(MatrixError::new(
            404,
            ErrCode::NotFound,
            format!("Room alias {alias} not found"),
        ));
    };
    let allowed = creator == requester.user_id || requester.admin || {
        match state.storage.room_snapshot(&room_id).await? {
            Some(snapshot) => {
                let levels = PowerLevels::of(&snapshot);
                levels.user_level(&requester.user_id)
                    >= levels.event_level("m.room.canonical_alias", true)
            }
            None => false,
        }
    };
    if !allowed {
        return Err(MatrixError::forbidden(
            "You don't have permission to delete the alias.",
        ));
    }
    state.storage.delete_alias(&alias).await?;
    Ok(Json(json!({})))
}

async fn get_visibility(
    State(state): State<Arc<AppState>>,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    match state.storage.room_snapshot(&room).await? {
        Some(snapshot) => Ok(Json(
            json!({ "visibility": if snapshot.is_public { "public" } else { "private" } }),
        )),
        None => Err(MatrixError::new(404, ErrCode::NotFound, "Unknown room")),
    }
}

#[derive(Deserialize)]
struct VisibilityBody {
    visibility: axon::callbacks::Visibility,
}

async fn put_visibility(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<VisibilityBody>,
) -> ApiResult {
    let snapshot = state
        .storage
        .room_snapshot(&room)
        .await?
        .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "Unknown room"))?;
    let levels = PowerLevels::of(&snapshot);
    if crate::events::membership_of(&snapshot, &requester.user_id) != "join"
        || levels.user_level(&requester.user_id)
            < levels.event_level("m.room.canonical_alias", true)
    {
        return Err(MatrixError::forbidden(
            "You don't have permission to change the visibility of this room",
        ));
    }
    let public = body.visibility == axon::callbacks::Visibility::Public;
    if public {
        if let (Ok(user), Ok(room_id)) = (
            ruma::UserId::parse(&requester.user_id),
            ruma::RoomId::parse(&room),
        ) {
            if !requester.admin {
                if let SpamCheck::Deny {
                    errcode,
                    extra_fields,
                } = state
                    .callbacks
                    .spam_checker
                    .user_may_publish_room(&user, &room_id)
                    .await?
                {
                    let mut error = MatrixError::new(403, errcode, "Not allowed to publish room");
                    error.extra_fields = extra_fields;
                    return Err(error);
                }
            }
        }
    }
    if let Ok(room_id) = ruma::RoomId::parse(&room) {
        let rules = &state.callbacks.third_party_rules;
        if !rules.check_visibility_can_be_modified.is_empty()
            && !rules
                .check_visibility_can_be_modified(
                    &room_id,
                    &crate::events::state_map(&snapshot),
                    body.visibility,
                )
                .await
        {
            return Err(MatrixError::new(
                403,
                ErrCode::Unknown,
                "Not allowed to publish room",
            ));
        }
    }
    state.storage.set_room_public(&room, public).await?;
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
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<PublicRoomsQuery>,
) -> ApiResult {
    public_rooms(&state, q.limit, q.since, None).await
}

async fn public_rooms_post(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    JsonBody(body): JsonBody<PublicRoomsBody>,
) -> ApiResult {
    let term = body
        .filter
        .as_ref()
        .and_then(|f| f.get("generic_search_term"))
        .and_then(|t| t.as_str())
        .map(str::to_lowercase);
    public_rooms(&state, body.limit, body.since, term).await
}

async fn public_rooms(
    state: &AppState,
    limit: Option<usize>,
    since: Option<String>,
    term: Option<String>,
) -> ApiResult {
    let rooms = state.storage.public_rooms().await?;
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
    if start + limit < total {
        response["next_batch"] = json!(format!("p{}", start + limit));
    }
    if start > 0 {
        response["prev_batch"] = json!(format!("p{}", start.saturating_sub(limit)));
    }
    Ok(Json(response))
}
