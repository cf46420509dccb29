//! TURN credentials for VoIP calls (`GET /voip/turnServer`), as Synapse
//! hands them out.

use super::{MatrixError, Requester};
use crate::homeserver::Homeserver;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

impl Homeserver {
    /// The TURN servers and credentials for `requester`: with a shared
    /// secret, a user name `expiry:user_id` and its HMAC-SHA1 (the TURN REST
    /// API coturn checks, padded base64 as TURN servers compute it); else the
    /// configured user name and password; `{}` when no TURN server is
    /// configured, as Synapse answers (clients then call without TURN).
    pub async fn turn_credentials(&self, requester: &Requester) -> Result<Value, MatrixError> {
        let config = &self.config;
        if requester.is_guest && !config.turn_allow_guests {
            return Err(super::guests::guest_forbidden());
        }
        let lifetime = config.turn_user_lifetime.0;
        if config.turn_uris.is_empty() || lifetime.is_zero() {
            return Ok(json!({}));
        }
        let secret = match (&config.turn_shared_secret, &config.turn_shared_secret_path) {
            (Some(secret), _) => Some(secret.clone()),
            (None, Some(path)) => Some(
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| {
                        MatrixError::internal(format!("cannot read turn_shared_secret_path: {e}"))
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let (username, password) = match (secret, &config.turn_username, &config.turn_password) {
            (Some(secret), _, _) => {
                let expiry = (axon::time::now_ms() + lifetime.as_millis() as i64) / 1000;
                let username = format!("{expiry}:{}", requester.user_id);
                let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
                    .map_err(|e| MatrixError::internal(e.to_string()))?;
                mac.update(username.as_bytes());
                (username, STANDARD.encode(mac.finalize().into_bytes()))
            }
            (None, Some(username), Some(password)) => (username.clone(), password.clone()),
            _ => return Ok(json!({})),
        };
        Ok(json!({
            "username": username,
            "password": password,
            "ttl": lifetime.as_secs(),
            "uris": config.turn_uris,
        }))
    }
}
