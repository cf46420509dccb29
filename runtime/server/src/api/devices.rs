//! Devices: `GET /devices`, `GET`/`PUT`/`DELETE /devices/{id}` and
//! `POST /delete_devices`.

use super::account::uia_refused;
use super::extract::{parse_json, ApiPath, Auth, JsonBody};
use super::ApiResult;
use crate::homeserver::Homeserver;
use crate::service::Actor;
use crate::storage::DeviceRow;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ruma::OwnedDeviceId;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/devices", get(list))
        .route(
            "/devices/{device}",
            get(get_device).put(rename).delete(delete_one),
        )
        .route("/delete_devices", post(delete_many))
        .route("/sendToDevice/{event_type}/{txn_id}", put(send_to_device))
}

async fn send_to_device(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((event_type, txn_id)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody<serde_json::Map<String, Value>>,
) -> ApiResult {
    hs.send_to_device(&Actor::client(&requester), &event_type, &txn_id, body)
        .await?;
    Ok(Json(json!({})))
}

fn device_json(d: &DeviceRow) -> Value {
    json!({
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen.as_ref().map(|(ip, _)| ip),
        "last_seen_ts": d.last_seen.as_ref().map(|(_, ts)| ts),
    })
}

async fn list(State(hs): State<Arc<Homeserver>>, Auth(requester): Auth) -> ApiResult {
    let devices = hs.devices(&Actor::client(&requester)).await?;
    Ok(Json(
        json!({ "devices": devices.iter().map(device_json).collect::<Vec<_>>() }),
    ))
}

async fn get_device(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(device): ApiPath<String>,
) -> ApiResult {
    let device = hs
        .device(&Actor::client(&requester), &OwnedDeviceId::from(device))
        .await?;
    Ok(Json(device_json(&device)))
}

#[derive(Deserialize)]
struct RenameBody {
    display_name: Option<String>,
}

async fn rename(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(device): ApiPath<String>,
    JsonBody(body): JsonBody<RenameBody>,
) -> ApiResult {
    hs.rename_device(
        &Actor::client(&requester),
        &OwnedDeviceId::from(device),
        body.display_name,
    )
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteBody {
    auth: Option<Value>,
}

#[derive(Deserialize)]
struct DeleteManyBody {
    devices: Vec<String>,
    auth: Option<Value>,
}

async fn delete_one(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(device): ApiPath<String>,
    JsonBody(body): JsonBody<DeleteBody>,
) -> ApiResult<Response> {
    let actor = Actor::client(&requester);
    let device = OwnedDeviceId::from(device);
    // An unknown device is 404 before any authentication, as in Synapse.
    hs.device(&actor, &device).await?;
    let auth = body.auth.map(parse_json).transpose()?;
    Ok(match hs.delete_devices(&actor, vec![device], auth).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(refusal) => uia_refused(refusal),
    })
}

async fn delete_many(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<DeleteManyBody>,
) -> ApiResult<Response> {
    let auth = body.auth.map(parse_json).transpose()?;
    let devices = body.devices.into_iter().map(OwnedDeviceId::from).collect();
    Ok(
        match hs
            .delete_devices(&Actor::client(&requester), devices, auth)
            .await
        {
            Ok(()) => Json(json!({})).into_response(),
            Err(refusal) => uia_refused(refusal),
        },
    )
}
