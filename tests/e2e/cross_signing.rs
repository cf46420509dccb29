//! Cross-signing: `POST /keys/device_signing/upload` (the first upload
//! without user-interactive auth, a replacement behind it) and
//! `/keys/signatures/upload`, each signature verified, as `/keys/query`
//! then shows them.

use axon_testkit::*;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn public(key: &SigningKey) -> String {
    b64(key.verifying_key().as_bytes())
}

/// Adds `signer`'s signature by `key_id` to `object`, as a client signs
/// (canonical JSON of the object without `signatures` and `unsigned`).
fn sign(mut object: Value, signer: &str, key_id: &str, key: &SigningKey) -> Value {
    let mut unsigned = object.clone();
    unsigned.as_object_mut().unwrap().remove("signatures");
    unsigned.as_object_mut().unwrap().remove("unsigned");
    let signature = key.sign(serde_json::to_string(&unsigned).unwrap().as_bytes());
    if !object["signatures"].is_object() {
        object["signatures"] = json!({});
    }
    if !object["signatures"][signer].is_object() {
        object["signatures"][signer] = json!({});
    }
    object["signatures"][signer][key_id] = json!(b64(&signature.to_bytes()));
    object
}

fn cross_signing_key(user: &User, usage: &str, key: &SigningKey) -> Value {
    json!({
        "user_id": user.user_id,
        "usage": [usage],
        "keys": { format!("ed25519:{}", public(key)): public(key) },
    })
}

/// A user's device keys and cross-signing keys, uploaded.
struct Identity {
    device: SigningKey,
    master: SigningKey,
    self_signing: SigningKey,
    user_signing: SigningKey,
}

impl Identity {
    fn new(seed: u8) -> Identity {
        Identity {
            device: SigningKey::from_bytes(&[seed; 32]),
            master: SigningKey::from_bytes(&[seed + 1; 32]),
            self_signing: SigningKey::from_bytes(&[seed + 2; 32]),
            user_signing: SigningKey::from_bytes(&[seed + 3; 32]),
        }
    }

    fn device_keys(&self, user: &User) -> Value {
        let keys = json!({
            "user_id": user.user_id,
            "device_id": user.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{}", user.device_id): b64(&[9u8; 32]),
                format!("ed25519:{}", user.device_id): public(&self.device),
            },
        });
        sign(
            keys,
            &user.user_id,
            &format!("ed25519:{}", user.device_id),
            &self.device,
        )
    }

    fn master_id(&self) -> String {
        format!("ed25519:{}", public(&self.master))
    }

    fn signing_keys(&self, user: &User) -> Value {
        let by_master = |key: Value| sign(key, &user.user_id, &self.master_id(), &self.master);
        json!({
            "master_key": cross_signing_key(user, "master", &self.master),
            "self_signing_key": by_master(cross_signing_key(user, "self_signing", &self.self_signing)),
            "user_signing_key": by_master(cross_signing_key(user, "user_signing", &self.user_signing)),
        })
    }

    async fn upload(&self, s: &TestServer, user: &User) {
        let (status, body) = s
            .post(
                "/keys/upload",
                &user.token,
                json!({ "device_keys": self.device_keys(user) }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = s
            .post(
                "/keys/device_signing/upload",
                &user.token,
                self.signing_keys(user),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({}));
    }
}

async fn query(s: &TestServer, viewer: &User, user: &User) -> Value {
    let (status, body) = s
        .post(
            "/keys/query",
            &viewer.token,
            json!({ "device_keys": { user.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn cross_signing_keys_are_uploaded_once_without_auth_and_replaced_with_it() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let identity = Identity::new(10);
    identity.upload(&s, &alice).await;

    // Everyone sees alice's master and self-signing keys; only she sees
    // her user-signing key.
    let seen = query(&s, &bob, &alice).await;
    let keys = identity.signing_keys(&alice);
    assert_eq!(seen["master_keys"][&alice.user_id], keys["master_key"]);
    assert_eq!(
        seen["self_signing_keys"][&alice.user_id],
        keys["self_signing_key"]
    );
    assert_eq!(seen["user_signing_keys"], json!({}));
    let own = query(&s, &alice, &alice).await;
    assert_eq!(
        own["user_signing_keys"][&alice.user_id],
        keys["user_signing_key"]
    );

    // The same keys again: 200 without a prompt.
    let (status, body) = s
        .post("/keys/device_signing/upload", &alice.token, keys.clone())
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));

    // New keys replace the identity: a password prompt first.
    let replacement = Identity::new(50);
    let new_keys = replacement.signing_keys(&alice);
    let (status, challenge) = s
        .post(
            "/keys/device_signing/upload",
            &alice.token,
            new_keys.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert_eq!(
        challenge["flows"],
        json!([{ "stages": ["m.login.password"] }])
    );
    let mut authed = new_keys.clone();
    authed["auth"] = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": "alice" },
        "password": "correct horse",
        "session": challenge["session"],
    });
    let (status, body) = s
        .post("/keys/device_signing/upload", &alice.token, authed)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = query(&s, &bob, &alice).await;
    assert_eq!(seen["master_keys"][&alice.user_id], new_keys["master_key"]);
}

#[tokio::test]
async fn bad_cross_signing_keys_are_refused() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let identity = Identity::new(20);
    let keys = identity.signing_keys(&alice);

    // A self-signing key without a master key to check it against.
    assert_error(
        &s.post(
            "/keys/device_signing/upload",
            &alice.token,
            json!({ "self_signing_key": keys["self_signing_key"] }),
        )
        .await,
        400,
        "M_MISSING_PARAM",
    );
    // Signed by some other key than the master key.
    let forged = sign(
        cross_signing_key(&alice, "self_signing", &identity.self_signing),
        &alice.user_id,
        &identity.master_id(),
        &identity.device,
    );
    assert_error(
        &s.post(
            "/keys/device_signing/upload",
            &alice.token,
            json!({ "master_key": keys["master_key"], "self_signing_key": forged }),
        )
        .await,
        400,
        "M_INVALID_SIGNATURE",
    );
    // Someone else's key, or one for another usage.
    let mut theirs = keys["master_key"].clone();
    theirs["user_id"] = json!("@mallory:localhost");
    assert_error(
        &s.post(
            "/keys/device_signing/upload",
            &alice.token,
            json!({ "master_key": theirs }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.post(
            "/keys/device_signing/upload",
            &alice.token,
            json!({ "master_key": cross_signing_key(&alice, "self_signing", &identity.master) }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    // Nothing was stored by any of these.
    let seen = query(&s, &alice, &alice).await;
    assert_eq!(seen["master_keys"], json!({}));
}

#[tokio::test]
async fn signatures_are_verified_kept_and_shown_to_those_who_may_see_them() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let (alice_id, bob_id) = (Identity::new(30), Identity::new(40));
    alice_id.upload(&s, &alice).await;
    bob_id.upload(&s, &bob).await;
    let self_signing_id = format!("ed25519:{}", public(&alice_id.self_signing));

    // Alice's self-signing key vouches for her device; her device for her
    // master key.
    let signed_device = sign(
        alice_id.device_keys(&alice),
        &alice.user_id,
        &self_signing_id,
        &alice_id.self_signing,
    );
    let master = cross_signing_key(&alice, "master", &alice_id.master);
    let signed_master = sign(
        master,
        &alice.user_id,
        &format!("ed25519:{}", alice.device_id),
        &alice_id.device,
    );
    let (status, body) = s
        .post(
            "/keys/signatures/upload",
            &alice.token,
            json!({ alice.user_id.clone(): {
                alice.device_id.clone(): signed_device,
                public(&alice_id.master): signed_master,
            } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "failures": {} }));
    let seen = query(&s, &bob, &alice).await;
    let device = &seen["device_keys"][&alice.user_id][&alice.device_id];
    assert!(
        device["signatures"][&alice.user_id][&self_signing_id].is_string(),
        "{device}"
    );
    let device_key_id = format!("ed25519:{}", alice.device_id);
    assert!(
        seen["master_keys"][&alice.user_id]["signatures"][&alice.user_id][&device_key_id]
            .is_string(),
        "{seen}"
    );

    // Alice's user-signing key vouches for bob's master key: she sees it,
    // carol does not.
    let bob_master = sign(
        cross_signing_key(&bob, "master", &bob_id.master),
        &alice.user_id,
        &format!("ed25519:{}", public(&alice_id.user_signing)),
        &alice_id.user_signing,
    );
    let (status, body) = s
        .post(
            "/keys/signatures/upload",
            &alice.token,
            json!({ bob.user_id.clone(): { public(&bob_id.master): bob_master } }),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "failures": {} })));
    let by_alice = query(&s, &alice, &bob).await;
    assert!(by_alice["master_keys"][&bob.user_id]["signatures"][&alice.user_id].is_object());
    let by_carol = query(&s, &carol, &bob).await;
    assert!(by_carol["master_keys"][&bob.user_id]["signatures"][&alice.user_id].is_null());

    // What does not verify is a failure of its own; the rest is kept.
    let forged = sign(
        alice_id.device_keys(&alice),
        &alice.user_id,
        &self_signing_id,
        &alice_id.master,
    );
    let mut altered = sign(
        alice_id.device_keys(&alice),
        &alice.user_id,
        &self_signing_id,
        &alice_id.self_signing,
    );
    altered["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    let (status, body) = s
        .post(
            "/keys/signatures/upload",
            &alice.token,
            json!({
                alice.user_id.clone(): {
                    alice.device_id.clone(): forged,
                    "NOSUCHDEVICE": sign(json!({ "device_id": "NOSUCHDEVICE" }), &alice.user_id, &self_signing_id, &alice_id.self_signing),
                },
                bob.user_id.clone(): { "NOTHISKEY": { "signatures": {} } },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let failures = &body["failures"];
    assert_eq!(
        failures[&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE",
        "{body}"
    );
    assert_eq!(
        failures[&alice.user_id]["NOSUCHDEVICE"]["status"], 404,
        "{body}"
    );
    assert_eq!(
        failures[&bob.user_id]["NOTHISKEY"]["errcode"], "M_NOT_FOUND",
        "{body}"
    );
    let (_, body) = s
        .post(
            "/keys/signatures/upload",
            &alice.token,
            json!({ alice.user_id.clone(): { alice.device_id.clone(): altered } }),
        )
        .await;
    assert_eq!(
        body["failures"][&alice.user_id][&alice.device_id]["message"],
        "Key does not match"
    );

    // Malformed input is the request's error.
    assert_error(
        &s.post(
            "/keys/signatures/upload",
            &alice.token,
            json!({ alice.user_id.clone(): "nope" }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
}
