//! Users, devices and access tokens.

use super::{id, Storage, StorageError, StorageResult, WriteCtx};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use rusqlite::{params, OptionalExtension};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub admin: bool,
    pub deactivated: bool,
    pub shadow_banned: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub created_ts: i64,
    pub is_guest: bool,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub admin: bool,
    pub shadow_banned: bool,
    pub displayname: Option<String>,
    pub created_ts: i64,
    pub is_guest: bool,
}

/// The owner of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub admin: bool,
    pub deactivated: bool,
    pub shadow_banned: bool,
    pub is_guest: bool,
}

/// A third-party identifier bound to an account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ThreepidRow {
    pub medium: String,
    pub address: String,
    pub validated_at: i64,
    pub added_at: i64,
}

/// What `set_threepids` changed: `(medium, address)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreepidChanges {
    pub added: Vec<(String, String)>,
    pub removed: Vec<(String, String)>,
}

/// A login: a device and its access token.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub access_token: String,
    pub created_ts: i64,
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        user_id: id(r, 0)?,
        password_hash: r.get(1)?,
        admin: r.get(2)?,
        deactivated: r.get(3)?,
        shadow_banned: r.get(4)?,
        displayname: r.get(5)?,
        avatar_url: r.get(6)?,
        created_ts: r.get(7)?,
        is_guest: r.get(8)?,
    })
}

const USER_COLUMNS: &str =
    "user_id, password_hash, admin, deactivated, shadow_banned, displayname, avatar_url, created_ts, is_guest";

/// A device as `GET /devices` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub created_ts: i64,
    /// The address and time of the device's latest request, once it made one.
    pub last_seen: Option<(String, i64)>,
}

/// One address and client a device used, and when last (`user_ips`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConnection {
    pub device_id: OwnedDeviceId,
    pub ip: String,
    pub user_agent: String,
    pub last_seen: i64,
}

impl Storage {
    /// Creates a user, and its first device if given. `Conflict` if the ID is taken.
    pub async fn create_user(&self, user: NewUser, device: Option<NewDevice>) -> StorageResult<()> {
        self.write(move |w| {
            let taken: Option<i64> = w
                .conn
                .query_row("SELECT 1 FROM users WHERE user_id = ?1", [user.user_id.as_str()], |r| r.get(0))
                .optional()?;
            if taken.is_some() {
                return Err(StorageError::Conflict(format!("user {} exists", user.user_id)));
            }
            w.conn.execute(
                "INSERT INTO users (user_id, password_hash, created_ts, admin, shadow_banned, displayname, is_guest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![user.user_id.as_str(), user.password_hash, user.created_ts, user.admin, user.shadow_banned, user.displayname, user.is_guest],
            )?;
            if let Some(device) = device {
                insert_device(w.conn, &device)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn get_user(&self, user_id: &UserId) -> StorageResult<Option<UserRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = ?1"),
                [&user_id],
                user_from_row,
            )
            .optional()?)
        })
        .await
    }

    /// Adds a device with its access token (a login). Logging in again
    /// with a device ID replaces that device's token, so the cache forgets
    /// that device's old one.
    pub async fn add_device(&self, device: NewDevice) -> StorageResult<()> {
        let (user, device_id) = (device.user_id.clone(), device.device_id.clone());
        self.write_then(
            move |w| insert_device(w.conn, &device),
            move |caches, _| caches.forget_device(&user, &device_id),
        )
        .await
    }

    pub async fn token_owner(&self, token: &str) -> StorageResult<Option<TokenOwner>> {
        if let Some(owner) = self.caches().token(token) {
            return Ok(Some(owner));
        }
        let read_at = self.caches().token_generation();
        let key = token.to_string();
        let token = token.to_string();
        let owner = self
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT t.user_id, t.device_id, u.admin, u.deactivated, u.shadow_banned, u.is_guest
                 FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token = ?1",
                    [&token],
                    |r| {
                        Ok(TokenOwner {
                            user_id: id(r, 0)?,
                            device_id: id(r, 1)?,
                            admin: r.get(2)?,
                            deactivated: r.get(3)?,
                            shadow_banned: r.get(4)?,
                            is_guest: r.get(5)?,
                        })
                    },
                )
                .optional()?)
            })
            .await?;
        if let Some(owner) = &owner {
            self.caches().insert_token(key, owner.clone(), read_at);
        }
        Ok(owner)
    }

    /// Logs one device out: deletes the device and its token.
    pub async fn delete_device(&self, user_id: &UserId, device_id: &DeviceId) -> StorageResult<()> {
        let (user_id, device_id) = (user_id.to_string(), device_id.to_string());
        self.write_then(
            move |w| remove_device(w, &user_id, &device_id).map(drop),
            |caches, _| caches.forget_tokens(),
        )
        .await
    }

    /// The user's devices: ID and display name, by ID.
    pub async fn devices_of(&self, user_id: &UserId) -> StorageResult<Vec<DeviceRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            // SQLite takes the bare `ip` from the row holding MAX(last_seen).
            let mut stmt = c.prepare_cached(
                "SELECT d.device_id, d.display_name, d.created_ts, s.ip, s.seen
                 FROM devices d LEFT JOIN (
                     SELECT device_id, ip, MAX(last_seen) AS seen FROM user_ips
                     WHERE user_id = ?1 GROUP BY device_id
                 ) s ON s.device_id = d.device_id
                 WHERE d.user_id = ?1 ORDER BY d.device_id",
            )?;
            let rows = stmt
                .query_map([&user_id], |r| {
                    let ip: Option<String> = r.get(3)?;
                    let seen: Option<i64> = r.get(4)?;
                    Ok(DeviceRow {
                        device_id: r.get::<_, String>(0)?.into(),
                        display_name: r.get(1)?,
                        created_ts: r.get(2)?,
                        last_seen: ip.zip(seen),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Makes a guest a full user with a password (registering with the
    /// guest's access token); false if the user is not a guest.
    pub async fn upgrade_guest(
        &self,
        user_id: &UserId,
        password_hash: String,
        device: Option<NewDevice>,
    ) -> StorageResult<bool> {
        let user_id = user_id.to_string();
        self.write_then(
            move |w| {
                let upgraded = w.conn.execute(
                    "UPDATE users SET is_guest = 0, password_hash = ?2 WHERE user_id = ?1 AND is_guest = 1",
                    params![user_id, password_hash],
                )? > 0;
                if upgraded {
                    if let Some(device) = device {
                        insert_device(w.conn, &device)?;
                    }
                }
                Ok(upgraded)
            },
            |caches, _| caches.forget_tokens(),
        )
        .await
    }

    /// Renames a device; false if the user has no such device.
    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        display_name: Option<String>,
    ) -> StorageResult<bool> {
        let (user_id, device_id) = (user_id.to_string(), device_id.to_string());
        self.write(move |w| {
            let renamed = w.conn.execute(
                "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
                params![user_id, device_id, display_name],
            )? > 0;
            // Others see device names in `/keys/query`.
            if renamed {
                super::e2e_keys::device_list_changed(w, &user_id)?;
            }
            Ok(renamed)
        })
        .await
    }

    /// Records that a device made a request from `ip` with `user_agent`.
    pub async fn record_client_ip(
        &self,
        seen: ClientConnection,
        user_id: &UserId,
    ) -> StorageResult<()> {
        let user_id = user_id.to_string();
        self.write(move |w| {
            // Only a device that still exists: a request racing its logout
            // must not leave a row behind.
            w.conn.execute(
                "INSERT INTO user_ips (user_id, device_id, ip, user_agent, last_seen)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS
                     (SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2)
                 ON CONFLICT (user_id, device_id, ip, user_agent)
                 DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
                params![
                    user_id,
                    seen.device_id.as_str(),
                    seen.ip,
                    seen.user_agent,
                    seen.last_seen
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Every address and client the user's devices used, latest first.
    pub async fn client_connections(
        &self,
        user_id: &UserId,
    ) -> StorageResult<Vec<ClientConnection>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT device_id, ip, user_agent, last_seen FROM user_ips
                     WHERE user_id = ?1 ORDER BY last_seen DESC, device_id",
                )?
                .query_map([&user_id], |r| {
                    Ok(ClientConnection {
                        device_id: id(r, 0)?,
                        ip: r.get(1)?,
                        user_agent: r.get(2)?,
                        last_seen: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Stores an OpenID token, dropping expired ones on the way.
    pub async fn add_openid_token(
        &self,
        token: String,
        user_id: &UserId,
        valid_until_ms: i64,
        now: i64,
    ) -> StorageResult<()> {
        let user_id = user_id.to_string();
        self.write(move |w| {
            w.conn.execute(
                "DELETE FROM open_id_tokens WHERE valid_until_ms <= ?1",
                [now],
            )?;
            w.conn.execute(
                "INSERT INTO open_id_tokens (token, user_id, valid_until_ms) VALUES (?1, ?2, ?3)",
                params![token, user_id, valid_until_ms],
            )?;
            Ok(())
        })
        .await
    }

    /// The user an OpenID token belongs to, while it is valid.
    pub async fn openid_token_owner(
        &self,
        token: &str,
        now: i64,
    ) -> StorageResult<Option<OwnedUserId>> {
        let token = token.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT user_id FROM open_id_tokens WHERE token = ?1 AND valid_until_ms > ?2",
                params![token, now],
                |r| id(r, 0),
            )
            .optional()?)
        })
        .await
    }

    /// Logs the given devices out (unknown ones are skipped); returns
    /// `(device_id, token)` of each one that had a token.
    pub async fn delete_devices(
        &self,
        user_id: &UserId,
        devices: Vec<OwnedDeviceId>,
    ) -> StorageResult<Vec<(OwnedDeviceId, String)>> {
        let user_id = user_id.to_string();
        self.write_then(
            move |w| {
                let mut gone = Vec::new();
                for device in devices {
                    let tokens = remove_device(w, &user_id, device.as_str())?;
                    gone.extend(tokens.into_iter().map(|t| (device.clone(), t)));
                }
                Ok(gone)
            },
            |caches, _| caches.forget_tokens(),
        )
        .await
    }

    /// Logs every device of a user out; returns `(device_id, token)` of each.
    pub async fn delete_all_devices(
        &self,
        user_id: &UserId,
    ) -> StorageResult<Vec<(OwnedDeviceId, String)>> {
        let user_id = user_id.to_string();
        self.write_then(
            move |w| log_out_everywhere(w, &user_id),
            |caches, _| caches.forget_tokens(),
        )
        .await
    }

    /// Marks a user deactivated (and erased, with `erase`), logs every
    /// device out, clears the profile and removes their third-party
    /// identifiers (as Synapse does), in one transaction; returns the
    /// identifiers removed, for the modules.
    pub async fn deactivate_user(
        &self,
        user_id: &UserId,
        erase: bool,
    ) -> StorageResult<Vec<ThreepidRow>> {
        let user_id = user_id.to_string();
        self.write_then(
            move |w| {
                log_out_everywhere(w, &user_id)?;
                // As Synapse: the key backup goes with the account.
                for table in ["e2e_room_keys", "e2e_room_keys_versions"] {
                    w.conn.execute(
                        &format!("DELETE FROM {table} WHERE user_id = ?1"),
                        [&user_id],
                    )?;
                }
                if erase {
                    w.conn.execute(
                        "INSERT OR IGNORE INTO erased_users (user_id) VALUES (?1)",
                        [&user_id],
                    )?;
                }
                let threepids = threepids_of(w.conn, &user_id)?;
                w.conn.execute("DELETE FROM user_threepids WHERE user_id = ?1", [&user_id])?;
                w.conn.execute(
                    "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL, avatar_url = NULL WHERE user_id = ?1",
                    [&user_id],
                )?;
                Ok(threepids)
            },
            |caches, _| caches.forget_tokens(),
        )
        .await
    }

    /// Marks a deactivated user active again (Synapse's admin
    /// reactivation): they keep no rooms, devices or identifiers, and need a
    /// password set to log in.
    pub async fn reactivate_user(&self, user_id: &UserId) -> StorageResult<()> {
        let user_id = user_id.to_string();
        self.write_then(
            move |w| {
                w.conn.execute(
                    "UPDATE users SET deactivated = 0 WHERE user_id = ?1",
                    [&user_id],
                )?;
                // As in Synapse, a reactivated user is no longer erased.
                w.conn
                    .execute("DELETE FROM erased_users WHERE user_id = ?1", [&user_id])?;
                Ok(())
            },
            |caches, _| caches.forget_tokens(),
        )
        .await
    }

    /// User IDs in order, up to `limit` after `after`.
    pub async fn list_users(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> StorageResult<Vec<OwnedUserId>> {
        let after = after.map(|a| a.to_string());
        self.read(move |c| {
            Ok(
                c.prepare(
                    "SELECT user_id FROM users WHERE user_id > ?1 ORDER BY user_id LIMIT ?2",
                )?
                .query_map(params![after.unwrap_or_default(), limit as i64], |r| {
                    id(r, 0)
                })?
                .collect::<Result<Vec<_>, _>>()?,
            )
        })
        .await
    }

    /// The third-party identifiers bound to a user, in the order they were added.
    pub async fn threepids(&self, user_id: &UserId) -> StorageResult<Vec<ThreepidRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| threepids_of(c, &user_id)).await
    }

    /// The user a third-party identifier is bound to, if any.
    pub async fn threepid_owner(
        &self,
        medium: &str,
        address: &str,
    ) -> StorageResult<Option<OwnedUserId>> {
        let (medium, address) = (medium.to_string(), address.to_string());
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT user_id FROM user_threepids WHERE medium = ?1 AND address = ?2",
                params![medium, address],
                |r| id(r, 0),
            )
            .optional()?)
        })
        .await
    }

    /// Replaces a user's third-party identifiers with `wanted` (`(medium,
    /// address)` pairs); those kept keep their timestamps. `Conflict` if one
    /// is bound to another user, and then nothing changes. Returns what was
    /// added and what was removed.
    pub async fn set_threepids(
        &self,
        user_id: &UserId,
        wanted: Vec<(String, String)>,
    ) -> StorageResult<ThreepidChanges> {
        let user_id = user_id.to_string();
        self.write(move |w| {
            let now = axon::time::now_ms();
            for (medium, address) in &wanted {
                let owner: Option<String> = w
                    .conn
                    .query_row(
                        "SELECT user_id FROM user_threepids WHERE medium = ?1 AND address = ?2",
                        params![medium, address],
                        |r| r.get(0),
                    )
                    .optional()?;
                if owner.as_ref().is_some_and(|o| *o != user_id) {
                    return Err(StorageError::Conflict(format!("{medium} {address}")));
                }
            }
            let mut changes = ThreepidChanges::default();
            for old in threepids_of(w.conn, &user_id)? {
                if !wanted.iter().any(|(m, a)| *m == old.medium && *a == old.address) {
                    w.conn.execute(
                        "DELETE FROM user_threepids WHERE medium = ?1 AND address = ?2",
                        params![old.medium, old.address],
                    )?;
                    changes.removed.push((old.medium, old.address));
                }
            }
            for (medium, address) in wanted {
                let inserted = w.conn.execute(
                    "INSERT OR IGNORE INTO user_threepids (user_id, medium, address, validated_at, added_at)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![user_id, medium, address, now],
                )?;
                if inserted > 0 {
                    changes.added.push((medium, address));
                }
            }
            Ok(changes)
        })
        .await
    }

    /// Sets a new password and logs every device out (as Synapse's admin API
    /// does by default).
    /// Sets the password hash and, with `log_out`, logs out every device
    /// but `keep`, in the same write; returns `(device_id, token)` of each
    /// device logged out.
    pub async fn set_password_hash(
        &self,
        user_id: &UserId,
        hash: &str,
        log_out: bool,
        keep: Option<&DeviceId>,
    ) -> StorageResult<Vec<(OwnedDeviceId, String)>> {
        let (user_id, hash) = (user_id.to_string(), hash.to_string());
        let keep = keep.map(|d| d.to_string());
        self.write_then(
            move |w| {
                w.conn.execute(
                    "UPDATE users SET password_hash = ?2 WHERE user_id = ?1",
                    params![user_id, hash],
                )?;
                if !log_out {
                    return Ok(Vec::new());
                }
                let Some(keep) = keep else {
                    return log_out_everywhere(w, &user_id);
                };
                let tokens = w
                    .conn
                    .prepare("SELECT device_id, token FROM access_tokens WHERE user_id = ?1 AND device_id != ?2")?
                    .query_map(params![user_id, keep], |r| Ok((id(r, 0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                w.conn.execute(
                    "DELETE FROM access_tokens WHERE user_id = ?1 AND device_id != ?2",
                    params![user_id, keep],
                )?;
                w.conn.execute(
                    "DELETE FROM devices WHERE user_id = ?1 AND device_id != ?2",
                    params![user_id, keep],
                )?;
                Ok(tokens)
            },
            |caches, _| caches.forget_tokens(),
        )
        .await
    }

    pub async fn set_admin(&self, user_id: &UserId, admin: bool) -> StorageResult<()> {
        let user_id = user_id.to_string();
        self.write_then(
            move |w| {
                w.conn.execute(
                    "UPDATE users SET admin = ?2 WHERE user_id = ?1",
                    params![user_id, admin],
                )?;
                Ok(())
            },
            |caches, _| caches.forget_tokens(),
        )
        .await
    }

    pub async fn set_displayname(
        &self,
        user_id: &UserId,
        displayname: Option<String>,
    ) -> StorageResult<()> {
        let user_id = user_id.to_string();
        self.write(move |w| {
            w.conn.execute(
                "UPDATE users SET displayname = ?2 WHERE user_id = ?1",
                params![user_id, displayname],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn set_avatar_url(
        &self,
        user_id: &UserId,
        avatar_url: Option<String>,
    ) -> StorageResult<()> {
        let user_id = user_id.to_string();
        self.write(move |w| {
            w.conn.execute(
                "UPDATE users SET avatar_url = ?2 WHERE user_id = ?1",
                params![user_id, avatar_url],
            )?;
            Ok(())
        })
        .await
    }

    /// Users matching `term` in their ID or display name whom `searcher` may
    /// find: those sharing a room with them, or in a public room (Synapse's
    /// default, `search_all_users: false`).
    pub async fn search_users(
        &self,
        searcher: &UserId,
        term: &str,
        limit: u32,
    ) -> StorageResult<Vec<UserRow>> {
        let searcher = searcher.to_string();
        let pattern = format!(
            "%{}%",
            term.to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        self.read(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {USER_COLUMNS} FROM users u
                 WHERE u.deactivated = 0
                   AND (LOWER(u.user_id) LIKE ?2 ESCAPE '\\' OR LOWER(COALESCE(u.displayname, '')) LIKE ?2 ESCAPE '\\')
                   AND (u.user_id = ?1
                        OR EXISTS (SELECT 1 FROM memberships a JOIN memberships b ON a.room_id = b.room_id
                                   WHERE a.user_id = ?1 AND a.membership = 'join' AND b.user_id = u.user_id AND b.membership = 'join')
                        OR EXISTS (SELECT 1 FROM memberships m JOIN rooms r ON r.room_id = m.room_id
                                   WHERE m.user_id = u.user_id AND m.membership = 'join' AND r.is_public = 1))
                 ORDER BY u.user_id LIMIT ?3"
            ))?;
            let users = stmt
                .query_map(params![searcher, pattern, limit + 1], user_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(users)
        })
        .await
    }
}

fn insert_device(conn: &rusqlite::Connection, device: &NewDevice) -> StorageResult<()> {
    // Logging in again with a device ID replaces that device's token.
    conn.execute(
        "DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2",
        params![device.user_id.as_str(), device.device_id.as_str()],
    )?;
    conn.execute(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = COALESCE(excluded.display_name, display_name)",
        params![device.user_id.as_str(), device.device_id.as_str(), device.display_name, device.created_ts],
    )?;
    conn.execute(
        "INSERT INTO access_tokens (token, user_id, device_id) VALUES (?1, ?2, ?3)",
        params![
            device.access_token,
            device.user_id.as_str(),
            device.device_id.as_str()
        ],
    )?;
    Ok(())
}

/// Deletes every device and access token of a user; returns the
/// `(device_id, token)` pairs that were live, for the logged-out callbacks.
fn log_out_everywhere(
    w: &mut WriteCtx<'_>,
    user_id: &str,
) -> StorageResult<Vec<(OwnedDeviceId, String)>> {
    super::e2e_keys::device_list_changed(w, user_id)?;
    let conn = w.conn;
    let tokens = conn
        .prepare("SELECT device_id, token FROM access_tokens WHERE user_id = ?1")?
        .query_map([user_id], |r| Ok((id(r, 0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    conn.execute("DELETE FROM access_tokens WHERE user_id = ?1", [user_id])?;
    conn.execute("DELETE FROM devices WHERE user_id = ?1", [user_id])?;
    conn.execute("DELETE FROM user_ips WHERE user_id = ?1", [user_id])?;
    conn.execute("DELETE FROM pushers WHERE user_id = ?1", [user_id])?;
    for table in [
        "device_inbox",
        "e2e_device_keys",
        "e2e_one_time_keys",
        "e2e_fallback_keys",
    ] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE user_id = ?1"),
            [user_id],
        )?;
    }
    Ok(tokens)
}

/// Deletes one device with its tokens, where it was seen, its pushers (as
/// Synapse does since 1.88) and its waiting to-device messages; returns the
/// tokens it had.
fn remove_device(
    w: &mut WriteCtx<'_>,
    user_id: &str,
    device_id: &str,
) -> StorageResult<Vec<String>> {
    super::e2e_keys::device_list_changed(w, user_id)?;
    let conn = w.conn;
    let tokens = conn
        .prepare_cached("SELECT token FROM access_tokens WHERE user_id = ?1 AND device_id = ?2")?
        .query_map(params![user_id, device_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for table in [
        "access_tokens",
        "devices",
        "user_ips",
        "pushers",
        "device_inbox",
        "e2e_device_keys",
        "e2e_one_time_keys",
        "e2e_fallback_keys",
    ] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE user_id = ?1 AND device_id = ?2"),
            params![user_id, device_id],
        )?;
    }
    Ok(tokens)
}

fn threepids_of(conn: &rusqlite::Connection, user_id: &str) -> StorageResult<Vec<ThreepidRow>> {
    Ok(conn
        .prepare(
            "SELECT medium, address, validated_at, added_at FROM user_threepids
             WHERE user_id = ?1 ORDER BY added_at, medium, address",
        )?
        .query_map([user_id], |r| {
            Ok(ThreepidRow {
                medium: r.get(0)?,
                address: r.get(1)?,
                validated_at: r.get(2)?,
                added_at: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}
