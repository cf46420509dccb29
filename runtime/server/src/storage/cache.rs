//! In-memory caches of what every request reads: access tokens, room
//! snapshots, and other servers' keys. Both are filled by readers and changed only after a commit,
//! in commit order, by the writer thread. A reader inserts what it read only
//! if no commit touched that entry since it started reading (a generation
//! check under the same lock), so a stale read never outlives a commit.

use super::events::{RoomSnapshot, SnapshotUpdate};
use super::users::TokenOwner;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Rooms kept at most; past that an arbitrary one is dropped.
const MAX_ROOMS: usize = 4096;
const MAX_TOKENS: usize = 65_536;

#[derive(Default)]
pub(crate) struct Caches {
    tokens: Mutex<TokenCache>,
    rooms: Mutex<RoomCache>,
    /// Other servers' signing keys, which every request and PDU from them
    /// is checked with.
    remote_keys: Mutex<RemoteKeyCache>,
    /// The `/sync` waiters, woken after the commits that concern them.
    pub wakes: super::notify::Notifier,
    /// Rung after the commits that queue something for other servers.
    pub outbox: super::federation::OutboxDoorbell,
    /// Users' presence states as last committed (filled by the writer only,
    /// so never stale): every sync says "online", and most change nothing.
    presence: Mutex<HashMap<ruma::OwnedUserId, String>>,
    /// Under lazy-loading, the member events each device was already sent
    /// (Synapse's `lazy_loaded_members_cache`), so an incremental sync adds
    /// a sender's membership only the first time.
    lazy_members: Mutex<HashMap<(String, String), std::collections::HashSet<ruma::OwnedEventId>>>,
}

/// Devices whose lazily sent members are remembered, and members per device.
const MAX_LAZY_DEVICES: usize = 65_536;
const MAX_LAZY_MEMBERS: usize = 100_000;

/// Presence states kept at most; past that the map starts again.
const MAX_PRESENCE: usize = 65_536;

#[derive(Default)]
struct TokenCache {
    owners: HashMap<String, TokenOwner>,
    generation: u64,
}

#[derive(Default)]
struct RemoteKeyCache {
    keys: HashMap<String, Arc<Vec<super::RemoteKey>>>,
    generation: u64,
}

/// Servers whose keys are kept at most; past that the map starts again.
const MAX_KEY_SERVERS: usize = 65_536;

#[derive(Default)]
struct RoomCache {
    snapshots: HashMap<String, Arc<RoomSnapshot>>,
    generations: HashMap<String, u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Caches {
    pub fn token(&self, token: &str) -> Option<TokenOwner> {
        lock(&self.tokens).owners.get(token).cloned()
    }

    pub fn token_generation(&self) -> u64 {
        lock(&self.tokens).generation
    }

    pub fn insert_token(&self, token: String, owner: TokenOwner, read_at: u64) {
        let mut cache = lock(&self.tokens);
        if cache.generation == read_at {
            if cache.owners.len() >= MAX_TOKENS {
                cache.owners.clear();
            }
            cache.owners.insert(token, owner);
        }
    }

    /// After a commit that replaced one device's token.
    pub fn forget_device(&self, user: &ruma::UserId, device: &ruma::DeviceId) {
        let mut cache = lock(&self.tokens);
        cache
            .owners
            .retain(|_, owner| !(owner.user_id == user && owner.device_id == device));
        cache.generation += 1;
    }

    /// After a commit that removed tokens or changed users.
    pub fn forget_tokens(&self) {
        let mut cache = lock(&self.tokens);
        cache.owners.clear();
        cache.generation += 1;
    }

    pub fn presence_state(&self, user: &ruma::UserId) -> Option<String> {
        lock(&self.presence).get(user).cloned()
    }

    /// After a commit that set a user's presence.
    pub fn set_presence_state(&self, user: ruma::OwnedUserId, state: String) {
        let mut cache = lock(&self.presence);
        if cache.len() >= MAX_PRESENCE {
            cache.clear();
        }
        cache.insert(user, state);
    }

    /// Which of these member events the device has not been sent yet.
    pub fn lazy_unsent(
        &self,
        device: &(String, String),
        events: Vec<ruma::OwnedEventId>,
    ) -> Vec<ruma::OwnedEventId> {
        let cache = lock(&self.lazy_members);
        let sent = cache.get(device);
        events
            .into_iter()
            .filter(|e| !sent.is_some_and(|s| s.contains(e)))
            .collect()
    }

    /// The device was sent these member events; `fresh` starts it over (an
    /// initial sync).
    pub fn lazy_sent(
        &self,
        device: (String, String),
        fresh: bool,
        events: impl IntoIterator<Item = ruma::OwnedEventId>,
    ) {
        let mut cache = lock(&self.lazy_members);
        if cache.len() >= MAX_LAZY_DEVICES && !cache.contains_key(&device) {
            cache.clear();
        }
        let sent = cache.entry(device).or_default();
        if fresh || sent.len() >= MAX_LAZY_MEMBERS {
            sent.clear();
        }
        sent.extend(events);
    }

    pub fn remote_keys(&self, server: &str) -> (Option<Arc<Vec<super::RemoteKey>>>, u64) {
        let cache = lock(&self.remote_keys);
        (cache.keys.get(server).cloned(), cache.generation)
    }

    /// Keeps what a reader read, unless keys were stored since it began.
    pub fn insert_remote_keys(
        &self,
        server: String,
        keys: Arc<Vec<super::RemoteKey>>,
        read_at: u64,
    ) {
        let mut cache = lock(&self.remote_keys);
        if cache.generation != read_at {
            return;
        }
        if cache.keys.len() >= MAX_KEY_SERVERS {
            cache.keys.clear();
        }
        cache.keys.insert(server, keys);
    }

    /// After a commit that stored keys of `server`.
    pub fn forget_remote_keys(&self, server: &str) {
        let mut cache = lock(&self.remote_keys);
        cache.generation += 1;
        cache.keys.remove(server);
    }

    pub fn room(&self, room_id: &str) -> Option<Arc<RoomSnapshot>> {
        lock(&self.rooms).snapshots.get(room_id).cloned()
    }

    pub fn room_generation(&self, room_id: &str) -> u64 {
        lock(&self.rooms)
            .generations
            .get(room_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn insert_room(&self, snapshot: Arc<RoomSnapshot>, read_at: u64) {
        let mut cache = lock(&self.rooms);
        if cache
            .generations
            .get(snapshot.room_id.as_str())
            .copied()
            .unwrap_or(0)
            != read_at
        {
            return;
        }
        if cache.snapshots.len() >= MAX_ROOMS {
            if let Some(victim) = cache.snapshots.keys().next().cloned() {
                cache.snapshots.remove(&victim);
            }
        }
        cache
            .snapshots
            .insert(snapshot.room_id.to_string(), snapshot);
    }

    /// After a commit: events were stored, in this order.
    pub fn apply_events(&self, events: &[SnapshotUpdate]) {
        let mut cache = lock(&self.rooms);
        for event in events {
            *cache
                .generations
                .entry(event.room_id.to_string())
                .or_default() += 1;
            if let Some(snapshot) = cache.snapshots.get_mut(event.room_id.as_str()) {
                Arc::make_mut(snapshot).apply(event);
            }
        }
    }

    /// After a commit that changed a room's state other than by events
    /// applied in order (the state another server handed over on a join).
    pub fn forget_room(&self, room_id: &str) {
        let mut cache = lock(&self.rooms);
        *cache.generations.entry(room_id.to_string()).or_default() += 1;
        cache.snapshots.remove(room_id);
    }

    /// After a commit that changed a room's directory visibility.
    pub fn set_room_public(&self, room_id: &str, public: bool) {
        let mut cache = lock(&self.rooms);
        *cache.generations.entry(room_id.to_string()).or_default() += 1;
        if let Some(snapshot) = cache.snapshots.get_mut(room_id) {
            Arc::make_mut(snapshot).is_public = public;
        }
    }
}
