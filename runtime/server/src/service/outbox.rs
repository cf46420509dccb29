//! The outbound federation queue: what this server sends each other
//! server, kept in storage (queued in the commit that stores each event,
//! so a restart loses nothing) and delivered one transaction in flight per
//! destination, at most 50 PDUs and 100 EDUs each, in order. A destination
//! that fails is tried again after 1 s, doubling to an hour; it is tried at
//! once when it is next heard from.

use crate::homeserver::Homeserver;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const MAX_BACKOFF_MS: i64 = 3600 * 1000;
/// The queue is also looked at this often, whatever woke it.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// The sender's handle: wake it, stop it, know who is backed off.
pub struct Outbox {
    wake: Arc<tokio::sync::Notify>,
    stop: tokio::sync::watch::Sender<bool>,
    /// Destinations in backoff: hearing from one of these ends it.
    backing_off: Mutex<HashSet<String>>,
    /// Destinations with a transaction in flight.
    sending: Mutex<HashSet<String>>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            wake: Default::default(),
            stop: tokio::sync::watch::channel(false).0,
            backing_off: Default::default(),
            sending: Default::default(),
        }
    }
}

fn backoff_ms(failures: u32) -> i64 {
    (1000i64 << failures.saturating_sub(1).min(12)).min(MAX_BACKOFF_MS)
}

impl Outbox {
    /// Something was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
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
            // Destinations backed off before a restart end their backoff
            // when heard from, as those of this run do.
            if let Some(hs) = server.upgrade() {
                if let Ok(queued) = hs.storage.queued_destinations().await {
                    if let Ok(mut off) = hs.outbox.backing_off.lock() {
                        off.extend(queued.into_iter().filter(|(_, at)| *at > 0).map(|(d, _)| d));
                    }
                }
            }
            loop {
                if *stop.borrow() {
                    return;
                }
                let next = match server.upgrade() {
                    Some(hs) => hs.dispatch_queue().await,
                    None => return,
                };
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(next) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
}

impl Homeserver {
    /// Starts a sender for each destination whose queue is due; how long
    /// until the next backed-off one is.
    async fn dispatch_queue(self: Arc<Self>) -> Duration {
        let queued = match self.storage.queued_destinations().await {
            Ok(queued) => queued,
            Err(e) => {
                tracing::warn!("the federation queue cannot be read: {e}");
                return Duration::from_secs(5);
            }
        };
        let now = axon::time::now_ms();
        let mut next = IDLE_RECHECK;
        for (destination, retry_after) in queued {
            if retry_after > now {
                next = next.min(Duration::from_millis((retry_after - now) as u64));
                continue;
            }
            let fresh = self
                .outbox
                .sending
                .lock()
                .map(|mut s| s.insert(destination.clone()))
                .unwrap_or(false);
            if fresh {
                let hs = self.clone();
                tokio::spawn(async move {
                    hs.deliver_to(&destination).await;
                    if let Ok(mut sending) = hs.outbox.sending.lock() {
                        sending.remove(&destination);
                    }
                    hs.outbox.wake();
                });
            }
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
            let txn = format!("{}", batch.last_id());
            let path = format!("/_matrix/federation/v1/send/{txn}");
            let ids: Vec<i64> = batch
                .pdus
                .iter()
                .chain(&batch.edus)
                .map(|(id, _)| *id)
                .collect();
            match self
                .federation
                .send(
                    &self.server_keys,
                    &server,
                    reqwest::Method::PUT,
                    &path,
                    Some(&body),
                )
                .await
            {
                Ok(_) => {
                    if let Ok(mut off) = self.outbox.backing_off.lock() {
                        off.remove(destination);
                    }
                    if let Err(e) = self.storage.outbound_delivered(destination, ids).await {
                        tracing::warn!("federation queue of {destination}: {e}");
                        return;
                    }
                }
                Err(e) => {
                    let failures = self
                        .storage
                        .outbound_failed(destination, axon::time::now_ms(), backoff_ms)
                        .await
                        .unwrap_or(1);
                    tracing::info!(
                        "sending to {destination} failed ({failures} in a row; retried in {} ms): {e}",
                        backoff_ms(failures)
                    );
                    if let Ok(mut off) = self.outbox.backing_off.lock() {
                        off.insert(destination.to_string());
                    }
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
            .backing_off
            .lock()
            .map(|mut off| off.remove(origin.as_str()))
            .unwrap_or(false);
        if was_off
            && self
                .storage
                .destination_alive(origin.as_str())
                .await
                .is_ok()
        {
            self.outbox.wake();
        }
    }
}
