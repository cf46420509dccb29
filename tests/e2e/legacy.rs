//! The legacy reads the Matrix test suite still calls: `GET /initialSync`,
//! `GET /rooms/{room}/initialSync` and the event stream `GET /events`.

use axon_testkit::*;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn initial_sync_has_every_room_with_its_latest_messages_and_state() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "name": "Legacy", "preset": "public_chat" }))
        .await;
    for text in ["one", "two", "three"] {
        s.send_text(&alice, &room, text).await;
    }
    let invited = s.create_room(&bob, json!({})).await;
    s.invite(&bob, &invited, &alice.user_id).await;

    let (status, body) = s.get("/initialSync?limit=2", &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["end"].as_str().unwrap().starts_with('s'));
    let rooms = body["rooms"].as_array().unwrap();
    let joined = rooms
        .iter()
        .find(|r| r["room_id"] == room)
        .expect("the joined room");
    assert_eq!(joined["membership"], "join");
    let chunk = joined["messages"]["chunk"].as_array().unwrap();
    let bodies: Vec<&str> = chunk
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["two", "three"]);
    assert!(chunk.iter().all(|e| e["room_id"] == room));
    assert!(joined["messages"]["start"].is_string());
    let state = joined["state"].as_array().unwrap();
    assert!(state
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Legacy"));
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));
    let invite = rooms
        .iter()
        .find(|r| r["room_id"] == invited)
        .expect("the invite");
    assert_eq!(invite["membership"], "invite");
    assert_eq!(invite["invite"]["sender"], bob.user_id);

    // One room's initial sync; only for its members.
    let path = format!("/rooms/{}/initialSync", enc(&room));
    let (status, one) = s.get(&path, &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["room_id"], room);
    assert_eq!(one["membership"], "join");
    // All nine of its events fit in the default limit of ten.
    let chunk = one["messages"]["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 9);
    assert_eq!(chunk[8]["content"]["body"], "three");
    assert_eq!(one["visibility"], "private");
    let eve = s.register("eve").await;
    assert_error(&s.get(&path, &eve.token).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn the_event_stream_waits_for_what_comes_next() {
    let s = Arc::new(TestServer::start().await);
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let (_, initial) = s.get("/initialSync", &alice.token).await;
    let from = initial["end"].as_str().unwrap().to_string();

    // Nothing new yet: an empty chunk once the timeout passes.
    let (status, quiet) = s
        .get(&format!("/events?from={from}&timeout=0"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{quiet}");
    assert_eq!(quiet["chunk"], json!([]));
    assert_eq!(quiet["start"], from);

    let waiting = {
        let (s, token, from) = (s.clone(), alice.token.clone(), from.clone());
        tokio::spawn(async move {
            s.get(&format!("/events?from={from}&timeout=10000"), &token)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let sent = s.send_text(&alice, &room, "streamed").await;
    let (status, streamed) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let event = streamed["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == sent)
        .unwrap_or_else(|| panic!("{streamed}"));
    assert_eq!(event["room_id"], room);
    assert_ne!(streamed["end"], from);

    assert_error(
        &s.get("/events?from=nonsense", &alice.token).await,
        400,
        "M_INVALID_PARAM",
    );
}
