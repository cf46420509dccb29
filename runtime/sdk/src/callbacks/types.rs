//! The data callbacks receive and return, besides the verdicts.

use ruma::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A JSON object, as request bodies and event contents are.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A room event as modules see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    pub content: JsonObject,
    pub origin_server_ts: u64,
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub unsigned: JsonObject,
}

impl Event {
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }
}

/// A room's state: `(event type, state key)` → the event.
///
/// A persistent map of shared events: a clone costs O(1) and a change
/// copies O(log n) of it, so the server keeps one room state that its
/// caches, its event building and every callback share, however many
/// members the room has, instead of copying it per event.
#[derive(Clone, Default, PartialEq)]
pub struct StateMap(imbl::OrdMap<(String, String), Arc<Event>>);

impl StateMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &(String, String)) -> Option<&Event> {
        self.0.get(key).map(|e| &**e)
    }

    /// The state event of this type and key.
    pub fn get_state(&self, event_type: &str, state_key: &str) -> Option<&Event> {
        self.get(&(event_type.to_string(), state_key.to_string()))
    }

    pub fn contains_key(&self, key: &(String, String)) -> bool {
        self.0.contains_key(key)
    }

    /// Sets a key's event (an `Event` or one already shared), returning the
    /// one it replaces.
    pub fn insert(
        &mut self,
        key: (String, String),
        event: impl Into<Arc<Event>>,
    ) -> Option<Arc<Event>> {
        self.0.insert(key, event.into())
    }

    pub fn remove(&mut self, key: &(String, String)) -> Option<Arc<Event>> {
        self.0.remove(key)
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&(String, String), &Event) -> bool) {
        self.0 = self
            .0
            .iter()
            .filter(|(k, e)| keep(k, e))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&(String, String), &Event)> + '_ {
        self.0.iter().map(|(k, e)| (k, &**e))
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Event> + '_ {
        self.0.values().map(|e| &**e)
    }

    /// The events of one type (every `m.room.member`, say), in key order.
    pub fn of_type<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        let from = (event_type.to_string(), String::new());
        self.0
            .range(from..)
            .take_while(move |((t, _), _)| t == event_type)
            .map(|(_, e)| &**e)
    }
}

impl std::fmt::Debug for StateMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<((String, String), Event)> for StateMap {
    fn from_iter<I: IntoIterator<Item = ((String, String), Event)>>(iter: I) -> Self {
        StateMap(iter.into_iter().map(|(k, e)| (k, Arc::new(e))).collect())
    }
}

impl<'a> IntoIterator for &'a StateMap {
    type Item = (&'a (String, String), &'a Event);
    type IntoIter = Box<dyn Iterator<Item = Self::Item> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    pub user_id: OwnedUserId,
    pub device_id: Option<OwnedDeviceId>,
    pub is_guest: bool,
    pub shadow_banned: bool,
}

/// A user directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// A user's global profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInfo {
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// The client of a request: its user agent and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub user_agent: Option<String>,
    pub ip: String,
}

/// An uploaded media file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub media_id: String,
    pub uploader: OwnedUserId,
    pub upload_name: Option<String>,
    pub content_type: Option<String>,
    pub size: u64,
}

/// A room's visibility in the room directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

/// One user's presence.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PresenceState {
    pub user_id: OwnedUserId,
    pub presence: Presence,
    pub status_msg: Option<String>,
    pub last_active_ts: u64,
    pub currently_active: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Online,
    Unavailable,
    Offline,
}

/// Presence router output: each user → the presence states they should also receive.
pub type UsersForStates = BTreeMap<OwnedUserId, BTreeSet<PresenceState>>;

/// Whose presence a user receives besides the usual.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterestedUsers {
    /// Every user's (Synapse's `PRESENCE_ALL_USERS`).
    All,
    Users(BTreeSet<OwnedUserId>),
}

impl Default for InterestedUsers {
    fn default() -> Self {
        InterestedUsers::Users(BTreeSet::new())
    }
}

/// A successful login by a password auth provider.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthResult {
    /// The user who logged in; must exist.
    pub user_id: OwnedUserId,
}

impl AuthResult {
    pub fn new(user_id: OwnedUserId) -> Self {
        AuthResult { user_id }
    }
}

/// A rate limit replacing the configured one; `per_second == 0.0` disables limiting.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatelimitOverride {
    pub per_second: f64,
    pub burst_count: u32,
}

/// At most `max_bytes` uploaded in `time_period_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaUploadLimit {
    pub time_period_ms: u64,
    pub max_bytes: u64,
}

/// A user's membership of a room: the `membership` of their `m.room.member` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    Join,
    Invite,
    Leave,
    Ban,
    Knock,
}

impl Membership {
    pub const ALL: [Membership; 5] = [
        Membership::Join,
        Membership::Invite,
        Membership::Leave,
        Membership::Ban,
        Membership::Knock,
    ];

    /// As events write it: `join`, `invite`, `leave`, `ban`, `knock`.
    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Join => "join",
            Membership::Invite => "invite",
            Membership::Leave => "leave",
            Membership::Ban => "ban",
            Membership::Knock => "knock",
        }
    }

    /// The membership an event's `membership` names, if it is one.
    pub fn parse(text: &str) -> Option<Membership> {
        Membership::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl std::fmt::Display for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
