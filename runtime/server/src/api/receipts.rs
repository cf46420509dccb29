//! Read receipts, read markers and typing notifications.

use super::extract::{ApiPath, Auth, JsonBody};
use super::rooms::{room_id, user_id};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::receipts::FULLY_READ;
use crate::service::Actor;
use axon::ErrCode;
use axum::extract::State;
use axum::routing::{post, put};
use axum::{Json, Router};
use ruma::{EventId, OwnedEventId};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route(
            "/rooms/{room}/receipt/{receipt_type}/{event_id}",
            post(receipt),
        )
        .route("/rooms/{room}/read_markers", post(read_markers))
        .route("/rooms/{room}/typing/{user}", put(typing))
}

#[derive(Deserialize)]
struct TypingBody {
    typing: bool,
    /// Milliseconds.
    timeout: Option<u64>,
}

async fn typing(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, user)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody<TypingBody>,
) -> ApiResult {
    hs.set_typing(
        &Actor::client(&requester),
        &room_id(&room)?,
        &user_id(&user)?,
        body.typing,
        body.timeout.map(std::time::Duration::from_millis),
    )
    .await?;
    Ok(Json(json!({})))
}

fn event_id(event: &str) -> Result<OwnedEventId, MatrixError> {
    EventId::parse(event).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid event ID `{event}`: {e}"),
        )
    })
}

#[derive(Deserialize)]
struct ReceiptBody {
    thread_id: Option<String>,
}

async fn receipt(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((room, receipt_type, event)): ApiPath<(String, String, String)>,
    JsonBody(body): JsonBody<ReceiptBody>,
) -> ApiResult {
    hs.send_receipt(
        &Actor::client(&requester),
        &room_id(&room)?,
        &receipt_type,
        &event_id(&event)?,
        body.thread_id.as_deref(),
    )
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct ReadMarkersBody {
    #[serde(rename = "m.fully_read")]
    fully_read: Option<String>,
    #[serde(rename = "m.read")]
    read: Option<String>,
    #[serde(rename = "m.read.private")]
    read_private: Option<String>,
}

/// `POST /rooms/{room}/read_markers`: the read marker and the receipts in
/// one request, each checked before any is stored.
async fn read_markers(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<ReadMarkersBody>,
) -> ApiResult {
    let room = room_id(&room)?;
    let actor = Actor::client(&requester);
    let marks = [
        (FULLY_READ, body.fully_read),
        ("m.read", body.read),
        ("m.read.private", body.read_private),
    ];
    let mut parsed = Vec::new();
    for (kind, event) in marks {
        if let Some(event) = event {
            parsed.push((kind, event_id(&event)?));
        }
    }
    for (kind, event) in parsed {
        hs.send_receipt(&actor, &room, kind, &event, None).await?;
    }
    Ok(Json(json!({})))
}
