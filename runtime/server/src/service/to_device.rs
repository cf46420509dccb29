//! To-device messages (`PUT /sendToDevice/{type}/{txnId}`): the transport
//! end-to-end encryption sets up its sessions over. Each device's
//! messages wait for it until it syncs past them.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::DeviceTarget;
use axon::ErrCode;
use ruma::OwnedDeviceId;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

impl Homeserver {
    /// Queues `messages` (`{user: {device or "*": content}}`) from the
    /// actor's device, once per transaction ID: users of other servers'
    /// messages go to their servers as one `m.direct_to_device` EDU each.
    pub async fn send_to_device(
        &self,
        actor: &Actor,
        event_type: &str,
        txn_id: &str,
        body: Map<String, Value>,
    ) -> Result<(), MatrixError> {
        let device = actor.device_id.clone().ok_or_else(|| {
            MatrixError::new(400, ErrCode::Unknown, "a device sends to-device messages")
        })?;
        let messages = match body.get("messages") {
            None => {
                return Err(MatrixError::new(
                    400,
                    ErrCode::MissingParam,
                    "Missing params: ['messages']",
                ))
            }
            Some(Value::Object(messages)) => messages,
            Some(_) => {
                return Err(MatrixError::new(
                    400,
                    ErrCode::BadJson,
                    "messages must be an object",
                ))
            }
        };
        let mut queued = Vec::new();
        let mut remote: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for (user, devices) in messages {
            let user_id = super::user_id_param(user)?;
            let Value::Object(devices) = devices else {
                return Err(MatrixError::new(
                    400,
                    ErrCode::BadJson,
                    format!("messages.{user} must be an object of devices"),
                ));
            };
            for (device_id, content) in devices {
                if !content.is_object() {
                    return Err(MatrixError::new(
                        400,
                        ErrCode::BadJson,
                        format!("messages.{user}.{device_id} must be an object"),
                    ));
                }
                if user_id.server_name() != self.server_name {
                    let of_user = remote
                        .entry(user_id.server_name().to_string())
                        .or_default()
                        .entry(user.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    of_user[device_id.as_str()] = content.clone();
                    continue;
                }
                let target = if device_id == "*" {
                    DeviceTarget::All
                } else {
                    DeviceTarget::Device(OwnedDeviceId::from(device_id.as_str()))
                };
                queued.push((user_id.clone(), target, content.to_string()));
            }
        }
        let remote: Vec<(String, String)> = remote
            .into_iter()
            .map(|(server, messages)| {
                let edu = json!({
                    "edu_type": "m.direct_to_device",
                    "content": {
                        "sender": actor.user_id,
                        "type": event_type,
                        "message_id": super::random_string(24),
                        "messages": messages,
                    },
                });
                (server, edu.to_string())
            })
            .collect();
        self.storage
            .send_to_device(&actor.user_id, &device, txn_id, event_type, queued, remote)
            .await?;
        Ok(())
    }
}
