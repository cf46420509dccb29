//! Events: building them as the room version says (reference-hash event
//! IDs), the auth rules that decide who may send what, and their client
//! format.

mod auth;
mod build;
mod client;
mod module;
mod pdu;

pub use auth::{check_auth, membership_of, recheck_auth, PowerLevels};
pub(crate) use build::auth_event_ids;
pub use build::{
    build_event, references_with_hashes, room_version_rules, BuiltEvent, EventDraft,
    ReferenceHashes, SUPPORTED_ROOM_VERSIONS,
};
pub use client::{client_event, ClientEvent, Unsigned};
pub use module::module_event;
pub(crate) use pdu::reference_ids;
pub use pdu::Pdu;

/// Whether a state event is part of the stripped state shown of a room to
/// someone outside it (invited or knocking): the room's name and look, and
/// the membership of `member` (the invitee's own, or the inviter's when an
/// invite is sent to another server).
pub fn in_stripped_state(event_type: &str, state_key: Option<&str>, member: &str) -> bool {
    matches!(
        event_type,
        "m.room.create"
            | "m.room.join_rules"
            | "m.room.name"
            | "m.room.avatar"
            | "m.room.canonical_alias"
            | "m.room.encryption"
            | "m.room.topic"
    ) || (event_type == "m.room.member" && state_key == Some(member))
}
