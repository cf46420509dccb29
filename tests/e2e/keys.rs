//! End-to-end encryption keys: `POST /keys/upload`, `/keys/query` and
//! `/keys/claim`, and the key counts in `/sync`.

use axon_testkit::*;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A device's identity keys, signed by its ed25519 key as a client signs
/// them (canonical JSON: serde_json's sorted maps, no spaces).
fn device_keys(user: &User, signing: &SigningKey) -> Value {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let mut keys = json!({
        "user_id": user.user_id,
        "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", user.device_id): b64(&[7u8; 32]),
            format!("ed25519:{}", user.device_id): b64(signing.verifying_key().as_bytes()),
        },
    });
    let signature = signing.sign(serde_json::to_string(&keys).unwrap().as_bytes());
    keys["signatures"] = json!({ user.user_id.clone(): { format!("ed25519:{}", user.device_id): b64(&signature.to_bytes()) } });
    keys
}

fn one_time_keys(n: usize, prefix: &str) -> Value {
    let keys: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("signed_curve25519:{prefix}{i}"),
                json!({ "key": format!("{prefix}key{i}") }),
            )
        })
        .collect();
    Value::Object(keys)
}

#[tokio::test]
async fn uploaded_keys_are_queried_claimed_once_and_counted_in_sync() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let signing = SigningKey::from_bytes(&[42u8; 32]);
    let keys = device_keys(&bob, &signing);
    let (status, counts) = s
        .post(
            "/keys/upload",
            &bob.token,
            json!({ "device_keys": keys, "one_time_keys": one_time_keys(2, "A"),
                    "fallback_keys": { "signed_curve25519:F": { "key": "fallback", "fallback": true } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(
        counts,
        json!({ "one_time_key_counts": { "signed_curve25519": 2 } })
    );
    let (_, synced) = s.get("/sync", &bob.token).await;
    assert_eq!(
        synced["device_one_time_keys_count"],
        json!({ "signed_curve25519": 2 })
    );
    assert_eq!(
        synced["device_unused_fallback_key_types"],
        json!(["signed_curve25519"])
    );

    // Alice sees bob's device with its keys and display name.
    let (status, queried) = s
        .post(
            "/keys/query",
            &alice.token,
            json!({ "device_keys": { bob.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{queried}");
    let device = &queried["device_keys"][&bob.user_id][&bob.device_id];
    assert_eq!(device["keys"], keys["keys"]);
    assert_eq!(device["signatures"], keys["signatures"]);
    assert_eq!(queried["failures"], json!({}));

    // Each one-time key goes once; then the fallback key, then nothing new.
    let claim = json!({ "one_time_keys": { bob.user_id.clone(): { bob.device_id.clone(): "signed_curve25519" } } });
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (status, claimed) = s.post("/keys/claim", &alice.token, claim.clone()).await;
        assert_eq!(status, StatusCode::OK, "{claimed}");
        let keys = claimed["one_time_keys"][&bob.user_id][&bob.device_id]
            .as_object()
            .unwrap()
            .clone();
        seen.push(keys.keys().next().unwrap().clone());
    }
    assert_eq!(
        seen,
        [
            "signed_curve25519:A0",
            "signed_curve25519:A1",
            "signed_curve25519:F"
        ]
    );
    let (_, synced) = s.get("/sync", &bob.token).await;
    assert_eq!(synced["device_one_time_keys_count"], json!({}));
    assert_eq!(synced["device_unused_fallback_key_types"], json!([]));
}

#[tokio::test]
async fn concurrent_claims_never_get_the_same_key() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    s.post(
        "/keys/upload",
        &bob.token,
        json!({ "one_time_keys": one_time_keys(10, "K") }),
    )
    .await;
    let claims: Vec<_> = (0..10)
        .map(|_| {
            let (s, token) = (s.clone(), alice.token.clone());
            let body = json!({ "one_time_keys": { bob.user_id.clone(): { bob.device_id.clone(): "signed_curve25519" } } });
            let (user, device) = (bob.user_id.clone(), bob.device_id.clone());
            tokio::spawn(async move {
                let (_, claimed) = s.post("/keys/claim", &token, body).await;
                claimed["one_time_keys"][&user][&device]
                    .as_object()
                    .and_then(|k| k.keys().next().cloned())
            })
        })
        .collect();
    let mut keys = Vec::new();
    for claim in claims {
        keys.push(claim.await.unwrap().expect("a key each"));
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 10);
}

#[tokio::test]
async fn bad_keys_are_refused_and_remote_users_are_failures() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let signing = SigningKey::from_bytes(&[1u8; 32]);
    // Signed by another key than the one it names.
    let mut forged = device_keys(&bob, &signing);
    forged["keys"][format!("ed25519:{}", bob.device_id)] =
        json!(base64::engine::general_purpose::STANDARD_NO_PAD.encode(
            SigningKey::from_bytes(&[2u8; 32])
                .verifying_key()
                .as_bytes()
        ));
    assert_error(
        &s.post("/keys/upload", &bob.token, json!({ "device_keys": forged }))
            .await,
        400,
        "M_INVALID_SIGNATURE",
    );
    // Someone else's device.
    let theirs = device_keys(&alice, &signing);
    assert_error(
        &s.post("/keys/upload", &bob.token, json!({ "device_keys": theirs }))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    let mut unsigned = device_keys(&bob, &signing);
    unsigned.as_object_mut().unwrap().remove("signatures");
    assert_error(
        &s.post(
            "/keys/upload",
            &bob.token,
            json!({ "device_keys": unsigned }),
        )
        .await,
        400,
        "M_INVALID_SIGNATURE",
    );
    // A one-time key ID reused with other content.
    s.post(
        "/keys/upload",
        &bob.token,
        json!({ "one_time_keys": { "signed_curve25519:X": { "key": "one" } } }),
    )
    .await;
    assert_error(
        &s.post(
            "/keys/upload",
            &bob.token,
            json!({ "one_time_keys": { "signed_curve25519:X": { "key": "two" } } }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    // Nothing of the refused uploads was stored.
    let (_, queried) = s
        .post(
            "/keys/query",
            &alice.token,
            json!({ "device_keys": { bob.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(queried["device_keys"][&bob.user_id], json!({}));
    // Remote users are failures, never silently absent.
    let (status, remote) = s
        .post(
            "/keys/query",
            &alice.token,
            json!({ "device_keys": { "@carol:elsewhere.org": [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(remote["failures"]["elsewhere.org"].is_object(), "{remote}");
    assert_error(
        &s.post("/keys/query", &alice.token, json!({})).await,
        400,
        "M_MISSING_PARAM",
    );
    assert_error(
        &s.post("/keys/claim", &alice.token, json!({})).await,
        400,
        "M_MISSING_PARAM",
    );
}
