//! Turning a draft into an event: prev/auth events, depth, then hashed and
//! signed with this server's key by ruma's signatures, and named by its
//! reference hash (room versions 3 and later).

use crate::storage::{NewEvent, RoomSnapshot};
use axon::{ErrCode, ModuleError};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::room_version_rules::RoomVersionRules;
use serde_json::{json, Map, Value};

/// The room versions this server creates and serves: every stable one.
pub const SUPPORTED_ROOM_VERSIONS: &[&str] =
    &["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"];

/// The content hashes (`hashes.sha256`) of the events a new event refers
/// to, which room versions 1 and 2 write beside each reference.
pub type ReferenceHashes = std::collections::HashMap<ruma::OwnedEventId, String>;

/// Whether events of this room version reference others with their hashes.
pub fn references_with_hashes(room_version: &str) -> bool {
    matches!(
        room_version_rules(room_version).events_reference_format,
        ruma::room_version_rules::EventsReferenceFormatVersion::V1
    )
}

/// An event a user wants to send, before it is built.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub sender: ruma::OwnedUserId,
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: Map<String, Value>,
}

/// A built event: what is stored, and its PDU.
#[derive(Debug, Clone)]
pub struct BuiltEvent {
    pub new: NewEvent,
    pub pdu: Map<String, Value>,
}

/// Largest PDU the spec allows.
const MAX_PDU_SIZE: usize = 65_536;

/// ruma's rules for a room version: event ID format, redaction and the
/// authorization differences between versions.
pub fn room_version_rules(room_version: &str) -> RoomVersionRules {
    match room_version {
        "1" => RoomVersionRules::V1,
        "2" => RoomVersionRules::V2,
        "3" => RoomVersionRules::V3,
        "4" => RoomVersionRules::V4,
        "5" => RoomVersionRules::V5,
        "6" => RoomVersionRules::V6,
        "7" => RoomVersionRules::V7,
        "8" => RoomVersionRules::V8,
        "9" => RoomVersionRules::V9,
        "11" => RoomVersionRules::V11,
        _ => RoomVersionRules::V10,
    }
}

fn canonical(value: Map<String, Value>) -> Result<CanonicalJsonObject, ModuleError> {
    ruma::canonical_json::try_from_json_map(value).map_err(|e| {
        ModuleError::new(
            400,
            ErrCode::BadJson,
            format!("event is not valid canonical JSON: {e}"),
        )
    })
}

/// Builds the next event of the room in `snapshot` (or the first events of
/// a new room, whose snapshot grows as they are built).
pub fn build_event(
    snapshot: &RoomSnapshot,
    draft: &EventDraft,
    now: i64,
    hashes: &ReferenceHashes,
    signer: &crate::service::server_keys::ServerKeys,
) -> Result<BuiltEvent, ModuleError> {
    // Format rules hold for every event, those a new room starts with too.
    let rules = room_version_rules(&snapshot.room_version);
    if draft.event_type == "m.room.power_levels" && rules.authorization.integer_power_levels {
        super::auth::validate_power_levels(&draft.content)?;
    }
    let auth_events = auth_event_ids(snapshot, draft);
    let depth = snapshot.max_depth + 1;
    let mut pdu = Map::new();
    let with_hashes = references_with_hashes(&snapshot.room_version);
    // Versions 1 and 2: `[[event_id, {"sha256": hash}]]`; later ones: IDs.
    let references = |ids: &[ruma::OwnedEventId]| -> Result<Value, ModuleError> {
        if !with_hashes {
            return Ok(json!(ids));
        }
        ids.iter()
            .map(|id| {
                let hash = hashes.get(id).ok_or_else(|| {
                    ModuleError::internal(format!("no content hash known for {id}"))
                })?;
                Ok(json!([id, { "sha256": hash }]))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    };
    pdu.insert("auth_events".into(), references(&auth_events)?);
    pdu.insert("content".into(), Value::Object(draft.content.clone()));
    pdu.insert("depth".into(), json!(depth));
    pdu.insert("origin_server_ts".into(), json!(now));
    pdu.insert("prev_events".into(), references(&snapshot.extremities)?);
    pdu.insert("room_id".into(), json!(snapshot.room_id));
    pdu.insert("sender".into(), json!(draft.sender));
    pdu.insert("type".into(), json!(draft.event_type));
    if let Some(state_key) = &draft.state_key {
        pdu.insert("state_key".into(), json!(state_key));
    }
    // Before room version 11 a redaction names its target at the top level;
    // Axon keeps `content.redacts` too, where later versions read it.
    if draft.event_type == "m.room.redaction"
        && !room_version_rules(&snapshot.room_version)
            .redaction
            .content_field_redacts
    {
        if let Some(target) = draft.content.get("redacts") {
            pdu.insert("redacts".into(), target.clone());
        }
    }
    // Versions 1 and 2 name an event `$random:server`, in the PDU (and so
    // under its hashes and signature); later ones by its reference hash.
    let v1_ids = rules.event_id_format == ruma::room_version_rules::EventIdFormatVersion::V1;
    if v1_ids {
        let local = crate::service::random_string(18);
        let server = draft.sender.server_name();
        pdu.insert("event_id".into(), json!(format!("${local}:{server}")));
    }
    let mut object = canonical(pdu)?;
    signer.hash_and_sign_event(&mut object, &rules)?;
    let event_id = if v1_ids {
        object
            .get("event_id")
            .and_then(|id| id.as_str())
            .unwrap_or_default()
            .to_string()
    } else {
        let reference = ruma::signatures::reference_hash(&object, &rules)
            .map_err(|e| ModuleError::new(413, ErrCode::TooLarge, e.to_string()))?;
        format!("${reference}")
    };
    let event_id = ruma::OwnedEventId::try_from(event_id)
        .map_err(|e| ModuleError::internal(format!("event ID: {e}")))?;
    let pdu: Map<String, Value> = match serde_json::to_value(object) {
        Ok(Value::Object(map)) => map,
        _ => return Err(ModuleError::internal("a signed event is a JSON object")),
    };
    let pdu_text = serde_json::to_string(&pdu).map_err(|e| ModuleError::internal(e.to_string()))?;
    if pdu_text.len() > MAX_PDU_SIZE {
        return Err(ModuleError::new(413, ErrCode::TooLarge, "event too large"));
    }
    let content =
        serde_json::to_string(&draft.content).map_err(|e| ModuleError::internal(e.to_string()))?;
    Ok(BuiltEvent {
        new: NewEvent {
            event_id,
            room_id: snapshot.room_id.clone(),
            sender: draft.sender.clone(),
            event_type: draft.event_type.clone(),
            state_key: draft.state_key.clone(),
            depth,
            origin_server_ts: now,
            content,
            pdu: pdu_text,
            prev_events: snapshot.extremities.clone(),
            device_id: None,
            txn_id: None,
            notifies: Vec::new(),
            destinations: Vec::new(),
            resolved_state: Vec::new(),
        },
        pdu,
    })
}

/// The state events that authorise this one, as the spec's auth events
/// selection says (ruma's `auth_types_for_event`): create, power levels,
/// the sender's membership, and for memberships the target's, the join
/// rules for joins, invites and knocks, and a restricted join's voucher.
pub(crate) fn auth_event_ids(
    snapshot: &RoomSnapshot,
    draft: &EventDraft,
) -> Vec<ruma::OwnedEventId> {
    if draft.event_type == "m.room.create" {
        return Vec::new();
    }
    let rules = room_version_rules(&snapshot.room_version);
    let content = serde_json::value::to_raw_value(&draft.content).ok();
    let kinds = content.and_then(|content| {
        ruma::state_res::auth_types_for_event(
            &draft.event_type.as_str().into(),
            &draft.sender,
            draft.state_key.as_deref(),
            &content,
            &rules.authorization,
        )
        .ok()
    });
    let keys: Vec<(String, String)> = match kinds {
        Some(kinds) => kinds.into_iter().map(|(t, k)| (t.to_string(), k)).collect(),
        // Content the selection cannot read (the auth rules refuse it).
        None => vec![
            ("m.room.create".into(), String::new()),
            ("m.room.power_levels".into(), String::new()),
            ("m.room.member".into(), draft.sender.to_string()),
        ],
    };
    let mut ids = Vec::new();
    for key in keys {
        if let Some(entry) = snapshot.state.get(&key) {
            if !ids.contains(&entry.event_id) {
                ids.push(entry.event_id.clone());
            }
        }
    }
    ids
}
