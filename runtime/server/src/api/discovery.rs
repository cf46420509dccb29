//! How a client finds out what this server is: `/.well-known/matrix/client`
//! and `/versions`.

use crate::homeserver::Homeserver;
use axon::ErrCode;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The spec versions Axon advertises, each with the endpoints that a client
/// starts calling because the server lists that version (matrix-js-sdk
/// picks thread, relation and media endpoints by version). The e2e test
/// `versions_advertise_only_what_exists` calls every one of them, so a
/// version is listed only while its endpoints answer.
pub const SPEC_VERSIONS: &[(&str, &[&str])] = &[
    ("r0.6.1", &["GET /_matrix/client/r0/sync"]),
    ("v1.1", &["GET /_matrix/client/v3/sync"]),
    ("v1.2", &["GET /_matrix/client/v1/rooms/{room}/hierarchy"]),
    (
        "v1.3",
        &["GET /_matrix/client/v1/rooms/{room}/relations/{event}"],
    ),
    (
        "v1.4",
        &[
            "GET /_matrix/client/v1/rooms/{room}/threads",
            "POST /_matrix/client/v3/rooms/{room}/receipt/m.read.private/{event}",
        ],
    ),
    ("v1.5", &[]),
    (
        "v1.6",
        &["GET /_matrix/client/v1/rooms/{room}/timestamp_to_event"],
    ),
    ("v1.7", &[]),
    ("v1.8", &[]),
    ("v1.9", &[]),
    ("v1.10", &[]),
    (
        "v1.11",
        &[
            "GET /_matrix/client/v1/media/config",
            "GET /_matrix/client/v1/media/download/{server}/{media}",
            "GET /_matrix/client/v1/media/thumbnail/{server}/{media}",
        ],
    ),
];

/// Unstable features a client checks for by name, with their endpoints
/// (tested like `SPEC_VERSIONS`).
pub const UNSTABLE_FEATURES: &[(&str, &[&str])] = &[
    // Threads (MSC3440, stable in v1.4).
    (
        "org.matrix.msc3440.stable",
        &["GET /_matrix/client/v1/rooms/{room}/threads"],
    ),
    // Private read receipts (MSC2285).
    (
        "org.matrix.msc2285.stable",
        &["POST /_matrix/client/v3/rooms/{room}/receipt/m.read.private/{event}"],
    ),
    // Threaded read receipts (MSC3771).
    (
        "org.matrix.msc3771",
        &["POST /_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"],
    ),
    // Authenticated media (MSC3916, stable in v1.11).
    (
        "org.matrix.msc3916.stable",
        &["GET /_matrix/client/v1/media/download/{server}/{media}"],
    ),
    // Cross-signing (MSC1756, stable in r0.6.1); Element checks the flag.
    (
        "org.matrix.e2e_cross_signing",
        &[
            "POST /_matrix/client/v3/keys/device_signing/upload",
            "POST /_matrix/client/v3/keys/signatures/upload",
        ],
    ),
];

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/_matrix/client/versions", get(versions))
        .route("/.well-known/matrix/client", get(well_known_client))
}

async fn versions() -> Json<Value> {
    let unstable: Map<String, Value> = UNSTABLE_FEATURES
        .iter()
        .map(|(name, _)| (name.to_string(), json!(true)))
        .collect();
    Json(json!({
        "versions": SPEC_VERSIONS.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        "unstable_features": unstable,
    }))
}

/// Served when `public_baseurl` is set, as Synapse does: otherwise the
/// server does not know the address clients reach it at.
async fn well_known_client(State(hs): State<Arc<Homeserver>>) -> super::ApiResult {
    let config = &hs.config;
    if config.public_baseurl.is_none() {
        return Err(super::MatrixError::new(
            404,
            ErrCode::NotFound,
            ".well-known not available",
        ));
    }
    let mut body = Map::new();
    body.insert(
        "m.homeserver".into(),
        json!({ "base_url": config.public_baseurl() }),
    );
    if let Some(identity) = &config.default_identity_server {
        body.insert("m.identity_server".into(), json!({ "base_url": identity }));
    }
    for (key, value) in &config.extra_well_known_client_content {
        body.entry(key.clone()).or_insert_with(|| value.clone());
    }
    Ok(Json(Value::Object(body)))
}
