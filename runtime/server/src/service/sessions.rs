//! Sessions: who an access token belongs to, logging in (the local password
//! and the modules' login types), devices, logging out.

use super::{denial, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::NewDevice;
use axon::callbacks::{JsonObject, RequestInfo, SpamCheck};
use axon::ErrCode;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

/// The user an access token belongs to.
#[derive(Debug, Clone)]
pub struct Requester {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
    pub admin: bool,
    pub shadow_banned: bool,
    /// A guest (`kind=guest`): may use only what `GUEST_ROUTES` lists.
    pub is_guest: bool,
}

/// A `POST /login` as parsed from its body.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    pub login_type: String,
    /// The user the client names (maybe a localpart), if it names one.
    pub user: Option<String>,
    /// An `m.id.thirdparty` identifier: `(medium, address)`.
    pub thirdparty: Option<(String, String)>,
    pub password: Option<String>,
    /// The whole body, for modules' login types.
    pub body: JsonObject,
    pub device_id: Option<String>,
    pub initial_device_display_name: Option<String>,
    pub client: RequestInfo,
}

fn invalid_login() -> MatrixError {
    MatrixError::forbidden("Invalid username or password")
}

impl Homeserver {
    /// The user an access token belongs to (Synapse's `get_user_by_req`);
    /// unless `allow_expired`, the account validity modules may refuse an
    /// expired account (`is_user_expired`).
    pub async fn authenticate(
        &self,
        token: Option<String>,
        allow_expired: bool,
    ) -> Result<Requester, MatrixError> {
        let token = token
            .ok_or_else(|| MatrixError::new(401, ErrCode::MissingToken, "Missing access token"))?;
        let owner = self
            .storage
            .token_owner(&token)
            .await?
            .filter(|o| !o.deactivated)
            .ok_or_else(|| {
                MatrixError::new(401, ErrCode::UnknownToken, "Unrecognised access token")
                    .with_field("soft_logout", false)
            })?;
        if !allow_expired
            && self
                .callbacks
                .account_validity
                .is_user_expired(&owner.user_id)
                .await?
                == Some(true)
        {
            return Err(MatrixError::new(
                403,
                ErrCode::ExpiredAccount,
                "User account has expired",
            ));
        }
        Ok(Requester {
            user_id: owner.user_id,
            device_id: owner.device_id,
            access_token: token,
            admin: owner.admin,
            shadow_banned: owner.shadow_banned,
            is_guest: owner.is_guest,
        })
    }

    /// `alice` or `@alice:server` → the full, lower-cased user ID (as
    /// Synapse's login does).
    pub(crate) fn qualify(&self, user: &str) -> String {
        if user.starts_with('@') {
            user.to_lowercase()
        } else {
            format!("@{}:{}", user.to_lowercase(), self.server_name())
        }
    }

    /// `POST /login`: rate-limited per address and account; the modules
    /// that declared the login type answer first (`check_auth`,
    /// `check_3pid_auth`), then the local password; `check_login_for_spam`
    /// may refuse; then the device exists and `on_user_login` runs.
    pub async fn login(&self, request: LoginRequest) -> Result<NewDevice, MatrixError> {
        self.rate_limiter.check(
            "rc_login.address",
            &request.client.ip,
            self.config.rc_login.address,
        )?;
        let login_type = request.login_type.as_str();
        if login_type == "m.login.password" && !self.config.password_config.enabled {
            return Err(MatrixError::new(
                400,
                ErrCode::Unknown,
                "Password login has been disabled.",
            ));
        }
        let user_id = if login_type == "m.login.password" {
            let password = request.password.clone().ok_or_else(|| {
                MatrixError::new(400, ErrCode::MissingParam, "Missing param: password")
            })?;
            match &request.user {
                Some(user) => self.password_login(&request, user, password).await?,
                None => {
                    // A third-party identifier: only modules know those.
                    let (medium, address) = request.thirdparty.clone().unwrap_or_default();
                    match self
                        .callbacks
                        .password_auth_provider
                        .check_3pid_auth(&medium, &address, &password)
                        .await
                    {
                        Some(result) => result.user_id,
                        None => return Err(invalid_login()),
                    }
                }
            }
        } else if self.login_types.contains_key(login_type) {
            let user = request.user.clone().unwrap_or_default();
            self.module_login(login_type, &user, &request.body)
                .await?
                .ok_or_else(invalid_login)?
        } else {
            return Err(MatrixError::new(
                400,
                ErrCode::Unknown,
                format!("Unknown login type {login_type}"),
            ));
        };
        // A module may only log in users that exist.
        let Some(row) = self.storage.get_user(&user_id).await? else {
            return Err(invalid_login());
        };
        if row.deactivated {
            return Err(MatrixError::new(
                403,
                ErrCode::UserDeactivated,
                "This account has been deactivated",
            ));
        }
        let device = new_device(
            &user_id,
            request.device_id.clone(),
            request.initial_device_display_name.clone(),
        );
        if let SpamCheck::Deny {
            errcode,
            extra_fields,
        } = self
            .callbacks
            .spam_checker
            .check_login_for_spam(
                &user_id,
                Some(&device.device_id),
                device.display_name.as_deref(),
                std::slice::from_ref(&request.client),
                None,
            )
            .await?
        {
            return Err(denial(
                "Login was blocked by the server",
                errcode,
                extra_fields,
            ));
        }
        self.storage.add_device(device.clone()).await?;
        self.callbacks
            .account_validity
            .on_user_login(&user_id, Some(login_type), None)
            .await?;
        Ok(device)
    }

    /// `m.login.password` naming a user: the modules that declared it, then
    /// the local password.
    async fn password_login(
        &self,
        request: &LoginRequest,
        user: &str,
        password: String,
    ) -> Result<OwnedUserId, MatrixError> {
        let qualified = self.qualify(user);
        self.rate_limiter
            .check("rc_login.account", &qualified, self.config.rc_login.account)?;
        if let Some(user_id) = self
            .module_login(&request.login_type, user, &request.body)
            .await?
        {
            return Ok(user_id);
        }
        if !self.config.password_config.localdb_enabled {
            return Err(invalid_login());
        }
        let user_id = UserId::parse(&qualified).ok();
        let row = match &user_id {
            Some(id) => self.storage.get_user(id).await?,
            None => None,
        };
        let verified = self
            .verify_password(&qualified, password, row.and_then(|r| r.password_hash))
            .await?;
        match user_id {
            Some(user_id) if verified => Ok(user_id),
            _ => Err(invalid_login()),
        }
    }

    /// Asks the modules that declared `login_type`, in config order (for a
    /// login, and for a stage of user-interactive auth).
    pub(crate) async fn module_login(
        &self,
        login_type: &str,
        user: &str,
        body: &JsonObject,
    ) -> Result<Option<OwnedUserId>, MatrixError> {
        let Some(declared) = self.login_types.get(login_type) else {
            return Ok(None);
        };
        let missing: Vec<&str> = declared
            .fields
            .iter()
            .filter(|f| !body.contains_key(f.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(MatrixError::new(
                400,
                ErrCode::Unknown,
                format!("Missing parameters for login type {login_type}: {missing:?}"),
            ));
        }
        let result = self
            .callbacks
            .password_auth_provider
            .check_auth_among(
                |m| declared.modules.contains(&m.index),
                user,
                login_type,
                body,
            )
            .await;
        Ok(result.map(|r| r.user_id))
    }

    /// A new device with an access token for a local user (a module's
    /// `register_device`).
    pub async fn register_device(
        &self,
        user: &UserId,
        device_id: Option<String>,
        display_name: Option<String>,
    ) -> Result<NewDevice, MatrixError> {
        if self.storage.get_user(user).await?.is_none() {
            return Err(MatrixError::new(
                404,
                ErrCode::NotFound,
                format!("no user {user}"),
            ));
        }
        let device = new_device(user, device_id, display_name);
        self.storage.add_device(device.clone()).await?;
        Ok(device)
    }

    /// `POST /logout`: the device is gone; `on_logged_out` hears of it.
    pub async fn logout(&self, requester: &Requester) -> Result<(), MatrixError> {
        self.storage
            .delete_device(&requester.user_id, &requester.device_id)
            .await?;
        self.logged_out(
            &requester.user_id,
            &[(requester.device_id.clone(), requester.access_token.clone())],
        )
        .await;
        Ok(())
    }

    /// `POST /logout/all`: every device is gone; `on_logged_out` for each.
    pub async fn logout_all(&self, user: &UserId) -> Result<(), MatrixError> {
        let devices = self.storage.delete_all_devices(user).await?;
        self.logged_out(user, &devices).await;
        Ok(())
    }

    pub(crate) async fn logged_out(&self, user: &UserId, devices: &[(OwnedDeviceId, String)]) {
        for (device, token) in devices {
            self.callbacks
                .password_auth_provider
                .on_logged_out(user, Some(device), token)
                .await;
        }
    }
}

/// A device with a fresh access token (and ID, unless the client chose one).
pub(crate) fn new_device(
    user_id: &UserId,
    device_id: Option<String>,
    display_name: Option<String>,
) -> NewDevice {
    NewDevice {
        user_id: user_id.to_owned(),
        device_id: device_id
            .map(OwnedDeviceId::from)
            .unwrap_or_else(|| OwnedDeviceId::from(super::random_string(10).to_uppercase())),
        display_name,
        access_token: format!("syt_{}", super::random_string(40)),
        created_ts: axon::time::now_ms(),
    }
}

/// How long an OpenID token is valid (Synapse: one hour).
const OPENID_TOKEN_LIFETIME_MS: i64 = 3_600_000;

impl Homeserver {
    /// `POST /user/{userId}/openid/request_token`: a token the client hands
    /// to a third party (an integration manager), which asks this server
    /// whose it is. It proves who the user is and grants nothing else.
    pub async fn request_openid_token(
        &self,
        requester: &Requester,
        user_id: &str,
    ) -> Result<serde_json::Value, MatrixError> {
        if user_id != requester.user_id.as_str() {
            return Err(MatrixError::new(
                403,
                ErrCode::Forbidden,
                "Cannot request tokens for other users.",
            ));
        }
        let token = super::random_string(24);
        let now = axon::time::now_ms();
        self.storage
            .add_openid_token(
                token.clone(),
                &requester.user_id,
                now + OPENID_TOKEN_LIFETIME_MS,
                now,
            )
            .await?;
        Ok(serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self.server_name,
            "expires_in": OPENID_TOKEN_LIFETIME_MS / 1000,
        }))
    }

    /// Whose an OpenID token is (`GET /_matrix/federation/v1/openid/userinfo`).
    pub async fn openid_userinfo(&self, token: Option<String>) -> Result<OwnedUserId, MatrixError> {
        let token = token
            .ok_or_else(|| MatrixError::new(401, ErrCode::MissingToken, "Access Token required"))?;
        self.storage
            .openid_token_owner(&token, axon::time::now_ms())
            .await?
            .ok_or_else(|| {
                MatrixError::new(
                    401,
                    ErrCode::UnknownToken,
                    "Access Token unknown or expired",
                )
            })
    }
}
