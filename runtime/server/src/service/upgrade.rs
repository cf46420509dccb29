//! Room upgrades (`POST /rooms/{room}/upgrade`), as Synapse does them: a
//! new room of the new version with the old one's state and power levels,
//! a tombstone in the old room, whose power levels then stop ordinary
//! members from talking; aliases, the directory listing, bans, and the
//! users' push rules and tags carried over.

use super::{Actor, MatrixError, MembershipChange};
use crate::events::{membership_of, PowerLevels, SUPPORTED_ROOM_VERSIONS};
use crate::homeserver::Homeserver;
use crate::storage::RoomSnapshot;
use axon::{ErrCode, Membership};
use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::{json, Map, Value};

/// The state a new room copies from the one it replaces (Synapse's list).
const COPIED_STATE: &[&str] = &[
    "m.room.join_rules",
    "m.room.name",
    "m.room.topic",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
];

fn state_content(snapshot: &RoomSnapshot, event_type: &str) -> Option<Map<String, Value>> {
    snapshot
        .state
        .get(&(event_type.to_string(), String::new()))
        .map(|e| e.content.clone())
}

/// A room's predecessor, from its `m.room.create`.
fn predecessor(snapshot: &RoomSnapshot) -> Option<OwnedRoomId> {
    let create = state_content(snapshot, "m.room.create")?;
    OwnedRoomId::try_from(create.get("predecessor")?.get("room_id")?.as_str()?).ok()
}

impl Homeserver {
    /// Upgrades `old` to `new_version` as `actor`, who must be allowed to
    /// send its tombstone; returns the new room. The new room is created
    /// through `create_room`, so the modules' room-creation callbacks and
    /// `check_event_allowed` see it as any room.
    pub async fn upgrade_room(
        &self,
        actor: &Actor,
        old: &RoomId,
        new_version: &str,
    ) -> Result<OwnedRoomId, MatrixError> {
        if !SUPPORTED_ROOM_VERSIONS.contains(&new_version) {
            return Err(MatrixError::new(
                400,
                ErrCode::UnsupportedRoomVersion,
                "Your homeserver does not support this room version",
            ));
        }
        let user = actor.user_id.as_str();
        let snapshot = self
            .storage
            .room_snapshot(old)
            .await?
            .filter(|s| membership_of(s, user) == Membership::Join)
            .ok_or_else(|| MatrixError::forbidden(format!("User {user} not in room {old}")))?;
        let levels = PowerLevels::of(&snapshot);
        let own_level = levels.user_level(user);
        if own_level < levels.event_level("m.room.tombstone", true) {
            return Err(MatrixError::forbidden(
                "You don't have permission to upgrade the room",
            ));
        }
        let create = state_content(&snapshot, "m.room.create").unwrap_or_default();
        let mut creation_content = Map::new();
        for key in ["type", "m.federate"] {
            if let Some(value) = create.get(key) {
                creation_content.insert(key.into(), value.clone());
            }
        }
        creation_content.insert(
            "predecessor".into(),
            json!({ "room_id": old, "event_id": snapshot.extremities.last() }),
        );
        let mut initial_state: Vec<Value> = COPIED_STATE
            .iter()
            .filter_map(|t| state_content(&snapshot, t).map(|c| (t, c)))
            .map(|(t, content)| json!({ "type": t, "state_key": "", "content": content }))
            .collect();
        if create.get("type").and_then(Value::as_str) == Some("m.space") {
            for child in snapshot.state.of_type("m.space.child") {
                if !child.content.is_empty() {
                    initial_state.push(json!({
                        "type": "m.space.child",
                        "state_key": child.state_key,
                        "content": child.content,
                    }));
                }
            }
        }
        // The old power levels, with the upgrader raised for as long as the
        // copied state needs, then put back.
        let old_levels = state_content(&snapshot, "m.room.power_levels");
        let needed = COPIED_STATE
            .iter()
            .map(|t| levels.event_level(t, true))
            .chain([levels.event_level("m.room.power_levels", true)])
            .max()
            .unwrap_or(100);
        let mut power_levels = old_levels.clone().unwrap_or_default();
        let raised = own_level < needed;
        if raised {
            power_levels
                .entry("users")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|users| users.insert(user.to_string(), json!(needed)));
        }
        let mut body = Map::new();
        body.insert("room_version".into(), json!(new_version));
        body.insert("preset".into(), json!("private_chat"));
        body.insert("creation_content".into(), Value::Object(creation_content));
        body.insert("initial_state".into(), Value::Array(initial_state));
        if old_levels.is_some() {
            body.insert(
                "power_level_content_override".into(),
                Value::Object(power_levels),
            );
        }
        let (new, _) = self.create_room(actor, body).await?;
        // From here on the new room exists: a step that fails is logged and
        // the upgrade goes on, as in Synapse.
        let log = |what: &str, result: Result<_, MatrixError>| {
            if let Err(e) = result {
                tracing::warn!("upgrading {old} to {new}: {what}: {e}");
            }
        };
        if raised {
            if let Some(original) = old_levels.clone() {
                let restored = self
                    .set_state(
                        actor,
                        &new,
                        "m.room.power_levels".into(),
                        String::new(),
                        original,
                    )
                    .await;
                log("restoring power levels", restored.map(drop));
            }
        }
        for member in snapshot.state.of_type("m.room.member") {
            if member.content.get("membership").and_then(Value::as_str) != Some("ban") {
                continue;
            }
            let Some(target) = member
                .state_key
                .as_deref()
                .and_then(|k| UserId::parse(k).ok())
            else {
                continue;
            };
            let reason = member
                .content
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            let ban = MembershipChange::new(&new, &target, Membership::Ban).with_reason(reason);
            log(
                "copying a ban",
                self.change_membership(actor, ban).await.map(drop),
            );
        }
        let tombstone = json!({ "body": "This room has been replaced", "replacement_room": new });
        self.set_state(
            actor,
            old,
            "m.room.tombstone".into(),
            String::new(),
            tombstone.as_object().cloned().unwrap_or_default(),
        )
        .await?;
        self.storage.move_aliases(old, &new).await?;
        if let Some(aliases) =
            state_content(&snapshot, "m.room.canonical_alias").filter(|c| !c.is_empty())
        {
            let moved = self
                .set_state(
                    actor,
                    &new,
                    "m.room.canonical_alias".into(),
                    String::new(),
                    aliases,
                )
                .await;
            log("moving the canonical alias", moved.map(drop));
            let cleared = self
                .set_state(
                    actor,
                    old,
                    "m.room.canonical_alias".into(),
                    String::new(),
                    Map::new(),
                )
                .await;
            log("clearing the old canonical alias", cleared.map(drop));
        }
        if snapshot.is_public {
            self.storage.set_room_public(&new, true).await?;
            self.storage.set_room_public(old, false).await?;
        }
        // Ordinary members of the old room may no longer talk or invite.
        let mut restricted = old_levels.unwrap_or_default();
        let users_default = levels.users_default;
        let floor = (users_default + 1).max(50);
        let mut changed = false;
        for (key, current) in [
            ("events_default", levels.events_default),
            ("invite", levels.invite),
        ] {
            if current < floor {
                restricted.insert(key.into(), json!(floor));
                changed = true;
            }
        }
        if changed {
            let sent = self
                .set_state(
                    actor,
                    old,
                    "m.room.power_levels".into(),
                    String::new(),
                    restricted,
                )
                .await;
            log("restricting the old room", sent.map(drop));
        }
        if let Ok(Some(new_snapshot)) = self.storage.room_snapshot(&new).await {
            self.carry_over_from_predecessor(&new_snapshot, &actor.user_id)
                .await;
        }
        Ok(new)
    }

    /// A user who joins a room that replaced another keeps that room's push
    /// rules and tags (Synapse's `copy_user_state_on_room_upgrade`).
    pub(crate) async fn carry_over_from_predecessor(&self, room: &RoomSnapshot, user: &UserId) {
        if user.server_name() != self.server_name {
            return;
        }
        let Some(old) = predecessor(room) else { return };
        if let Err(e) = self.copy_room_push_rules(user, &old, &room.room_id).await {
            tracing::warn!("copying {user}'s push rules from {old}: {e}");
        }
        if let Err(e) = self.copy_room_tags(user, &old, &room.room_id).await {
            tracing::warn!("copying {user}'s tags from {old}: {e}");
        }
    }
}
