//! Port of [Mjolnir's in-process module] (`mjolnir.Module`): enforces the
//! ban lists kept as policy rules in list rooms' state, refusing invites,
//! messages and user-directory entries of banned users, rooms and servers,
//! and caps message length. See this crate's README.
//!
//! [Mjolnir's in-process module]: https://github.com/matrix-org/mjolnir/tree/main/synapse_antispam

mod glob;

use axon::prelude::*;
use glob::Glob;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The rooms whose policy rules are enforced, in the order they are consulted.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub ban_lists: Vec<OwnedRoomId>,
    #[serde(default = "yes")]
    pub block_invites: bool,
    #[serde(default)]
    pub block_messages: bool,
    #[serde(default)]
    pub block_usernames: bool,
    #[serde(default)]
    pub message_max_length: MessageMaxLength,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageMaxLength {
    /// The longest `content.body` allowed, in characters; unset or 0: no cap.
    #[serde(default)]
    pub threshold: Option<usize>,
    /// The rooms capped; empty: every room.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub rooms: Vec<OwnedRoomId>,
    /// Whether remote senders are capped too.
    #[serde(default)]
    pub remote_servers: bool,
}

fn yes() -> bool {
    true
}

/// What a policy rule is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Room,
    Server,
}

/// The state event types of policy rules: the spec's, the older unstable
/// `m.room.rule.*`, and Mjolnir's own.
const RULE_TYPES: [(&str, Kind); 9] = [
    ("m.policy.rule.user", Kind::User),
    ("m.room.rule.user", Kind::User),
    ("org.matrix.mjolnir.rule.user", Kind::User),
    ("m.policy.rule.room", Kind::Room),
    ("m.room.rule.room", Kind::Room),
    ("org.matrix.mjolnir.rule.room", Kind::Room),
    ("m.policy.rule.server", Kind::Server),
    ("m.room.rule.server", Kind::Server),
    ("org.matrix.mjolnir.rule.server", Kind::Server),
];

fn rule_kind(event_type: &str) -> Option<Kind> {
    RULE_TYPES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, kind)| *kind)
}

struct Rule {
    kind: Kind,
    entity: Glob,
    /// `m.ban` or `org.matrix.mjolnir.ban`; any other recommendation is a
    /// rule that matches but asks for nothing.
    ban: bool,
}

impl Rule {
    /// A rule from a policy event; `None` if its content lacks `entity`,
    /// `recommendation` or `reason` (as a redacted rule does).
    fn parse(event: &Event) -> Option<Rule> {
        let kind = rule_kind(&event.event_type)?;
        let field = |name: &str| event.content.get(name).and_then(|v| v.as_str());
        let (entity, recommendation, _reason) =
            (field("entity")?, field("recommendation")?, field("reason")?);
        Some(Rule {
            kind,
            entity: Glob::new(entity),
            ban: matches!(recommendation, "m.ban" | "org.matrix.mjolnir.ban"),
        })
    }
}

/// One list room's rules, oldest first.
#[derive(Default)]
struct BanList {
    rules: Vec<Rule>,
}

impl BanList {
    fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> BanList {
        let mut events: Vec<&Event> = events.into_iter().collect();
        // Stable: rules set in the same millisecond stay in state-key order.
        events.sort_by_key(|e| e.origin_server_ts);
        BanList {
            rules: events.into_iter().filter_map(Rule::parse).collect(),
        }
    }
}

pub struct Module {
    config: Config,
    api: ModuleApi,
    /// Each list room's rules, rebuilt whenever its policy state changes.
    lists: RwLock<HashMap<OwnedRoomId, Arc<BanList>>>,
    /// Serialises rebuilds so the last one stored read the latest state.
    rebuilding: tokio::sync::Mutex<()>,
}

impl Module {
    /// The first rule of `kind` matching `entity`, across the lists in
    /// config order, decides: banned if it recommends a ban. A non-ban rule
    /// therefore shadows later ban rules, as in Mjolnir.
    fn is_banned(&self, kind: Kind, entity: &str) -> bool {
        let lists = self.lists.read().unwrap_or_else(|e| e.into_inner());
        self.config
            .ban_lists
            .iter()
            .filter_map(|room| lists.get(room))
            .flat_map(|list| list.rules.iter())
            .find(|rule| rule.kind == kind && rule.entity.matches(entity))
            .is_some_and(|rule| rule.ban)
    }

    /// Rebuilds a list from the room's current policy state, with `pending`
    /// (an event about to be stored) in place of the state it replaces.
    async fn rebuild(&self, room: &RoomId, pending: Option<&Event>) {
        let _one_at_a_time = self.rebuilding.lock().await;
        let filter: Vec<(&str, Option<&str>)> =
            RULE_TYPES.iter().map(|(t, _)| (*t, None)).collect();
        let mut state = match self.api.get_room_state(room, Some(&filter)).await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!("ban list {room} cannot be read, so it is empty: {e}");
                StateMap::new()
            }
        };
        if let Some(event) = pending {
            if let Some(key) = &event.state_key {
                state.insert((event.event_type.clone(), key.clone()), event.clone());
            }
        }
        let list = BanList::from_events(state.values());
        tracing::info!("ban list {room}: {} rules", list.rules.len());
        self.lists
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room.to_owned(), Arc::new(list));
    }

    /// A policy rule set in one of the list rooms.
    fn is_list_update(&self, event: &Event) -> bool {
        event.state_key.is_some()
            && rule_kind(&event.event_type).is_some()
            && self.config.ban_lists.contains(&event.room_id)
    }

    fn too_long(&self, event: &Event) -> bool {
        let cap = &self.config.message_max_length;
        let Some(threshold) = cap.threshold.filter(|t| *t > 0) else {
            return false;
        };
        if !(cap.remote_servers || self.api.is_mine(&event.sender)) {
            return false;
        }
        if !cap.rooms.is_empty() && !cap.rooms.contains(&event.room_id) {
            return false;
        }
        event
            .content
            .get("body")
            .and_then(|b| b.as_str())
            .is_some_and(|body| body.chars().count() > threshold)
    }
}

fn verdict(spam: bool) -> SpamCheck {
    if spam {
        SpamCheck::deny(ErrCode::Forbidden)
    } else {
        SpamCheck::NotSpam
    }
}

/// Enforces Mjolnir ban lists kept in list rooms' state.
#[module]
impl Module {
    fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Module {
            config,
            api: api.clone(),
            lists: RwLock::new(HashMap::new()),
            rebuilding: tokio::sync::Mutex::new(()),
        })
    }

    /// The lists are read before the server listens (Mjolnir reads them in
    /// the background and races the first requests).
    async fn start(&self) -> Result<(), ModuleError> {
        for room in &self.config.ban_lists {
            self.rebuild(room, None).await;
        }
        Ok(())
    }

    #[callback(spam_checker)]
    async fn check_event_for_spam(&self, event: &Event) -> SpamCheck {
        if self.is_list_update(event) {
            self.rebuild(&event.room_id, Some(event)).await;
            return SpamCheck::NotSpam;
        }
        if self.config.block_messages
            && (self.is_banned(Kind::User, event.sender.as_str())
                || self.is_banned(Kind::Server, event.sender.server_name().as_str()))
        {
            return SpamCheck::deny(ErrCode::Forbidden);
        }
        verdict(self.too_long(event))
    }

    #[callback(spam_checker)]
    async fn user_may_invite(
        &self,
        inviter: &UserId,
        _invitee: &UserId,
        room: &RoomId,
    ) -> SpamCheck {
        verdict(
            self.config.block_invites
                && (self.is_banned(Kind::User, inviter.as_str())
                    || self.is_banned(Kind::Room, room.as_str())
                    || self.is_banned(Kind::Server, inviter.server_name().as_str())),
        )
    }

    #[callback(spam_checker)]
    async fn check_username_for_spam(&self, profile: &UserProfile, _requester: &UserId) -> bool {
        self.config.block_usernames
            && (self.is_banned(Kind::User, profile.user_id.as_str())
                || profile
                    .display_name
                    .as_deref()
                    .is_some_and(|name| self.is_banned(Kind::User, name)))
    }

    /// Policy state that skipped the spam check (set at room creation, or
    /// by a module) still reaches the lists, once stored.
    #[callback(third_party_rules)]
    async fn on_new_event(&self, event: &Event, _state: &StateMap) {
        if self.is_list_update(event) {
            self.rebuild(&event.room_id, None).await;
        }
    }
}
