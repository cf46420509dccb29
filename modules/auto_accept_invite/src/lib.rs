//! Port of [synapse-auto-accept-invite]: local users join the rooms they are
//! invited to, optionally only direct messages or only from local users,
//! and direct messages are recorded in `m.direct`. See this crate's README.
//!
//! [synapse-auto-accept-invite]: https://github.com/matrix-org/synapse-auto-accept-invite

use axon::prelude::*;
use serde_json::Value;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub accept_invites_only_for_direct_messages: bool,
    #[serde(default)]
    pub accept_invites_only_from_local_users: bool,
    /// The worker that acts; Axon is one process, whose name is none, so
    /// any value here turns the module off (as it would on Synapse's main process).
    #[serde(default)]
    pub worker_to_run_on: Option<String>,
}

pub struct InviteAutoAccepter {
    config: Config,
    api: ModuleApi,
}

/// Attempts at joining, with the waits before each (2^n seconds after the first).
const RETRY_DELAYS_S: [u64; 5] = [0, 1, 2, 4, 8];

impl InviteAutoAccepter {
    fn wanted(&self, event: &Event) -> Option<(OwnedUserId, bool)> {
        if event.event_type != "m.room.member"
            || event.content.get("membership").and_then(Value::as_str) != Some("invite")
        {
            return None;
        }
        let invitee = OwnedUserId::try_from(event.state_key.as_deref()?).ok()?;
        if !self.api.is_mine(&invitee) {
            return None;
        }
        let is_direct = event.content.get("is_direct") == Some(&Value::Bool(true));
        if self.config.accept_invites_only_for_direct_messages && !is_direct {
            return None;
        }
        if self.config.accept_invites_only_from_local_users && !self.api.is_mine(&event.sender) {
            return None;
        }
        Some((invitee, is_direct))
    }

    /// Adds the room to the invitee's `m.direct` under the inviter, unless
    /// the inviter's entry is not a list.
    async fn mark_direct(
        &self,
        invitee: &UserId,
        inviter: &UserId,
        room: &RoomId,
    ) -> Result<(), ModuleError> {
        let mut direct = self
            .api
            .get_global_account_data(invitee, "m.direct")
            .await?
            .unwrap_or_default();
        let rooms = direct
            .entry(inviter.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        let Some(rooms) = rooms.as_array_mut() else {
            return Ok(());
        };
        if !rooms.iter().any(|r| r.as_str() == Some(room.as_str())) {
            rooms.push(Value::String(room.to_string()));
        }
        self.api
            .put_global_account_data(invitee, "m.direct", direct)
            .await
    }
}

/// Joins local users to the rooms they are invited to.
#[module]
impl InviteAutoAccepter {
    fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(InviteAutoAccepter {
            config,
            api: api.clone(),
        })
    }

    #[callback(third_party_rules)]
    async fn on_new_event(&self, event: &Event, _state: &StateMap) {
        if self.config.worker_to_run_on.is_some() {
            return;
        }
        let Some((invitee, is_direct)) = self.wanted(event) else {
            return;
        };
        let api = self.api.clone();
        let room = event.room_id.clone();
        let who = invitee.clone();
        api.clone().run_in_background(async move {
            for (attempt, delay) in RETRY_DELAYS_S.iter().enumerate() {
                api.sleep(Duration::from_secs(*delay)).await;
                match api
                    .update_room_membership(&who, &who, &room, Membership::Join, None)
                    .await
                {
                    Ok(_) => return,
                    Err(e) => tracing::warn!(
                        "auto-accepting {who}'s invite to {room} (attempt {}): {e}",
                        attempt + 1
                    ),
                }
            }
        });
        if is_direct {
            if let Err(e) = self
                .mark_direct(&invitee, &event.sender, &event.room_id)
                .await
            {
                tracing::warn!(
                    "recording {invitee}'s direct message room {}: {e}",
                    event.room_id
                );
            }
        }
    }
}
