//! The service layer: each Matrix operation exists once, here, whoever asks
//! for it — a client through the HTTP API, a server admin through the admin
//! API, a module through its `ModuleApi` (and, later, a remote server). An
//! operation runs its rate limits, the modules' callbacks (with the right
//! `by_admin`), the auth rules, storage and notifications, in Synapse's
//! order. HTTP handlers parse, call a service, answer; nothing outside this
//! module dispatches a callback (a test in `lib.rs` keeps it so).

mod account_data;
mod accounts;
mod client_ips;
mod devices;
mod directory;
mod edus;
mod events;
mod federated;
mod forks;
pub(crate) use federated::remote_servers;
pub mod filters;
pub mod guests;
pub mod key_backup;
mod keys;
mod media;
mod membership;
pub mod outbox;
mod passwords;
mod presence;
mod profile;
pub mod push_rules;
pub mod pushers;
mod ratelimit;
pub mod receipts;
mod reports;
mod rooms;
pub mod search;
pub mod server_keys;
mod sessions;
pub mod spaces;
pub mod thumbnails;
mod to_device;
mod typing;
pub mod uia;
mod upgrade;
mod visibility;
mod voip;

pub use accounts::{AdminUserChange, Registration, RegistrationOutcome};
pub use client_ips::ClientIps;
pub use events::SendOptions;
pub(crate) use media::content_type_essence;
pub use media::Upload;
pub use membership::MembershipChange;
pub use passwords::Passwords;
pub use profile::ProfileChange;
pub use ratelimit::{FederationLimiter, FederationPermit, RateLimiter};
pub use rooms::CreateRoomRequest;
pub use sessions::{LoginRequest, Requester};
pub use typing::Typing;
pub use visibility::RoomAccess;

use axon::callbacks::{JsonObject, ModuleRef, SpamCheck};
use axon::{ErrCode, ModuleError};
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

/// A Matrix error: the same type modules return.
pub type MatrixError = ModuleError;

/// Through which door an operation comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The user's own client.
    Client,
    /// A server admin through the admin API, on someone's account.
    AdminApi,
    /// A module through its `ModuleApi`, with the module's path.
    Module(String),
}

/// Who performs an operation. It decides the checks the operation goes
/// through and what modules are told: rate limits apply to clients, spam
/// checks are skipped for server admins (as Synapse skips them), and an
/// operation not made by the user themselves is `by_admin` to modules.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The local user the operation is done as: the sender of its events,
    /// the admin of an admin API call, the user a module acts as.
    pub user_id: OwnedUserId,
    pub device_id: Option<OwnedDeviceId>,
    /// A server admin: skips the spam checks Synapse skips for admins.
    pub admin: bool,
    /// The user's messages and invites silently go nowhere.
    pub shadow_banned: bool,
    /// A guest: joins only rooms that admit guests, changes no one else's
    /// membership.
    pub guest: bool,
    pub via: Via,
}

impl Actor {
    /// A user through their client, as their access token says.
    pub fn client(requester: &Requester) -> Actor {
        Actor {
            user_id: requester.user_id.clone(),
            device_id: Some(requester.device_id.clone()),
            admin: requester.admin,
            shadow_banned: requester.shadow_banned,
            guest: requester.is_guest,
            via: Via::Client,
        }
    }

    /// A server admin through the admin API.
    pub fn admin_api(requester: &Requester) -> Actor {
        Actor {
            admin: true,
            shadow_banned: false,
            guest: false,
            via: Via::AdminApi,
            ..Actor::client(requester)
        }
    }

    /// A module acting as local user `user` (for operations on an account,
    /// the account itself). A module is not a server admin: its users' room
    /// operations meet the spam checks as a client's do.
    pub fn module(module: &ModuleRef, user: &UserId) -> Actor {
        Actor {
            user_id: user.to_owned(),
            device_id: None,
            admin: false,
            shadow_banned: false,
            guest: false,
            via: Via::Module(module.path.clone()),
        }
    }

    /// The same door, acting as another user (a deactivated user leaving
    /// their rooms, a creator's invites).
    pub fn as_user(&self, user: &UserId) -> Actor {
        Actor {
            user_id: user.to_owned(),
            device_id: None,
            ..self.clone()
        }
    }

    /// Done with server authority rather than by the user themselves
    /// (Synapse's `by_admin`): the admin API and modules.
    pub fn by_admin(&self) -> bool {
        !matches!(self.via, Via::Client)
    }

    /// Rate limits apply to clients only (as Synapse's module API and admin
    /// API are not rate-limited).
    pub fn is_ratelimited(&self) -> bool {
        matches!(self.via, Via::Client)
    }
}

/// A spam checker's denial as the client sees it: 403 with the module's
/// errcode and fields (which may replace the message, as Synapse allows).
fn refused(verdict: SpamCheck, message: &str) -> Result<(), MatrixError> {
    match verdict {
        SpamCheck::NotSpam => Ok(()),
        SpamCheck::Deny {
            errcode,
            extra_fields,
        } => Err(denial(message, errcode, extra_fields)),
    }
}

fn denial(message: &str, errcode: ErrCode, extra_fields: JsonObject) -> MatrixError {
    let mut error = MatrixError::new(403, errcode, message);
    error.extra_fields = extra_fields;
    error
}

/// What a client is told when another server could not do what was
/// asked: that server's own Matrix error when it sent one (a 404 stays a
/// 404), else 502 with `message`.
pub(crate) fn federation_failure(
    error: crate::federation::FederationError,
    message: &str,
) -> MatrixError {
    use crate::federation::FederationError;
    tracing::info!("{message}: {error}");
    match error {
        FederationError::Status { status, body } if (400..500).contains(&status) => {
            match body.get("errcode").and_then(|c| c.as_str()) {
                Some(code) => MatrixError::new(
                    status,
                    ErrCode::from_code(code),
                    body.get("error")
                        .and_then(|e| e.as_str())
                        .unwrap_or(message)
                        .to_string(),
                ),
                None => MatrixError::new(502, ErrCode::Unknown, message),
            }
        }
        _ => MatrixError::new(502, ErrCode::Unknown, message),
    }
}

/// A string for a URL's path or query, every byte but the unreserved ones
/// escaped.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A user ID the client sent; `M_INVALID_PARAM` if it is not one.
pub(crate) fn user_id_param(user: &str) -> Result<OwnedUserId, MatrixError> {
    UserId::parse(user).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid user ID `{user}`: {e}"),
        )
    })
}

/// A random string of `len` letters and digits.
pub(crate) fn random_string(len: usize) -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
