//! The admin status page, `GET /_axon/admin/modules`: JSON for tools, and
//! HTML rendered by a real browser (headless Chromium) for people.

use axon_testkit::rules::rules;
use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PAGE: &str = "/_axon/admin/modules";

/// Two modules; the first panics on invites. Alice creates a room and
/// invites Bob once.
async fn after_a_known_sequence() -> (TestServer, User) {
    let s = TestServer::start_with(&format!(
        "enable_metrics: true\nmodules:\n{}  - module: axon_demo::DemoModule\n    config: {{blocked_user: '@nobody:test.local'}}\n",
        rules("status", "a", &[("user_may_invite", "panic")])
    ))
    .await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    assert_eq!(
        s.invite(&alice, &room, "@bob:test.local").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    (s, admin)
}

/// `GET` the page as JSON, as an admin.
async fn status_json(s: &TestServer, admin: &User) -> (StatusCode, Value) {
    s.request(
        Method::GET,
        &format!("{PAGE}?format=json"),
        Some(&admin.token),
        None,
    )
    .await
}

fn callback<'a>(module: &'a Value, name: &str) -> &'a Value {
    module["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["callback"] == name)
        .unwrap_or_else(|| panic!("{name} in {module}"))
}

#[tokio::test]
async fn json_lists_modules_in_order_with_their_callbacks_counts_and_last_failure() {
    let (s, admin) = after_a_known_sequence().await;
    let (status, body) = status_json(&s, &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["metrics_enabled"], true);
    let modules = body["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 2);
    assert_eq!(modules[0]["index"], 0);
    assert_eq!(modules[0]["path"], "test.Rules");
    assert_eq!(modules[1]["index"], 1);
    assert_eq!(modules[1]["path"], "axon_demo::DemoModule");
    assert_eq!(modules[1]["crate"], "axon_demo");
    assert_eq!(modules[1]["status"], "stable");

    let create = callback(&modules[1], "spam_checker.user_may_create_room");
    assert_eq!(create["calls"], 1);
    assert_eq!(create["denials"], 0);
    assert_eq!(create["last_failure"], Value::Null);

    let invite = callback(&modules[0], "spam_checker.user_may_invite");
    assert_eq!(invite["calls"], 1);
    assert_eq!(
        invite["failures"],
        json!({ "error": 0, "panic": 1, "timeout": 0 })
    );
    let failure = &invite["last_failure"];
    assert!(failure["at"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("panicked: a panics in user_may_invite"),
        "{failure}"
    );

    // Tools may also ask by Accept header.
    let response = s
        .http
        .get(format!("{}{PAGE}", s.base))
        .bearer_auth(&admin.token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap()["modules"][1]["path"],
        "axon_demo::DemoModule"
    );
}

#[tokio::test]
async fn without_enable_metrics_failures_are_counted_but_calls_are_not() {
    let s = TestServer::start_with(&format!(
        "modules:\n{}",
        rules("status-off", "a", &[("user_may_invite", "panic")])
    ))
    .await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    s.invite(&alice, &room, "@bob:test.local").await;
    let (_, body) = status_json(&s, &admin).await;
    assert_eq!(body["metrics_enabled"], false);
    let invite = callback(&body["modules"][0], "spam_checker.user_may_invite");
    assert_eq!(invite["calls"], Value::Null);
    assert_eq!(invite["p50_ms"], Value::Null);
    assert_eq!(invite["failures"]["panic"], 1);
    assert!(invite["last_failure"]["error"].is_string());
}

#[tokio::test]
async fn latencies_are_reported_with_enable_metrics() {
    let s = TestServer::start_with(
        "enable_metrics: true\nmodules:\n  - module: axon_demo::DemoModule\n    config: {blocked_user: '@nobody:test.local'}\n",
    )
    .await;
    let admin = register_admin(&s, "root").await;
    s.create_room(&admin, json!({})).await;
    let alice = s.register("alice").await;
    s.create_room(&alice, json!({})).await;
    let (_, body) = status_json(&s, &admin).await;
    let create = callback(&body["modules"][0], "spam_checker.user_may_create_room");
    // Server admins skip the spam checks, so one call.
    assert_eq!(create["calls"], 1, "{body}");
    let p50 = create["p50_ms"].as_f64().unwrap();
    let p99 = create["p99_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99 && p99 < 1000.0, "{p50} {p99}");
}

#[tokio::test]
async fn only_server_admins_may_look() {
    let (s, _) = after_a_known_sequence().await;
    let alice = s.register("carol").await;
    let refused = s.request(Method::GET, PAGE, Some(&alice.token), None).await;
    assert_error(&refused, 403, "M_FORBIDDEN");
    assert_eq!(refused.1["error"], "You are not a server admin");
    assert_error(
        &s.request(Method::GET, PAGE, None, None).await,
        401,
        "M_MISSING_TOKEN",
    );
}

/// Debian's Chromium, which `.ci/run` installs.
fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

#[tokio::test]
async fn a_browser_renders_the_page() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have Chromium: .ci/run installs Debian's `chromium`"
        );
        eprintln!("skipped: no Chromium here (apt-get install chromium; .ci/run does)");
        return;
    };
    let (s, admin) = after_a_known_sequence().await;
    let (_, status) = status_json(&s, &admin).await;
    let registered: usize = status["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["callbacks"].as_array().unwrap().len())
        .sum();
    let url = format!("{}{PAGE}?access_token={}", s.base, admin.token);
    let profile = tempfile::tempdir().unwrap();
    let args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.path().display()),
        "--dump-dom".into(),
        url,
    ];
    // On a blocking thread: the server answers on this test's runtime.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(browser).args(&args).output()
    })
    .await
    .unwrap()
    .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Written by the page's script, so only a browser that ran it shows it.
    let summary = format!("2 modules loaded, {registered} callbacks registered, 1 failures");
    assert!(dom.contains(&summary), "{summary} in {dom}");
    assert!(dom.contains("modules[0] <code>test.Rules</code>"), "{dom}");
    assert!(
        dom.contains("modules[1] <code>axon_demo::DemoModule</code>"),
        "{dom}"
    );
    assert!(
        dom.contains("panicked: a panics in user_may_invite"),
        "{dom}"
    );
    // The failure time, turned from milliseconds into an ISO date by the script.
    let time = dom
        .split("<time data-ts=\"")
        .nth(1)
        .and_then(|rest| rest.split_once("\">"))
        .map(|(_, text)| text.chars().take(24).collect::<String>())
        .unwrap_or_default();
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999Z", "{time}");
}
