//! The outbound federation queue: what this server sends each other
//! server, kept in storage (queued in the commit that stores each event,
//! so a restart loses nothing) and delivered one transaction in flight per
//! destination, at most 50 PDUs and 100 EDUs each, in order. A destination
//! that fails is tried again after 1 s, doubling to an hour; it is tried at
//! once when it is next heard from.

use crate::homeserver::Homeserver;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const MAX_BACKOFF_MS: i64 = 3600 * 1000;
/// The stored queue is read in full this often (and at start-up), for
/// what no wake-up named.
const RESCAN: Duration = Duration::from_secs(30);

/// The sender's handle: wake it for destinations, stop it.
pub struct Outbox {
    wake: Arc<tokio::sync::Notify>,
    stop: tokio::sync::watch::Sender<bool>,
    state: Mutex<OutboxState>,
}

/// What the sender knows of the destinations, in memory; the queue
/// itself and each backoff are in storage.
#[derive(Default)]
struct OutboxState {
    /// Destinations with something queued that may be sent to now.
    due: HashSet<String>,
    /// Destinations in backoff, and until when (ms).
    backoff: HashMap<String, i64>,
    /// Destinations with a transaction in flight.
    sending: HashSet<String>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            wake: Default::default(),
            stop: tokio::sync::watch::channel(false).0,
            state: Default::default(),
        }
    }
}

fn backoff_ms(failures: u32) -> i64 {
    (1000i64 << failures.saturating_sub(1).min(12)).min(MAX_BACKOFF_MS)
}

impl Outbox {
    fn state(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At shutdown: transactions in flight end with the process; what they
    /// held stays queued.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        self.wake.notify_one();
    }

    /// Starts the sender (at start-up): it holds the server weakly, so
    /// dropping the server ends it.
    pub fn start(&self, server: Weak<Homeserver>) {
        let wake = self.wake.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            let mut next_rescan = tokio::time::Instant::now();
            loop {
                if *stop.borrow() {
                    return;
                }
                let Some(hs) = server.upgrade() else { return };
                let rung = hs.storage.outbox_doorbell().take();
                hs.outbox.state().due.extend(rung);
                if tokio::time::Instant::now() >= next_rescan {
                    hs.rescan_queue().await;
                    next_rescan = tokio::time::Instant::now() + RESCAN;
                }
                let next = hs
                    .dispatch_due()
                    .min(next_rescan - tokio::time::Instant::now());
                let storage = hs.storage.clone();
                drop(hs);
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = storage.outbox_doorbell().rung() => {}
                    _ = tokio::time::sleep(next) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
}

impl Homeserver {
    /// Reads which destinations have something queued, and their backoff.
    async fn rescan_queue(&self) {
        match self.storage.queued_destinations().await {
            Ok(queued) => {
                let mut state = self.outbox.state();
                for (destination, retry_after) in queued {
                    if retry_after > 0 {
                        state.backoff.insert(destination.clone(), retry_after);
                    }
                    state.due.insert(destination);
                }
            }
            Err(e) => tracing::warn!("the federation queue cannot be read: {e}"),
        }
    }

    /// Starts a sender for each due destination not backed off and not
    /// sending already; how long until the next backoff ends.
    fn dispatch_due(self: &Arc<Self>) -> Duration {
        let now = axon::time::now_ms();
        let mut next = RESCAN;
        let mut start = Vec::new();
        {
            let mut state = self.outbox.state();
            let OutboxState {
                due,
                backoff,
                sending,
            } = &mut *state;
            backoff.retain(|_, until| *until > now);
            due.retain(|destination| {
                if let Some(until) = backoff.get(destination) {
                    next = next.min(Duration::from_millis((until - now) as u64));
                    return true;
                }
                if sending.insert(destination.clone()) {
                    start.push(destination.clone());
                    return false;
                }
                // In flight: looked at again when that transaction ends.
                true
            });
        }
        for destination in start {
            let hs = self.clone();
            tokio::spawn(async move {
                hs.deliver_to(&destination).await;
                hs.outbox.state().sending.remove(&destination);
                hs.outbox.wake.notify_one();
            });
        }
        next
    }

    /// Sends `destination` its queue, a transaction at a time, until it is
    /// empty or a transaction fails.
    async fn deliver_to(&self, destination: &str) {
        let Ok(server) = ruma::ServerName::parse(destination) else {
            return;
        };
        loop {
            let batch = match self.storage.outbound_batch(destination).await {
                Ok(batch) if !batch.is_empty() => batch,
                _ => return,
            };
            let parse = |items: &[(i64, String)]| -> Vec<Value> {
                items
                    .iter()
                    .filter_map(|(_, text)| serde_json::from_str(text).ok())
                    .collect()
            };
            let body = json!({
                "origin": self.server_name,
                "origin_server_ts": axon::time::now_ms(),
                "pdus": parse(&batch.pdus),
                "edus": parse(&batch.edus),
            });
            // Named by what it holds, so a retry is the same transaction.
            let path = format!("/_matrix/federation/v1/send/{}", batch.last_id());
            let ids: Vec<i64> = batch
                .pdus
                .iter()
                .chain(&batch.edus)
                .map(|(id, _)| *id)
                .collect();
            match self
                .ask_server(&server, reqwest::Method::PUT, &path, Some(&body))
                .await
            {
                Ok(_) => {
                    if let Err(e) = self.storage.outbound_delivered(destination, ids).await {
                        tracing::warn!("federation queue of {destination}: {e}");
                        return;
                    }
                }
                Err(e) => {
                    let now = axon::time::now_ms();
                    let failures = self
                        .storage
                        .outbound_failed(destination, now, backoff_ms)
                        .await
                        .unwrap_or(1);
                    let delay = backoff_ms(failures);
                    tracing::info!(
                        "sending to {destination} failed ({failures} in a row; retried in {delay} ms): {e}"
                    );
                    let mut state = self.outbox.state();
                    state.backoff.insert(destination.to_string(), now + delay);
                    state.due.insert(destination.to_string());
                    return;
                }
            }
        }
    }

    /// Another server was heard from: if it was backed off, its queue is
    /// sent now.
    pub(crate) async fn heard_from(&self, origin: &ruma::ServerName) {
        let was_off = self
            .outbox
            .state()
            .backoff
            .remove(origin.as_str())
            .is_some();
        if was_off
            && self
                .storage
                .destination_alive(origin.as_str())
                .await
                .is_ok()
        {
            let mut state = self.outbox.state();
            state.due.insert(origin.to_string());
            drop(state);
            self.outbox.wake.notify_one();
        }
    }
}
