//! Push rules: each user's ruleset, kept as the global account data
//! `m.push_rules` (`{"global": ruleset}`) so that `/sync` carries it and
//! every change wakes the user's long-polls, as Synapse does. A user who
//! never changed a rule has the spec's server-default ruleset.

use super::MatrixError;
use crate::homeserver::Homeserver;
use crate::storage::{NewEvent, Notify, RoomSnapshot};
use axon::ErrCode;
use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{
    Action, InsertPushRuleError, NewConditionalPushRule, NewPatternedPushRule, NewPushRule,
    NewSimplePushRule, PushCondition, RemovePushRuleError, RuleKind, Ruleset,
};
use ruma::push::{FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx};
use ruma::room_version_rules::RoomPowerLevelsRules;
use ruma::serde::Raw;
use ruma::{Int, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The account data type that holds a user's ruleset.
pub const PUSH_RULES_TYPE: &str = "m.push_rules";

/// The kinds of rule, in the order of their priority, as the API names them.
pub const RULE_KINDS: [&str; 5] = ["override", "content", "room", "sender", "underride"];

/// A rule's kind from its path segment: 400 `M_UNRECOGNIZED` otherwise,
/// as Synapse answers.
pub fn rule_kind(kind: &str) -> Result<RuleKind, MatrixError> {
    Ok(match kind {
        "override" => RuleKind::Override,
        "content" => RuleKind::Content,
        "room" => RuleKind::Room,
        "sender" => RuleKind::Sender,
        "underride" => RuleKind::Underride,
        _ => return Err(unrecognized(format!("Unknown push rule kind {kind:?}"))),
    })
}

/// Only the `global` scope exists (the spec's `device` scope was dropped).
pub fn check_scope(scope: &str) -> Result<(), MatrixError> {
    if scope == "global" {
        Ok(())
    } else {
        Err(unrecognized(format!("Unknown push rule scope {scope:?}")))
    }
}

fn unrecognized(message: String) -> MatrixError {
    MatrixError::new(400, ErrCode::Unrecognized, message)
}

fn unknown_rule() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "Unknown rule")
}

fn invalid_rule(message: impl Into<String>) -> MatrixError {
    MatrixError::new(400, ErrCode::Unknown, message)
}

/// The body of `PUT /pushrules/global/{kind}/{ruleId}`.
#[derive(serde::Deserialize)]
pub struct NewRuleBody {
    actions: Option<Value>,
    conditions: Option<Value>,
    pattern: Option<String>,
}

/// Parses a rule's `actions`, as `PUT …/actions` and a new rule give them.
pub fn parse_actions(actions: Option<Value>) -> Result<Vec<Action>, MatrixError> {
    let actions = actions.ok_or_else(|| invalid_rule("Missing 'actions'"))?;
    let actions: Vec<Action> = serde_json::from_value(actions)
        .map_err(|e| invalid_rule(format!("Invalid actions: {e}")))?;
    Ok(actions)
}

impl NewRuleBody {
    fn into_rule(self, kind: &RuleKind, rule_id: &str) -> Result<NewPushRule, MatrixError> {
        let actions = parse_actions(self.actions)?;
        let conditions = || -> Result<Vec<PushCondition>, MatrixError> {
            let conditions = self
                .conditions
                .clone()
                .ok_or_else(|| invalid_rule("Missing 'conditions'"))?;
            serde_json::from_value(conditions)
                .map_err(|e| invalid_rule(format!("Invalid conditions: {e}")))
        };
        let id = rule_id.to_string();
        Ok(match kind {
            RuleKind::Override => {
                NewPushRule::Override(NewConditionalPushRule::new(id, conditions()?, actions))
            }
            RuleKind::Underride => {
                NewPushRule::Underride(NewConditionalPushRule::new(id, conditions()?, actions))
            }
            RuleKind::Content => {
                let pattern = self
                    .pattern
                    .clone()
                    .ok_or_else(|| invalid_rule("Missing 'pattern'"))?;
                NewPushRule::Content(NewPatternedPushRule::new(id, pattern, actions))
            }
            RuleKind::Room => {
                let room = OwnedRoomId::try_from(rule_id)
                    .map_err(|_| invalid_rule("A room rule's ID is a room ID"))?;
                NewPushRule::Room(NewSimplePushRule::new(room, actions))
            }
            RuleKind::Sender => {
                let user = OwnedUserId::try_from(rule_id)
                    .map_err(|_| invalid_rule("A sender rule's ID is a user ID"))?;
                NewPushRule::Sender(NewSimplePushRule::new(user, actions))
            }
            _ => return Err(unrecognized("Unknown push rule kind".into())),
        })
    }
}

/// Where a new rule goes among the user's rules of its kind.
#[derive(Default)]
pub struct Placement {
    pub before: Option<String>,
    pub after: Option<String>,
}

/// One change to a ruleset.
pub enum RuleChange {
    Put(NewRuleBody, Placement),
    Delete,
    Enabled(bool),
    Actions(Vec<Action>),
}

/// The stored ruleset, or the server default for a user who has none.
fn ruleset_from(user: &UserId, stored: Option<Value>) -> Ruleset {
    stored
        .and_then(|mut content| serde_json::from_value(content["global"].take()).ok())
        .unwrap_or_else(|| Ruleset::server_default(user))
}

/// Each user's ruleset once read, so evaluating an event for every member
/// of a room reads no rules from the database; a change replaces the entry.
#[derive(Default)]
pub struct RulesetCache(std::sync::Mutex<std::collections::HashMap<OwnedUserId, UserRules>>);

/// A user's ruleset, and whether it is still the server default.
#[derive(Clone)]
struct UserRules {
    rules: Arc<Ruleset>,
    default: bool,
}

impl RulesetCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<OwnedUserId, UserRules>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Homeserver {
    /// The user's ruleset.
    pub async fn push_rules(&self, user: &UserId) -> Result<Arc<Ruleset>, MatrixError> {
        Ok(self.user_rules(user).await?.rules)
    }

    async fn user_rules(&self, user: &UserId) -> Result<UserRules, MatrixError> {
        if let Some(rules) = self.push_rules_cache.lock().get(user) {
            return Ok(rules.clone());
        }
        let stored = self
            .storage
            .get_account_data(user, None, PUSH_RULES_TYPE)
            .await?;
        let rules = UserRules {
            default: stored.is_none(),
            rules: Arc::new(ruleset_from(user, stored)),
        };
        self.push_rules_cache
            .lock()
            .insert(user.to_owned(), rules.clone());
        Ok(rules)
    }

    /// Whom a new event notifies among the room's joined local members
    /// (not its sender), by each one's push rules, in the room as it was
    /// before the event: ruma's evaluation, with display name, member count
    /// and power levels.
    pub async fn notifications_for(
        &self,
        room: &RoomSnapshot,
        event: &NewEvent,
    ) -> Result<Vec<Notify>, MatrixError> {
        let members: Vec<(OwnedUserId, String)> = room
            .state
            .of_type("m.room.member")
            .filter(|m| m.content.get("membership").and_then(Value::as_str) == Some("join"))
            .filter_map(|m| {
                let user = OwnedUserId::try_from(m.state_key.as_deref()?).ok()?;
                let name = m
                    .content
                    .get("displayname")
                    .and_then(Value::as_str)
                    .map_or_else(|| user.localpart().to_string(), str::to_string);
                Some((user, name))
            })
            .filter(|(user, _)| user.server_name() == self.server_name && *user != event.sender)
            .collect();
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let pdu = Raw::<Value>::from_json(
            serde_json::value::RawValue::from_string(event.pdu.clone())
                .map_err(|e| MatrixError::internal(e.to_string()))?,
        );
        let flat = FlattenedJson::from_raw(&pdu);
        let power_levels = power_levels_ctx(room);
        let member_count = UInt::try_from(room.joined as u64).unwrap_or_default();
        // The server-default rules name the user only in `invite_for_me`
        // (the state key) and `is_user_mention` (`m.mentions.user_ids`), so
        // every member with default rules whom the event does not name gets
        // the same actions: evaluated once, not once per member.
        let named = users_named(&flat);
        let mut unnamed_default: Option<Vec<Action>> = None;
        let mut notifies = Vec::new();
        for (user, display_name) in members {
            let rules = self.user_rules(&user).await?;
            let shared = rules.default && !named.contains(user.as_str());
            let actions = match (&unnamed_default, shared) {
                (Some(actions), true) => actions.clone(),
                _ => {
                    let mut context = PushConditionRoomCtx::new(
                        room.room_id.clone(),
                        member_count,
                        user.clone(),
                        display_name,
                    );
                    context.power_levels = Some(power_levels.clone());
                    let actions = first_match(&rules.rules, &flat, &context).await;
                    if shared {
                        unnamed_default = Some(actions.clone());
                    }
                    actions
                }
            };
            if actions.iter().any(Action::should_notify) {
                notifies.push(Notify {
                    user_id: user,
                    highlight: actions.iter().any(|a| a.is_highlight()),
                    actions: serde_json::to_string(&actions).unwrap_or_else(|_| "[]".into()),
                });
            }
        }
        Ok(notifies)
    }

    /// The account data content `/sync` shows for the user's push rules.
    pub async fn push_rules_content(&self, user: &UserId) -> Result<Value, MatrixError> {
        Ok(json!({ "global": ruleset_json(&*self.push_rules(user).await?) }))
    }

    /// Changes one of the user's rules: read, changed and written in one
    /// write, so two changes at once both land.
    pub async fn change_push_rule(
        &self,
        user: &UserId,
        kind: RuleKind,
        rule_id: &str,
        change: RuleChange,
    ) -> Result<(), MatrixError> {
        let rule_id = rule_id.to_string();
        self.update_push_rules(user, move |rules| {
            apply(rules, kind, &rule_id, change).map(|()| true)
        })
        .await
    }

    /// A room upgrade: the user's rules for the old room (a room rule, or
    /// an override or underride matching its `room_id`) are copied for the
    /// new one, as Synapse's `copy_push_rules_from_room_to_room` does.
    pub async fn copy_room_push_rules(
        &self,
        user: &UserId,
        from: &RoomId,
        to: &RoomId,
    ) -> Result<(), MatrixError> {
        let (from, to) = (from.to_string(), to.to_string());
        self.update_push_rules(user, move |rules| {
            let mut all = ruleset_json(rules);
            let mut copied = false;
            for kind in ["override", "underride", "room"] {
                let Some(list) = all.get_mut(kind).and_then(Value::as_array_mut) else {
                    continue;
                };
                let mut copies = Vec::new();
                for rule in list.iter() {
                    let for_room = rule["rule_id"] == from.as_str()
                        || rule["conditions"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["key"] == "room_id" && c["pattern"] == from.as_str())
                        });
                    if !for_room || rule["default"] == true {
                        continue;
                    }
                    let mut copy = rule.clone();
                    copy["rule_id"] = json!(to);
                    if let Some(conditions) = copy["conditions"].as_array_mut() {
                        for c in conditions {
                            if c["key"] == "room_id" && c["pattern"] == from.as_str() {
                                c["pattern"] = json!(to);
                            }
                        }
                    }
                    copies.push(copy);
                }
                let exists = |id: &Value| list.iter().any(|r| &r["rule_id"] == id);
                copies.retain(|c| !exists(&c["rule_id"]));
                copied |= !copies.is_empty();
                // User rules come before the server's defaults of a kind.
                for copy in copies.into_iter().rev() {
                    list.insert(0, copy);
                }
            }
            if copied {
                *rules = serde_json::from_value(all)
                    .map_err(|e| MatrixError::internal(format!("copied push rules: {e}")))?;
            }
            Ok(copied)
        })
        .await
    }

    /// Changes the user's ruleset in one write (two changes at once both
    /// land); `change` says whether it changed anything.
    async fn update_push_rules(
        &self,
        user: &UserId,
        change: impl FnOnce(&mut Ruleset) -> Result<bool, MatrixError> + Send + 'static,
    ) -> Result<(), MatrixError> {
        let owner = user.to_owned();
        let written = self
            .storage
            .update_account_data(user, None, PUSH_RULES_TYPE, move |stored| {
                let mut rules = ruleset_from(&owner, stored);
                if !change(&mut rules)? {
                    return Ok(None);
                }
                Ok::<_, MatrixError>(Some(json!({ "global": ruleset_json(&rules) })))
            })
            .await?;
        if let Ok(Some((_, content))) = &written {
            let rules = ruleset_from(user, Some(content.clone()));
            let rules = UserRules {
                rules: Arc::new(rules),
                default: false,
            };
            self.push_rules_cache.lock().insert(user.to_owned(), rules);
        }
        written.map(|_| ())
    }
}

fn apply(
    rules: &mut Ruleset,
    kind: RuleKind,
    rule_id: &str,
    change: RuleChange,
) -> Result<(), MatrixError> {
    match change {
        RuleChange::Put(body, placement) => {
            if rule_id.starts_with('.') {
                return Err(invalid_rule("cannot add new rule_ids that start with '.'"));
            }
            let rule = body.into_rule(&kind, rule_id)?;
            rules
                .insert(
                    rule,
                    placement.after.as_deref(),
                    placement.before.as_deref(),
                )
                .map_err(|e| match e {
                    InsertPushRuleError::UnknownRuleId => invalid_rule(format!(
                        "before/after rule not found: {}",
                        placement.before.or(placement.after).unwrap_or_default()
                    )),
                    other => invalid_rule(other.to_string()),
                })
        }
        RuleChange::Delete => rules.remove(kind, rule_id).map_err(|e| match e {
            RemovePushRuleError::ServerDefault => MatrixError::new(
                400,
                ErrCode::Unknown,
                "Server-default rules cannot be deleted: disable them instead",
            ),
            _ => unknown_rule(),
        }),
        RuleChange::Enabled(enabled) => rules
            .set_enabled(kind, rule_id, enabled)
            .map_err(|_| unknown_rule()),
        RuleChange::Actions(actions) => rules
            .set_actions(kind, rule_id, actions)
            .map_err(|_| unknown_rule()),
    }
}

/// A ruleset as the API shows it: every kind present, an empty one as `[]`
/// (as Synapse answers; ruma leaves empty kinds out).
pub fn ruleset_json(rules: &Ruleset) -> Value {
    let mut all = serde_json::to_value(rules).unwrap_or_else(|_| json!({}));
    if let Value::Object(kinds) = &mut all {
        for kind in RULE_KINDS {
            kinds.entry(kind).or_insert_with(|| json!([]));
        }
    }
    all
}

/// One rule of a ruleset as the API shows it, found by kind and ID.
pub fn find_rule(rules: &Ruleset, kind: &str, rule_id: &str) -> Result<Value, MatrixError> {
    ruleset_json(rules)
        .get(kind)
        .and_then(Value::as_array)
        .and_then(|list| list.iter().find(|r| r["rule_id"] == rule_id))
        .cloned()
        .ok_or_else(unknown_rule)
}

/// The room's power levels as push conditions need them
/// (`sender_notification_permission` for `@room`).
fn power_levels_ctx(room: &RoomSnapshot) -> PushConditionPowerLevelsCtx {
    let levels = crate::events::PowerLevels::of(room);
    let users: BTreeMap<OwnedUserId, Int> = levels
        .users
        .iter()
        .filter_map(|(user, level)| {
            Some((
                OwnedUserId::try_from(user.as_str()).ok()?,
                Int::new(*level)?,
            ))
        })
        .collect();
    let notify_room = room
        .state
        .get(&("m.room.power_levels".to_string(), String::new()))
        .and_then(|pl| pl.content.get("notifications")?.get("room")?.as_i64())
        .unwrap_or(50);
    let mut notifications = NotificationPowerLevels::new();
    notifications.room = Int::new(notify_room).unwrap_or_else(|| Int::from(50));
    let rules = crate::events::room_version_rules(&room.room_version);
    PushConditionPowerLevelsCtx::new(
        users,
        Int::new(levels.users_default).unwrap_or_default(),
        notifications,
        RoomPowerLevelsRules::new(&rules.authorization, []),
    )
}

/// The actions of the first rule that applies (none if none does).
async fn first_match(
    rules: &Ruleset,
    event: &FlattenedJson,
    context: &PushConditionRoomCtx,
) -> Vec<Action> {
    for rule in rules.iter() {
        if rule.applies(event, context).await {
            return rule.actions().to_vec();
        }
    }
    Vec::new()
}

/// The users an event names where the server-default rules look for the
/// user: its state key and its `m.mentions.user_ids`.
fn users_named(event: &FlattenedJson) -> std::collections::HashSet<String> {
    let mut named = std::collections::HashSet::new();
    if let Some(key) = event.get_str("state_key") {
        named.insert(key.to_string());
    }
    if let Some(ruma::push::FlattenedJsonValue::Array(ids)) =
        event.get(r"content.m\.mentions.user_ids")
    {
        for id in ids {
            if let ruma::push::ScalarJsonValue::String(id) = id {
                named.insert(id.clone());
            }
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What sharing one evaluation among unnamed default-rules members
    /// rests on: the default rules differ per user only by the user ID, and
    /// only where `users_named` looks.
    #[test]
    fn the_default_rules_name_the_user_only_where_users_named_looks() {
        let (a, b) = (
            UserId::parse("@a:example.org").unwrap(),
            UserId::parse("@b:example.org").unwrap(),
        );
        let rules_a = ruleset_json(&Ruleset::server_default(&a)).to_string();
        let rules_b = ruleset_json(&Ruleset::server_default(&b)).to_string();
        assert_eq!(rules_a.replace(a.as_str(), b.as_str()), rules_b);
        let all = ruleset_json(&Ruleset::server_default(&a));
        for kind in all.as_object().unwrap().values() {
            for rule in kind.as_array().unwrap() {
                for condition in rule["conditions"].as_array().into_iter().flatten() {
                    if condition.to_string().contains(a.as_str()) {
                        let key = condition["key"].as_str().unwrap();
                        assert!(
                            key == "state_key" || key == r"content.m\.mentions.user_ids",
                            "{condition}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn users_named_finds_the_state_key_and_the_mentions() {
        let event = serde_json::json!({
            "type": "m.room.member", "state_key": "@x:h",
            "content": { "membership": "invite", "m.mentions": { "user_ids": ["@y:h", "@z:h"] } },
        });
        let raw = Raw::<Value>::from_json(serde_json::value::to_raw_value(&event).unwrap());
        let named = users_named(&FlattenedJson::from_raw(&raw));
        let mut named: Vec<_> = named.into_iter().collect();
        named.sort();
        assert_eq!(named, ["@x:h", "@y:h", "@z:h"]);
    }
}
