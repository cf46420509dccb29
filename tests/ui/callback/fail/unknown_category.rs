use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback(spam_checkr)]
    async fn user_may_join_room(&self, _user: &UserId, _room: &RoomId, _is_invited: bool) -> SpamCheck {
        SpamCheck::NotSpam
    }
}

fn main() {}
