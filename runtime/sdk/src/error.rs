//! Errors modules return: `ModuleError` (a Matrix error response) and
//! `ConfigError` (a refused module config).

use crate::callbacks::JsonObject;
use std::fmt;

/// A Matrix error code (`errcode` of an error response).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrCode {
    Forbidden,
    Unknown,
    UnknownToken,
    MissingToken,
    BadJson,
    NotJson,
    NotFound,
    LimitExceeded,
    TooLarge,
    ResourceLimitExceeded,
    UserInUse,
    InvalidUsername,
    RoomInUse,
    InvalidParam,
    MissingParam,
    Exclusive,
    ThreepidDenied,
    ThreepidInUse,
    Unrecognized,
    UserDeactivated,
    ExpiredAccount,
    GuestAccessForbidden,
    UnsupportedRoomVersion,
    BadAlias,
    InvalidSignature,
    /// A server this one needs cannot be reached.
    Unavailable,
    /// A key backup upload to a version that is not the current one.
    WrongRoomKeysVersion,
    /// A request from another server without a valid signature.
    Unauthorized,
    /// The room's version is one the user's server does not support.
    IncompatibleRoomVersion,
    /// Any other code, such as a module's own `ORG_EXAMPLE_...`.
    Custom(String),
}

impl ErrCode {
    pub fn as_str(&self) -> &str {
        match self {
            ErrCode::Forbidden => "M_FORBIDDEN",
            ErrCode::Unknown => "M_UNKNOWN",
            ErrCode::UnknownToken => "M_UNKNOWN_TOKEN",
            ErrCode::MissingToken => "M_MISSING_TOKEN",
            ErrCode::BadJson => "M_BAD_JSON",
            ErrCode::NotJson => "M_NOT_JSON",
            ErrCode::NotFound => "M_NOT_FOUND",
            ErrCode::LimitExceeded => "M_LIMIT_EXCEEDED",
            ErrCode::TooLarge => "M_TOO_LARGE",
            ErrCode::ResourceLimitExceeded => "M_RESOURCE_LIMIT_EXCEEDED",
            ErrCode::UserInUse => "M_USER_IN_USE",
            ErrCode::InvalidUsername => "M_INVALID_USERNAME",
            ErrCode::RoomInUse => "M_ROOM_IN_USE",
            ErrCode::InvalidParam => "M_INVALID_PARAM",
            ErrCode::MissingParam => "M_MISSING_PARAM",
            ErrCode::Exclusive => "M_EXCLUSIVE",
            ErrCode::ThreepidDenied => "M_THREEPID_DENIED",
            ErrCode::ThreepidInUse => "M_THREEPID_IN_USE",
            ErrCode::Unrecognized => "M_UNRECOGNIZED",
            ErrCode::UserDeactivated => "M_USER_DEACTIVATED",
            ErrCode::ExpiredAccount => "ORG_MATRIX_EXPIRED_ACCOUNT",
            ErrCode::GuestAccessForbidden => "M_GUEST_ACCESS_FORBIDDEN",
            ErrCode::UnsupportedRoomVersion => "M_UNSUPPORTED_ROOM_VERSION",
            ErrCode::BadAlias => "M_BAD_ALIAS",
            ErrCode::InvalidSignature => "M_INVALID_SIGNATURE",
            ErrCode::Unavailable => "M_UNAVAILABLE",
            ErrCode::WrongRoomKeysVersion => "M_WRONG_ROOM_KEYS_VERSION",
            ErrCode::Unauthorized => "M_UNAUTHORIZED",
            ErrCode::IncompatibleRoomVersion => "M_INCOMPATIBLE_ROOM_VERSION",
            ErrCode::Custom(code) => code,
        }
    }

    /// The code for a string, known or not.
    pub fn from_code(code: &str) -> ErrCode {
        const KNOWN: &[ErrCode] = &[
            ErrCode::Forbidden,
            ErrCode::Unknown,
            ErrCode::UnknownToken,
            ErrCode::MissingToken,
            ErrCode::BadJson,
            ErrCode::NotJson,
            ErrCode::NotFound,
            ErrCode::LimitExceeded,
            ErrCode::TooLarge,
            ErrCode::ResourceLimitExceeded,
            ErrCode::UserInUse,
            ErrCode::InvalidUsername,
            ErrCode::RoomInUse,
            ErrCode::InvalidParam,
            ErrCode::MissingParam,
            ErrCode::Exclusive,
            ErrCode::ThreepidDenied,
            ErrCode::ThreepidInUse,
            ErrCode::Unrecognized,
            ErrCode::UserDeactivated,
            ErrCode::ExpiredAccount,
            ErrCode::GuestAccessForbidden,
            ErrCode::UnsupportedRoomVersion,
            ErrCode::BadAlias,
            ErrCode::InvalidSignature,
            ErrCode::Unavailable,
            ErrCode::WrongRoomKeysVersion,
            ErrCode::Unauthorized,
            ErrCode::IncompatibleRoomVersion,
        ];
        KNOWN
            .iter()
            .find(|k| k.as_str() == code)
            .cloned()
            .unwrap_or_else(|| ErrCode::Custom(code.to_string()))
    }
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Ok(ErrCode::from_code(&code))
    }
}

/// A Matrix error response: HTTP status, `errcode`, `error`, and any extra
/// top-level fields. A callback returning `Err(ModuleError)` sends exactly
/// this to the client, unless the callback fails open.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleError {
    pub status: u16,
    pub errcode: ErrCode,
    pub message: String,
    pub extra_fields: JsonObject,
}

impl ModuleError {
    pub fn new(status: u16, errcode: ErrCode, message: impl Into<String>) -> Self {
        ModuleError {
            status,
            errcode,
            message: message.into(),
            extra_fields: JsonObject::new(),
        }
    }

    /// 403 `M_FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, ErrCode::Forbidden, message)
    }

    /// 500 `M_UNKNOWN`: something broke inside the module.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, ErrCode::Unknown, message)
    }

    /// Adds a top-level field to the error body.
    pub fn with_field(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.extra_fields.insert(key.into(), value.into());
        self
    }

    /// The JSON body: `{"errcode": …, "error": …, …extra fields}`. As in
    /// Synapse (`cs_error`), extra fields win: a module denying with an
    /// `error` field sets the message the client shows.
    pub fn body(&self) -> serde_json::Value {
        let mut body = JsonObject::new();
        body.insert("errcode".into(), self.errcode.as_str().into());
        body.insert("error".into(), self.message.clone().into());
        body.extend(self.extra_fields.clone());
        serde_json::Value::Object(body)
    }
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.errcode, self.message)
    }
}

impl std::error::Error for ModuleError {}

impl axum::response::IntoResponse for ModuleError {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

/// A module refusing its config, returned from its constructor. The loader
/// adds the module's name and place in the `modules:` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where inside the module's `config:` the problem is, such as `rules[2].pattern`.
    pub path: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            path: None,
            message: message.into(),
        }
    }

    /// An error about the value at `path` inside the module's config.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: Some(path.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{path}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}
