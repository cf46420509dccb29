//! Rate limits: a token bucket per limiter and key (user, address, room),
//! as Synapse's `rc_*` settings describe, with modules' per-user overrides.

use super::MatrixError;
use crate::config::RateLimit;
use axon::ErrCode;
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
        if bucket.available >= 1.0 {
            bucket.available -= 1.0;
            Ok(())
        } else {
            let wait_ms = ((1.0 - bucket.available) / limit.per_second * 1000.0).ceil() as u64;
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
