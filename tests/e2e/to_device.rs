//! To-device messages: `PUT /sendToDevice/{type}/{txnId}`, delivered in the
//! recipient device's `/sync` and kept until it syncs past them.

use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

async fn login(s: &TestServer, user: &str) -> User {
    let (status, body) = s
        .request(
            Method::POST,
            "/login",
            None,
            Some(json!({ "type": "m.login.password", "user": user, "password": "correct horse" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    User {
        user_id: body["user_id"].as_str().unwrap().into(),
        token: body["access_token"].as_str().unwrap().into(),
        device_id: body["device_id"].as_str().unwrap().into(),
    }
}

async fn sync(s: &TestServer, user: &User, since: Option<&str>) -> Value {
    let path = match since {
        Some(since) => format!("/sync?since={since}&timeout=0"),
        None => "/sync".into(),
    };
    let (status, body) = s.get(&path, &user.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn to_device(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_message_reaches_its_device_once_and_is_kept_until_acknowledged() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let bob_phone = login(&s, "bob").await;
    let since = sync(&s, &bob, None).await["next_batch"]
        .as_str()
        .unwrap()
        .to_string();

    let body = json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "secret": "for the laptop" } } } });
    let path = "/sendToDevice/org.example.ping/txn1";
    assert_eq!(
        s.put(path, &alice.token, body.clone()).await,
        (StatusCode::OK, json!({}))
    );
    // The same transaction again is not sent again.
    assert_eq!(s.put(path, &alice.token, body).await.0, StatusCode::OK);

    let first = sync(&s, &bob, Some(&since)).await;
    assert_eq!(
        to_device(&first),
        vec![
            json!({ "sender": alice.user_id, "type": "org.example.ping", "content": { "secret": "for the laptop" } })
        ]
    );
    // Not acknowledged yet: a retry of the same sync gets it again.
    assert_eq!(to_device(&sync(&s, &bob, Some(&since)).await).len(), 1);
    // Synced past it: gone.
    let next = first["next_batch"].as_str().unwrap();
    assert!(to_device(&sync(&s, &bob, Some(next)).await).is_empty());
    // The other device never had it.
    assert!(to_device(&sync(&s, &bob_phone, None).await).is_empty());
}

#[tokio::test]
async fn a_star_reaches_every_device_and_wakes_a_waiting_sync() {
    let s = Arc::new(TestServer::start().await);
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let bob_phone = login(&s, "bob").await;
    let since = sync(&s, &bob_phone, None).await["next_batch"]
        .as_str()
        .unwrap()
        .to_string();
    let waiting = {
        let (s, token) = (s.clone(), bob_phone.token.clone());
        tokio::spawn(async move {
            s.get(&format!("/sync?since={since}&timeout=10000"), &token)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let body = json!({ "messages": { bob.user_id.clone(): { "*": { "hello": "everyone" } } } });
    assert_eq!(
        s.put("/sendToDevice/m.room_key_request/t2", &alice.token, body)
            .await
            .0,
        StatusCode::OK
    );
    let (status, woken) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        to_device(&woken)[0]["content"]["hello"],
        "everyone",
        "{woken}"
    );
    assert_eq!(
        to_device(&sync(&s, &bob, None).await)[0]["content"]["hello"],
        "everyone"
    );
}

#[tokio::test]
async fn a_deleted_device_loses_its_queue_and_bad_bodies_are_refused() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let body =
        json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "n": 1 } } } });
    s.put("/sendToDevice/org.example.ping/t3", &alice.token, body)
        .await;
    s.post("/logout", &bob.token, json!({})).await;
    let conn = rusqlite::Connection::open(s.dir.path().join("homeserver.db")).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM device_inbox WHERE user_id = ?1",
            [&bob.user_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);

    let path = "/sendToDevice/org.example.ping/t4";
    assert_error(
        &s.put(path, &alice.token, json!({})).await,
        400,
        "M_MISSING_PARAM",
    );
    assert_error(
        &s.put(path, &alice.token, json!({ "messages": [] })).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &s.put(
            path,
            &alice.token,
            json!({ "messages": { "not-a-user": {} } }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(
            path,
            &alice.token,
            json!({ "messages": { bob.user_id.clone(): { "D": 5 } } }),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
}
