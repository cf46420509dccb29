use axon::prelude::*;
use std::rc::Rc;

pub struct Thing;

async fn lookup() {}

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback(spam_checker)]
    async fn user_may_join_room(&self, _user: &UserId, _room: &RoomId, _is_invited: bool) -> SpamCheck {
        let counter = Rc::new(1);
        lookup().await;
        if *counter > 1 {
            return SpamCheck::deny(ErrCode::Forbidden);
        }
        SpamCheck::NotSpam
    }
}

fn main() {}
