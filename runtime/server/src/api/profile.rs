//! Profiles, the user directory, presence, account data and filters.

use super::extract::{ApiPath, Auth, JsonBody};
use super::rooms::{room_id, user_id};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::{Actor, ProfileChange, Requester};
use axon::ErrCode;
use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/profile/{user}", get(get_profile))
        .route(
            "/profile/{user}/displayname",
            get(get_displayname).put(put_displayname),
        )
        .route(
            "/profile/{user}/avatar_url",
            get(get_avatar_url).put(put_avatar_url),
        )
        .route("/user_directory/search", post(search_users))
        .route(
            "/presence/{user}/status",
            get(get_presence).put(put_presence),
        )
        .route(
            "/user/{user}/account_data/{data_type}",
            get(get_global_account_data).put(put_global_account_data),
        )
        .route(
            "/user/{user}/rooms/{room}/account_data/{data_type}",
            get(get_room_account_data).put(put_room_account_data),
        )
        .route("/user/{user}/rooms/{room}/tags", get(get_tags))
        .route(
            "/user/{user}/rooms/{room}/tags/{tag}",
            put(put_tag).delete(delete_tag),
        )
        .route("/user/{user}/filter", post(put_filter))
        .route("/user/{user}/filter/{filter_id}", get(get_filter))
        .route("/capabilities", get(capabilities))
}

async fn capabilities(State(hs): State<Arc<Homeserver>>, _auth: Auth) -> ApiResult {
    let passwords = &hs.config.password_config;
    let change_password = passwords.enabled && passwords.localdb_enabled;
    let available: Map<String, Value> = crate::events::SUPPORTED_ROOM_VERSIONS
        .iter()
        .map(|v| (v.to_string(), json!("stable")))
        .collect();
    Ok(Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": change_password },
            "m.room_versions": { "default": "10", "available": available },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
        }
    })))
}

async fn profile_of(hs: &Homeserver, user: &str) -> Result<crate::storage::UserRow, MatrixError> {
    hs.storage
        .get_user(&user_id(user)?)
        .await?
        .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "Profile was not found"))
}

async fn get_profile(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    Ok(Json(Value::Object(hs.profile(&user_id(&user)?).await?)))
}

async fn get_displayname(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    let profile = hs.profile(&user_id(&user)?).await?;
    Ok(Json(json!({ "displayname": profile.get("displayname") })))
}

async fn get_avatar_url(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    let profile = hs.profile(&user_id(&user)?).await?;
    Ok(Json(json!({ "avatar_url": profile.get("avatar_url") })))
}

#[derive(Deserialize)]
struct DisplaynameBody {
    #[serde(default)]
    displayname: Option<String>,
}

async fn put_displayname(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
    JsonBody(body): JsonBody<DisplaynameBody>,
) -> ApiResult {
    let change = ProfileChange {
        displayname: Some(body.displayname),
        ..Default::default()
    };
    hs.set_profile(&Actor::client(&requester), &user_id(&user)?, change)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct AvatarBody {
    #[serde(default)]
    avatar_url: Option<String>,
}

async fn put_avatar_url(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
    JsonBody(body): JsonBody<AvatarBody>,
) -> ApiResult {
    let change = ProfileChange {
        avatar_url: Some(body.avatar_url),
        ..Default::default()
    };
    hs.set_profile(&Actor::client(&requester), &user_id(&user)?, change)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct SearchBody {
    search_term: String,
    #[serde(default)]
    limit: Option<u32>,
}

async fn search_users(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<SearchBody>,
) -> ApiResult {
    let limit = body.limit.unwrap_or(10).clamp(1, 100);
    let (rows, limited) = hs
        .search_users(&requester.user_id, &body.search_term, limit)
        .await?;
    let results: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({ "user_id": r.user_id, "display_name": r.displayname, "avatar_url": r.avatar_url }))
        .collect();
    Ok(Json(json!({ "results": results, "limited": limited })))
}

#[derive(Deserialize)]
struct PresenceBody {
    presence: String,
    #[serde(default)]
    status_msg: Option<String>,
}

async fn put_presence(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
    JsonBody(body): JsonBody<PresenceBody>,
) -> ApiResult {
    if requester.user_id.as_str() != user {
        return Err(MatrixError::forbidden(
            "Can only set your own presence state",
        ));
    }
    hs.set_presence(&requester.user_id, &body.presence, Some(body.status_msg))
        .await?;
    Ok(Json(json!({})))
}

async fn get_presence(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    let row = profile_of(&hs, &user).await?;
    let now = axon::time::now_ms();
    Ok(Json(
        match hs.presence_of(&requester.user_id, &row.user_id).await? {
            Some(p) => {
                let mut body = json!({
                    "presence": p.presence,
                    "last_active_ago": (now - p.last_active_ts).max(0),
                    "currently_active": p.presence == "online",
                });
                if let Some(msg) = p.status_msg {
                    body["status_msg"] = json!(msg);
                }
                body
            }
            None => json!({ "presence": "offline" }),
        },
    ))
}

async fn put_account_data(
    hs: &Homeserver,
    requester: &Requester,
    user: String,
    room: Option<String>,
    data_type: String,
    content: Map<String, Value>,
) -> ApiResult {
    let user = user_id(&user)?;
    let room = room.as_deref().map(room_id).transpose()?;
    hs.put_account_data(
        &Actor::client(requester),
        &user,
        room.as_deref(),
        &data_type,
        content,
    )
    .await?;
    Ok(Json(json!({})))
}

async fn get_account_data(
    hs: &Homeserver,
    requester: &Requester,
    user: String,
    room: Option<String>,
    data_type: String,
) -> ApiResult {
    if requester.user_id.as_str() != user {
        return Err(MatrixError::forbidden(
            "Cannot get account data for other users.",
        ));
    }
    let room = room.as_deref().map(room_id).transpose()?;
    match hs
        .storage
        .get_account_data(&requester.user_id, room.as_deref(), &data_type)
        .await?
    {
        Some(content) => Ok(Json(content)),
        None => Err(MatrixError::new(
            404,
            ErrCode::NotFound,
            "Account data not found",
        )),
    }
}

async fn put_global_account_data(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((user, data_type)): ApiPath<(String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    put_account_data(&hs, &requester, user, None, data_type, content).await
}

async fn get_global_account_data(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((user, data_type)): ApiPath<(String, String)>,
) -> ApiResult {
    get_account_data(&hs, &requester, user, None, data_type).await
}

async fn put_room_account_data(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((user, room, data_type)): ApiPath<(String, String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    put_account_data(&hs, &requester, user, Some(room), data_type, content).await
}

async fn get_room_account_data(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((user, room, data_type)): ApiPath<(String, String, String)>,
) -> ApiResult {
    get_account_data(&hs, &requester, user, Some(room), data_type).await
}

async fn get_tags(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((user, room)): ApiPath<(String, String)>,
) -> ApiResult {
    let (user, room) = (user_id(&user)?, room_id(&room)?);
    Ok(Json(
        hs.room_tags(&Actor::client(&requester), &user, &room)
            .await?,
    ))
}

async fn put_tag(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((user, room, tag)): ApiPath<(String, String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    let (user, room) = (user_id(&user)?, room_id(&room)?);
    hs.set_room_tag(
        &Actor::client(&requester),
        &user,
        &room,
        &tag,
        Some(content),
    )
    .await?;
    Ok(Json(json!({})))
}

async fn delete_tag(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((user, room, tag)): ApiPath<(String, String, String)>,
) -> ApiResult {
    let (user, room) = (user_id(&user)?, room_id(&room)?);
    hs.set_room_tag(&Actor::client(&requester), &user, &room, &tag, None)
        .await?;
    Ok(Json(json!({})))
}

async fn put_filter(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
    JsonBody(filter): JsonBody<Value>,
) -> ApiResult {
    if requester.user_id.as_str() != user {
        return Err(MatrixError::forbidden(
            "Can only create filters for your own user",
        ));
    }
    let id = hs.put_filter(&requester.user_id, filter).await?;
    Ok(Json(json!({ "filter_id": id.to_string() })))
}

async fn get_filter(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((user, filter_id)): ApiPath<(String, String)>,
) -> ApiResult {
    if requester.user_id.as_str() != user {
        return Err(MatrixError::forbidden("Cannot get filters for other users"));
    }
    let id: i64 = filter_id
        .parse()
        .map_err(|_| MatrixError::new(400, ErrCode::InvalidParam, "invalid filter ID"))?;
    match hs.storage.get_filter(&requester.user_id, id).await? {
        Some(filter) => Ok(Json(filter)),
        None => Err(MatrixError::new(404, ErrCode::NotFound, "No such filter")),
    }
}
