//! The demo module from Synapse's "Writing a module" page: it refuses room
//! creation to one configured user and says hello over HTTP.
//!
//! ```yaml
//! modules:
//!   - module: axon_demo::DemoModule
//!     config:
//!       blocked_user: "@evilguy:example.com"
//! ```

use axon::prelude::*;
use axum::extract::Query;
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This user may not create rooms.
    #[schemars(with = "String")]
    blocked_user: OwnedUserId,
}

pub struct DemoModule {
    config: Config,
}

#[derive(Deserialize)]
struct Hello {
    name: String,
}

/// Refuses room creation to one user; serves `GET /_synapse/client/demo/hello?name=X`.
#[module]
impl DemoModule {
    fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError> {
        api.register_web_resource(
            "/_synapse/client/demo/hello",
            get(|Query(q): Query<Hello>| async move { Json::<Value>(json!({ "hello": q.name })) }),
        );
        Ok(DemoModule { config })
    }

    #[callback(spam_checker)]
    async fn user_may_create_room(&self, user: &UserId, _room_config: &JsonObject) -> SpamCheck {
        if user == self.config.blocked_user {
            SpamCheck::deny(ErrCode::Forbidden)
        } else {
            SpamCheck::NotSpam
        }
    }
}
