use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback(spam_checker)]
    async fn user_may_joinroom(&self, _user: &UserId, _room: &RoomId, _is_invited: bool) -> SpamCheck {
        SpamCheck::NotSpam
    }
}

fn main() {}
