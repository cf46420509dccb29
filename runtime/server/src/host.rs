//! What the server does for modules: [`axon::module::Host`] over the same
//! operations the client API uses, so a module's request meets the same
//! rules and callbacks as a client's.

use crate::api::{self, Actor, AppState, SendOptions};
use axon::callbacks::{Event, JsonObject, Membership, ModuleRef, StateMap};
use axon::module::{
    AuthenticatedUser, DbJob, Host, HostFuture, NewEventContent, Threepid, UserInfo,
};
use axon::{ErrCode, ModuleError};
use ruma::{
    OwnedDeviceId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedUserId,
    RoomAliasId, RoomId, UserId,
};
use std::any::Any;

fn parse_id<T: TryFrom<String>>(what: &str, id: String) -> Result<T, ModuleError> {
    T::try_from(id.clone())
        .map_err(|_| ModuleError::internal(format!("the server stored an invalid {what}: {id}")))
}

fn module_storage_error(e: crate::storage::StorageError) -> ModuleError {
    match e {
        crate::storage::StorageError::Module(message) => ModuleError::internal(message),
        other => other.into(),
    }
}

impl Host for AppState {
    fn user_info<'a>(&'a self, user: &'a UserId) -> HostFuture<'a, Option<UserInfo>> {
        Box::pin(async move {
            let Some(row) = self.storage.get_user(user.as_str()).await? else {
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
        })
    }

    fn set_user_admin<'a>(
        &'a self,
        _by: &'a ModuleRef,
        user: &'a UserId,
        admin: bool,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move { Ok(self.storage.set_admin(user.as_str(), admin).await?) })
    }

    fn register_user<'a>(
        &'a self,
        _by: &'a ModuleRef,
        localpart: &'a str,
        displayname: Option<&'a str>,
        admin: bool,
    ) -> HostFuture<'a, OwnedUserId> {
        Box::pin(async move {
            let user_id = api::check_localpart(self, localpart)?;
            let user = crate::storage::NewUser {
                user_id: user_id.clone(),
                password_hash: None,
                admin,
                shadow_banned: false,
                displayname: Some(displayname.unwrap_or(localpart).to_string()),
                created_ts: api::now_ms(),
            };
            api::create_user(self, user, None).await?;
            parse_id("user ID", user_id)
        })
    }

    fn threepids<'a>(&'a self, user: &'a UserId) -> HostFuture<'a, Vec<Threepid>> {
        Box::pin(async move {
            Ok(self
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
        })
    }

    fn local_users<'a>(
        &'a self,
        after: Option<&'a UserId>,
        limit: usize,
    ) -> HostFuture<'a, Vec<OwnedUserId>> {
        Box::pin(async move {
            self.storage
                .list_users(after.map(|u| u.to_string()), limit)
                .await?
                .into_iter()
                .map(|id| parse_id("user ID", id))
                .collect()
        })
    }

    fn register_device<'a>(
        &'a self,
        _by: &'a ModuleRef,
        user: &'a UserId,
        device_id: Option<&'a str>,
        display_name: Option<&'a str>,
    ) -> HostFuture<'a, (OwnedDeviceId, String)> {
        Box::pin(async move {
            if self.storage.get_user(user.as_str()).await?.is_none() {
                return Err(ModuleError::new(
                    404,
                    ErrCode::NotFound,
                    format!("no user {user}"),
                ));
            }
            let device = api::new_device(
                user.as_str(),
                device_id.map(str::to_string),
                display_name.map(str::to_string),
            );
            self.storage.add_device(device.clone()).await?;
            Ok((device.device_id.as_str().into(), device.access_token))
        })
    }

    fn set_displayname<'a>(
        &'a self,
        _by: &'a ModuleRef,
        user: &'a UserId,
        displayname: Option<&'a str>,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move {
            self.storage
                .set_displayname(user.as_str(), displayname.map(str::to_string))
                .await?;
            api::profile_changed(self, user.as_str()).await
        })
    }

    fn deactivate_account<'a>(
        &'a self,
        _by: &'a ModuleRef,
        user: &'a UserId,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move {
            api::deactivate_account(self, user.as_str()).await?;
            self.callbacks
                .third_party_rules
                .on_user_deactivation_status_changed(user, true, true)
                .await;
            Ok(())
        })
    }

    fn authenticate<'a>(
        &'a self,
        parts: &'a axum::http::request::Parts,
        allow_expired: bool,
    ) -> HostFuture<'a, AuthenticatedUser> {
        Box::pin(async move {
            let requester = api::authenticate(self, parts, allow_expired).await?;
            Ok(AuthenticatedUser {
                user_id: parse_id("user ID", requester.user_id)?,
                device_id: requester.device_id.as_str().into(),
                is_admin: requester.admin,
            })
        })
    }

    fn room_state<'a>(&'a self, room: &'a RoomId) -> HostFuture<'a, StateMap> {
        Box::pin(async move {
            let snapshot = self
                .storage
                .room_snapshot(room.as_str())
                .await?
                .ok_or_else(|| {
                    ModuleError::new(404, ErrCode::NotFound, format!("Unknown room {room}"))
                })?;
            Ok(crate::events::state_map(&snapshot))
        })
    }

    fn create_room<'a>(
        &'a self,
        _by: &'a ModuleRef,
        creator: &'a UserId,
        config: JsonObject,
    ) -> HostFuture<'a, (OwnedRoomId, Option<OwnedRoomAliasId>)> {
        Box::pin(async move {
            let (room, alias) =
                api::create_room(self, &Actor::user(creator.as_str()), config).await?;
            Ok((
                parse_id("room ID", room)?,
                alias.map(|a| parse_id("room alias", a)).transpose()?,
            ))
        })
    }

    fn update_membership<'a>(
        &'a self,
        _by: &'a ModuleRef,
        sender: &'a UserId,
        target: &'a UserId,
        room: &'a RoomId,
        membership: Membership,
        reason: Option<&'a str>,
    ) -> HostFuture<'a, OwnedEventId> {
        Box::pin(async move {
            let id = api::update_membership(
                self,
                &Actor::user(sender.as_str()),
                target.as_str(),
                room.as_str(),
                membership.as_str(),
                reason.map(str::to_string),
            )
            .await?;
            parse_id("event ID", id)
        })
    }

    fn send_event<'a>(
        &'a self,
        _by: &'a ModuleRef,
        event: NewEventContent,
    ) -> HostFuture<'a, Event> {
        Box::pin(async move {
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
            let id = api::send_event(self, event.room_id.as_str(), draft, options).await?;
            let stored = self
                .storage
                .get_event(&id)
                .await?
                .ok_or_else(|| ModuleError::internal("the event was not stored"))?;
            stored
                .to_module_event()
                .ok_or_else(|| ModuleError::internal("the stored event does not parse"))
        })
    }

    fn lookup_room_alias<'a>(
        &'a self,
        alias: &'a RoomAliasId,
    ) -> HostFuture<'a, Option<(OwnedRoomId, Vec<OwnedServerName>)>> {
        Box::pin(async move {
            Ok(match self.storage.get_alias(alias.as_str()).await? {
                Some((room, _)) => {
                    Some((parse_id("room ID", room)?, vec![self.server_name.clone()]))
                }
                None => None,
            })
        })
    }

    fn room_is_public<'a>(&'a self, room: &'a RoomId) -> HostFuture<'a, bool> {
        Box::pin(async move {
            Ok(self
                .storage
                .room_snapshot(room.as_str())
                .await?
                .is_some_and(|s| s.is_public))
        })
    }

    fn set_room_public<'a>(
        &'a self,
        _by: &'a ModuleRef,
        room: &'a RoomId,
        public: bool,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move { Ok(self.storage.set_room_public(room.as_str(), public).await?) })
    }

    fn module_db<'a>(
        &'a self,
        prefix: String,
        write: bool,
        job: DbJob,
    ) -> HostFuture<'a, Box<dyn Any + Send>> {
        Box::pin(async move {
            let result = if write {
                self.storage.module_write(prefix, job).await
            } else {
                self.storage.module_read(prefix, job).await
            };
            result.map_err(module_storage_error)
        })
    }

    fn global_account_data<'a>(
        &'a self,
        user: &'a UserId,
        data_type: &'a str,
    ) -> HostFuture<'a, Option<JsonObject>> {
        Box::pin(async move {
            Ok(self
                .storage
                .get_account_data(user.as_str(), None, data_type)
                .await?
                .and_then(|v| v.as_object().cloned()))
        })
    }

    fn put_global_account_data<'a>(
        &'a self,
        _by: &'a ModuleRef,
        user: &'a UserId,
        data_type: &'a str,
        content: JsonObject,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move {
            if self.storage.get_user(user.as_str()).await?.is_none() {
                return Err(ModuleError::new(
                    404,
                    ErrCode::NotFound,
                    format!("no user {user}"),
                ));
            }
            self.storage
                .put_account_data(
                    user.as_str(),
                    None,
                    data_type,
                    serde_json::Value::Object(content.clone()),
                )
                .await?;
            self.callbacks
                .account_data
                .on_account_data_updated(user, None, data_type, &content)
                .await;
            Ok(())
        })
    }

    fn email_app_name(&self) -> Option<String> {
        self.config.email.as_ref().map(|e| e.app_name.clone())
    }

    fn send_mail<'a>(
        &'a self,
        recipient: &'a str,
        subject: &'a str,
        html: &'a str,
        text: &'a str,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move {
            let config = self.config.email.as_ref().ok_or_else(|| {
                ModuleError::internal(
                    "mail is not configured: add an `email:` section to the config",
                )
            })?;
            crate::mail::send_mail(config, recipient, subject, html, text).await
        })
    }
}
