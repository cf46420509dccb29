//! What a module can do to the running server through its `ModuleApi`:
//! users, rooms, events, account data. Each method goes through the same
//! code as the client API, so the same rules and callbacks apply; each
//! returns a `ModuleError` a module can hand to a client as it is.

use super::api::ModuleApi;
use crate::callbacks::{Event, JsonObject, ProfileInfo, StateMap};
use crate::error::{ErrCode, ModuleError};
use crate::server::{self, Actor, AppState, SendOptions};
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

fn parse_id<T: TryFrom<String>>(what: &str, id: String) -> Result<T, ModuleError> {
    T::try_from(id.clone())
        .map_err(|_| ModuleError::internal(format!("the server stored an invalid {what}: {id}")))
}

impl ModuleApi {
    /// The running server; modules reach it from their start hook on.
    fn app(&self) -> Result<Arc<AppState>, ModuleError> {
        self.shared()
            .app
            .get()
            .and_then(|weak| weak.upgrade())
            .ok_or_else(|| {
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
        let app = self.app()?;
        let Some(row) = app.storage.get_user(user.as_str()).await? else {
            return Ok(None);
        };
        Ok(Some(UserInfo {
            user_id: parse_id("user ID", row.user_id)?,
            is_admin: row.admin,
            is_deactivated: row.deactivated,
            is_shadow_banned: row.shadow_banned,
            displayname: row.displayname,
            avatar_url: row.avatar_url,
            creation_ts: row.created_ts.max(0) as u64,
        }))
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
        Ok(self.app()?.storage.set_admin(user.as_str(), admin).await?)
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
        let app = self.app()?;
        let user_id = server::check_localpart(&app, localpart)?;
        let user = crate::storage::NewUser {
            user_id: user_id.clone(),
            password_hash: None,
            admin,
            shadow_banned: false,
            displayname: Some(displayname.unwrap_or(localpart).to_string()),
            created_ts: server::now_ms(),
        };
        server::create_user(&app, user, None).await?;
        parse_id("user ID", user_id)
    }

    /// The third-party identifiers bound to a user, oldest first (Synapse's
    /// `get_threepids_for_user`); none for an unknown user.
    pub async fn get_threepids_for_user(
        &self,
        user: &UserId,
    ) -> Result<Vec<Threepid>, ModuleError> {
        let app = self.app()?;
        Ok(app
            .storage
            .threepids(user.as_str())
            .await?
            .into_iter()
            .map(|t| Threepid {
                medium: t.medium,
                address: t.address,
                validated_at: t.validated_at.max(0) as u64,
                added_at: t.added_at.max(0) as u64,
            })
            .collect())
    }

    /// Local users, deactivated ones included, in user ID order: up to
    /// `limit` after `after` (a page; pass the last one to get the next).
    pub async fn get_local_users(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<OwnedUserId>, ModuleError> {
        let app = self.app()?;
        app.storage
            .list_users(after.map(|u| u.to_string()), limit)
            .await?
            .into_iter()
            .map(|id| parse_id("user ID", id))
            .collect()
    }

    /// A new device with an access token for a local user.
    pub async fn register_device(
        &self,
        user: &UserId,
        device_id: Option<&str>,
        initial_display_name: Option<&str>,
    ) -> Result<(OwnedDeviceId, String), ModuleError> {
        self.local(user)?;
        let app = self.app()?;
        if app.storage.get_user(user.as_str()).await?.is_none() {
            return Err(ModuleError::new(
                404,
                ErrCode::NotFound,
                format!("no user {user}"),
            ));
        }
        let device = server::new_device(
            user.as_str(),
            device_id.map(str::to_string),
            initial_display_name.map(str::to_string),
        );
        app.storage.add_device(device.clone()).await?;
        Ok((device.device_id.as_str().into(), device.access_token))
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
    /// `on_profile_update` hears of it.
    pub async fn set_displayname(
        &self,
        user: &UserId,
        displayname: Option<&str>,
    ) -> Result<(), ModuleError> {
        self.local(user)?;
        let app = self.app()?;
        app.storage
            .set_displayname(user.as_str(), displayname.map(str::to_string))
            .await?;
        server::profile_changed(&app, user.as_str()).await
    }

    /// Deactivates a local user: they leave their rooms and are logged out.
    pub async fn deactivate_account(&self, user: &UserId) -> Result<(), ModuleError> {
        self.local(user)?;
        let app = self.app()?;
        server::deactivate_account(&app, user.as_str()).await?;
        app.callbacks
            .third_party_rules
            .on_user_deactivation_status_changed(user, true, true)
            .await;
        Ok(())
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
        let app = self.app()?;
        let requester = server::authenticate(&app, parts, allow_expired).await?;
        Ok(AuthenticatedUser {
            user_id: parse_id("user ID", requester.user_id)?,
            device_id: requester.device_id.as_str().into(),
            is_admin: requester.admin,
        })
    }

    // ---- rooms and events ----

    /// The current state of a room, or only the `(type, state_key)` pairs
    /// in `filter` (a `None` state key matches every key of that type).
    pub async fn get_room_state(
        &self,
        room: &RoomId,
        filter: Option<&[(&str, Option<&str>)]>,
    ) -> Result<StateMap, ModuleError> {
        let app = self.app()?;
        let snapshot = app
            .storage
            .room_snapshot(room.as_str())
            .await?
            .ok_or_else(|| {
                ModuleError::new(404, ErrCode::NotFound, format!("Unknown room {room}"))
            })?;
        let mut state = crate::events::state_map(&snapshot);
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
        let app = self.app()?;
        let (room, alias) =
            server::create_room(&app, &Actor::user(creator.as_str()), config).await?;
        Ok((
            parse_id("room ID", room)?,
            alias.map(|a| parse_id("room alias", a)).transpose()?,
        ))
    }

    /// Changes `target`'s membership as local user `sender` (`join`,
    /// `invite`, `leave`, `ban`; a `leave` of another user is a kick).
    pub async fn update_room_membership(
        &self,
        sender: &UserId,
        target: &UserId,
        room: &RoomId,
        membership: &str,
        reason: Option<&str>,
    ) -> Result<OwnedEventId, ModuleError> {
        self.local(sender)?;
        let app = self.app()?;
        let id = server::update_membership(
            &app,
            &Actor::user(sender.as_str()),
            target.as_str(),
            room.as_str(),
            membership,
            reason.map(str::to_string),
        )
        .await?;
        parse_id("event ID", id)
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
        let app = self.app()?;
        let draft = crate::events::EventDraft {
            sender: event.sender.to_string(),
            event_type: event.event_type,
            state_key: event.state_key,
            content: event.content,
        };
        let options = SendOptions {
            txn: None,
            spam_check: true,
        };
        let id = server::send_event(&app, event.room_id.as_str(), draft, options).await?;
        let stored = app
            .storage
            .get_event(&id)
            .await?
            .ok_or_else(|| ModuleError::internal("the event was not stored"))?;
        stored
            .to_module_event()
            .ok_or_else(|| ModuleError::internal("the stored event does not parse"))
    }

    /// The room an alias points to, and the servers that know it.
    pub async fn lookup_room_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<Option<(OwnedRoomId, Vec<OwnedServerName>)>, ModuleError> {
        let app = self.app()?;
        Ok(match app.storage.get_alias(alias.as_str()).await? {
            Some((room, _)) => Some((parse_id("room ID", room)?, vec![app.server_name.clone()])),
            None => None,
        })
    }

    /// Whether the room is listed in the public room directory.
    pub async fn room_is_in_public_room_list(&self, room: &RoomId) -> Result<bool, ModuleError> {
        let app = self.app()?;
        Ok(app
            .storage
            .room_snapshot(room.as_str())
            .await?
            .is_some_and(|s| s.is_public))
    }

    /// Lists the room in the public room directory.
    pub async fn add_room_to_public_room_list(&self, room: &RoomId) -> Result<(), ModuleError> {
        Ok(self
            .app()?
            .storage
            .set_room_public(room.as_str(), true)
            .await?)
    }

    /// Removes the room from the public room directory.
    pub async fn remove_room_from_public_room_list(
        &self,
        room: &RoomId,
    ) -> Result<(), ModuleError> {
        Ok(self
            .app()?
            .storage
            .set_room_public(room.as_str(), false)
            .await?)
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
        F: FnOnce(&crate::storage::ModuleTxn<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        let app = self.app()?;
        app.storage
            .module_read(self.table_prefix(), f)
            .await
            .map_err(module_storage_error)
    }

    /// Runs `f` on the module's tables in one transaction: all of it is
    /// stored (durably, before this returns) or none of it.
    pub async fn db_write<R, F>(&self, f: F) -> Result<R, ModuleError>
    where
        R: Send + 'static,
        F: FnOnce(&crate::storage::ModuleTxn<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        let app = self.app()?;
        app.storage
            .module_write(self.table_prefix(), f)
            .await
            .map_err(module_storage_error)
    }

    // ---- account data ----

    /// A local user's global account data of this type.
    pub async fn get_global_account_data(
        &self,
        user: &UserId,
        data_type: &str,
    ) -> Result<Option<JsonObject>, ModuleError> {
        self.local(user)?;
        let app = self.app()?;
        Ok(app
            .storage
            .get_account_data(user.as_str(), None, data_type)
            .await?
            .and_then(|v| v.as_object().cloned()))
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
        let app = self.app()?;
        if app.storage.get_user(user.as_str()).await?.is_none() {
            return Err(ModuleError::new(
                404,
                ErrCode::NotFound,
                format!("no user {user}"),
            ));
        }
        app.storage
            .put_account_data(
                user.as_str(),
                None,
                data_type,
                serde_json::Value::Object(content.clone()),
            )
            .await?;
        app.callbacks
            .account_data
            .on_account_data_updated(user, None, data_type, &content)
            .await;
        Ok(())
    }
}

fn module_storage_error(e: crate::storage::StorageError) -> ModuleError {
    match e {
        crate::storage::StorageError::Module(message) => ModuleError::internal(message),
        other => other.into(),
    }
}
