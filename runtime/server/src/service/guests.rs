//! Guest accounts (Synapse's `allow_guest_access`): made by
//! `POST /register?kind=guest` with a numeric user ID and no password;
//! they may read and talk in rooms that admit guests and little else
//! (`GUEST_ROUTES`), and become full accounts by registering with their
//! access token.

use super::sessions::new_device;
use super::{MatrixError, RegistrationOutcome, Requester};
use crate::homeserver::Homeserver;
use crate::storage::{NewUser, StorageError};
use axon::callbacks::RequestInfo;
use axon::ErrCode;

/// What guests may use, by route (under the client API's `v3`/`r0`
/// prefix, or in full) and method: the endpoints Synapse serves with
/// `allow_guest=True`. Anything else answers 403 `M_GUEST_ACCESS_FORBIDDEN`.
pub const GUEST_ROUTES: &[(&str, &str)] = &[
    ("GET", "/sync"),
    ("GET", "/events"),
    ("GET", "/initialSync"),
    ("GET", "/account/whoami"),
    ("GET", "/capabilities"),
    ("GET", "/devices"),
    ("GET", "/devices/{device}"),
    ("POST", "/logout"),
    ("GET", "/joined_rooms"),
    ("GET", "/publicRooms"),
    ("POST", "/publicRooms"),
    ("POST", "/join/{room}"),
    ("POST", "/rooms/{room}/join"),
    ("POST", "/rooms/{room}/leave"),
    ("GET", "/rooms/{room}/messages"),
    ("GET", "/rooms/{room}/members"),
    ("GET", "/rooms/{room}/state"),
    ("GET", "/rooms/{room}/state/{event_type}"),
    ("GET", "/rooms/{room}/state/{event_type}/{state_key}"),
    ("GET", "/rooms/{room}/event/{event_id}"),
    ("GET", "/rooms/{room}/context/{event_id}"),
    ("GET", "/rooms/{room}/initialSync"),
    ("PUT", "/rooms/{room}/send/{event_type}/{txn_id}"),
    ("POST", "/rooms/{room}/send/{event_type}"),
    ("PUT", "/profile/{user}/displayname"),
    ("PUT", "/profile/{user}/avatar_url"),
    ("POST", "/user/{user}/filter"),
    ("GET", "/user/{user}/filter/{filter_id}"),
    ("GET", "/voip/turnServer"),
    ("PUT", "/sendToDevice/{event_type}/{txn_id}"),
    ("POST", "/keys/upload"),
    ("POST", "/keys/query"),
    ("POST", "/keys/claim"),
    ("GET", "/thirdparty/protocols"),
    ("GET", "/thirdparty/protocol/{protocol}"),
    ("GET", "/_matrix/client/v1/rooms/{room}/hierarchy"),
    (
        "GET",
        "/_matrix/client/v1/rooms/{room}/relations/{event_id}",
    ),
    (
        "GET",
        "/_matrix/client/v1/rooms/{room}/relations/{event_id}/{rel_type}",
    ),
    (
        "GET",
        "/_matrix/client/v1/rooms/{room}/relations/{event_id}/{rel_type}/{event_type}",
    ),
    ("GET", "/_matrix/client/v1/media/config"),
    (
        "GET",
        "/_matrix/client/v1/media/download/{server}/{media_id}",
    ),
    (
        "GET",
        "/_matrix/client/v1/media/download/{server}/{media_id}/{file_name}",
    ),
    (
        "GET",
        "/_matrix/client/v1/media/thumbnail/{server}/{media_id}",
    ),
];

/// Whether a guest may call the route `pattern` (axum's matched path).
pub fn guest_may_use(method: &str, pattern: &str) -> bool {
    let relative = ["/_matrix/client/v3", "/_matrix/client/r0"]
        .iter()
        .find_map(|prefix| pattern.strip_prefix(prefix))
        .unwrap_or(pattern);
    GUEST_ROUTES
        .iter()
        .any(|(m, p)| *m == method && *p == relative)
}

pub(crate) fn guest_forbidden() -> MatrixError {
    MatrixError::new(
        403,
        ErrCode::GuestAccessForbidden,
        "Guest access not allowed",
    )
}

impl Homeserver {
    /// `POST /register?kind=guest`: a new guest with a numeric user ID
    /// (numeric IDs are reserved for guests), logged in on a new device.
    pub async fn register_guest(
        &self,
        client: &RequestInfo,
        initial_device_display_name: Option<String>,
    ) -> Result<RegistrationOutcome, MatrixError> {
        if !self.config.allow_guest_access {
            return Err(MatrixError::new(
                403,
                ErrCode::GuestAccessForbidden,
                "Guest access is disabled",
            ));
        }
        self.rate_limiter
            .check("rc_registration", &client.ip, self.config.rc_registration)?;
        for _ in 0..10 {
            let localpart =
                rand::Rng::gen_range(&mut rand::thread_rng(), 1_000_000_000u64..10_000_000_000)
                    .to_string();
            let user_id = ruma::UserId::parse(format!("@{localpart}:{}", self.server_name()))
                .map_err(|e| MatrixError::internal(e.to_string()))?;
            let device = new_device(&user_id, None, initial_device_display_name.clone());
            let user = NewUser {
                user_id: user_id.clone(),
                password_hash: None,
                admin: false,
                shadow_banned: false,
                displayname: None,
                created_ts: axon::time::now_ms(),
                is_guest: true,
            };
            match self.storage.create_user(user, Some(device.clone())).await {
                Ok(()) => {
                    return Ok(RegistrationOutcome {
                        user_id,
                        device: Some(device),
                    })
                }
                Err(StorageError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MatrixError::internal("no free guest user ID"))
    }

    /// `POST /register` with `guest_access_token`: the guest becomes a full
    /// user with a password, keeping their user ID (a username, if given,
    /// must be theirs), and is logged in on a new device.
    pub async fn upgrade_guest(
        &self,
        guest_access_token: String,
        username: Option<&str>,
        password: Option<String>,
        initial_device_display_name: Option<String>,
    ) -> Result<RegistrationOutcome, MatrixError> {
        if !self.config.enable_registration {
            return Err(MatrixError::forbidden("Registration has been disabled"));
        }
        let not_theirs = || {
            MatrixError::forbidden(
                "Cannot register taken user ID without valid guest credentials for that user.",
            )
        };
        let guest: Requester = self
            .authenticate(Some(guest_access_token), false)
            .await
            .map_err(|_| not_theirs())?;
        if !guest.is_guest || username.is_some_and(|u| u != guest.user_id.localpart()) {
            return Err(not_theirs());
        }
        let password = password.ok_or_else(|| {
            MatrixError::new(400, ErrCode::MissingParam, "Missing params: password")
        })?;
        let hash = self.passwords.hash(password).await?;
        let device = new_device(&guest.user_id, None, initial_device_display_name);
        if !self
            .storage
            .upgrade_guest(&guest.user_id, hash, Some(device.clone()))
            .await?
        {
            return Err(not_theirs());
        }
        Ok(RegistrationOutcome {
            user_id: guest.user_id,
            device: Some(device),
        })
    }
}
