//! Registration, login, logout, whoami, deactivation, and Synapse's
//! shared-secret registration (`/_synapse/admin/v1/register`).

use super::extract::{parse_json, ApiQuery, Auth, AuthAllowExpired, ClientAddr, JsonBody};
use super::{now_ms, random_string, ApiResult, AppState, MatrixError};
use crate::storage::{NewDevice, NewUser, StorageError};
use axon::callbacks::{RegistrationBehaviour, RequestInfo, SpamCheck};
use axon::ErrCode;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/register", post(register))
        .route("/register/available", get(register_available))
        .route("/login", get(login_flows).post(login))
        .route("/logout", post(logout))
        .route("/logout/all", post(logout_all))
        .route("/account/whoami", get(whoami))
        .route("/account/3pid", get(threepids))
        .route("/account/deactivate", post(deactivate))
}

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/_synapse/admin/v1/register",
        get(admin_register_nonce).post(admin_register),
    )
}

/// Checks a localpart as Synapse does; `M_INVALID_USERNAME` if it is not allowed.
pub(crate) fn check_localpart(state: &AppState, localpart: &str) -> Result<String, MatrixError> {
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
    let user_id = format!("@{localpart}:{}", state.server_name());
    if user_id.len() > 255 {
        return Err(invalid("User ID may not be longer than 255 characters"));
    }
    Ok(user_id)
}

/// Creates a user (and its first device), then tells the account validity
/// modules, as every way of registering does in Synapse; `M_USER_IN_USE`
/// if the ID is taken.
pub(crate) async fn create_user(
    state: &AppState,
    user: NewUser,
    device: Option<crate::storage::NewDevice>,
) -> Result<(), MatrixError> {
    let user_id = user.user_id.clone();
    match state.storage.create_user(user, device).await {
        Ok(()) => {}
        Err(StorageError::Conflict(_)) => {
            return Err(MatrixError::new(
                400,
                ErrCode::UserInUse,
                "User ID already taken.",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    if let Ok(id) = ruma::UserId::parse(&user_id) {
        state
            .callbacks
            .account_validity
            .on_user_registration(&id)
            .await?;
    }
    Ok(())
}

pub(crate) async fn hash_password(password: String) -> Result<String, MatrixError> {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| MatrixError::internal(e.to_string()))?
    .map_err(|e| MatrixError::internal(format!("cannot hash the password: {e}")))
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(&hash)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

pub(crate) fn new_device(
    user_id: &str,
    device_id: Option<String>,
    display_name: Option<String>,
) -> NewDevice {
    NewDevice {
        user_id: user_id.to_string(),
        device_id: device_id.unwrap_or_else(|| random_string(10).to_uppercase()),
        display_name,
        access_token: format!("syt_{}", random_string(40)),
        created_ts: now_ms(),
    }
}

fn login_response(state: &AppState, device: &NewDevice) -> Value {
    json!({
        "user_id": device.user_id,
        "access_token": device.access_token,
        "device_id": device.device_id,
        "home_server": state.server_name(),
    })
}

#[derive(Deserialize)]
struct RegisterQuery {
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RegisterBody {
    #[serde(default)]
    auth: Option<Value>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
}

async fn register(
    State(state): State<Arc<AppState>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<RegisterQuery>,
    JsonBody(raw): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    if query.kind.as_deref() == Some("guest") {
        return Err(MatrixError::new(
            403,
            ErrCode::Custom("M_GUEST_ACCESS_FORBIDDEN".into()),
            "Guest access is disabled",
        ));
    }
    if !state.config.enable_registration {
        return Err(MatrixError::forbidden("Registration has been disabled"));
    }
    state.rate_limiter.check(
        "rc_registration",
        &addr.to_string(),
        state.config.rc_registration,
    )?;
    let body: RegisterBody = parse_json(Value::Object(raw.clone()))?;
    if let Some(name) = &body.username {
        let user_id = check_localpart(&state, name)?;
        if state.storage.get_user(&user_id).await?.is_some() {
            return Err(MatrixError::new(
                400,
                ErrCode::UserInUse,
                "User ID already taken.",
            ));
        }
    }
    if let Some(password) = &body.password {
        if password.len() > 512 {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                "Password too long",
            ));
        }
    }
    // User-interactive auth: one stage, m.login.dummy.
    let flows = json!([{ "stages": ["m.login.dummy"] }]);
    let session = match &body.auth {
        None => return Ok(uia_challenge(flows, &random_string(24), None)),
        Some(auth) => auth
            .get("session")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string(),
    };
    match body
        .auth
        .as_ref()
        .and_then(|a| a.get("type"))
        .and_then(|t| t.as_str())
    {
        Some("m.login.dummy") => {}
        _ => {
            let error = MatrixError::new(401, ErrCode::Unrecognized, "Unrecognised auth type");
            return Ok(uia_challenge(flows, &session, Some(error)));
        }
    }
    // Password auth provider modules may choose the username and display name.
    let providers = &state.callbacks.password_auth_provider;
    let mut uia_results = Map::new();
    uia_results.insert("m.login.dummy".into(), json!(true));
    let mut params = raw.clone();
    params.remove("auth");
    let mut localpart = body.username.clone();
    if let Some(chosen) = providers
        .get_username_for_registration(&uia_results, &params)
        .await?
    {
        let user_id = check_localpart(&state, &chosen)?;
        if state.storage.get_user(&user_id).await?.is_some() {
            return Err(MatrixError::new(
                400,
                ErrCode::UserInUse,
                "User ID already taken.",
            ));
        }
        localpart = Some(chosen);
    }
    let localpart = localpart.unwrap_or_else(|| {
        random_string(12)
            .to_lowercase()
            .replace(|c: char| c.is_ascii_digit(), "x")
    });
    let user_id = check_localpart(&state, &localpart)?;
    let displayname = providers
        .get_displayname_for_registration(&uia_results, &params)
        .await?
        .unwrap_or_else(|| localpart.clone());
    let request_info = [request_info(&headers, addr)];
    let shadow_banned = match state
        .callbacks
        .spam_checker
        .check_registration_for_spam(None, Some(&localpart), &request_info, None)
        .await?
    {
        // Disguised as rate limiting, as Synapse does.
        RegistrationBehaviour::Deny => {
            return Err(MatrixError::new(429, ErrCode::Unknown, "Rate limited"))
        }
        RegistrationBehaviour::ShadowBan => true,
        RegistrationBehaviour::Allow => false,
    };
    let password_hash = match body.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let device = (!body.inhibit_login)
        .then(|| new_device(&user_id, body.device_id, body.initial_device_display_name));
    let user = NewUser {
        user_id: user_id.clone(),
        password_hash,
        admin: false,
        shadow_banned,
        displayname: Some(displayname),
        created_ts: now_ms(),
    };
    create_user(&state, user, device.clone()).await?;
    if let Ok(id) = ruma::UserId::parse(&user_id) {
        let validity = &state.callbacks.account_validity;
        if device.is_some() {
            validity.on_user_login(&id, None, None).await?;
        }
    }
    Ok(Json(match device {
        Some(device) => login_response(&state, &device),
        None => json!({ "user_id": user_id, "home_server": state.server_name() }),
    })
    .into_response())
}

/// The client of a request, as spam checkers see it.
fn request_info(headers: &HeaderMap, addr: std::net::IpAddr) -> RequestInfo {
    RequestInfo {
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ip: addr.to_string(),
    }
}

/// A user-interactive auth challenge: 401 with the flows to complete, and
/// the error of a failed attempt, if any.
fn uia_challenge(flows: Value, session: &str, error: Option<MatrixError>) -> Response {
    let mut body = match error {
        Some(e) => match e.body() {
            Value::Object(m) => m,
            _ => Default::default(),
        },
        None => Default::default(),
    };
    body.insert("flows".into(), flows);
    body.insert("params".into(), json!({}));
    body.insert("session".into(), json!(session));
    (StatusCode::UNAUTHORIZED, Json(Value::Object(body))).into_response()
}

#[derive(Deserialize)]
struct AvailableQuery {
    username: String,
}

async fn register_available(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<AvailableQuery>,
) -> ApiResult {
    let user_id = check_localpart(&state, &q.username)?;
    if state.storage.get_user(&user_id).await?.is_some() {
        return Err(MatrixError::new(
            400,
            ErrCode::UserInUse,
            "User ID already taken.",
        ));
    }
    Ok(Json(json!({ "available": true })))
}

async fn login_flows(State(state): State<Arc<AppState>>) -> Json<Value> {
    let mut flows = Vec::new();
    if state.config.password_config.enabled {
        flows.push(json!({ "type": "m.login.password" }));
    }
    for login_type in state.login_types.keys() {
        if login_type != "m.login.password" {
            flows.push(json!({ "type": login_type }));
        }
    }
    Json(json!({ "flows": flows }))
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "type")]
    login_type: String,
    #[serde(default)]
    identifier: Option<Value>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    initial_device_display_name: Option<String>,
}

/// `alice` or `@alice:server` → the full, lower-cased user ID.
fn qualify(state: &AppState, user: &str) -> String {
    if user.starts_with('@') {
        user.to_lowercase()
    } else {
        format!("@{}:{}", user.to_lowercase(), state.server_name())
    }
}

fn invalid_login() -> MatrixError {
    MatrixError::forbidden("Invalid username or password")
}

/// The user a login names, as the client supplied it (maybe a localpart).
fn supplied_user(body: &LoginBody) -> Result<Option<String>, MatrixError> {
    match (&body.identifier, &body.user) {
        (Some(identifier), _) => match identifier.get("type").and_then(|t| t.as_str()) {
            Some("m.id.user") => identifier
                .get("user")
                .and_then(|u| u.as_str())
                .map(|u| Some(u.to_string()))
                .ok_or_else(|| {
                    MatrixError::new(400, ErrCode::BadJson, "identifier.user must be a string")
                }),
            Some("m.id.thirdparty") => Ok(None),
            _ => Err(MatrixError::new(
                400,
                ErrCode::Unknown,
                "Unknown login identifier type",
            )),
        },
        (None, Some(user)) => Ok(Some(user.clone())),
        (None, None) => Err(MatrixError::new(
            400,
            ErrCode::MissingParam,
            "Missing param: identifier",
        )),
    }
}

/// Asks the modules that declared `login_type`, in config order.
async fn module_login(
    state: &AppState,
    login_type: &str,
    user: &str,
    raw: &Map<String, Value>,
) -> Result<Option<String>, MatrixError> {
    let Some(declared) = state.login_types.get(login_type) else {
        return Ok(None);
    };
    let missing: Vec<&str> = declared
        .fields
        .iter()
        .filter(|f| !raw.contains_key(f.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(MatrixError::new(
            400,
            ErrCode::Unknown,
            format!("Missing parameters for login type {login_type}: {missing:?}"),
        ));
    }
    let result = state
        .callbacks
        .password_auth_provider
        .check_auth_among(
            |m| declared.modules.contains(&m.index),
            user,
            login_type,
            raw,
        )
        .await;
    Ok(result.map(|r| r.user_id.to_string()))
}

async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(raw): JsonBody<Map<String, Value>>,
) -> ApiResult {
    state.rate_limiter.check(
        "rc_login.address",
        &addr.to_string(),
        state.config.rc_login.address,
    )?;
    let body: LoginBody = parse_json(Value::Object(raw.clone()))?;
    let login_type = body.login_type.as_str();
    if login_type == "m.login.password" && !state.config.password_config.enabled {
        return Err(MatrixError::new(
            400,
            ErrCode::Unknown,
            "Password login has been disabled.",
        ));
    }
    let user_id = if login_type == "m.login.password" {
        let password = body.password.clone().ok_or_else(|| {
            MatrixError::new(400, ErrCode::MissingParam, "Missing param: password")
        })?;
        match supplied_user(&body)? {
            Some(user) => {
                let user_id = qualify(&state, &user);
                state.rate_limiter.check(
                    "rc_login.account",
                    &user_id,
                    state.config.rc_login.account,
                )?;
                // Modules that declared m.login.password answer first; then the local password.
                match module_login(&state, login_type, &user, &raw).await? {
                    Some(user_id) => user_id,
                    None if !state.config.password_config.localdb_enabled => {
                        return Err(invalid_login())
                    }
                    None => {
                        let row = state.storage.get_user(&user_id).await?;
                        let verified = match row.and_then(|r| r.password_hash) {
                            Some(hash) => verify_password(password, hash).await,
                            None => false,
                        };
                        if !verified {
                            state.rate_limiter.check(
                                "rc_login.failed_attempts",
                                &user_id,
                                state.config.rc_login.failed_attempts,
                            )?;
                            return Err(invalid_login());
                        }
                        user_id
                    }
                }
            }
            None => {
                // A third-party identifier: only modules know those.
                let identifier = body.identifier.clone().unwrap_or_default();
                let medium = identifier
                    .get("medium")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default();
                let address = identifier
                    .get("address")
                    .and_then(|a| a.as_str())
                    .unwrap_or_default();
                match state
                    .callbacks
                    .password_auth_provider
                    .check_3pid_auth(medium, address, &password)
                    .await
                {
                    Some(result) => result.user_id.to_string(),
                    None => return Err(invalid_login()),
                }
            }
        }
    } else if state.login_types.contains_key(login_type) {
        let user = supplied_user(&body).ok().flatten().unwrap_or_default();
        module_login(&state, login_type, &user, &raw)
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
    let Some(row) = state.storage.get_user(&user_id).await? else {
        return Err(invalid_login());
    };
    if row.deactivated {
        return Err(MatrixError::new(
            403,
            ErrCode::UserDeactivated,
            "This account has been deactivated",
        ));
    }
    let device = new_device(&user_id, body.device_id, body.initial_device_display_name);
    if let Ok(id) = ruma::UserId::parse(&user_id) {
        let device_id: Option<&ruma::DeviceId> = Some(device.device_id.as_str().into());
        if let SpamCheck::Deny {
            errcode,
            extra_fields,
        } = state
            .callbacks
            .spam_checker
            .check_login_for_spam(
                &id,
                device_id,
                device.display_name.as_deref(),
                &[request_info(&headers, addr)],
                None,
            )
            .await?
        {
            let mut error = MatrixError::new(403, errcode, "Login was blocked by the server");
            error.extra_fields = extra_fields;
            return Err(error);
        }
    }
    state.storage.add_device(device.clone()).await?;
    if let Ok(id) = ruma::UserId::parse(&user_id) {
        state
            .callbacks
            .account_validity
            .on_user_login(&id, Some(login_type), None)
            .await?;
    }
    Ok(Json(login_response(&state, &device)))
}

async fn logout(
    State(state): State<Arc<AppState>>,
    AuthAllowExpired(requester): AuthAllowExpired,
) -> ApiResult {
    state
        .storage
        .delete_device(&requester.user_id, &requester.device_id)
        .await?;
    logged_out(
        &state,
        &requester.user_id,
        &[(requester.device_id.clone(), requester.access_token.clone())],
    )
    .await;
    Ok(Json(json!({})))
}

async fn logout_all(
    State(state): State<Arc<AppState>>,
    AuthAllowExpired(requester): AuthAllowExpired,
) -> ApiResult {
    let devices = state.storage.delete_all_devices(&requester.user_id).await?;
    logged_out(&state, &requester.user_id, &devices).await;
    Ok(Json(json!({})))
}

/// `on_logged_out` for each device that was logged out.
async fn logged_out(state: &AppState, user: &str, devices: &[(String, String)]) {
    let Ok(user_id) = ruma::UserId::parse(user) else {
        return;
    };
    for (device, token) in devices {
        let device: &ruma::DeviceId = device.as_str().into();
        state
            .callbacks
            .password_auth_provider
            .on_logged_out(&user_id, Some(device), token)
            .await;
    }
}

async fn whoami(Auth(requester): Auth) -> ApiResult {
    Ok(Json(json!({
        "user_id": requester.user_id,
        "device_id": requester.device_id,
        "is_guest": false,
    })))
}

/// The third-party identifiers bound to the account (an admin binds them:
/// Axon has no identity-server validation flow).
async fn threepids(State(state): State<Arc<AppState>>, Auth(requester): Auth) -> ApiResult {
    let threepids = state.storage.threepids(&requester.user_id).await?;
    Ok(Json(json!({ "threepids": threepids })))
}

#[derive(Deserialize)]
struct DeactivateBody {
    #[serde(default)]
    auth: Option<Value>,
}

#[derive(Deserialize)]
struct PasswordAuth {
    #[serde(rename = "type")]
    auth_type: String,
    #[serde(default)]
    identifier: Option<Value>,
    #[serde(default)]
    user: Option<String>,
    password: String,
    #[serde(default)]
    session: Option<String>,
}

async fn deactivate(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<DeactivateBody>,
) -> ApiResult<Response> {
    let flows = json!([{ "stages": ["m.login.password"] }]);
    let Some(auth) = body.auth else {
        return Ok(uia_challenge(flows, &random_string(24), None));
    };
    let auth: PasswordAuth = parse_json(auth)?;
    let session = auth.session.clone().unwrap_or_default();
    if auth.auth_type != "m.login.password" {
        let error = MatrixError::new(401, ErrCode::Unrecognized, "Unrecognised auth type");
        return Ok(uia_challenge(flows, &session, Some(error)));
    }
    let claimed = auth
        .identifier
        .as_ref()
        .and_then(|i| i.get("user"))
        .and_then(|u| u.as_str())
        .map(str::to_string)
        .or(auth.user.clone())
        .map(|u| qualify(&state, &u))
        .unwrap_or_else(|| requester.user_id.clone());
    let row = state.storage.get_user(&requester.user_id).await?;
    let hash = row.and_then(|r| r.password_hash);
    let ok = claimed == requester.user_id
        && match hash {
            Some(hash) => verify_password(auth.password, hash).await,
            None => false,
        };
    if !ok {
        return Ok(uia_challenge(
            flows,
            &session,
            Some(MatrixError::forbidden("Invalid username or password")),
        ));
    }
    let rules = &state.callbacks.third_party_rules;
    let user_id = ruma::UserId::parse(&requester.user_id)
        .map_err(|e| MatrixError::internal(e.to_string()))?;
    if !rules.check_can_deactivate_user(&user_id, false).await {
        return Err(MatrixError::forbidden(
            "Deactivation of this user is forbidden",
        ));
    }
    deactivate_account(&state, &requester.user_id).await?;
    rules
        .on_user_deactivation_status_changed(&user_id, true, false)
        .await;
    let blanked = axon::callbacks::ProfileInfo {
        display_name: Some(String::new()),
        avatar_url: None,
    };
    rules
        .on_profile_update(&user_id, &blanked, false, true)
        .await;
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })).into_response())
}

/// Leaves every room, logs every device out and clears the profile.
pub(crate) async fn deactivate_account(state: &AppState, user_id: &str) -> Result<(), MatrixError> {
    for membership in state.storage.memberships(user_id).await? {
        if matches!(membership.membership.as_str(), "join" | "invite") {
            if let Err(e) = super::update_membership(
                state,
                &super::room_ops::Actor::user(user_id),
                user_id,
                &membership.room_id,
                "leave",
                None,
            )
            .await
            {
                tracing::warn!(
                    "deactivating {user_id}: cannot leave {}: {e}",
                    membership.room_id
                );
            }
        }
    }
    state.storage.deactivate_user(user_id).await?;
    Ok(())
}

// ---- shared-secret registration ----

const NONCE_LIFETIME: Duration = Duration::from_secs(60);

fn shared_secret(state: &AppState) -> Result<&str, MatrixError> {
    state
        .config
        .registration_shared_secret
        .as_deref()
        .ok_or_else(|| {
            MatrixError::new(
                400,
                ErrCode::Unknown,
                "Shared secret registration is not enabled",
            )
        })
}

async fn admin_register_nonce(State(state): State<Arc<AppState>>) -> ApiResult {
    shared_secret(&state)?;
    let nonce = random_string(32);
    let mut nonces = state
        .registration_nonces
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    nonces.retain(|_, expires| *expires > now);
    nonces.insert(nonce.clone(), now + NONCE_LIFETIME);
    Ok(Json(json!({ "nonce": nonce })))
}

#[derive(Deserialize)]
struct AdminRegisterBody {
    nonce: String,
    username: String,
    password: String,
    #[serde(default)]
    displayname: Option<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    user_type: Option<String>,
    mac: String,
}

async fn admin_register(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<AdminRegisterBody>,
) -> ApiResult {
    use hmac::{Hmac, Mac};
    let secret = shared_secret(&state)?.to_string();
    let fresh = {
        let mut nonces = state
            .registration_nonces
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        nonces
            .remove(&body.nonce)
            .is_some_and(|expires| expires > Instant::now())
    };
    if !fresh {
        return Err(MatrixError::new(
            400,
            ErrCode::Unknown,
            "unrecognised nonce",
        ));
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .map_err(|e| MatrixError::internal(e.to_string()))?;
    mac.update(body.nonce.as_bytes());
    mac.update(b"\x00");
    mac.update(body.username.as_bytes());
    mac.update(b"\x00");
    mac.update(body.password.as_bytes());
    mac.update(b"\x00");
    mac.update(if body.admin {
        b"admin" as &[u8]
    } else {
        b"notadmin"
    });
    if let Some(user_type) = &body.user_type {
        mac.update(b"\x00");
        mac.update(user_type.as_bytes());
    }
    let given = hex::decode(&body.mac).map_err(|_| MatrixError::forbidden("HMAC incorrect"))?;
    mac.verify_slice(&given)
        .map_err(|_| MatrixError::forbidden("HMAC incorrect"))?;
    let user_id = check_localpart(&state, &body.username.to_lowercase())?;
    let device = new_device(&user_id, None, None);
    let user = NewUser {
        user_id: user_id.clone(),
        password_hash: Some(hash_password(body.password).await?),
        admin: body.admin,
        shadow_banned: false,
        displayname: Some(body.displayname.unwrap_or_else(|| body.username.clone())),
        created_ts: now_ms(),
    };
    create_user(&state, user, Some(device.clone())).await?;
    Ok(Json(login_response(&state, &device)))
}
