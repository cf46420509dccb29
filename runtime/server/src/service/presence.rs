//! Presence: setting it, and whose presence a user receives (room-mates,
//! plus whoever the presence router modules add).

use super::MatrixError;
use crate::homeserver::Homeserver;
use crate::storage::PresenceRow;
use axon::callbacks::{InterestedUsers, Presence, PresenceState};
use axon::ErrCode;
use ruma::{OwnedUserId, UserId};
use std::collections::BTreeSet;

/// Bytes of a presence status message (Synapse has no limit; a status
/// travels to every room-mate's sync).
const MAX_STATUS_MSG_LEN: usize = 4096;

impl Homeserver {
    /// `PUT /presence/{user}/status` (with a status message, `Some`), and a
    /// `/sync` that says the user is there (`None`; written only when it
    /// changes). Changes are rate-limited per user (`rc_presence.per_user`):
    /// a `PUT` over the limit gets 429, a sync's change is skipped.
    pub async fn set_presence(
        &self,
        user: &UserId,
        presence: &str,
        status_msg: Option<Option<String>>,
    ) -> Result<(), MatrixError> {
        if !matches!(presence, "online" | "offline" | "unavailable") {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("Invalid presence state `{presence}`"),
            ));
        }
        if let Some(Some(msg)) = &status_msg {
            if msg.len() > MAX_STATUS_MSG_LEN {
                return Err(MatrixError::new(
                    400,
                    ErrCode::TooLarge,
                    format!("Status message is too long (max {MAX_STATUS_MSG_LEN})"),
                ));
            }
        }
        let from_sync = status_msg.is_none();
        if from_sync && self.storage.presence_state(user).await?.as_deref() == Some(presence) {
            return Ok(());
        }
        let current = self.storage.get_presence(user).await?;
        let status_msg = match status_msg {
            Some(msg) => msg,
            None => {
                if current.as_ref().map(|p| p.presence.as_str()) == Some(presence) {
                    return Ok(());
                }
                current.and_then(|p| p.status_msg)
            }
        };
        let limit = self.config.rc_presence.per_user;
        if let Err(limited) = self.ratelimit_user("rc_presence", user, limit).await {
            return if from_sync { Ok(()) } else { Err(limited) };
        }
        self.storage
            .set_presence(user, presence, status_msg.clone(), axon::time::now_ms())
            .await?;
        // The servers of the users sharing a room with them hear of it.
        let servers: Vec<ruma::OwnedServerName> = self
            .storage
            .other_servers_sharing_rooms(user)
            .await?
            .into_iter()
            .filter_map(|s| ruma::OwnedServerName::try_from(s).ok())
            .collect();
        let mut update = serde_json::json!({
            "user_id": user,
            "presence": presence,
            "last_active_ago": 0,
            "currently_active": presence == "online",
        });
        if let Some(msg) = status_msg {
            update["status_msg"] = serde_json::json!(msg);
        }
        let edu = serde_json::json!({ "edu_type": "m.presence", "content": { "push": [update] } });
        self.queue_edu(&servers, &edu).await?;
        Ok(())
    }

    /// `GET /presence/{user}/status`: a user's presence, for `observer` if
    /// they may see it — themselves, someone sharing a room with them, or
    /// whoever a presence router's `get_interested_users` names (Synapse's
    /// `is_visible`); 403 otherwise.
    pub async fn presence_of(
        &self,
        observer: &UserId,
        observed: &UserId,
    ) -> Result<Option<PresenceRow>, MatrixError> {
        let mut visible = observer == observed;
        let router = &self.callbacks.presence_router;
        if !visible && !router.get_interested_users.is_empty() {
            visible = match router.get_interested_users(observer).await {
                InterestedUsers::All => true,
                InterestedUsers::Users(users) => users.iter().any(|u| u == observed),
            };
        }
        if !visible {
            let sharing = self.storage.users_sharing_rooms(observer).await?;
            visible = sharing.iter().any(|u| u == observed);
        }
        if !visible {
            return Err(MatrixError::forbidden(
                "You are not allowed to see their presence.",
            ));
        }
        Ok(self.storage.get_presence(observed).await?)
    }

    /// Whether a presence router module may route anyone's presence to
    /// anyone, so every presence change may concern every `/sync`.
    pub fn presence_is_routed(&self) -> bool {
        let router = &self.callbacks.presence_router;
        !router.get_interested_users.is_empty() || !router.get_users_for_states.is_empty()
    }

    /// Of the presence changes a sync covers (`changed`), those `user`
    /// receives: their room-mates', whoever `get_interested_users` adds (all
    /// users for `All`), and what `get_users_for_states` routes to them.
    pub async fn presence_for(
        &self,
        user: &UserId,
        changed: Vec<PresenceRow>,
    ) -> Result<Vec<PresenceRow>, MatrixError> {
        // Most syncs follow no presence change: then the user's room-mates
        // (as many as the members of their rooms) are never looked up.
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let mut users: BTreeSet<OwnedUserId> = self
            .storage
            .users_sharing_rooms(user)
            .await?
            .into_iter()
            .collect();
        let router = &self.callbacks.presence_router;
        let mut everyone = false;
        if !router.get_interested_users.is_empty() {
            match router.get_interested_users(user).await {
                InterestedUsers::All => everyone = true,
                InterestedUsers::Users(extra) => users.extend(extra),
            }
        }
        let mut rows: Vec<PresenceRow> = if everyone {
            changed.clone()
        } else {
            changed
                .iter()
                .filter(|p| users.contains(&p.user_id))
                .cloned()
                .collect()
        };
        if !everyone && !router.get_users_for_states.is_empty() {
            let states: Vec<PresenceState> = changed
                .iter()
                .filter(|p| !users.contains(&p.user_id))
                .map(|p| PresenceState {
                    user_id: p.user_id.clone(),
                    presence: match p.presence.as_str() {
                        "online" => Presence::Online,
                        "unavailable" => Presence::Unavailable,
                        _ => Presence::Offline,
                    },
                    status_msg: p.status_msg.clone(),
                    last_active_ts: p.last_active_ts.max(0) as u64,
                    currently_active: p.presence == "online",
                })
                .collect();
            if !states.is_empty() {
                let routed = router.get_users_for_states(&states).await;
                if let Some(mine) = routed.get(user) {
                    let wanted: BTreeSet<&UserId> = mine.iter().map(|s| &*s.user_id).collect();
                    rows.extend(changed.into_iter().filter(|p| wanted.contains(&*p.user_id)));
                }
            }
        }
        Ok(rows)
    }
}
