//! Account data, presence, room aliases and the room directory, media and
//! filters.

use super::{id, Storage, StorageError, StorageResult, WakeKey};
use ruma::{OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
use rusqlite::{params, OptionalExtension};

/// One account data entry; `room_id` is `None` for global account data.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountDataRow {
    pub room_id: Option<OwnedRoomId>,
    pub data_type: String,
    pub content: serde_json::Value,
    pub stream: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PresenceRow {
    pub user_id: OwnedUserId,
    pub presence: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
    pub stream: i64,
}

/// A room as the public room directory lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicRoom {
    pub room_id: OwnedRoomId,
    pub num_joined_members: i64,
    pub state: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaRow {
    pub media_id: String,
    pub uploader: OwnedUserId,
    pub content_type: Option<String>,
    pub upload_name: Option<String>,
    pub size: i64,
    pub created_ts: i64,
}

impl Storage {
    pub async fn put_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: serde_json::Value,
    ) -> StorageResult<i64> {
        let written = self
            .update_account_data(user_id, room_id, data_type, move |_| {
                Ok::<_, std::convert::Infallible>(Some(content))
            })
            .await?;
        let Ok(written) = written;
        Ok(written.map(|(stream, _)| stream).unwrap_or_default())
    }

    /// Reads an account data item and writes what `change` makes of it, in
    /// one write (no other write comes between): `Ok(None)` from `change`
    /// writes nothing, `Err` refuses. Answers the new position and content.
    pub async fn update_account_data<E: Send + 'static>(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        change: impl FnOnce(Option<serde_json::Value>) -> Result<Option<serde_json::Value>, E>
            + Send
            + 'static,
    ) -> StorageResult<Result<Option<(i64, serde_json::Value)>, E>> {
        let (user_id, room_id, data_type) = (
            user_id.to_string(),
            room_id.map(RoomId::as_str).unwrap_or("").to_string(),
            data_type.to_string(),
        );
        let owner = WakeKey::User(
            user_id
                .to_string()
                .try_into()
                .map_err(|e| StorageError::Closed(format!("user ID {user_id}: {e}")))?,
        );
        self.write_then(move |w| {
            let old: Option<String> = w
                .conn
                .prepare_cached("SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3")?
                .query_row(params![user_id, room_id, data_type], |r| r.get(0))
                .optional()?;
            let old = old.map(|c| serde_json::from_str(&c)).transpose()?;
            let new = match change(old) {
                Ok(Some(new)) => new,
                Ok(None) => return Ok(Ok(None)),
                Err(e) => return Ok(Err(e)),
            };
            let content = serde_json::to_string(&new)?;
            let stream = w.next_position();
            w.conn
                .prepare_cached(
                    "INSERT INTO account_data (user_id, room_id, type, content, stream_ordering) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_ordering = excluded.stream_ordering",
                )?
                .execute(params![user_id, room_id, data_type, content, stream])?;
            Ok(Ok(Some((stream, new))))
        }, move |caches, written| {
            if matches!(written, Ok(Some(_))) {
                caches.wakes.wake([&owner]);
            }
        })
        .await
    }

    pub async fn get_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> StorageResult<Option<serde_json::Value>> {
        let (user_id, room_id, data_type) = (
            user_id.to_string(),
            room_id.map(RoomId::as_str).unwrap_or("").to_string(),
            data_type.to_string(),
        );
        self.read(move |c| {
            let content: Option<String> = c
                .prepare_cached("SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3")?
                .query_row(params![user_id, room_id, data_type], |r| r.get(0))
                .optional()?;
            Ok(content.map(|c| serde_json::from_str(&c)).transpose()?)
        })
        .await
    }

    /// Account data written after `since`, up to `upto`.
    pub async fn account_data_since(
        &self,
        user_id: &UserId,
        since: i64,
        upto: i64,
    ) -> StorageResult<Vec<AccountDataRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| account_data_since(c, &user_id, since, upto))
            .await
    }

    pub async fn set_presence(
        &self,
        user_id: &UserId,
        presence: &str,
        status_msg: Option<String>,
        now: i64,
    ) -> StorageResult<i64> {
        let owner = user_id.to_owned();
        let state = presence.to_string();
        let (user_id, presence) = (user_id.to_string(), presence.to_string());
        self.write_then(move |w| {
            let stream = w.next_position();
            w.conn
                .prepare_cached(
                    "INSERT INTO presence (user_id, presence, status_msg, last_active_ts, stream_ordering) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence, status_msg = excluded.status_msg,
                        last_active_ts = excluded.last_active_ts, stream_ordering = excluded.stream_ordering",
                )?
                .execute(params![user_id, presence, status_msg, now, stream])?;
            // Those who see this presence: the user and their room-mates
            // (waiting on the rooms they share), and presence routers'.
            let rooms: Vec<OwnedRoomId> = w
                .conn
                .prepare_cached("SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = 'join'")?
                .query_map([&user_id], |r| id(r, 0))?
                .collect::<Result<_, _>>()?;
            Ok((stream, rooms))
        }, move |caches, (_, rooms): &(i64, Vec<OwnedRoomId>)| {
            let mut keys: Vec<WakeKey> = rooms.iter().cloned().map(WakeKey::Room).collect();
            keys.push(WakeKey::User(owner.clone()));
            keys.push(WakeKey::AnyPresence);
            caches.set_presence_state(owner, state);
            caches.wakes.wake(&keys);
        })
        .await
        .map(|(stream, _)| stream)
    }

    /// A user's presence state as last committed, from memory once this
    /// process has written it.
    pub async fn presence_state(&self, user_id: &UserId) -> StorageResult<Option<String>> {
        if let Some(state) = self.caches().presence_state(user_id) {
            return Ok(Some(state));
        }
        Ok(self.get_presence(user_id).await?.map(|p| p.presence))
    }

    pub async fn get_presence(&self, user_id: &UserId) -> StorageResult<Option<PresenceRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT user_id, presence, status_msg, last_active_ts, stream_ordering FROM presence WHERE user_id = ?1",
            )?
            .query_row([&user_id], presence_from_row)
            .optional()?)
        })
        .await
    }

    /// Every user's presence changed after `since`, up to `upto`.
    pub async fn presence_changed_since(
        &self,
        since: i64,
        upto: i64,
    ) -> StorageResult<Vec<PresenceRow>> {
        self.read(move |c| presence_changed_since(c, since, upto))
            .await
    }

    /// `Conflict` if the alias exists.
    pub async fn create_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> StorageResult<()> {
        let (alias, room_id, creator) =
            (alias.to_string(), room_id.to_string(), creator.to_string());
        self.write(move |w| {
            let taken = w
                .conn
                .query_row(
                    "SELECT 1 FROM room_aliases WHERE alias = ?1",
                    [&alias],
                    |_| Ok(()),
                )
                .optional()?;
            if taken.is_some() {
                return Err(StorageError::Conflict(format!("alias {alias} exists")));
            }
            w.conn.execute(
                "INSERT INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3)",
                params![alias, room_id, creator],
            )?;
            Ok(())
        })
        .await
    }

    /// `(room_id, creator)` of an alias.
    pub async fn get_alias(
        &self,
        alias: &RoomAliasId,
    ) -> StorageResult<Option<(OwnedRoomId, OwnedUserId)>> {
        let alias = alias.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT room_id, creator FROM room_aliases WHERE alias = ?1",
                [&alias],
                |r| Ok((id(r, 0)?, id(r, 1)?)),
            )
            .optional()?)
        })
        .await
    }

    /// The room's local aliases, in alphabetical order.
    pub async fn aliases_of(&self, room_id: &RoomId) -> StorageResult<Vec<String>> {
        let room_id = room_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias",
            )?;
            let aliases = stmt
                .query_map([&room_id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(aliases)
        })
        .await
    }

    /// Points every local alias of `from` at `to` (a room upgrade).
    pub async fn move_aliases(&self, from: &RoomId, to: &RoomId) -> StorageResult<()> {
        let (from, to) = (from.to_string(), to.to_string());
        self.write(move |w| {
            w.conn.execute(
                "UPDATE room_aliases SET room_id = ?2 WHERE room_id = ?1",
                params![from, to],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn delete_alias(&self, alias: &RoomAliasId) -> StorageResult<bool> {
        let alias = alias.to_string();
        self.write(move |w| {
            Ok(w.conn
                .execute("DELETE FROM room_aliases WHERE alias = ?1", [&alias])?
                > 0)
        })
        .await
    }

    pub async fn set_room_public(&self, room_id: &RoomId, public: bool) -> StorageResult<()> {
        let room_id = room_id.to_string();
        let id = room_id.clone();
        self.write_then(
            move |w| {
                w.conn.execute(
                    "UPDATE rooms SET is_public = ?2 WHERE room_id = ?1",
                    params![id, public],
                )?;
                Ok(())
            },
            move |caches, _| caches.set_room_public(&room_id, public),
        )
        .await
    }

    /// The public rooms, most members first, with the state the directory shows.
    pub async fn public_rooms(&self) -> StorageResult<Vec<PublicRoom>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT r.room_id, (SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join') AS n
                 FROM rooms r WHERE r.is_public = 1 ORDER BY n DESC, r.room_id",
            )?;
            let rooms: Vec<(OwnedRoomId, i64)> = stmt.query_map([], |r| Ok((id(r, 0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            let mut state_stmt = c.prepare_cached(
                "SELECT s.type, e.content FROM current_state s JOIN events e ON e.event_id = s.event_id
                 WHERE s.room_id = ?1 AND s.state_key = '' AND s.type IN
                 ('m.room.name', 'm.room.topic', 'm.room.canonical_alias', 'm.room.avatar', 'm.room.join_rules',
                  'm.room.history_visibility', 'm.room.guest_access', 'm.room.create')",
            )?;
            let mut out = Vec::new();
            for (room_id, n) in rooms {
                let mut state = Vec::new();
                let mut rows = state_stmt.query([room_id.as_str()])?;
                while let Some(r) = rows.next()? {
                    let content: String = r.get(1)?;
                    state.push((r.get(0)?, serde_json::from_str(&content)?));
                }
                out.push(PublicRoom {
                    room_id,
                    num_joined_members: n,
                    state,
                });
            }
            Ok(out)
        })
        .await
    }

    pub async fn insert_media(&self, media: MediaRow) -> StorageResult<()> {
        self.write(move |w| {
            w.conn.execute(
                "INSERT INTO media (media_id, uploader, content_type, upload_name, size, created_ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![media.media_id, media.uploader.as_str(), media.content_type, media.upload_name, media.size, media.created_ts],
            )?;
            Ok(())
        })
        .await
    }

    /// Bytes `user` uploaded since `since_ms`.
    pub async fn uploaded_bytes_since(&self, user: &UserId, since_ms: i64) -> StorageResult<u64> {
        let user = user.to_string();
        self.read(move |c| {
            let total: i64 = c.query_row(
                "SELECT COALESCE(SUM(size), 0) FROM media WHERE uploader = ?1 AND created_ts > ?2",
                params![user, since_ms],
                |r| r.get(0),
            )?;
            Ok(total.max(0) as u64)
        })
        .await
    }

    pub async fn get_media(&self, media_id: &str) -> StorageResult<Option<MediaRow>> {
        let media_id = media_id.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT media_id, uploader, content_type, upload_name, size, created_ts FROM media WHERE media_id = ?1",
                [&media_id],
                |r| {
                    Ok(MediaRow {
                        media_id: r.get(0)?,
                        uploader: id(r, 1)?,
                        content_type: r.get(2)?,
                        upload_name: r.get(3)?,
                        size: r.get(4)?,
                        created_ts: r.get(5)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    /// Stores a filter; returns its ID.
    pub async fn put_filter(
        &self,
        user_id: &UserId,
        filter: serde_json::Value,
    ) -> StorageResult<i64> {
        let user_id = user_id.to_string();
        let filter = serde_json::to_string(&filter)?;
        self.write(move |w| {
            let existing: Option<i64> = w
                .conn
                .query_row(
                    "SELECT filter_id FROM filters WHERE user_id = ?1 AND filter = ?2",
                    params![user_id, filter],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = existing {
                return Ok(id);
            }
            let id: i64 = w.conn.query_row(
                "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?1",
                [&user_id],
                |r| r.get(0),
            )?;
            w.conn.execute(
                "INSERT INTO filters (user_id, filter_id, filter) VALUES (?1, ?2, ?3)",
                params![user_id, id, filter],
            )?;
            Ok(id)
        })
        .await
    }

    pub async fn get_filter(
        &self,
        user_id: &UserId,
        filter_id: i64,
    ) -> StorageResult<Option<serde_json::Value>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let filter: Option<String> = c
                .query_row(
                    "SELECT filter FROM filters WHERE user_id = ?1 AND filter_id = ?2",
                    params![user_id, filter_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(filter.map(|f| serde_json::from_str(&f)).transpose()?)
        })
        .await
    }
}

fn presence_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PresenceRow> {
    Ok(PresenceRow {
        user_id: id(r, 0)?,
        presence: r.get(1)?,
        status_msg: r.get(2)?,
        last_active_ts: r.get(3)?,
        stream: r.get(4)?,
    })
}

pub(super) fn account_data_since(
    c: &rusqlite::Connection,
    user_id: &str,
    since: i64,
    upto: i64,
) -> StorageResult<Vec<AccountDataRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT room_id, type, content, stream_ordering FROM account_data
         WHERE user_id = ?1 AND stream_ordering > ?2 AND stream_ordering <= ?3 ORDER BY stream_ordering",
    )?;
    let mut rows = stmt.query(params![user_id, since, upto])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let content: String = r.get(2)?;
        let room: String = r.get(0)?;
        out.push(AccountDataRow {
            room_id: if room.is_empty() {
                None
            } else {
                Some(id(r, 0)?)
            },
            data_type: r.get(1)?,
            content: serde_json::from_str(&content)?,
            stream: r.get(3)?,
        });
    }
    Ok(out)
}

pub(super) fn presence_changed_since(
    c: &rusqlite::Connection,
    since: i64,
    upto: i64,
) -> StorageResult<Vec<PresenceRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT user_id, presence, status_msg, last_active_ts, stream_ordering FROM presence
         WHERE stream_ordering > ?1 AND stream_ordering <= ?2",
    )?;
    let rows = stmt
        .query_map(params![since, upto], presence_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The users `user_id` ignores: the keys of `ignored_users` in their
/// `m.ignored_user_list` account data.
pub(super) fn ignored_users(
    c: &rusqlite::Connection,
    user_id: &str,
) -> StorageResult<std::collections::HashSet<String>> {
    let content: Option<String> = c
        .prepare_cached(
            "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = '' AND type = 'm.ignored_user_list'",
        )?
        .query_row([user_id], |r| r.get(0))
        .optional()?;
    let content: serde_json::Value = match content {
        Some(text) => serde_json::from_str(&text)?,
        None => return Ok(Default::default()),
    };
    Ok(content["ignored_users"]
        .as_object()
        .map(|users| users.keys().cloned().collect())
        .unwrap_or_default())
}
