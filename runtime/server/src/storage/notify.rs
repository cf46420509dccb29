//! Waking `/sync` long-polls: a commit wakes only the waiters it concerns —
//! those of the rooms it wrote to and the users it names — instead of every
//! waiter recomputing its sync on every commit. The writer wakes them after
//! the commit and after publishing the new stream position, so a waiter
//! that registers late sees the position moved and looks again.

use ruma::{OwnedRoomId, OwnedUserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

/// What a commit touched, and what a waiter waits on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WakeKey {
    /// An event in this room.
    Room(OwnedRoomId),
    /// Something of this user's: account data, presence, a membership of
    /// theirs in a room they were not in (an invite).
    User(OwnedUserId),
    /// Any user's presence, for waiters a presence router module may route
    /// anyone's presence to.
    AnyPresence,
}

/// Registrations in the map between sweeps of the dead ones.
const SWEEP_EVERY: usize = 4096;

#[derive(Default)]
pub(crate) struct Notifier {
    inner: Mutex<Listeners>,
}

#[derive(Default)]
struct Listeners {
    by_key: HashMap<WakeKey, Vec<Weak<Notify>>>,
    since_sweep: usize,
}

/// A registered waiter; dropping it unregisters it (lazily).
pub struct Listener {
    notify: Arc<Notify>,
}

impl Listener {
    /// Waits until a commit concerning one of the keys, or `timeout`.
    pub async fn wait(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }
}

impl Notifier {
    pub fn listen(&self, keys: &[WakeKey]) -> Listener {
        let notify = Arc::new(Notify::new());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            inner
                .by_key
                .entry(key.clone())
                .or_default()
                .push(Arc::downgrade(&notify));
        }
        inner.since_sweep += keys.len();
        if inner.since_sweep >= SWEEP_EVERY {
            inner.since_sweep = 0;
            inner.by_key.retain(|_, waiters| {
                waiters.retain(|w| w.strong_count() > 0);
                !waiters.is_empty()
            });
        }
        Listener { notify }
    }

    /// After a commit: wakes the waiters of these keys.
    pub fn wake<'k>(&self, keys: impl IntoIterator<Item = &'k WakeKey>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if let Some(waiters) = inner.by_key.remove(key) {
                for waiter in waiters.iter().filter_map(Weak::upgrade) {
                    waiter.notify_one();
                }
            }
        }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        let inner = self.inner.lock().unwrap();
        inner.by_key.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_concerned_are_woken_and_the_dead_are_swept() {
        let notifier = Notifier::default();
        let room: OwnedRoomId = "!a:x".try_into().unwrap();
        let other: OwnedRoomId = "!b:x".try_into().unwrap();
        let here = notifier.listen(&[WakeKey::Room(room.clone())]);
        let there = notifier.listen(&[WakeKey::Room(other.clone())]);
        notifier.wake(&[WakeKey::Room(room)]);
        let quick = std::time::Duration::from_millis(20);
        let woke = tokio::time::timeout(quick, here.notify.notified()).await;
        assert!(woke.is_ok(), "the room's waiter wakes");
        let slept = tokio::time::timeout(quick, there.notify.notified()).await;
        assert!(slept.is_err(), "another room's waiter sleeps on");
        drop(there);
        for i in 0..SWEEP_EVERY {
            let key: OwnedRoomId = format!("!r{i}:x").try_into().unwrap();
            drop(notifier.listen(&[WakeKey::Room(key)]));
        }
        assert!(notifier.registered() < 10, "{}", notifier.registered());
    }
}
