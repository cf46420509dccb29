//! Read receipts and read markers: what the other member's `/sync` shows,
//! what stays private, and the errors Synapse gives.

use axon_testkit::*;
use serde_json::{json, Value};

async fn since(s: &TestServer, user: &User) -> String {
    let (_, sync) = s.get("/sync", &user.token).await;
    sync["next_batch"].as_str().unwrap().to_string()
}

/// The `m.receipt` content of a room in a sync, if any.
fn receipts_in(sync: &Value, room: &str) -> Option<Value> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .map(|e| e["content"].clone())
}

async fn room_with_bob(s: &TestServer) -> (User, User, String, String) {
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let event = s.send_text(&alice, &room, "hello").await;
    (alice, bob, room, event)
}

#[tokio::test]
async fn a_read_receipt_reaches_the_other_member_and_initial_sync() {
    let s = TestServer::start().await;
    let (alice, bob, room, event) = room_with_bob(&s).await;
    let from = since(&s, &alice).await;
    let path = format!("/rooms/{}/receipt/m.read/{}", enc(&room), enc(&event));
    let (status, body) = s.post(&path, &bob.token, json!({})).await;
    assert_eq!((status.as_u16(), &body), (200, &json!({})));
    let (_, sync) = s
        .get(&format!("/sync?since={from}&timeout=0"), &alice.token)
        .await;
    let receipts = receipts_in(&sync, &room).expect("the receipt is in Alice's sync");
    let ts = &receipts[&event]["m.read"][bob.user_id.as_str()]["ts"];
    assert!(ts.as_i64().unwrap() > 0, "{receipts}");
    // A later receipt replaces it; a threaded one is a receipt of its own.
    let second = s.send_text(&alice, &room, "again").await;
    let path = format!("/rooms/{}/receipt/m.read/{}", enc(&room), enc(&second));
    s.post(&path, &bob.token, json!({})).await;
    let third = s.send_text(&alice, &room, "in the main thread").await;
    let path = format!("/rooms/{}/receipt/m.read/{}", enc(&room), enc(&third));
    s.post(&path, &bob.token, json!({ "thread_id": "main" }))
        .await;
    let (_, sync) = s.get("/sync", &alice.token).await;
    let receipts = receipts_in(&sync, &room).unwrap();
    let bobs = |event: &str| receipts[event]["m.read"][bob.user_id.as_str()].clone();
    assert!(bobs(&second).is_object(), "{receipts}");
    assert_eq!(bobs(&second).get("thread_id"), None);
    assert_eq!(bobs(&third)["thread_id"], "main");
    assert!(receipts.get(&event).is_none(), "{receipts}");
    // Nothing new since: the next incremental sync has no receipt.
    let next = sync["next_batch"].as_str().unwrap();
    let (_, sync) = s
        .get(&format!("/sync?since={next}&timeout=0"), &alice.token)
        .await;
    assert_eq!(receipts_in(&sync, &room), None);
}

#[tokio::test]
async fn a_private_receipt_is_seen_only_by_its_owner() {
    let s = TestServer::start().await;
    let (alice, bob, room, event) = room_with_bob(&s).await;
    let path = format!(
        "/rooms/{}/receipt/m.read.private/{}",
        enc(&room),
        enc(&event)
    );
    assert_eq!(s.post(&path, &bob.token, json!({})).await.0, 200);
    let (_, sync) = s.get("/sync", &bob.token).await;
    let mine = receipts_in(&sync, &room).expect("Bob sees his private receipt");
    assert!(mine[&event]["m.read.private"][bob.user_id.as_str()].is_object());
    let (_, sync) = s.get("/sync", &alice.token).await;
    assert_eq!(receipts_in(&sync, &room), None);
}

#[tokio::test]
async fn read_markers_move_the_marker_and_send_the_receipt() {
    let s = TestServer::start().await;
    let (alice, bob, room, event) = room_with_bob(&s).await;
    let body = json!({ "m.fully_read": event, "m.read": event });
    let (status, _) = s
        .post(
            &format!("/rooms/{}/read_markers", enc(&room)),
            &bob.token,
            body,
        )
        .await;
    assert_eq!(status, 200);
    let (_, sync) = s.get("/sync", &bob.token).await;
    let account_data = &sync["rooms"]["join"][&room]["account_data"]["events"];
    assert!(
        account_data
            .as_array()
            .unwrap()
            .contains(&json!({ "type": "m.fully_read", "content": { "event_id": event } })),
        "{account_data}"
    );
    let (_, sync) = s.get("/sync", &alice.token).await;
    assert!(receipts_in(&sync, &room).unwrap()[&event]["m.read"][bob.user_id.as_str()].is_object());
    // The receipt endpoint moves the marker too.
    let second = s.send_text(&alice, &room, "more").await;
    let path = format!(
        "/rooms/{}/receipt/m.fully_read/{}",
        enc(&room),
        enc(&second)
    );
    assert_eq!(s.post(&path, &bob.token, json!({})).await.0, 200);
    let (_, marker) = s
        .get(
            &format!(
                "/user/{}/rooms/{}/account_data/m.fully_read",
                enc(bob.user_id.as_str()),
                enc(&room)
            ),
            &bob.token,
        )
        .await;
    assert_eq!(marker, json!({ "event_id": second }));
}

#[tokio::test]
async fn bad_receipts_get_matrix_errors_and_store_nothing() {
    let s = TestServer::start().await;
    let (alice, bob, room, event) = room_with_bob(&s).await;
    let carol = s.register("carol").await;
    let other = s.create_room(&alice, json!({})).await;
    let elsewhere = s.send_text(&alice, &other, "elsewhere").await;
    let receipt =
        |kind: &str, event: &str| format!("/rooms/{}/receipt/{kind}/{}", enc(&room), enc(event));
    let cases = [
        (
            receipt("m.seen", &event),
            &bob,
            json!({}),
            400,
            "M_INVALID_PARAM",
        ),
        (
            receipt("m.read", "not-an-event"),
            &bob,
            json!({}),
            400,
            "M_INVALID_PARAM",
        ),
        (
            receipt("m.read", &elsewhere),
            &bob,
            json!({}),
            404,
            "M_NOT_FOUND",
        ),
        (
            receipt("m.read", "$missing:test.local"),
            &bob,
            json!({}),
            404,
            "M_NOT_FOUND",
        ),
        (
            receipt("m.read", &event),
            &carol,
            json!({}),
            403,
            "M_FORBIDDEN",
        ),
        (
            receipt("m.fully_read", &event),
            &bob,
            json!({ "thread_id": "main" }),
            400,
            "M_INVALID_PARAM",
        ),
        (
            receipt("m.read", &event),
            &bob,
            json!({ "thread_id": "sideways" }),
            400,
            "M_INVALID_PARAM",
        ),
        (
            format!("/rooms/{}/read_markers", enc(&room)),
            &bob,
            json!({ "m.fully_read": event, "m.read": "nonsense" }),
            400,
            "M_INVALID_PARAM",
        ),
    ];
    for (path, user, body, status, errcode) in cases {
        let response = s.post(&path, &user.token, body).await;
        assert_eq!(
            (response.0.as_u16(), response.1["errcode"].as_str()),
            (status, Some(errcode)),
            "{path}: {}",
            response.1
        );
    }
    let (_, sync) = s.get("/sync", &alice.token).await;
    assert_eq!(receipts_in(&sync, &room), None);
    let (_, sync) = s.get("/sync", &bob.token).await;
    let account_data = &sync["rooms"]["join"][&room]["account_data"]["events"];
    assert_eq!(account_data, &json!([]), "the read marker did not move");
}
