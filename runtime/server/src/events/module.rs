//! Events and room state as modules see them (`callbacks::Event`, `StateMap`).
//! Every ID is already typed, so no event or state entry is ever left out
//! of what a module sees.

use crate::storage::{NewEvent, RoomSnapshot};
use axon::callbacks::{Event, StateMap};
use axon::ModuleError;

/// A built event as modules see it.
pub fn module_event(new: &NewEvent) -> Result<Event, ModuleError> {
    Ok(Event {
        event_id: new.event_id.clone(),
        room_id: new.room_id.clone(),
        sender: new.sender.clone(),
        event_type: new.event_type.clone(),
        state_key: new.state_key.clone(),
        content: serde_json::from_str(&new.content)
            .map_err(|e| ModuleError::internal(format!("event content does not parse: {e}")))?,
        origin_server_ts: new.origin_server_ts.max(0) as u64,
        unsigned: Default::default(),
    })
}

/// A room's state as modules see it.
pub fn state_map(snapshot: &RoomSnapshot) -> StateMap {
    snapshot
        .state
        .iter()
        .map(|((event_type, state_key), entry)| {
            let event = Event {
                event_id: entry.event_id.clone(),
                room_id: snapshot.room_id.clone(),
                sender: entry.sender.clone(),
                event_type: event_type.clone(),
                state_key: Some(state_key.clone()),
                content: entry.content.as_object().cloned().unwrap_or_default(),
                origin_server_ts: entry.origin_server_ts.max(0) as u64,
                unsigned: Default::default(),
            };
            ((event_type.clone(), state_key.clone()), event)
        })
        .collect()
}
