//! `GET /metrics` (Prometheus text format) after a known sequence of
//! requests: per module and callback (calls, denials, failures by kind,
//! latency), and per HTTP endpoint.

use axon_testkit::rules::{modules, rules};
use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A server whose second listener serves only metrics.
pub(crate) async fn with_metrics_listener(extra: &str) -> (TestServer, String) {
    let s = TestServer::start_with(&format!(
        "enable_metrics: true\nlisteners:\n  - port: 0\n    bind_addresses: ['127.0.0.1']\n  - port: 0\n    type: metrics\n    bind_addresses: ['127.0.0.1']\n{extra}"
    ))
    .await;
    let metrics = format!("http://{}", s.server.as_ref().unwrap().addrs[1]);
    (s, metrics)
}

pub(crate) async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    response.text().await.unwrap()
}

/// The value of the sample named `name` with exactly `labels`.
pub(crate) fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn callbacks_are_counted_by_outcome_and_timed() {
    let (s, metrics) = with_metrics_listener(&modules(&[rules(
        "metrics",
        "a",
        &[
            ("user_may_invite", "panic"),
            ("user_may_join_room", "hang"),
            ("user_may_create_room_alias", "deny"),
            ("user_may_publish_room", "error"),
        ],
    )]))
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(s.invite(&alice, &room, &bob.user_id).await.0, 500);
    assert!(s.join(&bob, &room).await.0.is_server_error());
    let alias = s
        .put(
            &format!("/directory/room/{}", enc("#x:test.local")),
            &alice.token,
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(alias.0, StatusCode::FORBIDDEN);
    let publish = s
        .put(
            &format!("/directory/list/room/{}", enc(&room)),
            &alice.token,
            json!({ "visibility": "public" }),
        )
        .await;
    assert_eq!(publish.0.as_u16(), 418);

    let text = scrape(&format!("{metrics}/metrics")).await;
    let labels =
        |callback: &str| format!("module=\"test.Rules\",callback=\"spam_checker.{callback}\"");
    let calls =
        |callback: &str| sample(&text, "axon_module_callback_calls_total", &labels(callback));
    assert_eq!(calls("user_may_create_room"), Some(1.0), "{text}");
    assert_eq!(calls("user_may_invite"), Some(1.0));
    assert_eq!(calls("user_may_join_room"), Some(1.0));
    assert_eq!(calls("user_may_create_room_alias"), Some(1.0));
    assert_eq!(calls("user_may_publish_room"), Some(1.0));
    assert_eq!(
        calls("check_event_for_spam"),
        Some(0.0),
        "registered, never called"
    );
    let denials = |callback: &str| {
        sample(
            &text,
            "axon_module_callback_denials_total",
            &labels(callback),
        )
    };
    assert_eq!(denials("user_may_create_room_alias"), Some(1.0));
    assert_eq!(denials("user_may_create_room"), Some(0.0));
    let failures = |callback: &str, kind: &str| {
        sample(
            &text,
            "axon_module_callback_failures_total",
            &format!("{},kind=\"{kind}\"", labels(callback)),
        )
    };
    assert_eq!(failures("user_may_invite", "panic"), Some(1.0));
    assert_eq!(failures("user_may_invite", "error"), Some(0.0));
    assert_eq!(failures("user_may_join_room", "timeout"), Some(1.0));
    assert_eq!(failures("user_may_publish_room", "error"), Some(1.0));
    let timed = sample(
        &text,
        "axon_module_callback_duration_seconds_count",
        &labels("user_may_join_room"),
    );
    assert_eq!(timed, Some(1.0));
    let hung_for = sample(
        &text,
        "axon_module_callback_duration_seconds_sum",
        &labels("user_may_join_room"),
    )
    .unwrap();
    assert!(
        (0.3..5.0).contains(&hung_for),
        "until its 300 ms timeout: {hung_for}"
    );

    let requests = |endpoint: &str, status: u16| {
        sample(
            &text,
            "axon_http_requests_total",
            &format!("method=\"POST\",endpoint=\"{endpoint}\",status=\"{status}\""),
        )
    };
    assert_eq!(
        requests("/_matrix/client/v3/createRoom", 200),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        requests("/_matrix/client/v3/register", 200),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        requests("/_matrix/client/v3/rooms/{room}/invite", 500),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "axon_http_request_duration_seconds_count",
            "method=\"POST\",endpoint=\"/_matrix/client/v3/createRoom\""
        ),
        Some(1.0)
    );
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn the_metrics_resource_rides_on_an_http_listener_and_only_when_named() {
    let s = TestServer::start_with(
        "enable_metrics: true\nlisteners:\n  - port: 0\n    bind_addresses: ['127.0.0.1']\n    resources: [{names: [client, metrics]}]\n",
    )
    .await;
    s.register("alice").await;
    let text = scrape(&format!("{}/_synapse/metrics", s.base)).await;
    assert!(text.contains("# TYPE axon_http_requests counter"), "{text}");

    let plain = TestServer::start_with("enable_metrics: true\n").await;
    let (status, body) = plain
        .request(Method::GET, "/_synapse/metrics", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errcode"], "M_UNRECOGNIZED");
}

#[test]
fn a_metrics_listener_needs_enable_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = test_config(dir.path(), "").replace(
        "listeners:\n  - port: 0\n",
        "listeners:\n  - port: 0\n    type: metrics\n",
    );
    let problems = axon_server::config::HomeserverConfig::parse(&yaml).unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.contains(
            &"at `listeners[0]`: this listener serves metrics, which needs `enable_metrics: true`"
                .to_string()
        ),
        "{text:?}"
    );
}
