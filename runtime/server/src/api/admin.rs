//! Synapse's admin API for accounts (`/_synapse/admin/v2/users/…`): how an
//! operator creates a user, makes them admin or binds an email to them.

use super::extract::{ApiPath, Auth, JsonBody};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::{Actor, AdminUserChange, Requester};
use crate::storage::UserRow;
use axon::ErrCode;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new().route(
        "/_synapse/admin/v2/users/{user_id}",
        get(get_user).put(put_user),
    )
}

fn require_admin(requester: &Requester) -> Result<(), MatrixError> {
    if requester.admin {
        Ok(())
    } else {
        Err(MatrixError::forbidden("You are not a server admin"))
    }
}

/// A local user ID from the path; 400 for a remote or malformed one.
fn local_user(hs: &Homeserver, user_id: &str) -> Result<ruma::OwnedUserId, MatrixError> {
    let id = ruma::UserId::parse(user_id).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid user ID `{user_id}`: {e}"),
        )
    })?;
    if id.server_name() != &*hs.server_name {
        return Err(MatrixError::new(
            400,
            ErrCode::Unknown,
            "This endpoint can only be used with local users",
        ));
    }
    Ok(id)
}

async fn user_body(hs: &Homeserver, row: UserRow) -> Result<Value, MatrixError> {
    let threepids = hs.storage.threepids(&row.user_id).await?;
    Ok(json!({
        "name": row.user_id,
        "displayname": row.displayname,
        "avatar_url": row.avatar_url,
        "admin": row.admin,
        "deactivated": row.deactivated,
        "shadow_banned": row.shadow_banned,
        "creation_ts": row.created_ts / 1000,
        "threepids": threepids,
        "user_type": null,
        "is_guest": row.is_guest,
    }))
}

async fn get_user(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult {
    require_admin(&requester)?;
    let id = local_user(&hs, &user_id)?;
    let row = hs
        .storage
        .get_user(&id)
        .await?
        .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "User not found"))?;
    Ok(Json(user_body(&hs, row).await?))
}

#[derive(Deserialize)]
struct Threepid {
    medium: String,
    address: String,
}

#[derive(Deserialize)]
struct PutUser {
    password: Option<String>,
    displayname: Option<String>,
    avatar_url: Option<String>,
    threepids: Option<Vec<Threepid>>,
    admin: Option<bool>,
    deactivated: Option<bool>,
}

/// Creates the user (201) or changes it (200), then answers as `GET` does.
async fn put_user(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(user_id): ApiPath<String>,
    JsonBody(body): JsonBody<PutUser>,
) -> ApiResult<Response> {
    require_admin(&requester)?;
    let id = local_user(&hs, &user_id)?;
    if body.password.as_ref().is_some_and(|p| p.len() > 512) {
        return Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            "Invalid password",
        ));
    }
    let change = AdminUserChange {
        password: body.password,
        displayname: body.displayname,
        avatar_url: body.avatar_url,
        threepids: body
            .threepids
            .map(|list| list.into_iter().map(|t| (t.medium, t.address)).collect()),
        admin: body.admin,
        deactivated: body.deactivated,
    };
    let created = hs
        .admin_put_user(&Actor::admin_api(&requester), &id, change)
        .await?;
    let row = hs
        .storage
        .get_user(&id)
        .await?
        .ok_or_else(|| MatrixError::internal("the user vanished"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(user_body(&hs, row).await?)).into_response())
}
