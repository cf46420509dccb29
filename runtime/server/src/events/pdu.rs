//! Events as servers exchange them (PDUs): one parsed from another
//! server's JSON, checked for format and named as its room version says,
//! and the same shape for the state events a check reads, so that ruma's
//! auth rules run over both.

use super::room_version_rules;
use crate::storage::NewEvent;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::TimelineEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, UInt};
use serde_json::value::RawValue;
use serde_json::Value;

/// A PDU, parsed.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub origin_server_ts: i64,
    pub event_type: String,
    kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: i64,
    /// The PDU as it will be stored and served, without `unsigned`.
    pub object: CanonicalJsonObject,
}

/// The event IDs of `prev_events` or `auth_events`: plain IDs, or (room
/// versions 1 and 2) `[id, {"sha256": hash}]` pairs.
pub(crate) fn reference_ids(pdu: &Value, field: &str) -> Result<Vec<OwnedEventId>, String> {
    references(pdu.get(field), field)
}

fn references(value: Option<&Value>, field: &str) -> Result<Vec<OwnedEventId>, String> {
    let Some(Value::Array(items)) = value else {
        return Err(format!("`{field}` must be a list"));
    };
    items
        .iter()
        .map(|item| {
            let id = match item {
                Value::String(id) => id.as_str(),
                Value::Array(pair) => pair.first().and_then(Value::as_str).unwrap_or_default(),
                _ => "",
            };
            OwnedEventId::try_from(id).map_err(|_| format!("`{field}` holds a bad event ID"))
        })
        .collect()
}

fn field<'a>(pdu: &'a serde_json::Map<String, Value>, name: &str) -> Result<&'a str, String> {
    pdu.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the PDU has no string `{name}`"))
}

impl Pdu {
    /// Parses another server's PDU of a room of `room_version`: the
    /// spec's format checks (ruma's `check_pdu_format`: sizes, required
    /// fields), then its ID (given in versions 1 and 2, the reference hash
    /// later).
    pub fn parse(value: Value, room_version: &str) -> Result<Pdu, String> {
        let rules = room_version_rules(room_version);
        let Value::Object(mut map) = value else {
            return Err("a PDU is a JSON object".into());
        };
        // What another server says outside the signed part is not trusted.
        map.remove("unsigned");
        let object = ruma::canonical_json::try_from_json_map(map.clone())
            .map_err(|e| format!("the PDU is not canonical JSON: {e}"))?;
        ruma::state_res::check_pdu_format(&object, &rules.event_format)?;
        Self::from_parts(map, object, &rules)
    }

    /// A PDU this server stored (trusted: it was checked when it came).
    pub fn from_stored(text: &str, room_version: &str) -> Result<Pdu, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(map) = value else {
            return Err("a PDU is a JSON object".into());
        };
        let object = ruma::canonical_json::try_from_json_map(map.clone())
            .map_err(|e| format!("the PDU is not canonical JSON: {e}"))?;
        Self::from_parts(map, object, &room_version_rules(room_version))
    }

    fn from_parts(
        map: serde_json::Map<String, Value>,
        object: CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<Pdu, String> {
        let event_id = match rules.event_id_format {
            ruma::room_version_rules::EventIdFormatVersion::V1 => {
                field(&map, "event_id")?.to_string()
            }
            _ => format!(
                "${}",
                ruma::signatures::reference_hash(&object, rules).map_err(|e| e.to_string())?
            ),
        };
        let event_id = OwnedEventId::try_from(event_id).map_err(|e| format!("event ID: {e}"))?;
        let room_id =
            OwnedRoomId::try_from(field(&map, "room_id")?).map_err(|e| format!("room_id: {e}"))?;
        let sender =
            OwnedUserId::try_from(field(&map, "sender")?).map_err(|e| format!("sender: {e}"))?;
        let event_type = field(&map, "type")?.to_string();
        let content = map
            .get("content")
            .filter(|c| c.is_object())
            .ok_or("the PDU has no `content` object")?;
        let content = serde_json::value::to_raw_value(content).map_err(|e| e.to_string())?;
        let state_key = match map.get("state_key") {
            None => None,
            Some(Value::String(key)) => Some(key.clone()),
            Some(_) => return Err("`state_key` must be a string".into()),
        };
        let redacts = map
            .get("redacts")
            .or_else(|| map.get("content").and_then(|c| c.get("redacts")))
            .and_then(Value::as_str)
            .and_then(|id| OwnedEventId::try_from(id).ok());
        Ok(Pdu {
            event_id,
            room_id,
            sender,
            origin_server_ts: map
                .get("origin_server_ts")
                .and_then(Value::as_i64)
                .ok_or("the PDU has no integer `origin_server_ts`")?,
            kind: TimelineEventType::from(event_type.as_str()),
            event_type,
            content,
            state_key,
            prev_events: references(map.get("prev_events"), "prev_events")?,
            auth_events: references(map.get("auth_events"), "auth_events")?,
            redacts,
            depth: map
                .get("depth")
                .and_then(Value::as_i64)
                .ok_or("the PDU has no integer `depth`")?,
            object,
        })
    }

    /// A state event of a room's current state, for the auth rules (which
    /// read no more than its type, key, sender and content).
    pub fn of_state(event: &axon::callbacks::Event) -> Pdu {
        let content = serde_json::value::to_raw_value(&event.content)
            .unwrap_or_else(|_| RawValue::from_string("{}".into()).unwrap_or_default());
        Pdu {
            event_id: event.event_id.clone(),
            room_id: event.room_id.clone(),
            sender: event.sender.clone(),
            origin_server_ts: event.origin_server_ts as i64,
            kind: TimelineEventType::from(event.event_type.as_str()),
            event_type: event.event_type.clone(),
            content,
            state_key: event.state_key.clone(),
            prev_events: Vec::new(),
            auth_events: Vec::new(),
            redacts: None,
            depth: 0,
            object: CanonicalJsonObject::new(),
        }
    }

    /// The PDU's JSON as stored and served.
    pub fn json(&self) -> String {
        serde_json::to_string(&self.object).unwrap_or_default()
    }

    /// The event to store.
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent {
            event_id: self.event_id.clone(),
            room_id: self.room_id.clone(),
            sender: self.sender.clone(),
            event_type: self.event_type.clone(),
            state_key: self.state_key.clone(),
            depth: self.depth,
            origin_server_ts: self.origin_server_ts,
            content: self.content.get().to_string(),
            pdu: self.json(),
            prev_events: self.prev_events.clone(),
            device_id: None,
            txn_id: None,
            notifies: Vec::new(),
            destinations: Vec::new(),
            resolved_state: Vec::new(),
        }
    }

    /// The membership a member event sets.
    pub fn membership(&self) -> Option<String> {
        let content: Value = serde_json::from_str(self.content.get()).ok()?;
        content
            .get("membership")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &OwnedEventId {
        &self.event_id
    }

    fn room_id(&self) -> Option<&ruma::RoomId> {
        Some(&self.room_id)
    }

    fn sender(&self) -> &ruma::UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        MilliSecondsSinceUnixEpoch(UInt::try_from(self.origin_server_ts.max(0)).unwrap_or_default())
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&OwnedEventId> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        false
    }
}
