//! Accounts: registration (every way of it), passwords, admins,
//! third-party identifiers, deactivation and reactivation.

use super::profile::ProfileChange;
use super::sessions::new_device;
use super::{Actor, MatrixError, MembershipChange, Via};
use crate::homeserver::Homeserver;
use crate::storage::{NewDevice, NewUser, StorageError};
use axon::callbacks::{JsonObject, ProfileInfo, RegistrationBehaviour, RequestInfo};
use axon::{ErrCode, Membership};
use ruma::{OwnedUserId, UserId};

/// A `POST /register` whose auth stages are done.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub username: Option<String>,
    pub password: Option<String>,
    pub device_id: Option<String>,
    pub initial_device_display_name: Option<String>,
    pub inhibit_login: bool,
    /// The completed stages, for the password auth provider modules.
    pub uia_results: JsonObject,
    /// The request body without `auth`, for the same modules.
    pub params: JsonObject,
    pub client: Option<RequestInfo>,
}

/// What a registration made.
#[derive(Debug, Clone)]
pub struct RegistrationOutcome {
    pub user_id: OwnedUserId,
    /// The first login, unless `inhibit_login`.
    pub device: Option<NewDevice>,
}

/// What an admin sets on an account (`PUT /_synapse/admin/v2/users/{user}`).
#[derive(Debug, Clone, Default)]
pub struct AdminUserChange {
    pub password: Option<String>,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    /// `(medium, address)` pairs replacing the account's.
    pub threepids: Option<Vec<(String, String)>>,
    pub admin: Option<bool>,
    pub deactivated: Option<bool>,
}

fn user_in_use() -> MatrixError {
    MatrixError::new(400, ErrCode::UserInUse, "User ID already taken.")
}

fn threepid_in_use() -> MatrixError {
    MatrixError::new(409, ErrCode::ThreepidInUse, "Threepid already in use")
}

/// `(medium, address)` as stored: emails are lowercased, as Synapse does.
fn canonical_threepid(medium: &str, address: &str) -> Result<(String, String), MatrixError> {
    match medium {
        "email" if address.contains('@') => Ok((medium.to_string(), address.trim().to_lowercase())),
        "email" => Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("Unable to parse email address `{address}`"),
        )),
        "msisdn" => Ok((medium.to_string(), address.to_string())),
        other => Err(MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("Unknown medium `{other}`: use `email` or `msisdn`"),
        )),
    }
}

impl Homeserver {
    /// Checks a localpart as Synapse does; `M_INVALID_USERNAME` if it is not allowed.
    pub fn check_localpart(&self, localpart: &str) -> Result<OwnedUserId, MatrixError> {
        let invalid = |m: &str| MatrixError::new(400, ErrCode::InvalidUsername, m);
        if localpart.is_empty() {
            return Err(invalid("User ID cannot be empty"));
        }
        if !localpart
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-/+".contains(c))
        {
            return Err(invalid(
                "User ID can only contain characters a-z, 0-9, or '=_-./+'",
            ));
        }
        if localpart.starts_with('_') {
            return Err(invalid("User ID may not begin with _"));
        }
        if localpart.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("Numeric user IDs are reserved for guest users."));
        }
        let user_id = format!("@{localpart}:{}", self.server_name());
        if user_id.len() > 255 {
            return Err(invalid("User ID may not be longer than 255 characters"));
        }
        UserId::parse(&user_id).map_err(|e| invalid(&e.to_string()))
    }

    /// A localpart that is valid and not taken (`GET /register/available`).
    pub async fn available_user_id(&self, localpart: &str) -> Result<OwnedUserId, MatrixError> {
        let user_id = self.check_localpart(localpart)?;
        if self.storage.get_user(&user_id).await?.is_some() {
            return Err(user_in_use());
        }
        Ok(user_id)
    }

    /// Creates a user (and its first device), then tells the account
    /// validity modules (`on_user_registration`), as every way of
    /// registering does in Synapse; `M_USER_IN_USE` if the ID is taken.
    pub async fn create_user(
        &self,
        user: NewUser,
        device: Option<NewDevice>,
    ) -> Result<(), MatrixError> {
        let user_id = user.user_id.clone();
        match self.storage.create_user(user, device).await {
            Ok(()) => {}
            Err(StorageError::Conflict(_)) => return Err(user_in_use()),
            Err(e) => return Err(e.into()),
        }
        self.callbacks
            .account_validity
            .on_user_registration(&user_id)
            .await?;
        Ok(())
    }

    /// What `POST /register` checks before its auth stages: registration is
    /// open, the address is within `rc_registration`, the username is free
    /// and the password not too long.
    pub async fn check_registration(
        &self,
        client: &RequestInfo,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<(), MatrixError> {
        if !self.config.enable_registration {
            return Err(MatrixError::forbidden("Registration has been disabled"));
        }
        self.rate_limiter
            .check("rc_registration", &client.ip, self.config.rc_registration)?;
        if let Some(name) = username {
            self.available_user_id(name).await?;
        }
        if password.is_some_and(|p| p.len() > 512) {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                "Password too long",
            ));
        }
        Ok(())
    }

    /// `POST /register` once its auth stages are done: the password auth
    /// provider modules may choose the username and display name
    /// (`get_username_for_registration`, `get_displayname_for_registration`),
    /// the spam checkers may refuse or shadow-ban
    /// (`check_registration_for_spam`); then the user exists, and a login
    /// is `on_user_login` with no auth provider.
    pub async fn register(
        &self,
        registration: Registration,
    ) -> Result<RegistrationOutcome, MatrixError> {
        let providers = &self.callbacks.password_auth_provider;
        let mut localpart = registration.username.clone();
        if let Some(chosen) = providers
            .get_username_for_registration(&registration.uia_results, &registration.params)
            .await?
        {
            self.available_user_id(&chosen).await?;
            localpart = Some(chosen);
        }
        let localpart = localpart.unwrap_or_else(|| {
            super::random_string(12)
                .to_lowercase()
                .replace(|c: char| c.is_ascii_digit(), "x")
        });
        let user_id = self.check_localpart(&localpart)?;
        let displayname = providers
            .get_displayname_for_registration(&registration.uia_results, &registration.params)
            .await?
            .unwrap_or_else(|| localpart.clone());
        let shadow_banned = match self
            .callbacks
            .spam_checker
            .check_registration_for_spam(
                None,
                Some(&localpart),
                registration.client.as_slice(),
                None,
            )
            .await?
        {
            // Disguised as rate limiting, as Synapse does.
            RegistrationBehaviour::Deny => {
                return Err(MatrixError::new(429, ErrCode::Unknown, "Rate limited"))
            }
            RegistrationBehaviour::ShadowBan => true,
            RegistrationBehaviour::Allow => false,
        };
        let password_hash = match registration.password {
            Some(p) => Some(self.passwords.hash(p).await?),
            None => None,
        };
        let device = (!registration.inhibit_login).then(|| {
            new_device(
                &user_id,
                registration.device_id,
                registration.initial_device_display_name,
            )
        });
        let user = NewUser {
            user_id: user_id.clone(),
            password_hash,
            admin: false,
            shadow_banned,
            displayname: Some(displayname),
            created_ts: axon::time::now_ms(),
            is_guest: false,
        };
        self.create_user(user, device.clone()).await?;
        if device.is_some() {
            self.callbacks
                .account_validity
                .on_user_login(&user_id, None, None)
                .await?;
        }
        Ok(RegistrationOutcome { user_id, device })
    }

    /// A user made by the server itself (shared-secret registration, the
    /// admin API, a module), with an optional password and first device.
    pub async fn register_user(
        &self,
        localpart: &str,
        password: Option<String>,
        displayname: Option<String>,
        admin: bool,
        with_device: bool,
    ) -> Result<RegistrationOutcome, MatrixError> {
        let user_id = self.check_localpart(localpart)?;
        let password_hash = match password {
            Some(p) => Some(self.passwords.hash(p).await?),
            None => None,
        };
        let device = with_device.then(|| new_device(&user_id, None, None));
        let user = NewUser {
            user_id: user_id.clone(),
            password_hash,
            admin,
            shadow_banned: false,
            displayname: Some(displayname.unwrap_or_else(|| localpart.to_string())),
            created_ts: axon::time::now_ms(),
            is_guest: false,
        };
        self.create_user(user, device.clone()).await?;
        Ok(RegistrationOutcome { user_id, device })
    }

    /// Whether `password` is the user's (user-interactive auth). Wrong
    /// passwords count against `rc_login.failed_attempts`, as failed logins
    /// do, and past the limit no password is checked: a stolen token cannot
    /// guess the password without limit.
    pub async fn check_password(
        &self,
        user: &UserId,
        password: String,
    ) -> Result<bool, MatrixError> {
        let hash = self
            .storage
            .get_user(user)
            .await?
            .and_then(|r| r.password_hash);
        self.verify_password(user.as_str(), password, hash).await
    }

    /// Checks a password against a stored hash (`None`: no password), under
    /// `rc_login.failed_attempts` for `key`: refused with 429 before any
    /// hashing once the failures are used up.
    pub(crate) async fn verify_password(
        &self,
        key: &str,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, MatrixError> {
        let limit = self.config.rc_login.failed_attempts;
        if !self
            .rate_limiter
            .allows("rc_login.failed_attempts", key, limit, 1)
        {
            // Answers with how long to wait.
            self.rate_limiter
                .check("rc_login.failed_attempts", key, limit)?;
        }
        let verified = match hash {
            Some(hash) => self.passwords.verify(password, hash).await,
            None => false,
        };
        if !verified {
            self.rate_limiter
                .check("rc_login.failed_attempts", key, limit)?;
        }
        Ok(verified)
    }

    /// Sets a new password; every device is logged out (as Synapse's admin
    /// API does by default).
    pub async fn set_password(&self, user: &UserId, password: String) -> Result<(), MatrixError> {
        let hash = self.passwords.hash(password).await?;
        self.storage
            .set_password_hash(user, &hash, true, None)
            .await?;
        Ok(())
    }

    /// `POST /account/password`, once the user authenticated: the new
    /// password, and with `logout_devices` (the default) every other device
    /// logged out, `on_logged_out` told of each.
    pub async fn change_password(
        &self,
        requester: &super::Requester,
        new_password: String,
        logout_devices: bool,
    ) -> Result<(), MatrixError> {
        if !self.config.password_config.enabled || !self.config.password_config.localdb_enabled {
            return Err(MatrixError::forbidden("Password change is disabled"));
        }
        if new_password.is_empty() {
            return Err(MatrixError::new(
                400,
                ErrCode::MissingParam,
                "Missing param: new_password",
            ));
        }
        let hash = self.passwords.hash(new_password).await?;
        let gone = self
            .storage
            .set_password_hash(
                &requester.user_id,
                &hash,
                logout_devices,
                Some(&requester.device_id),
            )
            .await?;
        self.logged_out(&requester.user_id, &gone).await;
        Ok(())
    }

    /// Makes a user a server admin, or not. An admin may not demote
    /// themselves through the admin API (as in Synapse).
    pub async fn set_admin(
        &self,
        actor: &Actor,
        user: &UserId,
        admin: bool,
    ) -> Result<(), MatrixError> {
        if actor.via == Via::AdminApi && actor.user_id == user && !admin {
            return Err(MatrixError::new(
                400,
                ErrCode::Unknown,
                "You may not demote yourself.",
            ));
        }
        Ok(self.storage.set_admin(user, admin).await?)
    }

    /// Replaces a user's third-party identifiers; 409 `M_THREEPID_IN_USE`
    /// (and nothing changes) if one belongs to another user. Then the
    /// modules hear of each removed one (`on_remove_user_third_party_identifier`)
    /// and each added one (`on_add_user_third_party_identifier`, and the
    /// deprecated `on_threepid_bind`), as Synapse's `add_threepid` and
    /// `delete_local_threepid` tell them.
    pub async fn set_threepids(
        &self,
        user: &UserId,
        threepids: &[(String, String)],
    ) -> Result<(), MatrixError> {
        let wanted = self.checked_threepids(user, threepids).await?;
        let changes = match self.storage.set_threepids(user, wanted).await {
            Err(StorageError::Conflict(_)) => return Err(threepid_in_use()),
            other => other?,
        };
        let rules = &self.callbacks.third_party_rules;
        for (medium, address) in &changes.removed {
            rules
                .on_remove_user_third_party_identifier(user, medium, address)
                .await;
        }
        for (medium, address) in &changes.added {
            rules
                .on_add_user_third_party_identifier(user, medium, address)
                .await;
            rules.on_threepid_bind(user, medium, address).await;
        }
        Ok(())
    }

    /// Canonical identifiers, none of them another user's.
    async fn checked_threepids(
        &self,
        user: &UserId,
        threepids: &[(String, String)],
    ) -> Result<Vec<(String, String)>, MatrixError> {
        let wanted = threepids
            .iter()
            .map(|(medium, address)| canonical_threepid(medium, address))
            .collect::<Result<Vec<_>, _>>()?;
        for (medium, address) in &wanted {
            if let Some(owner) = self.storage.threepid_owner(medium, address).await? {
                if owner != user {
                    return Err(threepid_in_use());
                }
            }
        }
        Ok(wanted)
    }

    /// Whether the modules let `actor` deactivate `user`
    /// (`check_can_deactivate_user`, with `by_admin`).
    async fn may_deactivate(&self, actor: &Actor, user: &UserId) -> Result<(), MatrixError> {
        if self
            .callbacks
            .third_party_rules
            .check_can_deactivate_user(user, actor.by_admin())
            .await
        {
            Ok(())
        } else {
            Err(MatrixError::forbidden(
                "Deactivation of this user is forbidden",
            ))
        }
    }

    /// Deactivates an account, whoever asks (the user, an admin, a module):
    /// the modules may refuse (`check_can_deactivate_user`); then the user
    /// leaves every room, is logged out everywhere, loses their profile and
    /// third-party identifiers, and the modules hear of it. With `erase`,
    /// their events are served redacted from then on to users who were not
    /// in the room when they were sent.
    pub async fn deactivate(
        &self,
        actor: &Actor,
        user: &UserId,
        erase: bool,
    ) -> Result<(), MatrixError> {
        self.may_deactivate(actor, user).await?;
        self.deactivate_allowed(actor, user, erase).await
    }

    async fn deactivate_allowed(
        &self,
        actor: &Actor,
        user: &UserId,
        erase: bool,
    ) -> Result<(), MatrixError> {
        let as_user = actor.as_user(user);
        for membership in self.storage.memberships(user).await? {
            if matches!(membership.membership, Membership::Join | Membership::Invite) {
                let change = MembershipChange::new(&membership.room_id, user, Membership::Leave);
                if let Err(e) = self.change_membership(&as_user, change).await {
                    tracing::warn!(
                        "deactivating {user}: cannot leave {}: {e}",
                        membership.room_id
                    );
                }
            }
        }
        let removed = self.storage.deactivate_user(user, erase).await?;
        let rules = &self.callbacks.third_party_rules;
        for threepid in &removed {
            rules
                .on_remove_user_third_party_identifier(user, &threepid.medium, &threepid.address)
                .await;
        }
        rules
            .on_user_deactivation_status_changed(user, true, actor.by_admin())
            .await;
        let blanked = ProfileInfo {
            display_name: Some(String::new()),
            avatar_url: None,
        };
        rules
            .on_profile_update(user, &blanked, actor.by_admin(), true)
            .await;
        Ok(())
    }

    /// Reactivates a deactivated account (Synapse's admin API): it rejoins
    /// nothing and needs a password to log in; the modules hear of it
    /// (`on_user_deactivation_status_changed(user, false, true)`).
    pub async fn reactivate(&self, user: &UserId) -> Result<(), MatrixError> {
        self.storage.reactivate_user(user).await?;
        self.callbacks
            .third_party_rules
            .on_user_deactivation_status_changed(user, false, true)
            .await;
        Ok(())
    }

    /// `PUT /_synapse/admin/v2/users/{user}`: creates the account (true) or
    /// changes it (false). Everything that can be refused is checked first,
    /// so a refused request changes nothing; then the changes are made in
    /// Synapse's order, each through its service.
    pub async fn admin_put_user(
        &self,
        actor: &Actor,
        user: &UserId,
        change: AdminUserChange,
    ) -> Result<bool, MatrixError> {
        if let Some(threepids) = &change.threepids {
            self.checked_threepids(user, threepids).await?;
        }
        if let Some(name) = &change.displayname {
            super::profile::check_displayname(name)?;
        }
        if let Some(url) = &change.avatar_url {
            super::profile::check_avatar_url(url)?;
        }
        let existing = self.storage.get_user(user).await?;
        let Some(existing) = existing else {
            let localpart = user.localpart();
            self.register_user(
                localpart,
                change.password,
                change.displayname,
                change.admin.unwrap_or(false),
                false,
            )
            .await?;
            if let Some(threepids) = &change.threepids {
                self.set_threepids(user, threepids).await?;
            }
            if let Some(avatar_url) = change.avatar_url {
                let profile = ProfileChange {
                    avatar_url: Some(Some(avatar_url)),
                    ..Default::default()
                };
                self.set_profile(actor, user, profile).await?;
            }
            // Synapse ignores `deactivated` here and creates an active
            // account; the operator asked for a deactivated one.
            if change.deactivated == Some(true) {
                self.deactivate(actor, user, false).await?;
            }
            return Ok(true);
        };
        let deactivate = change.deactivated == Some(true) && !existing.deactivated;
        if deactivate {
            self.may_deactivate(actor, user).await?;
        }
        let profile = ProfileChange {
            displayname: change.displayname.map(Some),
            avatar_url: change.avatar_url.map(Some),
        };
        if !profile.is_empty() {
            self.set_profile(actor, user, profile).await?;
        }
        if let Some(threepids) = &change.threepids {
            self.set_threepids(user, threepids).await?;
        }
        if let Some(admin) = change.admin {
            self.set_admin(actor, user, admin).await?;
        }
        if change.deactivated == Some(false) && existing.deactivated {
            self.reactivate(user).await?;
        }
        if let Some(password) = change.password {
            self.set_password(user, password).await?;
        }
        if deactivate {
            self.deactivate_allowed(actor, user, false).await?;
        }
        Ok(false)
    }
}
