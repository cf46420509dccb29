//! The auth rules a single server needs for its own rooms (room versions
//! 10 and 11): membership transitions, power levels, and who may send.

use super::build::EventDraft;
use crate::storage::RoomSnapshot;
use axon::Membership;
use axon::{ErrCode, ModuleError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A room's `m.room.power_levels`, with the spec's defaults.
#[derive(Debug, Clone)]
pub struct PowerLevels {
    pub users: BTreeMap<String, i64>,
    pub users_default: i64,
    pub events: BTreeMap<String, i64>,
    pub events_default: i64,
    pub state_default: i64,
    pub ban: i64,
    pub kick: i64,
    pub redact: i64,
    pub invite: i64,
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn int_map(v: Option<&Value>) -> BTreeMap<String, i64> {
    v.and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| int(Some(v)).map(|i| (k.clone(), i)))
                .collect()
        })
        .unwrap_or_default()
}

impl PowerLevels {
    pub fn of(snapshot: &RoomSnapshot) -> PowerLevels {
        match snapshot
            .state
            .get(&("m.room.power_levels".to_string(), String::new()))
        {
            Some(entry) => Self::from_content(&entry.content),
            None => {
                // No power levels yet: the creator has 100, everyone else 0.
                let mut users = BTreeMap::new();
                if let Some(create) = snapshot
                    .state
                    .get(&("m.room.create".to_string(), String::new()))
                {
                    users.insert(create.sender.to_string(), 100);
                }
                PowerLevels {
                    users,
                    users_default: 0,
                    events: BTreeMap::new(),
                    events_default: 0,
                    state_default: 0,
                    ban: 50,
                    kick: 50,
                    redact: 50,
                    invite: 0,
                }
            }
        }
    }

    pub fn from_content(c: &serde_json::Map<String, Value>) -> PowerLevels {
        PowerLevels {
            users: int_map(c.get("users")),
            users_default: int(c.get("users_default")).unwrap_or(0),
            events: int_map(c.get("events")),
            events_default: int(c.get("events_default")).unwrap_or(0),
            state_default: int(c.get("state_default")).unwrap_or(50),
            ban: int(c.get("ban")).unwrap_or(50),
            kick: int(c.get("kick")).unwrap_or(50),
            redact: int(c.get("redact")).unwrap_or(50),
            invite: int(c.get("invite")).unwrap_or(0),
        }
    }

    pub fn user_level(&self, user: &str) -> i64 {
        self.users.get(user).copied().unwrap_or(self.users_default)
    }

    /// The level needed to send an event of this type.
    pub fn event_level(&self, event_type: &str, is_state: bool) -> i64 {
        self.events.get(event_type).copied().unwrap_or(if is_state {
            self.state_default
        } else {
            self.events_default
        })
    }
}

/// A user's membership in the room (`Leave` if none).
pub fn membership_of(snapshot: &RoomSnapshot, user: &str) -> Membership {
    Membership::parse(membership_str(snapshot, user)).unwrap_or(Membership::Leave)
}

/// As the event writes it (`leave` if none), for the auth rules.
fn membership_str<'a>(snapshot: &'a RoomSnapshot, user: &str) -> &'a str {
    snapshot
        .state
        .get(&("m.room.member".to_string(), user.to_string()))
        .and_then(|e| e.content.get("membership"))
        .and_then(|m| m.as_str())
        .unwrap_or("leave")
}

fn forbidden(message: impl Into<String>) -> ModuleError {
    ModuleError::new(403, ErrCode::Forbidden, message)
}

/// The auth rules again, for an event already built, against the room's
/// state as the write finds it (`Storage::persist_events`).
pub fn recheck_auth(
    snapshot: &RoomSnapshot,
    event: &crate::storage::NewEvent,
) -> Result<(), String> {
    if event.event_type == "m.room.create" {
        return Ok(());
    }
    let draft = EventDraft {
        sender: event.sender.clone(),
        event_type: event.event_type.clone(),
        state_key: event.state_key.clone(),
        content: serde_json::from_str(&event.content).map_err(|e| e.to_string())?,
    };
    check_auth(snapshot, &draft).map_err(|e| e.message)
}

/// Whether `draft` may be sent into the room as it is now.
pub fn check_auth(snapshot: &RoomSnapshot, draft: &EventDraft) -> Result<(), ModuleError> {
    if draft.event_type == "m.room.create" {
        return Err(forbidden("The room has already been created"));
    }
    let levels = PowerLevels::of(snapshot);
    let sender_level = levels.user_level(draft.sender.as_str());
    if draft.event_type == "m.room.member" {
        return check_membership(snapshot, draft, &levels);
    }
    if membership_str(snapshot, draft.sender.as_str()) != "join" {
        return Err(forbidden(format!(
            "User {} not in room {}",
            draft.sender, snapshot.room_id
        )));
    }
    if let Some(state_key) = &draft.state_key {
        if state_key.starts_with('@') && state_key != draft.sender.as_str() {
            return Err(forbidden("You are not allowed to set others' state"));
        }
    }
    let required = levels.event_level(&draft.event_type, draft.state_key.is_some());
    if sender_level < required {
        return Err(forbidden(format!(
            "You don't have permission to post that to the room. user_level ({sender_level}) < send_level ({required})"
        )));
    }
    if draft.event_type == "m.room.power_levels" {
        check_power_levels_change(
            &levels,
            &PowerLevels::from_content(&draft.content),
            draft.sender.as_str(),
        )?;
    }
    Ok(())
}

fn check_membership(
    snapshot: &RoomSnapshot,
    draft: &EventDraft,
    levels: &PowerLevels,
) -> Result<(), ModuleError> {
    let target = draft.state_key.as_deref().ok_or_else(|| {
        ModuleError::new(400, ErrCode::BadJson, "m.room.member needs a state_key")
    })?;
    let membership = draft
        .content
        .get("membership")
        .and_then(|m| m.as_str())
        .ok_or_else(|| {
            ModuleError::new(
                400,
                ErrCode::BadJson,
                "m.room.member content needs a membership",
            )
        })?;
    let sender = draft.sender.as_str();
    let sender_membership = membership_str(snapshot, sender);
    let target_membership = membership_str(snapshot, target);
    let sender_level = levels.user_level(sender);
    let target_level = levels.user_level(target);
    let join_rule = snapshot
        .state
        .get(&("m.room.join_rules".to_string(), String::new()))
        .and_then(|e| e.content.get("join_rule"))
        .and_then(|r| r.as_str())
        .unwrap_or("invite");
    let rules = super::room_version_rules(&snapshot.room_version).authorization;
    match membership {
        "join" => {
            if sender != target {
                return Err(forbidden("Cannot force another user to join."));
            }
            if target_membership == "ban" {
                return Err(forbidden("You are banned from this room"));
            }
            let invited = matches!(target_membership, "invite" | "join");
            if join_rule == "public" || invited {
                return Ok(());
            }
            // Restricted rooms (version 8; `knock_restricted` from 10): the
            // join names a member who may invite and vouches that the user
            // is in one of the rooms the join rule allows.
            let restricted = (join_rule == "restricted" && rules.restricted_join_rule)
                || (join_rule == "knock_restricted" && rules.knock_restricted_join_rule);
            if restricted {
                let voucher = draft
                    .content
                    .get("join_authorised_via_users_server")
                    .and_then(|v| v.as_str());
                return match voucher {
                    Some(voucher)
                        if membership_str(snapshot, voucher) == "join"
                            && levels.user_level(voucher) >= levels.invite =>
                    {
                        Ok(())
                    }
                    _ => Err(forbidden(
                        "You do not belong to any of the required rooms/spaces to join this room.",
                    )),
                };
            }
            Err(forbidden("You are not invited to this room."))
        }
        "invite" => {
            if sender_membership != "join" {
                return Err(forbidden(format!(
                    "User {sender} not in room {}",
                    snapshot.room_id
                )));
            }
            match target_membership {
                "ban" => return Err(forbidden(format!("{target} is banned from the room"))),
                "join" => return Err(forbidden(format!("{target} is already in the room."))),
                _ => {}
            }
            if sender_level < levels.invite {
                return Err(forbidden("You don't have permission to invite users"));
            }
            Ok(())
        }
        "leave" if sender == target => {
            if matches!(sender_membership, "join" | "invite" | "knock") {
                Ok(())
            } else {
                Err(forbidden(format!(
                    "User {sender} not in room {}",
                    snapshot.room_id
                )))
            }
        }
        "leave" => {
            if sender_membership != "join" {
                return Err(forbidden(format!(
                    "User {sender} not in room {}",
                    snapshot.room_id
                )));
            }
            if target_membership == "ban" {
                if sender_level < levels.ban {
                    return Err(forbidden("You don't have permission to unban"));
                }
                return Ok(());
            }
            if target_membership == "leave" {
                return Err(forbidden(format!("{target} is not in the room")));
            }
            if sender_level < levels.kick || target_level >= sender_level {
                return Err(forbidden("You don't have permission to kick"));
            }
            Ok(())
        }
        "ban" => {
            if sender_membership != "join" {
                return Err(forbidden(format!(
                    "User {sender} not in room {}",
                    snapshot.room_id
                )));
            }
            if sender_level < levels.ban || target_level >= sender_level {
                return Err(forbidden("You don't have permission to ban"));
            }
            Ok(())
        }
        // Room versions 7 and later; `knock_restricted` from 10.
        "knock" => {
            if !rules.knocking {
                return Err(forbidden("This room version does not allow knocking"));
            }
            let knockable = join_rule == "knock"
                || (join_rule == "knock_restricted" && rules.knock_restricted_join_rule);
            if !knockable {
                return Err(forbidden("You don't have permission to knock"));
            }
            if sender != target {
                return Err(forbidden("Cannot knock on behalf of another user"));
            }
            match sender_membership {
                "ban" => Err(forbidden("You are banned from this room")),
                "invite" => Err(forbidden("You are already invited to this room")),
                "join" => Err(forbidden("You are already in this room")),
                _ => Ok(()),
            }
        }
        other => Err(ModuleError::new(
            400,
            ErrCode::BadJson,
            format!("unknown membership `{other}`"),
        )),
    }
}

/// Room versions 10 and later take power levels as integers only (no
/// `"50"`), in canonical JSON's range, and `users` keyed by user IDs; the
/// error names the field as Synapse's does.
pub(crate) fn validate_power_levels(content: &Map<String, Value>) -> Result<(), ModuleError> {
    const MAX: i64 = (1 << 53) - 1;
    let bad = |field: &str, value: &Value| {
        ModuleError::new(
            400,
            ErrCode::BadJson,
            format!("\"{field}\": {value} is not of type 'integer'"),
        )
    };
    let integer = |field: &str, value: &Value| match value.as_i64() {
        Some(n) if (-MAX..=MAX).contains(&n) => Ok(()),
        _ => Err(bad(field, value)),
    };
    for field in [
        "users_default",
        "events_default",
        "state_default",
        "ban",
        "redact",
        "kick",
        "invite",
    ] {
        if let Some(value) = content.get(field) {
            integer(field, value)?;
        }
    }
    for field in ["events", "notifications", "users"] {
        let Some(value) = content.get(field) else {
            continue;
        };
        let Some(map) = value.as_object() else {
            return Err(ModuleError::new(
                400,
                ErrCode::BadJson,
                format!("\"{field}\": {value} is not of type 'object'"),
            ));
        };
        for (key, value) in map {
            if field == "users" && ruma::UserId::parse(key.as_str()).is_err() {
                return Err(ModuleError::new(
                    400,
                    ErrCode::BadJson,
                    format!("\"users\": {key:?} is not a valid user ID"),
                ));
            }
            integer(key, value)?;
        }
    }
    Ok(())
}

/// A power levels change may not grant or take away more than the sender has.
fn check_power_levels_change(
    old: &PowerLevels,
    new: &PowerLevels,
    sender: &str,
) -> Result<(), ModuleError> {
    let mine = old.user_level(sender);
    let deny = || forbidden("You don't have permission to change power levels this way");
    let scalars = [
        (old.users_default, new.users_default),
        (old.events_default, new.events_default),
        (old.state_default, new.state_default),
        (old.ban, new.ban),
        (old.kick, new.kick),
        (old.redact, new.redact),
        (old.invite, new.invite),
    ];
    for (before, after) in scalars {
        if before != after && (before > mine || after > mine) {
            return Err(deny());
        }
    }
    let event_types: std::collections::BTreeSet<&String> =
        old.events.keys().chain(new.events.keys()).collect();
    for t in event_types {
        let (before, after) = (old.events.get(t), new.events.get(t));
        if before != after
            && (before.is_some_and(|b| *b > mine) || after.is_some_and(|a| *a > mine))
        {
            return Err(deny());
        }
    }
    let users: std::collections::BTreeSet<&String> =
        old.users.keys().chain(new.users.keys()).collect();
    for user in users {
        let (before, after) = (old.users.get(user), new.users.get(user));
        if before == after {
            continue;
        }
        if user != sender && before.is_some_and(|b| *b >= mine) {
            return Err(deny());
        }
        if before.is_some_and(|b| *b > mine) || after.is_some_and(|a| *a > mine) {
            return Err(deny());
        }
    }
    Ok(())
}
