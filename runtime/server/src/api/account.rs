//! Registration, login, logout, whoami, deactivation, and Synapse's
//! shared-secret registration (`/_synapse/admin/v1/register`).

use super::extract::{ApiQuery, Auth, AuthAllowExpired, ClientAddr, JsonBody};
use super::{parse_json, ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::{random_string, Actor, LoginRequest, Registration};
use crate::storage::NewDevice;
use axon::callbacks::RequestInfo;
use axon::ErrCode;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::Digest;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/register", post(register))
        .route("/register/available", get(register_available))
        .route("/login", get(login_flows).post(login))
        .route("/logout", post(logout))
        .route("/logout/all", post(logout_all))
        .route("/account/whoami", get(whoami))
        .route("/account/3pid", get(threepids))
        .route("/account/deactivate", post(deactivate))
        .route("/account/password", post(change_password))
}

pub fn admin_routes() -> Router<Arc<Homeserver>> {
    Router::new().route(
        "/_synapse/admin/v1/register",
        get(admin_register_nonce).post(admin_register),
    )
}

/// The JSON a login or registration answers with.
fn login_response(hs: &Homeserver, device: &NewDevice) -> Value {
    json!({
        "user_id": device.user_id,
        "access_token": device.access_token,
        "device_id": device.device_id,
        "home_server": hs.server_name(),
    })
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
    State(hs): State<Arc<Homeserver>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<RegisterQuery>,
    JsonBody(raw): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    let client = request_info(&headers, addr);
    match query.kind.as_deref() {
        None | Some("user") => {}
        Some("guest") => {
            let name = raw
                .get("initial_device_display_name")
                .and_then(Value::as_str)
                .map(str::to_string);
            let outcome = hs.register_guest(&client, name).await?;
            let device = outcome
                .device
                .ok_or_else(|| MatrixError::internal("a guest has a device"))?;
            return Ok(Json(login_response(&hs, &device)).into_response());
        }
        Some(other) => {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("Invalid kind {other:?}: expected user or guest"),
            ))
        }
    }
    if let Some(Value::String(token)) = raw.get("guest_access_token") {
        let outcome = hs
            .upgrade_guest(
                token.clone(),
                raw.get("username").and_then(Value::as_str),
                raw.get("password")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                raw.get("initial_device_display_name")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            )
            .await?;
        let device = outcome
            .device
            .ok_or_else(|| MatrixError::internal("an upgraded guest has a device"))?;
        return Ok(Json(login_response(&hs, &device)).into_response());
    }
    let session_id = raw
        .get("auth")
        .and_then(|a| a.get("session"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let session = session_id
        .as_deref()
        .and_then(|id| hs.registration_sessions.get(id));
    // A later step may leave out what the first one gave.
    let mut raw = raw;
    if let Some(session) = &session {
        for (key, value) in &session.params {
            raw.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    let mut body: RegisterBody = parse_json(Value::Object(raw.clone()))?;
    // As Synapse: `Dave` registers `@dave`.
    body.username = body.username.map(|u| u.to_lowercase());
    let flows = json!([{ "stages": ["m.login.dummy"] }]);
    // The last step again, after it registered: a new login, not an error.
    if let Some(user) = session.as_ref().and_then(|s| s.registered.clone()) {
        let device = hs
            .register_device(&user, body.device_id, body.initial_device_display_name)
            .await?;
        return Ok(Json(login_response(&hs, &device)).into_response());
    }
    hs.check_registration(&client, body.username.as_deref(), body.password.as_deref())
        .await?;
    // User-interactive auth: one stage, m.login.dummy.
    let mut params = raw;
    params.remove("auth");
    let Some(auth) = &body.auth else {
        let session = hs.registration_sessions.begin(params);
        return Ok(uia_challenge(flows, &session, None));
    };
    let session = match session_id {
        Some(id) if session.is_some() => id,
        _ => hs.registration_sessions.begin(params.clone()),
    };
    if auth.get("type").and_then(|t| t.as_str()) != Some("m.login.dummy") {
        let error = MatrixError::new(401, ErrCode::Unrecognized, "Unrecognised auth type");
        return Ok(uia_challenge(flows, &session, Some(error)));
    }
    let mut uia_results = Map::new();
    uia_results.insert("m.login.dummy".into(), json!(true));
    let registration = Registration {
        username: body.username,
        password: body.password,
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        inhibit_login: body.inhibit_login,
        uia_results,
        params,
        client: Some(client),
    };
    let outcome = hs.register(registration).await?;
    hs.registration_sessions
        .registered(&session, outcome.user_id.clone());
    Ok(Json(match outcome.device {
        Some(device) => login_response(&hs, &device),
        None => json!({ "user_id": outcome.user_id, "home_server": hs.server_name() }),
    })
    .into_response())
}

#[derive(Deserialize)]
struct AvailableQuery {
    username: String,
}

async fn register_available(
    State(hs): State<Arc<Homeserver>>,
    ApiQuery(q): ApiQuery<AvailableQuery>,
) -> ApiResult {
    hs.available_user_id(&q.username).await?;
    Ok(Json(json!({ "available": true })))
}

async fn login_flows(State(hs): State<Arc<Homeserver>>) -> Json<Value> {
    let mut flows = Vec::new();
    if hs.config.password_config.enabled {
        flows.push(json!({ "type": "m.login.password" }));
    }
    for login_type in hs.login_types.keys() {
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

/// The user a login names, as the client supplied it (maybe a localpart);
/// `None` for a third-party identifier.
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

async fn login(
    State(hs): State<Arc<Homeserver>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    JsonBody(raw): JsonBody<Map<String, Value>>,
) -> ApiResult {
    let body: LoginBody = parse_json(Value::Object(raw.clone()))?;
    let user = if body.login_type == "m.login.password" {
        supplied_user(&body)?
    } else {
        supplied_user(&body).ok().flatten()
    };
    let thirdparty = body.identifier.as_ref().map(|identifier| {
        let field = |name: &str| {
            identifier
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        (field("medium"), field("address"))
    });
    let request = LoginRequest {
        login_type: body.login_type,
        user,
        thirdparty,
        password: body.password,
        body: raw,
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        client: request_info(&headers, addr),
    };
    let device = hs.login(request).await?;
    Ok(Json(login_response(&hs, &device)))
}

async fn logout(
    State(hs): State<Arc<Homeserver>>,
    AuthAllowExpired(requester): AuthAllowExpired,
) -> ApiResult {
    hs.logout(&requester).await?;
    Ok(Json(json!({})))
}

async fn logout_all(
    State(hs): State<Arc<Homeserver>>,
    AuthAllowExpired(requester): AuthAllowExpired,
) -> ApiResult {
    hs.logout_all(&requester.user_id).await?;
    Ok(Json(json!({})))
}

async fn whoami(Auth(requester): Auth) -> ApiResult {
    Ok(Json(json!({
        "user_id": requester.user_id,
        "device_id": requester.device_id,
        "is_guest": requester.is_guest,
    })))
}

/// The third-party identifiers bound to the account (an admin binds them:
/// Axon has no identity-server validation flow).
async fn threepids(State(hs): State<Arc<Homeserver>>, Auth(requester): Auth) -> ApiResult {
    let threepids = hs.storage.threepids(&requester.user_id).await?;
    Ok(Json(json!({ "threepids": threepids })))
}

#[derive(Deserialize)]
struct DeactivateBody {
    #[serde(default)]
    auth: Option<Value>,
    /// Hide the user's messages from those who join later (the spec's
    /// `erase`, Synapse's GDPR erasure).
    #[serde(default)]
    erase: bool,
}

async fn deactivate(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<DeactivateBody>,
) -> ApiResult<Response> {
    let auth = body.auth.map(parse_json).transpose()?;
    let operation = format!("deactivate erase={}", body.erase);
    if let Err(refusal) = hs
        .user_interactive_auth(&requester.user_id, operation, auth)
        .await
    {
        return Ok(uia_refused(refusal));
    }
    hs.deactivate(&Actor::client(&requester), &requester.user_id, body.erase)
        .await?;
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })).into_response())
}

#[derive(Deserialize)]
struct PasswordBody {
    #[serde(default)]
    auth: Option<Value>,
    new_password: String,
    #[serde(default = "yes")]
    logout_devices: bool,
}

fn yes() -> bool {
    true
}

async fn change_password(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Response> {
    let auth = body.auth.map(parse_json).transpose()?;
    // The session is bound to the request, the new password included.
    let operation = format!(
        "password {} logout={}",
        sha2::Sha256::digest(body.new_password.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        body.logout_devices
    );
    if let Err(refusal) = hs
        .user_interactive_auth(&requester.user_id, operation, auth)
        .await
    {
        return Ok(uia_refused(refusal));
    }
    hs.change_password(&requester, body.new_password, body.logout_devices)
        .await?;
    Ok(Json(json!({})).into_response())
}

/// What a request behind user-interactive auth answers when it may not go
/// ahead yet: the 401 challenge, or the error.
pub(super) fn uia_refused(refusal: crate::service::uia::UiaRefusal) -> Response {
    match refusal {
        crate::service::uia::UiaRefusal::Challenge(challenge) => {
            (StatusCode::UNAUTHORIZED, Json(challenge.body())).into_response()
        }
        crate::service::uia::UiaRefusal::Error(e) => e.into_response(),
    }
}

// ---- shared-secret registration ----

const NONCE_LIFETIME: Duration = Duration::from_secs(60);

fn shared_secret(hs: &Homeserver) -> Result<&str, MatrixError> {
    hs.config
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

async fn admin_register_nonce(State(hs): State<Arc<Homeserver>>) -> ApiResult {
    shared_secret(&hs)?;
    let nonce = random_string(32);
    let mut nonces = hs
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
    State(hs): State<Arc<Homeserver>>,
    JsonBody(body): JsonBody<AdminRegisterBody>,
) -> ApiResult {
    use hmac::{Hmac, Mac};
    let secret = shared_secret(&hs)?.to_string();
    let fresh = {
        let mut nonces = hs
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
    let displayname = body.displayname.unwrap_or_else(|| body.username.clone());
    let outcome = hs
        .register_user(
            &body.username.to_lowercase(),
            Some(body.password),
            Some(displayname),
            body.admin,
            true,
        )
        .await?;
    let device = outcome
        .device
        .ok_or_else(|| MatrixError::internal("the new user has no device"))?;
    Ok(Json(login_response(&hs, &device)))
}
