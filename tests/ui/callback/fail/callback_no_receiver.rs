use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback(account_validity)]
    async fn on_user_registration(_user: &UserId) {}
}

fn main() {}
