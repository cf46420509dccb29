//! What a module can do to the running server through its `ModuleApi`:
//! users, rooms, events, account data. Each method reaches the server
//! through its [`Host`](super::Host), whose services the client API uses
//! too, so the same rules and callbacks apply; each returns a `ModuleError`
//! a module can hand to a client as it is.

use super::api::ModuleApi;
use super::host::Host;
use crate::callbacks::{Event, JsonObject, Membership, ProfileInfo, StateMap};
use crate::db::ModuleTxn;
use crate::error::{ErrCode, ModuleError};
use ruma::{
    OwnedDeviceId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedUserId,
    RoomAliasId, RoomId, UserId,
};
use std::sync::Arc;

/// What the server knows of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub user_id: OwnedUserId,
    pub is_admin: bool,
    pub is_deactivated: bool,
    pub is_shadow_banned: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    /// Milliseconds since the epoch.
    pub creation_ts: u64,
}

/// A third-party identifier bound to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threepid {
    /// `email` or `msisdn`.
    pub medium: String,
    pub address: String,
    /// Milliseconds since the epoch.
    pub validated_at: u64,
    pub added_at: u64,
}

/// The user a request to a module's web resource comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_admin: bool,
}

/// An event a module sends (Synapse's `create_and_send_event_into_room` dict).
#[derive(Debug, Clone)]
pub struct NewEventContent {
    pub room_id: OwnedRoomId,
    /// A local user, joined to the room.
    pub sender: OwnedUserId,
    pub event_type: String,
    /// `Some` for a state event.
    pub state_key: Option<String>,
    pub content: JsonObject,
}

impl ModuleApi {
    /// The running server; modules reach it from their start hook on.
    fn host(&self) -> Result<Arc<dyn Host>, ModuleError> {
        self.shared().host().ok_or_else(|| {
            ModuleError::internal(
                "the server is not running: call this from the `start` hook, a callback or a web resource, not the constructor",
            )
        })
    }

    fn local(&self, user: &UserId) -> Result<(), ModuleError> {
        if self.is_mine(user) {
            Ok(())
        } else {
            Err(ModuleError::new(
                400,
                ErrCode::InvalidParam,
                format!("{user} is not a local user"),
            ))
        }
    }

    // ---- users ----

    /// The user's canonical ID if they exist (Synapse's `check_user_exists`).
    pub async fn check_user_exists(
        &self,
        user: &UserId,
    ) -> Result<Option<OwnedUserId>, ModuleError> {
        Ok(self
            .get_userinfo_by_id(user)
            .await?
            .map(|info| info.user_id))
    }

    /// What the server knows of a user (local or not), or `None`.
    pub async fn get_userinfo_by_id(&self, user: &UserId) -> Result<Option<UserInfo>, ModuleError> {
        self.host()?.user_info(user).await
    }

    /// Whether the user is a server admin.
    pub async fn is_user_admin(&self, user: &UserId) -> Result<bool, ModuleError> {
        Ok(self
            .get_userinfo_by_id(user)
            .await?
            .is_some_and(|u| u.is_admin))
    }

    /// Makes a local user a server admin, or not.
    pub async fn set_user_admin(&self, user: &UserId, admin: bool) -> Result<(), ModuleError> {
        self.local(user)?;
        self.host()?
            .set_user_admin(self.module(), user, admin)
            .await
    }

    /// Registers a local user with no password (they log in through a
    /// module, or get a device from [`register_device`](Self::register_device)).
    ///
    /// ```no_run
    /// # async fn demo(api: &axon::module::ModuleApi) -> Result<(), axon::ModuleError> {
    /// let bot = api.register_user("bot", Some("The Bot"), false).await?;
    /// let (device, token) = api.register_device(&bot, None, Some("bot device")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_user(
        &self,
        localpart: &str,
        displayname: Option<&str>,
        admin: bool,
    ) -> Result<OwnedUserId, ModuleError> {
        self.host()?
            .register_user(self.module(), localpart, displayname, admin)
            .await
    }

    /// The third-party identifiers bound to a user, oldest first (Synapse's
    /// `get_threepids_for_user`); none for an unknown user.
    pub async fn get_threepids_for_user(
        &self,
        user: &UserId,
    ) -> Result<Vec<Threepid>, ModuleError> {
        self.host()?.threepids(user).await
    }

    /// Local users, deactivated ones included, in user ID order: up to
    /// `limit` after `after` (a page; pass the last one to get the next).
    pub async fn get_local_users(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<OwnedUserId>, ModuleError> {
        self.host()?.local_users(after, limit).await
    }

    /// A new device with an access token for a local user.
    pub async fn register_device(
        &self,
        user: &UserId,
        device_id: Option<&str>,
        initial_display_name: Option<&str>,
    ) -> Result<(OwnedDeviceId, String), ModuleError> {
        self.local(user)?;
        self.host()?
            .register_device(self.module(), user, device_id, initial_display_name)
            .await
    }

    /// A user's display name and avatar (404 for an unknown user).
    pub async fn get_profile(&self, user: &UserId) -> Result<ProfileInfo, ModuleError> {
        let info = self
            .get_userinfo_by_id(user)
            .await?
            .ok_or_else(|| ModuleError::new(404, ErrCode::NotFound, "Profile was not found"))?;
        Ok(ProfileInfo {
            display_name: info.displayname,
            avatar_url: info.avatar_url,
        })
    }

    /// Sets a local user's display name; their rooms see it, and
    /// `on_profile_update` hears of it (with `by_admin`, as in Synapse).
    pub async fn set_displayname(
        &self,
        user: &UserId,
        displayname: Option<&str>,
    ) -> Result<(), ModuleError> {
        self.local(user)?;
        self.host()?
            .set_displayname(self.module(), user, displayname)
            .await
    }

    /// Deactivates a local user as the admin API does: the modules'
    /// `check_can_deactivate_user` may refuse; then they leave their rooms,
    /// are logged out and lose their third-party identifiers.
    pub async fn deactivate_account(&self, user: &UserId) -> Result<(), ModuleError> {
        self.local(user)?;
        self.host()?.deactivate_account(self.module(), user).await
    }

    /// The user a request to this module's web resource comes from, by its
    /// access token, as the client API authenticates (Synapse's
    /// `get_user_by_req`): a Matrix error response if it has none or an
    /// unknown one, or (unless `allow_expired`) if the account expired.
    ///
    /// ```no_run
    /// use axon::module::ModuleApi;
    /// use axum::{extract::Request, response::IntoResponse};
    ///
    /// async fn whoami(api: ModuleApi, request: Request) -> axum::response::Response {
    ///     let (parts, _body) = request.into_parts();
    ///     match api.get_user_by_req(&parts, false).await {
    ///         Ok(user) => user.user_id.to_string().into_response(),
    ///         Err(error) => error.into_response(),
    ///     }
    /// }
    /// ```
    pub async fn get_user_by_req(
        &self,
        parts: &axum::http::request::Parts,
        allow_expired: bool,
    ) -> Result<AuthenticatedUser, ModuleError> {
        self.host()?.authenticate(parts, allow_expired).await
    }

    // ---- rooms and events ----

    /// The current state of a room, or only the `(type, state_key)` pairs
    /// in `filter` (a `None` state key matches every key of that type).
    pub async fn get_room_state(
        &self,
        room: &RoomId,
        filter: Option<&[(&str, Option<&str>)]>,
    ) -> Result<StateMap, ModuleError> {
        let mut state = self.host()?.room_state(room).await?;
        if let Some(filter) = filter {
            state.retain(|(t, k), _| {
                filter
                    .iter()
                    .any(|(ft, fk)| ft == t && fk.is_none_or(|fk| fk == k))
            });
        }
        Ok(state)
    }

    /// Creates a room as a local user, from a `POST /createRoom` body; it goes
    /// through the same module checks as a client's.
    pub async fn create_room(
        &self,
        creator: &UserId,
        config: JsonObject,
    ) -> Result<(OwnedRoomId, Option<OwnedRoomAliasId>), ModuleError> {
        self.local(creator)?;
        self.host()?
            .create_room(self.module(), creator, config)
            .await
    }

    /// Changes `target`'s membership as local user `sender` (`Join`,
    /// `Invite`, `Leave`, `Ban`; a `Leave` of another user is a kick, of a
    /// banned one an unban).
    pub async fn update_room_membership(
        &self,
        sender: &UserId,
        target: &UserId,
        room: &RoomId,
        membership: Membership,
        reason: Option<&str>,
    ) -> Result<OwnedEventId, ModuleError> {
        self.local(sender)?;
        self.host()?
            .update_membership(self.module(), sender, target, room, membership, reason)
            .await
    }

    /// Sends an event as a local user, through the auth rules and the same
    /// callbacks as a client's event (without rate limits). Memberships go
    /// through [`update_room_membership`](Self::update_room_membership).
    ///
    /// ```no_run
    /// # use axon::prelude::*;
    /// # use axon::module::NewEventContent;
    /// # async fn demo(api: &ModuleApi, room: OwnedRoomId, bot: OwnedUserId) -> Result<(), ModuleError> {
    /// let mut content = JsonObject::new();
    /// content.insert("msgtype".into(), "m.notice".into());
    /// content.insert("body".into(), "Welcome!".into());
    /// let event = api
    ///     .create_and_send_event_into_room(NewEventContent {
    ///         room_id: room,
    ///         sender: bot,
    ///         event_type: "m.room.message".into(),
    ///         state_key: None,
    ///         content,
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_and_send_event_into_room(
        &self,
        event: NewEventContent,
    ) -> Result<Event, ModuleError> {
        self.local(&event.sender)?;
        if event.event_type == "m.room.member" {
            return Err(ModuleError::new(
                400,
                ErrCode::InvalidParam,
                "send memberships with update_room_membership",
            ));
        }
        self.host()?.send_event(self.module(), event).await
    }

    /// The room an alias points to, and the servers that know it.
    pub async fn lookup_room_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<Option<(OwnedRoomId, Vec<OwnedServerName>)>, ModuleError> {
        self.host()?.lookup_room_alias(alias).await
    }

    /// Whether the room is listed in the public room directory.
    pub async fn room_is_in_public_room_list(&self, room: &RoomId) -> Result<bool, ModuleError> {
        self.host()?.room_is_public(room).await
    }

    /// Lists the room in the public room directory.
    pub async fn add_room_to_public_room_list(&self, room: &RoomId) -> Result<(), ModuleError> {
        self.host()?
            .set_room_public(self.module(), room, true)
            .await
    }

    /// Removes the room from the public room directory.
    pub async fn remove_room_from_public_room_list(
        &self,
        room: &RoomId,
    ) -> Result<(), ModuleError> {
        self.host()?
            .set_room_public(self.module(), room, false)
            .await
    }

    // ---- module storage ----

    /// Runs `f` on the module's tables (see
    /// [`database_migrations`](Self::database_migrations)), reading.
    ///
    /// ```no_run
    /// # async fn demo(api: &axon::module::ModuleApi) -> Result<(), axon::ModuleError> {
    /// let expiry: Option<i64> = api
    ///     .db_read(|txn| {
    ///         txn.query_row("SELECT expires_at FROM {prefix}expiry WHERE user_id = ?1", ["@alice:example.org"], |r| r.get(0))
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn db_read<R, F>(&self, f: F) -> Result<R, ModuleError>
    where
        R: Send + 'static,
        F: FnOnce(&ModuleTxn<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        self.module_db(false, f).await
    }

    /// Runs `f` on the module's tables in one transaction: all of it is
    /// stored (durably, before this returns) or none of it.
    pub async fn db_write<R, F>(&self, f: F) -> Result<R, ModuleError>
    where
        R: Send + 'static,
        F: FnOnce(&ModuleTxn<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        self.module_db(true, f).await
    }

    async fn module_db<R, F>(&self, write: bool, f: F) -> Result<R, ModuleError>
    where
        R: Send + 'static,
        F: FnOnce(&ModuleTxn<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        let job: super::host::DbJob =
            Box::new(move |txn| f(txn).map(|r| Box::new(r) as Box<dyn std::any::Any + Send>));
        let result = self
            .host()?
            .module_db(self.table_prefix(), write, job)
            .await?;
        match result.downcast::<R>() {
            Ok(r) => Ok(*r),
            Err(_) => Err(ModuleError::internal(
                "the server answered a module's query with another type",
            )),
        }
    }

    // ---- account data ----

    /// A local user's global account data of this type.
    pub async fn get_global_account_data(
        &self,
        user: &UserId,
        data_type: &str,
    ) -> Result<Option<JsonObject>, ModuleError> {
        self.local(user)?;
        self.host()?.global_account_data(user, data_type).await
    }

    /// Writes a local user's global account data; `/sync` delivers it and
    /// `on_account_data_updated` hears of it.
    pub async fn put_global_account_data(
        &self,
        user: &UserId,
        data_type: &str,
        content: JsonObject,
    ) -> Result<(), ModuleError> {
        self.local(user)?;
        self.host()?
            .put_global_account_data(self.module(), user, data_type, content)
            .await
    }

    // ---- mail ----

    /// The `email.app_name` of the config, if mail is configured.
    pub fn email_app_name(&self) -> Option<String> {
        self.shared().host()?.email_app_name()
    }

    /// Sends a mail with an HTML and a plain-text part through the `email:`
    /// SMTP server (Synapse's `send_mail`).
    pub async fn send_mail(
        &self,
        recipient: &str,
        subject: &str,
        html: &str,
        text: &str,
    ) -> Result<(), ModuleError> {
        self.host()?.send_mail(recipient, subject, html, text).await
    }
}
