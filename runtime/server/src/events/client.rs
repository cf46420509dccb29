//! Events as clients see them (the "client event" format).

use crate::storage::StoredEvent;
use serde::Serialize;
use serde_json::value::RawValue;

#[derive(Debug, Serialize)]
pub struct ClientEvent<'a> {
    pub content: &'a RawValue,
    pub event_id: &'a str,
    pub origin_server_ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<&'a str>,
    pub sender: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_key: Option<&'a str>,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// A redaction's target at the top level too, where clients of rooms
    /// before version 11 look (as Synapse serves it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacts: Option<String>,
    pub unsigned: Unsigned<'a>,
}

#[derive(Debug, Serialize)]
pub struct Unsigned<'a> {
    pub age: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_content: Option<&'a RawValue>,
    /// The redaction that applies to this event, in client format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted_because: Option<serde_json::Value>,
    /// Fields modules add (`add_field_to_unsigned_callback`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The client format of `event` for a request by `device` (which sees its
/// own transaction IDs); `with_room_id` is false inside `/sync` rooms.
pub fn client_event<'a>(
    event: &'a StoredEvent,
    viewer: Option<(&str, &str)>,
    with_room_id: bool,
    now: i64,
) -> ClientEvent<'a> {
    let transaction_id = match (viewer, &event.device_id, &event.txn_id) {
        (Some((user, device)), Some(d), Some(txn))
            if user == event.sender.as_str() && device == d.as_str() =>
        {
            Some(txn.as_str())
        }
        _ => None,
    };
    ClientEvent {
        content: &event.content,
        event_id: event.event_id.as_str(),
        origin_server_ts: event.origin_server_ts,
        room_id: with_room_id.then_some(event.room_id.as_str()),
        sender: event.sender.as_str(),
        state_key: event.state_key.as_deref(),
        event_type: &event.event_type,
        redacts: (event.event_type == "m.room.redaction")
            .then(|| {
                let content: serde_json::Value = serde_json::from_str(event.content.get()).ok()?;
                content.get("redacts")?.as_str().map(str::to_string)
            })
            .flatten(),
        unsigned: Unsigned {
            age: (now - event.origin_server_ts).max(0),
            transaction_id,
            prev_content: event.prev_content.as_deref(),
            redacted_because: None,
            extra: serde_json::Map::new(),
        },
    }
}
