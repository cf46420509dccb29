//! End-to-end encryption keys: `POST /keys/upload`, `/keys/query`,
//! `/keys/claim`.

use super::extract::{Auth, JsonBody};
use super::ApiResult;
use crate::homeserver::Homeserver;
use crate::service::Actor;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/keys/upload", post(upload))
        .route("/keys/query", post(query))
        .route("/keys/claim", post(claim))
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
    Auth(_requester): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    Ok(Json(hs.query_keys(body).await?))
}

async fn claim(
    State(hs): State<Arc<Homeserver>>,
    Auth(_requester): Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult {
    Ok(Json(hs.claim_keys(body).await?))
}
