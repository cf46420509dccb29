//! Pushers and notifications: `POST /pushers/set`, `GET /pushers`, HTTP
//! pushes to a real push gateway the test runs, retries, rejection, the
//! address blocklist, and `GET /notifications`.

use axon_testkit::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the gateway answers to its next request.
#[derive(Clone, Copy)]
enum Reply {
    Accept,
    Fail,
    Reject,
}

/// A push gateway on 127.0.0.1 recording every notify request.
struct Gateway {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Gateway {
    async fn start(script: &[Reply]) -> Gateway {
        use axum::routing::post;
        let received: Arc<Mutex<Vec<Value>>> = Default::default();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (r, sc) = (received.clone(), script.clone());
        let app = axum::Router::new().route(
            "/_matrix/push/v1/notify",
            post(move |axum::Json(body): axum::Json<Value>| {
                let (r, sc) = (r.clone(), sc.clone());
                async move {
                    let pushkey = body["notification"]["devices"][0]["pushkey"].clone();
                    r.lock().unwrap().push(body);
                    match sc.lock().unwrap().pop_front().unwrap_or(Reply::Accept) {
                        Reply::Accept => (
                            axum::http::StatusCode::OK,
                            axum::Json(json!({ "rejected": [] })),
                        ),
                        Reply::Fail => (
                            axum::http::StatusCode::BAD_GATEWAY,
                            axum::Json(json!({ "error": "upstream down" })),
                        ),
                        Reply::Reject => (
                            axum::http::StatusCode::OK,
                            axum::Json(json!({ "rejected": [pushkey] })),
                        ),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Gateway {
            url: format!("http://{addr}/_matrix/push/v1/notify"),
            received,
            script,
        }
    }

    /// The requests received, once there are at least `n` (within 10 s).
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..500 {
            {
                let got = self.received.lock().unwrap();
                if got.len() >= n {
                    return got.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the gateway got {} of {n} pushes",
            self.received.lock().unwrap().len()
        );
    }
}

fn pusher(url: &str) -> Value {
    json!({
        "kind": "http",
        "app_id": "org.example.app",
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "pushkey": "PUSHKEY-1",
        "lang": "en",
        "data": { "url": url, "extra": "kept" },
    })
}

const LOOPBACK_ALLOWED: &str = "ip_range_whitelist: ['127.0.0.1/32']";

/// Alice and bob in a two-person room (one-to-one rules notify with sound).
async fn two_in_a_room(s: &TestServer) -> (User, User, String) {
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    (alice, bob, room)
}

#[tokio::test]
async fn pushers_are_set_listed_and_deleted() {
    let s = TestServer::start().await;
    let bob = s.register("bob").await;
    let url = "https://push.example.org/_matrix/push/v1/notify";
    let (status, body) = s.post("/pushers/set", &bob.token, pusher(url)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (_, listed) = s.get("/pushers", &bob.token).await;
    assert_eq!(
        listed,
        json!({ "pushers": [{
            "pushkey": "PUSHKEY-1", "kind": "http", "app_id": "org.example.app",
            "app_display_name": "Example", "device_display_name": "Phone",
            "profile_tag": "", "lang": "en", "data": { "url": url, "extra": "kept" },
        }] })
    );
    // Set again: replaced, not doubled.
    let mut renamed = pusher(url);
    renamed["device_display_name"] = json!("Tablet");
    s.post("/pushers/set", &bob.token, renamed).await;
    let (_, listed) = s.get("/pushers", &bob.token).await;
    assert_eq!(listed["pushers"].as_array().unwrap().len(), 1);
    assert_eq!(listed["pushers"][0]["device_display_name"], "Tablet");
    // kind: null deletes it.
    let (status, _) = s
        .post(
            "/pushers/set",
            &bob.token,
            json!({ "kind": null, "app_id": "org.example.app", "pushkey": "PUSHKEY-1" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.get("/pushers", &bob.token).await.1,
        json!({ "pushers": [] })
    );
}

#[tokio::test]
async fn bad_pushers_are_refused() {
    let s = TestServer::start().await;
    let bob = s.register("bob").await;
    let mut missing = pusher("https://push.example.org/_matrix/push/v1/notify");
    missing.as_object_mut().unwrap().remove("lang");
    let refused = s.post("/pushers/set", &bob.token, missing).await;
    assert_error(&refused, 400, "M_MISSING_PARAM");
    assert_eq!(refused.1["error"], "Missing params: [\"lang\"]");
    let refused = s
        .post(
            "/pushers/set",
            &bob.token,
            pusher("https://push.example.org/notify"),
        )
        .await;
    assert_error(&refused, 400, "M_MISSING_PARAM");
    assert_eq!(
        refused.1["error"],
        "Config Error: 'url' must have a path of '/_matrix/push/v1/notify'"
    );
    let mut no_url = pusher("x");
    no_url["data"] = json!({});
    assert_error(
        &s.post("/pushers/set", &bob.token, no_url).await,
        400,
        "M_MISSING_PARAM",
    );
    let mut email = pusher("x");
    email["kind"] = json!("email");
    assert_error(
        &s.post("/pushers/set", &bob.token, email).await,
        400,
        "M_INVALID_PARAM",
    );
    let mut odd = pusher("https://push.example.org/_matrix/push/v1/notify");
    odd["kind"] = json!("carrier-pigeon");
    assert_error(
        &s.post("/pushers/set", &bob.token, odd).await,
        400,
        "M_MISSING_PARAM",
    );
    assert_eq!(
        s.get("/pushers", &bob.token).await.1,
        json!({ "pushers": [] })
    );
}

#[tokio::test]
async fn a_message_is_pushed_to_the_gateway() {
    let gateway = Gateway::start(&[]).await;
    let s = TestServer::start_with(LOOPBACK_ALLOWED).await;
    let (alice, bob, room) = two_in_a_room(&s).await;
    s.post("/pushers/set", &bob.token, pusher(&gateway.url))
        .await;
    let event_id = s.send_text(&alice, &room, "are you there?").await;
    let pushed = gateway.wait_for(1).await;
    let notification = &pushed[0]["notification"];
    assert_eq!(notification["event_id"], event_id);
    assert_eq!(notification["room_id"], room);
    assert_eq!(notification["type"], "m.room.message");
    assert_eq!(notification["sender"], alice.user_id);
    assert_eq!(notification["sender_display_name"], "alice");
    assert_eq!(notification["content"]["body"], "are you there?");
    assert_eq!(notification["prio"], "high");
    assert_eq!(notification["counts"]["unread"], 1);
    let device = &notification["devices"][0];
    assert_eq!(device["app_id"], "org.example.app");
    assert_eq!(device["pushkey"], "PUSHKEY-1");
    assert_eq!(device["data"], json!({ "extra": "kept" }));
    assert_eq!(device["tweaks"]["sound"], "default");
    // Alice's own messages are not pushed to alice's pushers, nor bob's to bob.
    s.send_text(&bob, &room, "yes").await;
    let second = s.send_text(&alice, &room, "good").await;
    let pushed = gateway.wait_for(2).await;
    assert_eq!(pushed[1]["notification"]["event_id"], second);
}

#[tokio::test]
async fn event_id_only_pushes_carry_no_content() {
    let gateway = Gateway::start(&[]).await;
    let s = TestServer::start_with(LOOPBACK_ALLOWED).await;
    let (alice, bob, room) = two_in_a_room(&s).await;
    let mut body = pusher(&gateway.url);
    body["data"]["format"] = json!("event_id_only");
    s.post("/pushers/set", &bob.token, body).await;
    let event_id = s.send_text(&alice, &room, "secret").await;
    let notification = gateway.wait_for(1).await[0]["notification"].clone();
    assert_eq!(notification["event_id"], event_id);
    assert!(notification.get("content").is_none(), "{notification}");
    assert!(notification.get("sender").is_none(), "{notification}");
}

#[tokio::test]
async fn failed_pushes_are_retried_with_backoff() {
    let gateway = Gateway::start(&[Reply::Fail, Reply::Fail]).await;
    let s = TestServer::start_with(LOOPBACK_ALLOWED).await;
    let (alice, bob, room) = two_in_a_room(&s).await;
    s.post("/pushers/set", &bob.token, pusher(&gateway.url))
        .await;
    let event_id = s.send_text(&alice, &room, "knock knock").await;
    // Refused twice (backing off 1 s, then 2 s), delivered the third time.
    let pushed = gateway.wait_for(3).await;
    for push in &pushed {
        assert_eq!(push["notification"]["event_id"], event_id);
    }
    assert!(gateway.script.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_rejected_pushkey_removes_the_pusher() {
    let gateway = Gateway::start(&[Reply::Reject]).await;
    let s = TestServer::start_with(LOOPBACK_ALLOWED).await;
    let (alice, bob, room) = two_in_a_room(&s).await;
    s.post("/pushers/set", &bob.token, pusher(&gateway.url))
        .await;
    s.send_text(&alice, &room, "hello").await;
    gateway.wait_for(1).await;
    for _ in 0..100 {
        if s.get("/pushers", &bob.token).await.1 == json!({ "pushers": [] }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the rejected pusher is still listed");
}

#[tokio::test]
async fn gateways_on_blocked_addresses_are_never_contacted() {
    let gateway = Gateway::start(&[]).await;
    // The default ip_range_blacklist covers 127.0.0.0/8.
    let s = TestServer::start().await;
    let (alice, bob, room) = two_in_a_room(&s).await;
    s.post("/pushers/set", &bob.token, pusher(&gateway.url))
        .await;
    s.send_text(&alice, &room, "hello").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(gateway.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn logging_out_removes_the_devices_pushers() {
    let s = TestServer::start().await;
    let bob = s.register("bob").await;
    s.post(
        "/pushers/set",
        &bob.token,
        pusher("https://push.example.org/_matrix/push/v1/notify"),
    )
    .await;
    s.post("/logout", &bob.token, json!({})).await;
    let (status, login) = s
        .request(
            reqwest::Method::POST,
            "/login",
            None,
            Some(json!({ "type": "m.login.password", "user": "bob", "password": "correct horse" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = login["access_token"].as_str().unwrap();
    assert_eq!(s.get("/pushers", token).await.1, json!({ "pushers": [] }));
}

#[tokio::test]
async fn notifications_list_newest_first_with_read_state() {
    let s = TestServer::start().await;
    let (alice, bob, room) = two_in_a_room(&s).await;
    let first = s.send_text(&alice, &room, "one").await;
    let second = s.send_text(&alice, &room, "two").await;
    let mention = s
        .post(
            &format!("/rooms/{}/send/m.room.message", enc(&room)),
            &alice.token,
            json!({ "msgtype": "m.text", "body": "bob: look", "m.mentions": { "user_ids": [bob.user_id] } }),
        )
        .await
        .1["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, page) = s.get("/notifications", &bob.token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mention.as_str(), second.as_str(), first.as_str()]);
    let newest = &page["notifications"][0];
    assert_eq!(newest["room_id"], room);
    assert_eq!(newest["read"], false);
    assert!(newest["ts"].as_i64().unwrap() > 0);
    assert!(newest["actions"]
        .as_array()
        .unwrap()
        .contains(&json!("notify")));
    assert!(page.get("next_token").is_none(), "{page}");

    // Highlights only.
    let (_, highlights) = s.get("/notifications?only=highlight", &bob.token).await;
    assert_eq!(highlights["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(highlights["notifications"][0]["event"]["event_id"], mention);

    // Pages of one.
    let (_, page1) = s.get("/notifications?limit=1", &bob.token).await;
    let token = page1["next_token"].as_str().unwrap();
    let (_, page2) = s
        .get(&format!("/notifications?limit=1&from={token}"), &bob.token)
        .await;
    assert_eq!(page2["notifications"][0]["event"]["event_id"], second);

    // Read up to the second: the first two are read, the mention is not.
    s.post(
        &format!("/rooms/{}/receipt/m.read/{}", enc(&room), enc(&second)),
        &bob.token,
        json!({}),
    )
    .await;
    let (_, after) = s.get("/notifications", &bob.token).await;
    let read: Vec<bool> = after["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["read"].as_bool().unwrap())
        .collect();
    assert_eq!(read, [false, true, true]);

    assert_error(
        &s.get("/notifications?from=nonsense", &bob.token).await,
        400,
        "M_INVALID_PARAM",
    );
}
