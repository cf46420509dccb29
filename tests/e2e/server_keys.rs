//! This server's signing key: Synapse's key-file format, made at first
//! start and kept, published signed at `GET /_matrix/key/v2/server` on
//! listeners serving `keys` (or `federation`).

use axon_testkit::*;
use base64::Engine;
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};

const KEYS_LISTENER: &str = "listeners:
  - port: 0
    bind_addresses: ['127.0.0.1']
    resources: [{names: [client, keys]}]";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

async fn server_keys(s: &TestServer) -> (StatusCode, Value) {
    s.request(Method::GET, "/_matrix/key/v2/server", None, None)
        .await
}

/// Checks the response's signature by its own key; the key's ID and
/// public key.
fn verified(body: &Value) -> (String, String) {
    let keys = body["verify_keys"].as_object().unwrap();
    assert_eq!(keys.len(), 1, "{body}");
    let (key_id, key) = keys.iter().next().unwrap();
    let public = key["key"].as_str().unwrap().to_string();
    let signature = body["signatures"]["test.local"][key_id].as_str().unwrap();
    let mut unsigned = body.clone();
    unsigned.as_object_mut().unwrap().remove("signatures");
    let verifying =
        VerifyingKey::from_bytes(&b64().decode(&public).unwrap().try_into().unwrap()).unwrap();
    let signature = Signature::from_slice(&b64().decode(signature).unwrap()).unwrap();
    verifying
        .verify(
            serde_json::to_string(&unsigned).unwrap().as_bytes(),
            &signature,
        )
        .expect("the key response is signed by the key it publishes");
    (key_id.clone(), public)
}

#[tokio::test]
async fn a_signing_key_is_made_once_kept_and_published_signed() {
    let mut s = TestServer::start_with(KEYS_LISTENER).await;
    let (status, body) = server_keys(&s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server_name"], "test.local");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(body["valid_until_ts"].as_u64().unwrap() > now + 3_600_000);
    assert_eq!(body["old_verify_keys"], json!({}));
    let (key_id, public) = verified(&body);
    // Synapse's format, beside the database.
    let file = std::fs::read_to_string(s.dir.path().join("test.local.signing.key")).unwrap();
    let fields: Vec<&str> = file.split_whitespace().collect();
    assert_eq!(fields[0], "ed25519");
    assert_eq!(format!("ed25519:{}", fields[1]), key_id);
    assert_eq!(b64().decode(fields[2]).unwrap().len(), 32);

    s.restart().await;
    let (_, again) = server_keys(&s).await;
    assert_eq!(
        verified(&again),
        (key_id, public),
        "the same key after a restart"
    );
}

#[tokio::test]
async fn a_synapse_key_file_and_old_keys_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let seed = [7u8; 32];
    let path = dir.path().join("synapse.signing.key");
    std::fs::write(&path, format!("ed25519 a_Abcd {}\n", b64().encode(seed))).unwrap();
    let s = TestServer::start_with(&format!(
        "{KEYS_LISTENER}
signing_key_path: {}
old_signing_keys:
  'ed25519:old1': {{ key: 'l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ', expired_ts: 1576767829750 }}",
        path.display()
    ))
    .await;
    let (_, body) = server_keys(&s).await;
    let (key_id, public) = verified(&body);
    assert_eq!(key_id, "ed25519:a_Abcd");
    let expected = SigningKey::from_bytes(&seed).verifying_key();
    assert_eq!(public, b64().encode(expected.as_bytes()));
    assert_eq!(
        body["old_verify_keys"],
        json!({ "ed25519:old1": { "key": "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ", "expired_ts": 1576767829750u64 } })
    );
}

#[tokio::test]
async fn a_bad_key_file_stops_start_up_and_keys_are_served_only_where_configured() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.signing.key");
    std::fs::write(&path, "ed25519 a_x not-base64!\n").unwrap();
    let error = start_error(&test_config(
        dir.path(),
        &format!("signing_key_path: {}", path.display()),
    ))
    .await;
    assert!(
        error.contains("signing_key_path") && error.contains("not 32 bytes of base64"),
        "{error}"
    );
    // The default listener serves the client API only.
    let s = TestServer::start().await;
    assert_eq!(server_keys(&s).await.0, StatusCode::NOT_FOUND);
}
