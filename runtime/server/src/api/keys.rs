//! End-to-end encryption keys: `POST /keys/upload`, `/keys/query`,
//! `/keys/claim`, `GET /keys/changes`, and cross-signing:
//! `/keys/device_signing/upload`, `/keys/signatures/upload`.

use super::extract::{ApiQuery, Auth, JsonBody};
use super::ApiResult;
use crate::homeserver::Homeserver;
use crate::service::Actor;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/keys/upload", post(upload))
        .route("/keys/query", post(query))
        .route("/keys/claim", post(claim))
        .route("/keys/changes", get(changes))
        .route("/keys/device_signing/upload", post(upload_cross_signing))
        .route("/keys/signatures/upload", post(upload_signatures))
}

#[derive(serde::Deserialize)]
struct ChangesQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn changes(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> ApiResult {
    let from = q.from.as_deref().ok_or_else(|| {
        super::MatrixError::new(
            400,
            axon::ErrCode::MissingParam,
            "Missing string query parameter 'from'",
        )
    })?;
    let from = super::rooms::parse_token(from)?;
    let to = q.to.as_deref().map(super::rooms::parse_token).transpose()?;
    Ok(Json(hs.key_changes(&requester.user_id, from, to).await?))
}

async fn upload(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    Ok(Json(
        hs.upload_keys(&Actor::client(&requester), body).await?,
    ))
}

async fn query(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    Ok(Json(hs.query_keys(&requester.user_id, body).await?))
}

async fn upload_cross_signing(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    Ok(
        match hs
            .upload_cross_signing_keys(&Actor::client(&requester), body)
            .await
        {
            Ok(()) => Json(json!({})).into_response(),
            Err(refusal) => super::account::uia_refused(refusal),
        },
    )
}

async fn upload_signatures(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    Ok(Json(
        hs.upload_key_signatures(&Actor::client(&requester), body)
            .await?,
    ))
}

async fn claim(
    State(hs): State<Arc<Homeserver>>,
    Auth(_requester): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    Ok(Json(hs.claim_keys(body).await?))
}
