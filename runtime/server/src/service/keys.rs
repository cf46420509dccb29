//! End-to-end encryption keys: `POST /keys/upload`, `/keys/query` and
//! `/keys/claim`. The server decrypts nothing; it checks that a device's
//! keys are the device's own (signed by its ed25519 key) and hands each
//! one-time key out once.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::{StorageError, UploadedKey};
use axon::ErrCode;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{json, Map, Value};

/// What `failures` says of a server Axon cannot ask (it does not federate
/// yet, issue 15).
fn unreachable_server() -> Value {
    json!({ "errcode": "M_UNAVAILABLE", "error": "this server does not federate yet" })
}

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
    let signature = keys
        .get("signatures")
        .and_then(|s| s.get(user.as_str()))
        .and_then(|s| s.get(&key_id))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            MatrixError::new(
                400,
                ErrCode::InvalidSignature,
                format!("device_keys are not signed with {key_id}"),
            )
        })?;
    let decode = |text: &str| {
        ruma::serde::Base64::<ruma::serde::base64::Standard>::parse(text).map(|b| b.into_inner())
    };
    let (public, signature) = match (decode(public), decode(signature)) {
        (Ok(p), Ok(s)) => (p, s),
        _ => {
            return Err(bad(
                "device_keys have a key or signature that is not base64",
            ))
        }
    };
    let object = ruma::canonical_json::try_from_json_map(keys.clone())
        .map_err(|e| bad(format!("device_keys are not canonical JSON: {e}")))?;
    let signed = ruma::signatures::to_canonical_json_string_for_signing(&object)
        .map_err(|e| bad(e.to_string()))?;
    ruma::signatures::verify_canonical_json_bytes(
        &ruma::SigningKeyAlgorithm::Ed25519,
        &public,
        &signature,
        signed.as_bytes(),
    )
    .map_err(|_| {
        MatrixError::new(
            400,
            ErrCode::InvalidSignature,
            format!("device_keys signature by {key_id} does not verify"),
        )
    })
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
            if !(key.is_object() || key.is_string()) {
                return Err(bad(format!("{field}.{name} must be a key")));
            }
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
                check_device_keys(keys, &actor.user_id, device.as_str())?;
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

    /// `POST /keys/query`: the identity keys of local users' devices; users
    /// of other servers are `failures` (Axon does not federate yet), never
    /// silently absent.
    pub async fn query_keys(&self, body: Map<String, Value>) -> Result<Value, MatrixError> {
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
        let mut device_keys = Map::new();
        let mut failures = Map::new();
        for (user, devices) in wanted {
            let user_id = super::user_id_param(user)?;
            if user_id.server_name() != self.server_name {
                failures.insert(user_id.server_name().to_string(), unreachable_server());
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
            let mut of_user = Map::new();
            for (device, keys, display_name) in self.storage.device_keys(&user_id, devices).await? {
                let mut keys: Value = serde_json::from_str(&keys).unwrap_or_default();
                if let Some(name) = display_name {
                    keys["unsigned"] = json!({ "device_display_name": name });
                }
                of_user.insert(device.to_string(), keys);
            }
            device_keys.insert(user.clone(), Value::Object(of_user));
        }
        Ok(json!({ "device_keys": device_keys, "failures": failures }))
    }

    /// `POST /keys/claim`: one key per device asked for, each one-time key
    /// handed out once (the fallback key when none is left).
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
        let mut local = Vec::new();
        let mut failures = Map::new();
        for (user, devices) in wanted {
            let user_id: OwnedUserId = super::user_id_param(user)?;
            let devices = devices
                .as_object()
                .ok_or_else(|| bad(format!("one_time_keys.{user} must be an object")))?;
            if user_id.server_name() != self.server_name {
                failures.insert(user_id.server_name().to_string(), unreachable_server());
                continue;
            }
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
        Ok(json!({ "one_time_keys": one_time_keys, "failures": failures }))
    }
}
