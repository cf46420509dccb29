//! What clients ask the homeserver about things beyond it: TURN servers for
//! calls, third-party networks (bridges), OpenID tokens for integration
//! managers, and whois.

use super::extract::{url_param, ApiPath, Auth};
use super::ApiResult;
use crate::homeserver::Homeserver;
use axon::ErrCode;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// Client-API routes (served under `v3` and `r0`).
pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/voip/turnServer", get(turn_server))
        .route("/thirdparty/protocols", get(protocols))
        .route("/thirdparty/protocol/{protocol}", get(protocol))
        .route(
            "/user/{user}/openid/request_token",
            post(request_openid_token),
        )
        .route("/admin/whois/{user}", get(whois))
}

/// Routes outside the client API: Synapse's admin whois, and the OpenID
/// userinfo endpoint (on listeners with the `openid` resource).
pub fn admin_routes() -> Router<Arc<Homeserver>> {
    Router::new().route("/_synapse/admin/v1/whois/{user}", get(whois))
}

pub fn openid_routes() -> Router<Arc<Homeserver>> {
    Router::new().route("/_matrix/federation/v1/openid/userinfo", get(userinfo))
}

async fn turn_server(State(hs): State<Arc<Homeserver>>, Auth(requester): Auth) -> ApiResult {
    Ok(Json(hs.turn_credentials(&requester).await?))
}

/// Third-party networks come from application services (bridges), which
/// Axon does not host yet: there are none, as Synapse answers without them.
async fn protocols(_auth: Auth) -> ApiResult {
    Ok(Json(json!({})))
}

async fn protocol(_auth: Auth, ApiPath(_protocol): ApiPath<String>) -> ApiResult {
    Err(super::MatrixError::new(
        404,
        ErrCode::NotFound,
        "Unknown protocol",
    ))
}

async fn request_openid_token(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
    super::extract::JsonBody(_body): super::extract::JsonBody<serde_json::Value>,
) -> ApiResult {
    Ok(Json(hs.request_openid_token(&requester, &user).await?))
}

async fn userinfo(State(hs): State<Arc<Homeserver>>, RawQuery(query): RawQuery) -> ApiResult {
    let token = query.as_deref().and_then(|q| url_param(q, "access_token"));
    let user_id = hs.openid_userinfo(token).await?;
    Ok(Json(json!({ "sub": user_id })))
}

async fn whois(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    let user_id = super::rooms::user_id(&user)?;
    Ok(Json(hs.whois(&requester, &user_id).await?))
}
