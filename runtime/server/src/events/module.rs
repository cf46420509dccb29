//! Events and room state as modules see them (`callbacks::Event`, `StateMap`).

use crate::storage::{NewEvent, RoomSnapshot};
use axon::callbacks::{Event, StateMap};
use axon::ModuleError;

/// A built event as modules see it.
pub fn module_event(new: &NewEvent) -> Result<Event, ModuleError> {
    let bad = |what: &str| ModuleError::internal(format!("event has an invalid {what}"));
    Ok(Event {
        event_id: new
            .event_id
            .as_str()
            .try_into()
            .map_err(|_| bad("event ID"))?,
        room_id: new
            .room_id
            .as_str()
            .try_into()
            .map_err(|_| bad("room ID"))?,
        sender: new.sender.as_str().try_into().map_err(|_| bad("sender"))?,
        event_type: new.event_type.clone(),
        state_key: new.state_key.clone(),
        content: serde_json::from_str(&new.content).map_err(|_| bad("content"))?,
        origin_server_ts: new.origin_server_ts.max(0) as u64,
        unsigned: Default::default(),
    })
}

/// A room's state as modules see it.
pub fn state_map(snapshot: &RoomSnapshot) -> StateMap {
    let mut map = StateMap::new();
    for ((event_type, state_key), entry) in &snapshot.state {
        let (Ok(event_id), Ok(room_id), Ok(sender)) = (
            entry.event_id.as_str().try_into(),
            snapshot.room_id.as_str().try_into(),
            entry.sender.as_str().try_into(),
        ) else {
            continue;
        };
        map.insert(
            (event_type.clone(), state_key.clone()),
            Event {
                event_id,
                room_id,
                sender,
                event_type: event_type.clone(),
                state_key: Some(state_key.clone()),
                content: entry.content.as_object().cloned().unwrap_or_default(),
                origin_server_ts: entry.origin_server_ts.max(0) as u64,
                unsigned: Default::default(),
            },
        );
    }
    map
}
