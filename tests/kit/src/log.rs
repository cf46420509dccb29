//! The call log test modules write and tests read, keyed by a name each
//! test picks (`log:` in the module's config), so tests running at once in
//! one process do not see each other's calls.

use std::sync::Mutex;

static LOG: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Records `entry` under `log`.
pub fn record(log: &str, entry: String) {
    LOG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((log.to_string(), entry));
}

/// The calls recorded under `log`, in order.
pub fn calls(log: &str) -> Vec<String> {
    LOG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(l, _)| l == log)
        .map(|(_, e)| e.clone())
        .collect()
}

/// The calls of one callback recorded under `log`.
pub fn only(log: &str, callback: &str) -> Vec<String> {
    calls(log)
        .into_iter()
        .filter(|c| c.contains(&format!(":{callback}")))
        .collect()
}

/// Waits (at most 5 s) for a call that happens in the background.
pub async fn wait_for_call(log: &str, entry: &str) -> Vec<String> {
    for _ in 0..100 {
        let seen = calls(log);
        if seen.iter().any(|e| e == entry) {
            return seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no call `{entry}` in {:?}", calls(log));
}
