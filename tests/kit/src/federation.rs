//! Servers that federate on loopback: each named `127.0.0.1:PORT`, with a
//! TLS federation listener on that port holding a certificate from one
//! test CA, which every server trusts (`federation_custom_ca_list`), and
//! loopback allowed (`federation_ip_range_blacklist: []`).

use crate::tls::{free_port, TestCa};
use crate::{enc, StatusCode, TestServer, User};
use serde_json::Value;

pub struct Federation {
    pub ca: TestCa,
    /// Holds the CA and the certificates.
    _dir: tempfile::TempDir,
    issued: std::sync::atomic::AtomicUsize,
}

impl Default for Federation {
    fn default() -> Self {
        Self::new()
    }
}

impl Federation {
    pub fn new() -> Federation {
        let dir = tempfile::tempdir().expect("temporary directory");
        Federation {
            ca: TestCa::new(dir.path()),
            _dir: dir,
            issued: Default::default(),
        }
    }

    /// The config of an Axon server of this federation on `port`, with
    /// `extra` YAML on top.
    pub fn axon_config(&self, port: u16, extra: &str) -> String {
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let issued = self.ca.issue(&format!("axon{n}"));
        let base = format!(
            "server_name: '127.0.0.1:{port}'
listeners:
  - port: 0
    bind_addresses: ['127.0.0.1']
  - port: {port}
    tls: true
    bind_addresses: ['127.0.0.1']
    resources: [{{names: [federation]}}]
tls_certificate_path: {cert}
tls_private_key_path: {key}
federation_custom_ca_list: [{ca}]
federation_ip_range_blacklist: []",
            cert = issued.certificate.display(),
            key = issued.key.display(),
            ca = self.ca.certificate.display(),
        );
        crate::merged(&base, extra)
    }

    /// An Axon server of this federation.
    pub async fn axon(&self, extra: &str) -> TestServer {
        TestServer::start_with(&self.axon_config(free_port(), extra)).await
    }
}

/// Where to look when a peer did not do what a test waited for.
fn logs_hint() -> String {
    match crate::synapse::started() {
        Some(synapse) => format!("Synapse's log: {}", synapse.log_tail()),
        None => String::new(),
    }
}

/// Waits until `user` on `s` sees a message with `body` in `room`; the
/// bodies of the room's messages, oldest first, at that moment.
pub async fn wait_for_message(s: &TestServer, user: &User, room: &str, body: &str) -> Vec<String> {
    let path = format!("/rooms/{}/messages?dir=b&limit=100", enc(room));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, page) = s.get(&path, &user.token).await;
        let mut bodies: Vec<String> = page["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.room.message")
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_string))
            .collect();
        bodies.reverse();
        if status == StatusCode::OK && bodies.iter().any(|b| b == body) {
            return bodies;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never saw {body:?} in {room} ({status} {page})\n{}",
            user.user_id,
            logs_hint()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Waits until `user` on `s` reads `event_type` state in `room` as `expected`.
pub async fn wait_for_state(
    s: &TestServer,
    user: &User,
    room: &str,
    event_type: &str,
    key: &str,
    expected: &Value,
) {
    let path = format!("/rooms/{}/state/{event_type}/{}", enc(room), enc(key));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, content) = s.get(&path, &user.token).await;
        if status == StatusCode::OK && content == *expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never read {event_type} as {expected} in {room} ({status} {content})\n{}",
            user.user_id,
            logs_hint()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Waits until `user` on `s` reads `target`'s membership in `room` as `expected`.
pub async fn wait_for_membership(
    s: &TestServer,
    user: &User,
    room: &str,
    target: &str,
    expected: &str,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let member = s.member(user, room, target).await;
        if member["membership"] == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never read {target} as {expected} in {room}: {member}\n{}",
            user.user_id,
            logs_hint()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Syncs `user` on `s` (from now on, incrementally) until a response
/// satisfies `found`; that response.
pub async fn wait_for_sync(
    s: &TestServer,
    user: &User,
    what: &str,
    found: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut since: Option<String> = None;
    loop {
        let path = match &since {
            Some(token) => format!("/sync?timeout=1000&since={}", enc(token)),
            None => "/sync?timeout=0".to_string(),
        };
        let (status, body) = s.get(&path, &user.token).await;
        if status == StatusCode::OK && found(&body) {
            return body;
        }
        if let Some(next) = body["next_batch"].as_str() {
            since = Some(next.to_string());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never saw {what} ({status} {body})\n{}",
            user.user_id,
            logs_hint()
        );
    }
}
