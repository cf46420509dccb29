//! What federation keeps: the outbound queue of each destination (PDUs
//! queued in the commit that stores them, so none is lost to a restart),
//! each destination's backoff, and the events served to other servers as
//! their PDUs.

use super::events::{insert_event, NewEvent, NewRoom, Placement};
use super::{Storage, StorageResult, WriteCtx};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashSet, VecDeque};

/// At most this many PDUs and EDUs in one transaction, as the spec says.
pub const MAX_PDUS_PER_TXN: usize = 50;
pub const MAX_EDUS_PER_TXN: usize = 100;

/// The next transaction for a destination: queue IDs with their JSON.
#[derive(Debug, Default)]
pub struct OutboundBatch {
    pub pdus: Vec<(i64, String)>,
    pub edus: Vec<(i64, String)>,
}

impl OutboundBatch {
    pub fn is_empty(&self) -> bool {
        self.pdus.is_empty() && self.edus.is_empty()
    }

    /// The last queue ID it holds, which names the transaction.
    pub fn last_id(&self) -> i64 {
        self.pdus
            .iter()
            .chain(&self.edus)
            .map(|(id, _)| *id)
            .max()
            .unwrap_or(0)
    }
}

/// Queues `event` for each of its destinations.
pub(super) fn queue_pdu(w: &mut WriteCtx<'_>, event: &NewEvent) -> StorageResult<()> {
    for destination in &event.destinations {
        w.queue_for(
            destination.as_str(),
            QueueKind::Pdu,
            event.event_id.as_str(),
        )?;
    }
    Ok(())
}

/// What a queued entry holds.
#[derive(Debug, Clone, Copy)]
pub enum QueueKind {
    /// An event, by ID: sent as stored.
    Pdu,
    /// An EDU, as JSON.
    Edu,
}

impl QueueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Pdu => "pdu",
            QueueKind::Edu => "edu",
        }
    }
}

/// How the outbox hears that something was queued: each commit that
/// queued for destinations rings it with them.
#[derive(Default)]
pub struct OutboxDoorbell {
    due: std::sync::Mutex<Vec<String>>,
    rung: tokio::sync::Notify,
}

impl OutboxDoorbell {
    pub(super) fn ring(&self, destinations: Vec<String>) {
        if destinations.is_empty() {
            return;
        }
        self.due
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(destinations);
        self.rung.notify_one();
    }

    /// The destinations rung for since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.due.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Until the next ring (or at once, if one came since the last wait).
    pub async fn rung(&self) {
        self.rung.notified().await
    }
}

/// Events known only (auth chains, the state a join hands over) are
/// numbered down from here, below any timeline position; history fetched
/// by backfill is numbered down from -1, above them, as Synapse numbers
/// backfilled events: backward pagination reads down to this floor.
pub const OUTLIER_FLOOR: i64 = -(1 << 50);

/// The next position down of events known only.
fn next_outlier_position(c: &Connection) -> StorageResult<i64> {
    let lowest: Option<i64> = c
        .prepare_cached("SELECT MIN(stream_ordering) FROM events")?
        .query_row([], |r| r.get(0))?;
    Ok(lowest.unwrap_or(0).min(OUTLIER_FLOOR) - 1)
}

/// The next position down of backfilled history.
fn next_backfill_position(c: &Connection) -> StorageResult<i64> {
    let lowest: Option<i64> = c
        .prepare_cached("SELECT MIN(stream_ordering) FROM events WHERE stream_ordering > ?1")?
        .query_row([OUTLIER_FLOOR], |r| r.get(0))?;
    Ok(lowest.unwrap_or(0).min(0) - 1)
}

/// A position for an event stored outside the timeline.
type Numbering = fn(&Connection) -> StorageResult<i64>;

/// Stores `event` where `placement` says, numbered by `next`, unless it is
/// stored already.
fn insert_if_new(
    c: &Connection,
    event: &NewEvent,
    placement: Placement,
    next: impl FnOnce(&Connection) -> StorageResult<i64>,
) -> StorageResult<()> {
    let known = c
        .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?
        .query_row([event.event_id.as_str()], |_| Ok(()))
        .optional()?
        .is_some();
    if !known {
        let position = next(c)?;
        insert_event(c, event, position, placement)?;
    }
    Ok(())
}

/// Records a room another server hosts, if it is new here.
fn insert_room_if_new(c: &Connection, room: &NewRoom) -> StorageResult<()> {
    c.execute(
        "INSERT OR IGNORE INTO rooms (room_id, room_version, creator, is_public, created_ts)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            room.room_id.as_str(),
            room.room_version,
            room.creator.as_str(),
            room.is_public,
            room.created_ts
        ],
    )?;
    Ok(())
}

/// What another server showed `user` of a room this server is not in.
pub(super) fn outside_room_state(
    c: &Connection,
    room: &str,
    user: &str,
) -> StorageResult<Vec<serde_json::Value>> {
    let text: Option<String> = c
        .prepare_cached(
            "SELECT stripped FROM outside_room_state WHERE room_id = ?1 AND user_id = ?2",
        )?
        .query_row(params![room, user], |r| r.get(0))
        .optional()?;
    Ok(match text {
        Some(text) => serde_json::from_str(&text)?,
        None => Vec::new(),
    })
}

impl Storage {
    /// Stores what another server handed over on a join: the room (if
    /// new), `state` as its current state, and `outliers` as known events
    /// only (auth chains). Events already stored are left as they are.
    pub async fn persist_room_state(
        &self,
        room: NewRoom,
        state: Vec<NewEvent>,
        outliers: Vec<NewEvent>,
    ) -> StorageResult<()> {
        let room_key = room.room_id.to_string();
        self.write_then(
            move |w| {
                insert_room_if_new(w.conn, &room)?;
                for event in &state {
                    insert_if_new(w.conn, event, Placement::State, next_outlier_position)?;
                }
                for event in &outliers {
                    insert_if_new(w.conn, event, Placement::Outlier, next_outlier_position)?;
                }
                Ok(())
            },
            move |caches, _| caches.forget_room(&room_key),
        )
        .await
    }

    /// Stores a local user's membership of a room this server is not in
    /// (an invite received, a knock or a leave sent; the room recorded if
    /// new) at a stream position of its own, so that their next sync shows
    /// it, with what the other server showed of the room (`stripped`, kept
    /// while the membership is an invite or a knock).
    pub async fn persist_outside_membership(
        &self,
        room: NewRoom,
        event: NewEvent,
        stripped: Vec<serde_json::Value>,
    ) -> StorageResult<()> {
        let room_key = event.room_id.to_string();
        let target = event
            .state_key
            .as_deref()
            .and_then(|k| ruma::OwnedUserId::try_from(k).ok());
        let user = event.state_key.clone().unwrap_or_default();
        let stripped = serde_json::to_string(&stripped)?;
        self.write_then(
            move |w| {
                insert_room_if_new(w.conn, &room)?;
                let position = w.next_position();
                insert_if_new(w.conn, &event, Placement::State, |_| Ok(position))?;
                w.conn
                    .prepare_cached(
                        "DELETE FROM outside_room_state WHERE room_id = ?1 AND user_id = ?2",
                    )?
                    .execute(params![room.room_id.as_str(), user])?;
                if stripped != "[]" {
                    w.conn
                        .prepare_cached(
                            "INSERT INTO outside_room_state (room_id, user_id, stripped) VALUES (?1, ?2, ?3)",
                        )?
                        .execute(params![room.room_id.as_str(), user, stripped])?;
                }
                Ok(())
            },
            move |caches, _| {
                caches.forget_room(&room_key);
                if let Some(target) = target {
                    caches.wakes.wake(&[super::WakeKey::User(target)]);
                }
            },
        )
        .await
    }

    /// Stores a room's history fetched by backfill, newest first: each
    /// below what is stored, where backward pagination reads on.
    pub async fn persist_backfill(&self, events: Vec<NewEvent>) -> StorageResult<()> {
        self.persist_outside_timeline(events, next_backfill_position)
            .await
    }

    /// Stores events as known only (auth events fetched to check another).
    pub async fn persist_outliers(&self, events: Vec<NewEvent>) -> StorageResult<()> {
        self.persist_outside_timeline(events, next_outlier_position)
            .await
    }

    async fn persist_outside_timeline(
        &self,
        events: Vec<NewEvent>,
        next: Numbering,
    ) -> StorageResult<()> {
        self.write(move |w| {
            for event in &events {
                insert_if_new(w.conn, event, Placement::Outlier, next)?;
            }
            Ok(())
        })
        .await
    }

    /// Keeps a soft-failed event of another server (known, not shown).
    pub async fn keep_soft_failed(&self, event: NewEvent) -> StorageResult<()> {
        self.write(move |w| {
            w.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO soft_failed_events (event_id, room_id, pdu, received_ts) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    event.event_id.as_str(),
                    event.room_id.as_str(),
                    event.pdu,
                    axon::time::now_ms()
                ])?;
            Ok(())
        })
        .await
    }

    /// The stored PDUs of `ids` that are known (soft-failed ones
    /// included), in no particular order.
    pub async fn pdus(&self, ids: Vec<String>) -> StorageResult<Vec<(String, String)>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached("SELECT pdu FROM events WHERE event_id = ?1")?;
            let mut soft_failed =
                c.prepare_cached("SELECT pdu FROM soft_failed_events WHERE event_id = ?1")?;
            let mut found = Vec::new();
            for id in ids {
                let pdu = match statement
                    .query_row([&id], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    Some(pdu) => Some(pdu),
                    None => soft_failed
                        .query_row([&id], |r| r.get::<_, String>(0))
                        .optional()?,
                };
                if let Some(pdu) = pdu {
                    found.push((id, pdu));
                }
            }
            Ok(found)
        })
        .await
    }

    /// The auth chain of `ids`: every event their `auth_events` name,
    /// transitively, with their stored PDUs (the events themselves excluded).
    pub async fn auth_chain(&self, ids: Vec<String>) -> StorageResult<Vec<(String, String)>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached("SELECT pdu FROM events WHERE event_id = ?1")?;
            let mut seen: HashSet<String> = ids.iter().cloned().collect();
            let mut chain = Vec::new();
            let mut queue: VecDeque<(String, bool)> =
                ids.into_iter().map(|id| (id, false)).collect();
            while let Some((id, include)) = queue.pop_front() {
                let Some(pdu) = statement
                    .query_row([&id], |r| r.get::<_, String>(0))
                    .optional()?
                else {
                    continue;
                };
                let value: serde_json::Value = serde_json::from_str(&pdu)?;
                let auth_ids =
                    crate::events::reference_ids(&value, "auth_events").unwrap_or_default();
                for auth_id in auth_ids {
                    if seen.insert(auth_id.to_string()) {
                        queue.push_back((auth_id.to_string(), true));
                    }
                }
                if include {
                    chain.push((id, pdu));
                }
            }
            Ok(chain)
        })
        .await
    }

    /// Queues an EDU for each of `destinations`.
    pub async fn queue_edu(&self, destinations: Vec<String>, edu: String) -> StorageResult<()> {
        self.write(move |w| {
            for destination in &destinations {
                w.queue_for(destination, QueueKind::Edu, &edu)?;
            }
            Ok(())
        })
        .await
    }

    /// The outbox's doorbell.
    pub fn outbox_doorbell(&self) -> &OutboxDoorbell {
        &self.inner.caches.outbox
    }

    /// The destinations with something queued, and when each may be tried
    /// again (0: now).
    pub async fn queued_destinations(&self) -> StorageResult<Vec<(String, i64)>> {
        self.read(|c| {
            let mut statement = c.prepare_cached(
                "SELECT DISTINCT o.destination, COALESCE(d.retry_after_ts, 0)
                 FROM federation_outbox o LEFT JOIN federation_destinations d ON d.destination = o.destination",
            )?;
            let rows = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// The oldest queued PDUs and EDUs for `destination`, as many as a
    /// transaction holds. A queued PDU is served as stored.
    pub async fn outbound_batch(&self, destination: &str) -> StorageResult<OutboundBatch> {
        let destination = destination.to_string();
        self.read(move |c| {
            let mut batch = OutboundBatch::default();
            let mut statement = c.prepare_cached(
                "SELECT o.id, e.pdu FROM federation_outbox o JOIN events e ON e.event_id = o.body
                 WHERE o.destination = ?1 AND o.kind = 'pdu' ORDER BY o.id LIMIT ?2",
            )?;
            batch.pdus = statement
                .query_map(params![destination, MAX_PDUS_PER_TXN as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            let mut statement = c.prepare_cached(
                "SELECT id, body FROM federation_outbox
                 WHERE destination = ?1 AND kind = 'edu' ORDER BY id LIMIT ?2",
            )?;
            batch.edus = statement
                .query_map(params![destination, MAX_EDUS_PER_TXN as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok(batch)
        })
        .await
    }

    /// A transaction was delivered: its entries leave the queue and the
    /// destination's backoff ends.
    pub async fn outbound_delivered(&self, destination: &str, ids: Vec<i64>) -> StorageResult<()> {
        let destination = destination.to_string();
        self.write(move |w| {
            for id in ids {
                w.conn
                    .prepare_cached("DELETE FROM federation_outbox WHERE id = ?1")?
                    .execute([id])?;
            }
            w.conn
                .prepare_cached("DELETE FROM federation_destinations WHERE destination = ?1")?
                .execute([&destination])?;
            Ok(())
        })
        .await
    }

    /// A transaction failed: the destination is tried again after a delay
    /// that doubles with each failure in a row; how many there have been.
    pub async fn outbound_failed(
        &self,
        destination: &str,
        now_ms: i64,
        delay: impl Fn(u32) -> i64 + Send + 'static,
    ) -> StorageResult<u32> {
        let destination = destination.to_string();
        self.write(move |w| {
            let failures: u32 = w
                .conn
                .prepare_cached("SELECT failures FROM federation_destinations WHERE destination = ?1")?
                .query_row([&destination], |r| r.get(0))
                .optional()?
                .unwrap_or(0)
                + 1;
            w.conn
                .prepare_cached(
                    "INSERT INTO federation_destinations (destination, failures, retry_after_ts) VALUES (?1, ?2, ?3)
                     ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures, retry_after_ts = excluded.retry_after_ts",
                )?
                .execute(params![destination, failures, now_ms + delay(failures)])?;
            Ok(failures)
        })
        .await
    }

    /// Another server was heard from: it is tried again at once.
    pub async fn destination_alive(&self, destination: &str) -> StorageResult<bool> {
        let destination = destination.to_string();
        self.write(move |w| {
            Ok(w.conn
                .prepare_cached("DELETE FROM federation_destinations WHERE destination = ?1")?
                .execute([&destination])?
                > 0)
        })
        .await
    }

    /// The room's version, if this server knows the room.
    pub async fn room_version(&self, room_id: &ruma::RoomId) -> StorageResult<Option<String>> {
        let room_id = room_id.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT room_version FROM rooms WHERE room_id = ?1")?
                    .query_row([&room_id], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }
}
