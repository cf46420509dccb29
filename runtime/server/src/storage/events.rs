//! Rooms, events and room state.

use super::{id, membership_column, Storage, StorageError, StorageResult, WakeKey};
use axon::callbacks::{Event, JsonObject, StateMap};
use axon::Membership;
use ruma::{
    DeviceId, EventId, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId,
    RoomId, UserId,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A user's membership in a room over time and the room's history
/// visibility over time, each `(stream position, value)`, oldest first.
#[derive(Debug, Clone, Default)]
pub struct RoomHistory {
    pub room_version: String,
    pub memberships: Vec<(i64, Membership)>,
    /// `history_visibility` as written (unknown values mean `shared`).
    pub visibilities: Vec<(i64, String)>,
}

/// What a `/sync` reads (`Storage::sync_rows`).
#[derive(Debug, Default)]
pub struct SyncRows {
    pub account_data: Vec<super::AccountDataRow>,
    /// The users this one ignores (`m.ignored_user_list`).
    pub ignored: std::collections::HashSet<String>,
    pub presence_changed: Vec<super::PresenceRow>,
    pub rooms: Vec<SyncRoom>,
    /// The device's to-device messages after `since`, up to `upto`.
    pub to_device: Vec<super::ToDeviceMessage>,
    /// Whether messages up to `since` are still kept: the sync
    /// acknowledges them, and the caller deletes them.
    pub to_device_acknowledged: bool,
    /// The device's unclaimed one-time keys per algorithm, and the
    /// algorithms of its fallback keys not handed out yet.
    pub one_time_key_counts: std::collections::BTreeMap<String, u64>,
    pub unused_fallback_key_types: Vec<String>,
    /// Whose devices to look at again, and whose to forget (incremental
    /// syncs only).
    pub device_lists: super::DeviceListChanges,
}

/// One room of a `/sync`: the user's membership, the timeline (at most
/// `limit` latest, `limited` if more were skipped) and the state the
/// section needs: before the timeline for a joined room (all of it when
/// fresh, what changed in the gap when limited), the current state for an
/// invite, none for a leave.
#[derive(Debug)]
pub struct SyncRoom {
    pub membership: MembershipRow,
    pub timeline: Vec<StoredEvent>,
    pub limited: bool,
    pub state: Vec<StoredEvent>,
    /// A joined room's receipts: all when fresh, else those since the token.
    pub receipts: Vec<super::ReceiptRow>,
    /// A joined room's unread notifications and highlights.
    pub unread: super::receipts::Unread,
    /// What serving the timeline and state needs, read in the same trip.
    pub extras: ServingExtras,
    /// An invite or knock of a room this server is not in: what the other
    /// server showed of it (stripped state events).
    pub stripped: Vec<serde_json::Value>,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub stream: i64,
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: String,
    pub state_key: Option<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub content: Box<RawValue>,
    /// For a state event, the content of the state it replaced.
    pub prev_content: Option<Box<RawValue>>,
    /// The device and transaction ID it was sent with, for `unsigned.transaction_id`.
    pub device_id: Option<OwnedDeviceId>,
    pub txn_id: Option<String>,
}

pub(super) const EVENT_COLUMNS: &str =
    "e.stream_ordering, e.event_id, e.room_id, e.sender, e.type, e.state_key, e.depth, \
     e.origin_server_ts, e.content, e.prev_content, e.device_id, e.txn_id";

fn raw(text: String) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(text).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub(super) fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        stream: r.get(0)?,
        event_id: id(r, 1)?,
        room_id: id(r, 2)?,
        sender: id(r, 3)?,
        event_type: r.get(4)?,
        state_key: r.get(5)?,
        depth: r.get(6)?,
        origin_server_ts: r.get(7)?,
        content: raw(r.get(8)?)?,
        prev_content: r.get::<_, Option<String>>(9)?.map(raw).transpose()?,
        device_id: r.get::<_, Option<String>>(10)?.map(Into::into),
        txn_id: r.get(11)?,
    })
}

impl StoredEvent {
    /// The event as modules see it.
    pub fn to_module_event(&self) -> axon::callbacks::Event {
        axon::callbacks::Event {
            event_id: self.event_id.clone(),
            room_id: self.room_id.clone(),
            sender: self.sender.clone(),
            event_type: self.event_type.clone(),
            state_key: self.state_key.clone(),
            // Stored content is an object: the server wrote it from one.
            content: serde_json::from_str(self.content.get()).unwrap_or_default(),
            origin_server_ts: self.origin_server_ts.max(0) as u64,
            unsigned: Default::default(),
        }
    }
}

/// What building the next event of a room needs.
#[derive(Debug, Clone)]
pub struct RoomSnapshot {
    pub room_id: OwnedRoomId,
    pub room_version: String,
    pub is_public: bool,
    /// Shared with every reader and callback: applying an event copies
    /// O(log n) of it, not the room.
    pub state: StateMap,
    /// The room's latest events, which the next event follows.
    pub extremities: Vec<OwnedEventId>,
    pub max_depth: i64,
    /// How many of `state`'s members are joined, kept as events apply so
    /// that no sync counts the members of a big room.
    pub joined: usize,
    /// How many are joined from each server, kept the same way: where an
    /// event goes, and whether this server is in the room, without a walk
    /// over the members.
    pub joined_servers: BTreeMap<OwnedServerName, usize>,
}

fn is_join(entry: &Event) -> bool {
    entry.content.get("membership").and_then(|m| m.as_str()) == Some("join")
}

/// The server of the member a membership event is about.
fn member_server(entry: &Event) -> Option<OwnedServerName> {
    let user = UserId::parse(entry.state_key.as_deref()?).ok()?;
    Some(user.server_name().to_owned())
}

/// How many members are joined, in all and by server.
fn count_joined(state: &StateMap) -> (usize, BTreeMap<OwnedServerName, usize>) {
    let mut by_server = BTreeMap::new();
    let mut joined = 0;
    for member in state.of_type("m.room.member").filter(|e| is_join(e)) {
        joined += 1;
        if let Some(server) = member_server(member) {
            *by_server.entry(server).or_insert(0) += 1;
        }
    }
    (joined, by_server)
}

/// A state event as the room snapshot keeps it.
fn state_event(
    room_id: &RoomId,
    event_id: OwnedEventId,
    sender: OwnedUserId,
    (event_type, state_key): (String, String),
    origin_server_ts: i64,
    content: JsonObject,
) -> Event {
    Event {
        event_id,
        room_id: room_id.to_owned(),
        sender,
        event_type,
        state_key: Some(state_key),
        content,
        origin_server_ts: origin_server_ts.max(0) as u64,
        unsigned: JsonObject::new(),
    }
}

/// What storing an event changes in a room's snapshot, content parsed once.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotUpdate {
    pub room_id: OwnedRoomId,
    event_id: OwnedEventId,
    sender: OwnedUserId,
    event_type: String,
    state_key: Option<String>,
    depth: i64,
    origin_server_ts: i64,
    /// Parsed only for state events.
    content: JsonObject,
    prev_events: Vec<OwnedEventId>,
}

impl From<&NewEvent> for SnapshotUpdate {
    fn from(e: &NewEvent) -> Self {
        SnapshotUpdate {
            room_id: e.room_id.clone(),
            event_id: e.event_id.clone(),
            sender: e.sender.clone(),
            event_type: e.event_type.clone(),
            state_key: e.state_key.clone(),
            depth: e.depth,
            origin_server_ts: e.origin_server_ts,
            content: if e.state_key.is_some() {
                serde_json::from_str(&e.content).unwrap_or_default()
            } else {
                JsonObject::new()
            },
            prev_events: e.prev_events.clone(),
        }
    }
}

impl SnapshotUpdate {
    /// The user a membership event is about.
    fn member_target(&self) -> Option<OwnedUserId> {
        if self.event_type != "m.room.member" {
            return None;
        }
        self.state_key.as_deref().and_then(|k| k.try_into().ok())
    }
}

impl RoomSnapshot {
    /// The room after `event` is stored: it follows the events it names, and
    /// a state event replaces its key's state. Applying it twice changes nothing.
    pub(crate) fn apply(&mut self, event: &SnapshotUpdate) {
        self.extremities.retain(|e| !event.prev_events.contains(e));
        if !self.extremities.contains(&event.event_id) {
            self.extremities.push(event.event_id.clone());
        }
        self.max_depth = self.max_depth.max(event.depth);
        if let Some(state_key) = &event.state_key {
            let key = (event.event_type.clone(), state_key.clone());
            let entry = state_event(
                &self.room_id,
                event.event_id.clone(),
                event.sender.clone(),
                key.clone(),
                event.origin_server_ts,
                event.content.clone(),
            );
            let joins = event.event_type == "m.room.member" && is_join(&entry);
            let replaced = self.state.insert(key, entry);
            if event.event_type == "m.room.member" {
                let joined = replaced.as_deref().is_some_and(is_join);
                let server = event
                    .member_target()
                    .map(|user| user.server_name().to_owned());
                match (joined, joins, server) {
                    (false, true, server) => {
                        self.joined += 1;
                        if let Some(server) = server {
                            *self.joined_servers.entry(server).or_insert(0) += 1;
                        }
                    }
                    (true, false, server) => {
                        self.joined = self.joined.saturating_sub(1);
                        if let Some(server) = server {
                            if let Some(count) = self.joined_servers.get_mut(&server) {
                                *count = count.saturating_sub(1);
                                if *count == 0 {
                                    self.joined_servers.remove(&server);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A room being created, stored with its first events.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub room_id: OwnedRoomId,
    pub room_version: String,
    pub creator: OwnedUserId,
    pub is_public: bool,
    pub created_ts: i64,
}

/// An event built and authorised, to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: String,
    pub state_key: Option<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub content: String,
    pub pdu: String,
    pub prev_events: Vec<OwnedEventId>,
    pub device_id: Option<OwnedDeviceId>,
    pub txn_id: Option<String>,
    /// The local members this event notifies, as their push rules say:
    /// stored with it, so unread counts are one indexed count.
    pub notifies: Vec<Notify>,
    /// The other servers it is to be sent to, queued in the same commit.
    pub destinations: Vec<ruma::OwnedServerName>,
    /// When it joins forks of the room: the entries of the room's current
    /// state that state resolution settled otherwise than the event alone
    /// would (type, state key, the event that holds it), set in the same
    /// commit.
    pub resolved_state: Vec<(String, String, OwnedEventId)>,
}

/// What an event's content adds to the tables beside `events`, read from
/// one parse of it.
#[derive(Default)]
struct ContentIndex {
    /// The event a redaction redacts (`content.redacts`, which Axon sets
    /// in every room version).
    redacts: Option<String>,
    /// The event this one relates to and how (`m.relates_to` with a
    /// `rel_type`; a plain reply has none).
    relation: Option<(String, String)>,
    /// The words search finds it by: a message's body, a room's name or topic.
    text: Option<String>,
}

impl ContentIndex {
    fn of(event: &NewEvent) -> ContentIndex {
        let Ok(content) = serde_json::from_str::<serde_json::Value>(&event.content) else {
            return ContentIndex::default();
        };
        let text_field = match event.event_type.as_str() {
            "m.room.message" => Some("body"),
            "m.room.name" => Some("name"),
            "m.room.topic" => Some("topic"),
            _ => None,
        };
        let relates = content.get("m.relates_to");
        ContentIndex {
            redacts: (event.event_type == "m.room.redaction")
                .then(|| content.get("redacts")?.as_str().map(str::to_string))
                .flatten(),
            relation: relates.and_then(|r| {
                Some((
                    r.get("event_id")?.as_str()?.to_string(),
                    r.get("rel_type")?.as_str()?.to_string(),
                ))
            }),
            text: text_field
                .and_then(|f| content.get(f)?.as_str())
                .map(str::to_string),
        }
    }
}

/// What serving events needs besides them (`Storage::serving_extras`).
#[derive(Debug, Default)]
pub struct ServingExtras {
    pub redactions: std::collections::HashMap<OwnedEventId, StoredEvent>,
    pub relations: std::collections::HashMap<OwnedEventId, RelationSummary>,
}

/// What relates to an event (see `Storage::serving_extras`).
#[derive(Debug, Clone, Default)]
pub struct RelationSummary {
    /// Replies, the latest one, and whether the viewer took part.
    pub thread: Option<(u64, StoredEvent, bool)>,
    pub latest_edit: Option<StoredEvent>,
    pub references: Vec<OwnedEventId>,
}

/// A member an event notifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub user_id: OwnedUserId,
    pub highlight: bool,
    /// The rule's actions, as JSON, for pushers and `/notifications`.
    pub actions: String,
}

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persisted {
    /// Stored at this stream position.
    New { event_id: OwnedEventId, stream: i64 },
    /// The same device already sent this transaction: this is its event.
    Duplicate { event_id: OwnedEventId },
}

impl Persisted {
    pub fn event_id(&self) -> &EventId {
        match self {
            Persisted::New { event_id, .. } | Persisted::Duplicate { event_id } => event_id,
        }
    }
}

/// A user's current membership in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRow {
    pub room_id: OwnedRoomId,
    pub membership: Membership,
    pub event_id: OwnedEventId,
    pub stream: i64,
}

impl Storage {
    /// The room's version, state and latest events; `None` for an unknown room.
    pub async fn room_snapshot(
        &self,
        room_id: &RoomId,
    ) -> StorageResult<Option<Arc<RoomSnapshot>>> {
        if let Some(cached) = self.caches().room(room_id.as_str()) {
            return Ok(Some(cached));
        }
        let read_at = self.caches().room_generation(room_id.as_str());
        let id = room_id.to_string();
        let snapshot = self
            .read(move |c| room_snapshot(c, &id))
            .await?
            .map(Arc::new);
        if let Some(snapshot) = &snapshot {
            self.caches().insert_room(snapshot.clone(), read_at);
        }
        Ok(snapshot)
    }

    /// The event a device already sent with this transaction ID to this
    /// room and event type (`/rooms/{room}/send/{type}/{txn}`), if any.
    pub async fn event_for_txn(
        &self,
        sender: &UserId,
        device_id: &DeviceId,
        room_id: &RoomId,
        event_type: &str,
        txn_id: &str,
    ) -> StorageResult<Option<OwnedEventId>> {
        let key = TxnKey {
            sender: sender.to_string(),
            device_id: device_id.to_string(),
            room_id: room_id.to_string(),
            event_type: event_type.to_string(),
            txn_id: txn_id.to_string(),
        };
        self.read(move |c| txn_event(c, &key)).await
    }

    /// Stores events in order, in one transaction, with the room if it is
    /// new. With `recheck`, an event whose room moved on since it was built
    /// (its parents are no longer the room's latest events) is authorised
    /// again against the room's state as this write finds it, earlier
    /// writes of the same commit included: a ban committed meanwhile
    /// refuses the banned user's message ([`StorageError::Refused`]).
    pub async fn persist_events(
        &self,
        room: Option<NewRoom>,
        events: Vec<NewEvent>,
        recheck: Option<AuthRecheck>,
    ) -> StorageResult<Vec<Persisted>> {
        let applied: Vec<SnapshotUpdate> = events.iter().map(SnapshotUpdate::from).collect();
        let events_resolved: Vec<Option<String>> = events
            .iter()
            .map(|e| (!e.resolved_state.is_empty()).then(|| e.room_id.to_string()))
            .collect();
        self.write_then(move |w| {
            if let Some(room) = &room {
                w.conn.execute(
                    "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![room.room_id.as_str(), room.room_version, room.creator.as_str(), room.is_public, room.created_ts],
                )?;
            }
            let mut outcomes = Vec::with_capacity(events.len());
            for event in &events {
                if let (Some(device), Some(txn)) = (&event.device_id, &event.txn_id) {
                    let key = TxnKey {
                        sender: event.sender.to_string(),
                        device_id: device.to_string(),
                        room_id: event.room_id.to_string(),
                        event_type: event.event_type.clone(),
                        txn_id: txn.clone(),
                    };
                    if let Some(existing) = txn_event(w.conn, &key)? {
                        outcomes.push(Persisted::Duplicate { event_id: existing });
                        continue;
                    }
                }
                if let Some(recheck) = recheck {
                    if room.is_none() && moved_on(w.conn, event)? {
                        let snapshot = auth_state(w.conn, event)?;
                        recheck(&snapshot, event).map_err(StorageError::Refused)?;
                    }
                }
                let stream = w.next_position();
                insert_event(w.conn, event, stream, Placement::Timeline)?;
                for (event_type, state_key, holder) in &event.resolved_state {
                    adopt_state_entry(w.conn, &event.room_id, event_type, state_key, holder, stream)?;
                }
                super::federation::queue_pdu(w, event)?;
                if !event.notifies.is_empty() {
                    super::receipts::insert_notifications(w.conn, event, stream)?;
                }
                let index = ContentIndex::of(event);
                if let Some((parent, rel_type)) = &index.relation {
                    w.conn
                        .prepare_cached(
                            "INSERT OR IGNORE INTO event_relations (event_id, relates_to, rel_type, room_id, type, stream_ordering)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?
                        .execute(params![
                            event.event_id.as_str(),
                            parent,
                            rel_type,
                            event.room_id.as_str(),
                            event.event_type,
                            stream
                        ])?;
                }
                if let Some(text) = &index.text {
                    w.conn
                        .prepare_cached("INSERT INTO event_search (rowid, text) VALUES (?1, ?2)")?
                        .execute(params![stream, text])?;
                }
                if let Some(target) = &index.redacts {
                    // A redacted event is no longer found by its words.
                    w.conn
                        .prepare_cached(
                            "DELETE FROM event_search WHERE rowid = (SELECT stream_ordering FROM events WHERE event_id = ?1)",
                        )?
                        .execute([target.as_str()])?;
                    w.conn
                        .prepare_cached("INSERT OR IGNORE INTO redactions (event_id, redacted_by) VALUES (?1, ?2)")?
                        .execute(params![target, event.event_id.as_str()])?;
                }
                outcomes.push(Persisted::New {
                    event_id: event.event_id.clone(),
                    stream,
                });
            }
            Ok(outcomes)
        }, move |caches, outcomes: &Vec<Persisted>| {
            let stored: Vec<SnapshotUpdate> = applied
                .into_iter()
                .zip(outcomes)
                .filter(|(_, o)| matches!(o, Persisted::New { .. }))
                .map(|(a, _)| a)
                .collect();
            caches.apply_events(&stored);
            // A room whose state resolution settled is read again.
            for (event, outcome) in events_resolved.iter().zip(outcomes) {
                if matches!(outcome, Persisted::New { .. }) {
                    if let Some(room) = event {
                        caches.forget_room(room);
                    }
                }
            }
            let mut keys: Vec<WakeKey> = Vec::new();
            for event in &stored {
                let room = WakeKey::Room(event.room_id.clone());
                if !keys.contains(&room) {
                    keys.push(room);
                }
                if let Some(target) = event.member_target() {
                    keys.push(WakeKey::User(target));
                }
            }
            caches.wakes.wake(&keys);
        })
        .await
    }

    /// What serving `events` to `viewer` needs besides the events, in one
    /// trip to a reader connection: the redactions that apply to them and
    /// what relates to them.
    pub async fn serving_extras(
        &self,
        events: Vec<(OwnedEventId, OwnedUserId)>,
        viewer: &UserId,
    ) -> StorageResult<ServingExtras> {
        let viewer = viewer.to_string();
        self.read(move |c| {
            Ok(ServingExtras {
                redactions: redactions_of(c, &events)?,
                relations: relation_summaries(c, events, &viewer)?,
            })
        })
        .await
    }

    /// Forgets a room the user is not joined to: `Conflict` if they are.
    pub async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> StorageResult<()> {
        let (user_id, room_id) = (user_id.to_string(), room_id.to_string());
        self.write(move |w| {
            let membership: Option<String> = w
                .conn
                .query_row(
                    "SELECT membership FROM memberships WHERE user_id = ?1 AND room_id = ?2",
                    params![user_id, room_id],
                    |r| r.get(0),
                )
                .optional()?;
            if membership.as_deref() == Some("join") {
                return Err(StorageError::Conflict(format!(
                    "User {user_id} is in room {room_id}"
                )));
            }
            w.conn.execute(
                "UPDATE memberships SET forgotten = 1 WHERE user_id = ?1 AND room_id = ?2",
                params![user_id, room_id],
            )?;
            Ok(())
        })
        .await
    }

    /// The events relating to `parent` (of `rel_type`, and of `event_type`),
    /// a page of at most `limit` from `from` in either direction, up to
    /// position `upto`.
    #[allow(clippy::too_many_arguments)]
    pub async fn relations(
        &self,
        parent: &EventId,
        rel_type: Option<String>,
        event_type: Option<String>,
        from: Option<i64>,
        backwards: bool,
        limit: u32,
        upto: i64,
    ) -> StorageResult<Vec<StoredEvent>> {
        let parent = parent.to_string();
        self.read(move |c| {
            let (bound, order) = if backwards {
                ("e.stream_ordering <= ?4", "DESC")
            } else {
                ("e.stream_ordering > ?4", "ASC")
            };
            let from = from.unwrap_or(if backwards { upto } else { 0 });
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM event_relations r JOIN events e ON e.event_id = r.event_id
                 WHERE r.relates_to = ?1 AND (?2 IS NULL OR r.rel_type = ?2) AND (?3 IS NULL OR r.type = ?3)
                   AND {bound} AND e.stream_ordering <= ?5
                 ORDER BY e.stream_ordering {order} LIMIT ?6"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let events = stmt
                .query_map(
                    params![parent, rel_type, event_type, from, upto, limit as i64],
                    event_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(events)
        })
        .await
    }

    /// A room's thread roots, the most recently replied to first: those
    /// whose latest reply is before `before`, with that reply's position;
    /// with `participant`, only threads they started or replied in.
    pub async fn thread_roots(
        &self,
        room_id: &RoomId,
        before: i64,
        participant: Option<&UserId>,
        limit: u32,
    ) -> StorageResult<Vec<(StoredEvent, i64)>> {
        let room_id = room_id.to_string();
        let participant = participant.map(|u| u.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS}, t.latest FROM (
                     SELECT relates_to, MAX(stream_ordering) AS latest FROM event_relations
                     WHERE room_id = ?1 AND rel_type = 'm.thread' GROUP BY relates_to
                 ) t JOIN events e ON e.event_id = t.relates_to
                 WHERE t.latest < ?2 AND (?3 IS NULL OR e.sender = ?3 OR EXISTS (
                     SELECT 1 FROM event_relations r JOIN events x ON x.event_id = r.event_id
                     WHERE r.relates_to = t.relates_to AND r.rel_type = 'm.thread' AND x.sender = ?3))
                 ORDER BY t.latest DESC LIMIT ?4"
            ))?;
            let rows = stmt
                .query_map(params![room_id, before, participant, limit as i64], |r| {
                    Ok((event_from_row(r)?, r.get(12)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Events of `rooms` whose words match every one of `words`, the most
    /// relevant (`by_rank`) or the most recent first, skipping `skip`.
    pub async fn search_events(
        &self,
        rooms: Vec<OwnedRoomId>,
        words: Vec<String>,
        by_rank: bool,
        skip: u32,
        limit: u32,
    ) -> StorageResult<(Vec<(StoredEvent, f64)>, u64)> {
        self.read(move |c| {
            // Each word quoted: the user's text is never FTS5 syntax.
            let query = words
                .iter()
                .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(" ");
            let rooms = serde_json::to_string(&rooms)?;
            let order = if by_rank { "s.rank" } else { "e.stream_ordering DESC" };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS}, -s.rank FROM event_search s JOIN events e ON e.stream_ordering = s.rowid
                 WHERE event_search MATCH ?1 AND e.room_id IN (SELECT value FROM json_each(?2))
                 ORDER BY {order} LIMIT ?3 OFFSET ?4"
            ))?;
            let found = stmt
                .query_map(params![query, rooms, limit as i64, skip as i64], |r| {
                    Ok((event_from_row(r)?, r.get::<_, f64>(12)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let count: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM event_search s JOIN events e ON e.stream_ordering = s.rowid
                     WHERE event_search MATCH ?1 AND e.room_id IN (SELECT value FROM json_each(?2))",
                )?
                .query_row(params![query, rooms], |r| r.get(0))?;
            Ok((found, count as u64))
        })
        .await
    }

    /// Stores a user's report of an event for the server's admins.
    pub async fn insert_event_report(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        user_id: &UserId,
        reason: Option<String>,
        content: serde_json::Value,
    ) -> StorageResult<()> {
        let values = (
            room_id.to_string(),
            event_id.to_string(),
            user_id.to_string(),
            reason,
            content.to_string(),
            axon::time::now_ms(),
        );
        self.write(move |w| {
            let (room, event, user, reason, content, ts) = values;
            w.conn.execute(
                "INSERT INTO event_reports (received_ts, room_id, event_id, user_id, reason, content)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![ts, room, event, user, reason, content],
            )?;
            Ok(())
        })
        .await
    }

    /// The room's first event at or after `ts` (`forward`), or its last at
    /// or before it, among those up to position `upto`.
    pub async fn event_near_time(
        &self,
        room_id: &RoomId,
        ts: i64,
        forward: bool,
        upto: i64,
    ) -> StorageResult<Option<StoredEvent>> {
        let room_id = room_id.to_string();
        self.read(move |c| {
            let sql = if forward {
                format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = ?1 AND e.origin_server_ts >= ?2 AND e.stream_ordering <= ?3 ORDER BY e.origin_server_ts ASC, e.stream_ordering ASC LIMIT 1")
            } else {
                format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = ?1 AND e.origin_server_ts <= ?2 AND e.stream_ordering <= ?3 ORDER BY e.origin_server_ts DESC, e.stream_ordering DESC LIMIT 1")
            };
            Ok(c.prepare_cached(&sql)?
                .query_row(params![room_id, ts, upto], event_from_row)
                .optional()?)
        })
        .await
    }

    /// The content hashes of stored events (room versions 1 and 2 write
    /// them beside each reference to another event).
    pub async fn content_hashes(
        &self,
        event_ids: Vec<OwnedEventId>,
    ) -> StorageResult<std::collections::HashMap<OwnedEventId, String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT json_extract(pdu, '$.hashes.sha256') FROM events WHERE event_id = ?1",
            )?;
            let mut hashes = std::collections::HashMap::new();
            for id in event_ids {
                let hash: Option<String> = stmt
                    .query_row([id.as_str()], |r| r.get(0))
                    .optional()?
                    .flatten();
                if let Some(hash) = hash {
                    hashes.insert(id, hash);
                }
            }
            Ok(hashes)
        })
        .await
    }

    pub async fn get_event(&self, event_id: &EventId) -> StorageResult<Option<StoredEvent>> {
        let event_id = event_id.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = ?1"),
                [&event_id],
                event_from_row,
            )
            .optional()?)
        })
        .await
    }

    /// The current state events of a room.
    pub async fn current_state(&self, room_id: &RoomId) -> StorageResult<Vec<StoredEvent>> {
        let room_id = room_id.to_string();
        self.read(move |c| current_state(c, &room_id)).await
    }

    /// One event of a room's current state.
    pub async fn current_state_event(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> StorageResult<Option<StoredEvent>> {
        let key = (
            room_id.to_string(),
            event_type.to_string(),
            state_key.to_string(),
        );
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM current_state s JOIN events e ON e.event_id = s.event_id
                 WHERE s.room_id = ?1 AND s.type = ?2 AND s.state_key = ?3"
            ))?;
            Ok(stmt.query_row(params![key.0, key.1, key.2], event_from_row).optional()?)
        })
        .await
    }

    /// Of the room's state as it was at stream position `at`, the entries
    /// at `keys` (type, state key) that there were.
    pub async fn state_entries_at(
        &self,
        room_id: &RoomId,
        keys: Vec<(String, String)>,
        at: i64,
    ) -> StorageResult<Vec<StoredEvent>> {
        let room_id = room_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events e
                 WHERE e.room_id = ?1 AND e.type = ?2 AND e.state_key = ?3 AND e.stream_ordering <= ?4
                 ORDER BY e.stream_ordering DESC LIMIT 1"
            ))?;
            let mut found = Vec::new();
            for (kind, key) in keys {
                if let Some(event) = stmt
                    .query_row(params![room_id, kind, key, at], event_from_row)
                    .optional()?
                {
                    found.push(event);
                }
            }
            Ok(found)
        })
        .await
    }

    /// The state of a room as it was at stream position `at`.
    pub async fn state_at(&self, room_id: &RoomId, at: i64) -> StorageResult<Vec<StoredEvent>> {
        let room_id = room_id.to_string();
        self.read(move |c| state_at(c, &room_id, at)).await
    }

    /// Events of a room with `after < stream <= upto`, oldest first: at most
    /// `limit`, the latest ones, and whether older ones were left out.
    pub async fn room_events_since(
        &self,
        room_id: &RoomId,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> StorageResult<(Vec<StoredEvent>, bool)> {
        let room_id = room_id.to_string();
        self.read(move |c| room_events_since(c, &room_id, after, upto, limit))
            .await
    }

    /// `/messages`: up to `limit` events from `from` in direction `backwards`
    /// (exclusive of `from` going back, inclusive going forward), not past `to`.
    pub async fn room_messages(
        &self,
        room_id: &RoomId,
        from: i64,
        backwards: bool,
        to: Option<i64>,
        limit: u32,
    ) -> StorageResult<Vec<StoredEvent>> {
        let room_id = room_id.to_string();
        self.read(move |c| {
            let sql = if backwards {
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = ?1 AND e.stream_ordering <= ?2 AND e.stream_ordering > ?3
                     ORDER BY e.stream_ordering DESC LIMIT ?4"
                )
            } else {
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events e WHERE e.room_id = ?1 AND e.stream_ordering > ?2 AND e.stream_ordering <= ?3
                     ORDER BY e.stream_ordering ASC LIMIT ?4"
                )
            };
            let bound = match (backwards, to) {
                (true, Some(to)) => to,
                (true, None) => super::OUTLIER_FLOOR,
                (false, Some(to)) => to,
                (false, None) => i64::MAX,
            };
            let mut stmt = c.prepare_cached(&sql)?;
            let events = stmt
                .query_map(params![room_id, from, bound, limit as i64], event_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(events)
        })
        .await
    }

    /// Every room the user has a membership in, with the latest one.
    pub async fn memberships(&self, user_id: &UserId) -> StorageResult<Vec<MembershipRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| memberships(c, &user_id)).await
    }

    /// The users joined to a room.
    pub async fn joined_members(&self, room_id: &RoomId) -> StorageResult<Vec<OwnedUserId>> {
        let room_id = room_id.to_string();
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT user_id FROM memberships WHERE room_id = ?1 AND membership = 'join' ORDER BY user_id")?;
            let users = stmt.query_map([&room_id], |r| id(r, 0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(users)
        })
        .await
    }

    /// Users who share a joined room with `user_id` (including them).
    pub async fn users_sharing_rooms(&self, user_id: &UserId) -> StorageResult<Vec<OwnedUserId>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT b.user_id FROM memberships a JOIN memberships b ON a.room_id = b.room_id
                 WHERE a.user_id = ?1 AND a.membership = 'join' AND b.membership = 'join'",
            )?;
            let mut users = stmt.query_map([user_id.as_str()], |r| id(r, 0))?.collect::<Result<Vec<OwnedUserId>, _>>()?;
            if !users.contains(&user_id) {
                users.push(user_id);
            }
            Ok(users)
        })
        .await
    }

    /// The servers other than `user_id`'s own with members joined to a
    /// room `user_id` is joined to: where news of the user goes.
    pub async fn other_servers_sharing_rooms(
        &self,
        user_id: &UserId,
    ) -> StorageResult<Vec<String>> {
        let user = user_id.to_string();
        self.read(move |c| other_servers_sharing_rooms(c, &user))
            .await
    }

    /// A user's current membership in a room, with its stream position.
    pub async fn membership(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> StorageResult<Option<(Membership, i64)>> {
        let (user_id, room_id) = (user_id.to_string(), room_id.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT membership, stream_ordering FROM memberships WHERE user_id = ?1 AND room_id = ?2 AND forgotten = 0")?
                .query_row(params![user_id, room_id], |r| Ok((membership_column(r, 0)?, r.get(1)?)))
                .optional()?)
        })
        .await
    }

    /// Everything a `/sync` from `since` to `upto` reads, in one trip to a
    /// reader connection: each trip is a hand-off to a blocking thread, and
    /// a long-poll woken for every message of a busy room made a dozen.
    pub async fn sync_rows(
        &self,
        user_id: &UserId,
        device_id: &ruma::DeviceId,
        since: Option<i64>,
        upto: i64,
        full_state: bool,
        limit: u32,
    ) -> StorageResult<SyncRows> {
        let user_id = user_id.to_string();
        let device_id = device_id.to_string();
        self.read(move |c| {
            let after = since.unwrap_or(0);
            let (to_device, to_device_acknowledged) =
                super::to_device::pending(c, &user_id, &device_id, since, upto)?;
            let one_time_key_counts =
                super::e2e_keys::one_time_key_counts(c, &user_id, &device_id)?;
            let unused_fallback_key_types =
                super::e2e_keys::unused_fallback_key_types(c, &user_id, &device_id)?;
            let device_lists = match since {
                Some(since) => super::e2e_keys::device_list_changes(c, &user_id, since, upto)?,
                None => Default::default(),
            };
            let account_data = super::account::account_data_since(c, &user_id, after, upto)?;
            let ignored = super::account::ignored_users(c, &user_id)?;
            let presence_changed = super::account::presence_changed_since(c, after, upto)?;
            let mut rooms = Vec::new();
            for m in memberships(c, &user_id)? {
                if m.stream > upto {
                    continue;
                }
                let room = m.room_id.to_string();
                let new_here = since.is_none() || m.stream > after;
                let mut receipts = Vec::new();
                let mut unread = Default::default();
                let mut stripped = Vec::new();
                let (timeline, limited, state) = match m.membership {
                    Membership::Join => {
                        let fresh = new_here || full_state;
                        let from = if fresh { 0 } else { after };
                        receipts = super::receipts::receipts_since(c, &room, from, upto)?;
                        unread = super::receipts::unread(c, &room, &user_id)?;
                        let (timeline, limited) = room_events_since(c, &room, from, upto, limit)?;
                        let first = timeline.first().map_or(upto + 1, |e| e.stream);
                        let state = if fresh {
                            state_at(c, &room, first - 1)?
                        } else if limited {
                            // State that changed in the gap the timeline skipped.
                            let mut state = state_at(c, &room, first - 1)?;
                            state.retain(|e| e.stream > after);
                            state
                        } else {
                            Vec::new()
                        };
                        (timeline, limited, state)
                    }
                    Membership::Invite | Membership::Knock if new_here => {
                        stripped = super::federation::outside_room_state(c, &room, &user_id)?;
                        (Vec::new(), false, current_state(c, &room)?)
                    }
                    Membership::Leave | Membership::Ban if since.is_some() && new_here => {
                        let (timeline, limited) =
                            room_events_since(c, &room, after, m.stream, limit)?;
                        (timeline, limited, Vec::new())
                    }
                    _ => continue,
                };
                let served: Vec<(OwnedEventId, OwnedUserId)> = timeline
                    .iter()
                    .chain(&state)
                    .map(|e| (e.event_id.clone(), e.sender.clone()))
                    .collect();
                let extras = ServingExtras {
                    redactions: redactions_of(c, &served)?,
                    relations: relation_summaries(c, served, &user_id)?,
                };
                rooms.push(SyncRoom {
                    membership: m,
                    timeline,
                    limited,
                    state,
                    receipts,
                    unread,
                    extras,
                    stripped,
                });
            }
            Ok(SyncRows {
                account_data,
                ignored,
                presence_changed,
                rooms,
                to_device,
                to_device_acknowledged,
                one_time_key_counts,
                unused_fallback_key_types,
                device_lists,
            })
        })
        .await
    }

    /// What decides which of a room's events `user_id` may see: their
    /// membership over time and the room's history visibility over time.
    pub async fn room_history(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> StorageResult<RoomHistory> {
        let (room_id, user_id) = (room_id.to_string(), user_id.to_string());
        self.read(move |c| {
            let room_version: String = c
                .prepare_cached("SELECT room_version FROM rooms WHERE room_id = ?1")?
                .query_row([&room_id], |r| r.get(0))
                .optional()?
                .unwrap_or_default();
            let mut stmt = c.prepare_cached(
                "SELECT stream_ordering, content FROM events
                 WHERE room_id = ?1 AND type = ?2 AND state_key = ?3 ORDER BY stream_ordering",
            )?;
            let mut field = |event_type: &str, state_key: &str, name: &str| {
                stmt.query_map(params![room_id, event_type, state_key], |r| {
                    let content: String = r.get(1)?;
                    let value = serde_json::from_str::<serde_json::Value>(&content)
                        .ok()
                        .and_then(|c| c.get(name)?.as_str().map(str::to_string));
                    Ok((r.get::<_, i64>(0)?, value.unwrap_or_default()))
                })?
                .collect::<Result<Vec<_>, _>>()
            };
            let memberships = field("m.room.member", &user_id, "membership")?
                .into_iter()
                .map(|(at, m)| (at, Membership::parse(&m).unwrap_or(Membership::Leave)))
                .collect();
            let visibilities = field("m.room.history_visibility", "", "history_visibility")?;
            Ok(RoomHistory {
                room_version,
                memberships,
                visibilities,
            })
        })
        .await
    }

    /// Which of `users` were erased (deactivated with `erase: true`).
    pub async fn erased_among(
        &self,
        users: Vec<OwnedUserId>,
    ) -> StorageResult<std::collections::HashSet<OwnedUserId>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT 1 FROM erased_users WHERE user_id = ?1")?;
            let mut erased = std::collections::HashSet::new();
            for user in users {
                if stmt.exists([user.as_str()])? {
                    erased.insert(user);
                }
            }
            Ok(erased)
        })
        .await
    }

    pub async fn room_exists(&self, room_id: &RoomId) -> StorageResult<bool> {
        let room_id = room_id.to_string();
        self.read(move |c| {
            Ok(
                c.query_row("SELECT 1 FROM rooms WHERE room_id = ?1", [&room_id], |_| {
                    Ok(())
                })
                .optional()?
                .is_some(),
            )
        })
        .await
    }
}

/// What identifies a client's transaction.
struct TxnKey {
    sender: String,
    device_id: String,
    room_id: String,
    event_type: String,
    txn_id: String,
}

/// Re-checks an event's auth rules against a room's current state.
pub type AuthRecheck = fn(&RoomSnapshot, &NewEvent) -> Result<(), String>;

/// Whether the room's latest events are no longer the event's parents.
fn moved_on(c: &Connection, event: &NewEvent) -> StorageResult<bool> {
    let mut current: Vec<String> = c
        .prepare_cached("SELECT event_id FROM forward_extremities WHERE room_id = ?1")?
        .query_map([event.room_id.as_str()], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut parents: Vec<String> = event.prev_events.iter().map(|e| e.to_string()).collect();
    current.sort();
    parents.sort();
    Ok(current != parents)
}

/// The room's state that authorises `event` (create, power levels, join
/// rules, the sender's and the target's memberships), as it is now.
fn auth_state(c: &Connection, event: &NewEvent) -> StorageResult<RoomSnapshot> {
    let room_version: String = c
        .prepare_cached("SELECT room_version FROM rooms WHERE room_id = ?1")?
        .query_row([event.room_id.as_str()], |r| r.get(0))?;
    let mut keys = vec![
        ("m.room.create", String::new()),
        ("m.room.power_levels", String::new()),
        ("m.room.join_rules", String::new()),
        ("m.room.member", event.sender.to_string()),
    ];
    if event.event_type == "m.room.member" {
        if let Some(target) = &event.state_key {
            keys.push(("m.room.member", target.clone()));
        }
    }
    let mut stmt = c.prepare_cached(
        "SELECT e.event_id, e.sender, e.content, e.origin_server_ts
         FROM current_state s JOIN events e ON e.event_id = s.event_id
         WHERE s.room_id = ?1 AND s.type = ?2 AND s.state_key = ?3",
    )?;
    let mut state = StateMap::new();
    for (event_type, state_key) in keys {
        let entry = stmt
            .query_row(
                params![event.room_id.as_str(), event_type, state_key],
                |r| {
                    Ok((
                        id::<OwnedEventId>(r, 0)?,
                        id::<OwnedUserId>(r, 1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()?;
        if let Some((event_id, sender, content, origin_server_ts)) = entry {
            let key = (event_type.to_string(), state_key);
            let entry = state_event(
                &event.room_id,
                event_id,
                sender,
                key.clone(),
                origin_server_ts,
                serde_json::from_str(&content)?,
            );
            state.insert(key, entry);
        }
    }
    Ok(RoomSnapshot {
        room_id: event.room_id.clone(),
        room_version,
        is_public: false,
        joined: 0,
        joined_servers: BTreeMap::new(),
        state,
        extremities: Vec::new(),
        max_depth: 0,
    })
}

fn txn_event(c: &Connection, key: &TxnKey) -> StorageResult<Option<OwnedEventId>> {
    Ok(c.prepare_cached(
        "SELECT event_id FROM events
         WHERE sender = ?1 AND device_id = ?2 AND room_id = ?3 AND type = ?4 AND txn_id = ?5",
    )?
    .query_row(
        params![
            key.sender,
            key.device_id,
            key.room_id,
            key.event_type,
            key.txn_id
        ],
        |r| id(r, 0),
    )
    .optional()?)
}

fn room_snapshot(c: &Connection, room_id: &str) -> StorageResult<Option<RoomSnapshot>> {
    let room: Option<(String, bool)> = c
        .prepare_cached("SELECT room_version, is_public FROM rooms WHERE room_id = ?1")?
        .query_row([room_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((room_version, is_public)) = room else {
        return Ok(None);
    };
    let room: OwnedRoomId = room_id
        .try_into()
        .map_err(|e| StorageError::Closed(format!("room ID {room_id}: {e}")))?;
    let mut state = StateMap::new();
    let mut stmt = c.prepare_cached(
        "SELECT s.type, s.state_key, e.event_id, e.sender, e.content, e.origin_server_ts
         FROM current_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id = ?1",
    )?;
    let mut rows = stmt.query([room_id])?;
    while let Some(r) = rows.next()? {
        let content: String = r.get(4)?;
        let key: (String, String) = (r.get(0)?, r.get(1)?);
        let entry = state_event(
            &room,
            id(r, 2)?,
            id(r, 3)?,
            key.clone(),
            r.get(5)?,
            serde_json::from_str(&content)?,
        );
        state.insert(key, entry);
    }
    let mut stmt =
        c.prepare_cached("SELECT event_id, depth FROM forward_extremities WHERE room_id = ?1")?;
    let extremities: Vec<(OwnedEventId, i64)> = stmt
        .query_map([room_id], |r| Ok((id(r, 0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let max_depth = extremities.iter().map(|(_, d)| *d).max().unwrap_or(0);
    let (joined, joined_servers) = count_joined(&state);
    Ok(Some(RoomSnapshot {
        room_id: room,
        room_version,
        is_public,
        joined,
        joined_servers,
        state,
        extremities: extremities.into_iter().map(|(e, _)| e).collect(),
        max_depth,
    }))
}

/// See `Storage::other_servers_sharing_rooms` (server names read off the
/// members' user IDs, in SQL, so that a big room's members are not loaded).
pub(super) fn other_servers_sharing_rooms(
    c: &Connection,
    user: &str,
) -> StorageResult<Vec<String>> {
    let own = user
        .split_once(':')
        .map(|(_, server)| server)
        .unwrap_or_default();
    let servers = c
        .prepare_cached(
            "SELECT DISTINCT substr(b.user_id, instr(b.user_id, ':') + 1) AS server FROM memberships a
             JOIN memberships b ON b.room_id = a.room_id AND b.membership = 'join'
             WHERE a.user_id = ?1 AND a.membership = 'join' AND server != ?2",
        )?
        .query_map(params![user, own], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(servers)
}

fn state_at(c: &Connection, room_id: &str, at: i64) -> StorageResult<Vec<StoredEvent>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e
         WHERE e.room_id = ?1 AND e.state_key IS NOT NULL AND e.stream_ordering = (
            SELECT MAX(e2.stream_ordering) FROM events e2
            WHERE e2.room_id = e.room_id AND e2.type = e.type AND e2.state_key = e.state_key
              AND e2.state_key IS NOT NULL AND e2.stream_ordering <= ?2)
         ORDER BY e.stream_ordering"
    ))?;
    let events = stmt
        .query_map(params![room_id, at], event_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(events)
}

/// Where a stored event goes besides the `events` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// The room's timeline: its state, memberships and latest events.
    Timeline,
    /// The room's current state, not its timeline (the state another
    /// server hands over with a join).
    State,
    /// Only known (auth events, history before this server joined).
    Outlier,
}

pub(super) fn insert_event(
    c: &Connection,
    event: &NewEvent,
    stream: i64,
    placement: Placement,
) -> StorageResult<()> {
    let prev_content: Option<String> = match &event.state_key {
        Some(state_key) => c
            .prepare_cached(
                "SELECT e.content FROM current_state s JOIN events e ON e.event_id = s.event_id
                 WHERE s.room_id = ?1 AND s.type = ?2 AND s.state_key = ?3",
            )?
            .query_row(
                params![event.room_id.as_str(), event.event_type, state_key],
                |r| r.get(0),
            )
            .optional()?,
        None => None,
    };
    c.prepare_cached(
        "INSERT INTO events (stream_ordering, event_id, room_id, sender, type, state_key, depth, origin_server_ts,
                             content, prev_content, device_id, txn_id, pdu)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        stream,
        event.event_id.as_str(),
        event.room_id.as_str(),
        event.sender.as_str(),
        event.event_type,
        event.state_key,
        event.depth,
        event.origin_server_ts,
        event.content,
        prev_content,
        event.device_id.as_deref().map(DeviceId::as_str),
        event.txn_id,
        event.pdu
    ])
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StorageError::Conflict(format!("event {} already stored", event.event_id))
        }
        other => other.into(),
    })?;
    if placement == Placement::Outlier {
        return Ok(());
    }
    if let Some(state_key) = &event.state_key {
        set_current_state(
            c,
            event.room_id.as_str(),
            &event.event_type,
            state_key,
            event.event_id.as_str(),
            &event.content,
            stream,
        )?;
    }
    if placement == Placement::State {
        return Ok(());
    }
    for prev in &event.prev_events {
        c.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1 AND event_id = ?2")?
            .execute(params![event.room_id.as_str(), prev.as_str()])?;
    }
    c.prepare_cached(
        "INSERT INTO forward_extremities (room_id, event_id, depth) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        event.room_id.as_str(),
        event.event_id.as_str(),
        event.depth
    ])?;
    Ok(())
}

/// Makes `event_id` (with `content`) the room's state at its key, and for
/// a member event the member's membership.
fn set_current_state(
    c: &Connection,
    room_id: &str,
    event_type: &str,
    state_key: &str,
    event_id: &str,
    content: &str,
    stream: i64,
) -> StorageResult<()> {
    c.prepare_cached(
        "INSERT INTO current_state (room_id, type, state_key, event_id, stream_ordering) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_ordering = excluded.stream_ordering",
    )?
    .execute(params![room_id, event_type, state_key, event_id, stream])?;
    if event_type == "m.room.member" {
        let content: serde_json::Value = serde_json::from_str(content)?;
        let membership = content
            .get("membership")
            .and_then(|m| m.as_str())
            .unwrap_or("leave");
        c.prepare_cached(
            "INSERT INTO memberships (user_id, room_id, membership, event_id, stream_ordering) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user_id, room_id) DO UPDATE SET membership = excluded.membership,
                event_id = excluded.event_id, forgotten = 0,
                stream_ordering = CASE WHEN memberships.membership = excluded.membership
                    THEN memberships.stream_ordering ELSE excluded.stream_ordering END",
        )?
        .execute(params![state_key, room_id, membership, event_id, stream])?;
    }
    Ok(())
}

/// One entry of a resolved state: the stored event `holder` becomes the
/// room's state at its key, as of stream position `stream`.
fn adopt_state_entry(
    c: &Connection,
    room_id: &RoomId,
    event_type: &str,
    state_key: &str,
    holder: &EventId,
    stream: i64,
) -> StorageResult<()> {
    let content: String = c
        .prepare_cached("SELECT content FROM events WHERE event_id = ?1")?
        .query_row([holder.as_str()], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StorageError::Conflict(format!("resolved state names unknown {holder}")))?;
    set_current_state(
        c,
        room_id.as_str(),
        event_type,
        state_key,
        holder.as_str(),
        &content,
        stream,
    )
}

fn current_state(c: &Connection, room_id: &str) -> StorageResult<Vec<StoredEvent>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM current_state s JOIN events e ON e.event_id = s.event_id
         WHERE s.room_id = ?1 ORDER BY e.stream_ordering"
    ))?;
    let events = stmt
        .query_map([room_id], event_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(events)
}

fn room_events_since(
    c: &Connection,
    room_id: &str,
    after: i64,
    upto: i64,
    limit: u32,
) -> StorageResult<(Vec<StoredEvent>, bool)> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e
         WHERE e.room_id = ?1 AND e.stream_ordering > ?2 AND e.stream_ordering <= ?3
         ORDER BY e.stream_ordering DESC LIMIT ?4"
    ))?;
    let mut events = stmt
        .query_map(
            params![room_id, after, upto, limit as i64 + 1],
            event_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let limited = events.len() > limit as usize;
    events.truncate(limit as usize);
    events.reverse();
    Ok((events, limited))
}

fn memberships(c: &Connection, user_id: &str) -> StorageResult<Vec<MembershipRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT room_id, membership, event_id, stream_ordering FROM memberships WHERE user_id = ?1 AND forgotten = 0",
    )?;
    let rows = stmt
        .query_map([user_id], |r| {
            Ok(MembershipRow {
                room_id: id(r, 0)?,
                membership: membership_column(r, 1)?,
                event_id: id(r, 2)?,
                stream: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The redactions that apply to any of `events`, by the event they redact.
fn redactions_of(
    c: &Connection,
    events: &[(OwnedEventId, OwnedUserId)],
) -> StorageResult<std::collections::HashMap<OwnedEventId, StoredEvent>> {
    let mut found = std::collections::HashMap::new();
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM redactions r JOIN events e ON e.event_id = r.redacted_by
         WHERE r.event_id = ?1"
    ))?;
    for (event, _) in events {
        if let Some(redaction) = stmt
            .query_row([event.as_str()], event_from_row)
            .optional()?
        {
            found.insert(event.clone(), redaction);
        }
    }
    Ok(found)
}

/// What relates to each of `events`, for `unsigned.m.relations`: its
/// thread, its latest edit by its own sender, its references.
fn relation_summaries(
    c: &Connection,
    events: Vec<(OwnedEventId, OwnedUserId)>,
    viewer: &str,
) -> StorageResult<std::collections::HashMap<OwnedEventId, RelationSummary>> {
    {
        let mut found = std::collections::HashMap::new();
        let mut kinds = c.prepare_cached(
            "SELECT DISTINCT rel_type FROM event_relations WHERE relates_to = ?1",
        )?;
        for (event, sender) in events {
            let rel_types: Vec<String> = kinds
                .query_map([event.as_str()], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if rel_types.is_empty() {
                continue;
            }
            let mut summary = RelationSummary::default();
            if rel_types.iter().any(|t| t == "m.thread") {
                let (count, latest): (i64, i64) = c
                        .prepare_cached(
                            "SELECT COUNT(*), MAX(stream_ordering) FROM event_relations WHERE relates_to = ?1 AND rel_type = 'm.thread'",
                        )?
                        .query_row([event.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
                let latest_event = c
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.stream_ordering = ?1"
                    ))?
                    .query_row([latest], event_from_row)?;
                let participated = sender.as_str() == viewer
                        || c.prepare_cached(
                            "SELECT 1 FROM event_relations r JOIN events e ON e.event_id = r.event_id
                             WHERE r.relates_to = ?1 AND r.rel_type = 'm.thread' AND e.sender = ?2 LIMIT 1",
                        )?
                        .query_row(params![event.as_str(), viewer], |_| Ok(()))
                        .optional()?
                        .is_some();
                summary.thread = Some((count as u64, latest_event, participated));
            }
            if rel_types.iter().any(|t| t == "m.replace") {
                summary.latest_edit = c
                        .prepare_cached(&format!(
                            "SELECT {EVENT_COLUMNS} FROM event_relations r JOIN events e ON e.event_id = r.event_id
                             WHERE r.relates_to = ?1 AND r.rel_type = 'm.replace' AND e.sender = ?2
                             ORDER BY e.origin_server_ts DESC, e.event_id DESC LIMIT 1"
                        ))?
                        .query_row(params![event.as_str(), sender.as_str()], event_from_row)
                        .optional()?;
            }
            if rel_types.iter().any(|t| t == "m.reference") {
                summary.references = c
                        .prepare_cached(
                            "SELECT event_id FROM event_relations WHERE relates_to = ?1 AND rel_type = 'm.reference' ORDER BY stream_ordering",
                        )?
                        .query_map([event.as_str()], |r| id(r, 0))?
                        .collect::<Result<_, _>>()?;
            }
            found.insert(event, summary);
        }
        Ok(found)
    }
}
