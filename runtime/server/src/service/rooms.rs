//! Creating a room (`POST /createRoom`, `ModuleApi::create_room`).

use super::{refused, Actor, MatrixError, MembershipChange};
use crate::api::parse_json;
use crate::events::{build_event, check_auth, EventDraft, SUPPORTED_ROOM_VERSIONS};
use crate::homeserver::Homeserver;
use crate::storage::{NewRoom, Persisted, RoomSnapshot, SnapshotUpdate, StorageError};
use axon::callbacks::{JsonObject, Visibility};
use axon::{ErrCode, Membership};
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, UserId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The body of `POST /createRoom`.
#[derive(Debug, Default, Deserialize)]
pub struct CreateRoomRequest {
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub room_alias_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub invite: Vec<String>,
    #[serde(default)]
    pub room_version: Option<String>,
    #[serde(default)]
    pub creation_content: Option<Map<String, Value>>,
    #[serde(default)]
    pub initial_state: Vec<InitialState>,
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub is_direct: bool,
    #[serde(default)]
    pub power_level_content_override: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Map<String, Value>,
}

/// What the room starts with, checked before anything is stored.
struct Plan {
    room_id: OwnedRoomId,
    room_version: String,
    preset: String,
    public: bool,
    alias: Option<OwnedRoomAliasId>,
    invites: Vec<OwnedUserId>,
    /// `initial_state` memberships, sent through the membership service
    /// once the room exists, as invites are.
    memberships: Vec<MembershipChange>,
}

fn invalid(message: impl Into<String>) -> MatrixError {
    MatrixError::new(400, ErrCode::InvalidParam, message)
}

impl Homeserver {
    /// Creates a room as `actor` from a `POST /createRoom` body; returns its
    /// ID and alias. `on_create_room` may change the body first; then the
    /// spam checks (`user_may_create_room`, `user_may_publish_room`,
    /// `user_may_create_room_alias`, skipped for admins where Synapse skips
    /// them) and `check_visibility_can_be_modified` run before anything is
    /// stored, and `check_event_allowed` runs on each event the room starts
    /// with. Then the invites and the memberships of `initial_state` go
    /// through the membership service, as any membership does.
    pub async fn create_room(
        &self,
        actor: &Actor,
        mut body: JsonObject,
    ) -> Result<(OwnedRoomId, Option<OwnedRoomAliasId>), MatrixError> {
        let user = actor.user_id.clone();
        if actor.is_ratelimited() {
            self.ratelimit_user("rc_room_creation", &user, self.config.rc_room_creation)
                .await?;
        }
        let rules = &self.callbacks.third_party_rules;
        if !rules.on_create_room.is_empty() {
            let requester = axon::callbacks::Requester {
                user_id: user.clone(),
                device_id: actor.device_id.clone(),
                is_guest: false,
                shadow_banned: actor.shadow_banned,
            };
            rules
                .on_create_room(&requester, &mut body, actor.admin)
                .await?;
        }
        let request: CreateRoomRequest = parse_json(Value::Object(body.clone()))?;
        if !actor.admin {
            let verdict = self
                .callbacks
                .spam_checker
                .user_may_create_room(&user, &body)
                .await?;
            refused(verdict, "You are not permitted to create rooms")?;
        }
        let plan = self.plan_room(actor, &request).await?;
        if let Some(alias) = &plan.alias {
            match self.storage.create_alias(alias, &plan.room_id, &user).await {
                Ok(()) => {}
                Err(StorageError::Conflict(_)) => {
                    return Err(MatrixError::new(
                        400,
                        ErrCode::RoomInUse,
                        "Room alias already taken",
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let created = self.create_room_events(actor, &plan, &request).await;
        if created.is_err() {
            if let Some(alias) = &plan.alias {
                let _ = self.storage.delete_alias(alias).await;
            }
        }
        created?;
        // Then the invites and memberships, one by one through the usual
        // membership path (spam checks included), as Synapse sends them:
        // modules see the new room.
        for invitee in &plan.invites {
            let mut change = MembershipChange::new(&plan.room_id, invitee, Membership::Invite);
            if request.is_direct {
                change.extra.insert("is_direct".into(), json!(true));
            }
            // Checked as a whole above, as Synapse does.
            change.ratelimit = false;
            self.change_membership(actor, change).await?;
        }
        for change in plan.memberships {
            self.change_membership(actor, change).await?;
        }
        Ok((plan.room_id, plan.alias))
    }

    /// Checks the request and the modules' verdicts on it; nothing is stored.
    async fn plan_room(
        &self,
        actor: &Actor,
        request: &CreateRoomRequest,
    ) -> Result<Plan, MatrixError> {
        let room_version = request.room_version.clone().unwrap_or_else(|| "10".into());
        if !SUPPORTED_ROOM_VERSIONS.contains(&room_version.as_str()) {
            return Err(MatrixError::new(
                400,
                ErrCode::UnsupportedRoomVersion,
                format!("Your homeserver does not support the features required to join this room (room version {room_version})"),
            ));
        }
        let public = request.visibility.as_deref() == Some("public");
        let preset = request.preset.clone().unwrap_or_else(|| {
            if public {
                "public_chat".into()
            } else {
                "private_chat".into()
            }
        });
        if !matches!(
            preset.as_str(),
            "public_chat" | "private_chat" | "trusted_private_chat"
        ) {
            return Err(MatrixError::new(
                400,
                ErrCode::BadJson,
                format!("unknown preset `{preset}`"),
            ));
        }
        let mut invites = Vec::with_capacity(request.invite.len());
        for invitee in &request.invite {
            invites.push(
                UserId::parse(invitee)
                    .map_err(|_| invalid(format!("invalid user ID in invite: {invitee}")))?,
            );
        }
        let room_id = OwnedRoomId::try_from(format!(
            "!{}:{}",
            super::random_string(18),
            self.server_name()
        ))
        .map_err(|e| MatrixError::internal(e.to_string()))?;
        let mut memberships = Vec::new();
        for initial in &request.initial_state {
            if initial.event_type != "m.room.member" {
                continue;
            }
            let target = UserId::parse(&initial.state_key).map_err(|_| {
                invalid(format!(
                    "invalid user ID in initial_state m.room.member: {}",
                    initial.state_key
                ))
            })?;
            let mut content = initial.content.clone();
            let membership = content
                .remove("membership")
                .and_then(|m| m.as_str().and_then(Membership::parse))
                .ok_or_else(|| {
                    MatrixError::new(
                        400,
                        ErrCode::BadJson,
                        "an initial_state m.room.member needs a membership",
                    )
                })?;
            let reason = content
                .remove("reason")
                .and_then(|r| r.as_str().map(str::to_string));
            let mut change =
                MembershipChange::new(&room_id, &target, membership).with_reason(reason);
            change.extra = content;
            memberships.push(change);
        }
        let invite_count = invites.len()
            + memberships
                .iter()
                .filter(|m| m.membership == Membership::Invite)
                .count();
        if invite_count > 0 && actor.is_ratelimited() && !actor.shadow_banned {
            let limit = self
                .user_limit(
                    "rc_invites.per_room",
                    &actor.user_id,
                    self.config.rc_invites.per_room,
                )
                .await?;
            if !self.rate_limiter.allows(
                "rc_invites.per_room",
                actor.user_id.as_str(),
                limit,
                invite_count,
            ) {
                return Err(MatrixError::new(
                    400,
                    ErrCode::Unknown,
                    "Cannot invite so many users at once",
                ));
            }
        }
        if actor.shadow_banned {
            // Their invites silently go nowhere, as in Synapse.
            invites.clear();
        }
        let alias = match &request.room_alias_name {
            Some(local) => {
                let bad = || invalid("Invalid characters in room alias");
                if local.is_empty() || local.contains(':') || local.contains(char::is_whitespace) {
                    return Err(bad());
                }
                Some(
                    RoomAliasId::parse(format!("#{local}:{}", self.server_name()))
                        .map_err(|_| bad())?,
                )
            }
            None => None,
        };
        let spam = &self.callbacks.spam_checker;
        if public {
            if !actor.admin {
                let verdict = spam.user_may_publish_room(&actor.user_id, &room_id).await?;
                refused(verdict, "Not allowed to publish room")?;
            }
            let allowed = self
                .callbacks
                .third_party_rules
                .check_visibility_can_be_modified(&room_id, &Default::default(), Visibility::Public)
                .await;
            if !allowed {
                return Err(MatrixError::new(
                    403,
                    ErrCode::Unknown,
                    "Room visibility value not allowed.",
                ));
            }
        }
        if let Some(alias) = &alias {
            let verdict = spam
                .user_may_create_room_alias(&actor.user_id, alias)
                .await?;
            refused(verdict, "This user is not permitted to create this alias")?;
        }
        Ok(Plan {
            room_id,
            room_version,
            preset,
            public,
            alias,
            invites,
            memberships,
        })
    }

    /// Builds and stores the events the room starts with, in one commit.
    async fn create_room_events(
        &self,
        actor: &Actor,
        plan: &Plan,
        request: &CreateRoomRequest,
    ) -> Result<(), MatrixError> {
        let creator = &actor.user_id;
        let empty = RoomSnapshot {
            room_id: plan.room_id.clone(),
            room_version: plan.room_version.clone(),
            is_public: plan.public,
            state: Default::default(),
            extremities: Vec::new(),
            max_depth: 0,
            joined: 0,
            joined_servers: Default::default(),
        };
        let mut snapshot = empty.clone();
        let state_event = |event_type: &str, state_key: &str, content: Value| EventDraft {
            sender: creator.clone(),
            event_type: event_type.into(),
            state_key: Some(state_key.into()),
            content: match content {
                Value::Object(m) => m,
                _ => Map::new(),
            },
        };
        let mut create_content = request.creation_content.clone().unwrap_or_default();
        create_content.insert("room_version".into(), json!(plan.room_version));
        // Until room version 11, the creator is named in the content.
        if crate::events::room_version_rules(&plan.room_version)
            .authorization
            .use_room_create_sender
        {
            create_content.remove("creator");
        } else {
            create_content.insert("creator".into(), json!(creator));
        }
        // Synapse's private presets let every member invite.
        let invite_level = if plan.preset == "public_chat" { 50 } else { 0 };
        let mut power_levels = json!({
            "users": { creator.as_str(): 100 },
            "users_default": 0,
            "events": {
                "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                "m.room.server_acl": 100, "m.room.encryption": 100
            },
            "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
            "invite": invite_level, "historical": 100
        });
        if plan.preset == "trusted_private_chat" {
            for invitee in &plan.invites {
                power_levels["users"][invitee.as_str()] = json!(100);
            }
        }
        if let Some(overrides) = &request.power_level_content_override {
            for (k, v) in overrides {
                power_levels[k] = v.clone();
            }
        }
        let creator_member = {
            let mut content = Map::new();
            content.insert("membership".into(), json!("join"));
            if let Some(user) = self.storage.get_user(creator).await? {
                if let Some(name) = user.displayname {
                    content.insert("displayname".into(), json!(name));
                }
                if let Some(avatar) = user.avatar_url {
                    content.insert("avatar_url".into(), json!(avatar));
                }
            }
            Value::Object(content)
        };
        // The events the server makes itself: trusted, not auth-checked.
        let mut drafts = vec![
            state_event("m.room.create", "", Value::Object(create_content)),
            state_event("m.room.member", creator.as_str(), creator_member),
            state_event("m.room.power_levels", "", power_levels),
        ];
        if let Some(alias) = &plan.alias {
            drafts.push(state_event(
                "m.room.canonical_alias",
                "",
                json!({ "alias": alias }),
            ));
        }
        let join_rule = if plan.preset == "public_chat" {
            "public"
        } else {
            "invite"
        };
        drafts.push(state_event(
            "m.room.join_rules",
            "",
            json!({ "join_rule": join_rule }),
        ));
        drafts.push(state_event(
            "m.room.history_visibility",
            "",
            json!({ "history_visibility": "shared" }),
        ));
        if plan.preset != "public_chat" {
            drafts.push(state_event(
                "m.room.guest_access",
                "",
                json!({ "guest_access": "can_join" }),
            ));
        }
        let trusted = drafts.len();
        // What the creator asked for goes through the auth rules like any
        // event; its memberships come after, through the membership service.
        for initial in &request.initial_state {
            if initial.event_type == "m.room.member" {
                continue;
            }
            drafts.push(state_event(
                &initial.event_type,
                &initial.state_key,
                Value::Object(initial.content.clone()),
            ));
        }
        if let Some(name) = &request.name {
            drafts.push(state_event("m.room.name", "", json!({ "name": name })));
        }
        if let Some(topic) = &request.topic {
            drafts.push(state_event("m.room.topic", "", json!({ "topic": topic })));
        }
        let now = axon::time::now_ms();
        let mut events = Vec::with_capacity(drafts.len());
        // The content hashes of the events built so far, which versions 1
        // and 2 write beside each reference.
        let mut hashes = crate::events::ReferenceHashes::new();
        for (i, draft) in drafts.into_iter().enumerate() {
            if i >= trusted {
                check_auth(&snapshot, &draft)?;
            }
            let built = build_event(&snapshot, &draft, now, &hashes, &self.server_keys)?;
            let built = self.allow_event(&snapshot, built, draft, &hashes).await?;
            if let Some(hash) = built.pdu.get("hashes").and_then(|h| h["sha256"].as_str()) {
                hashes.insert(built.new.event_id.clone(), hash.to_string());
            }
            snapshot.apply(&SnapshotUpdate::from(&built.new));
            events.push(built.new);
        }
        let room = NewRoom {
            room_id: plan.room_id.clone(),
            room_version: plan.room_version.clone(),
            creator: creator.clone(),
            is_public: plan.public,
            created_ts: now,
        };
        let work = self.new_event_work(&empty, &events);
        let stored = self
            .storage
            .persist_events(Some(room), events, None)
            .await?;
        debug_assert!(stored.iter().all(|p| matches!(p, Persisted::New { .. })));
        self.announce_new_events(work);
        Ok(())
    }
}
