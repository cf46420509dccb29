//! Server-side key backup: versions, each with the room keys uploaded to
//! it (encrypted by the client; the server compares only their metadata).

use super::{Storage, StorageResult};
use ruma::UserId;
use rusqlite::{params, OptionalExtension};

/// A backup version as `GET /room_keys/version` shows it.
#[derive(Debug, Clone)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    /// JSON.
    pub auth_data: String,
    pub etag: i64,
    pub count: i64,
}

/// One backed-up session key.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomKeyBackup {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    /// JSON.
    pub session_data: String,
}

impl RoomKeyBackup {
    /// The spec's "better key wins": verified over unverified, then an
    /// earlier first message index, then fewer forwards.
    fn better_than(&self, current: &RoomKeyBackup) -> bool {
        if self.is_verified != current.is_verified {
            return self.is_verified;
        }
        if self.first_message_index != current.first_message_index {
            return self.first_message_index < current.first_message_index;
        }
        self.forwarded_count < current.forwarded_count
    }
}

/// What an upload to a backup came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomKeyUpload {
    /// Stored: the version's etag and key count afterwards.
    Stored { etag: i64, count: i64 },
    /// The user has no backup at all, or not this version.
    UnknownVersion,
    /// Only the current version takes keys.
    NotCurrent { current: i64 },
}

fn current_version(c: &rusqlite::Connection, user: &str) -> StorageResult<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = ?1 AND deleted = 0",
    )?
    .query_row([user], |r| r.get(0))?)
}

fn version_exists(c: &rusqlite::Connection, user: &str, version: i64) -> StorageResult<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM e2e_room_keys_versions WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
    )?
    .exists(params![user, version])?)
}

fn etag_and_count(c: &rusqlite::Connection, user: &str, version: i64) -> StorageResult<(i64, i64)> {
    let etag = c
        .prepare_cached(
            "SELECT etag FROM e2e_room_keys_versions WHERE user_id = ?1 AND version = ?2",
        )?
        .query_row(params![user, version], |r| r.get(0))?;
    let count = c
        .prepare_cached("SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ?1 AND version = ?2")?
        .query_row(params![user, version], |r| r.get(0))?;
    Ok((etag, count))
}

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RoomKeyBackup> {
    Ok(RoomKeyBackup {
        room_id: r.get(0)?,
        session_id: r.get(1)?,
        first_message_index: r.get(2)?,
        forwarded_count: r.get(3)?,
        is_verified: r.get(4)?,
        session_data: r.get(5)?,
    })
}

impl Storage {
    /// A new backup version, which becomes the current one.
    pub async fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: String,
        auth_data: String,
    ) -> StorageResult<i64> {
        let user = user_id.to_string();
        self.write(move |w| {
            // Never a number used before, even by a deleted version.
            let version: i64 = w
                .conn
                .prepare_cached(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM e2e_room_keys_versions WHERE user_id = ?1",
                )?
                .query_row([&user], |r| r.get(0))?;
            w.conn.execute(
                "INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data) VALUES (?1, ?2, ?3, ?4)",
                params![user, version, algorithm, auth_data],
            )?;
            Ok(version)
        })
        .await
    }

    /// A backup version (the current one when `version` is `None`), unless
    /// there is none or it was deleted.
    pub async fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<i64>,
    ) -> StorageResult<Option<BackupVersion>> {
        let user = user_id.to_string();
        self.read(move |c| {
            let version = match version {
                Some(v) => Some(v).filter(|v| version_exists(c, &user, *v).unwrap_or(false)),
                None => current_version(c, &user)?,
            };
            let Some(version) = version else {
                return Ok(None);
            };
            let (algorithm, auth_data) = c
                .prepare_cached(
                    "SELECT algorithm, auth_data FROM e2e_room_keys_versions WHERE user_id = ?1 AND version = ?2",
                )?
                .query_row(params![user, version], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let (etag, count) = etag_and_count(c, &user, version)?;
            Ok(Some(BackupVersion {
                version,
                algorithm,
                auth_data,
                etag,
                count,
            }))
        })
        .await
    }

    /// Replaces a version's `auth_data`; false if there is no such version.
    pub async fn update_backup_version(
        &self,
        user_id: &UserId,
        version: i64,
        auth_data: String,
    ) -> StorageResult<bool> {
        let user = user_id.to_string();
        self.write(move |w| {
            Ok(w.conn.execute(
                "UPDATE e2e_room_keys_versions SET auth_data = ?3 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                params![user, version, auth_data],
            )? > 0)
        })
        .await
    }

    /// Deletes a version (the current one when `None`) with its keys;
    /// false if there was no such version.
    pub async fn delete_backup_version(
        &self,
        user_id: &UserId,
        version: Option<i64>,
    ) -> StorageResult<bool> {
        let user = user_id.to_string();
        self.write(move |w| {
            let version = match version {
                Some(v) => Some(v),
                None => current_version(w.conn, &user)?,
            };
            let Some(version) = version else {
                return Ok(false);
            };
            w.conn.execute(
                "DELETE FROM e2e_room_keys WHERE user_id = ?1 AND version = ?2",
                params![user, version],
            )?;
            Ok(w.conn.execute(
                "UPDATE e2e_room_keys_versions SET deleted = 1 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                params![user, version],
            )? > 0)
        })
        .await
    }

    /// Adds keys to the current version, in one write: a session already
    /// there is replaced only by a better key; the etag moves when
    /// anything changed.
    pub async fn upload_room_keys(
        &self,
        user_id: &UserId,
        version: i64,
        keys: Vec<RoomKeyBackup>,
    ) -> StorageResult<RoomKeyUpload> {
        let user = user_id.to_string();
        self.write(move |w| {
            match current_version(w.conn, &user)? {
                None => return Ok(RoomKeyUpload::UnknownVersion),
                Some(current) if current != version => {
                    return Ok(if version_exists(w.conn, &user, version)? {
                        RoomKeyUpload::NotCurrent { current }
                    } else {
                        RoomKeyUpload::UnknownVersion
                    })
                }
                Some(_) => {}
            }
            let mut changed = false;
            for key in keys {
                let stored = w
                    .conn
                    .prepare_cached(
                        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
                         FROM e2e_room_keys WHERE user_id = ?1 AND version = ?2 AND room_id = ?3 AND session_id = ?4",
                    )?
                    .query_row(params![user, version, key.room_id, key.session_id], key_from_row)
                    .optional()?;
                if stored.is_some_and(|stored| !key.better_than(&stored)) {
                    continue;
                }
                w.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO e2e_room_keys (user_id, version, room_id, session_id,
                           first_message_index, forwarded_count, is_verified, session_data)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        user,
                        version,
                        key.room_id,
                        key.session_id,
                        key.first_message_index,
                        key.forwarded_count,
                        key.is_verified,
                        key.session_data
                    ])?;
                changed = true;
            }
            if changed {
                w.conn.execute(
                    "UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
                    params![user, version],
                )?;
            }
            let (etag, count) = etag_and_count(w.conn, &user, version)?;
            Ok(RoomKeyUpload::Stored { etag, count })
        })
        .await
    }

    /// The keys of a version, all or of one room or one session; `None` if
    /// the version does not exist.
    pub async fn room_keys(
        &self,
        user_id: &UserId,
        version: i64,
        room: Option<String>,
        session: Option<String>,
    ) -> StorageResult<Option<Vec<RoomKeyBackup>>> {
        let user = user_id.to_string();
        self.read(move |c| {
            if !version_exists(c, &user, version)? {
                return Ok(None);
            }
            let keys = c
                .prepare_cached(
                    "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
                     FROM e2e_room_keys WHERE user_id = ?1 AND version = ?2
                       AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)
                     ORDER BY room_id, session_id",
                )?
                .query_map(params![user, version, room, session], key_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(Some(keys))
        })
        .await
    }

    /// Deletes keys of a version (all, a room's or a session's); its etag
    /// and count afterwards, or `None` if the version does not exist.
    pub async fn delete_room_keys(
        &self,
        user_id: &UserId,
        version: i64,
        room: Option<String>,
        session: Option<String>,
    ) -> StorageResult<Option<(i64, i64)>> {
        let user = user_id.to_string();
        self.write(move |w| {
            if !version_exists(w.conn, &user, version)? {
                return Ok(None);
            }
            w.conn.execute(
                "DELETE FROM e2e_room_keys WHERE user_id = ?1 AND version = ?2
                   AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
                params![user, version, room, session],
            )?;
            // As Synapse: a delete always moves the etag.
            w.conn.execute(
                "UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
                params![user, version],
            )?;
            Ok(Some(etag_and_count(w.conn, &user, version)?))
        })
        .await
    }
}
