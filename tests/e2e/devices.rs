//! Devices: listed, renamed, and deleted behind user-interactive auth whose
//! session holds across steps and is bound to its operation.

use axon_testkit::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn login(s: &TestServer, user: &str, device_name: &str) -> (String, String) {
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user },
        "password": "correct horse",
        "initial_device_display_name": device_name,
    });
    let (status, body) = s.request(Method::POST, "/login", None, Some(body)).await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["device_id"].as_str().unwrap().to_string(),
    )
}

fn password(session: Option<&str>, password: &str) -> Value {
    let mut auth = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": "alice" },
        "password": password,
    });
    if let Some(session) = session {
        auth["session"] = json!(session);
    }
    auth
}

#[tokio::test]
async fn devices_are_listed_and_renamed() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (_, phone) = login(&s, "alice", "Phone").await;
    let (status, list) = s.get("/devices", &alice.token).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&alice.device_id.as_str()) && ids.contains(&phone.as_str()),
        "{list}"
    );
    let path = format!("/devices/{}", enc(&phone));
    let (_, device) = s.get(&path, &alice.token).await;
    assert_eq!(device["display_name"], "Phone");
    assert_eq!(
        s.put(&path, &alice.token, json!({ "display_name": "Old phone" }))
            .await
            .0,
        200
    );
    assert_eq!(
        s.get(&path, &alice.token).await.1["display_name"],
        "Old phone"
    );
    assert_error(
        &s.get("/devices/NOPE", &alice.token).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.put(
            "/devices/NOPE",
            &alice.token,
            json!({ "display_name": "x" }),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    // Another user's device is not Alice's to see.
    let bob = s.register("bob").await;
    assert_error(&s.get(&path, &bob.token).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn deleting_a_device_takes_the_password_in_the_same_session() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (phone_token, phone) = login(&s, "alice", "Phone").await;
    let path = format!("/devices/{}", enc(&phone));
    let (status, challenge) = s
        .request(Method::DELETE, &path, Some(&alice.token), Some(json!({})))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge["flows"],
        json!([{ "stages": ["m.login.password"] }])
    );
    assert!(challenge.get("errcode").is_none(), "{challenge}");
    let session = challenge["session"].as_str().unwrap().to_string();
    // A wrong password: the same session, with the error.
    let wrong = json!({ "auth": password(Some(&session), "wrong") });
    let (status, again) = s
        .request(Method::DELETE, &path, Some(&alice.token), Some(wrong))
        .await;
    assert_eq!(
        (status.as_u16(), again["errcode"].as_str()),
        (401, Some("M_FORBIDDEN"))
    );
    assert_eq!(again["session"], session);
    assert_eq!(s.get("/account/whoami", &phone_token).await.0, 200);
    // The session cannot authorise another operation.
    let other =
        json!({ "devices": [alice.device_id], "auth": password(Some(&session), "correct horse") });
    assert_error(
        &s.post("/delete_devices", &alice.token, other).await,
        403,
        "M_FORBIDDEN",
    );
    let right = json!({ "auth": password(Some(&session), "correct horse") });
    let (status, body) = s
        .request(Method::DELETE, &path, Some(&alice.token), Some(right))
        .await;
    assert_eq!((status.as_u16(), &body), (200, &json!({})));
    assert_error(
        &s.get("/account/whoami", &phone_token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(&s.get(&path, &alice.token).await, 404, "M_NOT_FOUND");
    // A finished session is gone.
    let reuse = json!({ "auth": password(Some(&session), "correct horse") });
    assert_error(
        &s.request(
            Method::DELETE,
            &format!("/devices/{}", enc(&alice.device_id)),
            Some(&alice.token),
            Some(reuse),
        )
        .await,
        400,
        "M_UNKNOWN",
    );
}

#[tokio::test]
async fn several_devices_go_in_one_authenticated_request() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (a_token, a) = login(&s, "alice", "A").await;
    let (b_token, b) = login(&s, "alice", "B").await;
    let body = json!({ "devices": [a, b], "auth": password(None, "correct horse") });
    let (status, _) = s.post("/delete_devices", &alice.token, body).await;
    assert_eq!(status, 200);
    for token in [a_token, b_token] {
        assert_error(
            &s.get("/account/whoami", &token).await,
            401,
            "M_UNKNOWN_TOKEN",
        );
    }
    assert_eq!(s.get("/account/whoami", &alice.token).await.0, 200);
}

#[tokio::test]
async fn changing_the_password_logs_out_the_other_devices_unless_asked_not_to() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (phone_token, _) = login(&s, "alice", "Phone").await;
    let (_, caps) = s.get("/capabilities", &alice.token).await;
    assert_eq!(caps["capabilities"]["m.change_password"]["enabled"], true);
    let (status, challenge) = s
        .post(
            "/account/password",
            &alice.token,
            json!({ "new_password": "battery staple" }),
        )
        .await;
    assert_eq!(status, 401);
    let session = challenge["session"].as_str().unwrap();
    // The session began for one new password: it does not change another.
    let other = json!({ "new_password": "something else", "auth": password(Some(session), "correct horse") });
    assert_error(
        &s.post("/account/password", &alice.token, other).await,
        403,
        "M_FORBIDDEN",
    );
    let body = json!({ "new_password": "battery staple", "auth": password(Some(session), "correct horse") });
    let (status, _) = s.post("/account/password", &alice.token, body).await;
    assert_eq!(status, 200);
    assert_eq!(
        s.get("/account/whoami", &alice.token).await.0,
        200,
        "this device stays"
    );
    assert_error(
        &s.get("/account/whoami", &phone_token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    // The old password no longer logs in; the new one does.
    let old = json!({ "type": "m.login.password", "user": "alice", "password": "correct horse" });
    assert_error(
        &s.request(Method::POST, "/login", None, Some(old)).await,
        403,
        "M_FORBIDDEN",
    );
    // Kept devices, when asked.
    let new = json!({ "type": "m.login.password", "user": "alice", "password": "battery staple" });
    let (_, tablet) = s.request(Method::POST, "/login", None, Some(new)).await;
    let tablet = tablet["access_token"].as_str().unwrap().to_string();
    let auth = json!({
        "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" },
        "password": "battery staple",
    });
    let body = json!({ "new_password": "third", "logout_devices": false, "auth": auth });
    assert_eq!(s.post("/account/password", &alice.token, body).await.0, 200);
    assert_eq!(s.get("/account/whoami", &tablet).await.0, 200);
}
