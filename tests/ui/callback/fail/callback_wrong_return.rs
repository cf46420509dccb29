use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    // Synapse's deprecated bool form: in Axon the verdict is a `SpamCheck`.
    #[callback(spam_checker)]
    async fn user_may_create_room(&self, _user: &UserId, _room_config: &JsonObject) -> bool {
        true
    }
}

fn main() {}
