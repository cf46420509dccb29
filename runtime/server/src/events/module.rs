//! Events and room state as modules see them (`callbacks::Event`, `StateMap`).
//! Every ID is already typed, so no event or state entry is ever left out
//! of what a module sees.

use crate::storage::NewEvent;
use axon::callbacks::Event;
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
