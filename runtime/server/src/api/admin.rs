//! Synapse's admin API for accounts (`/_synapse/admin/v2/users/…`): how an
//! operator creates a user, makes them admin or binds an email to them.

use super::extract::{ApiPath, Auth, JsonBody, Requester};
use super::{now_ms, ApiResult, AppState, MatrixError};
use crate::storage::{NewUser, StorageError, UserRow};
use axon::ErrCode;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
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
fn local_user(state: &AppState, user_id: &str) -> Result<ruma::OwnedUserId, MatrixError> {
    let id = ruma::UserId::parse(user_id).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid user ID `{user_id}`: {e}"),
        )
    })?;
    if id.server_name().as_str() != state.server_name() {
        return Err(MatrixError::new(
            400,
            ErrCode::Unknown,
            "This endpoint can only be used with local users",
        ));
    }
    Ok(id)
}

async fn user_body(state: &AppState, row: UserRow) -> Result<Value, MatrixError> {
    let threepids = state.storage.threepids(&row.user_id).await?;
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
        "is_guest": false,
    }))
}

async fn get_user(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult {
    require_admin(&requester)?;
    let id = local_user(&state, &user_id)?;
    let row = state
        .storage
        .get_user(id.as_str())
        .await?
        .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "User not found"))?;
    Ok(Json(user_body(&state, row).await?))
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
    threepids: Option<Vec<Threepid>>,
    admin: Option<bool>,
    deactivated: Option<bool>,
}

/// Creates the user (201) or changes it (200), then answers as `GET` does.
async fn put_user(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    ApiPath(user_id): ApiPath<String>,
    JsonBody(body): JsonBody<PutUser>,
) -> ApiResult<Response> {
    require_admin(&requester)?;
    let id = local_user(&state, &user_id)?;
    // Checked before anything changes, so a refused request changes nothing.
    let threepids = match &body.threepids {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|t| canonical_threepid(&t.medium, &t.address))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    if body.deactivated == Some(false) {
        return Err(MatrixError::new(
            400,
            ErrCode::Unrecognized,
            "Reactivating a deactivated user is not supported",
        ));
    }
    if let Some(threepids) = &threepids {
        for (medium, address) in threepids {
            if let Some(owner) = state.storage.threepid_owner(medium, address).await? {
                if owner != id.as_str() {
                    return Err(threepid_in_use());
                }
            }
        }
    }
    let existing = state.storage.get_user(id.as_str()).await?;
    let created = existing.is_none();
    if created {
        super::check_localpart(&state, id.localpart())?;
        let password_hash = match body.password.clone() {
            Some(p) => Some(super::account::hash_password(p).await?),
            None => None,
        };
        let user = NewUser {
            user_id: id.to_string(),
            password_hash,
            admin: body.admin.unwrap_or(false),
            shadow_banned: false,
            displayname: Some(
                body.displayname
                    .clone()
                    .unwrap_or_else(|| id.localpart().to_string()),
            ),
            created_ts: now_ms(),
        };
        super::create_user(&state, user, None).await?;
    }
    if let Some(threepids) = threepids {
        match state.storage.set_threepids(id.as_str(), threepids).await {
            Err(StorageError::Conflict(_)) => return Err(threepid_in_use()),
            other => other?,
        }
    }
    if !created {
        if let Some(password) = body.password {
            let hash = super::account::hash_password(password).await?;
            state.storage.set_password_hash(id.as_str(), &hash).await?;
        }
        if let Some(admin) = body.admin {
            state.storage.set_admin(id.as_str(), admin).await?;
        }
        if let Some(name) = body.displayname {
            state
                .storage
                .set_displayname(id.as_str(), Some(name))
                .await?;
            super::profile_changed(&state, id.as_str()).await?;
        }
        if body.deactivated == Some(true) {
            super::account::deactivate_account(&state, id.as_str()).await?;
            state
                .callbacks
                .third_party_rules
                .on_user_deactivation_status_changed(&id, true, true)
                .await;
        }
    }
    let row = state
        .storage
        .get_user(id.as_str())
        .await?
        .ok_or_else(|| MatrixError::internal("the user vanished"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(user_body(&state, row).await?)).into_response())
}

fn threepid_in_use() -> MatrixError {
    MatrixError::new(409, ErrCode::ThreepidInUse, "Threepid already in use")
}

/// `(medium, address)` as stored: emails are lowercased, as Synapse does.
fn canonical_threepid(medium: &str, address: &str) -> Result<(String, String), MatrixError> {
    match medium {
        "email" if address.contains('@') => Ok((medium.to_string(), address.trim().to_lowercase())),
        "email" => Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("Unable to parse email address `{address}`"),
        )),
        "msisdn" => Ok((medium.to_string(), address.to_string())),
        other => Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("Unknown medium `{other}`: use `email` or `msisdn`"),
        )),
    }
}
