//! Verdict types: what a callback decides, as Rust types rather than
//! Synapse's strings and bools (whose meaning flips between callbacks).

use super::types::{Event, JsonObject};
use crate::error::ErrCode;

/// A spam checker's verdict.
#[derive(Clone, Debug, PartialEq)]
pub enum SpamCheck {
    /// Allowed; the next module is asked.
    NotSpam,
    /// Refused: the client gets the call site's status (403 for most) with
    /// this `errcode`, and `extra_fields` merged into the error body.
    Deny {
        errcode: ErrCode,
        extra_fields: JsonObject,
    },
}

impl SpamCheck {
    pub fn deny(errcode: ErrCode) -> Self {
        SpamCheck::Deny {
            errcode,
            extra_fields: JsonObject::new(),
        }
    }

    pub fn deny_with(errcode: ErrCode, extra_fields: JsonObject) -> Self {
        SpamCheck::Deny {
            errcode,
            extra_fields,
        }
    }
}

/// A registration spam check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationBehaviour {
    Allow,
    /// Registration succeeds, but the user is shadow-banned.
    ShadowBan,
    /// Refused with 429, disguised as rate limiting (as Synapse does).
    Deny,
}

/// `check_event_allowed`'s verdict.
#[derive(Clone, Debug, PartialEq)]
pub enum EventAllowed {
    Allow,
    /// 403 `M_FORBIDDEN` "This event is not allowed in this context".
    Deny,
    /// The event is replaced by this one, which is stored and served instead.
    /// Later modules are not asked.
    Replace(Box<Event>),
}

/// A verdict with an "allow" value, for first-non-allow combining.
pub trait Verdict {
    fn allow() -> Self;
    fn is_allow(&self) -> bool;
}

impl Verdict for SpamCheck {
    fn allow() -> Self {
        SpamCheck::NotSpam
    }
    fn is_allow(&self) -> bool {
        matches!(self, SpamCheck::NotSpam)
    }
}

impl Verdict for RegistrationBehaviour {
    fn allow() -> Self {
        RegistrationBehaviour::Allow
    }
    fn is_allow(&self) -> bool {
        matches!(self, RegistrationBehaviour::Allow)
    }
}

impl Verdict for EventAllowed {
    fn allow() -> Self {
        EventAllowed::Allow
    }
    fn is_allow(&self) -> bool {
        matches!(self, EventAllowed::Allow)
    }
}
