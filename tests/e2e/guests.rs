//! Guest access: `POST /register?kind=guest` with `allow_guest_access`,
//! what guests may and may not do, and upgrading a guest to a full account.

use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn register_guest(s: &TestServer) -> (StatusCode, Value) {
    s.request(
        Method::POST,
        "/register?kind=guest",
        None,
        Some(json!({ "initial_device_display_name": "Guest browser" })),
    )
    .await
}

#[tokio::test]
async fn guest_access_is_off_by_default() {
    let s = TestServer::start().await;
    let refused = register_guest(&s).await;
    assert_error(&refused, 403, "M_GUEST_ACCESS_FORBIDDEN");
    assert_eq!(refused.1["error"], "Guest access is disabled");
    assert_error(
        &s.request(Method::POST, "/register?kind=robot", None, Some(json!({})))
            .await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn guests_read_and_talk_only_where_guests_are_admitted() {
    let s = TestServer::start_with("allow_guest_access: true").await;
    let alice = s.register("alice").await;
    let (status, guest) = register_guest(&s).await;
    assert_eq!(status, StatusCode::OK, "{guest}");
    let guest_id = guest["user_id"].as_str().unwrap();
    let localpart = guest_id.trim_start_matches('@').split(':').next().unwrap();
    assert!(localpart.chars().all(|c| c.is_ascii_digit()), "{guest_id}");
    let token = guest["access_token"].as_str().unwrap();
    let (_, whoami) = s.get("/account/whoami", token).await;
    assert_eq!(whoami["is_guest"], true);

    let open = s
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "initial_state": [
                { "type": "m.room.guest_access", "state_key": "", "content": { "guest_access": "can_join" } }
            ] }),
        )
        .await;
    let closed = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    let (status, body) = s
        .post(&format!("/rooms/{}/join", enc(&open)), token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = s
        .put(
            &format!("/rooms/{}/send/m.room.message/g1", enc(&open)),
            token,
            json!({ "msgtype": "m.text", "body": "hello from a guest" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, synced) = s.get("/sync", token).await;
    assert!(synced["rooms"]["join"].get(&open).is_some(), "{synced}");

    // A room that does not admit guests, and what only full users may do.
    let refused = s
        .post(&format!("/rooms/{}/join", enc(&closed)), token, json!({}))
        .await;
    assert_error(&refused, 403, "M_GUEST_ACCESS_FORBIDDEN");
    for (method, path, body) in [
        (Method::POST, "/createRoom".to_string(), json!({})),
        (
            Method::PUT,
            format!("/user/{}/account_data/org.example", enc(guest_id)),
            json!({}),
        ),
        (
            Method::POST,
            format!("/rooms/{}/invite", enc(&open)),
            json!({ "user_id": alice.user_id }),
        ),
        (Method::GET, "/pushers".to_string(), Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let refused = s.request(method.clone(), &path, Some(token), body).await;
        assert_error(&refused, 403, "M_GUEST_ACCESS_FORBIDDEN");
    }
    // Leaving is allowed.
    let (status, _) = s
        .post(&format!("/rooms/{}/leave", enc(&open)), token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_guest_becomes_a_full_user_keeping_their_id() {
    let s = TestServer::start_with("allow_guest_access: true").await;
    let (_, guest) = register_guest(&s).await;
    let guest_id = guest["user_id"].as_str().unwrap().to_string();
    let localpart = guest_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let guest_token = guest["access_token"].as_str().unwrap().to_string();

    // Someone else's name is not theirs to take.
    let refused = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "guest_access_token": guest_token, "username": "mallory", "password": "pw" })),
        )
        .await;
    assert_error(&refused, 403, "M_FORBIDDEN");

    let (status, upgraded) = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "guest_access_token": guest_token, "username": localpart, "password": "correct horse" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{upgraded}");
    assert_eq!(upgraded["user_id"], guest_id);
    let token = upgraded["access_token"].as_str().unwrap();
    let (_, whoami) = s.get("/account/whoami", token).await;
    assert_eq!(whoami["is_guest"], false);
    // Full users may create rooms; the password logs in.
    let (status, _) = s.post("/createRoom", token, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .request(
            Method::POST,
            "/login",
            None,
            Some(json!({ "type": "m.login.password", "user": guest_id, "password": "correct horse" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The old guest token now acts as the full user too; upgrading twice fails.
    let again = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "guest_access_token": guest_token, "password": "x" })),
        )
        .await;
    assert_error(&again, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn guests_get_turn_credentials_unless_turn_allow_guests_is_off() {
    for (allowed, expected) in [("true", 200), ("false", 403)] {
        let s = TestServer::start_with(&format!(
            "allow_guest_access: true
turn_uris: ['turn:turn.example.org']
turn_shared_secret: s3cret
turn_allow_guests: {allowed}"
        ))
        .await;
        let (_, guest) = register_guest(&s).await;
        let answer = s
            .get("/voip/turnServer", guest["access_token"].as_str().unwrap())
            .await;
        assert_eq!(answer.0.as_u16(), expected, "{}", answer.1);
        if expected == 403 {
            assert_error(&answer, 403, "M_GUEST_ACCESS_FORBIDDEN");
        }
    }
}
