//! Port of [matrix-synapse-shared-secret-auth]: log in as any existing user
//! with an HMAC-SHA512 of their user ID, keyed by a shared secret (bridges'
//! double puppeting, matrix-corporal). See this crate's README.
//!
//! [matrix-synapse-shared-secret-auth]: https://github.com/devture/matrix-synapse-shared-secret-auth

use axon::prelude::*;
use hmac::{Hmac, Mac};

const LOGIN_TYPE: &str = "com.devture.shared_secret_auth";

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub shared_secret: String,
    /// Also accept the token as the password of `m.login.password`.
    #[serde(default)]
    pub m_login_password_support_enabled: bool,
    #[serde(default = "enabled")]
    pub com_devture_shared_secret_auth_support_enabled: bool,
}

fn enabled() -> bool {
    true
}

pub struct SharedSecretAuthProvider {
    secret: String,
    api: ModuleApi,
}

impl SharedSecretAuthProvider {
    /// The user, if `token` is the HMAC of their full user ID and they exist.
    async fn authenticate(&self, user: &str, token: &str) -> Option<OwnedUserId> {
        let user_id = self.api.get_qualified_user_id(user).ok()?;
        let given = hex::decode(token).ok()?;
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(self.secret.as_bytes()).ok()?;
        mac.update(user_id.as_str().as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&given).ok()?;
        self.api.get_userinfo_by_id(&user_id).await.ok().flatten()?;
        Some(user_id)
    }
}

/// Logs users in with an HMAC-SHA512 of their user ID (`com.devture.shared_secret_auth`, and
/// optionally `m.login.password`).
#[module]
impl SharedSecretAuthProvider {
    fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError> {
        if config.shared_secret.is_empty() {
            return Err(ConfigError::at("shared_secret", "must not be empty"));
        }
        if !config.com_devture_shared_secret_auth_support_enabled
            && !config.m_login_password_support_enabled
        {
            return Err(ConfigError::new(
                "both login types are disabled: enable com_devture_shared_secret_auth_support_enabled or m_login_password_support_enabled",
            ));
        }
        if config.com_devture_shared_secret_auth_support_enabled {
            api.register_login_type(LOGIN_TYPE, &["token"]);
        }
        if config.m_login_password_support_enabled {
            api.register_login_type("m.login.password", &["password"]);
        }
        Ok(SharedSecretAuthProvider {
            secret: config.shared_secret,
            api: api.clone(),
        })
    }

    #[callback(password_auth_provider)]
    async fn check_auth(
        &self,
        user: &str,
        login_type: &str,
        login: &JsonObject,
    ) -> Option<AuthResult> {
        let field = if login_type == LOGIN_TYPE {
            "token"
        } else {
            "password"
        };
        let token = login.get(field)?.as_str()?;
        self.authenticate(user, token).await.map(AuthResult::new)
    }
}
