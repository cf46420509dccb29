use axon::prelude::*;

pub struct Thing;

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing)
    }

    #[callback(spam_checker)]
    fn user_may_invite(&self, _inviter: &UserId, _invitee: &UserId, _room: &RoomId) -> SpamCheck {
        SpamCheck::NotSpam
    }
}

fn main() {}
