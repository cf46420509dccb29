//! End-to-end encryption keys: `POST /keys/upload`, `/keys/query` and
//! `/keys/claim`, and the key counts in `/sync`.

use axon_testkit::*;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A device's identity keys, signed by its ed25519 key as a client signs
/// them (canonical JSON: serde_json's sorted maps, no spaces).
pub(crate) fn device_keys(user: &User, signing: &SigningKey) -> Value {
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

/// A one-time key in the spec's shape (the server does not check its
/// signature: only the devices that claim it can).
pub(crate) fn signed_key(text: &str) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(text);
    json!({ "key": b64, "signatures": { "@someone:test.local": { "ed25519:DEVICE": "c2lnbmF0dXJl" } } })
}

fn fallback_key() -> Value {
    let mut key = signed_key("fallback");
    key["fallback"] = json!(true);
    key
}

fn one_time_keys(n: usize, prefix: &str) -> Value {
    let keys: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("signed_curve25519:{prefix}{i}"),
                signed_key(&format!("{prefix}key{i}")),
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
                    "fallback_keys": { "signed_curve25519:F": fallback_key() } }),
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
    // Keys not in the spec's shape (ruma's types decide).
    assert_error(
        &s.post(
            "/keys/upload",
            &bob.token,
            json!({ "one_time_keys": { "signed_curve25519:Y": { "key": "not base64!" } } }),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    let mut no_algorithms = device_keys(&bob, &signing);
    no_algorithms.as_object_mut().unwrap().remove("algorithms");
    let no_algorithms = {
        // Re-signed, so only the shape is wrong.
        let mut keys = no_algorithms;
        keys.as_object_mut().unwrap().remove("signatures");
        let signature = signing.sign(serde_json::to_string(&keys).unwrap().as_bytes());
        keys["signatures"] = json!({ bob.user_id.clone(): { format!("ed25519:{}", bob.device_id): base64::engine::general_purpose::STANDARD_NO_PAD.encode(signature.to_bytes()) } });
        keys
    };
    assert_error(
        &s.post(
            "/keys/upload",
            &bob.token,
            json!({ "device_keys": no_algorithms }),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    // A one-time key ID reused with other content.
    s.post(
        "/keys/upload",
        &bob.token,
        json!({ "one_time_keys": { "signed_curve25519:X": signed_key("one") } }),
    )
    .await;
    assert_error(
        &s.post(
            "/keys/upload",
            &bob.token,
            json!({ "one_time_keys": { "signed_curve25519:X": signed_key("two") } }),
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
    // A claim for a device that does not exist (or has no keys) gets no
    // key for it, and no error: the claim goes on for the others.
    let (status, claimed) = s
        .post(
            "/keys/claim",
            &alice.token,
            json!({ "one_time_keys": { bob.user_id.clone(): { "NOSUCHDEVICE": "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed, json!({ "one_time_keys": {}, "failures": {} }));
    assert_error(
        &s.post(
            "/keys/claim",
            &alice.token,
            json!({ "one_time_keys": { bob.user_id.clone(): ["NOSUCHDEVICE"] } }),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
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

fn since(sync: &Value) -> String {
    sync["next_batch"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn device_lists_follow_key_changes_and_shared_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let dave = s.register("dave").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let (_, first) = s.get("/sync", &alice.token).await;
    assert_eq!(first["device_lists"], json!({ "changed": [], "left": [] }));
    let from = since(&first);

    // Bob, who shares the room, uploads keys while alice long-polls; dave,
    // who shares nothing with her, does too.
    let long_poll = async {
        let started = std::time::Instant::now();
        let (_, body) = s
            .get(&format!("/sync?since={from}&timeout=30000"), &alice.token)
            .await;
        (body, started.elapsed())
    };
    let bob_keys = device_keys(&bob, &SigningKey::from_bytes(&[2u8; 32]));
    let uploads = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let dave_keys = device_keys(&dave, &SigningKey::from_bytes(&[4u8; 32]));
        s.post(
            "/keys/upload",
            &dave.token,
            json!({ "device_keys": dave_keys }),
        )
        .await;
        s.post(
            "/keys/upload",
            &bob.token,
            json!({ "device_keys": bob_keys }),
        )
        .await
        .0
    };
    let ((woken, waited), status) = tokio::join!(long_poll, uploads);
    assert_eq!(status, StatusCode::OK);
    assert!(
        waited.as_secs() < 20,
        "the key upload did not wake the sync"
    );
    assert_eq!(woken["device_lists"]["changed"], json!([bob.user_id]));
    let (status, changes) = s
        .get(&format!("/keys/changes?from={from}"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{changes}");
    assert_eq!(changes, json!({ "changed": [bob.user_id], "left": [] }));

    // The same keys again change nothing.
    let from = since(&woken);
    s.post(
        "/keys/upload",
        &bob.token,
        json!({ "device_keys": bob_keys }),
    )
    .await;
    let (_, same) = s.get(&format!("/sync?since={from}"), &alice.token).await;
    assert_eq!(same["device_lists"], json!({ "changed": [], "left": [] }));

    // Carol comes into the room: alice must fetch her devices; she goes:
    // alice may forget them.
    s.join(&carol, &room).await;
    let (_, joined) = s.get(&format!("/sync?since={from}"), &alice.token).await;
    assert_eq!(joined["device_lists"]["changed"], json!([carol.user_id]));
    let from = since(&joined);
    s.post(
        &format!("/rooms/{}/leave", enc(&room)),
        &carol.token,
        json!({}),
    )
    .await;
    let (_, left) = s.get(&format!("/sync?since={from}"), &alice.token).await;
    assert_eq!(
        left["device_lists"],
        json!({ "changed": [], "left": [carol.user_id] })
    );
    // Carol sees alice and bob as new when she joins again.
    let (_, carol_first) = s.get("/sync", &carol.token).await;
    s.join(&carol, &room).await;
    let (_, carol_next) = s
        .get(
            &format!("/sync?since={}", since(&carol_first)),
            &carol.token,
        )
        .await;
    assert_eq!(
        carol_next["device_lists"]["changed"],
        json!([alice.user_id, bob.user_id])
    );

    // A deleted device and a renamed one are changes too.
    let (_, before) = s.get("/sync", &alice.token).await;
    let (status, _) = s
        .put(
            &format!("/devices/{}", bob.device_id),
            &bob.token,
            json!({ "display_name": "phone" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, renamed) = s
        .get(&format!("/sync?since={}", since(&before)), &alice.token)
        .await;
    assert_eq!(renamed["device_lists"]["changed"], json!([bob.user_id]));

    assert_error(
        &s.get("/keys/changes", &alice.token).await,
        400,
        "M_MISSING_PARAM",
    );
    assert_error(
        &s.get("/keys/changes?from=nonsense", &alice.token).await,
        400,
        "M_INVALID_PARAM",
    );
}
