use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback(account_validity)]
    async fn is_user_expired(&self, _user: &UserId) -> Option<bool> {
        None
    }

    #[callback(account_validity)]
    async fn is_user_expired(&self, _user: &UserId) -> Option<bool> {
        Some(false)
    }
}

fn main() {}
