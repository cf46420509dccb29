//! Rate limits: a token bucket per limiter and key (user, address, room),
//! as Synapse's `rc_*` settings describe, with modules' per-user overrides.

use super::MatrixError;
use crate::config::RateLimit;
use crate::homeserver::Homeserver;
use axon::ErrCode;
use ruma::UserId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(&'static str, String), Bucket>>,
}

struct Bucket {
    /// Actions that may still be taken at `updated`.
    available: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Takes one action from `key`'s bucket of `limiter`, or says how long to wait.
    pub fn check(
        &self,
        limiter: &'static str,
        key: &str,
        limit: RateLimit,
    ) -> Result<(), MatrixError> {
        self.take(limiter, key, limit, 1.0, true)
    }

    /// Whether `n` actions could be taken from `key`'s bucket now, taking
    /// none (Synapse's `update=False`).
    pub fn allows(&self, limiter: &'static str, key: &str, limit: RateLimit, n: usize) -> bool {
        self.take(limiter, key, limit, n as f64, false).is_ok()
    }

    fn take(
        &self,
        limiter: &'static str,
        key: &str,
        limit: RateLimit,
        n: f64,
        update: bool,
    ) -> Result<(), MatrixError> {
        if limit.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry((limiter, key.to_string())).or_insert(Bucket {
            available: limit.burst_count,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.available = (bucket.available + elapsed * limit.per_second).min(limit.burst_count);
        bucket.updated = now;
        if bucket.available >= n {
            if update {
                bucket.available -= n;
            }
            Ok(())
        } else {
            let wait_ms = ((n - bucket.available) / limit.per_second * 1000.0).ceil() as u64;
            Err(
                MatrixError::new(429, ErrCode::LimitExceeded, "Too Many Requests")
                    .with_field("retry_after_ms", wait_ms),
            )
        }
    }

    /// Forgets a key's bucket (such as an account's failed logins after a success).
    pub fn reset(&self, limiter: &'static str, key: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(limiter, key.to_string()));
    }
}

impl Homeserver {
    /// Rate-limits `user` on `limiter`, unless a module overrides their
    /// limit (`get_ratelimit_override_for_user`).
    pub(crate) async fn ratelimit_user(
        &self,
        limiter: &'static str,
        user: &UserId,
        limit: RateLimit,
    ) -> Result<(), MatrixError> {
        let limit = self.user_limit(limiter, user, limit).await?;
        self.rate_limiter.check(limiter, user.as_str(), limit)
    }

    /// The limit that applies to `user` on `limiter`.
    pub(crate) async fn user_limit(
        &self,
        limiter: &'static str,
        user: &UserId,
        limit: RateLimit,
    ) -> Result<RateLimit, MatrixError> {
        Ok(
            match self
                .callbacks
                .ratelimit
                .get_ratelimit_override_for_user(user, limiter)
                .await?
            {
                Some(o) => RateLimit {
                    per_second: o.per_second,
                    burst_count: o.burst_count as f64,
                },
                None => limit,
            },
        )
    }
}
