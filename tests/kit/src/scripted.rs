//! Test modules whose behaviour is scripted by their config (`test.Scripted`,
//! `test.Hooked`, `test.Bare`), for testing the loader and the dispatchers
//! without a server, and how to load a `modules:` list with them.

use crate::log::record;
use axon::module::{LoadErrors, LoadedModules, ServerInfo};
use axon::prelude::*;
use std::collections::BTreeSet;

/// Facts about the server, for loading modules without one (as
/// `--check-config` does).
pub fn server_info() -> ServerInfo {
    ServerInfo {
        server_name: crate::SERVER_NAME.try_into().unwrap(),
        public_baseurl: "http://127.0.0.1/".into(),
        measure_callbacks: false,
    }
}

/// Loads the `modules:` list of a YAML document without a server.
pub fn load(yaml: &str) -> Result<LoadedModules, LoadErrors> {
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).expect("test YAML parses");
    LoadedModules::load(doc.get("modules"), server_info())
}

/// Each error of loading a `modules:` list; panics if it loads.
pub fn load_errors(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("expected the modules to be refused:\n{yaml}"),
        Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// The errors of loading a `modules:` list, as one text; panics if it loads.
pub fn modules_load_error(yaml: &str) -> String {
    match load(yaml) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected the modules to be refused:\n{yaml}"),
    }
}

pub fn user(id: &str) -> OwnedUserId {
    id.try_into().unwrap()
}

/// What a `Scripted` module answers to every callback it implements.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// The neutral answer: not spam, `true` for may-callbacks, `None`.
    Allow,
    /// A denial: `Deny(M_FORBIDDEN)`, `false`, `Some(true)`, ...
    Deny,
    /// A denial with an extra field in the error body.
    DenyWithFields,
    /// `Err(ModuleError)`: 418 `ORG_TEST_TEAPOT`.
    Error,
    Panic,
    /// Never finishes.
    Hang,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedConfig {
    /// The log calls are recorded in.
    pub log: String,
    /// This module's name in the log.
    pub name: String,
    #[serde(default = "allow")]
    pub behaviour: Behaviour,
    /// Fields this module adds to `unsigned`.
    #[serde(default)]
    pub unsigned: JsonObject,
    /// `None`: all users; else these.
    #[serde(default)]
    pub interested: Option<Vec<OwnedUserId>>,
}

fn allow() -> Behaviour {
    Behaviour::Allow
}

/// Implements a callback of each combine rule and records each call.
pub struct Scripted {
    config: ScriptedConfig,
}

impl Scripted {
    async fn act(&self, callback: &str) -> Result<bool, ModuleError> {
        record(&self.config.log, format!("{}:{callback}", self.config.name));
        match self.config.behaviour {
            Behaviour::Allow => Ok(true),
            Behaviour::Deny | Behaviour::DenyWithFields => Ok(false),
            Behaviour::Error => Err(ModuleError::new(
                418,
                ErrCode::Custom("ORG_TEST_TEAPOT".into()),
                "I'm a teapot",
            )),
            Behaviour::Panic => panic!("{} panics on purpose", self.config.name),
            Behaviour::Hang => std::future::pending().await,
        }
    }

    fn spam(&self, allowed: bool) -> SpamCheck {
        match (allowed, self.config.behaviour) {
            (true, _) => SpamCheck::NotSpam,
            (false, Behaviour::DenyWithFields) => {
                let mut fields = JsonObject::new();
                fields.insert("org.test.by".into(), self.config.name.clone().into());
                SpamCheck::deny_with(ErrCode::Custom("ORG_TEST_SPAM".into()), fields)
            }
            (false, _) => SpamCheck::deny(ErrCode::Forbidden),
        }
    }
}

#[module(name = "test.Scripted")]
impl Scripted {
    fn new(config: ScriptedConfig, _api: &ModuleApi) -> Result<Self, ConfigError> {
        if config.name.is_empty() {
            return Err(ConfigError::at("name", "must not be empty"));
        }
        Ok(Scripted { config })
    }

    // first non-allow, propagate
    #[callback(spam_checker)]
    async fn user_may_create_room(
        &self,
        _user: &UserId,
        _room_config: &JsonObject,
    ) -> Result<SpamCheck, ModuleError> {
        let allowed = self.act("user_may_create_room").await?;
        Ok(self.spam(allowed))
    }

    // first non-allow with replace, propagate
    #[callback(third_party_rules)]
    async fn check_event_allowed(
        &self,
        event: &Event,
        _state: &StateMap,
    ) -> Result<EventAllowed, ModuleError> {
        let allowed = self.act("check_event_allowed").await?;
        Ok(match (allowed, self.config.behaviour) {
            (true, _) => EventAllowed::Allow,
            (false, Behaviour::DenyWithFields) => {
                let mut replaced = event.clone();
                replaced
                    .content
                    .insert("replaced_by".into(), self.config.name.clone().into());
                EventAllowed::Replace(Box::new(replaced))
            }
            (false, _) => EventAllowed::Deny,
        })
    }

    // all, refuse on failure
    #[callback(third_party_rules)]
    async fn on_create_room(
        &self,
        _requester: &Requester,
        request: &mut JsonObject,
        _is_admin: bool,
    ) -> Result<(), ModuleError> {
        self.act("on_create_room").await?;
        let seen = request
            .entry("seen_by")
            .or_insert_with(|| serde_json::json!([]));
        if let Some(list) = seen.as_array_mut() {
            list.push(self.config.name.clone().into());
        }
        Ok(())
    }

    // all-true, fail open
    #[callback(third_party_rules)]
    async fn check_visibility_can_be_modified(
        &self,
        _room: &RoomId,
        _state: &StateMap,
        _new: Visibility,
    ) -> Result<bool, ModuleError> {
        self.act("check_visibility_can_be_modified").await
    }

    // any-true, propagate
    #[callback(spam_checker)]
    async fn check_username_for_spam(
        &self,
        _profile: &UserProfile,
        _requester: &UserId,
    ) -> Result<bool, ModuleError> {
        Ok(!self.act("check_username_for_spam").await?)
    }

    // first some, propagate
    #[callback(account_validity)]
    async fn is_user_expired(&self, _user: &UserId) -> Result<Option<bool>, ModuleError> {
        let allowed = self.act("is_user_expired").await?;
        Ok(if allowed { None } else { Some(true) })
    }

    // all, fail open
    #[callback(account_data)]
    async fn on_account_data_updated(
        &self,
        _user: &UserId,
        _room: Option<&RoomId>,
        _kind: &str,
        _content: &JsonObject,
    ) -> Result<(), ModuleError> {
        self.act("on_account_data_updated").await.map(|_| ())
    }

    // merge, last wins
    #[callback(add_extra_fields_to_unsigned_client_event)]
    async fn add_field_to_unsigned_callback(
        &self,
        _event: &Event,
    ) -> Result<JsonObject, ModuleError> {
        self.act("add_field_to_unsigned_callback").await?;
        Ok(self.config.unsigned.clone())
    }

    // merge with the All short-circuit, fail open
    #[callback(presence_router)]
    async fn get_interested_users(&self, _user: &UserId) -> Result<InterestedUsers, ModuleError> {
        self.act("get_interested_users").await?;
        Ok(match &self.config.interested {
            None => InterestedUsers::All,
            Some(users) => InterestedUsers::Users(users.iter().cloned().collect::<BTreeSet<_>>()),
        })
    }

    #[callback(presence_router)]
    async fn get_users_for_states(&self, states: &[PresenceState]) -> UsersForStates {
        let mut out = UsersForStates::new();
        for user in self.config.interested.iter().flatten() {
            out.entry(user.clone())
                .or_default()
                .extend(states.iter().cloned());
        }
        out
    }

    // first registered
    #[callback(background_update_controller)]
    async fn default_batch_size(&self, _update: &str, _database: &str) -> u32 {
        record(
            &self.config.log,
            format!("{}:default_batch_size", self.config.name),
        );
        self.config.name.len() as u32
    }
}

pub struct Hooked {
    log: String,
    name: String,
    start: Behaviour,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookedConfig {
    pub log: String,
    pub name: String,
    /// What the start hook does: allow (succeed), error or panic.
    #[serde(default = "allow")]
    pub start: Behaviour,
    /// Web resources to register: path → the text served.
    #[serde(default)]
    pub web: Vec<(String, String)>,
}

/// A module with web resources and start/stop hooks that record themselves.
#[module(name = "test.Hooked")]
impl Hooked {
    fn new(config: HookedConfig, api: &ModuleApi) -> Result<Self, ConfigError> {
        for (path, text) in config.web.clone() {
            api.register_web_resource(&path, axum::routing::get(move || async move { text }));
        }
        Ok(Hooked {
            log: config.log,
            name: config.name,
            start: config.start,
        })
    }

    async fn start(&self) -> Result<(), ModuleError> {
        record(&self.log, format!("{}:start", self.name));
        match self.start {
            Behaviour::Error => Err(ModuleError::internal(format!(
                "{} cannot reach its database",
                self.name
            ))),
            Behaviour::Panic => panic!("{} panics at start", self.name),
            _ => Ok(()),
        }
    }

    async fn stop(&self) {
        record(&self.log, format!("{}:stop", self.name));
    }
}

/// A module without config.
pub struct Bare;

#[module(name = "test.Bare")]
impl Bare {
    fn new(_api: &ModuleApi) -> Self {
        Bare
    }
}
