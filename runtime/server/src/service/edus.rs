//! EDUs: what servers tell each other outside rooms' histories — typing,
//! read receipts, presence, to-device messages, device list changes. The
//! ones this server sends are queued with its PDUs (`queue_edu`); the ones
//! it receives are applied here, each only for the sending server's own
//! users and, for room EDUs, only where they are joined.

use super::MatrixError;
use crate::homeserver::Homeserver;
use crate::storage::{DeviceTarget, NewReceipt};
use axon::Membership;
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId, RoomId, ServerName, UserId};
use serde_json::Value;

impl Homeserver {
    /// Queues `edu` for each of `servers` (nothing when there are none).
    pub(crate) async fn queue_edu(
        &self,
        servers: &[OwnedServerName],
        edu: &Value,
    ) -> Result<(), MatrixError> {
        if servers.is_empty() {
            return Ok(());
        }
        let servers = servers.iter().map(|s| s.to_string()).collect();
        self.storage.queue_edu(servers, edu.to_string()).await?;
        Ok(())
    }

    /// An EDU of a transaction from `origin`: applied if it is one this
    /// server knows and is well-formed; anything else is dropped, failing
    /// nothing else of the transaction (the spec gives EDUs no answer).
    pub(crate) async fn receive_edu(&self, origin: &ServerName, edu: Value) {
        let kind = edu["edu_type"].as_str().unwrap_or_default().to_string();
        let content = &edu["content"];
        let applied = match kind.as_str() {
            "m.typing" => self.receive_typing(origin, content).await,
            "m.receipt" => self.receive_receipts(origin, content).await,
            "m.presence" => self.receive_presence(origin, content).await,
            "m.direct_to_device" => self.receive_to_device(origin, content).await,
            "m.device_list_update" | "m.signing_key_update" => {
                self.receive_device_change(origin, content).await
            }
            _ => Err(format!("unknown EDU type `{kind}`")),
        };
        if let Err(why) = applied {
            tracing::info!("EDU {kind} from {origin} dropped: {why}");
        }
    }

    /// A user `origin` may speak for: one of its own.
    fn own_user(origin: &ServerName, user: &Value) -> Result<OwnedUserId, String> {
        let user = user
            .as_str()
            .and_then(|u| UserId::parse(u).ok())
            .ok_or("no valid user_id")?;
        if user.server_name() != origin {
            return Err(format!("{origin} cannot speak for {user}"));
        }
        Ok(user)
    }

    async fn joined(&self, user: &UserId, room: &RoomId) -> Result<(), String> {
        match self.storage.membership(user, room).await {
            Ok(Some((Membership::Join, _))) => Ok(()),
            Ok(_) => Err(format!("{user} is not joined to {room}")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn receive_typing(&self, origin: &ServerName, content: &Value) -> Result<(), String> {
        let user = Self::own_user(origin, &content["user_id"])?;
        let room = content["room_id"]
            .as_str()
            .and_then(|r| RoomId::parse(r).ok())
            .ok_or("no valid room_id")?;
        self.joined(&user, &room).await?;
        let typing = content["typing"].as_bool().unwrap_or(false);
        // Another server's typer lasts as long as a local one left alone.
        self.apply_typing(&room, &user, typing, super::typing::DEFAULT_TYPING_TIMEOUT)
            .await
            .map_err(|e| e.message)?;
        Ok(())
    }

    /// `{room: {receipt type: {user: {event_ids, data}}}}`: public read
    /// receipts of the server's users in rooms they are joined to.
    async fn receive_receipts(&self, origin: &ServerName, content: &Value) -> Result<(), String> {
        let rooms = content.as_object().ok_or("content is not an object")?;
        for (room, types) in rooms {
            let Ok(room) = RoomId::parse(room) else {
                continue;
            };
            let Some(users) = types.get("m.read").and_then(Value::as_object) else {
                continue;
            };
            for (user, receipt) in users {
                let Ok(user) = Self::own_user(origin, &Value::String(user.clone())) else {
                    continue;
                };
                if self.joined(&user, &room).await.is_err() {
                    continue;
                }
                let Some(event_id) = receipt["event_ids"]
                    .get(0)
                    .and_then(Value::as_str)
                    .and_then(|e| ruma::EventId::parse(e).ok())
                else {
                    continue;
                };
                let thread_id = receipt["data"]["thread_id"].as_str();
                self.storage
                    .put_receipt(NewReceipt {
                        room_id: &room,
                        receipt_type: "m.read",
                        user_id: &user,
                        thread_id,
                        event_id: &event_id,
                        ts: receipt["data"]["ts"]
                            .as_i64()
                            .unwrap_or_else(axon::time::now_ms),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// `{push: [{user_id, presence, status_msg, last_active_ago}]}`.
    async fn receive_presence(&self, origin: &ServerName, content: &Value) -> Result<(), String> {
        for update in content["push"].as_array().into_iter().flatten() {
            let Ok(user) = Self::own_user(origin, &update["user_id"]) else {
                continue;
            };
            let presence = update["presence"].as_str().unwrap_or_default();
            if !matches!(presence, "online" | "offline" | "unavailable") {
                continue;
            }
            let status_msg = update["status_msg"].as_str().map(str::to_string);
            let ago = update["last_active_ago"].as_i64().unwrap_or(0).max(0);
            self.storage
                .set_presence(&user, presence, status_msg, axon::time::now_ms() - ago)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// `{sender, type, message_id, messages: {user: {device or "*": content}}}`
    /// from one of the server's users to this server's: queued once per
    /// `message_id`.
    async fn receive_to_device(&self, origin: &ServerName, content: &Value) -> Result<(), String> {
        let sender = Self::own_user(origin, &content["sender"])?;
        let event_type = content["type"].as_str().ok_or("no type")?;
        let message_id = content["message_id"].as_str().ok_or("no message_id")?;
        let messages = content["messages"].as_object().ok_or("no messages")?;
        let mut queued = Vec::new();
        for (user, devices) in messages {
            let Ok(user) = UserId::parse(user) else {
                continue;
            };
            if user.server_name() != self.server_name {
                continue;
            }
            for (device, message) in devices.as_object().into_iter().flatten() {
                if !message.is_object() {
                    continue;
                }
                let target = if device == "*" {
                    DeviceTarget::All
                } else {
                    DeviceTarget::Device(OwnedDeviceId::from(device.as_str()))
                };
                queued.push((user.clone(), target, message.to_string()));
            }
        }
        // The sender's server stands for the sending device: message IDs
        // are unique per sender.
        let device = OwnedDeviceId::from(format!("federation {origin}"));
        self.storage
            .send_to_device(&sender, &device, message_id, event_type, queued, Vec::new())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// A user of `origin` changed their devices or cross-signing keys: the
    /// local users sharing a room with them see them in `device_lists`
    /// and query the keys again (from their server: none are cached here).
    async fn receive_device_change(
        &self,
        origin: &ServerName,
        content: &Value,
    ) -> Result<(), String> {
        let user = Self::own_user(origin, &content["user_id"])?;
        self.storage
            .remote_device_list_changed(&user)
            .await
            .map_err(|e| e.to_string())
    }
}
