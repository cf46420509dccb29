//! Web resources (paths, conflicts, serving) and start/stop hooks.

use axon_testkit::log::*;
use axon_testkit::scripted::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn hooked(log: &str, name: &str, extra: &str) -> String {
    format!("  - module: test.Hooked\n    config: {{log: {log}, name: {name}{extra}}}\n")
}

async fn get(router: &axum::Router, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_resource_is_served_at_its_path() {
    let yaml = format!(
        "modules:\n{}",
        hooked("web", "a", ", web: [[/_synapse/client/a/hello, hi from a]]")
    );
    let loaded = load(&yaml).unwrap();
    let router = loaded.web.router();
    assert_eq!(
        get(&router, "/_synapse/client/a/hello").await,
        (StatusCode::OK, "hi from a".into())
    );
    assert_eq!(
        get(&router, "/_synapse/client/a/other").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_first_module_in_config_order_keeps_a_contested_path() {
    let yaml = format!(
        "modules:\n{}{}",
        hooked("web2", "a", ", web: [[/_synapse/client/shared, from a]]"),
        hooked(
            "web2",
            "b",
            ", web: [[/_synapse/client/shared, from b], [/_synapse/client/b, only b]]"
        ),
    );
    let loaded = load(&yaml).unwrap();
    assert_eq!(
        loaded.warnings,
        ["modules[1] (`test.Hooked`): web resource `/_synapse/client/shared` is ignored: modules[0] (`test.Hooked`) registered it first"]
    );
    let router = loaded.web.router();
    assert_eq!(get(&router, "/_synapse/client/shared").await.1, "from a");
    assert_eq!(get(&router, "/_synapse/client/b").await.1, "only b");
    let served: Vec<(String, usize)> = loaded
        .web
        .paths()
        .map(|(p, m)| (p.to_string(), m.index))
        .collect();
    assert_eq!(
        served,
        [
            ("/_synapse/client/shared".to_string(), 0),
            ("/_synapse/client/b".to_string(), 1)
        ]
    );
}

#[test]
fn paths_under_matrix_are_refused_at_startup() {
    let yaml = format!(
        "modules:\n{}{}",
        hooked("web3", "a", ", web: [[/_matrix/client/v3/mine, no]]"),
        hooked("web3", "b", ", web: [[/_matrix, no]]"),
    );
    assert_eq!(
        load_errors(&yaml),
        [
            "module `test.Hooked` at `modules[0]`: web resource path `/_matrix/client/v3/mine` is under `/_matrix`, which belongs to the Matrix APIs; use `/_synapse/client/<module>/…`",
            "module `test.Hooked` at `modules[1]`: web resource path `/_matrix` is under `/_matrix`, which belongs to the Matrix APIs; use `/_synapse/client/<module>/…`",
        ]
    );
    // `/_matrixish` is not under `/_matrix`.
    assert!(load(&format!(
        "modules:\n{}",
        hooked("web3", "c", ", web: [[/_matrixish, ok]]")
    ))
    .is_ok());
}

#[test]
fn relative_and_unroutable_paths_are_refused() {
    let yaml = format!(
        "modules:\n{}{}",
        hooked("web4", "a", ", web: [[relative/path, no]]"),
        hooked("web4", "b", ", web: [['/_synapse/{broken', no]]"),
    );
    assert_eq!(
        load_errors(&yaml),
        [
            "module `test.Hooked` at `modules[0]`: web resource path `relative/path` must start with `/`, such as `/_synapse/client/my_module`",
            "module `test.Hooked` at `modules[1]`: web resource path `/_synapse/{broken` cannot be routed (invalid, or overlapping another module's resource)",
        ]
    );
}

#[tokio::test]
async fn start_hooks_run_in_config_order_and_stop_hooks_in_reverse() {
    let yaml = format!(
        "modules:\n{}{}{}",
        hooked("life", "a", ""),
        hooked("life", "b", ""),
        hooked("life", "c", "")
    );
    let mut loaded = load(&yaml).unwrap();
    assert!(calls("life").is_empty(), "nothing starts before start()");
    loaded.start().await.unwrap();
    loaded.stop().await;
    assert_eq!(
        calls("life"),
        ["a:start", "b:start", "c:start", "c:stop", "b:stop", "a:stop"]
    );
}

#[tokio::test]
async fn a_failing_start_hook_stops_the_started_modules_in_reverse() {
    for (start, message) in [
        ("error", "start failed: b cannot reach its database"),
        ("panic", "start failed: panicked: b panics at start"),
    ] {
        let log = format!("life-{start}");
        let yaml = format!(
            "modules:\n{}{}{}",
            hooked(&log, "a", ""),
            hooked(&log, "b", &format!(", start: {start}")),
            hooked(&log, "c", "")
        );
        let mut loaded = load(&yaml).unwrap();
        let errors = loaded.start().await.unwrap_err();
        assert_eq!(
            errors.to_string(),
            format!("1 error in the modules config:\n  - module `test.Hooked` at `modules[1]`: {message}")
        );
        assert_eq!(calls(&log), ["a:start", "b:start", "a:stop"], "{start}");
    }
}
