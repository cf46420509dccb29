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

/// The longest key a bucket is kept under: keys come from requests (a
/// username a login names), so a longer one is cut here (the longest user
/// ID is 255 bytes).
const MAX_KEY: usize = 255;

/// Buckets kept before idle ones are swept out.
const FIRST_SWEEP: usize = 1024;

pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

struct Buckets {
    map: HashMap<(&'static str, String), Bucket>,
    /// Sweep idle buckets when the map reaches this size.
    sweep_at: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }
}

struct Bucket {
    /// Actions that may still be taken at `updated`.
    available: f64,
    updated: Instant,
    /// When it will be full again: from then on it is the same as no bucket.
    full_at: Instant,
}

/// `key`, cut to at most `MAX_KEY` bytes at a character boundary.
fn bounded(key: &str) -> &str {
    if key.len() <= MAX_KEY {
        return key;
    }
    let mut end = MAX_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
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
        if buckets.map.len() >= buckets.sweep_at {
            buckets.map.retain(|_, bucket| bucket.full_at > now);
            buckets.sweep_at = FIRST_SWEEP.max(buckets.map.len() * 2);
        }
        let bucket = buckets
            .map
            .entry((limiter, bounded(key).to_string()))
            .or_insert(Bucket {
                available: limit.burst_count,
                updated: now,
                full_at: now,
            });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.available = (bucket.available + elapsed * limit.per_second).min(limit.burst_count);
        bucket.updated = now;
        if bucket.available >= n {
            if update {
                bucket.available -= n;
                let refill = (limit.burst_count - bucket.available) / limit.per_second;
                bucket.full_at = now + std::time::Duration::from_secs_f64(refill.min(1e9));
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
            .map
            .remove(&(limiter, bounded(key).to_string()));
    }

    /// How many buckets are kept.
    pub fn buckets_kept(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_idle_buckets_swept() {
        let limiter = RateLimiter::default();
        // Refills at once: every bucket is idle as soon as it is used.
        let fast = RateLimit {
            per_second: 1e9,
            burst_count: 10.0,
        };
        for i in 0..20_000 {
            let key = format!("@{}{i}:example.org", "x".repeat(100_000));
            limiter.check("rc_login.account", &key, fast).unwrap();
        }
        assert!(
            limiter.buckets_kept() <= FIRST_SWEEP,
            "{} buckets kept",
            limiter.buckets_kept()
        );
        let stored: usize = limiter
            .buckets
            .lock()
            .unwrap()
            .map
            .keys()
            .map(|(_, k)| k.len())
            .max()
            .unwrap();
        assert!(stored <= MAX_KEY);
        // A bucket still refilling is kept.
        let slow = RateLimit {
            per_second: 0.001,
            burst_count: 1.0,
        };
        limiter
            .check("rc_message", "@alice:example.org", slow)
            .unwrap();
        for i in 0..5_000 {
            limiter
                .check("rc_login.account", &i.to_string(), fast)
                .unwrap();
        }
        assert!(limiter
            .check("rc_message", "@alice:example.org", slow)
            .is_err());
    }
}

/// Requests of other servers in progress, per origin (`rc_federation`).
#[derive(Default)]
pub struct FederationLimiter {
    origins: Mutex<HashMap<String, OriginLoad>>,
}

struct OriginLoad {
    /// Requests waiting or being served.
    in_flight: usize,
    /// When the requests of the current window came.
    recent: std::collections::VecDeque<Instant>,
    served: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A request of another server counted in: it is counted out when this
/// drops, with the request (or while it waits, if the caller goes away).
pub struct FederationPermit {
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    origin: String,
    homeserver: std::sync::Arc<Homeserver>,
}

impl Drop for FederationPermit {
    fn drop(&mut self) {
        let window =
            std::time::Duration::from_millis(self.homeserver.config.rc_federation.window_size);
        let mut origins = self
            .homeserver
            .federation_limiter
            .origins
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(load) = origins.get_mut(&self.origin) {
            load.in_flight = load.in_flight.saturating_sub(1);
            let quiet = load.recent.back().is_none_or(|t| t.elapsed() > window);
            if load.in_flight == 0 && quiet {
                origins.remove(&self.origin);
            }
        }
    }
}

impl Homeserver {
    /// Admits a request of `origin` as `rc_federation` says: refused with
    /// 429 past `reject_limit`, delayed past `sleep_limit` in a window, and
    /// waiting for one of `concurrent` slots.
    pub async fn admit_federation_request(
        self: &std::sync::Arc<Self>,
        origin: &str,
    ) -> Result<FederationPermit, MatrixError> {
        let limits = self.config.rc_federation;
        let now = Instant::now();
        let window = std::time::Duration::from_millis(limits.window_size);
        let (delay, served) = {
            let mut origins = self
                .federation_limiter
                .origins
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let load = origins
                .entry(origin.to_string())
                .or_insert_with(|| OriginLoad {
                    in_flight: 0,
                    recent: Default::default(),
                    served: std::sync::Arc::new(tokio::sync::Semaphore::new(
                        limits.concurrent.max(1),
                    )),
                });
            if load.in_flight >= limits.reject_limit {
                return Err(
                    MatrixError::new(429, ErrCode::LimitExceeded, "Too Many Requests")
                        .with_field("retry_after_ms", limits.window_size),
                );
            }
            while load
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                load.recent.pop_front();
            }
            load.recent.push_back(now);
            load.in_flight += 1;
            let delay = (load.recent.len() > limits.sleep_limit)
                .then(|| std::time::Duration::from_millis(limits.sleep_delay));
            (delay, load.served.clone())
        };
        let mut permit = FederationPermit {
            _slot: None,
            origin: origin.to_string(),
            homeserver: self.clone(),
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        permit._slot = Some(
            served
                .acquire_owned()
                .await
                .map_err(|_| MatrixError::internal("the federation limiter closed"))?,
        );
        Ok(permit)
    }
}
