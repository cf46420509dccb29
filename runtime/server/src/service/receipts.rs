//! Read receipts and read markers.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::NewReceipt;
use axon::{ErrCode, Membership};
use ruma::{EventId, RoomId};
use serde_json::json;

/// The receipt types a client may send, as Synapse knows them.
pub const RECEIPT_TYPES: [&str; 3] = ["m.read", "m.read.private", "m.fully_read"];

/// The read marker's room account data type.
pub const FULLY_READ: &str = "m.fully_read";

impl Homeserver {
    /// `POST /rooms/{room}/receipt/{type}/{event}`: a joined member marks an
    /// event of the room read. `m.fully_read` moves the read marker instead
    /// (room account data, as `read_markers` does).
    pub async fn send_receipt(
        &self,
        actor: &Actor,
        room: &RoomId,
        receipt_type: &str,
        event_id: &EventId,
        thread_id: Option<&str>,
    ) -> Result<(), MatrixError> {
        if !RECEIPT_TYPES.contains(&receipt_type) {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("Receipt type must be one of {}", RECEIPT_TYPES.join(", ")),
            ));
        }
        if let Some(thread) = thread_id {
            if receipt_type == FULLY_READ {
                return Err(MatrixError::new(
                    400,
                    ErrCode::InvalidParam,
                    "thread_id is not compatible with m.fully_read receipts",
                ));
            }
            if thread != "main" && EventId::parse(thread).is_err() {
                return Err(MatrixError::new(
                    400,
                    ErrCode::InvalidParam,
                    "thread_id must be \"main\" or an event ID",
                ));
            }
        }
        self.check_readable(actor, room, event_id).await?;
        if receipt_type == FULLY_READ {
            let content = json!({ "event_id": event_id });
            let serde_json::Value::Object(content) = content else {
                unreachable!("a JSON object")
            };
            return self
                .store_account_data(&actor.user_id, Some(room), FULLY_READ, content)
                .await;
        }
        let ts = axon::time::now_ms();
        self.storage
            .put_receipt(NewReceipt {
                room_id: room,
                receipt_type,
                user_id: &actor.user_id,
                thread_id,
                event_id,
                ts,
            })
            .await?;
        if receipt_type == "m.read" {
            // A public receipt goes to the room's other servers.
            if let Some(snapshot) = self.storage.room_snapshot(room).await? {
                let servers = super::remote_servers(&snapshot, &self.server_name);
                let mut data = json!({ "ts": ts });
                if let Some(thread) = thread_id {
                    data["thread_id"] = json!(thread);
                }
                let edu = json!({
                    "edu_type": "m.receipt",
                    "content": { room.as_str(): { receipt_type: {
                        actor.user_id.as_str(): { "event_ids": [event_id], "data": data }
                    } } },
                });
                self.queue_edu(&servers, &edu).await?;
            }
        }
        Ok(())
    }

    /// 403 unless `user` is joined to `room` (receipts, typing).
    pub(crate) async fn check_joined(
        &self,
        user: &ruma::UserId,
        room: &RoomId,
    ) -> Result<(), MatrixError> {
        match self.storage.membership(user, room).await? {
            Some((Membership::Join, _)) => Ok(()),
            _ => Err(MatrixError::forbidden(format!(
                "User {user} not in room {room}"
            ))),
        }
    }

    /// A receipt or marker is for an event of a room the user is joined to.
    async fn check_readable(
        &self,
        actor: &Actor,
        room: &RoomId,
        event_id: &EventId,
    ) -> Result<(), MatrixError> {
        self.check_joined(&actor.user_id, room).await?;
        match self.storage.get_event(event_id).await? {
            Some(event) if event.room_id == room => Ok(()),
            _ => Err(MatrixError::new(
                404,
                ErrCode::NotFound,
                format!("Event {event_id} not found in room {room}"),
            )),
        }
    }
}
