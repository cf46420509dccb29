use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback(spam_checker)]
    async fn user_may_join_room(&self, _user: &UserId, _room: &RoomId) -> SpamCheck {
        SpamCheck::NotSpam
    }

    #[callback(account_validity)]
    async fn is_user_expired(&self, _user: &UserId, _extra: bool) -> Option<bool> {
        None
    }
}

fn main() {}
