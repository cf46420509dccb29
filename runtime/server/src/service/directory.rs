//! Room aliases and the public room directory.

use super::{refused, Actor, MatrixError};
use crate::events::{membership_of, PowerLevels};
use crate::homeserver::Homeserver;
use crate::storage::StorageError;
use axon::callbacks::{ModuleRef, Visibility};
use axon::{ErrCode, Membership};
use ruma::{RoomAliasId, RoomId, ServerName};
use serde_json::{json, Value};

fn unknown_room() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "Unknown room")
}

impl Homeserver {
    /// What an alias names: the room and servers to join it through. A
    /// local alias is read here; another server's is asked of it
    /// (`query/directory`).
    pub async fn resolve_alias(
        &self,
        alias: &ruma::RoomAliasId,
    ) -> Result<(ruma::OwnedRoomId, Vec<ruma::OwnedServerName>), MatrixError> {
        let not_found = || {
            MatrixError::new(
                404,
                ErrCode::NotFound,
                format!("Room alias {alias} not found"),
            )
        };
        if alias.server_name() == self.server_name {
            let (room, _) = self.storage.get_alias(alias).await?.ok_or_else(not_found)?;
            return Ok((room, vec![self.server_name.clone()]));
        }
        let path = format!(
            "/_matrix/federation/v1/query/directory?room_alias={}",
            super::percent_encode(alias.as_str())
        );
        let answer = self
            .ask_server(alias.server_name(), reqwest::Method::GET, &path, None)
            .await
            .map_err(|e| super::federation_failure(e, "Failed to query the room alias"))?;
        let room = answer["room_id"]
            .as_str()
            .and_then(|r| ruma::OwnedRoomId::try_from(r).ok())
            .ok_or_else(not_found)?;
        let mut servers: Vec<ruma::OwnedServerName> = answer["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .filter_map(|s| ruma::OwnedServerName::try_from(s).ok())
            .collect();
        if !servers.iter().any(|s| s == alias.server_name()) {
            servers.push(alias.server_name().to_owned());
        }
        Ok((room, servers))
    }

    /// `PUT /directory/room/{alias}`: a local alias for a room the user is
    /// (or was) in; `user_may_create_room_alias` may refuse.
    pub async fn create_alias(
        &self,
        actor: &Actor,
        alias: &RoomAliasId,
        room: &RoomId,
    ) -> Result<(), MatrixError> {
        self.local_alias(alias)?;
        if !self.storage.room_exists(room).await? {
            return Err(MatrixError::new(404, ErrCode::NotFound, "Room not found"));
        }
        // Synapse's `require_membership_for_aliases`, on by default.
        let membership = self.storage.membership(&actor.user_id, room).await?;
        if !matches!(membership, Some((Membership::Join, _))) {
            return Err(MatrixError::forbidden(
                "You must be in the room to create an alias for it",
            ));
        }
        let verdict = self
            .callbacks
            .spam_checker
            .user_may_create_room_alias(&actor.user_id, alias)
            .await?;
        refused(verdict, "This user is not permitted to create this alias")?;
        match self.storage.create_alias(alias, room, &actor.user_id).await {
            Ok(()) => Ok(()),
            Err(StorageError::Conflict(_)) => Err(MatrixError::new(
                409,
                ErrCode::Unknown,
                format!("Room alias {alias} already exists"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE /directory/room/{alias}`: by its creator, a server admin, or
    /// a member who may change the room's canonical alias.
    pub async fn delete_alias(
        &self,
        actor: &Actor,
        alias: &RoomAliasId,
    ) -> Result<(), MatrixError> {
        self.local_alias(alias)?;
        let Some((room_id, creator)) = self.storage.get_alias(alias).await? else {
            return Err(MatrixError::new(
                404,
                ErrCode::NotFound,
                format!("Room alias {alias} not found"),
            ));
        };
        let allowed = creator == actor.user_id || actor.admin || {
            match self.storage.room_snapshot(&room_id).await? {
                Some(snapshot) => {
                    let levels = PowerLevels::of(&snapshot);
                    levels.user_level(actor.user_id.as_str())
                        >= levels.event_level("m.room.canonical_alias", true)
                }
                None => false,
            }
        };
        if !allowed {
            return Err(MatrixError::forbidden(
                "You don't have permission to delete the alias.",
            ));
        }
        self.storage.delete_alias(alias).await?;
        Ok(())
    }

    fn local_alias(&self, alias: &RoomAliasId) -> Result<(), MatrixError> {
        if alias.server_name() != &*self.server_name {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                "Room alias must be local",
            ));
        }
        Ok(())
    }

    /// `PUT /directory/list/room/{room}`: the user must be a joined member
    /// who may change the canonical alias; publishing asks
    /// `user_may_publish_room` (not for server admins), and every change
    /// asks `check_visibility_can_be_modified`.
    pub async fn set_room_visibility(
        &self,
        actor: &Actor,
        room: &RoomId,
        visibility: Visibility,
    ) -> Result<(), MatrixError> {
        let snapshot = self
            .storage
            .room_snapshot(room)
            .await?
            .ok_or_else(unknown_room)?;
        let public = visibility == Visibility::Public;
        {
            let levels = PowerLevels::of(&snapshot);
            if membership_of(&snapshot, actor.user_id.as_str()) != Membership::Join
                || levels.user_level(actor.user_id.as_str())
                    < levels.event_level("m.room.canonical_alias", true)
            {
                return Err(MatrixError::forbidden(
                    "You don't have permission to change the visibility of this room",
                ));
            }
            if public && !actor.admin {
                let verdict = self
                    .callbacks
                    .spam_checker
                    .user_may_publish_room(&actor.user_id, room)
                    .await?;
                refused(verdict, "Not allowed to publish room")?;
            }
            let rules = &self.callbacks.third_party_rules;
            if !rules.check_visibility_can_be_modified.is_empty()
                && !rules
                    .check_visibility_can_be_modified(room, &snapshot.state, visibility)
                    .await
            {
                return Err(MatrixError::new(
                    403,
                    ErrCode::Unknown,
                    "Not allowed to publish room",
                ));
            }
        }
        self.storage.set_room_public(room, public).await?;
        Ok(())
    }

    /// A module's `add_room_to_public_room_list` and
    /// `remove_room_from_public_room_list`: made as the module asks, as
    /// Synapse's module API writes the directory directly.
    pub async fn module_set_room_visibility(
        &self,
        _by: &ModuleRef,
        room: &RoomId,
        public: bool,
    ) -> Result<(), MatrixError> {
        if self.storage.room_snapshot(room).await?.is_none() {
            return Err(unknown_room());
        }
        self.storage.set_room_public(room, public).await?;
        Ok(())
    }

    /// A page of the public room directory: this server's, or another
    /// server's (`server`), asked of it over federation.
    pub async fn public_rooms_of(
        &self,
        server: Option<&ServerName>,
        limit: Option<usize>,
        since: Option<String>,
        term: Option<String>,
    ) -> Result<Value, MatrixError> {
        let Some(server) = server else {
            return self.public_rooms_page(limit, since, term).await;
        };
        let mut body = json!({});
        if let Some(limit) = limit {
            body["limit"] = json!(limit);
        }
        if let Some(since) = since {
            body["since"] = json!(since);
        }
        if let Some(term) = term {
            body["filter"] = json!({ "generic_search_term": term });
        }
        self.ask_server(
            server,
            reqwest::Method::POST,
            "/_matrix/federation/v1/publicRooms",
            Some(&body),
        )
        .await
        .map_err(|e| super::federation_failure(e, "Failed to read the server's public rooms"))
    }

    /// A page of this server's public room directory: `limit` rooms from
    /// `since`, those whose name, topic or alias holds `term`.
    pub async fn public_rooms_page(
        &self,
        limit: Option<usize>,
        since: Option<String>,
        term: Option<String>,
    ) -> Result<Value, MatrixError> {
        let rooms = self.storage.public_rooms().await?;
        let mut chunk = Vec::new();
        for room in rooms {
            let mut entry = json!({
                "room_id": room.room_id,
                "num_joined_members": room.num_joined_members,
                "world_readable": false,
                "guest_can_join": false,
                "join_rule": "invite",
            });
            for (event_type, content) in &room.state {
                match event_type.as_str() {
                    "m.room.name" => entry["name"] = content["name"].clone(),
                    "m.room.topic" => entry["topic"] = content["topic"].clone(),
                    "m.room.canonical_alias" => entry["canonical_alias"] = content["alias"].clone(),
                    "m.room.avatar" => entry["avatar_url"] = content["url"].clone(),
                    "m.room.join_rules" => entry["join_rule"] = content["join_rule"].clone(),
                    "m.room.history_visibility" => {
                        entry["world_readable"] =
                            json!(content["history_visibility"] == "world_readable")
                    }
                    "m.room.guest_access" => {
                        entry["guest_can_join"] = json!(content["guest_access"] == "can_join")
                    }
                    "m.room.create" => {
                        if let Some(t) = content.get("type") {
                            entry["room_type"] = t.clone();
                        }
                    }
                    _ => {}
                }
            }
            if let Some(term) = &term {
                let haystack = format!(
                    "{} {} {}",
                    entry["name"].as_str().unwrap_or_default(),
                    entry["topic"].as_str().unwrap_or_default(),
                    entry["canonical_alias"].as_str().unwrap_or_default()
                )
                .to_lowercase();
                if !haystack.contains(term.as_str()) {
                    continue;
                }
            }
            chunk.push(entry);
        }
        let total = chunk.len();
        let start = match since {
            Some(token) => token
                .trim_start_matches('p')
                .parse::<usize>()
                .map_err(|_| MatrixError::new(400, ErrCode::InvalidParam, "invalid since token"))?,
            None => 0,
        };
        let limit = limit.unwrap_or(usize::MAX).max(1);
        let page: Vec<Value> = chunk.into_iter().skip(start).take(limit).collect();
        let mut response = json!({ "chunk": page, "total_room_count_estimate": total });
        // Without a limit, `start + limit` would wrap around to before `start`.
        let end = start.saturating_add(limit);
        if end < total {
            response["next_batch"] = json!(format!("p{end}"));
        }
        if start > 0 {
            response["prev_batch"] = json!(format!("p{}", start.saturating_sub(limit)));
        }
        Ok(response)
    }
}
