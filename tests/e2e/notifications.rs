//! Unread notification counts: each event evaluated against each member's
//! push rules, counted in `/sync` after the member's read receipt.

use axon_testkit::*;
use serde_json::{json, Value};

async fn unread(s: &TestServer, user: &User, room: &str) -> Value {
    let (_, sync) = s.get("/sync", &user.token).await;
    sync["rooms"]["join"][room]["unread_notifications"].clone()
}

fn counts(notifications: u64, highlights: u64) -> Value {
    json!({ "notification_count": notifications, "highlight_count": highlights })
}

async fn send(s: &TestServer, user: &User, room: &str, content: Value) -> String {
    let path = format!("/rooms/{}/send/m.room.message/{}", enc(room), rand_suffix());
    let (status, body) = s.put(&path, &user.token, content).await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().to_string()
}

async fn read_up_to(s: &TestServer, user: &User, room: &str, event: &str, kind: &str) {
    let path = format!("/rooms/{}/receipt/{kind}/{}", enc(room), enc(event));
    assert_eq!(s.post(&path, &user.token, json!({})).await.0, 200);
}

#[tokio::test]
async fn messages_count_until_read_and_mentions_highlight() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    // Three members, so the one-to-one rules do not apply.
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    s.join(&carol, &room).await;
    assert_eq!(unread(&s, &bob, &room).await, counts(0, 0));
    send(
        &s,
        &alice,
        &room,
        json!({ "msgtype": "m.text", "body": "hi all" }),
    )
    .await;
    let mention = json!({
        "msgtype": "m.text", "body": "bob: look",
        "m.mentions": { "user_ids": [bob.user_id] },
    });
    let second = send(&s, &alice, &room, mention).await;
    let third = send(
        &s,
        &alice,
        &room,
        json!({ "msgtype": "m.text", "body": "again" }),
    )
    .await;
    assert_eq!(unread(&s, &bob, &room).await, counts(3, 1));
    assert_eq!(unread(&s, &carol, &room).await, counts(3, 0));
    // The sender's own messages never count for her.
    assert_eq!(unread(&s, &alice, &room).await, counts(0, 0));
    read_up_to(&s, &bob, &room, &second, "m.read").await;
    assert_eq!(unread(&s, &bob, &room).await, counts(1, 0));
    read_up_to(&s, &carol, &room, &third, "m.read.private").await;
    assert_eq!(unread(&s, &carol, &room).await, counts(0, 0));
    // Notices do not notify (.m.rule.suppress_notices).
    send(
        &s,
        &alice,
        &room,
        json!({ "msgtype": "m.notice", "body": "bot says" }),
    )
    .await;
    assert_eq!(unread(&s, &carol, &room).await, counts(0, 0));
}

#[tokio::test]
async fn a_muted_room_does_not_count() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    send(
        &s,
        &alice,
        &room,
        json!({ "msgtype": "m.text", "body": "one" }),
    )
    .await;
    // In a room of two, a message is a one-to-one message: it notifies.
    assert_eq!(unread(&s, &bob, &room).await["notification_count"], 1);
    let mute = json!({
        "conditions": [{ "kind": "event_match", "key": "room_id", "pattern": room }],
        "actions": [],
    });
    let path = format!("/pushrules/global/override/{}", enc(&room));
    assert_eq!(s.put(&path, &bob.token, mute).await.0, 200);
    send(
        &s,
        &alice,
        &room,
        json!({ "msgtype": "m.text", "body": "two" }),
    )
    .await;
    assert_eq!(unread(&s, &bob, &room).await["notification_count"], 1);
}
