//! Server-side key backup: `/room_keys/version[/{version}]` and
//! `/room_keys/keys[/{room}[/{session}]]?version=`.

use super::extract::{ApiPath, ApiQuery, Auth, JsonBody};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::key_backup::KeyScope;
use crate::service::Requester;
use axon::ErrCode;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route(
            "/room_keys/version",
            get(current_version)
                .post(create_version)
                .delete(delete_current_version),
        )
        .route(
            "/room_keys/version/{version}",
            get(get_version).put(update_version).delete(delete_version),
        )
        .route(
            "/room_keys/keys",
            get(get_all).put(put_all).delete(delete_all),
        )
        .route(
            "/room_keys/keys/{room}",
            get(get_room).put(put_room).delete(delete_room),
        )
        .route(
            "/room_keys/keys/{room}/{session}",
            get(get_session).put(put_session).delete(delete_session),
        )
}

async fn current_version(State(hs): State<Arc<Homeserver>>, Auth(r): Auth) -> ApiResult {
    Ok(Json(hs.backup_version(&r.user_id, None).await?))
}

async fn create_version(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    Ok(Json(hs.create_backup_version(&r.user_id, body).await?))
}

async fn delete_current_version(State(hs): State<Arc<Homeserver>>, Auth(r): Auth) -> ApiResult {
    Ok(Json(hs.delete_backup_version(&r.user_id, None).await?))
}

async fn get_version(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiPath(version): ApiPath<String>,
) -> ApiResult {
    Ok(Json(hs.backup_version(&r.user_id, Some(&version)).await?))
}

async fn update_version(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiPath(version): ApiPath<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    Ok(Json(
        hs.update_backup_version(&r.user_id, &version, body).await?,
    ))
}

async fn delete_version(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiPath(version): ApiPath<String>,
) -> ApiResult {
    Ok(Json(
        hs.delete_backup_version(&r.user_id, Some(&version)).await?,
    ))
}

#[derive(serde::Deserialize)]
struct VersionQuery {
    version: Option<String>,
}

impl VersionQuery {
    fn required(self) -> Result<String, MatrixError> {
        self.version.ok_or_else(|| {
            MatrixError::new(
                400,
                ErrCode::MissingParam,
                "Missing string query parameter 'version'",
            )
        })
    }
}

/// The three shapes of `/room_keys/keys` share one handler per method.
enum Method {
    Get,
    Put(Value),
    Delete,
}

async fn keys(
    hs: &Homeserver,
    requester: &Requester,
    query: VersionQuery,
    scope: KeyScope,
    method: Method,
) -> ApiResult {
    let version = query.required()?;
    let user = &requester.user_id;
    Ok(Json(match method {
        Method::Get => hs.room_keys(user, &version, scope).await?,
        Method::Put(body) => hs.upload_room_keys(user, &version, scope, body).await?,
        Method::Delete => hs.delete_room_keys(user, &version, scope).await?,
    }))
}

fn room_scope(room: String) -> KeyScope {
    KeyScope {
        room: Some(room),
        session: None,
    }
}

fn session_scope((room, session): (String, String)) -> KeyScope {
    KeyScope {
        room: Some(room),
        session: Some(session),
    }
}

async fn get_all(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    keys(&hs, &r, q, KeyScope::default(), Method::Get).await
}

async fn put_all(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiQuery(q): ApiQuery<VersionQuery>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    keys(&hs, &r, q, KeyScope::default(), Method::Put(body)).await
}

async fn delete_all(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    keys(&hs, &r, q, KeyScope::default(), Method::Delete).await
}

async fn get_room(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    keys(&hs, &r, q, room_scope(room), Method::Get).await
}

async fn put_room(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    keys(&hs, &r, q, room_scope(room), Method::Put(body)).await
}

async fn delete_room(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    keys(&hs, &r, q, room_scope(room), Method::Delete).await
}

async fn get_session(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiPath(path): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    keys(&hs, &r, q, session_scope(path), Method::Get).await
}

async fn put_session(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiPath(path): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<VersionQuery>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    keys(&hs, &r, q, session_scope(path), Method::Put(body)).await
}

async fn delete_session(
    State(hs): State<Arc<Homeserver>>,
    Auth(r): Auth,
    ApiPath(path): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult {
    keys(&hs, &r, q, session_scope(path), Method::Delete).await
}
