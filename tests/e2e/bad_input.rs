//! Bad input gets a Matrix error with the right status, never a 500, and
//! leaves stored data as it was.

use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn malformed_json_and_wrong_types() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let not_json = s
        .raw(
            Method::POST,
            "/createRoom",
            Some(&alice.token),
            "{\"name\": ",
        )
        .await;
    assert_eq!(not_json.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        not_json.1,
        json!({ "errcode": "M_NOT_JSON", "error": "Content not JSON." })
    );
    assert_error(
        &s.raw(Method::POST, "/createRoom", Some(&alice.token), "[1, 2]")
            .await,
        400,
        "M_BAD_JSON",
    );
    let wrong_type = s
        .post("/createRoom", &alice.token, json!({ "name": 5 }))
        .await;
    assert_error(&wrong_type, 400, "M_BAD_JSON");
    assert_eq!(
        wrong_type.1["error"],
        "name: invalid type: integer `5`, expected a string"
    );
    assert_error(
        &s.post("/login", "x", json!({ "type": 3 })).await,
        400,
        "M_BAD_JSON",
    );
    // A message whose content is not an object.
    let room = s.create_room(&alice, json!({})).await;
    let send = s
        .raw(
            Method::PUT,
            &format!("/rooms/{}/send/m.room.message/x", enc(&room)),
            Some(&alice.token),
            "\"text\"",
        )
        .await;
    assert_error(&send, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let s = TestServer::start().await;
    let unknown = s
        .request(Method::GET, "/no/such/endpoint", None, None)
        .await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.1,
        json!({ "errcode": "M_UNRECOGNIZED", "error": "Unrecognized request" })
    );
    assert_error(
        &s.request(Method::GET, "/_matrix/nothing", None, None).await,
        404,
        "M_UNRECOGNIZED",
    );
    let wrong_method = s.request(Method::DELETE, "/createRoom", None, None).await;
    assert_error(&wrong_method, 405, "M_UNRECOGNIZED");
    assert_error(
        &s.request(Method::PATCH, "/_matrix/client/versions", None, None)
            .await,
        405,
        "M_UNRECOGNIZED",
    );
}

#[tokio::test]
async fn missing_and_unknown_tokens() {
    let s = TestServer::start().await;
    let missing = s.request(Method::GET, "/account/whoami", None, None).await;
    assert_error(&missing, 401, "M_MISSING_TOKEN");
    let unknown = s
        .request(Method::GET, "/account/whoami", Some("syt_nope"), None)
        .await;
    assert_error(&unknown, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(unknown.1["soft_logout"], false);
    // The token may also come as a query parameter.
    let alice = s.register("alice").await;
    let (status, body) = s
        .request(
            Method::GET,
            &format!("/account/whoami?access_token={}", alice.token),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, body["user_id"].as_str()),
        (StatusCode::OK, Some(alice.user_id.as_str()))
    );
}

#[tokio::test]
async fn bodies_over_the_limit() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    assert_error(
        &s.raw(Method::POST, "/createRoom", Some(&alice.token), huge)
            .await,
        413,
        "M_TOO_LARGE",
    );
    // An event larger than the spec's 64 KiB.
    let room = s.create_room(&alice, json!({})).await;
    let big = s
        .put(
            &format!("/rooms/{}/send/m.room.message/big", enc(&room)),
            &alice.token,
            json!({ "body": "x".repeat(70_000) }),
        )
        .await;
    assert_error(&big, 413, "M_TOO_LARGE");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let s = TestServer::start_with("rc_message: {per_second: 0.5, burst_count: 3}").await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    for i in 0..3 {
        let (status, _) = s
            .put(
                &format!("/rooms/{}/send/m.room.message/r{i}", enc(&room)),
                &alice.token,
                json!({ "body": "x" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let limited = s
        .put(
            &format!("/rooms/{}/send/m.room.message/r3", enc(&room)),
            &alice.token,
            json!({ "body": "x" }),
        )
        .await;
    assert_error(&limited, 429, "M_LIMIT_EXCEEDED");
    let retry = limited.1["retry_after_ms"].as_u64().unwrap();
    assert!(retry > 0 && retry <= 2000, "{retry}");

    let s = TestServer::start_with("rc_registration: {per_second: 0.1, burst_count: 1}").await;
    s.register("first").await;
    let second = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "username": "second", "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_error(&second, 429, "M_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn bad_input_leaves_the_data_as_it_was() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({ "name": "kept" })).await;
    s.send_text(&alice, &room, "one").await;
    let before = s
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=50", enc(&room)),
            &alice.token,
        )
        .await
        .1;
    let bad_requests = [
        s.raw(
            Method::PUT,
            &format!("/rooms/{}/state/m.room.name/", enc(&room)),
            Some(&alice.token),
            "{oops",
        )
        .await,
        s.raw(
            Method::PUT,
            &format!("/rooms/{}/send/m.room.message/q", enc(&room)),
            Some(&alice.token),
            "42",
        )
        .await,
        s.post(
            &format!("/rooms/{}/invite", enc(&room)),
            &alice.token,
            json!({ "user_id": "not a user" }),
        )
        .await,
        s.post(
            &format!("/rooms/{}/kick", enc(&room)),
            &alice.token,
            json!({}),
        )
        .await,
        s.put(
            &format!("/rooms/{}/state/m.room.create/", enc(&room)),
            &alice.token,
            json!({}),
        )
        .await,
        s.post("/createRoom", &alice.token, json!({ "invite": ["@bad"] }))
            .await,
        s.post("/createRoom", &alice.token, json!({ "preset": "weird" }))
            .await,
    ];
    for response in &bad_requests {
        assert!(response.0.is_client_error(), "{response:?}");
        assert!(
            response.1["errcode"].as_str().unwrap().starts_with("M_"),
            "{response:?}"
        );
    }
    let after = s
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=50", enc(&room)),
            &alice.token,
        )
        .await
        .1;
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&before),
        ids(&after),
        "no event was added by the bad requests"
    );
    let (_, rooms) = s.get("/joined_rooms", &alice.token).await;
    assert_eq!(rooms["joined_rooms"], json!([room]), "no half-created room");
}
