//! End-to-end encryption keys as devices upload them: identity keys,
//! one-time keys (each handed out once) and fallback keys.

use super::{Storage, StorageError, StorageResult};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

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
                w.conn.execute(
                    "INSERT INTO e2e_device_keys (user_id, device_id, keys) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, device_id) DO UPDATE SET keys = excluded.keys",
                    params![user, device, keys],
                )?;
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

    /// The identity keys of a user's devices (all, or those named), with
    /// each device's display name.
    pub async fn device_keys(
        &self,
        user_id: &UserId,
        devices: Option<Vec<OwnedDeviceId>>,
    ) -> StorageResult<Vec<(OwnedDeviceId, String, Option<String>)>> {
        let user = user_id.to_string();
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
            Ok(match devices {
                Some(wanted) if !wanted.is_empty() => rows
                    .into_iter()
                    .filter(|(d, _, _)| wanted.contains(d))
                    .collect(),
                _ => rows,
            })
        })
        .await
    }
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
