//! Profiles (display name and avatar) and the user directory.

use super::{Actor, MatrixError, SendOptions, Via};
use crate::events::EventDraft;
use crate::homeserver::Homeserver;
use crate::storage::UserRow;
use axon::callbacks::{ProfileInfo, UserProfile};
use axon::{ErrCode, Membership};
use ruma::UserId;
use serde_json::{json, Map};

/// A profile change: `Some(value)` sets a field (`Some(None)` clears it),
/// `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub displayname: Option<Option<String>>,
    pub avatar_url: Option<Option<String>>,
}

/// A user's profile as others see it: `displayname` and `avatar_url`,
/// each present only when set.
pub type PublicProfile = Map<String, serde_json::Value>;

impl ProfileChange {
    pub fn is_empty(&self) -> bool {
        self.displayname.is_none() && self.avatar_url.is_none()
    }
}

pub(crate) fn check_displayname(name: &str) -> Result<(), MatrixError> {
    if name.len() > 256 {
        return Err(MatrixError::new(
            400,
            ErrCode::BadJson,
            "Displayname is too long (max 256)",
        ));
    }
    Ok(())
}

/// Synapse's `MAX_AVATAR_URL_LEN`: the URL is copied into every membership.
pub(crate) fn check_avatar_url(url: &str) -> Result<(), MatrixError> {
    if url.len() > 1000 {
        return Err(MatrixError::new(
            400,
            ErrCode::BadJson,
            "Avatar URL is too long (max 1000)",
        ));
    }
    Ok(())
}

impl Homeserver {
    /// A user's profile: read here for this server's users, asked of
    /// their server (`/query/profile`) for others. 404 `M_NOT_FOUND` when
    /// there is none; 502 when the other server cannot be asked.
    pub async fn profile(&self, user: &UserId) -> Result<PublicProfile, MatrixError> {
        if user.server_name() == self.server_name {
            let row =
                self.storage.get_user(user).await?.ok_or_else(|| {
                    MatrixError::new(404, ErrCode::NotFound, "Profile was not found")
                })?;
            let mut profile = Map::new();
            if let Some(name) = row.displayname {
                profile.insert("displayname".into(), json!(name));
            }
            if let Some(url) = row.avatar_url {
                profile.insert("avatar_url".into(), json!(url));
            }
            return Ok(profile);
        }
        let path = format!(
            "/_matrix/federation/v1/query/profile?user_id={}",
            crate::service::percent_encode(user.as_str())
        );
        let answer = self
            .ask_server(user.server_name(), reqwest::Method::GET, &path, None)
            .await
            .map_err(|e| super::federation_failure(e, "Failed to fetch profile"))?;
        // Only the two fields, and only strings: the answer is another
        // server's word.
        let mut profile = Map::new();
        for field in ["displayname", "avatar_url"] {
            if let Some(value) = answer.get(field).and_then(|v| v.as_str()) {
                profile.insert(field.into(), json!(value));
            }
        }
        Ok(profile)
    }

    /// Changes a user's display name and/or avatar, whoever asks: a client
    /// for itself, an admin or a module for anyone (`by_admin` to modules).
    /// The change shows in every room the user is in (as in Synapse), and
    /// `on_profile_update` hears of it once.
    pub async fn set_profile(
        &self,
        actor: &Actor,
        user: &UserId,
        change: ProfileChange,
    ) -> Result<(), MatrixError> {
        if actor.via == Via::Client && actor.user_id != user {
            let what = if change.displayname.is_some() {
                "displayname"
            } else {
                "avatar_url"
            };
            return Err(MatrixError::forbidden(format!(
                "Cannot set another user's {what}"
            )));
        }
        if let Some(Some(name)) = &change.displayname {
            check_displayname(name)?;
        }
        if let Some(Some(url)) = &change.avatar_url {
            check_avatar_url(url)?;
        }
        // A change rewrites the user's membership in every room: one
        // message's worth of the rate limit, as in Synapse.
        if actor.is_ratelimited() {
            self.ratelimit_user("rc_message", user, self.config.rc_message)
                .await?;
        }
        if let Some(name) = change.displayname {
            self.storage.set_displayname(user, name).await?;
        }
        if let Some(url) = change.avatar_url {
            self.storage.set_avatar_url(user, url).await?;
        }
        let Some(row) = self.storage.get_user(user).await? else {
            return Ok(());
        };
        self.refresh_member_events(actor, &row).await?;
        let rules = &self.callbacks.third_party_rules;
        if !rules.on_profile_update.is_empty() {
            let profile = ProfileInfo {
                display_name: row.displayname,
                avatar_url: row.avatar_url,
            };
            rules
                .on_profile_update(user, &profile, actor.by_admin(), false)
                .await;
        }
        Ok(())
    }

    /// A new join event in each room the user is in, with their profile.
    async fn refresh_member_events(
        &self,
        actor: &Actor,
        user: &UserRow,
    ) -> Result<(), MatrixError> {
        let as_user = actor.as_user(&user.user_id);
        for m in self.storage.memberships(&user.user_id).await? {
            if m.membership != Membership::Join {
                continue;
            }
            let mut content = Map::new();
            content.insert("membership".into(), json!("join"));
            if let Some(name) = &user.displayname {
                content.insert("displayname".into(), json!(name));
            }
            if let Some(url) = &user.avatar_url {
                content.insert("avatar_url".into(), json!(url));
            }
            let draft = EventDraft {
                sender: user.user_id.clone(),
                event_type: "m.room.member".into(),
                state_key: Some(user.user_id.to_string()),
                content,
            };
            if let Err(e) = self
                .send_event(&as_user, &m.room_id, draft, SendOptions::default())
                .await
            {
                tracing::warn!("profile update of {} in {}: {e}", user.user_id, m.room_id);
            }
        }
        Ok(())
    }

    /// `POST /user_directory/search`: the users `searcher` may find, each
    /// past the spam checker (`check_username_for_spam`), which may hide it;
    /// and whether more matched than `limit`.
    pub async fn search_users(
        &self,
        searcher: &UserId,
        term: &str,
        limit: u32,
    ) -> Result<(Vec<UserRow>, bool), MatrixError> {
        let mut rows = self.storage.search_users(searcher, term, limit).await?;
        let spam = &self.callbacks.spam_checker;
        if !spam.check_username_for_spam.is_empty() {
            let mut kept = Vec::with_capacity(rows.len());
            for row in rows {
                let profile = UserProfile {
                    user_id: row.user_id.clone(),
                    display_name: row.displayname.clone(),
                    avatar_url: row.avatar_url.clone(),
                };
                if !spam.check_username_for_spam(&profile, searcher).await? {
                    kept.push(row);
                }
            }
            rows = kept;
        }
        let limited = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Ok((rows, limited))
    }
}
