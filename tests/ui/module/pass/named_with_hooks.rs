use axon::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Config {
    limit: u32,
}

pub struct Counter {
    limit: u32,
    seen: AtomicU32,
}

/// A module with an explicit path, lifecycle hooks, fallible callbacks and
/// callbacks of several categories.
#[module(name = "my_modules.Counter", status = "experimental")]
impl Counter {
    fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError> {
        if config.limit == 0 {
            return Err(ConfigError::at("limit", "must be at least 1"));
        }
        api.register_web_resource(
            "/_synapse/client/counter",
            axum::routing::get(|| async { "counting" }),
        );
        Ok(Counter { limit: config.limit, seen: AtomicU32::new(0) })
    }

    async fn start(&self) -> Result<(), ModuleError> {
        Ok(())
    }

    async fn stop(&self) {}

    #[callback(account_validity)]
    async fn on_user_registration(&self, _user: &UserId) {
        self.seen.fetch_add(1, Ordering::Relaxed);
    }

    #[callback(third_party_rules)]
    async fn on_create_room(&self, _requester: &Requester, request: &mut JsonObject, _is_admin: bool) -> Result<(), ModuleError> {
        if self.seen.load(Ordering::Relaxed) > self.limit {
            return Err(ModuleError::forbidden("too many rooms"));
        }
        request.insert("topic".into(), "counted".into());
        Ok(())
    }

    #[callback(presence_router)]
    async fn get_users_for_states(&self, _states: &[PresenceState]) -> UsersForStates {
        UsersForStates::new()
    }

    #[callback(presence_router)]
    async fn get_interested_users(&self, _user: &UserId) -> InterestedUsers {
        InterestedUsers::All
    }

    #[callback(spam_checker)]
    async fn check_registration_for_spam(
        &self,
        _email: Option<&str>,
        username: Option<&str>,
        _request_info: &[RequestInfo],
        _auth_provider_id: Option<&str>,
    ) -> RegistrationBehaviour {
        match username {
            Some(name) if name.starts_with("spam") => RegistrationBehaviour::Deny,
            _ => RegistrationBehaviour::Allow,
        }
    }

    #[callback(media_repository)]
    async fn is_user_allowed_to_upload_media_of_size(&self, _user: &UserId, size: u64) -> bool {
        size < 1024
    }

    // Helper methods beside callbacks are untouched.
    fn helper(&self) -> u32 {
        self.limit
    }
}

fn main() {
    let _ = Counter::helper;
    // What the macro captured for `--list-modules`.
    let descriptor = axon::module::compiled_modules()
        .find("my_modules.Counter")
        .unwrap();
    assert_eq!(descriptor.status, "experimental");
    assert!(descriptor.serves_web);
    assert!(descriptor.description.starts_with("A module with an explicit path"));
}
