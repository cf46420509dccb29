use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback(presence_router)]
    async fn get_interested_users(&self, _user: &UserId) -> InterestedUsers {
        InterestedUsers::All
    }
}

fn main() {}
