//! The callback catalog: every callback of every category, declared once.
//!
//! Two consumers read this table. `#[module]` (in `axon-macros`) uses it to
//! validate a module's `#[callback(category)]` methods (names, arity,
//! pairing) and to name the registration item for each; `cargo xtask
//! codegen` turns it into the SDK's registry slots and dispatchers
//! (`runtime/sdk/src/callbacks/catalog.rs`, checked in) and the README's
//! callback table. Adding a callback is one entry here, then `cargo xtask
//! codegen`. Argument and output types are Rust source, resolved in the
//! SDK's `callbacks` module.
//!
//! The naming rules the tools share live here too ([`camel_case`],
//! [`package_name`]), so every tool spells a name the same way.

/// How the results of several modules implementing one callback combine, in
/// config order. Each names a rule type in `axon::callbacks::combine`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Combine {
    /// The first result that is not the verdict's "allow" value wins; later
    /// modules are not called. All allow → allow.
    FirstNonAllow,
    /// `bool` verdicts: the first `false` wins and stops the chain; all true → true.
    AllTrue,
    /// `bool` verdicts: the first `true` wins and stops the chain; all false → false.
    AnyTrue,
    /// `Option` results: the first `Some` wins and stops the chain.
    FirstSome,
    /// Every module is awaited in order; the results are `()`.
    All,
    /// Every module is called; outputs are merged (see the output type's `Merge`).
    Merge,
    /// Only the first module in config order is registered; later ones are
    /// ignored with a startup warning.
    FirstRegistered,
}

impl Combine {
    pub fn rule_type(self) -> &'static str {
        match self {
            Combine::FirstNonAllow => "FirstNonAllow",
            Combine::AllTrue => "AllTrue",
            Combine::AnyTrue => "AnyTrue",
            Combine::FirstSome => "FirstSome",
            Combine::All => "All",
            Combine::Merge => "Merge",
            Combine::FirstRegistered => "FirstRegistered",
        }
    }
}

/// What happens when a module's callback returns an error, panics or times out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Failure {
    /// Logged; that module's result is skipped and the chain goes on.
    FailOpen,
    /// The request fails: a `ModuleError` the module returned reaches the
    /// client as it is; a panic or timeout becomes 500 `M_UNKNOWN`.
    Propagate,
    /// The request fails: a returned `ModuleError` reaches the client as it
    /// is; a panic or timeout becomes this refusal.
    Refuse {
        status: u16,
        errcode: &'static str,
        message: &'static str,
    },
}

pub struct Arg {
    pub name: &'static str,
    pub ty: &'static str,
}

pub struct Callback {
    pub name: &'static str,
    pub doc: &'static str,
    pub args: &'static [Arg],
    pub output: &'static str,
    pub combine: Combine,
    pub on_failure: Failure,
    /// A callback that must be implemented together with this one.
    pub paired_with: Option<&'static str>,
}

pub struct Category {
    pub name: &'static str,
    pub doc: &'static str,
    pub callbacks: &'static [Callback],
}

macro_rules! args {
    ($($name:ident : $ty:literal),* $(,)?) => { &[$(Arg { name: stringify!($name), ty: $ty }),*] };
}

macro_rules! callback {
    ($doc:literal $name:ident ($($args:tt)*) -> $out:literal, $combine:ident, $failure:expr) => {
        callback!($doc $name ($($args)*) -> $out, $combine, $failure, None)
    };
    ($doc:literal $name:ident ($($args:tt)*) -> $out:literal, $combine:ident, $failure:expr, $paired:expr) => {
        Callback {
            name: stringify!($name),
            doc: $doc,
            args: args!($($args)*),
            output: $out,
            combine: Combine::$combine,
            on_failure: $failure,
            paired_with: $paired,
        }
    };
}

use Failure::{FailOpen, Propagate};

pub static CATALOG: &[Category] = &[
    Category {
        name: "spam_checker",
        doc: "Spam checker: veto users' actions. Synapse's `register_spam_checker_callbacks`.",
        callbacks: &[
            callback!("A client's message or state event (not memberships, not the events `createRoom` makes); an encrypted message is an `m.room.encrypted` event with only its ciphertext to judge, as in Synapse. Deny → 403 \"This message has been rejected as probable spam\" with the module's errcode and fields; nothing is stored. Also each event another server sends: a denied one is soft-failed, as in Synapse (the sending server is told it was taken; it is kept as known, so events after it are not refused, but no client sees it and it changes no state). A resident server's `send_join`, `send_leave` or `send_knock` with a denied event is refused with 403."
                check_event_for_spam(event: "&Event") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("Each PDU another server sends (`/send`, and the missing events fetched for it), after the signature, hash and auth checks: `true` drops it silently (the sender is told it was taken; nothing is stored)."
                should_drop_federated_event(event: "&Event") -> "bool", AnyTrue, Propagate),
            callback!("A local join (not the creator's own join at creation; skipped for server admins). Deny → 403 \"Not allowed to join this room\"."
                user_may_join_room(user: "&UserId", room: "&RoomId", is_invited: "bool") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A local invite, however it is asked for: `/invite`, `PUT /state/m.room.member`, `createRoom`'s `invite` list and `initial_state` memberships, the ModuleApi (skipped for server admins); and an invite from another server, after `federated_user_may_invite`. Deny → 403 \"Invites have been disabled on this server\" (from another server: \"You are not permitted to invite this user\")."
                user_may_invite(inviter: "&UserId", invitee: "&UserId", room: "&RoomId") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("An invite of a local user from another server (`PUT /v2/invite`), before `user_may_invite`. Deny → 403 \"You are not permitted to invite this user\" with the module's errcode, which the inviting server hands on to its user; nothing is stored."
                federated_user_may_invite(event: "&Event") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A third-party identifier invite. Never fires: such invites need an identity server, which Axon does not support (they are refused with 400)."
                user_may_send_3pid_invite(inviter: "&UserId", medium: "&str", address: "&str", room: "&RoomId") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("`POST /createRoom`, with the body as `on_create_room` left it (skipped for server admins). Deny → 403 \"You are not permitted to create rooms\"."
                user_may_create_room(user: "&UserId", room_config: "&JsonObject") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("`PUT /directory/room/{alias}` and `createRoom`'s `room_alias_name`. Deny → 403 \"This user is not permitted to create this alias\"."
                user_may_create_room_alias(user: "&UserId", alias: "&RoomAliasId") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("`PUT /directory/list/room/{id}` to public and `createRoom` with `visibility: public` (skipped for server admins). Deny → 403 \"Not allowed to publish room\"."
                user_may_publish_room(user: "&UserId", room: "&RoomId") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("`PUT /rooms/{id}/state/…` (skipped for server admins). Deny → 403 \"You are not permitted to send the state event\"."
                user_may_send_state_event(user: "&UserId", room: "&RoomId", event_type: "&str", state_key: "&str", content: "&JsonObject") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("Each `POST /user_directory/search` result: `true` leaves the user out of the results."
                check_username_for_spam(profile: "&UserProfile", requester: "&UserId") -> "bool", AnyTrue, Propagate),
            callback!("`POST /register`. Deny → 429 `M_UNKNOWN` \"Rate limited\" (disguised as rate limiting); ShadowBan → registered, but their messages and invites silently go nowhere."
                check_registration_for_spam(email: "Option<&str>", username: "Option<&str>", request_info: "&[RequestInfo]", auth_provider_id: "Option<&str>") -> "RegistrationBehaviour", FirstNonAllow, Propagate),
            callback!("An upload, before it is stored. Deny → 400 `M_UNKNOWN` \"Bad content\"; nothing is stored."
                check_media_file_for_spam(content: "&[u8]", info: "&FileInfo") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("`POST /login`, once the credentials are valid and before the device exists. Deny → 403 \"Login was blocked by the server\"."
                check_login_for_spam(user: "&UserId", device_id: "Option<&DeviceId>", initial_display_name: "Option<&str>", request_info: "&[RequestInfo]", auth_provider_id: "Option<&str>") -> "SpamCheck", FirstNonAllow, Propagate),
        ],
    },
    Category {
        name: "third_party_rules",
        doc: "Third-party event rules: allow, refuse or rewrite events and room settings. Synapse's `register_third_party_rules_callbacks`.",
        callbacks: &[
            callback!("Every event a local user creates, memberships, `createRoom`'s and encrypted ones (`m.room.encrypted`, as they are) included, with the room state before it; and every event another server sends. Deny → 403 `M_FORBIDDEN` \"This event is not allowed in this context\" (another server's event is refused with that error); Replace → the replacement is authorised, stored and served (another server's event cannot be replaced: it is refused)."
                check_event_allowed(event: "&Event", state: "&StateMap") -> "EventAllowed", FirstNonAllow, Propagate),
            callback!("`POST /createRoom`, before anything is checked or created; the module may change the request. `Err` → the module's error."
                on_create_room(requester: "&Requester", request: "&mut JsonObject", is_requester_admin: "bool") -> "()", All,
                Failure::Refuse { status: 403, errcode: "M_UNKNOWN", message: "Room creation forbidden with these parameters" }),
            callback!("A third-party identifier invite: `false` → 403. Never fires: Axon has no third-party invites."
                check_threepid_can_be_invited(medium: "&str", address: "&str", state: "&StateMap") -> "bool", AllTrue, FailOpen),
            callback!("`PUT /directory/list/room/{id}` and `createRoom` with `visibility: public`: `false` → 403 `M_UNKNOWN` \"Not allowed to publish room\" (\"Room visibility value not allowed.\" at creation)."
                check_visibility_can_be_modified(room: "&RoomId", state: "&StateMap", new_visibility: "Visibility") -> "bool", AllTrue, FailOpen),
            callback!("After each event is stored, local or received from another server, in the background, with the room state after it. Cannot refuse."
                on_new_event(event: "&Event", state: "&StateMap") -> "()", All, FailOpen),
            callback!("An admin room shutdown (`user` None when not user-initiated): `false` → 403. Never fires yet: Axon has no room deletion API."
                check_can_shutdown_room(user: "Option<&UserId>", room: "&RoomId") -> "bool", AllTrue, FailOpen),
            callback!("A deactivation, whoever asks: `POST /account/deactivate` (`by_admin` false), the admin API and the ModuleApi (`by_admin` true). `false` → 403 \"Deactivation of this user is forbidden\"; nothing changes."
                check_can_deactivate_user(user: "&UserId", by_admin: "bool") -> "bool", AllTrue, FailOpen),
            callback!("After a user's display name or avatar changed (by the user, or with `by_admin` by the admin API or the ModuleApi; one call for an admin change of both), and at deactivation (name blanked, `deactivation` true)."
                on_profile_update(user: "&UserId", profile: "&ProfileInfo", by_admin: "bool", deactivation: "bool") -> "()", All, FailOpen),
            callback!("After a deactivation from any entry point (`deactivated` true), and after an admin reactivation (`deactivated` false, `by_admin` true)."
                on_user_deactivation_status_changed(user: "&UserId", deactivated: "bool", by_admin: "bool") -> "()", All, FailOpen),
            callback!("Deprecated in Synapse: after a third-party identifier was added, right after `on_add_user_third_party_identifier`."
                on_threepid_bind(user: "&UserId", medium: "&str", address: "&str") -> "()", All, FailOpen),
            callback!("After a third-party identifier was added to an account (the admin API: Axon has no identity-server validation flow)."
                on_add_user_third_party_identifier(user: "&UserId", medium: "&str", address: "&str") -> "()", All, FailOpen),
            callback!("After a third-party identifier was removed from an account: by the admin API, and each one at deactivation."
                on_remove_user_third_party_identifier(user: "&UserId", medium: "&str", address: "&str") -> "()", All, FailOpen),
        ],
    },
    Category {
        name: "presence_router",
        doc: "Presence router: who receives whose presence. Both callbacks or neither. Synapse's `register_presence_router_callbacks`.",
        callbacks: &[
            callback!("`/sync` presence: other users' presence changes a module routes to this user. Results are unioned."
                get_users_for_states(states: "&[PresenceState]") -> "UsersForStates", Merge, FailOpen, Some("get_interested_users")),
            callback!("`/sync` presence: whose presence a user receives besides their room-mates; All → everyone's. Results are unioned; All wins."
                get_interested_users(user: "&UserId") -> "InterestedUsers", Merge, FailOpen, Some("get_users_for_states")),
        ],
    },
    Category {
        name: "account_validity",
        doc: "Account validity: expire accounts. Synapse's `register_account_validity_callbacks`.",
        callbacks: &[
            callback!("Every authenticated request but logout: `Some(true)` → 403 `ORG_MATRIX_EXPIRED_ACCOUNT` \"User account has expired\" (the token stays valid)."
                is_user_expired(user: "&UserId") -> "Option<bool>", FirstSome, Propagate),
            callback!("After `POST /register` created the user."
                on_user_registration(user: "&UserId") -> "()", All, Propagate),
            callback!("After `POST /login`, and after a registration that logs in (type None)."
                on_user_login(user: "&UserId", auth_provider_type: "Option<&str>", auth_provider_id: "Option<&str>") -> "()", All, Propagate),
        ],
    },
    Category {
        name: "password_auth_provider",
        doc: "Password auth providers: extra login types and registration hooks. Synapse's `register_password_auth_provider_callbacks`.",
        callbacks: &[
            callback!("`POST /login` of a type this module declared with `ModuleApi::register_login_type` (listed by `GET /login`); for `m.login.password`, before the local password. All `None` → 403 \"Invalid username or password\"."
                check_auth(user: "&str", login_type: "&str", login: "&JsonObject") -> "Option<AuthResult>", FirstSome, FailOpen),
            callback!("`POST /login` with an `m.id.thirdparty` identifier and a password. All `None` → 403."
                check_3pid_auth(medium: "&str", address: "&str", password: "&str") -> "Option<AuthResult>", FirstSome, FailOpen),
            callback!("After `POST /logout`, and for each device at `POST /logout/all`."
                on_logged_out(user: "&UserId", device_id: "Option<&DeviceId>", access_token: "&str") -> "()", All, FailOpen),
            callback!("`POST /register` after its auth stages: `Some(localpart)` replaces the requested username."
                get_username_for_registration(uia_results: "&JsonObject", params: "&JsonObject") -> "Option<String>", FirstSome, Propagate),
            callback!("`POST /register` after its auth stages: `Some(name)` is the new user's display name (default: the localpart)."
                get_displayname_for_registration(uia_results: "&JsonObject", params: "&JsonObject") -> "Option<String>", FirstSome, Propagate),
            callback!("Whether a third-party identifier may be used: `false` → 403 `M_THREEPID_DENIED`. Never fires: Axon has no identity-server validation flow (identifiers are bound by an admin)."
                is_3pid_allowed(medium: "&str", address: "&str", registration: "bool") -> "bool", AllTrue, Propagate),
        ],
    },
    Category {
        name: "background_update_controller",
        doc: "Background update controller: pace the server's background work. Only the first module in config order is used. Synapse's `register_background_update_controller_callbacks`.",
        callbacks: &[
            callback!("Before an iteration of a background update: how long it should take. Never fires yet: Axon runs no background updates."
                on_update(update_name: "&str", database_name: "&str", one_shot: "bool") -> "Duration", FirstRegistered, FailOpen),
            callback!("The batch size of a background update's first iteration. Never fires yet: Axon runs no background updates."
                default_batch_size(update_name: "&str", database_name: "&str") -> "u32", FirstRegistered, FailOpen),
            callback!("The smallest batch size of a background update. Never fires yet: Axon runs no background updates."
                min_batch_size(update_name: "&str", database_name: "&str") -> "u32", FirstRegistered, FailOpen),
        ],
    },
    Category {
        name: "account_data",
        doc: "Account data: observe writes. Synapse's `register_account_data_callbacks`.",
        callbacks: &[
            callback!("After account data is written: `PUT /user/{id}/account_data/…`, global (`room` None) and per room, and the ModuleApi's `put_global_account_data`."
                on_account_data_updated(user: "&UserId", room: "Option<&RoomId>", account_data_type: "&str", content: "&JsonObject") -> "()", All, FailOpen),
        ],
    },
    Category {
        name: "add_extra_fields_to_unsigned_client_event",
        doc: "Extra `unsigned` fields on every event served to clients. Synapse's `register_add_extra_fields_to_unsigned_client_event_callbacks`.",
        callbacks: &[
            callback!("Every event served to a client: `/sync`, `/messages`, `/event`, `/state`, `/members`. Results are merged; the last module wins a key; the server's own fields cannot be replaced."
                add_field_to_unsigned_callback(event: "&Event") -> "JsonObject", Merge, Propagate),
        ],
    },
    Category {
        name: "ratelimit",
        doc: "Rate limits per user. Synapse's `register_ratelimit_callbacks`.",
        callbacks: &[
            callback!("The `rc_message`, `rc_joins.local` and `rc_invites.*` checks: `Some` replaces the configured limit for that user (`per_second: 0` lifts it)."
                get_ratelimit_override_for_user(user: "&UserId", limiter_name: "&str") -> "Option<RatelimitOverride>", FirstSome, Propagate),
        ],
    },
    Category {
        name: "media_repository",
        doc: "Media repository: per-user media configuration and upload limits. Synapse's `register_media_repository_callbacks`.",
        callbacks: &[
            callback!("`GET /media/config`: `Some` is the body."
                get_media_config_for_user(user: "&UserId") -> "Option<JsonObject>", FirstSome, Propagate),
            callback!("An upload: `false` → 413 `M_TOO_LARGE` \"Upload request body is too large\"."
                is_user_allowed_to_upload_media_of_size(user: "&UserId", size: "u64") -> "bool", AllTrue, Propagate),
            callback!("An upload: the user's limits, replacing `media_upload_limits`; `Some(vec![])` is unlimited."
                get_media_upload_limits_for_user(user: "&UserId") -> "Option<Vec<MediaUploadLimit>>", FirstSome, Propagate),
            callback!("An upload over a limit, before it is refused with 400 `M_RESOURCE_LIMIT_EXCEEDED` \"Media upload limit exceeded\"."
                on_media_upload_limit_exceeded(user: "&UserId", limit: "&MediaUploadLimit", sent_bytes: "u64", attempted_bytes: "u64") -> "()", All, Propagate),
        ],
    },
];

pub fn category(name: &str) -> Option<&'static Category> {
    CATALOG.iter().find(|c| c.name == name)
}

impl Category {
    pub fn callback(&self, name: &str) -> Option<&'static Callback> {
        // `callbacks` is 'static, but `self` may not be; look it up again.
        category(self.name)?
            .callbacks
            .iter()
            .find(|c| c.name == name)
    }
}

impl Callback {
    /// The runtime's alias of this callback's output type,
    /// `axon::callbacks::<category>::<Name>Output`.
    pub fn output_alias(&self) -> String {
        format!("{}Output", camel_case(self.name))
    }

    /// The signature as a module author writes it, for help messages.
    pub fn signature(&self) -> String {
        let args: Vec<String> = std::iter::once("&self".to_string())
            .chain(self.args.iter().map(|a| format!("{}: {}", a.name, a.ty)))
            .collect();
        let output = if self.output == "()" {
            String::new()
        } else {
            format!(" -> {}", self.output)
        };
        format!("async fn {}({}){}", self.name, args.join(", "), output)
    }
}

/// `user_may_join_room` → `UserMayJoinRoom` (callbacks, and module types
/// made from crate names: `no_rooms` → `NoRooms`).
pub fn camel_case(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut cs = w.chars();
            cs.next()
                .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The `name = "…"` of a manifest's `[package]`.
pub fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let Some(value) = line
            .strip_prefix("name")
            .and_then(|rest| rest.trim_start().strip_prefix('='))
            .filter(|_| in_package)
        {
            return value.trim().split('"').nth(1).map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(camel_case("user_may_join_room"), "UserMayJoinRoom");
        assert_eq!(
            package_name("[workspace]\nname = \"no\"\n[package]\nname = \"my_mod\"\n"),
            Some("my_mod".into())
        );
        assert_eq!(
            package_name("[package]\nname_x = \"no\"\nname = \"yes\"\n"),
            Some("yes".into())
        );
    }
}
