//! The schema, as ordered migrations applied at start-up.

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

const MIGRATIONS: &[M<'static>] = &[
    M::up(
        r#"
CREATE TABLE users (
    user_id TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    created_ts INTEGER NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0,
    shadow_banned INTEGER NOT NULL DEFAULT 0,
    displayname TEXT,
    avatar_url TEXT
);
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE access_tokens (
    token TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX access_tokens_by_user ON access_tokens (user_id, device_id);
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY NOT NULL,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    is_public INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL
);
CREATE TABLE events (
    stream_ordering INTEGER PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    depth INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    content TEXT NOT NULL,
    prev_content TEXT,
    device_id TEXT,
    txn_id TEXT,
    pdu TEXT NOT NULL
);
CREATE INDEX events_by_room ON events (room_id, stream_ordering);
CREATE INDEX events_state ON events (room_id, type, state_key, stream_ordering) WHERE state_key IS NOT NULL;
CREATE UNIQUE INDEX events_txn ON events (sender, device_id, txn_id) WHERE txn_id IS NOT NULL;
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE TABLE memberships (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX memberships_by_room ON memberships (room_id, membership);
CREATE TABLE forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    depth INTEGER NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL DEFAULT '',
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_by_position ON account_data (user_id, stream_ordering);
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY NOT NULL,
    presence TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts INTEGER NOT NULL,
    stream_ordering INTEGER NOT NULL
);
CREATE TABLE room_aliases (
    alias TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);
CREATE TABLE media (
    media_id TEXT PRIMARY KEY NOT NULL,
    uploader TEXT NOT NULL,
    content_type TEXT,
    upload_name TEXT,
    size INTEGER NOT NULL,
    created_ts INTEGER NOT NULL
);
CREATE TABLE filters (
    user_id TEXT NOT NULL,
    filter_id INTEGER NOT NULL,
    filter TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
"#,
    ),
    // Which of its migrations each module has applied.
    M::up(
        r#"
CREATE TABLE module_schema (
    module TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
);
"#,
    ),
    // Third-party identifiers bound to accounts (emails, phone numbers).
    M::up(
        r#"
CREATE TABLE user_threepids (
    user_id TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    validated_at INTEGER NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_by_user ON user_threepids (user_id);
"#,
    ),
    // A transaction ID is scoped to its endpoint (the room and event type
    // of `/rooms/{room}/send/{type}/{txn}`) and device, as the spec says.
    M::up(
        r#"
DROP INDEX events_txn;
CREATE UNIQUE INDEX events_txn ON events (sender, device_id, room_id, type, txn_id) WHERE txn_id IS NOT NULL;
"#,
    ),
    // Users deactivated with `erase: true`: their events are served redacted
    // to those who were not in the room when they were sent.
    M::up(
        r#"
CREATE TABLE erased_users (
    user_id TEXT PRIMARY KEY NOT NULL
);
"#,
    ),
    // Each sync asks which presence changed since its token.
    M::up("CREATE INDEX presence_by_position ON presence (stream_ordering);"),
    // Read receipts: the latest of each type per user, room and thread
    // (`''` for an unthreaded receipt).
    M::up(
        r#"
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    stream_ordering INTEGER NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_by_position ON receipts (room_id, stream_ordering);
"#,
    ),
    // The last position taken by what is kept only in memory (typing), so
    // that a restart never hands out a position a client's token has seen.
    M::up(
        r#"
CREATE TABLE stream_marks (
    name TEXT PRIMARY KEY NOT NULL,
    stream_ordering INTEGER NOT NULL
);
"#,
    ),
    // Who each event notifies, per their push rules, in the order events
    // are stored (so a message to a big room appends instead of writing a
    // page per member), and each member's unread counts kept as events
    // arrive and recounted from the former when their read receipt moves.
    M::up(
        r#"
CREATE TABLE event_push_actions (
    room_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    highlight INTEGER NOT NULL,
    actions TEXT NOT NULL,
    PRIMARY KEY (room_id, stream_ordering, user_id)
) WITHOUT ROWID;
CREATE TABLE unread_counts (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    notifications INTEGER NOT NULL,
    highlights INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
"#,
    ),
    // Each redacted event and the redaction that applies to it (the first
    // one). The original stays stored, as Synapse keeps it for its
    // retention period; every client read serves it redacted.
    M::up(
        r#"
CREATE TABLE redactions (
    event_id TEXT PRIMARY KEY NOT NULL,
    redacted_by TEXT NOT NULL
);
"#,
    ),
    // Reports of events to the server's admins, and jumping to a date.
    M::up(
        r#"
CREATE TABLE event_reports (
    id INTEGER PRIMARY KEY,
    received_ts INTEGER NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT,
    content TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (room_id, origin_server_ts);
"#,
    ),
    // A room the user left and forgot: gone from their syncs and history,
    // until they join again.
    M::up("ALTER TABLE memberships ADD COLUMN forgotten INTEGER NOT NULL DEFAULT 0;"),
    // Each event's `m.relates_to` (edits, threads, reactions, references),
    // found from the event it relates to.
    M::up(
        r#"
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY NOT NULL,
    relates_to TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL
);
CREATE INDEX relations_by_parent ON event_relations (relates_to, stream_ordering);
INSERT OR IGNORE INTO event_relations (event_id, relates_to, rel_type, room_id, type, stream_ordering)
SELECT event_id, json_extract(content, '$."m.relates_to".event_id'),
       json_extract(content, '$."m.relates_to".rel_type'), room_id, type, stream_ordering
FROM events
WHERE json_valid(content)
  AND json_type(content, '$."m.relates_to".event_id') = 'text'
  AND json_type(content, '$."m.relates_to".rel_type') = 'text';
"#,
    ),
    // Full-text search over messages, room names and topics (SQLite's
    // FTS5), one row per event by its stream position.
    M::up(
        r#"
CREATE VIRTUAL TABLE event_search USING fts5(text);
INSERT INTO event_search (rowid, text)
SELECT stream_ordering, COALESCE(json_extract(content, '$.body'), json_extract(content, '$.name'), json_extract(content, '$.topic'))
FROM events
WHERE json_valid(content) AND (
    (type = 'm.room.message' AND json_type(content, '$.body') = 'text')
    OR (type = 'm.room.name' AND json_type(content, '$.name') = 'text')
    OR (type = 'm.room.topic' AND json_type(content, '$.topic') = 'text'));
"#,
    ),
    // Where and with what each device was last seen (Synapse's
    // `user_ips`), for `GET /devices` and whois.
    M::up(
        r#"
CREATE TABLE user_ips (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, ip, user_agent)
) WITHOUT ROWID;
"#,
    ),
    // OpenID tokens a client hands to an integration manager, which asks
    // this server whose they are (Synapse's `open_id_tokens`).
    M::up(
        r#"
CREATE TABLE open_id_tokens (
    token TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    valid_until_ms INTEGER NOT NULL
);
CREATE INDEX open_id_tokens_by_expiry ON open_id_tokens (valid_until_ms);
"#,
    ),
    // Pushers (Synapse's columns), each with how far it has pushed.
    M::up(
        r#"
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT NOT NULL,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    device_id TEXT NOT NULL,
    pushkey_ts INTEGER NOT NULL,
    last_stream_ordering INTEGER NOT NULL,
    failing_since INTEGER,
    PRIMARY KEY (app_id, pushkey, user_id)
);
CREATE INDEX pushers_by_user ON pushers (user_id, device_id);
"#,
    ),
    // Guest accounts (`allow_guest_access`).
    M::up("ALTER TABLE users ADD COLUMN is_guest INTEGER NOT NULL DEFAULT 0;"),
    // An index of notifications by user cost every message one index
    // insert per notified member, on a different page for each: 5x slower
    // sends in a 200-member room. Readers go through the user's rooms
    // instead. (A database made before this change had it.)
    M::up("DROP INDEX IF EXISTS event_push_actions_by_user;"),
    // To-device messages waiting for their device (Synapse's
    // `device_inbox`), and the transactions that sent them.
    M::up(
        r#"
CREATE TABLE device_inbox (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_ordering)
) WITHOUT ROWID;
CREATE TABLE to_device_txns (
    sender TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    PRIMARY KEY (sender, device_id, txn_id)
) WITHOUT ROWID;
"#,
    ),
    // End-to-end encryption keys: each device's identity keys, its
    // one-time keys (each claimed once) and one fallback key per algorithm.
    M::up(
        r#"
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    keys TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
) WITHOUT ROWID;
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
) WITHOUT ROWID;
"#,
    ),
    // Device lists: a position each time a user's devices or keys change
    // (what `device_lists.changed` and `/keys/changes` report), and the
    // membership changes since a position, read by every incremental sync.
    M::up(
        r#"
CREATE TABLE device_lists_stream (
    stream_ordering INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    -- '' when everyone sharing a room with the user is told, else the
    -- only user who is (their signature on someone else's key).
    observer TEXT NOT NULL,
    PRIMARY KEY (stream_ordering, user_id, observer)
) WITHOUT ROWID;
CREATE INDEX memberships_by_stream ON memberships (stream_ordering);
"#,
    ),
    // Cross-signing keys (master, self-signing, user-signing), and the
    // signatures uploaded for other keys, merged into `/keys/query`.
    M::up(
        r#"
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    keys TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
) WITHOUT ROWID;
CREATE TABLE e2e_cross_signing_signatures (
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_device_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_device_id, user_id, key_id)
) WITHOUT ROWID;
"#,
    ),
    // Server-side key backup (Synapse's tables): a user's backup versions,
    // the newest not deleted being the current one, and the encrypted room
    // keys in each.
    M::up(
        r#"
CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
) WITHOUT ROWID;
CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index INTEGER NOT NULL,
    forwarded_count INTEGER NOT NULL,
    is_verified INTEGER NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
) WITHOUT ROWID;
"#,
    ),
    // Other servers' signing keys, as fetched (directly or through a
    // notary): each key with how long it may be used, and the signed
    // response it came in, which this server hands on as a notary.
    M::up(
        r#"
CREATE TABLE server_signing_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    valid_until_ts INTEGER NOT NULL,
    expired_ts INTEGER,
    key_json TEXT NOT NULL,
    fetched_ts INTEGER NOT NULL,
    PRIMARY KEY (server_name, key_id)
) WITHOUT ROWID;
"#,
    ),
    // Federation's outbound queue: PDUs by event ID (served as stored),
    // EDUs as JSON, in order per destination; and the destinations in
    // backoff after failures.
    M::up(
        r#"
CREATE TABLE federation_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX federation_outbox_by_destination ON federation_outbox (destination, kind, id);
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    retry_after_ts INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    ),
    // What another server showed a local user of a room this server is not
    // in, with an invite or a knock (stripped state), for their sync.
    M::up(
        r#"
CREATE TABLE outside_room_state (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stripped TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
"#,
    ),
    // Events of other servers that passed the auth checks but that the
    // room's current state (or a module) did not allow: known, so that
    // events naming them are not refused, but in no timeline and no state (the spec's soft failure).
    M::up(
        r#"
CREATE TABLE soft_failed_events (
    event_id TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    pdu TEXT NOT NULL,
    received_ts INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    ),
];

pub fn migrate(conn: &mut Connection) -> Result<(), super::StorageError> {
    Migrations::from_slice(MIGRATIONS)
        .to_latest(conn)
        .map_err(|e| match e {
            rusqlite_migration::Error::RusqliteError { err, .. } => err.into(),
            other => super::StorageError::Closed(format!("schema migration failed: {other}")),
        })
}

/// The highest stream position used by anything stored.
pub fn max_position(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row(
        "SELECT MAX(p) FROM (
            SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM events
            UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) FROM account_data
            UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) FROM presence
            UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) FROM memberships
            UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) FROM receipts
            UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) FROM stream_marks
            UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) FROM device_inbox
            UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) FROM device_lists_stream)",
        [],
        |r| r.get(0),
    )
}
