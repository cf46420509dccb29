//! Redactions: by the sender or by power level, served redacted
//! everywhere with `redacted_because`, and refused otherwise.

use axon_testkit::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn room_with_bob(s: &TestServer) -> (User, User, String) {
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    (alice, bob, room)
}

async fn redact(
    s: &TestServer,
    user: &User,
    room: &str,
    event: &str,
    txn: &str,
) -> (reqwest::StatusCode, Value) {
    let path = format!("/rooms/{}/redact/{}/{txn}", enc(room), enc(event));
    s.put(&path, &user.token, json!({ "reason": "oops" })).await
}

#[tokio::test]
async fn a_sender_redacts_their_message_and_every_read_serves_it_redacted() {
    let s = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&s).await;
    let message = s.send_text(&alice, &room, "something regrettable").await;
    let (_, sync) = s.get("/sync", &bob.token).await;
    let since = sync["next_batch"].as_str().unwrap().to_string();
    let (status, body) = redact(&s, &alice, &room, &message, "r1").await;
    assert_eq!(status, 200, "{body}");
    let redaction = body["event_id"].as_str().unwrap().to_string();
    // The same transaction again is the same redaction.
    assert_eq!(
        redact(&s, &alice, &room, &message, "r1").await.1["event_id"],
        redaction
    );
    let (_, event) = s
        .get(
            &format!("/rooms/{}/event/{}", enc(&room), enc(&message)),
            &bob.token,
        )
        .await;
    assert_eq!(event["content"], json!({}), "{event}");
    let because = &event["unsigned"]["redacted_because"];
    assert_eq!(because["event_id"], redaction);
    assert_eq!(
        because["content"],
        json!({ "redacts": message, "reason": "oops" })
    );
    assert_eq!(because["redacts"], message);
    // /messages, and Bob's next sync carries the redaction itself.
    let (_, messages) = s
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=10", enc(&room)),
            &bob.token,
        )
        .await;
    let served = messages["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == message)
        .unwrap();
    assert_eq!(served["content"], json!({}));
    let (_, sync) = s
        .get(&format!("/sync?since={since}&timeout=0"), &bob.token)
        .await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    let seen = timeline
        .iter()
        .find(|e| e["type"] == "m.room.redaction")
        .unwrap();
    assert_eq!(seen["redacts"], message);
    assert_eq!(seen["content"]["redacts"], message);
}

#[tokio::test]
async fn redacting_someone_elses_event_takes_the_redact_power_level() {
    let s = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&s).await;
    let alices = s.send_text(&alice, &room, "from alice").await;
    let bobs = s.send_text(&bob, &room, "from bob").await;
    assert_error(
        &redact(&s, &bob, &room, &alices, "b1").await,
        403,
        "M_FORBIDDEN",
    );
    // Sent as a plain event, the same redaction is refused the same way.
    let path = format!("/rooms/{}/send/m.room.redaction/b2", enc(&room));
    assert_error(
        &s.put(&path, &bob.token, json!({ "redacts": alices })).await,
        403,
        "M_FORBIDDEN",
    );
    let (_, event) = s
        .get(
            &format!("/rooms/{}/event/{}", enc(&room), enc(&alices)),
            &bob.token,
        )
        .await;
    assert_eq!(event["content"]["body"], "from alice");
    // Alice created the room (power 100 ≥ redact 50).
    assert_eq!(redact(&s, &alice, &room, &bobs, "a1").await.0, 200);
    let (_, event) = s
        .get(
            &format!("/rooms/{}/event/{}", enc(&room), enc(&bobs)),
            &bob.token,
        )
        .await;
    assert_eq!(event["content"], json!({}));
}

#[tokio::test]
async fn a_redacted_state_event_keeps_only_what_the_algorithm_keeps() {
    let s = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&s).await;
    let (_, topic) = s
        .put(
            &format!("/rooms/{}/state/m.room.topic", enc(&room)),
            &alice.token,
            json!({ "topic": "secret plans" }),
        )
        .await;
    let topic = topic["event_id"].as_str().unwrap().to_string();
    assert_eq!(redact(&s, &alice, &room, &topic, "t1").await.0, 200);
    let (status, content) = s
        .get(
            &format!("/rooms/{}/state/m.room.topic", enc(&room)),
            &bob.token,
        )
        .await;
    assert_eq!((status.as_u16(), content), (200, json!({})));
}

#[tokio::test]
async fn bad_redactions_get_matrix_errors() {
    let s = TestServer::start().await;
    let (alice, _bob, room) = room_with_bob(&s).await;
    let other = s.create_room(&alice, json!({})).await;
    let elsewhere = s.send_text(&alice, &other, "elsewhere").await;
    assert_error(
        &redact(&s, &alice, &room, "$missing:test.local", "x1").await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &redact(&s, &alice, &room, &elsewhere, "x2").await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &redact(&s, &alice, &room, "not-an-event", "x3").await,
        400,
        "M_INVALID_PARAM",
    );
    let path = format!("/rooms/{}/send/m.room.redaction/x4", enc(&room));
    assert_error(
        &s.put(&path, &alice.token, json!({ "reason": "none" }))
            .await,
        400,
        "M_BAD_JSON",
    );
    let carol = s.register("carol").await;
    let message = s.send_text(&alice, &room, "hello").await;
    let response = s
        .request(
            Method::PUT,
            &format!("/rooms/{}/redact/{}/c1", enc(&room), enc(&message)),
            Some(&carol.token),
            Some(json!({})),
        )
        .await;
    assert_error(&response, 403, "M_FORBIDDEN");
    let (_, event) = s
        .get(
            &format!("/rooms/{}/event/{}", enc(&room), enc(&message)),
            &alice.token,
        )
        .await;
    assert_eq!(event["content"]["body"], "hello");
}
