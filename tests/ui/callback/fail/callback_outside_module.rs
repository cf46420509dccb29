use axon::prelude::*;

pub struct Thing;

impl Thing {
    #[callback(spam_checker)]
    async fn user_may_join_room(&self, _user: &UserId, _room: &RoomId, _is_invited: bool) -> SpamCheck {
        SpamCheck::NotSpam
    }
}

fn main() {}
