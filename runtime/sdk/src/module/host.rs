//! The boundary between modules and the homeserver: what the running server
//! does for a module's [`ModuleApi`](super::ModuleApi). The server
//! implements [`Host`] over its service layer, so a module's request goes
//! through the same rules and callbacks as a client's; modules never see
//! the server's types, and the server can change behind this trait.

use super::api_server::{AuthenticatedUser, NewEventContent, Threepid, UserInfo};
use crate::callbacks::{BoxFuture, Event, JsonObject, Membership, ModuleRef, StateMap};
use crate::db::ModuleTxn;
use crate::error::ModuleError;
use ruma::{
    OwnedDeviceId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedUserId,
    RoomAliasId, RoomId, UserId,
};
use std::any::Any;

/// What a [`Host`] method answers with.
pub type HostFuture<'a, T> = BoxFuture<'a, Result<T, ModuleError>>;

/// A module's database work, its result erased (the `ModuleApi` restores the type).
pub type DbJob =
    Box<dyn FnOnce(&ModuleTxn<'_>) -> rusqlite::Result<Box<dyn Any + Send>> + Send + 'static>;

/// The running homeserver, as modules reach it. Methods that act take the
/// module that acts (`by`): the server treats it as acting with server
/// authority (Synapse's `by_admin`), without rate limits, and as the local
/// user it names for room operations.
pub trait Host: Send + Sync {
    // ---- users ----
    fn user_info<'a>(&'a self, user: &'a UserId) -> HostFuture<'a, Option<UserInfo>>;
    fn set_user_admin<'a>(
        &'a self,
        by: &'a ModuleRef,
        user: &'a UserId,
        admin: bool,
    ) -> HostFuture<'a, ()>;
    fn register_user<'a>(
        &'a self,
        by: &'a ModuleRef,
        localpart: &'a str,
        displayname: Option<&'a str>,
        admin: bool,
    ) -> HostFuture<'a, OwnedUserId>;
    fn threepids<'a>(&'a self, user: &'a UserId) -> HostFuture<'a, Vec<Threepid>>;
    fn local_users<'a>(
        &'a self,
        after: Option<&'a UserId>,
        limit: usize,
    ) -> HostFuture<'a, Vec<OwnedUserId>>;
    fn register_device<'a>(
        &'a self,
        by: &'a ModuleRef,
        user: &'a UserId,
        device_id: Option<&'a str>,
        display_name: Option<&'a str>,
    ) -> HostFuture<'a, (OwnedDeviceId, String)>;
    fn set_displayname<'a>(
        &'a self,
        by: &'a ModuleRef,
        user: &'a UserId,
        displayname: Option<&'a str>,
    ) -> HostFuture<'a, ()>;
    fn deactivate_account<'a>(&'a self, by: &'a ModuleRef, user: &'a UserId) -> HostFuture<'a, ()>;
    /// The user an HTTP request's access token belongs to.
    fn authenticate<'a>(
        &'a self,
        parts: &'a axum::http::request::Parts,
        allow_expired: bool,
    ) -> HostFuture<'a, AuthenticatedUser>;

    // ---- rooms and events ----
    fn room_state<'a>(&'a self, room: &'a RoomId) -> HostFuture<'a, StateMap>;
    fn create_room<'a>(
        &'a self,
        by: &'a ModuleRef,
        creator: &'a UserId,
        config: JsonObject,
    ) -> HostFuture<'a, (OwnedRoomId, Option<OwnedRoomAliasId>)>;
    fn update_membership<'a>(
        &'a self,
        by: &'a ModuleRef,
        sender: &'a UserId,
        target: &'a UserId,
        room: &'a RoomId,
        membership: Membership,
        reason: Option<&'a str>,
    ) -> HostFuture<'a, OwnedEventId>;
    fn send_event<'a>(&'a self, by: &'a ModuleRef, event: NewEventContent)
        -> HostFuture<'a, Event>;
    fn lookup_room_alias<'a>(
        &'a self,
        alias: &'a RoomAliasId,
    ) -> HostFuture<'a, Option<(OwnedRoomId, Vec<OwnedServerName>)>>;
    fn room_is_public<'a>(&'a self, room: &'a RoomId) -> HostFuture<'a, bool>;
    fn set_room_public<'a>(
        &'a self,
        by: &'a ModuleRef,
        room: &'a RoomId,
        public: bool,
    ) -> HostFuture<'a, ()>;

    // ---- module storage, account data, mail ----
    /// Runs `job` on the module's tables: on a reader, or in one durable
    /// transaction of the writer when `write`.
    fn module_db<'a>(
        &'a self,
        prefix: String,
        write: bool,
        job: DbJob,
    ) -> HostFuture<'a, Box<dyn Any + Send>>;
    fn global_account_data<'a>(
        &'a self,
        user: &'a UserId,
        data_type: &'a str,
    ) -> HostFuture<'a, Option<JsonObject>>;
    fn put_global_account_data<'a>(
        &'a self,
        by: &'a ModuleRef,
        user: &'a UserId,
        data_type: &'a str,
        content: JsonObject,
    ) -> HostFuture<'a, ()>;
    /// The `email.app_name` of the config, if mail is configured.
    fn email_app_name(&self) -> Option<String>;
    fn send_mail<'a>(
        &'a self,
        recipient: &'a str,
        subject: &'a str,
        html: &'a str,
        text: &'a str,
    ) -> HostFuture<'a, ()>;
}
