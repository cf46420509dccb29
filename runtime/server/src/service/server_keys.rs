//! This server's signing key (Synapse's key-file format, made at start if
//! absent) and what `GET /_matrix/key/v2/server` publishes: the current
//! key, the old ones, all signed with the current one by ruma's
//! signatures.

use crate::homeserver::Homeserver;
use crate::service::MatrixError;
use crate::storage::RemoteKey;
use axon::ErrCode;
use base64::Engine;
use rand::Rng;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::signatures::Ed25519KeyPair;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

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

    /// The `Authorization` header of a request this server sends to
    /// `destination`: ruma's `X-Matrix` signature over method, URI, origin,
    /// destination and body.
    pub fn authorization(
        &self,
        destination: &ruma::ServerName,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<String, String> {
        use ruma::api::federation::authentication::{ServerSignaturesInput, XMatrix};
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .body(body.unwrap_or_default().to_vec())
            .map_err(|e| format!("not a request: {e}"))?;
        let origin = ruma::OwnedServerName::try_from(self.server_name.as_str())
            .map_err(|e| e.to_string())?;
        let input = ServerSignaturesInput::new(origin, destination.to_owned(), &self.pair);
        XMatrix::try_from_http_request(&request, input)
            .map(|header| header.to_string())
            .map_err(|e| e.to_string())
    }

    /// This server's own keys, as a verifier reads them: the current one,
    /// and the old ones until they expired.
    pub fn own_keys(&self) -> Vec<crate::storage::RemoteKey> {
        let mut keys = vec![crate::storage::RemoteKey {
            key_id: self.key_id.clone(),
            public_key: self.public_key.clone(),
            valid_until_ts: i64::MAX,
            expired_ts: None,
            key_json: String::new(),
        }];
        keys.extend(
            self.old
                .iter()
                .map(|(id, key, expired)| crate::storage::RemoteKey {
                    key_id: id.clone(),
                    public_key: key.clone(),
                    valid_until_ts: *expired as i64,
                    expired_ts: Some(*expired as i64),
                    key_json: String::new(),
                }),
        );
        keys
    }

    /// Adds this server's signature to a JSON object (a notary's answer).
    pub fn sign_json(&self, object: &mut ruma::CanonicalJsonObject) {
        // Only an object whose `signatures` is no object fails, and the
        // caller checked the shape already.
        let _ = ruma::signatures::sign_json(&self.server_name, &self.pair, object);
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

/// How long a key fetched from its server may be used at most, whatever
/// the server says (the spec's seven days, for room versions 5 and later).
const MAX_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// A server whose keys were just fetched is not asked again for this long
/// (a request naming an unknown key must not make this server hammer the
/// origin, or be used to).
const REFETCH_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Key fetches per server: one at a time, and when the last one was.
#[derive(Default)]
pub struct KeyFetches {
    servers: std::sync::Mutex<
        std::collections::HashMap<String, Arc<tokio::sync::Mutex<Option<std::time::Instant>>>>,
    >,
}

impl KeyFetches {
    fn slot(&self, server: &str) -> Arc<tokio::sync::Mutex<Option<std::time::Instant>>> {
        let mut servers = self.servers.lock().unwrap();
        if servers.len() > 10_000 {
            servers.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        servers.entry(server.to_string()).or_default().clone()
    }
}

/// Whether `object` carries a valid signature of `entity` by `key_id`.
fn signed_by(object: &CanonicalJsonObject, entity: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object
        .get("signatures")
        .and_then(|s| match s {
            CanonicalJsonValue::Object(map) => map.get(entity),
            _ => None,
        })
        .and_then(|s| match s {
            CanonicalJsonValue::Object(map) => map.get(key_id),
            _ => None,
        })
        .cloned()
    else {
        return false;
    };
    let mut only = object.clone();
    let mut one = CanonicalJsonObject::new();
    one.insert(key_id.to_string(), signature);
    let mut signatures = CanonicalJsonObject::new();
    signatures.insert(entity.to_string(), CanonicalJsonValue::Object(one));
    only.insert("signatures".into(), CanonicalJsonValue::Object(signatures));
    let map = public_key_map(entity, [(key_id.to_string(), public_key.to_string())]);
    ruma::signatures::verify_json(&map, &only).is_ok()
}

/// What ruma's verifiers take: `entity`'s keys, `(key ID, unpadded base64)`;
/// a key that is no base64 is left out (and so verifies nothing).
pub(crate) fn public_key_map(
    entity: &str,
    keys: impl IntoIterator<Item = (String, String)>,
) -> ruma::signatures::PublicKeyMap {
    let set: ruma::signatures::PublicKeySet = keys
        .into_iter()
        .filter_map(|(id, key)| Some((id, ruma::serde::Base64::parse(key).ok()?)))
        .collect();
    ruma::signatures::PublicKeyMap::from([(entity.to_string(), set)])
}

/// The keys in a key response of `server` (from it or from a notary),
/// which must be signed by each of its current keys; validity capped at
/// seven days from `now`.
fn parse_key_response(server: &str, value: &Value, now: i64) -> Result<Vec<RemoteKey>, String> {
    let Value::Object(map) = value else {
        return Err("the key response is not a JSON object".into());
    };
    let object = ruma::canonical_json::try_from_json_map(map.clone())
        .map_err(|e| format!("the key response is not canonical JSON: {e}"))?;
    if value["server_name"].as_str() != Some(server) {
        return Err(format!(
            "the key response is for {}, not {server}",
            value["server_name"]
        ));
    }
    let valid_until = value["valid_until_ts"]
        .as_i64()
        .ok_or("the key response has no valid_until_ts")?
        .min(now + MAX_VALIDITY_MS);
    let verify_keys = value["verify_keys"]
        .as_object()
        .filter(|keys| !keys.is_empty())
        .ok_or("the key response has no verify_keys")?;
    let key_json = value.to_string();
    let mut keys = Vec::new();
    for (key_id, key) in verify_keys {
        let public_key = key["key"]
            .as_str()
            .ok_or_else(|| format!("verify_keys.{key_id} has no key"))?;
        if !signed_by(&object, server, key_id, public_key) {
            return Err(format!(
                "the key response is not signed by {server}'s key {key_id}"
            ));
        }
        keys.push(RemoteKey {
            key_id: key_id.clone(),
            public_key: public_key.to_string(),
            valid_until_ts: valid_until,
            expired_ts: None,
            key_json: key_json.clone(),
        });
    }
    if let Some(old) = value["old_verify_keys"].as_object() {
        for (key_id, key) in old {
            if let (Some(public_key), Some(expired)) =
                (key["key"].as_str(), key["expired_ts"].as_i64())
            {
                keys.push(RemoteKey {
                    key_id: key_id.clone(),
                    public_key: public_key.to_string(),
                    valid_until_ts: expired,
                    expired_ts: Some(expired),
                    key_json: key_json.clone(),
                });
            }
        }
    }
    Ok(keys)
}

impl Homeserver {
    /// The keys of `server` among `wanted` that may verify a signature made
    /// at `ts`, `{key_id: public key}`: from the cache, else fetched from
    /// the server itself, else from the trusted key servers. Empty when
    /// none can be had.
    pub async fn verify_keys_of(
        &self,
        server: &ruma::ServerName,
        wanted: &[String],
        ts: i64,
    ) -> Result<BTreeMap<String, String>, MatrixError> {
        let usable = |keys: &[RemoteKey]| -> BTreeMap<String, String> {
            keys.iter()
                .filter(|k| wanted.contains(&k.key_id) && k.valid_at(ts))
                .map(|k| (k.key_id.clone(), k.public_key.clone()))
                .collect()
        };
        if server == self.server_name {
            return Ok(usable(&self.server_keys.own_keys()));
        }
        let found = usable(&self.storage.remote_keys(server.as_str()).await?);
        if found.len() == wanted.len() {
            return Ok(found);
        }
        let slot = self.key_fetches.slot(server.as_str());
        let mut last_fetch = slot.lock().await;
        // Another request may have fetched them while this one waited.
        let found = usable(&self.storage.remote_keys(server.as_str()).await?);
        if found.len() == wanted.len() || last_fetch.is_some_and(|at| at.elapsed() < REFETCH_AFTER)
        {
            return Ok(found);
        }
        *last_fetch = Some(std::time::Instant::now());
        let now = axon::time::now_ms();
        match self
            .federation
            .get_unsigned(server, "/_matrix/key/v2/server")
            .await
            .map_err(|e| e.to_string())
            .and_then(|answer| parse_key_response(server.as_str(), &answer, now))
        {
            Ok(keys) => {
                self.storage
                    .store_remote_keys(server.as_str(), keys, now)
                    .await?
            }
            Err(e) => tracing::info!("cannot fetch the keys of {server} from it: {e}"),
        }
        let found = usable(&self.storage.remote_keys(server.as_str()).await?);
        if found.len() == wanted.len() {
            return Ok(found);
        }
        for notary in &self.config.trusted_key_servers {
            match self.keys_from_notary(notary, server, wanted, ts).await {
                Ok(keys) => {
                    self.storage
                        .store_remote_keys(server.as_str(), keys, now)
                        .await?
                }
                Err(e) => tracing::info!(
                    "cannot fetch the keys of {server} from {}: {e}",
                    notary.server_name
                ),
            }
            let found = usable(&self.storage.remote_keys(server.as_str()).await?);
            if found.len() == wanted.len() {
                return Ok(found);
            }
        }
        Ok(usable(&self.storage.remote_keys(server.as_str()).await?))
    }

    /// Asks a trusted key server for `server`'s keys; its answers must be
    /// signed by it (unless `accept_keys_insecurely`) and by `server`.
    async fn keys_from_notary(
        &self,
        notary: &crate::config::TrustedKeyServer,
        server: &ruma::ServerName,
        wanted: &[String],
        ts: i64,
    ) -> Result<Vec<RemoteKey>, String> {
        let notary_name =
            ruma::ServerName::parse(&notary.server_name).map_err(|e| e.to_string())?;
        let criteria: Map<String, Value> = wanted
            .iter()
            .map(|id| (id.clone(), json!({ "minimum_valid_until_ts": ts })))
            .collect();
        let answer = self
            .ask_server(
                &notary_name,
                reqwest::Method::POST,
                "/_matrix/key/v2/query",
                Some(&json!({ "server_keys": { server.as_str(): criteria } })),
            )
            .await
            .map_err(|e| e.to_string())?;
        let now = axon::time::now_ms();
        let mut keys = Vec::new();
        for response in answer["server_keys"].as_array().into_iter().flatten() {
            if response["server_name"].as_str() != Some(server.as_str()) {
                continue;
            }
            if let Some(notary_keys) = &notary.verify_keys {
                let Value::Object(map) = response else {
                    continue;
                };
                let Ok(object) = ruma::canonical_json::try_from_json_map(map.clone()) else {
                    continue;
                };
                if !notary_keys
                    .iter()
                    .any(|(id, key)| signed_by(&object, &notary.server_name, id, key))
                {
                    return Err("an answer is not signed by the notary's verify_keys".into());
                }
            }
            keys.extend(parse_key_response(server.as_str(), response, now)?);
        }
        Ok(keys)
    }

    /// Answers a notary query (`/_matrix/key/v2/query`): for each server,
    /// its key responses this server holds (fetched now if none is valid
    /// until `minimum_valid_until_ts`), each countersigned by this server.
    pub async fn notary_answer(
        &self,
        query: BTreeMap<ruma::OwnedServerName, BTreeMap<String, i64>>,
    ) -> Result<Vec<Value>, MatrixError> {
        let now = axon::time::now_ms();
        let mut answers = Vec::new();
        for (server, criteria) in query {
            if server == self.server_name {
                answers.push(self.server_keys.key_response(now as u64));
                continue;
            }
            let minimum = criteria.values().copied().max().unwrap_or(now);
            let mut wanted: Vec<String> = criteria.keys().cloned().collect();
            let cached = self.storage.remote_keys(server.as_str()).await?;
            if wanted.is_empty() {
                // All its keys: the ones it has now.
                wanted = cached
                    .iter()
                    .filter(|k| k.expired_ts.is_none())
                    .map(|k| k.key_id.clone())
                    .collect();
                if wanted.is_empty() {
                    wanted.push(String::new());
                }
            }
            self.verify_keys_of(&server, &wanted, minimum).await?;
            let mut seen = std::collections::HashSet::new();
            for key in self.storage.remote_keys(server.as_str()).await?.iter() {
                if !seen.insert(key.key_json.clone()) {
                    continue;
                }
                let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&key.key_json) else {
                    continue;
                };
                let Ok(mut object) = ruma::canonical_json::try_from_json_map(map) else {
                    continue;
                };
                self.server_keys.sign_json(&mut object);
                if let Ok(value) = serde_json::to_value(object) {
                    answers.push(value);
                }
            }
        }
        Ok(answers)
    }

    /// Checks a request from another server: its `X-Matrix` header names
    /// this server as destination (or none), and is signed over the
    /// request by a key of the origin valid now. The origin, or 401
    /// `M_UNAUTHORIZED`.
    pub async fn authenticate_server(
        &self,
        request: &axum::http::Request<Vec<u8>>,
    ) -> Result<ruma::OwnedServerName, MatrixError> {
        use ruma::api::federation::authentication::XMatrix;
        let unauthorized = |why: String| MatrixError::new(401, ErrCode::Unauthorized, why);
        let header = request
            .headers()
            .get_all(axum::http::header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.trim_start().starts_with("X-Matrix"))
            .ok_or_else(|| unauthorized("Missing X-Matrix Authorization header".into()))?;
        let x_matrix = XMatrix::parse(header)
            .map_err(|e| unauthorized(format!("Invalid X-Matrix Authorization header: {e}")))?;
        if x_matrix
            .destination
            .as_ref()
            .is_some_and(|d| *d != self.server_name)
        {
            return Err(unauthorized(format!(
                "The request is for {}, not this server",
                x_matrix
                    .destination
                    .as_ref()
                    .map(|d| d.as_str())
                    .unwrap_or("")
            )));
        }
        let key_id = x_matrix.key.to_string();
        let keys = self
            .verify_keys_of(
                &x_matrix.origin,
                std::slice::from_ref(&key_id),
                axon::time::now_ms(),
            )
            .await?;
        let Some(public_key) = keys.get(&key_id) else {
            return Err(unauthorized(format!(
                "Failed to find any key to satisfy: {} {key_id}",
                x_matrix.origin
            )));
        };
        let map = public_key_map(
            x_matrix.origin.as_str(),
            [(key_id.clone(), public_key.clone())],
        );
        x_matrix
            .verify_request(request, &self.server_name, &map)
            .map_err(|e| {
                unauthorized(format!(
                    "Invalid signature for server {}: {e}",
                    x_matrix.origin
                ))
            })?;
        Ok(x_matrix.origin)
    }
}
