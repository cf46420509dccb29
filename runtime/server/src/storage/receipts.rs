//! Read receipts: the latest receipt of each type per user, room and
//! thread, each write at its own stream position so `/sync` sends it once.

use super::{Storage, StorageError, StorageResult, WakeKey};
use ruma::{OwnedEventId, OwnedUserId, RoomId, UserId};
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRow {
    pub receipt_type: String,
    pub user_id: OwnedUserId,
    /// `None` for an unthreaded receipt.
    pub thread_id: Option<String>,
    pub event_id: OwnedEventId,
    pub ts: i64,
    pub stream: i64,
}

/// The receipts that mark notifications read.
const READ_RECEIPTS: [&str; 2] = ["m.read", "m.read.private"];

/// A receipt to store.
pub struct NewReceipt<'a> {
    pub room_id: &'a RoomId,
    pub receipt_type: &'a str,
    pub user_id: &'a UserId,
    pub thread_id: Option<&'a str>,
    pub event_id: &'a ruma::EventId,
    pub ts: i64,
}

impl Storage {
    /// Takes a stream position for a change kept only in memory (`name`,
    /// such as typing) and wakes `keys`: the change is in the syncs whose
    /// token is before it, and the position is recorded so that a restart
    /// never hands it out again. `record` learns the position before any
    /// waiter wakes, so a woken sync finds the change.
    pub async fn mark_position(
        &self,
        name: &'static str,
        keys: Vec<WakeKey>,
        record: impl FnOnce(i64) + Send + 'static,
    ) -> StorageResult<i64> {
        self.write_then(
            move |w| {
                let stream = w.next_position();
                w.conn
                    .prepare_cached(
                        "INSERT INTO stream_marks (name, stream_ordering) VALUES (?1, ?2)
                         ON CONFLICT (name) DO UPDATE SET stream_ordering = excluded.stream_ordering",
                    )?
                    .execute(params![name, stream])?;
                Ok(stream)
            },
            move |caches, position| {
                record(*position);
                caches.wakes.wake(keys.iter())
            },
        )
        .await
    }

    /// Stores a receipt, replacing the user's previous one of that type in
    /// that room and thread, and wakes the room's long-polls.
    pub async fn put_receipt(&self, receipt: NewReceipt<'_>) -> StorageResult<i64> {
        let room = receipt.room_id.to_owned();
        let values = (
            room.to_string(),
            receipt.receipt_type.to_string(),
            receipt.user_id.to_string(),
            receipt.thread_id.unwrap_or("").to_string(),
            receipt.event_id.to_string(),
            receipt.ts,
        );
        let key = WakeKey::Room(room);
        self.write_then(
            move |w| {
                let stream = w.next_position();
                let (room, kind, user, thread, event, ts) = values;
                w.conn
                    .prepare_cached(
                        "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_ordering)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET
                           event_id = excluded.event_id, ts = excluded.ts, stream_ordering = excluded.stream_ordering",
                    )?
                    .execute(params![room, kind, user, thread, event, ts, stream])?;
                if READ_RECEIPTS.contains(&kind.as_str()) && (thread.is_empty() || thread == "main") {
                    recount(w.conn, &room, &user)?;
                }
                Ok(stream)
            },
            move |caches, _| caches.wakes.wake([&key]),
        )
        .await
    }
}

/// A room's receipts written after `after`, up to `upto` (all of them from 0).
pub(super) fn receipts_since(
    c: &Connection,
    room_id: &str,
    after: i64,
    upto: i64,
) -> StorageResult<Vec<ReceiptRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT receipt_type, user_id, thread_id, event_id, ts, stream_ordering FROM receipts
         WHERE room_id = ?1 AND stream_ordering > ?2 AND stream_ordering <= ?3",
    )?;
    let rows = stmt.query_map(params![room_id, after, upto], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut receipts = Vec::new();
    for row in rows {
        let (receipt_type, user, thread, event, ts, stream) = row?;
        receipts.push(ReceiptRow {
            receipt_type,
            user_id: user
                .try_into()
                .map_err(|e| StorageError::Closed(format!("stored receipt user: {e}")))?,
            thread_id: (!thread.is_empty()).then_some(thread),
            event_id: event
                .try_into()
                .map_err(|e| StorageError::Closed(format!("stored receipt event: {e}")))?,
            ts,
            stream,
        });
    }
    Ok(receipts)
}

/// A user's unread notifications in a room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unread {
    pub notifications: u64,
    pub highlights: u64,
}

/// Stores whom an event notifies and counts it for each of them.
pub(super) fn insert_notifications(
    c: &Connection,
    event: &super::NewEvent,
    stream: i64,
) -> StorageResult<()> {
    let mut insert = c.prepare_cached(
        "INSERT INTO event_push_actions (room_id, stream_ordering, user_id, event_id, highlight, actions)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut count = c.prepare_cached(
        "INSERT INTO unread_counts (room_id, user_id, notifications, highlights) VALUES (?1, ?2, 1, ?3)
         ON CONFLICT (room_id, user_id) DO UPDATE SET
           notifications = notifications + 1, highlights = highlights + excluded.highlights",
    )?;
    for n in &event.notifies {
        let (room, user) = (event.room_id.as_str(), n.user_id.as_str());
        insert.execute(params![
            room,
            stream,
            user,
            event.event_id.as_str(),
            n.highlight,
            n.actions
        ])?;
        count.execute(params![room, user, n.highlight as i64])?;
    }
    Ok(())
}

/// Recounts a user's unread notifications in a room from their latest read
/// receipt (unthreaded or the main thread's, public or private).
fn recount(c: &Connection, room_id: &str, user_id: &str) -> StorageResult<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO unread_counts (room_id, user_id, notifications, highlights)
         SELECT ?1, ?2, COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_actions
         WHERE room_id = ?1 AND user_id = ?2 AND stream_ordering > (
             SELECT COALESCE(MAX(e.stream_ordering), 0) FROM receipts r JOIN events e ON e.event_id = r.event_id
             WHERE r.room_id = ?1 AND r.user_id = ?2
               AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id IN ('', 'main'))",
    )?
    .execute(params![room_id, user_id])?;
    Ok(())
}

/// A user's unread notifications in a room.
pub(super) fn unread(c: &Connection, room_id: &str, user_id: &str) -> StorageResult<Unread> {
    let counts: Option<(i64, i64)> = c
        .prepare_cached(
            "SELECT notifications, highlights FROM unread_counts WHERE room_id = ?1 AND user_id = ?2",
        )?
        .query_row(params![room_id, user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (notifications, highlights) = counts.unwrap_or_default();
    Ok(Unread {
        notifications: notifications as u64,
        highlights: highlights as u64,
    })
}
