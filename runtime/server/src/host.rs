//! What the server does for modules: [`axon::module::Host`] over the same
//! operations the client API uses, so a module's request meets the same
//! rules and callbacks as a client's.

use crate::homeserver::Homeserver;
use crate::service::{Actor, MembershipChange, ProfileChange, SendOptions};
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

fn module_storage_error(e: crate::storage::StorageError) -> ModuleError {
    match e {
        crate::storage::StorageError::Module(message) => ModuleError::internal(message),
        other => other.into(),
    }
}

impl Host for Homeserver {
    fn user_info<'a>(&'a self, user: &'a UserId) -> HostFuture<'a, Option<UserInfo>> {
        Box::pin(async move {
            let Some(row) = self.storage.get_user(user).await? else {
                return Ok(None);
            };
            Ok(Some(UserInfo {
                user_id: row.user_id,
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
        by: &'a ModuleRef,
        user: &'a UserId,
        admin: bool,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move { self.set_admin(&Actor::module(by, user), user, admin).await })
    }

    fn register_user<'a>(
        &'a self,
        _by: &'a ModuleRef,
        localpart: &'a str,
        displayname: Option<&'a str>,
        admin: bool,
    ) -> HostFuture<'a, OwnedUserId> {
        Box::pin(async move {
            let displayname = displayname.map(str::to_string);
            let outcome = self
                .register_user(localpart, None, displayname, admin, false)
                .await?;
            Ok(outcome.user_id)
        })
    }

    fn threepids<'a>(&'a self, user: &'a UserId) -> HostFuture<'a, Vec<Threepid>> {
        Box::pin(async move {
            Ok(self
                .storage
                .threepids(user)
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
        Box::pin(async move { Ok(self.storage.list_users(after, limit).await?) })
    }

    fn register_device<'a>(
        &'a self,
        _by: &'a ModuleRef,
        user: &'a UserId,
        device_id: Option<&'a str>,
        display_name: Option<&'a str>,
    ) -> HostFuture<'a, (OwnedDeviceId, String)> {
        Box::pin(async move {
            let device = Homeserver::register_device(
                self,
                user,
                device_id.map(str::to_string),
                display_name.map(str::to_string),
            )
            .await?;
            Ok((device.device_id, device.access_token))
        })
    }

    fn set_displayname<'a>(
        &'a self,
        by: &'a ModuleRef,
        user: &'a UserId,
        displayname: Option<&'a str>,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move {
            let change = ProfileChange {
                displayname: Some(displayname.map(str::to_string)),
                ..Default::default()
            };
            self.set_profile(&Actor::module(by, user), user, change)
                .await
        })
    }

    fn deactivate_account<'a>(&'a self, by: &'a ModuleRef, user: &'a UserId) -> HostFuture<'a, ()> {
        Box::pin(async move { self.deactivate(&Actor::module(by, user), user, false).await })
    }

    fn authenticate<'a>(
        &'a self,
        parts: &'a axum::http::request::Parts,
        allow_expired: bool,
    ) -> HostFuture<'a, AuthenticatedUser> {
        Box::pin(async move {
            let requester = crate::api::authenticate(self, parts, allow_expired).await?;
            Ok(AuthenticatedUser {
                user_id: requester.user_id,
                device_id: requester.device_id,
                is_admin: requester.admin,
            })
        })
    }

    fn room_state<'a>(&'a self, room: &'a RoomId) -> HostFuture<'a, StateMap> {
        Box::pin(async move {
            let snapshot = self.storage.room_snapshot(room).await?.ok_or_else(|| {
                ModuleError::new(404, ErrCode::NotFound, format!("Unknown room {room}"))
            })?;
            Ok(snapshot.state.clone())
        })
    }

    fn create_room<'a>(
        &'a self,
        by: &'a ModuleRef,
        creator: &'a UserId,
        config: JsonObject,
    ) -> HostFuture<'a, (OwnedRoomId, Option<OwnedRoomAliasId>)> {
        Box::pin(
            async move { Homeserver::create_room(self, &Actor::module(by, creator), config).await },
        )
    }

    fn update_membership<'a>(
        &'a self,
        by: &'a ModuleRef,
        sender: &'a UserId,
        target: &'a UserId,
        room: &'a RoomId,
        membership: Membership,
        reason: Option<&'a str>,
    ) -> HostFuture<'a, OwnedEventId> {
        Box::pin(async move {
            let change = MembershipChange::new(room, target, membership)
                .with_reason(reason.map(str::to_string));
            self.change_membership(&Actor::module(by, sender), change)
                .await
        })
    }

    fn send_event<'a>(
        &'a self,
        by: &'a ModuleRef,
        event: NewEventContent,
    ) -> HostFuture<'a, Event> {
        Box::pin(async move {
            // As Synapse's `create_and_send_event_into_room`: the auth rules,
            // `check_event_allowed` and `check_event_for_spam`, and no rate
            // limit (`user_may_send_state_event` is the client API's).
            let actor = Actor::module(by, &event.sender);
            let draft = crate::events::EventDraft {
                sender: event.sender,
                event_type: event.event_type,
                state_key: event.state_key,
                content: event.content,
            };
            let options = SendOptions {
                txn_id: None,
                spam_check: true,
            };
            let id = Homeserver::send_event(self, &actor, &event.room_id, draft, options).await?;
            let stored = self
                .storage
                .get_event(&id)
                .await?
                .ok_or_else(|| ModuleError::internal("the event was not stored"))?;
            Ok(stored.to_module_event())
        })
    }

    fn lookup_room_alias<'a>(
        &'a self,
        alias: &'a RoomAliasId,
    ) -> HostFuture<'a, Option<(OwnedRoomId, Vec<OwnedServerName>)>> {
        Box::pin(async move {
            Ok(self
                .storage
                .get_alias(alias)
                .await?
                .map(|(room, _)| (room, vec![self.server_name.clone()])))
        })
    }

    fn room_is_public<'a>(&'a self, room: &'a RoomId) -> HostFuture<'a, bool> {
        Box::pin(async move {
            Ok(self
                .storage
                .room_snapshot(room)
                .await?
                .is_some_and(|s| s.is_public))
        })
    }

    fn set_room_public<'a>(
        &'a self,
        by: &'a ModuleRef,
        room: &'a RoomId,
        public: bool,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move { self.module_set_room_visibility(by, room, public).await })
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
                .get_account_data(user, None, data_type)
                .await?
                .and_then(|v| v.as_object().cloned()))
        })
    }

    fn put_global_account_data<'a>(
        &'a self,
        by: &'a ModuleRef,
        user: &'a UserId,
        data_type: &'a str,
        content: JsonObject,
    ) -> HostFuture<'a, ()> {
        Box::pin(async move {
            self.put_account_data(&Actor::module(by, user), user, None, data_type, content)
                .await
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
