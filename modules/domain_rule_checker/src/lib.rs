//! Port of [synapse-domain-rule-checker]: invites and joins allowed by the
//! servers of the users involved (closed federations). See this crate's README.
//!
//! [synapse-domain-rule-checker]: https://github.com/matrix-org/synapse-domain-rule-checker

use axon::prelude::*;
use std::collections::HashMap;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Inviter's domain → the domains its users may invite.
    #[serde(default)]
    pub domain_mapping: HashMap<String, Vec<String>>,
    /// What an inviter whose domain is not in `domain_mapping` may do. Required.
    pub can_invite_if_not_in_domain_mapping: bool,
    #[serde(default)]
    pub can_only_join_rooms_with_invite: bool,
    #[serde(default)]
    pub can_only_invite_during_room_creation: bool,
    #[serde(default = "yes")]
    pub can_invite_by_third_party_id: bool,
    #[serde(default)]
    pub domains_prevented_from_being_invited_to_published_rooms: Vec<String>,
}

fn yes() -> bool {
    true
}

pub struct DomainRuleChecker {
    config: Config,
    api: ModuleApi,
}

/// Everything after the first `:` of a user ID.
fn domain(user: &str) -> &str {
    user.split_once(':').map(|(_, d)| d).unwrap_or("")
}

impl DomainRuleChecker {
    /// A room looks new while its state has a create event and every
    /// membership is the creator's, sent by the creator, or an invite.
    async fn looks_new(&self, room: &RoomId) -> bool {
        let Ok(state) = self
            .api
            .get_room_state(
                room,
                Some(&[("m.room.create", None), ("m.room.member", None)]),
            )
            .await
        else {
            return false;
        };
        let Some(create) = state.get(&("m.room.create".to_string(), String::new())) else {
            return false;
        };
        let creator = create
            .content
            .get("creator")
            .and_then(|c| c.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| create.sender.to_string());
        let all_early = state.of_type("m.room.member").all(|event| {
            event.state_key.as_deref() == Some(creator.as_str())
                || event.sender.as_str() == creator
                || event.content.get("membership").and_then(|m| m.as_str()) == Some("invite")
        });
        all_early
    }

    /// The one routine behind both invite checks; `invitee` is None for a
    /// third-party identifier.
    async fn may_invite(&self, inviter: &UserId, invitee: Option<&UserId>, room: &RoomId) -> bool {
        if self.config.can_only_invite_during_room_creation
            && self.api.is_mine(inviter)
            && !self.looks_new(room).await
        {
            return false;
        }
        let Some(invitee) = invitee else {
            return self.config.can_invite_by_third_party_id;
        };
        let invitee_domain = domain(invitee.as_str());
        let prevented = &self
            .config
            .domains_prevented_from_being_invited_to_published_rooms;
        if prevented.iter().any(|d| d == invitee_domain)
            && self
                .api
                .room_is_in_public_room_list(room)
                .await
                .unwrap_or(false)
        {
            return false;
        }
        match self.config.domain_mapping.get(domain(inviter.as_str())) {
            None => self.config.can_invite_if_not_in_domain_mapping,
            Some(allowed) => allowed.iter().any(|d| d == invitee_domain),
        }
    }
}

fn verdict(allowed: bool) -> SpamCheck {
    if allowed {
        SpamCheck::NotSpam
    } else {
        SpamCheck::deny(ErrCode::Forbidden)
    }
}

/// Allows invites and joins by the servers of the users involved.
#[module]
impl DomainRuleChecker {
    fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(DomainRuleChecker {
            config,
            api: api.clone(),
        })
    }

    #[callback(spam_checker)]
    async fn user_may_invite(
        &self,
        inviter: &UserId,
        invitee: &UserId,
        room: &RoomId,
    ) -> SpamCheck {
        verdict(self.may_invite(inviter, Some(invitee), room).await)
    }

    #[callback(spam_checker)]
    async fn user_may_send_3pid_invite(
        &self,
        inviter: &UserId,
        _medium: &str,
        _address: &str,
        room: &RoomId,
    ) -> SpamCheck {
        verdict(self.may_invite(inviter, None, room).await)
    }

    #[callback(spam_checker)]
    async fn user_may_join_room(
        &self,
        _user: &UserId,
        _room: &RoomId,
        is_invited: bool,
    ) -> SpamCheck {
        verdict(!self.config.can_only_join_rooms_with_invite || is_invited)
    }
}
