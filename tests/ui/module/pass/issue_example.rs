use axon::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    blocked: Vec<OwnedUserId>,
}

pub struct NoRooms {
    config: Config,
}

#[module]
impl NoRooms {
    fn new(config: Config, _api: &ModuleApi) -> Result<Self, ConfigError> {
        Ok(Self { config })
    }

    #[callback(spam_checker)]
    async fn user_may_create_room(&self, user: &UserId, _room_config: &JsonObject) -> SpamCheck {
        if self.config.blocked.iter().any(|b| b == user) {
            SpamCheck::deny(ErrCode::Forbidden)
        } else {
            SpamCheck::NotSpam
        }
    }
}

fn main() {}
