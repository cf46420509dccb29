//! User-interactive authentication for operations on an account (deleting
//! devices, deactivation): the flows offered are the password and each
//! login type a module declared; a session is bound to its user and to
//! the request it began with, so a completed stage cannot authorise a
//! different operation.

use super::MatrixError;
use crate::homeserver::Homeserver;
use axon::callbacks::JsonObject;
use axon::ErrCode;
use ruma::{OwnedUserId, UserId};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a session lives after it began.
const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);

struct UiaSession {
    user: OwnedUserId,
    /// What the session authorises: the operation and its request.
    operation: String,
    completed: Vec<String>,
    began: Instant,
}

/// Sessions in progress.
#[derive(Default)]
pub struct UiaSessions(Mutex<HashMap<String, UiaSession>>);

impl UiaSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UiaSession>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request that needs (more) authentication: answered with 401 and the
/// flows, the session and what is completed, plus the error of a failed
/// attempt.
#[derive(Debug)]
pub struct UiaChallenge {
    pub flows: Vec<Vec<String>>,
    pub session: String,
    pub completed: Vec<String>,
    pub error: Option<MatrixError>,
}

impl UiaChallenge {
    pub fn body(&self) -> Value {
        let mut body = match &self.error {
            Some(e) => e.body(),
            None => json!({}),
        };
        let flows: Vec<Value> = self
            .flows
            .iter()
            .map(|stages| json!({ "stages": stages }))
            .collect();
        body["flows"] = json!(flows);
        body["params"] = json!({});
        body["session"] = json!(self.session);
        if !self.completed.is_empty() {
            body["completed"] = json!(self.completed);
        }
        body
    }
}

/// Why an authenticated operation did not go ahead.
#[derive(Debug)]
pub enum UiaRefusal {
    Challenge(UiaChallenge),
    Error(MatrixError),
}

impl From<MatrixError> for UiaRefusal {
    fn from(e: MatrixError) -> Self {
        UiaRefusal::Error(e)
    }
}

impl Homeserver {
    /// The flows a user can complete: the password (when local passwords
    /// are on) and each module login type, one stage each.
    fn uia_flows(&self) -> Vec<Vec<String>> {
        let mut flows = Vec::new();
        if self.config.password_config.enabled {
            flows.push(vec!["m.login.password".to_string()]);
        }
        for login_type in self.login_types.keys() {
            if login_type != "m.login.password" {
                flows.push(vec![login_type.clone()]);
            }
        }
        flows
    }

    /// Checks `auth` for `operation` (a description of the request that
    /// must stay the same across the session's steps) by `user`: `Ok` once
    /// a flow is complete (the session then ends), else the challenge.
    pub async fn user_interactive_auth(
        &self,
        user: &UserId,
        operation: String,
        auth: Option<JsonObject>,
    ) -> Result<(), UiaRefusal> {
        let flows = self.uia_flows();
        let challenge = |session: &str, completed: Vec<String>, error| {
            UiaRefusal::Challenge(UiaChallenge {
                flows: flows.clone(),
                session: session.to_string(),
                completed,
                error,
            })
        };
        let session_id = auth
            .as_ref()
            .and_then(|a| a.get("session"))
            .and_then(Value::as_str)
            .map(str::to_string);
        // A new session, or the one the client names.
        let session_id = {
            let mut sessions = self.uia_sessions.lock();
            sessions.retain(|_, s| s.began.elapsed() < SESSION_LIFETIME);
            match session_id {
                Some(id) => match sessions.get(&id) {
                    Some(s) if s.user != user => {
                        return Err(
                            MatrixError::forbidden("This session belongs to another user").into(),
                        )
                    }
                    Some(s) if s.operation != operation => {
                        return Err(MatrixError::forbidden(
                            "Requested operation has changed during the UI authentication session.",
                        )
                        .into())
                    }
                    Some(_) => id,
                    None => {
                        return Err(
                            MatrixError::new(400, ErrCode::Unknown, "Unknown session ID").into(),
                        )
                    }
                },
                None => {
                    let id = super::random_string(24);
                    sessions.insert(
                        id.clone(),
                        UiaSession {
                            user: user.to_owned(),
                            operation,
                            completed: Vec::new(),
                            began: Instant::now(),
                        },
                    );
                    id
                }
            }
        };
        let completed = |hs: &Homeserver| {
            hs.uia_sessions
                .lock()
                .get(&session_id)
                .map(|s| s.completed.clone())
                .unwrap_or_default()
        };
        let Some(auth) = auth else {
            return Err(challenge(&session_id, completed(self), None));
        };
        let stage = auth
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !flows.iter().any(|f| f.contains(&stage)) {
            let error = MatrixError::new(401, ErrCode::Unrecognized, "Unrecognised auth type");
            return Err(challenge(&session_id, completed(self), Some(error)));
        }
        if !self.uia_stage_passes(user, &stage, &auth).await? {
            let error = MatrixError::forbidden("Invalid username or password");
            return Err(challenge(&session_id, completed(self), Some(error)));
        }
        let done = {
            let mut sessions = self.uia_sessions.lock();
            let Some(session) = sessions.get_mut(&session_id) else {
                return Err(MatrixError::new(400, ErrCode::Unknown, "Unknown session ID").into());
            };
            if !session.completed.contains(&stage) {
                session.completed.push(stage);
            }
            let done = flows
                .iter()
                .any(|f| f.iter().all(|s| session.completed.contains(s)));
            if done {
                sessions.remove(&session_id);
            }
            done
        };
        if done {
            Ok(())
        } else {
            Err(challenge(&session_id, completed(self), None))
        }
    }

    /// One stage: the user's password, or a module's login type for them.
    async fn uia_stage_passes(
        &self,
        user: &UserId,
        stage: &str,
        auth: &JsonObject,
    ) -> Result<bool, MatrixError> {
        let claimed = auth
            .get("identifier")
            .and_then(|i| i.get("user"))
            .or_else(|| auth.get("user"))
            .and_then(Value::as_str)
            .map(|u| self.qualify(u))
            .unwrap_or_else(|| user.to_string());
        if claimed != user.as_str() {
            return Ok(false);
        }
        if stage == "m.login.password" {
            let Some(password) = auth.get("password").and_then(Value::as_str) else {
                return Ok(false);
            };
            return self.check_password(user, password.to_string()).await;
        }
        let found = self.module_login(stage, user.localpart(), auth).await?;
        Ok(found.as_deref() == Some(user))
    }
}

/// A registration in progress: the parameters its first request gave
/// (later steps may leave them out, as Synapse allows), and the user it
/// created, so that repeating the last step logs in again rather than
/// failing on a taken name.
#[derive(Clone, Default)]
pub struct RegistrationSession {
    pub params: JsonObject,
    pub registered: Option<OwnedUserId>,
    began: Option<Instant>,
}

/// Registrations in progress, by session ID.
#[derive(Default)]
pub struct RegistrationSessions(Mutex<HashMap<String, RegistrationSession>>);

impl RegistrationSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RegistrationSession>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session with the first request's parameters.
    pub fn begin(&self, params: JsonObject) -> String {
        let id = super::random_string(24);
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.began.is_some_and(|b| b.elapsed() < SESSION_LIFETIME));
        sessions.insert(
            id.clone(),
            RegistrationSession {
                params,
                registered: None,
                began: Some(Instant::now()),
            },
        );
        id
    }

    pub fn get(&self, id: &str) -> Option<RegistrationSession> {
        self.lock().get(id).cloned()
    }

    pub fn registered(&self, id: &str, user: OwnedUserId) {
        if let Some(session) = self.lock().get_mut(id) {
            session.registered = Some(user);
        }
    }
}
