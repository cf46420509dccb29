//! To-device messages: kept per recipient device until that device syncs
//! past them (its `since` token is the acknowledgement), as the spec says.

use super::notify::WakeKey;
use super::{id, Storage, StorageResult};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use rusqlite::{params, OptionalExtension};

/// Which of a user's devices a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceTarget {
    Device(OwnedDeviceId),
    /// `*`: every device the user has when it is sent.
    All,
}

/// One message as a device receives it.
#[derive(Debug, Clone)]
pub struct ToDeviceMessage {
    pub sender: OwnedUserId,
    pub event_type: String,
    /// The content, as JSON.
    pub content: String,
}

impl Storage {
    /// Queues a `PUT /sendToDevice` in one write, the messages for local
    /// devices in their inboxes and the EDUs for other servers (`remote`:
    /// destination and EDU) in the federation queue; false if the sender's
    /// device already sent this transaction (nothing is queued again).
    pub async fn send_to_device(
        &self,
        sender: &UserId,
        sender_device: &DeviceId,
        txn_id: &str,
        event_type: &str,
        messages: Vec<(OwnedUserId, DeviceTarget, String)>,
        remote: Vec<(String, String)>,
    ) -> StorageResult<bool> {
        let (sender, sender_device, txn_id, event_type) = (
            sender.to_owned(),
            sender_device.to_string(),
            txn_id.to_string(),
            event_type.to_string(),
        );
        let recipients: Vec<OwnedUserId> = messages.iter().map(|(u, _, _)| u.clone()).collect();
        self.write_then(
            move |w| {
                let fresh = w.conn.execute(
                    "INSERT OR IGNORE INTO to_device_txns (sender, device_id, txn_id) VALUES (?1, ?2, ?3)",
                    params![sender.as_str(), sender_device, txn_id],
                )? > 0;
                if !fresh {
                    return Ok(false);
                }
                for (destination, edu) in &remote {
                    w.queue_for(destination, super::federation::QueueKind::Edu, edu)?;
                }
                let stream = w.next_position();
                let mut insert = w.conn.prepare_cached(
                    "INSERT OR REPLACE INTO device_inbox (user_id, device_id, stream_ordering, sender, type, content)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                let mut devices_of = w
                    .conn
                    .prepare_cached("SELECT device_id FROM devices WHERE user_id = ?1")?;
                let mut has_device = w
                    .conn
                    .prepare_cached("SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2")?;
                for (user, target, content) in &messages {
                    let devices: Vec<String> = match target {
                        DeviceTarget::All => devices_of
                            .query_map([user.as_str()], |r| r.get(0))?
                            .collect::<Result<_, _>>()?,
                        // A device that does not exist gets nothing (as Synapse).
                        DeviceTarget::Device(device) => has_device
                            .query_row(params![user.as_str(), device.as_str()], |_| Ok(()))
                            .optional()?
                            .map(|()| vec![device.to_string()])
                            .unwrap_or_default(),
                    };
                    for device in devices {
                        insert.execute(params![
                            user.as_str(),
                            device,
                            stream,
                            sender.as_str(),
                            event_type,
                            content
                        ])?;
                    }
                }
                Ok(true)
            },
            move |caches, sent| {
                if *sent {
                    let keys: Vec<WakeKey> = recipients.into_iter().map(WakeKey::User).collect();
                    caches.wakes.wake(keys.iter());
                }
            },
        )
        .await
    }

    /// Deletes a device's messages up to `acknowledged` (the `since` of a
    /// sync it made: it has them).
    pub async fn acknowledge_to_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        acknowledged: i64,
    ) -> StorageResult<()> {
        let (user, device) = (user_id.to_string(), device_id.to_string());
        self.write(move |w| {
            w.conn.execute(
                "DELETE FROM device_inbox WHERE user_id = ?1 AND device_id = ?2 AND stream_ordering <= ?3",
                params![user, device, acknowledged],
            )?;
            Ok(())
        })
        .await
    }
}

/// A device's messages after `since` up to `upto`, and whether any up to
/// `since` are still kept (read in the sync's one trip to a reader).
pub(super) fn pending(
    c: &rusqlite::Connection,
    user_id: &str,
    device_id: &str,
    since: Option<i64>,
    upto: i64,
) -> StorageResult<(Vec<ToDeviceMessage>, bool)> {
    // One query: what the device still keeps up to `upto` is what it has
    // not acknowledged (until the delete below the sync runs) and what is new.
    let after = since.unwrap_or(0);
    let mut acknowledged = false;
    let mut messages = Vec::new();
    let mut rows = c.prepare_cached(
        "SELECT stream_ordering, sender, type, content FROM device_inbox
         WHERE user_id = ?1 AND device_id = ?2 AND stream_ordering <= ?3
         ORDER BY stream_ordering",
    )?;
    let mut rows = rows.query(params![user_id, device_id, upto])?;
    while let Some(r) = rows.next()? {
        let stream: i64 = r.get(0)?;
        if stream <= after {
            acknowledged |= since.is_some();
            continue;
        }
        messages.push(ToDeviceMessage {
            sender: id(r, 1)?,
            event_type: r.get(2)?,
            content: r.get(3)?,
        });
    }
    Ok((messages, acknowledged))
}
