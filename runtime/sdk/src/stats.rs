//! How each module's callbacks fare: calls, denials, failures by kind and
//! latency. Denials and failures are always counted (atomics, no lock, no
//! allocation; they are off the common path); calls and their latency only
//! when the server measures callbacks (`enable_metrics`), as that costs on
//! every call. The server exposes these to Prometheus and on its status page.

use crate::callbacks::ModuleRef;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram on atomics: one count per bucket (the last is +Inf)
/// and the sum in nanoseconds.
#[derive(Debug, Default)]
pub struct Latency {
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Latency {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// `(sum in seconds, count, cumulative (upper bound, count) per bucket)`.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, cumulative, buckets)
    }

    /// The `q` quantile (0..1) in seconds, interpolated within its bucket
    /// (as Prometheus's `histogram_quantile` does); `None` without data.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let (_, count, buckets) = self.snapshot();
        if count == 0 {
            return None;
        }
        let rank = q * count as f64;
        let mut lower = (0.0, 0u64);
        for (bound, cumulative) in buckets {
            if cumulative as f64 >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = (cumulative - lower.1) as f64;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (bound - lower.0) * fraction);
            }
            lower = (bound, cumulative);
        }
        Some(lower.0)
    }
}

/// How one module's implementation of one callback has fared.
#[derive(Debug, Default)]
pub struct CallbackStats {
    pub calls: AtomicU64,
    /// Verdicts that refused (a spam checker's deny, a `false` that vetoes, …).
    pub denials: AtomicU64,
    pub errors: AtomicU64,
    pub panics: AtomicU64,
    pub timeouts: AtomicU64,
    pub latency: Latency,
    /// Whether calls are counted and timed (`enable_metrics`).
    pub(crate) timed: bool,
    /// The last failure: milliseconds since the epoch, and what happened.
    pub last_failure: Mutex<Option<(i64, String)>>,
}

impl CallbackStats {
    pub fn is_timed(&self) -> bool {
        self.timed
    }

    pub fn failures(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
            + self.panics.load(Ordering::Relaxed)
            + self.timeouts.load(Ordering::Relaxed)
    }
}

/// One registered callback and its stats, in config order.
#[derive(Debug, Clone)]
pub struct CallbackRecord {
    pub module: Arc<ModuleRef>,
    /// `category.callback`
    pub callback: &'static str,
    pub stats: Arc<CallbackStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let latency = Latency::default();
        assert_eq!(latency.quantile(0.5), None);
        for _ in 0..50 {
            latency.observe(Duration::from_micros(50)); // ≤ 0.1 ms
        }
        for _ in 0..50 {
            latency.observe(Duration::from_millis(3)); // 2.5 – 5 ms
        }
        let p50 = latency.quantile(0.5).unwrap();
        assert!((p50 - 0.0001).abs() < 1e-9, "{p50}");
        let p99 = latency.quantile(0.99).unwrap();
        assert!(p99 > 0.0025 && p99 <= 0.005, "{p99}");
        assert_eq!(latency.count(), 100);
    }
}
