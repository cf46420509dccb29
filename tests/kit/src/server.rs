//! A real homeserver on an ephemeral port with a temporary data directory,
//! and a small HTTP client for talking to it the way a Matrix client does.

use crate::SERVER_NAME;
use axon_server::config::HomeserverConfig;
use axon_server::RunningServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Rate limits high enough not to get in a test's way; tests of rate
/// limiting set their own.
const GENEROUS_LIMITS: &str = "
rc_message: {per_second: 1000, burst_count: 1000}
rc_registration: {per_second: 1000, burst_count: 1000}
rc_room_creation: {per_second: 1000, burst_count: 1000}
rc_presence:
  per_user: {per_second: 1000, burst_count: 1000}
rc_login:
  address: {per_second: 1000, burst_count: 1000}
  account: {per_second: 1000, burst_count: 1000}
  failed_attempts: {per_second: 1000, burst_count: 1000}
rc_joins:
  local: {per_second: 1000, burst_count: 1000}
  remote: {per_second: 1000, burst_count: 1000}
rc_federation: {window_size: 1000, sleep_limit: 1000, sleep_delay: 1, reject_limit: 1000, concurrent: 100}
rc_invites:
  per_room: {per_second: 1000, burst_count: 1000}
  per_user: {per_second: 1000, burst_count: 1000}
  per_issuer: {per_second: 1000, burst_count: 1000}
";

pub struct TestServer {
    pub base: String,
    /// The config it runs with, for restarting it on the same data.
    pub yaml: String,
    pub http: reqwest::Client,
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    /// The server's name, for a server this process does not run (Synapse).
    pub remote_name: Option<String>,
}

/// A registered user.
#[derive(Clone, Debug)]
pub struct User {
    pub user_id: String,
    pub token: String,
    pub device_id: String,
}

/// The config for a test server in `dir`; `extra` YAML is appended (later
/// keys win, so it can override the defaults above).
pub fn test_config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "server_name: {SERVER_NAME}
public_baseurl: http://127.0.0.1/
listeners:
  - port: 0
    bind_addresses: ['127.0.0.1']
database:
  name: sqlite3
  args:
    database: {db}
media_store_path: {media}
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: test-shared-secret
{GENEROUS_LIMITS}
{extra}
",
        db = dir.join("homeserver.db").display(),
        media = dir.join("media").display(),
    )
}

/// Starts a server on `yaml` that must refuse to start; the error's text.
pub async fn start_error(yaml: &str) -> String {
    let parsed = HomeserverConfig::parse(yaml).unwrap_or_else(|e| panic!("test config: {e:?}"));
    RunningServer::start(parsed.config)
        .await
        .err()
        .expect("startup fails")
        .to_string()
}

/// Merges two YAML documents, the second's top-level keys winning.
pub fn merged(base: &str, extra: &str) -> String {
    let mut doc: serde_yaml::Mapping = serde_yaml::from_str(base).expect("base YAML parses");
    if !extra.trim().is_empty() {
        let extra: serde_yaml::Mapping = serde_yaml::from_str(extra).expect("extra YAML parses");
        for (k, v) in extra {
            doc.insert(k, v);
        }
    }
    serde_yaml::to_string(&doc).expect("YAML serialises")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with("").await
    }

    /// Starts a server whose config is the test defaults with `extra` on top.
    pub async fn start_with(extra: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let yaml = merged(&test_config(dir.path(), ""), extra);
        let parsed =
            HomeserverConfig::parse(&yaml).unwrap_or_else(|e| panic!("test config: {e:?}"));
        let server = RunningServer::start(parsed.config)
            .await
            .unwrap_or_else(|e| panic!("server starts: {e}"));
        TestServer {
            base: server.base_url(),
            yaml,
            http: reqwest::Client::new(),
            server: Some(server),
            dir,
            remote_name: None,
        }
    }

    /// A client of a homeserver that runs elsewhere (Synapse), at `base`.
    pub fn remote(base: String, name: String) -> TestServer {
        TestServer {
            base,
            yaml: String::new(),
            http: reqwest::Client::new(),
            server: None,
            dir: tempfile::tempdir().expect("temporary directory"),
            remote_name: Some(name),
        }
    }

    /// The server's name (`test.local`, or `127.0.0.1:PORT` for one that
    /// federates).
    pub fn server_name(&self) -> String {
        if let Some(name) = &self.remote_name {
            return name.clone();
        }
        self.server
            .as_ref()
            .expect("the server runs")
            .homeserver
            .server_name()
            .to_string()
    }

    /// Stops the server and starts it again on the same data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let parsed =
            HomeserverConfig::parse(&self.yaml).unwrap_or_else(|e| panic!("test config: {e:?}"));
        let server = RunningServer::start(parsed.config)
            .await
            .unwrap_or_else(|e| panic!("server restarts: {e}"));
        self.base = server.base_url();
        self.server = Some(server);
    }

    /// Restarts on the same data with `extra` on top of the config, as an
    /// operator does after naming a room that now exists in the config.
    pub async fn restart_with(&mut self, extra: &str) {
        self.yaml = merged(&self.yaml, extra);
        self.restart().await;
    }

    /// Sends a request; returns the status and the JSON body (`Null` if none).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("/_") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/_matrix/client/v3{path}", self.base)
        };
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is sent");
        let status = response.status();
        let text = response.text().await.expect("body is read");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Sends a raw body (not JSON-encoded by the client).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("/_") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/_matrix/client/v3{path}", self.base)
        };
        let mut request = self.http.request(method, url).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request is sent");
        let status = response.status();
        let text = response.text().await.expect("body is read");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, Some(token), Some(body))
            .await
    }

    /// Registers `localpart` with password `password` through the two-step dummy flow.
    pub async fn register(&self, localpart: &str) -> User {
        let (status, body) = self
            .request(
                Method::POST,
                "/register",
                None,
                Some(json!({ "username": localpart, "password": "correct horse", "auth": { "type": "m.login.dummy" } })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "register {localpart}: {body}");
        User {
            user_id: body["user_id"].as_str().unwrap().to_string(),
            token: body["access_token"].as_str().unwrap().to_string(),
            device_id: body["device_id"].as_str().unwrap().to_string(),
        }
    }

    /// Creates a room as `user` with `body`; returns its ID.
    pub async fn create_room(&self, user: &User, body: Value) -> String {
        let (status, response) = self.post("/createRoom", &user.token, body).await;
        assert_eq!(status, StatusCode::OK, "createRoom: {response}");
        response["room_id"].as_str().unwrap().to_string()
    }

    pub async fn send_text(&self, user: &User, room: &str, text: &str) -> String {
        let txn = format!("t{}", rand_suffix());
        let (status, body) = self
            .put(
                &format!("/rooms/{}/send/m.room.message/{txn}", enc(room)),
                &user.token,
                json!({ "msgtype": "m.text", "body": text }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "send: {body}");
        body["event_id"].as_str().unwrap().to_string()
    }

    pub async fn join(&self, user: &User, room: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/rooms/{}/join", enc(room)),
            &user.token,
            json!({}),
        )
        .await
    }

    /// `user`'s `m.room.member` content in `room`, as `reader` reads it
    /// (a Matrix error body when there is none).
    pub async fn member(&self, reader: &User, room: &str, user: &str) -> Value {
        let path = format!("/rooms/{}/state/m.room.member/{}", enc(room), enc(user));
        self.get(&path, &reader.token).await.1
    }

    pub async fn invite(&self, inviter: &User, room: &str, invitee: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/rooms/{}/invite", enc(room)),
            &inviter.token,
            json!({ "user_id": invitee }),
        )
        .await
    }

    /// Stops the server gracefully.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// Percent-encodes a path segment (room IDs contain `!` and `:`).
pub fn enc(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A number not handed out before in this test process (for unique names and transaction IDs).
pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Asserts a Matrix error: status and errcode, and returns the body.
#[track_caller]
pub fn assert_error(response: &(StatusCode, Value), status: u16, errcode: &str) {
    assert_eq!(response.0.as_u16(), status, "status of {}", response.1);
    assert_eq!(response.1["errcode"], errcode, "errcode of {}", response.1);
    assert!(
        response.1["error"].is_string(),
        "error message in {}",
        response.1
    );
}

/// Registers a server admin through shared-secret registration.
pub async fn register_admin(s: &TestServer, name: &str) -> User {
    use hmac::{Hmac, Mac};
    let (_, nonce) = s
        .request(Method::GET, "/_synapse/admin/v1/register", None, None)
        .await;
    let nonce = nonce["nonce"].as_str().unwrap().to_string();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"test-shared-secret").unwrap();
    mac.update(format!("{nonce}\0{name}\0pw\0admin").as_bytes());
    let body = json!({ "nonce": nonce, "username": name, "password": "pw", "admin": true, "mac": hex::encode(mac.finalize().into_bytes()) });
    let (status, created) = s
        .request(
            Method::POST,
            "/_synapse/admin/v1/register",
            None,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    User {
        user_id: created["user_id"].as_str().unwrap().into(),
        token: created["access_token"].as_str().unwrap().into(),
        device_id: created["device_id"].as_str().unwrap().into(),
    }
}
