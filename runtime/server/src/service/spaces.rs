//! Spaces: `GET /v1/rooms/{room}/hierarchy`, the rooms a space leads to
//! through its `m.space.child` events, breadth first, as far as the user
//! may see them (rooms they are in, public or world-readable ones).

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::RoomSnapshot;
use axon::{ErrCode, Membership};
use ruma::{OwnedRoomId, RoomId};
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};

/// Most rooms a hierarchy walk visits, whatever the limit asked.
const MAX_ROOMS_VISITED: usize = 1000;

/// What the walk is asked for.
pub struct HierarchyRequest {
    pub suggested_only: bool,
    pub max_depth: Option<u32>,
    pub limit: u32,
    /// Rooms of the walk already returned (the `from` token).
    pub skip: u32,
}

/// A page of the hierarchy and the token for the next.
pub struct Hierarchy {
    pub rooms: Vec<Value>,
    pub next_skip: Option<u32>,
}

fn state_str(room: &RoomSnapshot, event_type: &str, field: &str) -> Option<String> {
    room.state
        .get_state(event_type, "")?
        .content
        .get(field)?
        .as_str()
        .map(str::to_string)
}

/// The room's `m.space.child` events with a non-empty `via`, as stripped
/// events, the suggested ones only if asked.
fn children(room: &RoomSnapshot, suggested_only: bool) -> Vec<(OwnedRoomId, Value)> {
    room.state
        .of_type("m.space.child")
        .filter(|e| {
            e.content
                .get("via")
                .and_then(Value::as_array)
                .is_some_and(|via| !via.is_empty())
        })
        .filter(|e| {
            !suggested_only || e.content.get("suggested").and_then(Value::as_bool) == Some(true)
        })
        .filter_map(|e| {
            let child = OwnedRoomId::try_from(e.state_key.as_deref()?).ok()?;
            let stripped = json!({
                "type": e.event_type,
                "state_key": e.state_key,
                "content": e.content,
                "sender": e.sender,
                "origin_server_ts": e.origin_server_ts,
            });
            Some((child, stripped))
        })
        .collect()
}

impl Homeserver {
    /// Whether the user may see a room's summary: they are in it, or it is
    /// public or world-readable.
    async fn may_peek(&self, actor: &Actor, room: &RoomSnapshot) -> Result<bool, MatrixError> {
        if let Some((m, _)) = self
            .storage
            .membership(&actor.user_id, &room.room_id)
            .await?
        {
            if matches!(m, Membership::Join | Membership::Invite) {
                return Ok(true);
            }
        }
        let public = state_str(room, "m.room.join_rules", "join_rule").as_deref() == Some("public");
        let readable = state_str(room, "m.room.history_visibility", "history_visibility")
            .as_deref()
            == Some("world_readable");
        Ok(public || readable)
    }

    pub async fn space_hierarchy(
        &self,
        actor: &Actor,
        root: &RoomId,
        request: HierarchyRequest,
    ) -> Result<Hierarchy, MatrixError> {
        let forbidden = || MatrixError::forbidden(format!("You may not see room {root}"));
        let Some(snapshot) = self.storage.room_snapshot(root).await? else {
            return Err(MatrixError::new(
                404,
                ErrCode::NotFound,
                format!("Unknown room {root}"),
            ));
        };
        if !self.may_peek(actor, &snapshot).await? {
            return Err(forbidden());
        }
        let mut queue = VecDeque::from([(root.to_owned(), 0u32)]);
        let mut seen = HashSet::from([root.to_owned()]);
        let mut walked = 0u32;
        let mut rooms = Vec::new();
        let mut visited = 0;
        while let Some((room_id, depth)) = queue.pop_front() {
            visited += 1;
            if visited > MAX_ROOMS_VISITED {
                break;
            }
            let Some(room) = self.storage.room_snapshot(&room_id).await? else {
                continue;
            };
            if !self.may_peek(actor, &room).await? {
                continue;
            }
            let children = children(&room, request.suggested_only);
            if request.max_depth.is_none_or(|max| depth < max) {
                for (child, _) in &children {
                    if seen.insert(child.clone()) {
                        queue.push_back((child.clone(), depth + 1));
                    }
                }
            }
            walked += 1;
            if walked <= request.skip {
                continue;
            }
            if rooms.len() == request.limit as usize {
                return Ok(Hierarchy {
                    rooms,
                    next_skip: Some(walked - 1),
                });
            }
            let mut summary = json!({
                "room_id": room.room_id,
                "num_joined_members": room.joined,
                "join_rule": state_str(&room, "m.room.join_rules", "join_rule").unwrap_or_else(|| "invite".into()),
                "world_readable": state_str(&room, "m.room.history_visibility", "history_visibility").as_deref() == Some("world_readable"),
                "guest_can_join": state_str(&room, "m.room.guest_access", "guest_access").as_deref() == Some("can_join"),
                "children_state": children.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
            });
            for (field, event_type, key) in [
                ("name", "m.room.name", "name"),
                ("topic", "m.room.topic", "topic"),
                ("avatar_url", "m.room.avatar", "url"),
                ("canonical_alias", "m.room.canonical_alias", "alias"),
                ("room_type", "m.room.create", "type"),
            ] {
                if let Some(value) = state_str(&room, event_type, key) {
                    summary[field] = json!(value);
                }
            }
            rooms.push(summary);
        }
        Ok(Hierarchy {
            rooms,
            next_skip: None,
        })
    }
}
