//! Where each device was last seen (Synapse's `client_ips`): the address
//! and user agent of its requests, for `GET /devices` and whois.

use super::{MatrixError, Requester};
use crate::homeserver::Homeserver;
use crate::storage::ClientConnection;
use axon::ErrCode;
use ruma::UserId;
use serde_json::{json, Map, Value};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// A device's sighting is written at most this often per address and user
/// agent (Synapse's `LAST_SEEN_GRANULARITY`): a busy client costs one write
/// every two minutes, not one per request.
const GRANULARITY_MS: i64 = 120_000;

/// Sightings this process has written recently, by a hash of what was seen.
#[derive(Default)]
pub struct ClientIps {
    written: Mutex<HashMap<u64, i64>>,
}

impl ClientIps {
    /// Whether a sighting with this hash at `now` is worth writing.
    fn due(&self, key: u64, now: i64) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written
            .get(&key)
            .is_some_and(|last| now - last < GRANULARITY_MS)
        {
            return false;
        }
        if written.len() >= 100_000 {
            written.retain(|_, last| now - *last < GRANULARITY_MS);
        }
        written.insert(key, now);
        true
    }
}

impl Homeserver {
    /// Notes that `requester` made a request from `ip` with `user_agent`;
    /// the write happens in the background and never delays the request.
    pub fn saw_client(
        self: &std::sync::Arc<Self>,
        requester: &Requester,
        ip: std::net::IpAddr,
        user_agent: &str,
    ) {
        let now = axon::time::now_ms();
        let mut hasher = DefaultHasher::new();
        (&requester.user_id, &requester.device_id, &ip, &user_agent).hash(&mut hasher);
        if !self.client_ips.due(hasher.finish(), now) {
            return;
        }
        let hs = self.clone();
        let user_id = requester.user_id.clone();
        // Allocated only for the sightings written, not for every request.
        let seen = ClientConnection {
            device_id: requester.device_id.clone(),
            ip: ip.to_string(),
            user_agent: user_agent.to_string(),
            last_seen: now,
        };
        tokio::spawn(async move {
            if let Err(e) = hs.storage.record_client_ip(seen, &user_id).await {
                tracing::warn!("could not record where {user_id} was seen: {e}");
            }
        });
    }

    /// Whois (`GET /_synapse/admin/v1/whois/{userId}` and the client's
    /// `GET /admin/whois/{userId}`): a server admin may ask about anyone,
    /// other users only about themselves. Connections are grouped under
    /// their real device IDs (Synapse puts them all under `""`).
    pub async fn whois(
        &self,
        requester: &Requester,
        user_id: &UserId,
    ) -> Result<Value, MatrixError> {
        if !requester.admin && requester.user_id != user_id {
            return Err(MatrixError::new(
                403,
                ErrCode::Forbidden,
                "You are not a server admin",
            ));
        }
        if user_id.server_name() != self.server_name {
            return Err(MatrixError::new(
                400,
                ErrCode::Unknown,
                "Can only whois a local user",
            ));
        }
        if self.storage.get_user(user_id).await?.is_none() {
            return Err(MatrixError::new(404, ErrCode::NotFound, "User not found"));
        }
        let mut devices: Map<String, Value> = Map::new();
        for device in self.storage.devices_of(user_id).await? {
            devices.insert(
                device.device_id.to_string(),
                json!({ "sessions": [{ "connections": [] }] }),
            );
        }
        for seen in self.storage.client_connections(user_id).await? {
            if let Some(connections) = devices
                .get_mut(seen.device_id.as_str())
                .and_then(|d| d["sessions"][0]["connections"].as_array_mut())
            {
                connections.push(json!({
                    "ip": seen.ip,
                    "last_seen": seen.last_seen,
                    "user_agent": seen.user_agent,
                }));
            }
        }
        Ok(json!({ "user_id": user_id, "devices": devices }))
    }
}
