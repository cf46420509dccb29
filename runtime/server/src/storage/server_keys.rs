//! Other servers' signing keys, cached with how long each may be used.

use super::{Storage, StorageResult};
use rusqlite::params;
use std::sync::Arc;

/// One key of another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKey {
    pub key_id: String,
    /// Unpadded base64.
    pub public_key: String,
    /// Until when it signs (the response's `valid_until_ts`, capped).
    pub valid_until_ts: i64,
    /// For an old key: when it stopped signing.
    pub expired_ts: Option<i64>,
    /// The signed key response it came in, as received.
    pub key_json: String,
}

impl RemoteKey {
    /// Whether it may verify a signature made at `ts`.
    pub fn valid_at(&self, ts: i64) -> bool {
        match self.expired_ts {
            Some(expired) => ts < expired,
            None => ts <= self.valid_until_ts,
        }
    }
}

impl Storage {
    /// The keys known of `server` (read through the in-memory cache).
    pub async fn remote_keys(&self, server: &str) -> StorageResult<Arc<Vec<RemoteKey>>> {
        let (cached, read_at) = self.caches().remote_keys(server);
        if let Some(keys) = cached {
            return Ok(keys);
        }
        let name = server.to_string();
        let keys: Vec<RemoteKey> = self
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT key_id, public_key, valid_until_ts, expired_ts, key_json
                     FROM server_signing_keys WHERE server_name = ?1",
                )?;
                let rows = statement.query_map([&name], |r| {
                    Ok(RemoteKey {
                        key_id: r.get(0)?,
                        public_key: r.get(1)?,
                        valid_until_ts: r.get(2)?,
                        expired_ts: r.get(3)?,
                        key_json: r.get(4)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        let keys = Arc::new(keys);
        self.caches()
            .insert_remote_keys(server.to_string(), keys.clone(), read_at);
        Ok(keys)
    }

    /// Stores keys of `server` just fetched; a key already known keeps the
    /// later validity of the two, so an older response (from a notary,
    /// say) never shortens it.
    pub async fn store_remote_keys(
        &self,
        server: &str,
        keys: Vec<RemoteKey>,
        fetched_ts: i64,
    ) -> StorageResult<()> {
        let server = server.to_string();
        let forget = server.clone();
        self.write_then(move |w| {
            let mut statement = w.conn.prepare_cached(
                "INSERT INTO server_signing_keys
                   (server_name, key_id, public_key, valid_until_ts, expired_ts, key_json, fetched_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (server_name, key_id) DO UPDATE SET
                   public_key = excluded.public_key,
                   valid_until_ts = excluded.valid_until_ts,
                   expired_ts = excluded.expired_ts,
                   key_json = excluded.key_json,
                   fetched_ts = excluded.fetched_ts
                 WHERE excluded.valid_until_ts >= server_signing_keys.valid_until_ts
                    OR excluded.expired_ts IS NOT NULL",
            )?;
            for key in keys {
                statement.execute(params![
                    server,
                    key.key_id,
                    key.public_key,
                    key.valid_until_ts,
                    key.expired_ts,
                    key.key_json,
                    fetched_ts
                ])?;
            }
            Ok(())
        }, move |caches, _| caches.forget_remote_keys(&forget))
        .await
    }
}
