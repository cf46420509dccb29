//! `test.Rules`: a module implementing every callback, each answering what
//! its `verdicts:` config says, and logging each call (with the arguments
//! that matter) so tests can check order and short-circuits.
//!
//! Verdicts: `allow` (the default), `deny`, `deny:CODE`, `deny_fields`,
//! `replace`, `shadow_ban`, `some`, `some:VALUE`, `error` (418
//! `ORG_TEST_TEAPOT`), `panic`, `hang`.

use crate::log::record;
use axon::prelude::*;
use std::collections::BTreeMap;

/// A `test.Rules` entry of the `modules:` list, with more config keys in `extra`.
pub fn rules_with(log: &str, name: &str, verdicts: &[(&str, &str)], extra: &str) -> String {
    let verdicts: Vec<String> = verdicts
        .iter()
        .map(|(k, v)| format!("{k}: '{v}'"))
        .collect();
    format!(
        "  - module: test.Rules\n    callback_timeout: 300ms\n    config: {{log: {log}, name: {name}, verdicts: {{{}}}{extra}}}\n",
        verdicts.join(", ")
    )
}

/// A `test.Rules` entry of the `modules:` list.
pub fn rules(log: &str, name: &str, verdicts: &[(&str, &str)]) -> String {
    rules_with(log, name, verdicts, "")
}

/// A `modules:` list of these entries.
pub fn modules(entries: &[String]) -> String {
    format!("modules:\n{}", entries.concat())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    log: String,
    name: String,
    #[serde(default)]
    verdicts: BTreeMap<String, String>,
    /// `[login type, [fields]]` this module handles in `check_auth`.
    #[serde(default)]
    login_types: Vec<(String, Vec<String>)>,
}

pub struct Rules {
    config: RulesConfig,
}

enum Answer {
    Allow,
    Deny(Option<String>),
    DenyFields,
    Other(String),
}

impl Rules {
    async fn act(&self, callback: &str, detail: String) -> Result<Answer, ModuleError> {
        let entry = if detail.is_empty() {
            format!("{}:{callback}", self.config.name)
        } else {
            format!("{}:{callback}:{detail}", self.config.name)
        };
        record(&self.config.log, entry);
        let verdict = self
            .config
            .verdicts
            .get(callback)
            .map(String::as_str)
            .unwrap_or("allow");
        Ok(match verdict {
            "allow" => Answer::Allow,
            "deny" => Answer::Deny(None),
            "deny_fields" => Answer::DenyFields,
            "error" => {
                return Err(ModuleError::new(
                    418,
                    ErrCode::Custom("ORG_TEST_TEAPOT".into()),
                    "I'm a teapot",
                ))
            }
            "panic" => panic!("{} panics in {callback}", self.config.name),
            "hang" => std::future::pending().await,
            v if v.starts_with("deny:") => Answer::Deny(Some(v["deny:".len()..].to_string())),
            other => Answer::Other(other.to_string()),
        })
    }

    async fn spam(&self, callback: &str, detail: String) -> Result<SpamCheck, ModuleError> {
        Ok(match self.act(callback, detail).await? {
            Answer::Allow | Answer::Other(_) => SpamCheck::NotSpam,
            Answer::Deny(None) => SpamCheck::deny(ErrCode::Forbidden),
            Answer::Deny(Some(code)) => SpamCheck::deny(ErrCode::from_code(&code)),
            Answer::DenyFields => {
                let mut fields = JsonObject::new();
                fields.insert("org.test.by".into(), self.config.name.clone().into());
                SpamCheck::deny_with(ErrCode::Custom("ORG_TEST_SPAM".into()), fields)
            }
        })
    }

    /// `true` unless denied.
    async fn allowed(&self, callback: &str, detail: String) -> Result<bool, ModuleError> {
        Ok(!matches!(
            self.act(callback, detail).await?,
            Answer::Deny(_) | Answer::DenyFields
        ))
    }

    /// `Some(VALUE)` for `some:VALUE`, `Some("")` for `some`.
    async fn some(&self, callback: &str, detail: String) -> Result<Option<String>, ModuleError> {
        Ok(match self.act(callback, detail).await? {
            Answer::Other(v) if v == "some" => Some(String::new()),
            Answer::Other(v) if v.starts_with("some:") => Some(v["some:".len()..].to_string()),
            _ => None,
        })
    }

    async fn observe(&self, callback: &str, detail: String) -> Result<(), ModuleError> {
        self.act(callback, detail).await.map(|_| ())
    }
}

#[module(name = "test.Rules")]
impl Rules {
    fn new(config: RulesConfig, api: &ModuleApi) -> Result<Self, ConfigError> {
        for (login_type, fields) in &config.login_types {
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            api.register_login_type(login_type, &fields);
        }
        Ok(Rules { config })
    }

    // ---- spam checker ----

    #[callback(spam_checker)]
    async fn check_event_for_spam(&self, event: &Event) -> Result<SpamCheck, ModuleError> {
        self.spam("check_event_for_spam", event.event_type.clone())
            .await
    }

    #[callback(spam_checker)]
    async fn user_may_join_room(
        &self,
        user: &UserId,
        _room: &RoomId,
        is_invited: bool,
    ) -> Result<SpamCheck, ModuleError> {
        self.spam("user_may_join_room", format!("{user}:{is_invited}"))
            .await
    }

    #[callback(spam_checker)]
    async fn user_may_invite(
        &self,
        inviter: &UserId,
        invitee: &UserId,
        _room: &RoomId,
    ) -> Result<SpamCheck, ModuleError> {
        self.spam("user_may_invite", format!("{inviter}>{invitee}"))
            .await
    }

    #[callback(spam_checker)]
    async fn federated_user_may_invite(&self, event: &Event) -> Result<SpamCheck, ModuleError> {
        let invitee = event.state_key.clone().unwrap_or_default();
        self.spam(
            "federated_user_may_invite",
            format!("{}>{invitee}", event.sender),
        )
        .await
    }

    /// `deny` drops the event.
    #[callback(spam_checker)]
    async fn should_drop_federated_event(&self, event: &Event) -> Result<bool, ModuleError> {
        let allowed = self
            .allowed("should_drop_federated_event", event.event_type.clone())
            .await?;
        Ok(!allowed)
    }

    #[callback(spam_checker)]
    async fn user_may_create_room(
        &self,
        user: &UserId,
        room_config: &JsonObject,
    ) -> Result<SpamCheck, ModuleError> {
        let name = room_config
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("");
        self.spam("user_may_create_room", format!("{user}:{name}"))
            .await
    }

    #[callback(spam_checker)]
    async fn user_may_create_room_alias(
        &self,
        _user: &UserId,
        alias: &RoomAliasId,
    ) -> Result<SpamCheck, ModuleError> {
        self.spam("user_may_create_room_alias", alias.to_string())
            .await
    }

    #[callback(spam_checker)]
    async fn user_may_publish_room(
        &self,
        user: &UserId,
        _room: &RoomId,
    ) -> Result<SpamCheck, ModuleError> {
        self.spam("user_may_publish_room", user.to_string()).await
    }

    #[callback(spam_checker)]
    async fn user_may_send_state_event(
        &self,
        _user: &UserId,
        _room: &RoomId,
        event_type: &str,
        state_key: &str,
        _content: &JsonObject,
    ) -> Result<SpamCheck, ModuleError> {
        self.spam(
            "user_may_send_state_event",
            format!("{event_type}/{state_key}"),
        )
        .await
    }

    #[callback(spam_checker)]
    async fn check_username_for_spam(
        &self,
        profile: &UserProfile,
        _requester: &UserId,
    ) -> Result<bool, ModuleError> {
        Ok(!self
            .allowed("check_username_for_spam", profile.user_id.to_string())
            .await?)
    }

    #[callback(spam_checker)]
    async fn check_registration_for_spam(
        &self,
        _email: Option<&str>,
        username: Option<&str>,
        request_info: &[RequestInfo],
        _auth_provider_id: Option<&str>,
    ) -> Result<RegistrationBehaviour, ModuleError> {
        let detail = format!(
            "{}:{}",
            username.unwrap_or(""),
            request_info.first().map(|r| r.ip.as_str()).unwrap_or("")
        );
        Ok(
            match self.act("check_registration_for_spam", detail).await? {
                Answer::Deny(_) | Answer::DenyFields => RegistrationBehaviour::Deny,
                Answer::Other(v) if v == "shadow_ban" => RegistrationBehaviour::ShadowBan,
                _ => RegistrationBehaviour::Allow,
            },
        )
    }

    #[callback(spam_checker)]
    async fn check_media_file_for_spam(
        &self,
        content: &[u8],
        info: &FileInfo,
    ) -> Result<SpamCheck, ModuleError> {
        let detail = format!("{}:{}", info.size, String::from_utf8_lossy(content));
        self.spam("check_media_file_for_spam", detail).await
    }

    #[callback(spam_checker)]
    async fn check_login_for_spam(
        &self,
        user: &UserId,
        _device_id: Option<&DeviceId>,
        _initial_display_name: Option<&str>,
        _request_info: &[RequestInfo],
        _auth_provider_id: Option<&str>,
    ) -> Result<SpamCheck, ModuleError> {
        self.spam("check_login_for_spam", user.to_string()).await
    }

    // ---- third-party rules ----

    #[callback(third_party_rules)]
    async fn check_event_allowed(
        &self,
        event: &Event,
        state: &StateMap,
    ) -> Result<EventAllowed, ModuleError> {
        let detail = format!("{}:{}", event.event_type, state.len());
        Ok(match self.act("check_event_allowed", detail).await? {
            Answer::Deny(_) | Answer::DenyFields => EventAllowed::Deny,
            Answer::Other(v) if v == "replace" && event.event_type == "m.room.message" => {
                let mut replaced = event.clone();
                let body = replaced
                    .content
                    .get("body")
                    .and_then(|b| b.as_str())
                    .unwrap_or("")
                    .to_string();
                replaced.content.insert(
                    "body".into(),
                    format!("{body} (edited by {})", self.config.name).into(),
                );
                EventAllowed::Replace(Box::new(replaced))
            }
            _ => EventAllowed::Allow,
        })
    }

    #[callback(third_party_rules)]
    async fn on_create_room(
        &self,
        requester: &Requester,
        request: &mut JsonObject,
        is_admin: bool,
    ) -> Result<(), ModuleError> {
        match self
            .act(
                "on_create_room",
                format!("{}:{is_admin}", requester.user_id),
            )
            .await?
        {
            Answer::Deny(_) | Answer::DenyFields => Err(ModuleError::forbidden("No rooms today")),
            Answer::Other(v) if v == "some" => {
                request.insert(
                    "topic".into(),
                    format!("set by {}", self.config.name).into(),
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    #[callback(third_party_rules)]
    async fn check_visibility_can_be_modified(
        &self,
        _room: &RoomId,
        _state: &StateMap,
        new_visibility: Visibility,
    ) -> Result<bool, ModuleError> {
        self.allowed(
            "check_visibility_can_be_modified",
            format!("{new_visibility:?}"),
        )
        .await
    }

    #[callback(third_party_rules)]
    async fn on_new_event(&self, event: &Event, state: &StateMap) -> Result<(), ModuleError> {
        let body = event
            .content
            .get("body")
            .and_then(|b| b.as_str())
            .unwrap_or("");
        self.observe(
            "on_new_event",
            format!("{}:{body}:{}", event.event_type, !state.is_empty()),
        )
        .await
    }

    #[callback(third_party_rules)]
    async fn check_can_deactivate_user(
        &self,
        user: &UserId,
        by_admin: bool,
    ) -> Result<bool, ModuleError> {
        self.allowed("check_can_deactivate_user", format!("{user}:{by_admin}"))
            .await
    }

    /// Logs `user:name:avatar:by_admin:deactivation`.
    #[callback(third_party_rules)]
    async fn on_profile_update(
        &self,
        user: &UserId,
        profile: &ProfileInfo,
        by_admin: bool,
        deactivation: bool,
    ) -> Result<(), ModuleError> {
        let name = profile.display_name.clone().unwrap_or_default();
        let avatar = profile.avatar_url.clone().unwrap_or_default();
        self.observe(
            "on_profile_update",
            format!("{user}:{name}:{avatar}:{by_admin}:{deactivation}"),
        )
        .await
    }

    #[callback(third_party_rules)]
    async fn on_threepid_bind(
        &self,
        user: &UserId,
        medium: &str,
        address: &str,
    ) -> Result<(), ModuleError> {
        self.observe("on_threepid_bind", format!("{user}:{medium}:{address}"))
            .await
    }

    #[callback(third_party_rules)]
    async fn on_add_user_third_party_identifier(
        &self,
        user: &UserId,
        medium: &str,
        address: &str,
    ) -> Result<(), ModuleError> {
        self.observe(
            "on_add_user_third_party_identifier",
            format!("{user}:{medium}:{address}"),
        )
        .await
    }

    #[callback(third_party_rules)]
    async fn on_remove_user_third_party_identifier(
        &self,
        user: &UserId,
        medium: &str,
        address: &str,
    ) -> Result<(), ModuleError> {
        self.observe(
            "on_remove_user_third_party_identifier",
            format!("{user}:{medium}:{address}"),
        )
        .await
    }

    #[callback(third_party_rules)]
    async fn on_user_deactivation_status_changed(
        &self,
        user: &UserId,
        deactivated: bool,
        by_admin: bool,
    ) -> Result<(), ModuleError> {
        self.observe(
            "on_user_deactivation_status_changed",
            format!("{user}:{deactivated}:{by_admin}"),
        )
        .await
    }

    // ---- presence router ----

    #[callback(presence_router)]
    async fn get_users_for_states(
        &self,
        states: &[PresenceState],
    ) -> Result<UsersForStates, ModuleError> {
        let target = self
            .some("get_users_for_states", states.len().to_string())
            .await?;
        let mut out = UsersForStates::new();
        if let Some(Ok(user)) = target.map(|t| OwnedUserId::try_from(t.as_str())) {
            out.insert(user, states.iter().cloned().collect());
        }
        Ok(out)
    }

    #[callback(presence_router)]
    async fn get_interested_users(&self, user: &UserId) -> Result<InterestedUsers, ModuleError> {
        Ok(
            match self.act("get_interested_users", user.to_string()).await? {
                Answer::Other(v) if v == "all" => InterestedUsers::All,
                _ => InterestedUsers::Users(Default::default()),
            },
        )
    }

    // ---- account validity ----

    #[callback(account_validity)]
    async fn is_user_expired(&self, user: &UserId) -> Result<Option<bool>, ModuleError> {
        Ok(match self.act("is_user_expired", user.to_string()).await? {
            Answer::Deny(_) | Answer::DenyFields => Some(true),
            Answer::Other(v) if v == "some:false" => Some(false),
            _ => None,
        })
    }

    #[callback(account_validity)]
    async fn on_user_registration(&self, user: &UserId) -> Result<(), ModuleError> {
        self.observe("on_user_registration", user.to_string()).await
    }

    #[callback(account_validity)]
    async fn on_user_login(
        &self,
        user: &UserId,
        auth_provider_type: Option<&str>,
        _auth_provider_id: Option<&str>,
    ) -> Result<(), ModuleError> {
        self.observe(
            "on_user_login",
            format!("{user}:{}", auth_provider_type.unwrap_or("-")),
        )
        .await
    }

    // ---- password auth provider ----

    #[callback(password_auth_provider)]
    async fn check_auth(
        &self,
        user: &str,
        login_type: &str,
        login: &JsonObject,
    ) -> Result<Option<AuthResult>, ModuleError> {
        let accepted = self
            .some("check_auth", format!("{user}:{login_type}"))
            .await?;
        let token_ok = login.get("token").and_then(|t| t.as_str()) != Some("wrong");
        Ok(match accepted {
            Some(user_id) if token_ok => OwnedUserId::try_from(user_id.as_str())
                .ok()
                .map(AuthResult::new),
            _ => None,
        })
    }

    #[callback(password_auth_provider)]
    async fn check_3pid_auth(
        &self,
        medium: &str,
        address: &str,
        _password: &str,
    ) -> Result<Option<AuthResult>, ModuleError> {
        let accepted = self
            .some("check_3pid_auth", format!("{medium}:{address}"))
            .await?;
        Ok(accepted
            .and_then(|u| OwnedUserId::try_from(u.as_str()).ok())
            .map(AuthResult::new))
    }

    #[callback(password_auth_provider)]
    async fn on_logged_out(
        &self,
        user: &UserId,
        device_id: Option<&DeviceId>,
        _access_token: &str,
    ) -> Result<(), ModuleError> {
        self.observe(
            "on_logged_out",
            format!("{user}:{}", device_id.map(|d| d.as_str()).unwrap_or("-")),
        )
        .await
    }

    #[callback(password_auth_provider)]
    async fn get_username_for_registration(
        &self,
        _uia_results: &JsonObject,
        params: &JsonObject,
    ) -> Result<Option<String>, ModuleError> {
        let asked = params
            .get("username")
            .and_then(|u| u.as_str())
            .unwrap_or("")
            .to_string();
        self.some("get_username_for_registration", asked).await
    }

    #[callback(password_auth_provider)]
    async fn get_displayname_for_registration(
        &self,
        _uia_results: &JsonObject,
        _params: &JsonObject,
    ) -> Result<Option<String>, ModuleError> {
        self.some("get_displayname_for_registration", String::new())
            .await
    }

    // ---- account data, unsigned, ratelimit, media ----

    #[callback(account_data)]
    async fn on_account_data_updated(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        _content: &JsonObject,
    ) -> Result<(), ModuleError> {
        let room = room.map(|r| r.as_str()).unwrap_or("global");
        self.observe("on_account_data_updated", format!("{user}:{room}:{kind}"))
            .await
    }

    #[callback(add_extra_fields_to_unsigned_client_event)]
    async fn add_field_to_unsigned_callback(
        &self,
        event: &Event,
    ) -> Result<JsonObject, ModuleError> {
        let mut fields = JsonObject::new();
        if self
            .some("add_field_to_unsigned_callback", event.event_type.clone())
            .await?
            .is_some()
        {
            fields.insert("org.test.seen_by".into(), self.config.name.clone().into());
            fields.insert(format!("org.test.{}", self.config.name), true.into());
        }
        Ok(fields)
    }

    #[callback(ratelimit)]
    async fn get_ratelimit_override_for_user(
        &self,
        user: &UserId,
        limiter: &str,
    ) -> Result<Option<RatelimitOverride>, ModuleError> {
        Ok(self
            .some(
                "get_ratelimit_override_for_user",
                format!("{user}:{limiter}"),
            )
            .await?
            .map(|_| RatelimitOverride {
                per_second: 0.0,
                burst_count: 0,
            }))
    }

    #[callback(media_repository)]
    async fn get_media_config_for_user(
        &self,
        user: &UserId,
    ) -> Result<Option<JsonObject>, ModuleError> {
        Ok(self
            .some("get_media_config_for_user", user.to_string())
            .await?
            .map(|v| {
                let mut config = JsonObject::new();
                config.insert(
                    "m.upload.size".into(),
                    v.parse::<u64>().unwrap_or(42).into(),
                );
                config
            }))
    }

    #[callback(media_repository)]
    async fn is_user_allowed_to_upload_media_of_size(
        &self,
        _user: &UserId,
        size: u64,
    ) -> Result<bool, ModuleError> {
        self.allowed("is_user_allowed_to_upload_media_of_size", size.to_string())
            .await
    }

    #[callback(media_repository)]
    async fn get_media_upload_limits_for_user(
        &self,
        _user: &UserId,
    ) -> Result<Option<Vec<MediaUploadLimit>>, ModuleError> {
        Ok(self
            .some("get_media_upload_limits_for_user", String::new())
            .await?
            .map(|max| {
                vec![MediaUploadLimit {
                    time_period_ms: 3_600_000,
                    max_bytes: max.parse().unwrap_or(0),
                }]
            }))
    }

    #[callback(media_repository)]
    async fn on_media_upload_limit_exceeded(
        &self,
        _user: &UserId,
        limit: &MediaUploadLimit,
        sent_bytes: u64,
        attempted_bytes: u64,
    ) -> Result<(), ModuleError> {
        self.observe(
            "on_media_upload_limit_exceeded",
            format!("{}:{sent_bytes}:{attempted_bytes}", limit.max_bytes),
        )
        .await
    }
}
