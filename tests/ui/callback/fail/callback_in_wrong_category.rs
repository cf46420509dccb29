use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback(spam_checker)]
    async fn check_event_allowed(&self, _event: &Event, _state: &StateMap) -> EventAllowed {
        EventAllowed::Allow
    }
}

fn main() {}
