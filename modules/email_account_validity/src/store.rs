//! The module's table: each user's expiry, whether the renewal mail went
//! out, and the renewal token last sent.

use axon::db::rusqlite::params;
use axon::module::{Cache, ModuleApi};
use axon::prelude::*;

pub const MIGRATIONS: &[&str] = &["CREATE TABLE {prefix}validity (
        user_id TEXT PRIMARY KEY NOT NULL,
        expiration_ts_ms INTEGER NOT NULL,
        email_sent INTEGER NOT NULL,
        long_renewal_token TEXT UNIQUE,
        short_renewal_token TEXT,
        token_used_ts_ms INTEGER
    )"];

/// Users back-filled per transaction.
const BATCH: usize = 100;

/// What a renewal token is worth.
pub enum TokenLookup {
    /// Unknown (or not valid without the user's access token).
    Invalid,
    /// Known, and already used: the expiry it renewed to.
    Used { expiration_ts: u64 },
    /// Known and unused.
    Fresh { user_id: String },
}

#[derive(Clone)]
pub struct Store {
    api: ModuleApi,
    /// user ID → expiry (`None`: the module has no opinion). Read on every
    /// authenticated request, so cached; every write invalidates its user.
    expiry: Cache<String, Option<u64>>,
}

impl Store {
    pub fn new(api: &ModuleApi) -> Store {
        api.database_migrations(MIGRATIONS);
        Store {
            api: api.clone(),
            expiry: api.cache(100_000),
        }
    }

    pub async fn expiration_ts(&self, user_id: &str) -> Result<Option<u64>, ModuleError> {
        let api = self.api.clone();
        let user = user_id.to_string();
        self.expiry
            .get_or_insert_with(user_id.to_string(), || async move {
                api.db_read(move |txn| {
                    txn.query_row(
                        "SELECT expiration_ts_ms FROM {prefix}validity WHERE user_id = ?1",
                        [&user],
                        |r| r.get::<_, i64>(0),
                    )
                })
                .await
                .map(|ts| ts.map(|t| t.max(0) as u64))
            })
            .await
    }

    /// Gives every user without a row one, expiring a period from now less
    /// a random tenth of it (so their renewal mails do not all go at once).
    pub async fn back_fill(&self, period_ms: u64) -> Result<usize, ModuleError> {
        let mut after: Option<OwnedUserId> = None;
        let mut added = 0;
        loop {
            let users = self.api.get_local_users(after.as_deref(), BATCH).await?;
            let Some(last) = users.last().cloned() else {
                break;
            };
            let now = self.api.current_time_msec();
            let spread = period_ms / 10;
            let rows: Vec<(String, i64)> = users
                .iter()
                .map(|u| {
                    let jitter = if spread > 0 {
                        rand::Rng::gen_range(&mut rand::thread_rng(), 0..spread)
                    } else {
                        0
                    };
                    (u.to_string(), (now + period_ms - jitter) as i64)
                })
                .collect();
            added += self
                .api
                .db_write(move |txn| {
                    let mut n = 0;
                    for (user, expiry) in &rows {
                        n += txn.execute(
                            "INSERT OR IGNORE INTO {prefix}validity (user_id, expiration_ts_ms, email_sent)
                             VALUES (?1, ?2, 0)",
                            params![user, expiry],
                        )?;
                    }
                    Ok(n)
                })
                .await?;
            let full = users.len() == BATCH;
            after = Some(last);
            if !full {
                break;
            }
        }
        self.expiry.invalidate_all();
        Ok(added)
    }

    /// Sets a user's validity: an expiry, whether the renewal mail counts as
    /// sent, and (for a renewal by token) that token marked used `now`; a
    /// renewal without a token clears the user's tokens.
    pub async fn set_validity(
        &self,
        user_id: &str,
        expiration_ts: u64,
        email_sent: bool,
        used_token: bool,
    ) -> Result<(), ModuleError> {
        let user = user_id.to_string();
        let now = self.api.current_time_msec() as i64;
        let result = self
            .api
            .db_write(move |txn| {
                let sql = if used_token {
                    "INSERT INTO {prefix}validity (user_id, expiration_ts_ms, email_sent, token_used_ts_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id) DO UPDATE SET expiration_ts_ms = ?2, email_sent = ?3, token_used_ts_ms = ?4"
                } else {
                    "INSERT INTO {prefix}validity (user_id, expiration_ts_ms, email_sent, token_used_ts_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id) DO UPDATE SET expiration_ts_ms = ?2, email_sent = ?3, token_used_ts_ms = ?4,
                         long_renewal_token = NULL, short_renewal_token = NULL"
                };
                txn.execute(sql, params![user, expiration_ts as i64, email_sent, now])
            })
            .await;
        self.expiry.invalidate(&user_id.to_string());
        result.map(|_| ())
    }

    /// A registration: expiry a period from now, no mail sent yet.
    pub async fn register(&self, user_id: &str, expiration_ts: u64) -> Result<(), ModuleError> {
        let user = user_id.to_string();
        let result = self
            .api
            .db_write(move |txn| {
                txn.execute(
                    "INSERT INTO {prefix}validity (user_id, expiration_ts_ms, email_sent) VALUES (?1, ?2, 0)
                     ON CONFLICT (user_id) DO UPDATE SET expiration_ts_ms = ?2, email_sent = 0",
                    params![user, expiration_ts as i64],
                )
            })
            .await;
        self.expiry.invalidate(&user_id.to_string());
        result.map(|_| ())
    }

    pub async fn set_email_sent(&self, user_id: &str) -> Result<(), ModuleError> {
        let user = user_id.to_string();
        self.api
            .db_write(move |txn| {
                txn.execute(
                    "UPDATE {prefix}validity SET email_sent = 1 WHERE user_id = ?1",
                    [&user],
                )
            })
            .await
            .map(|_| ())
    }

    /// Users whose mail has not gone out and who expire within `renew_at`.
    pub async fn expiring_soon(&self, renew_at_ms: u64) -> Result<Vec<(String, u64)>, ModuleError> {
        let now = self.api.current_time_msec() as i64;
        self.api
            .db_read(move |txn| {
                txn.query_map(
                    "SELECT user_id, expiration_ts_ms FROM {prefix}validity
                     WHERE email_sent = 0 AND expiration_ts_ms - ?1 <= ?2",
                    params![now, renew_at_ms as i64],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)),
                )
            })
            .await
    }

    /// Stores a new token for the user (long: unique in the table; short:
    /// the user's only one), not yet used. `Ok(false)` if a long token is
    /// already someone else's.
    pub async fn set_token(
        &self,
        user_id: &str,
        token: &str,
        long: bool,
    ) -> Result<bool, ModuleError> {
        let (user, token) = (user_id.to_string(), token.to_string());
        self.api
            .db_write(move |txn| {
                let sql = if long {
                    "UPDATE {prefix}validity SET long_renewal_token = ?2, token_used_ts_ms = NULL WHERE user_id = ?1"
                } else {
                    "UPDATE {prefix}validity SET short_renewal_token = ?2, token_used_ts_ms = NULL WHERE user_id = ?1"
                };
                match txn.execute(sql, params![user, token]) {
                    Ok(_) => Ok(true),
                    Err(axon::db::rusqlite::Error::SqliteFailure(e, _))
                        if e.code == axon::db::rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// Looks a token up: a long one alone, a short one only with its user.
    pub async fn lookup_token(
        &self,
        token: &str,
        user_id: Option<&str>,
    ) -> Result<TokenLookup, ModuleError> {
        let (token, user) = (token.to_string(), user_id.map(str::to_string));
        let row = self
            .api
            .db_read(move |txn| {
                let row = |r: &axon::db::rusqlite::Row<'_>| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                };
                let by_long = txn.query_row(
                    "SELECT user_id, expiration_ts_ms, token_used_ts_ms FROM {prefix}validity WHERE long_renewal_token = ?1",
                    [&token],
                    row,
                )?;
                match (by_long, user) {
                    (Some(found), _) => Ok(Some(found)),
                    (None, Some(user)) => txn.query_row(
                        "SELECT user_id, expiration_ts_ms, token_used_ts_ms FROM {prefix}validity WHERE user_id = ?1 AND short_renewal_token = ?2",
                        params![user, token],
                        row,
                    ),
                    (None, None) => Ok(None),
                }
            })
            .await?;
        Ok(match row {
            None => TokenLookup::Invalid,
            Some((_, expiry, Some(_))) => TokenLookup::Used {
                expiration_ts: expiry.max(0) as u64,
            },
            Some((user_id, _, None)) => TokenLookup::Fresh { user_id },
        })
    }
}
