//! Port of [synapse-user-restrictions]: ordered regex rules decide who may
//! invite and who may create rooms. See this crate's README.
//!
//! [synapse-user-restrictions]: https://github.com/matrix-org/synapse-user-restrictions

use axon::prelude::*;

/// What a rule can allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Invite,
    CreateRoom,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A regular expression that must match the whole user ID.
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default)]
    pub allow: Vec<Permission>,
    #[serde(default)]
    pub deny: Vec<Permission>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rules, the first to decide wins.
    pub rules: Vec<RuleConfig>,
    /// Denied when no rule decides.
    #[serde(default)]
    pub default_deny: Vec<Permission>,
}

struct Rule {
    /// Anchored: Python's `re.fullmatch`.
    pattern: regex::Regex,
    allow: Vec<Permission>,
    deny: Vec<Permission>,
}

pub struct UserRestrictionsModule {
    rules: Vec<Rule>,
    default_deny: Vec<Permission>,
}

impl UserRestrictionsModule {
    /// Whether `user` has `permission`: the first rule whose pattern matches
    /// and which lists the permission decides; else `default_deny`.
    fn allowed(&self, user: &UserId, permission: Permission) -> bool {
        for rule in &self.rules {
            if !rule.pattern.is_match(user.as_str()) {
                continue;
            }
            if rule.allow.contains(&permission) {
                return true;
            }
            if rule.deny.contains(&permission) {
                return false;
            }
        }
        !self.default_deny.contains(&permission)
    }

    fn verdict(&self, user: &UserId, permission: Permission) -> SpamCheck {
        if self.allowed(user, permission) {
            SpamCheck::NotSpam
        } else {
            SpamCheck::deny(ErrCode::Forbidden)
        }
    }
}

/// Decides who may invite (by the inviter) and create rooms, by regex rules.
#[module]
impl UserRestrictionsModule {
    fn new(config: Config, _api: &ModuleApi) -> Result<Self, ConfigError> {
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.into_iter().enumerate() {
            let pattern = regex::Regex::new(&format!("^(?:{})$", rule.pattern)).map_err(|e| {
                ConfigError::at(
                    format!("rules[{i}].match"),
                    format!("not a valid regular expression: {e}"),
                )
            })?;
            rules.push(Rule {
                pattern,
                allow: rule.allow,
                deny: rule.deny,
            });
        }
        Ok(UserRestrictionsModule {
            rules,
            default_deny: config.default_deny,
        })
    }

    #[callback(spam_checker)]
    async fn user_may_create_room(&self, user: &UserId, _room_config: &JsonObject) -> SpamCheck {
        self.verdict(user, Permission::CreateRoom)
    }

    #[callback(spam_checker)]
    async fn user_may_invite(
        &self,
        inviter: &UserId,
        _invitee: &UserId,
        _room: &RoomId,
    ) -> SpamCheck {
        self.verdict(inviter, Permission::Invite)
    }
}
