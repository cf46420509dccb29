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
pub use pdu::Pdu;
