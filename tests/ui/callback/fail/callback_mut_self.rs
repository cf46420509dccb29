use axon::prelude::*;

pub struct Thing {
    seen: u32,
}

#[module]
impl Thing {
    fn new(_api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Thing { seen: 0 })
    }

    #[callback(account_validity)]
    async fn on_user_registration(&mut self, _user: &UserId) {
        self.seen += 1;
    }
}

fn main() {}
