//! Generated requests against every route the server declares: JSON bodies
//! (well-formed, wrongly typed, garbage), identifiers and path segments,
//! query strings and tokens. Whatever comes in, the answer is never a 5xx
//! and never a dropped connection, and every error is a Matrix error body.
//!
//! The routes are read from the API's source, so a new route is fuzzed
//! without being listed here. It runs for `AXON_FUZZ_SECONDS` (default 15);
//! `AXON_FUZZ_SEED` replays a run (the seed is printed on failure).

use axon_testkit::*;
use std::time::{Duration, Instant};

/// The API sources whose `.route("…", get(…).put(…))` calls are fuzzed.
const SOURCES: &[&str] = &[
    include_str!("../../runtime/server/src/api/account.rs"),
    include_str!("../../runtime/server/src/api/admin.rs"),
    include_str!("../../runtime/server/src/api/directory.rs"),
    include_str!("../../runtime/server/src/api/media.rs"),
    include_str!("../../runtime/server/src/api/mod.rs"),
    include_str!("../../runtime/server/src/api/profile.rs"),
    include_str!("../../runtime/server/src/api/rooms.rs"),
    include_str!("../../runtime/server/src/api/status.rs"),
    include_str!("../../runtime/server/src/api/sync.rs"),
];

/// `(method, path template)` of every route in `source`; client API paths
/// (those not starting with `/_`) are served under `/_matrix/client/v3`.
fn routes(source: &str) -> Vec<(Method, String)> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let Some(open) = rest.find('"') else { break };
        if !rest[..open].trim().is_empty() {
            continue;
        }
        let Some(close) = rest[open + 1..].find('"') else {
            break;
        };
        let path = &rest[open + 1..open + 1 + close];
        // The handlers: up to the parenthesis closing `.route(`.
        let mut depth = 1;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = i;
                break;
            }
        }
        let handlers = &rest[..end];
        for (name, method) in [
            ("get(", Method::GET),
            ("post(", Method::POST),
            ("put(", Method::PUT),
            ("delete(", Method::DELETE),
        ] {
            let called = handlers.match_indices(name).any(|(i, _)| {
                let before = handlers[..i].chars().next_back();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if called {
                let full = if path.starts_with("/_") {
                    path.to_string()
                } else {
                    format!("/_matrix/client/v3{path}")
                };
                found.push((method, full));
            }
        }
    }
    found
}

/// A small deterministic generator (xorshift), so a seed replays a run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn text(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            "-",
            "_",
            ".",
            ":",
            "@",
            "!",
            "#",
            "$",
            "+",
            "=",
            "/",
            "?",
            "&",
            "%",
            "%00",
            "%2F",
            "%zz",
            " ",
            "\u{e9}",
            "\u{1F600}",
            "\u{202e}",
            "\\",
            "\"",
            "'",
            "..",
            "{",
            "}",
            "[",
            "]",
            "\t",
        ];
        let len = match self.below(10) {
            0 => 0,
            1 => 200 + self.below(3000),
            _ => 1 + self.below(24),
        };
        (0..len).map(|_| *self.pick(PIECES)).collect()
    }

    /// A path segment: a real identifier, a mangled one, or noise.
    fn segment(&mut self, real: &[String]) -> String {
        match self.below(4) {
            0 | 1 => {
                let id: &String = self.pick(real);
                enc(id)
            }
            2 => {
                let mut id = self.pick(real).clone();
                let cut = self.below(id.len() + 1);
                id.truncate(cut);
                id.push_str(&self.text());
                enc(&id)
            }
            _ => enc(&self.text()),
        }
    }

    fn json(&mut self, depth: usize) -> Value {
        const KEYS: &[&str] = &[
            "user_id",
            "room_id",
            "name",
            "topic",
            "visibility",
            "preset",
            "invite",
            "auth",
            "type",
            "identifier",
            "user",
            "password",
            "username",
            "device_id",
            "content",
            "msgtype",
            "body",
            "membership",
            "reason",
            "displayname",
            "avatar_url",
            "presence",
            "status_msg",
            "limit",
            "since",
            "filter",
            "room",
            "timeline",
            "initial_state",
            "state_key",
            "creation_content",
            "power_level_content_override",
            "room_version",
            "is_direct",
            "admin",
            "deactivated",
            "threepids",
            "nonce",
            "mac",
            "session",
            "inhibit_login",
            "initial_device_display_name",
            "search_term",
            "history_visibility",
            "join_rule",
            "users",
            "events",
            "ban",
            "erase",
        ];
        match self.below(if depth == 0 { 6 } else { 9 }) {
            0 => Value::Null,
            1 => json!(self.chance(50)),
            2 => json!(self.next() as i64 >> self.below(64)),
            3 => json!((self.next() as f64) / 7.0),
            4 | 5 => json!(self.text()),
            6 => Value::Array((0..self.below(4)).map(|_| self.json(depth - 1)).collect()),
            _ => {
                let mut object = serde_json::Map::new();
                for _ in 0..self.below(6) {
                    let key = if self.chance(80) {
                        self.pick(KEYS).to_string()
                    } else {
                        self.text()
                    };
                    object.insert(key, self.json(depth - 1));
                }
                Value::Object(object)
            }
        }
    }

    fn body(&mut self) -> Vec<u8> {
        match self.below(10) {
            0 => Vec::new(),
            1 => self.text().into_bytes(),
            2 => (0..self.below(64)).map(|_| self.next() as u8).collect(),
            _ => serde_json::to_vec(&self.json(4)).unwrap(),
        }
    }

    fn query(&mut self) -> String {
        const KEYS: &[&str] = &[
            "limit",
            "from",
            "to",
            "dir",
            "since",
            "timeout",
            "filter",
            "full_state",
            "set_presence",
            "membership",
            "not_membership",
            "server_name",
            "allow_remote",
            "access_token",
            "format",
            "user_id",
            "kind",
            "deactivated",
        ];
        // Long-poll timeouts are kept short: the run is bounded.
        const VALUES: &[&str] = &[
            "",
            "0",
            "-1",
            "1",
            "10",
            "50",
            "s0",
            "s-1",
            "s99999999999999999999",
            "p1",
            "p99999999999999999999",
            "b",
            "f",
            "x",
            "true",
            "false",
            "{}",
            "{\"room\":5}",
            "%zz",
            "%00",
            "1e3",
            "online",
            "bogus",
        ];
        let mut pairs = Vec::new();
        for _ in 0..self.below(4) {
            let key = *self.pick(KEYS);
            let value = if self.chance(70) || key == "timeout" {
                self.pick(VALUES).to_string()
            } else {
                enc(&self.text())
            };
            pairs.push(format!("{key}={value}"));
        }
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }
}

/// The path template filled in: `{name}` segments (and `{*rest}`) replaced.
fn fill(template: &str, g: &mut Gen, ids: &[String]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&g.segment(ids));
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn generated_requests_never_get_a_server_error() {
    let seconds: u64 = std::env::var("AXON_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let seed: u64 = std::env::var("AXON_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(1, |d| d.as_nanos() as u64) | 1
        });
    let mut routes: Vec<(Method, String)> = SOURCES.iter().flat_map(|s| routes(s)).collect();
    routes.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
    routes.dedup();
    assert!(
        routes.len() >= 50,
        "routes read from the source: {routes:?}"
    );

    let s = TestServer::start().await;
    let mut admin = register_admin(&s, "fuzzer").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&admin, json!({ "preset": "public_chat" }))
        .await;
    let event = s.send_text(&admin, &room, "hello").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();

    let mut g = Gen(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0u64;
    let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
    while Instant::now() < deadline {
        let ids = vec![
            room.clone(),
            event.clone(),
            admin.user_id.clone(),
            bob.user_id.clone(),
            "#alias:test.local".to_string(),
            "test.local".to_string(),
            "m.room.message".to_string(),
            "m.room.name".to_string(),
            "0".to_string(),
        ];
        let (mut method, template) = g.pick(&routes).clone();
        if g.chance(5) {
            method = g
                .pick(&[
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                    Method::PATCH,
                ])
                .clone();
        }
        let path = format!("{}{}", fill(&template, &mut g, &ids), g.query());
        let body = g.body();
        // Logging out the fuzzer's own session would only test 401s.
        let token = match g.below(10) {
            0 => None,
            1 => Some(g.text()),
            _ if template.contains("/logout") => Some("not-a-token".to_string()),
            _ => Some(admin.token.clone()),
        };
        let mut request = http
            .request(method.clone(), format!("{}{path}", s.base))
            .body(body.clone());
        if let Some(token) = &token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let replay = || {
            format!(
                "{method} {path}\nbody: {}\nseed: AXON_FUZZ_SEED={seed}",
                String::from_utf8_lossy(&body)
            )
        };
        let response = match request.send().await {
            Ok(response) => response,
            // A header value the client itself refuses to send.
            Err(e) if e.is_builder() => continue,
            Err(e) => panic!("no answer ({e}) to\n{}", replay()),
        };
        let status = response.status();
        let media = response
            .headers()
            .get("content-type")
            .is_some_and(|t| !t.as_bytes().starts_with(b"application/json"));
        let text = response.text().await.unwrap_or_default();
        sent += 1;
        *by_status.entry(status.as_u16()).or_default() += 1;
        // A 502 with a Matrix error is the answer about another server
        // that is not there (a fuzzed user ID names one), as in Synapse.
        let remote_failure = status == reqwest::StatusCode::BAD_GATEWAY
            && serde_json::from_str::<Value>(&text).is_ok_and(|e| e["errcode"].is_string());
        assert!(
            !status.is_server_error() || remote_failure,
            "{status} {text}\nfor {}",
            replay()
        );
        if status.is_client_error() && !media {
            let error: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{status} is not JSON: {text}\nfor {}", replay()));
            let errcode = error["errcode"].as_str().unwrap_or_default();
            // A user-interactive auth challenge is a 401 with its flows.
            let challenge = status == StatusCode::UNAUTHORIZED && error["flows"].is_array();
            assert!(
                challenge || (errcode.starts_with("M_") && error["error"].is_string()),
                "{status} {text} is not a Matrix error\nfor {}",
                replay()
            );
        }
        // A generated request may have deactivated or demoted the fuzzer.
        if sent.is_multiple_of(50)
            && s.get("/account/whoami", &admin.token).await.0 != StatusCode::OK
        {
            admin = register_admin(&s, &format!("fuzzer{sent}")).await;
        }
    }
    eprintln!(
        "fuzz: {sent} requests over {} routes in {seconds} s (seed {seed}), by status: {by_status:?}",
        routes.len()
    );
    assert!(sent > 100, "only {sent} requests in {seconds} s");
}
