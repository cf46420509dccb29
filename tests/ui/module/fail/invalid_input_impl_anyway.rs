use axon::prelude::*;

pub struct Thing {
    limit: u32,
}

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing { limit: 3 })
    }

    fn limit(&self) -> u32 {
        self.limit
    }

    // The one mistake in this file: the category is misspelt.
    #[callback(spam_checkr)]
    async fn user_may_join_room(&self, _user: &UserId, _room: &RoomId, _is_invited: bool) -> SpamCheck {
        SpamCheck::NotSpam
    }
}

// The impl is still emitted: no "no method named `limit`" cascade.
fn use_it(thing: &Thing) -> u32 {
    thing.limit()
}

fn main() {
    let _ = use_it;
}
