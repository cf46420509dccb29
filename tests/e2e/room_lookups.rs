//! A room's aliases, sending without a transaction ID, reporting an event,
//! and jumping to a date.

use axon_testkit::*;
use serde_json::json;

#[tokio::test]
async fn a_rooms_aliases_are_listed_to_those_who_may_read_it() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({ "room_alias_name": "main" }))
        .await;
    s.put(
        "/directory/room/%23second:test.local",
        &alice.token,
        json!({ "room_id": room }),
    )
    .await;
    let path = format!("/rooms/{}/aliases", enc(&room));
    let (status, body) = s.get(&path, &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "aliases": ["#main:test.local", "#second:test.local"] })
    );
    assert_error(&s.get(&path, &carol.token).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_send_without_a_transaction_id_sends_each_time() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let path = format!("/rooms/{}/send/m.room.message", enc(&room));
    let body = json!({ "msgtype": "m.text", "body": "hi" });
    let (status, first) = s.post(&path, &alice.token, body.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = s.post(&path, &alice.token, body).await;
    assert_ne!(first["event_id"], second["event_id"]);
}

#[tokio::test]
async fn an_event_is_reported_by_someone_who_can_see_it() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let event = s.send_text(&alice, &room, "rude").await;
    let path = format!("/rooms/{}/report/{}", enc(&room), enc(&event));
    let (status, body) = s
        .post(&path, &bob.token, json!({ "reason": "rude", "score": -50 }))
        .await;
    assert_eq!((status.as_u16(), body), (200, json!({})));
    assert_error(
        &s.post(&path, &bob.token, json!({ "score": 10 })).await,
        400,
        "M_INVALID_PARAM",
    );
    // Carol was never in the (joined-only history) room: nothing to report.
    assert_error(
        &s.post(&path, &carol.token, json!({})).await,
        404,
        "M_NOT_FOUND",
    );
    let missing = format!(
        "/rooms/{}/report/{}",
        enc(&room),
        enc("$nothing:test.local")
    );
    assert_error(
        &s.post(&missing, &bob.token, json!({})).await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn timestamp_to_event_finds_the_nearest_event_each_way() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let carol = s.register("carol").await;
    let room = s.create_room(&alice, json!({})).await;
    let first = s.send_text(&alice, &room, "first").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let middle = axon::time::now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = s.send_text(&alice, &room, "second").await;
    let path = |ts: i64, dir: &str| {
        format!(
            "/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir={dir}",
            enc(&room)
        )
    };
    let (status, after) = s.get(&path(middle, "f"), &alice.token).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["event_id"], second);
    assert!(after["origin_server_ts"].as_i64().unwrap() >= middle);
    let (_, before) = s.get(&path(middle, "b"), &alice.token).await;
    assert_eq!(before["event_id"], first);
    assert_error(
        &s.get(&path(middle * 2, "f"), &alice.token).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&path(middle, "sideways"), &alice.token).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.get(&path(middle, "f"), &carol.token).await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn a_canonical_alias_must_point_to_the_room() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s
        .create_room(&alice, json!({ "room_alias_name": "home" }))
        .await;
    s.create_room(&alice, json!({ "room_alias_name": "elsewhere" }))
        .await;
    s.put(
        "/directory/room/%23alt:test.local",
        &alice.token,
        json!({ "room_id": room }),
    )
    .await;
    let path = format!("/rooms/{}/state/m.room.canonical_alias", enc(&room));
    let good = json!({ "alias": "#home:test.local", "alt_aliases": ["#alt:test.local"] });
    assert_eq!(s.put(&path, &alice.token, good.clone()).await.0, 200);
    let cases = [
        (json!({ "alias": "#elsewhere:test.local" }), "M_BAD_ALIAS"),
        (
            json!({ "alias": "#home:test.local", "alt_aliases": ["#nowhere:test.local"] }),
            "M_BAD_ALIAS",
        ),
        (
            json!({ "alt_aliases": ["#far:other.example"] }),
            "M_BAD_ALIAS",
        ),
        (json!({ "alias": "not an alias" }), "M_INVALID_PARAM"),
        (
            json!({ "alt_aliases": "#alt:test.local" }),
            "M_INVALID_PARAM",
        ),
    ];
    for (content, errcode) in cases {
        assert_error(&s.put(&path, &alice.token, content).await, 400, errcode);
    }
    let (_, current) = s.get(&path, &alice.token).await;
    assert_eq!(current, good, "nothing refused was stored");
}
