//! End-to-end encryption keys as devices upload them: identity keys,
//! one-time keys (each handed out once) and fallback keys.

use super::notify::WakeKey;
use super::{id, Storage, StorageError, StorageResult, WriteCtx};
use ruma::{DeviceId, OwnedDeviceId, OwnedRoomId, OwnedUserId, UserId};
use rusqlite::{params, OptionalExtension};
use std::collections::{BTreeMap, BTreeSet};

/// A key as uploaded: `(algorithm, key ID, the key's JSON)`.
pub type UploadedKey = (String, String, String);

/// One claimed key: who and which device it is of, its `algorithm:id`, its JSON.
pub type ClaimedKey = (OwnedUserId, OwnedDeviceId, String, String);

impl Storage {
    /// Stores what a device uploads, in one write; the device's unclaimed
    /// one-time keys per algorithm afterwards. A one-time key ID already
    /// stored with other content is refused (nothing is stored).
    pub async fn upload_keys(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        device_keys: Option<String>,
        one_time_keys: Vec<UploadedKey>,
        fallback_keys: Vec<UploadedKey>,
    ) -> StorageResult<BTreeMap<String, u64>> {
        let (user, device) = (user_id.to_string(), device_id.to_string());
        self.write(move |w| {
            if let Some(keys) = device_keys {
                let changed = w.conn.execute(
                    "INSERT INTO e2e_device_keys (user_id, device_id, keys) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, device_id) DO UPDATE SET keys = excluded.keys
                     WHERE keys != excluded.keys",
                    params![user, device, keys],
                )? > 0;
                if changed {
                    device_list_changed(w, &user)?;
                }
            }
            for (algorithm, key_id, key) in one_time_keys {
                let existing: Option<String> = w
                    .conn
                    .prepare_cached(
                        "SELECT key FROM e2e_one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 AND key_id = ?4",
                    )?
                    .query_row(params![user, device, algorithm, key_id], |r| r.get(0))
                    .optional()?;
                match existing {
                    Some(old) if old != key => {
                        return Err(StorageError::Conflict(format!(
                            "One time key {algorithm}:{key_id} already exists with other content"
                        )))
                    }
                    Some(_) => {}
                    None => {
                        w.conn.execute(
                            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key) VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![user, device, algorithm, key_id, key],
                        )?;
                    }
                }
            }
            for (algorithm, key_id, key) in fallback_keys {
                w.conn.execute(
                    "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key, used) VALUES (?1, ?2, ?3, ?4, ?5, 0)
                     ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id,
                       key = excluded.key, used = CASE WHEN key_id = excluded.key_id THEN used ELSE 0 END",
                    params![user, device, algorithm, key_id, key],
                )?;
            }
            one_time_key_counts(w.conn, &user, &device)
        })
        .await
    }

    /// Hands out one key per `(user, device, algorithm)`: a one-time key,
    /// deleted as it is handed out (in one write, so two claims never get
    /// the same key), else the device's fallback key, marked used.
    pub async fn claim_keys(
        &self,
        wanted: Vec<(OwnedUserId, OwnedDeviceId, String)>,
    ) -> StorageResult<Vec<ClaimedKey>> {
        self.write(move |w| {
            let mut claimed = Vec::new();
            for (user, device, algorithm) in wanted {
                let found: Option<(String, String)> = w
                    .conn
                    .prepare_cached(
                        "SELECT key_id, key FROM e2e_one_time_keys
                         WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 ORDER BY key_id LIMIT 1",
                    )?
                    .query_row(params![user.as_str(), device.as_str(), algorithm], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((key_id, key)) = found {
                    w.conn.execute(
                        "DELETE FROM e2e_one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 AND key_id = ?4",
                        params![user.as_str(), device.as_str(), algorithm, key_id],
                    )?;
                    claimed.push((user, device, format!("{algorithm}:{key_id}"), key));
                    continue;
                }
                let fallback: Option<(String, String)> = w
                    .conn
                    .prepare_cached(
                        "SELECT key_id, key FROM e2e_fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
                    )?
                    .query_row(params![user.as_str(), device.as_str(), algorithm], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((key_id, key)) = fallback {
                    w.conn.execute(
                        "UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
                        params![user.as_str(), device.as_str(), algorithm],
                    )?;
                    claimed.push((user, device, format!("{algorithm}:{key_id}"), key));
                }
            }
            Ok(claimed)
        })
        .await
    }

    /// A user of another server changed their devices or keys.
    pub async fn remote_device_list_changed(&self, user_id: &UserId) -> StorageResult<()> {
        let user = user_id.to_string();
        self.write(move |w| remote_device_list_changed(w, &user))
            .await
    }

    /// `/keys/changes`: whose devices to look at again between two
    /// positions, and whom `user` stopped sharing a room with.
    pub async fn device_list_changes(
        &self,
        user_id: &UserId,
        from: i64,
        to: i64,
    ) -> StorageResult<DeviceListChanges> {
        let user = user_id.to_string();
        self.read(move |c| device_list_changes(c, &user, from, to))
            .await
    }

    /// A user's keys as `viewer` may see them, in one read: the identity
    /// keys of their devices (all, or those named) with each device's
    /// display name, their cross-signing keys, and the signatures uploaded
    /// for those keys by the user or by `viewer`.
    pub async fn keys_of_user(
        &self,
        user_id: &UserId,
        devices: Option<Vec<OwnedDeviceId>>,
        viewer: &UserId,
    ) -> StorageResult<UserKeys> {
        let (user, viewer) = (user_id.to_string(), viewer.to_string());
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT k.device_id, k.keys, d.display_name FROM e2e_device_keys k
                     JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
                     WHERE k.user_id = ?1 ORDER BY k.device_id",
                )?
                .query_map([&user], |r| {
                    Ok((
                        OwnedDeviceId::from(r.get::<_, String>(0)?),
                        r.get(1)?,
                        r.get(2)?,
                    ))
                })?
                .collect::<Result<Vec<(OwnedDeviceId, String, Option<String>)>, _>>()?;
            let devices = match devices {
                Some(wanted) if !wanted.is_empty() => rows
                    .into_iter()
                    .filter(|(d, _, _)| wanted.contains(d))
                    .collect(),
                _ => rows,
            };
            let cross_signing = c
                .prepare_cached(
                    "SELECT key_type, public_key, keys FROM e2e_cross_signing_keys WHERE user_id = ?1",
                )?
                .query_map([&user], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
                .collect::<Result<_, _>>()?;
            let signatures = c
                .prepare_cached(
                    "SELECT target_device_id, user_id, key_id, signature FROM e2e_cross_signing_signatures
                     WHERE target_user_id = ?1 AND user_id IN (?1, ?2)",
                )?
                .query_map(params![user, viewer], |r| {
                    Ok(KeySignature {
                        target_device: r.get(0)?,
                        signer: r.get(1)?,
                        key_id: r.get(2)?,
                        signature: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(UserKeys {
                devices,
                cross_signing,
                signatures,
            })
        })
        .await
    }

    /// Stores a user's new cross-signing keys `(type, public key, JSON)`;
    /// their master and self-signing keys are everyone's business, their
    /// user-signing key only their own.
    pub async fn set_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: Vec<(String, String, String)>,
    ) -> StorageResult<()> {
        let owner = user_id.to_owned();
        self.write(move |w| {
            let mut public_change = false;
            for (key_type, public_key, json) in keys {
                w.conn
                    .prepare_cached(
                        "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, keys) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (user_id, key_type) DO UPDATE SET public_key = excluded.public_key, keys = excluded.keys",
                    )?
                    .execute(params![owner.as_str(), key_type, public_key, json])?;
                public_change |= key_type != "user_signing";
            }
            if public_change {
                device_list_changed(w, owner.as_str())
            } else {
                keys_changed_for(w, owner.as_str(), &owner)
            }
        })
        .await
    }

    /// Stores verified signatures by `signer`: of their own keys (everyone
    /// sharing a room is told), or of other users' master keys (only the
    /// signer is).
    pub async fn store_key_signatures(
        &self,
        signer: &UserId,
        target_user: &UserId,
        signatures: Vec<KeySignature>,
    ) -> StorageResult<()> {
        if signatures.is_empty() {
            return Ok(());
        }
        let (signer, target) = (signer.to_owned(), target_user.to_string());
        self.write(move |w| {
            for s in &signatures {
                w.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO e2e_cross_signing_signatures
                         (user_id, key_id, target_user_id, target_device_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![signer.as_str(), s.key_id, target, s.target_device, s.signature])?;
            }
            if signer.as_str() == target {
                device_list_changed(w, &target)
            } else {
                keys_changed_for(w, &target, &signer)
            }
        })
        .await
    }
}

/// A user's keys as one viewer may see them (see `Storage::keys_of_user`).
#[derive(Debug, Default)]
pub struct UserKeys {
    /// `(device, identity keys JSON, display name)`.
    pub devices: Vec<(OwnedDeviceId, String, Option<String>)>,
    /// Cross-signing keys by type: `(public key, JSON)`.
    pub cross_signing: BTreeMap<String, (String, String)>,
    pub signatures: Vec<KeySignature>,
}

/// A signature of a key: a device (by ID) or a cross-signing key (by its
/// public key), by `signer`'s key `key_id`.
#[derive(Debug, Clone)]
pub struct KeySignature {
    pub target_device: String,
    pub signer: String,
    pub key_id: String,
    pub signature: String,
}

/// A device's unclaimed one-time keys, per algorithm.
pub(super) fn one_time_key_counts(
    c: &rusqlite::Connection,
    user: &str,
    device: &str,
) -> StorageResult<BTreeMap<String, u64>> {
    let counts = c
        .prepare_cached(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ?1 AND device_id = ?2 GROUP BY algorithm",
        )?
        .query_map(params![user, device], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(counts)
}

/// The algorithms of a device's fallback keys not handed out yet.
pub(super) fn unused_fallback_key_types(
    c: &rusqlite::Connection,
    user: &str,
    device: &str,
) -> StorageResult<Vec<String>> {
    Ok(c
        .prepare_cached(
            "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0 ORDER BY algorithm",
        )?
        .query_map(params![user, device], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?)
}

/// Records that a local `user`'s devices or keys changed, wakes whoever
/// shares a room with them (through those rooms) and the user's own
/// devices, and tells the other servers in those rooms
/// (`m.device_list_update`, with no previous IDs, so that they fetch the
/// user's devices again, the keys with them).
pub(super) fn device_list_changed(w: &mut WriteCtx<'_>, user: &str) -> StorageResult<()> {
    let stream = record_device_list_change(w, user)?;
    let servers = super::events::other_servers_sharing_rooms(w.conn, user)?;
    let device: Option<String> = w
        .conn
        .prepare_cached(
            "SELECT device_id FROM devices WHERE user_id = ?1 ORDER BY device_id LIMIT 1",
        )?
        .query_row([user], |r| r.get(0))
        .optional()?;
    let edu = serde_json::json!({
        "edu_type": "m.device_list_update",
        "content": {
            "user_id": user,
            "device_id": device.unwrap_or_default(),
            "stream_id": stream,
            "prev_id": [],
        },
    })
    .to_string();
    for server in &servers {
        w.queue_for(server, super::federation::QueueKind::Edu, &edu)?;
    }
    Ok(())
}

/// Records that a user of another server changed their devices or keys
/// (their server said so), for the local users sharing a room with them.
pub(super) fn remote_device_list_changed(w: &mut WriteCtx<'_>, user: &str) -> StorageResult<()> {
    record_device_list_change(w, user).map(|_| ())
}

fn record_device_list_change(w: &mut WriteCtx<'_>, user: &str) -> StorageResult<i64> {
    let stream = w.next_position();
    w.conn
        .prepare_cached(
            "INSERT OR IGNORE INTO device_lists_stream (stream_ordering, user_id, observer) VALUES (?1, ?2, '')",
        )?
        .execute(params![stream, user])?;
    let rooms: Vec<OwnedRoomId> = w
        .conn
        .prepare_cached(
            "SELECT room_id FROM memberships WHERE user_id = ?1 AND membership = 'join'",
        )?
        .query_map([user], |r| id(r, 0))?
        .collect::<Result<_, _>>()?;
    for room in rooms {
        w.wake_after_commit(WakeKey::Room(room));
    }
    if let Ok(user) = OwnedUserId::try_from(user) {
        w.wake_after_commit(WakeKey::User(user));
    }
    Ok(stream)
}

/// Records that `observer` sees `user`'s keys changed (they signed them):
/// only `observer` is told, as Synapse's signature stream does.
fn keys_changed_for(w: &mut WriteCtx<'_>, user: &str, observer: &OwnedUserId) -> StorageResult<()> {
    let stream = w.next_position();
    w.conn
        .prepare_cached(
            "INSERT OR IGNORE INTO device_lists_stream (stream_ordering, user_id, observer) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![stream, user, observer.as_str()])?;
    w.wake_after_commit(WakeKey::User(observer.clone()));
    Ok(())
}

/// What `device_lists` of a sync from `since` to `upto` holds: users whose
/// devices or keys changed and who share a room with `user` (or are them),
/// or who started sharing one; and users who stopped sharing any.
pub(super) fn device_list_changes(
    c: &rusqlite::Connection,
    user: &str,
    since: i64,
    upto: i64,
) -> StorageResult<DeviceListChanges> {
    let mut shares = c.prepare_cached(
        "SELECT 1 FROM memberships a JOIN memberships b ON b.user_id = ?2 AND b.room_id = a.room_id
         WHERE a.user_id = ?1 AND a.membership = 'join' AND b.membership = 'join' LIMIT 1",
    )?;
    let mut shares = |other: &str| shares.exists(params![user, other]);
    let mut changes = DeviceListChanges::default();
    let changed_users: Vec<(String, String)> = c
        .prepare_cached(
            "SELECT DISTINCT user_id, observer FROM device_lists_stream
             WHERE stream_ordering > ?1 AND stream_ordering <= ?2 AND observer IN ('', ?3)",
        )?
        .query_map(params![since, upto, user], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (other, observer) in changed_users {
        if other == user || observer == user || shares(&other)? {
            changes.changed.insert(other);
        }
    }
    let memberships: Vec<(String, String, String)> = c
        .prepare_cached(
            "SELECT user_id, room_id, membership FROM memberships WHERE stream_ordering > ?1 AND stream_ordering <= ?2",
        )?
        .query_map(params![since, upto], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut members_of = c.prepare_cached(
        "SELECT user_id FROM memberships WHERE room_id = ?1 AND membership = 'join'",
    )?;
    let mut joined = c.prepare_cached(
        "SELECT 1 FROM memberships WHERE user_id = ?1 AND room_id = ?2 AND membership = 'join'",
    )?;
    let mut maybe_left = BTreeSet::new();
    for (member, room, membership) in memberships {
        let joins = membership == "join";
        if member == user {
            // The user joined or left: everyone in that room came or went.
            let members: Vec<String> = members_of
                .query_map([&room], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if joins {
                changes
                    .changed
                    .extend(members.into_iter().filter(|m| m != user));
            } else {
                maybe_left.extend(members);
            }
        } else if joined.exists(params![user, room])? {
            if joins {
                changes.changed.insert(member);
            } else if membership != "invite" && membership != "knock" {
                maybe_left.insert(member);
            }
        }
    }
    for other in maybe_left {
        if other != user && !changes.changed.contains(&other) && !shares(&other)? {
            changes.left.insert(other);
        }
    }
    Ok(changes)
}

/// `device_lists` of a sync, or `/keys/changes`.
#[derive(Debug, Default, Clone)]
pub struct DeviceListChanges {
    pub changed: BTreeSet<String>,
    pub left: BTreeSet<String>,
}
