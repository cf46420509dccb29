//! The callback catalog: every callback of every category, declared once.
//!
//! Two consumers read this table. `#[module]` uses it to validate a module's
//! `#[callback(category)]` methods (names, arity, pairing) and to name the
//! registration item for each; `axon::__private::define_catalog!()` turns it
//! into the runtime's registry slots and dispatchers. Adding a callback is one
//! entry here. Argument and output types are Rust source, resolved in the
//! runtime's `callbacks` module.

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
            callback!("An event a local user sends (message or state, not membership), or an event received over federation. Deny → 403 with the module's errcode."
                check_event_for_spam(event: "&Event") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("An event received over federation: `true` drops it silently. Fires on the federation receive path."
                should_drop_federated_event(event: "&Event") -> "bool", AnyTrue, Propagate),
            callback!("A local user joins a room (not the creator's join at creation; skipped for server admins). Deny → 403."
                user_may_join_room(user: "&UserId", room: "&RoomId", is_invited: "bool") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A local user invites another user (skipped for server admins). Deny → 403."
                user_may_invite(inviter: "&UserId", invitee: "&UserId", room: "&RoomId") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("An invite received over federation, before `user_may_invite`. Fires on the federation receive path."
                federated_user_may_invite(event: "&Event") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A local user invites a third-party identifier not bound to a Matrix ID. Deny → 403."
                user_may_send_3pid_invite(inviter: "&UserId", medium: "&str", address: "&str", room: "&RoomId") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A local user creates a room; `room_config` is a copy of the request body. Deny → 403."
                user_may_create_room(user: "&UserId", room_config: "&JsonObject") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A local user creates a room alias. Deny → 403."
                user_may_create_room_alias(user: "&UserId", alias: "&RoomAliasId") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A local user publishes a room to the room directory. Deny → 403."
                user_may_publish_room(user: "&UserId", room: "&RoomId") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A local user sends a state event (skipped for server admins). Deny → 403."
                user_may_send_state_event(user: "&UserId", room: "&RoomId", event_type: "&str", state_key: "&str", content: "&JsonObject") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A user directory search result: `true` hides `profile` from `requester`."
                check_username_for_spam(profile: "&UserProfile", requester: "&UserId") -> "bool", AnyTrue, Propagate),
            callback!("A registration: Allow, ShadowBan, or Deny (→ 429, deliberately disguised as rate limiting)."
                check_registration_for_spam(email: "Option<&str>", username: "Option<&str>", request_info: "&[RequestInfo]", auth_provider_id: "Option<&str>") -> "RegistrationBehaviour", FirstNonAllow, Propagate),
            callback!("An uploaded media file, before it is stored. Deny → 400, nothing stored."
                check_media_file_for_spam(content: "&[u8]", info: "&FileInfo") -> "SpamCheck", FirstNonAllow, Propagate),
            callback!("A login whose credentials are valid, before the device is created. Deny → 403."
                check_login_for_spam(user: "&UserId", device_id: "Option<&DeviceId>", initial_display_name: "Option<&str>", request_info: "&[RequestInfo]", auth_provider_id: "Option<&str>") -> "SpamCheck", FirstNonAllow, Propagate),
        ],
    },
    Category {
        name: "third_party_rules",
        doc: "Third-party event rules: allow, refuse or rewrite events and room settings. Synapse's `register_third_party_rules_callbacks`.",
        callbacks: &[
            callback!("Every event a local user creates, with the room state before it. Deny → 403; Replace → the replacement is stored and served."
                check_event_allowed(event: "&Event", state: "&StateMap") -> "EventAllowed", FirstNonAllow, Propagate),
            callback!("A room creation request, before anything is created; the module may change the request. `Err` refuses it."
                on_create_room(requester: "&Requester", request: "&mut JsonObject", is_requester_admin: "bool") -> "()", All,
                Failure::Refuse { status: 403, errcode: "M_UNKNOWN", message: "Room creation forbidden with these parameters" }),
            callback!("A third-party identifier invite. `false` → 403."
                check_threepid_can_be_invited(medium: "&str", address: "&str", state: "&StateMap") -> "bool", AllTrue, FailOpen),
            callback!("A change to a room's directory visibility. `false` → 403."
                check_visibility_can_be_modified(room: "&RoomId", state: "&StateMap", new_visibility: "Visibility") -> "bool", AllTrue, FailOpen),
            callback!("After an event is persisted, with the room state after it. Cannot refuse."
                on_new_event(event: "&Event", state: "&StateMap") -> "()", All, FailOpen),
            callback!("A room shutdown (`user` is None when not user-initiated). `false` → 403."
                check_can_shutdown_room(user: "Option<&UserId>", room: "&RoomId") -> "bool", AllTrue, FailOpen),
            callback!("A user deactivation. `false` → 403."
                check_can_deactivate_user(user: "&UserId", by_admin: "bool") -> "bool", AllTrue, FailOpen),
            callback!("After a user's global display name or avatar changed."
                on_profile_update(user: "&UserId", profile: "&ProfileInfo", by_admin: "bool", deactivation: "bool") -> "()", All, FailOpen),
            callback!("After a user was deactivated or reactivated."
                on_user_deactivation_status_changed(user: "&UserId", deactivated: "bool", by_admin: "bool") -> "()", All, FailOpen),
            callback!("Deprecated in Synapse: after a local third-party identifier association was stored."
                on_threepid_bind(user: "&UserId", medium: "&str", address: "&str") -> "()", All, FailOpen),
            callback!("After a third-party identifier was added to a local user."
                on_add_user_third_party_identifier(user: "&UserId", medium: "&str", address: "&str") -> "()", All, FailOpen),
            callback!("After a third-party identifier was removed from a local user."
                on_remove_user_third_party_identifier(user: "&UserId", medium: "&str", address: "&str") -> "()", All, FailOpen),
        ],
    },
    Category {
        name: "presence_router",
        doc: "Presence router: who receives whose presence. Both callbacks or neither. Synapse's `register_presence_router_callbacks`.",
        callbacks: &[
            callback!("Extra recipients for presence updates: users → the states they should receive. Results are unioned."
                get_users_for_states(states: "&[PresenceState]") -> "UsersForStates", Merge, FailOpen, Some("get_interested_users")),
            callback!("Whose presence `user` receives besides the usual: a set of users, or all users. Results are unioned; All wins."
                get_interested_users(user: "&UserId") -> "InterestedUsers", Merge, FailOpen, Some("get_users_for_states")),
        ],
    },
    Category {
        name: "account_validity",
        doc: "Account validity: expire accounts. Synapse's `register_account_validity_callbacks`.",
        callbacks: &[
            callback!("Every authenticated request but logout: `Some(true)` → 403 `ORG_MATRIX_EXPIRED_ACCOUNT`. The first `Some` wins."
                is_user_expired(user: "&UserId") -> "Option<bool>", FirstSome, Propagate),
            callback!("After a user registered."
                on_user_registration(user: "&UserId") -> "()", All, Propagate),
            callback!("After a user logged in or registered."
                on_user_login(user: "&UserId", auth_provider_type: "Option<&str>", auth_provider_id: "Option<&str>") -> "()", All, Propagate),
        ],
    },
    Category {
        name: "password_auth_provider",
        doc: "Password auth providers: extra login types and registration hooks. Synapse's `register_password_auth_provider_callbacks`.",
        callbacks: &[
            callback!("A login of a type this module registered with `ModuleApi::register_login_type`. `None` → not handled by this module."
                check_auth(user: "&str", login_type: "&str", login: "&JsonObject") -> "Option<AuthResult>", FirstSome, FailOpen),
            callback!("A login with a third-party identifier and password. `None` → not handled by this module."
                check_3pid_auth(medium: "&str", address: "&str", password: "&str") -> "Option<AuthResult>", FirstSome, FailOpen),
            callback!("A logout, before the access token is invalidated."
                on_logged_out(user: "&UserId", device_id: "Option<&DeviceId>", access_token: "&str") -> "()", All, FailOpen),
            callback!("The localpart for a new registration; the first `Some` wins."
                get_username_for_registration(uia_results: "&JsonObject", params: "&JsonObject") -> "Option<String>", FirstSome, Propagate),
            callback!("The display name for a new registration; the first `Some` wins."
                get_displayname_for_registration(uia_results: "&JsonObject", params: "&JsonObject") -> "Option<String>", FirstSome, Propagate),
            callback!("Whether a third-party identifier may be used. `false` → 403 `M_THREEPID_DENIED`."
                is_3pid_allowed(medium: "&str", address: "&str", registration: "bool") -> "bool", AllTrue, Propagate),
        ],
    },
    Category {
        name: "background_update_controller",
        doc: "Background update controller: pace the server's background work. Only the first module in config order is used. Synapse's `register_background_update_controller_callbacks`.",
        callbacks: &[
            callback!("Before an iteration of a background update: how long the iteration should take."
                on_update(update_name: "&str", database_name: "&str", one_shot: "bool") -> "Duration", FirstRegistered, FailOpen),
            callback!("The batch size of an update's first iteration."
                default_batch_size(update_name: "&str", database_name: "&str") -> "u32", FirstRegistered, FailOpen),
            callback!("The smallest batch size of an update."
                min_batch_size(update_name: "&str", database_name: "&str") -> "u32", FirstRegistered, FailOpen),
        ],
    },
    Category {
        name: "account_data",
        doc: "Account data: observe writes. Synapse's `register_account_data_callbacks`.",
        callbacks: &[
            callback!("After global (`room` None) or per-room account data was written."
                on_account_data_updated(user: "&UserId", room: "Option<&RoomId>", account_data_type: "&str", content: "&JsonObject") -> "()", All, FailOpen),
        ],
    },
    Category {
        name: "add_extra_fields_to_unsigned_client_event",
        doc: "Extra `unsigned` fields on every event served to clients. Synapse's `register_add_extra_fields_to_unsigned_client_event_callbacks`.",
        callbacks: &[
            callback!("Fields to add to an event's `unsigned` object. Results are merged; the last module wins a key."
                add_field_to_unsigned_callback(event: "&Event") -> "JsonObject", Merge, Propagate),
        ],
    },
    Category {
        name: "ratelimit",
        doc: "Rate limits per user. Synapse's `register_ratelimit_callbacks`.",
        callbacks: &[
            callback!("A rate limit for `user` on `limiter_name` (such as `rc_invites.per_user`) replacing the configured one."
                get_ratelimit_override_for_user(user: "&UserId", limiter_name: "&str") -> "Option<RatelimitOverride>", FirstSome, Propagate),
        ],
    },
    Category {
        name: "media_repository",
        doc: "Media repository: per-user media configuration and upload limits. Synapse's `register_media_repository_callbacks`.",
        callbacks: &[
            callback!("The body of `GET /media/config` for `user`; the first `Some` wins."
                get_media_config_for_user(user: "&UserId") -> "Option<JsonObject>", FirstSome, Propagate),
            callback!("An upload of `size` bytes. `false` → 413 `M_TOO_LARGE`."
                is_user_allowed_to_upload_media_of_size(user: "&UserId", size: "u64") -> "bool", AllTrue, Propagate),
            callback!("The upload limits for `user`, replacing the configured ones; `Some(vec![])` is unlimited."
                get_media_upload_limits_for_user(user: "&UserId") -> "Option<Vec<MediaUploadLimit>>", FirstSome, Propagate),
            callback!("Before an upload is refused for exceeding `limit` (→ 400 `M_RESOURCE_LIMIT_EXCEEDED`)."
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

/// `user_may_join_room` → `UserMayJoinRoom`.
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
