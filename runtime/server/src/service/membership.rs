//! Changing a membership: join, invite, leave, kick, ban, unban — from the
//! client endpoints, `PUT /state/m.room.member`, `createRoom` (its invites
//! and the memberships of its `initial_state`), deactivation and modules.

use super::events::shadow_event_id;
use super::{refused, Actor, MatrixError, SendOptions};
use crate::events::{membership_of, EventDraft};
use crate::homeserver::Homeserver;
use axon::callbacks::JsonObject;
use axon::{ErrCode, Membership};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::json;

/// A membership `target` is to have in `room`.
#[derive(Debug, Clone)]
pub struct MembershipChange {
    pub room: OwnedRoomId,
    pub target: OwnedUserId,
    pub membership: Membership,
    pub reason: Option<String>,
    /// More content, such as `is_direct`.
    pub extra: JsonObject,
    /// Whether the join and invite rate limits apply (they do for a
    /// client's request; `createRoom`'s `invite` list is checked as a whole
    /// first, as Synapse does).
    pub ratelimit: bool,
    /// Servers to join a room through that no local user is in.
    pub via: Vec<ruma::OwnedServerName>,
}

impl MembershipChange {
    pub fn new(room: &RoomId, target: &UserId, membership: Membership) -> Self {
        MembershipChange {
            room: room.to_owned(),
            target: target.to_owned(),
            membership,
            reason: None,
            extra: JsonObject::new(),
            ratelimit: true,
            via: Vec::new(),
        }
    }

    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }
}

fn not_found_room() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "No known servers")
}

impl Homeserver {
    /// Changes a membership as `actor`. Joins and invites are rate-limited
    /// for clients (`rc_joins.local`, `rc_invites.*`); they go through the
    /// spam checker (`user_may_join_room`, `user_may_invite`) unless the
    /// actor is a server admin; a shadow-banned user's invites silently go
    /// nowhere. Joins and invites of local users carry their profile, as
    /// Synapse's do. A join of a user already joined returns that join.
    pub async fn change_membership(
        &self,
        actor: &Actor,
        change: MembershipChange,
    ) -> Result<OwnedEventId, MatrixError> {
        let MembershipChange {
            room,
            target,
            membership,
            reason,
            extra,
            ratelimit,
            via,
        } = change;
        let sender = &actor.user_id;
        let known = self.storage.room_snapshot(&room).await?;
        let resident = known.as_deref().is_some_and(|s| self.is_resident(s));
        // A leave goes to another server when the room or the invite came
        // from one; a room of this server that its members all left is
        // left here.
        let own_outside = match membership {
            Membership::Join | Membership::Knock => true,
            Membership::Leave => {
                let inviter = known.as_deref().and_then(|s| {
                    s.state
                        .get(&("m.room.member".to_string(), target.to_string()))
                        .map(|m| m.sender.server_name().to_owned())
                });
                room.server_name() != Some(&*self.server_name)
                    || inviter.is_some_and(|s| s != self.server_name)
            }
            _ => false,
        };
        if !resident && own_outside && *sender == target {
            return self
                .change_remotely(
                    actor,
                    &room,
                    membership,
                    known.as_deref(),
                    via,
                    reason,
                    extra,
                )
                .await;
        }
        let snapshot = known.ok_or_else(not_found_room)?;
        let current = membership_of(&snapshot, target.as_str());
        if actor.guest {
            let own =
                *sender == target && matches!(membership, Membership::Join | Membership::Leave);
            let admits_guests = snapshot
                .state
                .get(&("m.room.guest_access".to_string(), String::new()))
                .and_then(|e| {
                    e.content
                        .get("guest_access")
                        .and_then(|g| g.as_str())
                        .map(|g| g == "can_join")
                })
                .unwrap_or(false);
            if !own || (membership == Membership::Join && !admits_guests) {
                return Err(super::guests::guest_forbidden());
            }
        }
        if membership == Membership::Join && current == Membership::Join {
            if let Some(entry) = snapshot
                .state
                .get(&("m.room.member".to_string(), target.to_string()))
            {
                return Ok(entry.event_id.clone());
            }
        }
        if ratelimit && actor.is_ratelimited() {
            match membership {
                Membership::Join => {
                    self.ratelimit_user("rc_joins.local", sender, self.config.rc_joins.local)
                        .await?
                }
                Membership::Invite => {
                    let limits = &self.config.rc_invites;
                    self.rate_limiter.check(
                        "rc_invites.per_room",
                        room.as_str(),
                        limits.per_room,
                    )?;
                    self.ratelimit_user("rc_invites.per_user", &target, limits.per_user)
                        .await?;
                    self.ratelimit_user("rc_invites.per_issuer", sender, limits.per_issuer)
                        .await?;
                }
                _ => {}
            }
        }
        if membership == Membership::Invite && actor.shadow_banned {
            return Ok(shadow_event_id());
        }
        if !actor.admin {
            let spam = &self.callbacks.spam_checker;
            match membership {
                Membership::Join if *sender == target => {
                    let invited = current == Membership::Invite;
                    let verdict = spam.user_may_join_room(&target, &room, invited).await?;
                    refused(verdict, "Not allowed to join this room")?;
                }
                Membership::Invite => {
                    let verdict = spam.user_may_invite(sender, &target, &room).await?;
                    refused(verdict, "Invites have been disabled on this server")?;
                }
                _ => {}
            }
        }
        let mut content = extra;
        if membership == Membership::Join && *sender == target && current != Membership::Invite {
            if let Some(voucher) = self.restricted_join_voucher(&snapshot, &target).await? {
                content.insert("join_authorised_via_users_server".into(), json!(voucher));
            }
        }
        content.insert("membership".into(), json!(membership));
        if let Some(reason) = reason {
            content.insert("reason".into(), json!(reason));
        }
        if matches!(
            membership,
            Membership::Join | Membership::Invite | Membership::Knock
        ) {
            if let Some(user) = self.storage.get_user(&target).await? {
                if let Some(name) = user.displayname {
                    content.insert("displayname".into(), json!(name));
                }
                if let Some(avatar) = user.avatar_url {
                    content.insert("avatar_url".into(), json!(avatar));
                }
            }
        }
        let draft = EventDraft {
            sender: sender.clone(),
            event_type: "m.room.member".into(),
            state_key: Some(target.to_string()),
            content,
        };
        let joined = self
            .send_event(actor, &room, draft, SendOptions::default())
            .await?;
        if membership == Membership::Join && current != Membership::Join {
            self.carry_over_from_predecessor(&snapshot, &target).await;
        }
        Ok(joined)
    }

    /// A local user's join, knock or leave of a room no local user is in:
    /// through the server that invited them, the servers the request names
    /// and the server of the room's ID. A join goes through
    /// `user_may_join_room` first (skipped for server admins, as for local
    /// rooms).
    #[allow(clippy::too_many_arguments)]
    async fn change_remotely(
        &self,
        actor: &Actor,
        room: &RoomId,
        membership: Membership,
        known: Option<&crate::storage::RoomSnapshot>,
        via: Vec<ruma::OwnedServerName>,
        reason: Option<String>,
        extra: JsonObject,
    ) -> Result<OwnedEventId, MatrixError> {
        let user = &actor.user_id;
        let own = known.and_then(|s| {
            s.state
                .get(&("m.room.member".to_string(), user.to_string()))
                .map(|m| {
                    (
                        membership_of(s, user.as_str()),
                        m.sender.server_name().to_owned(),
                    )
                })
        });
        let invite = own
            .as_ref()
            .filter(|(m, _)| *m == Membership::Invite)
            .map(|(_, server)| server.clone());
        let mut servers: Vec<ruma::OwnedServerName> = invite.iter().cloned().collect();
        for server in via
            .into_iter()
            .chain(room.server_name().map(ToOwned::to_owned))
        {
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
        if membership == Membership::Leave {
            if !own.is_some_and(|(m, _)| matches!(m, Membership::Invite | Membership::Knock)) {
                return Err(MatrixError::forbidden("You are not in this room"));
            }
            let mut content = extra;
            if let Some(reason) = reason {
                content.insert("reason".into(), json!(reason));
            }
            return self.leave_remote_room(user, room, &servers, content).await;
        }
        if servers.iter().all(|s| *s == self.server_name) {
            return Err(not_found_room());
        }
        if membership == Membership::Join && actor.is_ratelimited() {
            // Joins through another server cost more: Synapse's remote limit.
            self.ratelimit_user("rc_joins.remote", user, self.config.rc_joins.remote)
                .await?;
        }
        if membership == Membership::Join && !actor.admin {
            let verdict = self
                .callbacks
                .spam_checker
                .user_may_join_room(user, room, invite.is_some())
                .await?;
            refused(verdict, "Not allowed to join this room")?;
        }
        let mut content = extra;
        if let Some(reason) = reason {
            content.insert("reason".into(), json!(reason));
        }
        if let Some(profile) = self.storage.get_user(user).await? {
            if let Some(name) = profile.displayname {
                content.insert("displayname".into(), json!(name));
            }
            if let Some(avatar) = profile.avatar_url {
                content.insert("avatar_url".into(), json!(avatar));
            }
        }
        if membership == Membership::Knock {
            return self.knock_remote_room(user, room, &servers, content).await;
        }
        self.join_remote_room(user, room, &servers, content).await
    }

    /// For a join to a restricted room the user may not join otherwise: a
    /// member who may invite, to vouch for them, if they are joined to one
    /// of the rooms the join rule allows (`m.room_membership`); `None` when
    /// the room is not restricted or they are in none of them (the auth
    /// rules then refuse the join).
    async fn restricted_join_voucher(
        &self,
        room: &crate::storage::RoomSnapshot,
        user: &UserId,
    ) -> Result<Option<String>, MatrixError> {
        let Some(rules) = room
            .state
            .get(&("m.room.join_rules".to_string(), String::new()))
            .map(|e| e.content.clone())
        else {
            return Ok(None);
        };
        let join_rule = rules
            .get("join_rule")
            .and_then(|r| r.as_str())
            .unwrap_or_default();
        if !matches!(join_rule, "restricted" | "knock_restricted") {
            return Ok(None);
        }
        let allowed_rooms = rules
            .get("allow")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .filter(|c| c.get("type").and_then(|t| t.as_str()) == Some("m.room_membership"))
            .filter_map(|c| c.get("room_id").and_then(|r| r.as_str()))
            .filter_map(|r| ruma::OwnedRoomId::try_from(r).ok());
        let mut qualifies = false;
        for allowed in allowed_rooms {
            if matches!(
                self.storage.membership(user, &allowed).await?,
                Some((Membership::Join, _))
            ) {
                qualifies = true;
                break;
            }
        }
        if !qualifies {
            return Ok(None);
        }
        let levels = crate::events::PowerLevels::of(room);
        Ok(room
            .state
            .of_type("m.room.member")
            .filter(|m| m.content.get("membership").and_then(|v| v.as_str()) == Some("join"))
            .filter_map(|m| m.state_key.clone())
            .filter(|u| {
                UserId::parse(u).is_ok_and(|u| u.server_name() == self.server_name)
                    && levels.user_level(u) >= levels.invite
            })
            .max_by_key(|u| levels.user_level(u)))
    }

    /// `POST /rooms/{room}/unban`: a leave of a banned user; 403 if they are
    /// not banned.
    pub async fn unban(
        &self,
        actor: &Actor,
        room: &RoomId,
        target: &UserId,
        reason: Option<String>,
    ) -> Result<OwnedEventId, MatrixError> {
        let current = self.storage.membership(target, room).await?;
        if !matches!(current, Some((Membership::Ban, _))) {
            return Err(MatrixError::forbidden(format!("{target} is not banned")));
        }
        let change = MembershipChange::new(room, target, Membership::Leave).with_reason(reason);
        self.change_membership(actor, change).await
    }
}

impl Homeserver {
    /// `POST /rooms/{room}/forget`: a room the user left leaves their syncs
    /// and their reach (its history too) until they join again; 400 while
    /// they are joined, as Synapse answers.
    pub async fn forget_room(&self, actor: &Actor, room: &RoomId) -> Result<(), MatrixError> {
        match self.storage.forget_room(&actor.user_id, room).await {
            Err(crate::storage::StorageError::Conflict(message)) => {
                Err(MatrixError::new(400, ErrCode::Unknown, message))
            }
            other => Ok(other?),
        }
    }
}
