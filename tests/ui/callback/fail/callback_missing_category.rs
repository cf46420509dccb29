use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback]
    async fn on_user_registration(&self, _user: &UserId) {}
}

fn main() {}
