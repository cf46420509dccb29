//! This server's signing key (Synapse's key-file format, made at start if
//! absent) and what `GET /_matrix/key/v2/server` publishes: the current
//! key, the old ones, all signed with the current one by ruma's
//! signatures.

use base64::Engine;
use rand::Rng;
use ruma::signatures::Ed25519KeyPair;
use serde_json::{json, Map, Value};
use std::path::Path;

/// How long other servers may cache the key (Synapse's default
/// `key_refresh_interval`, one day).
const VALID_FOR_MS: u64 = 24 * 60 * 60 * 1000;

/// The PKCS#8 v1 prefix of an Ed25519 private key: what ruma parses, with
/// the 32-byte seed of Synapse's key file after it.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

pub struct ServerKeys {
    /// The name the keys sign for.
    server_name: String,
    pair: Ed25519KeyPair,
    /// `ed25519:<version>`.
    pub key_id: String,
    /// The public key, unpadded base64.
    pub public_key: String,
    /// Old keys by ID: `(public key, expired_ts)`.
    old: Vec<(String, String, u64)>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

impl ServerKeys {
    /// Reads the key file at `path`, or makes one there (mode 0600) with a
    /// new key, as Synapse does at first start.
    pub fn load_or_generate(
        server_name: &str,
        path: &Path,
        old: &std::collections::BTreeMap<String, crate::config::OldSigningKey>,
    ) -> Result<ServerKeys, String> {
        let shown = path.display();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let seed: [u8; 32] = rand::thread_rng().gen();
                let version: String = rand::thread_rng()
                    .sample_iter(rand::distributions::Alphanumeric)
                    .take(4)
                    .map(char::from)
                    .collect();
                let line = format!("ed25519 a_{version} {}\n", b64().encode(seed));
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                write_private(path, &line).map_err(|e| format!("cannot write {shown}: {e}"))?;
                tracing::info!("made a new signing key in {shown}");
                line
            }
            Err(e) => return Err(format!("cannot read {shown}: {e}")),
        };
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .ok_or_else(|| format!("{shown} holds no key"))?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [algorithm, version, seed] = parts[..] else {
            return Err(format!(
                "{shown}: expected `ed25519 <version> <base64 seed>`, found {} fields",
                parts.len()
            ));
        };
        if algorithm != "ed25519" {
            return Err(format!("{shown}: unsupported key algorithm `{algorithm}`"));
        }
        let seed = b64()
            .decode(seed.trim_end_matches('='))
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or_else(|| format!("{shown}: the key is not 32 bytes of base64"))?;
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let pair = Ed25519KeyPair::from_der(&der, version.to_string())
            .map_err(|e| format!("{shown}: {e}"))?;
        let public_key = b64().encode(pair.public_key());
        let mut old_keys = Vec::new();
        for (id, key) in old {
            if !id.starts_with("ed25519:") {
                return Err(format!(
                    "old_signing_keys.{id}: expected a key ID `ed25519:<version>`"
                ));
            }
            old_keys.push((id.clone(), key.key.clone(), key.expired_ts));
        }
        Ok(ServerKeys {
            server_name: server_name.to_string(),
            key_id: format!("ed25519:{version}"),
            public_key,
            pair,
            old: old_keys,
        })
    }

    /// Adds the content hash and this server's signature to a new event.
    pub fn hash_and_sign_event(
        &self,
        event: &mut ruma::CanonicalJsonObject,
        rules: &ruma::room_version_rules::RoomVersionRules,
    ) -> Result<(), axon::ModuleError> {
        ruma::signatures::hash_and_sign_event(
            &self.server_name,
            &self.pair,
            event,
            &rules.redaction,
        )
        .map_err(|e| match e {
            ruma::signatures::JsonError::PduTooLarge => {
                axon::ModuleError::new(413, axon::ErrCode::TooLarge, "event too large")
            }
            other => axon::ModuleError::new(
                400,
                axon::ErrCode::BadJson,
                format!("event cannot be signed: {other}"),
            ),
        })
    }

    /// The signed body of `GET /_matrix/key/v2/server`.
    pub fn key_response(&self, now_ms: u64) -> Value {
        let server_name = self.server_name.as_str();
        let old: Map<String, Value> = self
            .old
            .iter()
            .map(|(id, key, expired)| (id.clone(), json!({ "key": key, "expired_ts": expired })))
            .collect();
        let body = json!({
            "server_name": server_name,
            "valid_until_ts": now_ms + VALID_FOR_MS,
            "verify_keys": { self.key_id.clone(): { "key": self.public_key } },
            "old_verify_keys": old,
        });
        let Value::Object(map) = body else {
            unreachable!()
        };
        let mut object = ruma::canonical_json::try_from_json_map(map)
            .expect("the key response is canonical JSON");
        ruma::signatures::sign_json(server_name, &self.pair, &mut object)
            .expect("an object without signatures can be signed");
        serde_json::to_value(object).expect("canonical JSON is JSON")
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
