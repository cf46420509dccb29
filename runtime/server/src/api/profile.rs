//! Profiles, the user directory, presence, account data and filters.

use super::extract::{ApiPath, Auth, JsonBody, Requester};
use super::{now_ms, ApiResult, AppState, MatrixError};
use axon::ErrCode;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
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
        .route("/user/{user}/filter", post(put_filter))
        .route("/user/{user}/filter/{filter_id}", get(get_filter))
        .route("/capabilities", get(capabilities))
}

async fn capabilities(_auth: Auth) -> ApiResult {
    let available: Map<String, Value> = crate::events::SUPPORTED_ROOM_VERSIONS
        .iter()
        .map(|v| (v.to_string(), json!("stable")))
        .collect();
    Ok(Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": false },
            "m.room_versions": { "default": "10", "available": available },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
        }
    })))
}

async fn profile_of(state: &AppState, user: &str) -> Result<crate::storage::UserRow, MatrixError> {
    ruma::UserId::parse(user).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid user ID `{user}`: {e}"),
        )
    })?;
    state
        .storage
        .get_user(user)
        .await?
        .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "Profile was not found"))
}

async fn get_profile(
    State(state): State<Arc<AppState>>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    let row = profile_of(&state, &user).await?;
    let mut body = Map::new();
    if let Some(name) = row.displayname {
        body.insert("displayname".into(), json!(name));
    }
    if let Some(url) = row.avatar_url {
        body.insert("avatar_url".into(), json!(url));
    }
    Ok(Json(Value::Object(body)))
}

async fn get_displayname(
    State(state): State<Arc<AppState>>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    let row = profile_of(&state, &user).await?;
    Ok(Json(json!({ "displayname": row.displayname })))
}

async fn get_avatar_url(
    State(state): State<Arc<AppState>>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    let row = profile_of(&state, &user).await?;
    Ok(Json(json!({ "avatar_url": row.avatar_url })))
}

fn only_self(requester: &Requester, user: &str, what: &str) -> Result<(), MatrixError> {
    if requester.user_id != user {
        return Err(MatrixError::forbidden(format!(
            "Cannot set another user's {what}"
        )));
    }
    Ok(())
}

/// After a profile change: it shows in every room the user is in (as in
/// Synapse), and `on_profile_update` hears of it.
pub(crate) async fn profile_changed(state: &AppState, user: &str) -> Result<(), MatrixError> {
    refresh_member_events(state, user).await?;
    let rules = &state.callbacks.third_party_rules;
    if !rules.on_profile_update.is_empty() {
        if let (Ok(user_id), Some(row)) = (
            ruma::UserId::parse(user),
            state.storage.get_user(user).await?,
        ) {
            let profile = axon::callbacks::ProfileInfo {
                display_name: row.displayname,
                avatar_url: row.avatar_url,
            };
            rules
                .on_profile_update(&user_id, &profile, false, false)
                .await;
        }
    }
    Ok(())
}

async fn refresh_member_events(state: &AppState, user: &str) -> Result<(), MatrixError> {
    for m in state.storage.memberships(user).await? {
        if m.membership == "join" {
            let row = state.storage.get_user(user).await?;
            let mut content = Map::new();
            content.insert("membership".into(), json!("join"));
            if let Some(row) = row {
                if let Some(name) = row.displayname {
                    content.insert("displayname".into(), json!(name));
                }
                if let Some(url) = row.avatar_url {
                    content.insert("avatar_url".into(), json!(url));
                }
            }
            let draft = crate::events::EventDraft {
                sender: user.to_string(),
                event_type: "m.room.member".into(),
                state_key: Some(user.to_string()),
                content,
            };
            if let Err(e) = super::send_event(state, &m.room_id, draft, Default::default()).await {
                tracing::warn!("profile update of {user} in {}: {e}", m.room_id);
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct DisplaynameBody {
    #[serde(default)]
    displayname: Option<String>,
}

async fn put_displayname(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
    JsonBody(body): JsonBody<DisplaynameBody>,
) -> ApiResult {
    only_self(&requester, &user, "displayname")?;
    if body.displayname.as_ref().is_some_and(|n| n.len() > 256) {
        return Err(MatrixError::new(
            400,
            ErrCode::BadJson,
            "Displayname is too long (max 256)",
        ));
    }
    state
        .storage
        .set_displayname(&user, body.displayname)
        .await?;
    profile_changed(&state, &user).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct AvatarBody {
    #[serde(default)]
    avatar_url: Option<String>,
}

async fn put_avatar_url(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
    JsonBody(body): JsonBody<AvatarBody>,
) -> ApiResult {
    only_self(&requester, &user, "avatar_url")?;
    state.storage.set_avatar_url(&user, body.avatar_url).await?;
    profile_changed(&state, &user).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct SearchBody {
    search_term: String,
    #[serde(default)]
    limit: Option<u32>,
}

async fn search_users(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<SearchBody>,
) -> ApiResult {
    let limit = body.limit.unwrap_or(10).clamp(1, 100);
    let mut rows = state
        .storage
        .search_users(&requester.user_id, &body.search_term, limit)
        .await?;
    // Each candidate goes past the spam checker, which may hide it.
    let spam = &state.callbacks.spam_checker;
    if !spam.check_username_for_spam.is_empty() {
        if let Ok(searcher) = ruma::UserId::parse(&requester.user_id) {
            let mut kept = Vec::with_capacity(rows.len());
            for row in rows {
                let Ok(user_id) = ruma::UserId::parse(&row.user_id) else {
                    continue;
                };
                let profile = axon::callbacks::UserProfile {
                    user_id,
                    display_name: row.displayname.clone(),
                    avatar_url: row.avatar_url.clone(),
                };
                if !spam.check_username_for_spam(&profile, &searcher).await? {
                    kept.push(row);
                }
            }
            rows = kept;
        }
    }
    let limited = rows.len() > limit as usize;
    rows.truncate(limit as usize);
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
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
    JsonBody(body): JsonBody<PresenceBody>,
) -> ApiResult {
    if requester.user_id != user {
        return Err(MatrixError::forbidden(
            "Can only set your own presence state",
        ));
    }
    if !matches!(body.presence.as_str(), "online" | "offline" | "unavailable") {
        return Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("Invalid presence state `{}`", body.presence),
        ));
    }
    state
        .storage
        .set_presence(&user, &body.presence, body.status_msg, now_ms())
        .await?;
    Ok(Json(json!({})))
}

async fn get_presence(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    profile_of(&state, &user).await?;
    let now = now_ms();
    Ok(Json(match state.storage.get_presence(&user).await? {
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
    }))
}

fn own_account_data(requester: &Requester, user: &str) -> Result<(), MatrixError> {
    if requester.user_id != user {
        return Err(MatrixError::forbidden(
            "Cannot add account data for other users.",
        ));
    }
    Ok(())
}

async fn put_account_data(
    state: &AppState,
    requester: &Requester,
    user: String,
    room: Option<String>,
    data_type: String,
    content: Map<String, Value>,
) -> ApiResult {
    own_account_data(requester, &user)?;
    if let Some(room) = &room {
        if !room.starts_with('!') {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("invalid room ID `{room}`"),
            ));
        }
    }
    if data_type == "m.fully_read" || data_type == "m.push_rules" {
        return Err(MatrixError::new(
            400,
            ErrCode::BadJson,
            format!("Cannot set {data_type} through this API."),
        ));
    }
    state
        .storage
        .put_account_data(
            &user,
            room.as_deref(),
            &data_type,
            Value::Object(content.clone()),
        )
        .await?;
    if let Ok(user_id) = ruma::UserId::parse(&user) {
        let room_id = room.as_deref().and_then(|r| ruma::RoomId::parse(r).ok());
        state
            .callbacks
            .account_data
            .on_account_data_updated(&user_id, room_id.as_deref(), &data_type, &content)
            .await;
    }
    Ok(Json(json!({})))
}

async fn get_account_data(
    state: &AppState,
    requester: &Requester,
    user: String,
    room: Option<String>,
    data_type: String,
) -> ApiResult {
    if requester.user_id != user {
        return Err(MatrixError::forbidden(
            "Cannot get account data for other users.",
        ));
    }
    match state
        .storage
        .get_account_data(&user, room.as_deref(), &data_type)
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
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((user, data_type)): ApiPath<(String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    put_account_data(&state, &requester, user, None, data_type, content).await
}

async fn get_global_account_data(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((user, data_type)): ApiPath<(String, String)>,
) -> ApiResult {
    get_account_data(&state, &requester, user, None, data_type).await
}

async fn put_room_account_data(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((user, room, data_type)): ApiPath<(String, String, String)>,
    JsonBody(content): JsonBody<Map<String, Value>>,
) -> ApiResult {
    put_account_data(&state, &requester, user, Some(room), data_type, content).await
}

async fn get_room_account_data(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((user, room, data_type)): ApiPath<(String, String, String)>,
) -> ApiResult {
    get_account_data(&state, &requester, user, Some(room), data_type).await
}

async fn put_filter(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
    JsonBody(filter): JsonBody<Value>,
) -> ApiResult {
    if requester.user_id != user {
        return Err(MatrixError::forbidden(
            "Can only create filters for your own user",
        ));
    }
    let id = state.storage.put_filter(&user, filter).await?;
    Ok(Json(json!({ "filter_id": id.to_string() })))
}

async fn get_filter(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath((user, filter_id)): ApiPath<(String, String)>,
) -> ApiResult {
    if requester.user_id != user {
        return Err(MatrixError::forbidden("Cannot get filters for other users"));
    }
    let id: i64 = filter_id
        .parse()
        .map_err(|_| MatrixError::new(400, ErrCode::InvalidParam, "invalid filter ID"))?;
    match state.storage.get_filter(&user, id).await? {
        Some(filter) => Ok(Json(filter)),
        None => Err(MatrixError::new(404, ErrCode::NotFound, "No such filter")),
    }
}
