//! End-to-end encryption keys: `POST /keys/upload`, `/keys/query` and
//! `/keys/claim`. The server decrypts nothing; it checks that a device's
//! keys are the device's own (signed by its ed25519 key) and hands each
//! one-time key out once.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::{KeySignature, StorageError, UploadedKey, UserKeys};
use axon::ErrCode;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// What `failures` says of a server that did not answer, as Synapse says it.
fn unreachable_server(error: &crate::federation::FederationError) -> Value {
    use crate::federation::FederationError;
    match error {
        FederationError::Status { status, body } => json!({
            "status": status,
            "message": body.get("error").and_then(Value::as_str).unwrap_or("Failed"),
        }),
        other => json!({ "status": 503, "message": other.to_string() }),
    }
}

/// Whether `object` (device keys, a cross-signing key) names `user` as its
/// owner: what another server answers is kept only for its own users.
fn owned_by(object: &Value, user: &str) -> bool {
    object.get("user_id").and_then(Value::as_str) == Some(user)
}

/// How long `/keys/query` and `/keys/claim` wait for other servers (the
/// client API's default `timeout`).
const REMOTE_KEYS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Users of other servers, by server, with what is asked of each.
type RemoteUsers = BTreeMap<ruma::OwnedServerName, Map<String, Value>>;

fn bad(message: impl Into<String>) -> MatrixError {
    MatrixError::new(400, ErrCode::BadJson, message)
}

/// Checks that `keys` (a device's identity keys) carry a valid signature by
/// their own `ed25519:{device}` key.
fn check_device_keys(
    keys: &Map<String, Value>,
    user: &UserId,
    device: &str,
) -> Result<(), MatrixError> {
    if keys.get("user_id").and_then(Value::as_str) != Some(user.as_str())
        || keys.get("device_id").and_then(Value::as_str) != Some(device)
    {
        return Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            "device_keys must be for the requesting user and device",
        ));
    }
    let key_id = format!("ed25519:{device}");
    let public = keys
        .get("keys")
        .and_then(|k| k.get(&key_id))
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("device_keys.keys has no {key_id}")))?;
    verify_signed(keys, user, &key_id, public, "device_keys")
}

fn invalid_signature(message: impl Into<String>) -> MatrixError {
    MatrixError::new(400, ErrCode::InvalidSignature, message)
}

/// Checks that `object` carries a valid signature by `signer`'s key
/// `key_id`, whose public half is `public` (unpadded base64); `what` names
/// the object in the error.
fn verify_signed(
    object: &Map<String, Value>,
    signer: &UserId,
    key_id: &str,
    public: &str,
    what: &str,
) -> Result<(), MatrixError> {
    let signature = object
        .get("signatures")
        .and_then(|s| s.get(signer.as_str()))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_signature(format!("{what} are not signed with {key_id}")))?;
    let decode = |text: &str| {
        ruma::serde::Base64::<ruma::serde::base64::Standard>::parse(text).map(|b| b.into_inner())
    };
    let (public, signature) = match (decode(public), decode(signature)) {
        (Ok(p), Ok(s)) => (p, s),
        _ => {
            return Err(bad(format!(
                "{what} have a key or signature that is not base64"
            )))
        }
    };
    let canonical = ruma::canonical_json::try_from_json_map(object.clone())
        .map_err(|e| bad(format!("{what} are not canonical JSON: {e}")))?;
    let signed = ruma::signatures::to_canonical_json_string_for_signing(&canonical)
        .map_err(|e| bad(e.to_string()))?;
    ruma::signatures::verify_canonical_json_bytes(
        &ruma::SigningKeyAlgorithm::Ed25519,
        &public,
        &signature,
        signed.as_bytes(),
    )
    .map_err(|_| invalid_signature(format!("{what} signature by {key_id} does not verify")))
}

/// A cross-signing key's one ed25519 key: `(key ID, public key)`, after
/// checking it is `user`'s, for `usage`.
fn cross_signing_key(
    key: &Value,
    user: &UserId,
    usage: &str,
) -> Result<(String, String), MatrixError> {
    let invalid = || MatrixError::new(400, ErrCode::InvalidParam, format!("Invalid {usage} key"));
    let parsed: ruma::encryption::CrossSigningKey =
        serde_json::from_value(key.clone()).map_err(|e| {
            MatrixError::new(
                400,
                ErrCode::BadJson,
                format!("the {usage} key is malformed: {e}"),
            )
        })?;
    let used_for = parsed.usage.iter().any(|u| u.as_str() == usage);
    if parsed.user_id != user || !used_for || parsed.keys.len() != 1 {
        return Err(invalid());
    }
    let (key_id, public) = parsed.keys.into_iter().next().ok_or_else(invalid)?;
    match key_id.as_str().strip_prefix("ed25519:") {
        Some(_) => Ok((key_id.to_string(), public)),
        None => Err(invalid()),
    }
}

fn not_found(message: impl Into<String>) -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, message)
}

/// A signed key that is not the stored one.
fn bad_key() -> MatrixError {
    MatrixError::new(400, ErrCode::Unknown, "Key does not match")
}

/// The devices' identity keys with the signatures uploaded for them.
fn device_keys_with_signatures(keys: &UserKeys) -> Vec<(OwnedDeviceId, Value)> {
    keys.devices
        .iter()
        .map(|(device, json, _)| {
            let mut key: Value = serde_json::from_str(json).unwrap_or_default();
            merge_signatures(&mut key, device.as_str(), &keys.signatures);
            (device.clone(), key)
        })
        .collect()
}

/// A cross-signing key with the signatures uploaded for it.
fn cross_signing_with_signatures(keys: &UserKeys, key_type: &str) -> Option<Value> {
    let (public, json) = keys.cross_signing.get(key_type)?;
    let mut key: Value = serde_json::from_str(json).ok()?;
    merge_signatures(&mut key, public, &keys.signatures);
    Some(key)
}

/// One entry of `/keys/signatures/upload`'s `failures`.
fn signature_failure(e: &MatrixError) -> Value {
    json!({ "status": e.status, "errcode": e.errcode.as_str(), "message": e.message })
}

/// `object` without `signatures` and `unsigned`: what a signature covers,
/// compared with the stored copy before a signature of it is kept.
fn signed_part(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    object
}

/// Adds each signature to the key it signs (`target` names the key as the
/// signatures table does: a device ID, or a cross-signing public key).
fn merge_signatures(key: &mut Value, target: &str, signatures: &[KeySignature]) {
    for s in signatures.iter().filter(|s| s.target_device == target) {
        if !key["signatures"].is_object() {
            key["signatures"] = json!({});
        }
        if !key["signatures"][&s.signer].is_object() {
            key["signatures"][&s.signer] = json!({});
        }
        key["signatures"][&s.signer][&s.key_id] = json!(s.signature);
    }
}

/// `{"algorithm:id": key}` as `(algorithm, id, key JSON)`.
fn parse_keys(keys: Option<&Value>, field: &str) -> Result<Vec<UploadedKey>, MatrixError> {
    let Some(keys) = keys else {
        return Ok(Vec::new());
    };
    let keys = keys
        .as_object()
        .ok_or_else(|| bad(format!("{field} must be an object")))?;
    keys.iter()
        .map(|(name, key)| {
            let (algorithm, id) = name
                .split_once(':')
                .ok_or_else(|| bad(format!("{field}: key name {name:?} is not algorithm:id")))?;
            // The spec's shape, by ruma's type: a signed key or a bare one.
            serde_json::from_value::<ruma::encryption::OneTimeKey>(key.clone())
                .map_err(|e| bad(format!("{field}.{name} is not a key: {e}")))?;
            Ok((algorithm.to_string(), id.to_string(), key.to_string()))
        })
        .collect()
}

impl Homeserver {
    /// `POST /keys/upload`: the device's identity keys (checked), one-time
    /// and fallback keys; answers its one-time key counts.
    pub async fn upload_keys(
        &self,
        actor: &Actor,
        body: Map<String, Value>,
    ) -> Result<Value, MatrixError> {
        let device = actor
            .device_id
            .clone()
            .ok_or_else(|| MatrixError::new(400, ErrCode::Unknown, "keys belong to a device"))?;
        let device_keys = match body.get("device_keys") {
            None | Some(Value::Null) => None,
            Some(Value::Object(keys)) => {
                // Stored as sent (signatures cover the exact object), once
                // verified and ruma's type accepts its shape.
                check_device_keys(keys, &actor.user_id, device.as_str())?;
                serde_json::from_value::<ruma::encryption::DeviceKeys>(Value::Object(keys.clone()))
                    .map_err(|e| bad(format!("device_keys are malformed: {e}")))?;
                Some(Value::Object(keys.clone()).to_string())
            }
            Some(_) => return Err(bad("device_keys must be an object")),
        };
        let one_time = parse_keys(body.get("one_time_keys"), "one_time_keys")?;
        let fallback = parse_keys(body.get("fallback_keys"), "fallback_keys")?;
        let counts = match self
            .storage
            .upload_keys(&actor.user_id, &device, device_keys, one_time, fallback)
            .await
        {
            Ok(counts) => counts,
            Err(StorageError::Conflict(why)) => {
                return Err(MatrixError::new(400, ErrCode::InvalidParam, why))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(json!({ "one_time_key_counts": counts }))
    }

    /// `POST /keys/query`: users' device keys and cross-signing keys (the
    /// user-signing key only for its owner) with the signatures `viewer`
    /// may see. Users of other servers are asked of their servers
    /// (`/user/keys/query`, one request per server, at once); a server
    /// that does not answer is in `failures`, never silently absent.
    pub async fn query_keys(
        &self,
        viewer: &UserId,
        body: Map<String, Value>,
    ) -> Result<Value, MatrixError> {
        let wanted = body
            .get("device_keys")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                MatrixError::new(
                    400,
                    ErrCode::MissingParam,
                    "Missing params: ['device_keys']",
                )
            })?;
        for (user, devices) in wanted {
            if !matches!(devices, Value::Array(_) | Value::Null) {
                return Err(bad(format!("device_keys.{user} must be a list of devices")));
            }
        }
        let (local, remote) = self.by_server(wanted)?;
        let mut answer = self.local_keys(Some(viewer), &local).await?;
        let path = "/_matrix/federation/v1/user/keys/query";
        for (server, _, result) in self.ask_servers(remote, path, "device_keys").await {
            match result {
                Ok(theirs) => merge_remote_keys(&mut answer, &theirs, &server),
                Err(e) => answer["failures"][server.as_str()] = unreachable_server(&e),
            }
        }
        self.add_own_signatures(viewer, &mut answer).await?;
        Ok(answer)
    }

    /// A keys request's users (`{user: …}`), this server's apart and the
    /// others' by their server.
    fn by_server(
        &self,
        wanted: &Map<String, Value>,
    ) -> Result<(Map<String, Value>, RemoteUsers), MatrixError> {
        let mut local = Map::new();
        let mut remote = RemoteUsers::new();
        for (user, asked) in wanted {
            let user_id = super::user_id_param(user)?;
            if user_id.server_name() == self.server_name {
                local.insert(user.clone(), asked.clone());
            } else {
                remote
                    .entry(user_id.server_name().to_owned())
                    .or_default()
                    .insert(user.clone(), asked.clone());
            }
        }
        Ok((local, remote))
    }

    /// Asks each server in `remote` for its users' keys (`path`, the users
    /// under `field`), all at once, each within 10 s.
    async fn ask_servers(
        &self,
        remote: RemoteUsers,
        path: &str,
        field: &str,
    ) -> Vec<(
        ruma::OwnedServerName,
        Map<String, Value>,
        Result<Value, crate::federation::FederationError>,
    )> {
        let asked = remote.into_iter().map(|(server, users)| async move {
            let mut body = Map::new();
            body.insert(field.to_string(), Value::Object(users.clone()));
            let result = self
                .ask_server_within(
                    REMOTE_KEYS_WAIT,
                    &server,
                    reqwest::Method::POST,
                    path,
                    Some(&Value::Object(body)),
                )
                .await;
            if let Err(e) = &result {
                tracing::info!("{path} of {server}: {e}");
            }
            (server, users, result)
        });
        futures_util::future::join_all(asked).await
    }

    /// Adds to other servers' users' master keys in `answer` the
    /// signatures `viewer` made of them (kept here only).
    async fn add_own_signatures(
        &self,
        viewer: &UserId,
        answer: &mut Value,
    ) -> Result<(), MatrixError> {
        let users: Vec<String> = answer["master_keys"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for user in users {
            let Ok(user_id) = UserId::parse(&user) else {
                continue;
            };
            if user_id.server_name() == self.server_name {
                continue;
            }
            let mine = self
                .storage
                .keys_of_user(&user_id, Some(Vec::new()), viewer)
                .await?;
            let key = &mut answer["master_keys"][user.as_str()];
            let public = key["keys"]
                .as_object()
                .and_then(|k| k.values().next())
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(public) = public {
                merge_signatures(key, &public, &mine.signatures);
            }
        }
        Ok(())
    }

    /// This server's users' keys, as `/keys/query` and the federation's
    /// `/user/keys/query` answer them (`viewer` `None`: another server
    /// asks, which gets no user-signing keys and only the users' own
    /// signatures).
    pub async fn local_keys(
        &self,
        viewer: Option<&UserId>,
        wanted: &Map<String, Value>,
    ) -> Result<Value, MatrixError> {
        let mut device_keys = Map::new();
        let mut cross_signing: [(&str, Map<String, Value>); 3] = [
            ("master", Map::new()),
            ("self_signing", Map::new()),
            ("user_signing", Map::new()),
        ];
        for (user, devices) in wanted {
            let user_id = super::user_id_param(user)?;
            if user_id.server_name() != self.server_name {
                continue;
            }
            let devices: Option<Vec<OwnedDeviceId>> = match devices {
                Value::Array(list) => Some(
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(OwnedDeviceId::from)
                        .collect(),
                ),
                Value::Null => None,
                _ => return Err(bad(format!("device_keys.{user} must be a list of devices"))),
            };
            let keys = self
                .storage
                .keys_of_user(&user_id, devices, viewer.unwrap_or(&user_id))
                .await?;
            let mut of_user = Map::new();
            for (device, mut key) in device_keys_with_signatures(&keys) {
                if let Some(Some(name)) = keys
                    .devices
                    .iter()
                    .find(|(d, _, _)| *d == device)
                    .map(|(_, _, name)| name)
                {
                    key["unsigned"] = json!({ "device_display_name": name });
                }
                of_user.insert(device.to_string(), key);
            }
            device_keys.insert(user.clone(), Value::Object(of_user));
            for (key_type, found) in &mut cross_signing {
                if *key_type == "user_signing" && viewer != Some(&*user_id) {
                    continue;
                }
                if let Some(key) = cross_signing_with_signatures(&keys, key_type) {
                    found.insert(user.clone(), key);
                }
            }
        }
        let [(_, master), (_, self_signing), (_, user_signing)] = cross_signing;
        let mut answer = json!({
            "device_keys": device_keys,
            "master_keys": master,
            "self_signing_keys": self_signing,
            "failures": {},
        });
        if viewer.is_some() {
            answer["user_signing_keys"] = Value::Object(user_signing);
        }
        Ok(answer)
    }

    /// `GET /_matrix/federation/v1/user/devices/{user}`: a local user's
    /// devices with their keys, and their cross-signing keys, for a server
    /// that shares a room with them (what it fetches on a device list update).
    pub async fn user_devices(&self, user: &UserId) -> Result<Value, MatrixError> {
        if user.server_name() != self.server_name || self.storage.get_user(user).await?.is_none() {
            return Err(MatrixError::new(404, ErrCode::NotFound, "Unknown user"));
        }
        let keys = self.storage.keys_of_user(user, None, user).await?;
        let with_keys = device_keys_with_signatures(&keys);
        let devices: Vec<Value> = keys
            .devices
            .iter()
            .map(|(device, _, name)| {
                let mut entry = json!({ "device_id": device });
                if let Some((_, key)) = with_keys.iter().find(|(d, _)| d == device) {
                    entry["keys"] = key.clone();
                }
                if let Some(name) = name {
                    entry["device_display_name"] = json!(name);
                }
                entry
            })
            .collect();
        let mut answer = json!({
            "user_id": user,
            "stream_id": self.storage.current_position(),
            "devices": devices,
        });
        for (field, key_type) in [
            ("master_key", "master"),
            ("self_signing_key", "self_signing"),
        ] {
            if let Some(key) = cross_signing_with_signatures(&keys, key_type) {
                answer[field] = key;
            }
        }
        Ok(answer)
    }

    /// `POST /keys/device_signing/upload`: a user's cross-signing keys,
    /// the self- and user-signing keys signed by the master key. The same
    /// keys again are a no-op; replacing keys that exist needs
    /// user-interactive auth, the first upload does not (MSC3967, as
    /// Synapse).
    pub async fn upload_cross_signing_keys(
        &self,
        actor: &Actor,
        mut body: Map<String, Value>,
    ) -> Result<(), super::uia::UiaRefusal> {
        let user = &actor.user_id;
        let auth = match body.remove("auth") {
            Some(Value::Object(auth)) => Some(auth),
            _ => None,
        };
        let stored = self
            .storage
            .keys_of_user(user, Some(Vec::new()), user)
            .await
            .map_err(MatrixError::from)?;
        let fields = [
            ("master_key", "master"),
            ("self_signing_key", "self_signing"),
            ("user_signing_key", "user_signing"),
        ];
        let stored_key = |key_type: &str| -> Option<Value> {
            let (_, json) = stored.cross_signing.get(key_type)?;
            serde_json::from_str(json).ok()
        };
        let differs = fields.iter().any(|(field, key_type)| {
            body.get(*field)
                .is_some_and(|key| !key.is_null() && Some(key) != stored_key(key_type).as_ref())
        });
        if !differs {
            return Ok(());
        }
        if stored.cross_signing.contains_key("master") {
            let operation = format!(
                "reset the device signing key on your account: {}",
                Value::Object(body.clone())
            );
            self.user_interactive_auth(user, operation, auth).await?;
        }
        let master = match body.get("master_key").filter(|k| !k.is_null()) {
            Some(key) => Some(key.clone()),
            None => stored_key("master"),
        }
        .ok_or_else(|| MatrixError::new(400, ErrCode::MissingParam, "No master key available"))?;
        let (master_id, master_public) = cross_signing_key(&master, user, "master")?;
        let mut new_keys = Vec::new();
        for (field, key_type) in fields {
            let Some(key) = body.get(field).filter(|k| !k.is_null()) else {
                continue;
            };
            let (_, public) = cross_signing_key(key, user, key_type)?;
            if key_type != "master" {
                let object = key.as_object().expect("checked by cross_signing_key");
                verify_signed(object, user, &master_id, &master_public, field).map_err(|_| {
                    invalid_signature(format!("Invalid signature on {key_type} key"))
                })?;
            }
            new_keys.push((key_type.to_string(), public, key.to_string()));
        }
        self.storage
            .set_cross_signing_keys(user, new_keys)
            .await
            .map_err(MatrixError::from)?;
        Ok(())
    }

    /// `POST /keys/signatures/upload`: signatures of the user's own devices
    /// by their self-signing key, of their master key by their devices, and
    /// of other users' master keys by their user-signing key. Each is
    /// verified against the stored key it signs; those that fail are in
    /// `failures`, the rest are kept.
    pub async fn upload_key_signatures(
        &self,
        actor: &Actor,
        body: Map<String, Value>,
    ) -> Result<Value, MatrixError> {
        let user = &actor.user_id;
        let mut failures = Map::new();
        for (target, signed) in &body {
            let signed = signed
                .as_object()
                .ok_or_else(|| MatrixError::new(400, ErrCode::InvalidParam, "Invalid parameter"))?;
            if signed.values().any(|k| !k.is_object()) {
                return Err(MatrixError::new(
                    400,
                    ErrCode::InvalidParam,
                    "Invalid parameter",
                ));
            }
            let target_user = super::user_id_param(target)?;
            let (kept, failed) = if target_user == *user {
                self.own_signatures(user, signed).await?
            } else {
                self.signatures_of_other(user, &target_user, signed).await?
            };
            self.storage
                .store_key_signatures(user, &target_user, kept)
                .await?;
            if !failed.is_empty() {
                failures.insert(target.clone(), Value::Object(failed));
            }
        }
        Ok(json!({ "failures": failures }))
    }

    /// The signatures of `user`'s own keys in an upload that verify, and
    /// the failures of the others by key.
    async fn own_signatures(
        &self,
        user: &UserId,
        signed: &Map<String, Value>,
    ) -> Result<(Vec<KeySignature>, Map<String, Value>), MatrixError> {
        let stored = self.storage.keys_of_user(user, None, user).await?;
        let master = cross_signing_with_signatures(&stored, "master");
        let self_signing = cross_signing_with_signatures(&stored, "self_signing");
        let devices: BTreeMap<String, Value> = device_keys_with_signatures(&stored)
            .into_iter()
            .map(|(d, k)| (d.to_string(), k))
            .collect();
        let setup = match (&master, &self_signing) {
            (Some(master), Some(self_signing)) if !devices.is_empty() => Ok((
                cross_signing_key(master, user, "master")?,
                cross_signing_key(self_signing, user, "self_signing")?,
            )),
            (None, _) => Err(not_found(format!("No master key found for {user}"))),
            (_, None) => Err(not_found(format!("No self_signing key found for {user}"))),
            _ => Err(not_found("No device keys found")),
        };
        let ((_, master_public), (self_signing_id, self_signing_public)) = match setup {
            Ok(keys) => keys,
            Err(e) => {
                let failure = signature_failure(&e);
                return Ok((
                    Vec::new(),
                    signed
                        .keys()
                        .map(|k| (k.clone(), failure.clone()))
                        .collect(),
                ));
            }
        };
        let master = master.expect("checked above");
        let mut kept = Vec::new();
        let mut failures = Map::new();
        for (key_name, key) in signed {
            let object = key.as_object().expect("checked by the caller");
            let result = (|| -> Result<Vec<KeySignature>, MatrixError> {
                let by_user = object
                    .get("signatures")
                    .and_then(|s| s.get(user.as_str()))
                    .and_then(Value::as_object)
                    .ok_or_else(|| invalid_signature("Invalid signature"))?;
                if *key_name == master_public {
                    // The master key, signed by the user's devices.
                    if signed_part(key) != signed_part(&master) {
                        return Err(bad_key());
                    }
                    let mut found = Vec::new();
                    for (key_id, signature) in by_user {
                        if let Some(device) = key_id.strip_prefix("ed25519:") {
                            let public = devices
                                .get(device)
                                .and_then(|d| d["keys"][key_id].as_str())
                                .ok_or_else(|| invalid_signature("Invalid signature"))?;
                            verify_signed(object, user, key_id, public, "the master key")
                                .map_err(|_| invalid_signature("Invalid signature"))?;
                        }
                        found.push(KeySignature {
                            target_device: master_public.clone(),
                            signer: user.to_string(),
                            key_id: key_id.clone(),
                            signature: signature.as_str().unwrap_or_default().to_string(),
                        });
                    }
                    return Ok(found);
                }
                // A device, signed by the self-signing key.
                let signature = by_user
                    .get(&self_signing_id)
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid_signature("Invalid signature"))?;
                let stored = devices
                    .get(key_name)
                    .ok_or_else(|| not_found("Unknown device"))?;
                if signed_part(key) != signed_part(stored) {
                    return Err(bad_key());
                }
                verify_signed(
                    object,
                    user,
                    &self_signing_id,
                    &self_signing_public,
                    "the device keys",
                )
                .map_err(|_| invalid_signature("Invalid signature"))?;
                Ok(vec![KeySignature {
                    target_device: key_name.clone(),
                    signer: user.to_string(),
                    key_id: self_signing_id.clone(),
                    signature: signature.to_string(),
                }])
            })();
            match result {
                Ok(found) => kept.extend(found),
                Err(e) => {
                    failures.insert(key_name.clone(), signature_failure(&e));
                }
            }
        }
        Ok((kept, failures))
    }

    /// A signature of `target`'s master key by `user`'s user-signing key,
    /// if it verifies; every other key named is a failure.
    async fn signatures_of_other(
        &self,
        user: &UserId,
        target: &UserId,
        signed: &Map<String, Value>,
    ) -> Result<(Vec<KeySignature>, Map<String, Value>), MatrixError> {
        let fail_all = |e: MatrixError| {
            let failure = signature_failure(&e);
            (
                Vec::new(),
                signed
                    .keys()
                    .map(|k| (k.clone(), failure.clone()))
                    .collect(),
            )
        };
        let own = self
            .storage
            .keys_of_user(user, Some(Vec::new()), user)
            .await?;
        let Some(user_signing) = cross_signing_with_signatures(&own, "user_signing") else {
            return Ok(fail_all(not_found(format!(
                "No user_signing key found for {user}"
            ))));
        };
        let (user_signing_id, user_signing_public) =
            cross_signing_key(&user_signing, user, "user_signing")?;
        // Another server's user's master key is asked of their server; the
        // signature is kept here, for the signer alone.
        let master = if target.server_name() != self.server_name {
            let mut wanted = Map::new();
            wanted.insert(target.to_string(), json!([]));
            let mut body = Map::new();
            body.insert("device_keys".into(), Value::Object(wanted));
            let answer = self.query_keys(user, body).await?;
            answer["master_keys"].get(target.as_str()).cloned()
        } else {
            let theirs = self
                .storage
                .keys_of_user(target, Some(Vec::new()), user)
                .await?;
            cross_signing_with_signatures(&theirs, "master")
        };
        let Some(master) = master else {
            return Ok(fail_all(not_found(format!(
                "No master key found for {target}"
            ))));
        };
        let (_, master_public) = cross_signing_key(&master, target, "master")?;
        let Some(key) = signed.get(&master_public) else {
            return Ok(fail_all(not_found("Unknown device")));
        };
        let mut failures: Map<String, Value> = signed
            .keys()
            .filter(|k| **k != master_public)
            .map(|k| (k.clone(), signature_failure(&not_found("Unknown device"))))
            .collect();
        let object = key.as_object().expect("checked by the caller");
        let result = (|| {
            if signed_part(key) != signed_part(&master) {
                return Err(bad_key());
            }
            let signature = object["signatures"][user.as_str()][&user_signing_id]
                .as_str()
                .ok_or_else(|| invalid_signature("Invalid signature"))?;
            verify_signed(
                object,
                user,
                &user_signing_id,
                &user_signing_public,
                "the master key",
            )
            .map_err(|_| invalid_signature("Invalid signature"))?;
            Ok(KeySignature {
                target_device: master_public.clone(),
                signer: user.to_string(),
                key_id: user_signing_id.clone(),
                signature: signature.to_string(),
            })
        })();
        match result {
            Ok(signature) => Ok((vec![signature], failures)),
            Err(e) => {
                failures.insert(master_public, signature_failure(&e));
                Ok((Vec::new(), failures))
            }
        }
    }

    /// `POST /keys/claim`: one key per device asked for, each one-time key
    /// handed out once (the fallback key when none is left); the devices of
    /// other servers' users are claimed from their servers
    /// (`/user/keys/claim`, one request per server, at once).
    pub async fn claim_keys(&self, body: Map<String, Value>) -> Result<Value, MatrixError> {
        let wanted = body
            .get("one_time_keys")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                MatrixError::new(
                    400,
                    ErrCode::MissingParam,
                    "Missing params: ['one_time_keys']",
                )
            })?;
        for (user, devices) in wanted {
            if !devices.is_object() {
                return Err(bad(format!("one_time_keys.{user} must be an object")));
            }
        }
        let (local, remote) = self.by_server(wanted)?;
        let mut one_time_keys = self.claim_local_keys(&local).await?;
        let mut failures = Map::new();
        let path = "/_matrix/federation/v1/user/keys/claim";
        for (server, users, result) in self.ask_servers(remote, path, "one_time_keys").await {
            match result {
                Ok(theirs) => {
                    for user in users.keys() {
                        if let Some(keys) =
                            theirs["one_time_keys"].get(user).filter(|k| k.is_object())
                        {
                            one_time_keys.insert(user.clone(), keys.clone());
                        }
                    }
                }
                Err(e) => {
                    failures.insert(server.to_string(), unreachable_server(&e));
                }
            }
        }
        Ok(json!({ "one_time_keys": one_time_keys, "failures": failures }))
    }

    /// Claims keys of this server's users (`{user: {device: algorithm}}`;
    /// others' are left out), for `/keys/claim` and `/user/keys/claim`.
    pub async fn claim_local_keys(
        &self,
        wanted: &Map<String, Value>,
    ) -> Result<Map<String, Value>, MatrixError> {
        let mut local = Vec::new();
        for (user, devices) in wanted {
            let user_id: OwnedUserId = super::user_id_param(user)?;
            if user_id.server_name() != self.server_name {
                continue;
            }
            let devices = devices
                .as_object()
                .ok_or_else(|| bad(format!("one_time_keys.{user} must be an object")))?;
            for (device, algorithm) in devices {
                let algorithm = algorithm.as_str().ok_or_else(|| {
                    bad(format!(
                        "one_time_keys.{user}.{device} must be an algorithm"
                    ))
                })?;
                local.push((
                    user_id.clone(),
                    OwnedDeviceId::from(device.as_str()),
                    algorithm.to_string(),
                ));
            }
        }
        let mut one_time_keys = Map::new();
        for (user, device, key_id, key) in self.storage.claim_keys(local).await? {
            let key: Value = serde_json::from_str(&key).unwrap_or_default();
            let of_user = one_time_keys
                .entry(user.to_string())
                .or_insert_with(|| json!({}));
            of_user[device.as_str()] = json!({ key_id: key });
        }
        Ok(one_time_keys)
    }

    /// `GET /keys/changes`: whose devices changed between two sync
    /// positions (`to` defaults to now), and whom the user stopped sharing
    /// rooms with.
    pub async fn key_changes(
        &self,
        user: &UserId,
        from: i64,
        to: Option<i64>,
    ) -> Result<Value, MatrixError> {
        let to = to.unwrap_or_else(|| self.storage.current_position());
        let changes = self.storage.device_list_changes(user, from, to).await?;
        Ok(json!({ "changed": changes.changed, "left": changes.left }))
    }
}

/// Adds what `server` answered to a `/user/keys/query` to `answer`: only
/// the keys of its own users, each naming its owner.
fn merge_remote_keys(answer: &mut Value, theirs: &Value, server: &ruma::ServerName) {
    let of_server = |user: &str| UserId::parse(user).is_ok_and(|u| u.server_name() == server);
    if let Some(users) = theirs["device_keys"].as_object() {
        for (user, devices) in users.iter().filter(|(u, _)| of_server(u)) {
            let Some(devices) = devices.as_object() else {
                continue;
            };
            let kept: Map<String, Value> = devices
                .iter()
                .filter(|(device, keys)| {
                    owned_by(keys, user)
                        && keys.get("device_id").and_then(Value::as_str) == Some(device.as_str())
                })
                .map(|(d, k)| (d.clone(), k.clone()))
                .collect();
            answer["device_keys"][user.as_str()] = Value::Object(kept);
        }
    }
    for field in ["master_keys", "self_signing_keys"] {
        if let Some(users) = theirs[field].as_object() {
            for (user, key) in users.iter().filter(|(u, k)| of_server(u) && owned_by(k, u)) {
                answer[field][user.as_str()] = key.clone();
            }
        }
    }
}
