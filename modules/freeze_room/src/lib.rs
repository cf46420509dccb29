//! Port of [synapse-freeze-room]: when the last admin leaves a room, it is
//! frozen (`org.matrix.room.frozen`); a frozen room accepts only leaves and
//! an unfreeze. Re-entrant: the module sends events from inside
//! `check_event_allowed`, which pass back through it. See this crate's README.
//!
//! [synapse-freeze-room]: https://github.com/matrix-org/synapse-freeze-room

use axon::module::NewEventContent;
use axon::prelude::*;
use serde_json::{json, Value};

const FROZEN: &str = "org.matrix.room.frozen";

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Servers whose users may not unfreeze a room.
    #[serde(default)]
    pub unfreeze_blacklist: Vec<String>,
    /// When the last admin leaves, promote the highest-ranked remaining
    /// users to their level instead of freezing.
    #[serde(default)]
    pub promote_moderators: bool,
}

pub struct FreezeRoom {
    config: Config,
    api: ModuleApi,
}

fn state_content<'a>(state: &'a StateMap, event_type: &str, key: &str) -> Option<&'a JsonObject> {
    state
        .get(&(event_type.to_string(), key.to_string()))
        .map(|e| &e.content)
}

fn is_frozen(state: &StateMap) -> bool {
    state_content(state, FROZEN, "").and_then(|c| c.get("frozen")) == Some(&Value::Bool(true))
}

fn level(value: Option<&Value>) -> Option<i64> {
    value.and_then(Value::as_i64)
}

fn membership<'a>(state: &'a StateMap, user: &str) -> Option<&'a str> {
    state_content(state, "m.room.member", user)?
        .get("membership")?
        .as_str()
}

impl FreezeRoom {
    async fn send(
        &self,
        event: &Event,
        event_type: &str,
        content: JsonObject,
    ) -> Result<(), ModuleError> {
        self.api
            .create_and_send_event_into_room(NewEventContent {
                room_id: event.room_id.clone(),
                sender: event.sender.clone(),
                event_type: event_type.into(),
                state_key: Some(String::new()),
                content,
            })
            .await
            .map(|_| ())
    }

    /// Step 1: a freeze or an unfreeze.
    async fn on_frozen_event(
        &self,
        event: &Event,
        state: &StateMap,
    ) -> Result<EventAllowed, ModuleError> {
        let Some(frozen) = event.content.get("frozen").and_then(Value::as_bool) else {
            return Ok(EventAllowed::Deny);
        };
        let sender_domain = event.sender.server_name().as_str();
        if !frozen
            && self
                .config
                .unfreeze_blacklist
                .iter()
                .any(|d| d == sender_domain)
        {
            return Ok(EventAllowed::Deny);
        }
        if frozen == is_frozen(state) || !self.api.is_mine(&event.sender) {
            return Ok(EventAllowed::Allow);
        }
        let mut levels = state_content(state, "m.room.power_levels", "")
            .cloned()
            .unwrap_or_default();
        if frozen {
            let join_rule = state_content(state, "m.room.join_rules", "")
                .and_then(|c| c.get("join_rule"))
                .and_then(Value::as_str);
            if matches!(join_rule, None | Some("public")) {
                let mut rules = JsonObject::new();
                rules.insert("join_rule".into(), "invite".into());
                self.send(event, "m.room.join_rules", rules).await?;
            }
            levels.insert("users_default".into(), json!(100));
            let admins: JsonObject = levels
                .get("users")
                .and_then(Value::as_object)
                .map(|users| {
                    users
                        .iter()
                        .filter(|(_, l)| l.as_i64() == Some(100))
                        .map(|(u, l)| (u.clone(), l.clone()))
                        .collect()
                })
                .unwrap_or_default();
            levels.insert("users".into(), Value::Object(admins));
        } else {
            let users = levels.entry("users").or_insert_with(|| json!({}));
            if let Some(users) = users.as_object_mut() {
                users.insert(event.sender.to_string(), json!(100));
            }
            levels.insert("users_default".into(), json!(0));
        }
        self.send(event, "m.room.power_levels", levels).await?;
        // Rebuilt by the server on the state just changed.
        Ok(EventAllowed::Replace(Box::new(event.clone())))
    }

    /// Step 2: in a frozen room, only self-leaves and the unfreezing power levels.
    fn allowed_while_frozen(&self, event: &Event, state: &StateMap) -> bool {
        if event.event_type == "m.room.member" {
            return event.content.get("membership").and_then(Value::as_str) == Some("leave")
                && event.state_key.as_deref() == Some(event.sender.as_str());
        }
        if event.event_type == "m.room.power_levels" {
            let strip = |c: &JsonObject| {
                let mut c = c.clone();
                c.remove("users");
                c.remove("users_default");
                c
            };
            let current = state_content(state, "m.room.power_levels", "")
                .cloned()
                .unwrap_or_default();
            let sender_level = event
                .content
                .get("users")
                .and_then(|u| u.get(event.sender.as_str()))
                .and_then(Value::as_i64);
            return strip(&current) == strip(&event.content)
                && level(event.content.get("users_default")) == Some(0)
                && sender_level == Some(100);
        }
        false
    }

    /// Step 3: the last admin leaving.
    async fn on_leave(&self, event: &Event, state: &StateMap) -> Result<(), ModuleError> {
        let Some(levels) = state_content(state, "m.room.power_levels", "") else {
            return Ok(());
        };
        let Some(users) = levels.get("users").and_then(Value::as_object) else {
            return Ok(());
        };
        let leaver = event.sender.as_str();
        let Some(leaver_level) = level(users.get(leaver)).filter(|l| *l >= 100) else {
            return Ok(());
        };
        let present = |user: &str| matches!(membership(state, user), Some("join" | "invite"));
        if users
            .iter()
            .any(|(u, l)| u != leaver && l.as_i64().is_some_and(|l| l >= 100) && present(u))
        {
            return Ok(());
        }
        if self.config.promote_moderators {
            let default = level(levels.get("users_default")).unwrap_or(0);
            let candidates: Vec<(&String, i64)> = users
                .iter()
                .filter(|(u, _)| u.as_str() != leaver && present(u))
                .filter_map(|(u, l)| l.as_i64().filter(|l| *l != default).map(|l| (u, l)))
                .collect();
            if let Some(highest) = candidates.iter().map(|(_, l)| *l).max() {
                let mut promoted = levels.clone();
                if let Some(promoted_users) =
                    promoted.get_mut("users").and_then(Value::as_object_mut)
                {
                    for (user, l) in &candidates {
                        if *l == highest {
                            promoted_users.insert((*user).clone(), json!(leaver_level));
                        }
                    }
                }
                return self.send(event, "m.room.power_levels", promoted).await;
            }
        }
        let mut content = JsonObject::new();
        content.insert("frozen".into(), true.into());
        self.send(event, FROZEN, content).await
    }
}

/// Freezes a room when its last admin leaves.
#[module]
impl FreezeRoom {
    fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(FreezeRoom {
            config,
            api: api.clone(),
        })
    }

    #[callback(third_party_rules)]
    async fn check_event_allowed(
        &self,
        event: &Event,
        state: &StateMap,
    ) -> Result<EventAllowed, ModuleError> {
        if event.event_type == FROZEN && event.state_key.as_deref() == Some("") {
            return self.on_frozen_event(event, state).await;
        }
        if is_frozen(state) {
            return Ok(if self.allowed_while_frozen(event, state) {
                EventAllowed::Allow
            } else {
                EventAllowed::Deny
            });
        }
        let is_leave = event.event_type == "m.room.member"
            && event.content.get("membership").and_then(Value::as_str) == Some("leave");
        if is_leave {
            self.on_leave(event, state).await?;
        }
        Ok(EventAllowed::Allow)
    }
}
