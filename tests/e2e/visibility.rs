//! History visibility: which of a room's events each user reads, through
//! `/messages`, `/event`, `/state`, `/members` and `/sync`, judged per event
//! by the user's membership and the room's `m.room.history_visibility` at it.

use axon_testkit::*;

/// The bodies of the messages among `events`, in order.
fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn messages(s: &TestServer, user: &User, room: &str) -> (StatusCode, Value) {
    let path = format!("/rooms/{}/messages?dir=b&limit=100", enc(room));
    s.get(&path, &user.token).await
}

async fn event(s: &TestServer, user: &User, room: &str, event_id: &str) -> (StatusCode, Value) {
    let path = format!("/rooms/{}/event/{}", enc(room), enc(event_id));
    s.get(&path, &user.token).await
}

fn room_with_visibility(visibility: &str) -> Value {
    json!({
        "preset": "public_chat",
        "initial_state": [{
            "type": "m.room.history_visibility",
            "state_key": "",
            "content": { "history_visibility": visibility },
        }],
    })
}

#[tokio::test]
async fn a_user_banned_before_ever_joining_reads_nothing_of_the_room() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let mallory = s.register("mallory").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    let secret = s.send_text(&alice, &room, "before mallory synced").await;
    let (_, first) = s.get("/sync", &mallory.token).await;
    let since = first["next_batch"].as_str().unwrap().to_string();
    s.send_text(&alice, &room, "while mallory was away").await;
    let ban = json!({ "user_id": mallory.user_id, "reason": "pre-emptive" });
    let (status, _) = s
        .post(&format!("/rooms/{}/ban", enc(&room)), &alice.token, ban)
        .await;
    assert_eq!(status, StatusCode::OK);

    let refused = "M_FORBIDDEN";
    assert_error(&messages(&s, &mallory, &room).await, 403, refused);
    assert_error(&event(&s, &mallory, &room, &secret).await, 403, refused);
    for read in ["state", "members", "joined_members", "state/m.room.create"] {
        let path = format!("/rooms/{}/{read}", enc(&room));
        assert_error(&s.get(&path, &mallory.token).await, 403, refused);
    }
    // Their sync shows the ban, and nothing of what the room said.
    let (_, sync) = s.get(&format!("/sync?since={since}"), &mallory.token).await;
    assert_eq!(sync["rooms"]["join"].get(&room), None, "{sync}");
    let timeline = &sync["rooms"]["leave"][&room]["timeline"]["events"];
    let events = timeline.as_array().unwrap();
    assert_eq!(events.len(), 1, "{sync}");
    assert_eq!(events[0]["content"]["membership"], "ban");
    // Nor can they name it.
    let alias = format!("/directory/room/{}", enc("#mine:test.local"));
    let (status, body) = s
        .put(&alias, &mallory.token, json!({ "room_id": room }))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some(refused))
    );
}

#[tokio::test]
async fn rejecting_an_invite_reveals_nothing_said_before_it() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    // A private room's history is `shared`: for those who join.
    let room = s
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let before = s.send_text(&alice, &room, "before the invite").await;
    assert_eq!(
        s.invite(&alice, &room, &bob.user_id).await.0,
        StatusCode::OK
    );
    let leave = s
        .post(
            &format!("/rooms/{}/leave", enc(&room)),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(leave.0, StatusCode::OK);

    let (status, page) = messages(&s, &bob, &room).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bodies(&page["chunk"]), Vec::<String>::new(), "{page}");
    let own: Vec<&Value> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["content"]["membership"])
        .collect();
    assert_eq!(
        own,
        [&json!("leave"), &json!("invite")],
        "only their own invite and leave"
    );
    assert_error(&event(&s, &bob, &room, &before).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn under_joined_visibility_a_newcomer_reads_only_what_follows_their_join() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, room_with_visibility("joined")).await;
    let before = s.send_text(&alice, &room, "before bob").await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    s.send_text(&alice, &room, "after bob").await;

    let (_, page) = messages(&s, &bob, &room).await;
    assert_eq!(bodies(&page["chunk"]), ["after bob"], "{page}");
    assert_error(&event(&s, &bob, &room, &before).await, 404, "M_NOT_FOUND");
    let (_, sync) = s.get("/sync", &bob.token).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(bodies(timeline), ["after bob"], "{sync}");
    // Alice was there for all of it.
    let (_, page) = messages(&s, &alice, &room).await;
    assert_eq!(bodies(&page["chunk"]), ["after bob", "before bob"]);
}

#[tokio::test]
async fn under_shared_visibility_a_newcomer_reads_the_history_before_them() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, room_with_visibility("shared")).await;
    let before = s.send_text(&alice, &room, "before bob").await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    let (_, page) = messages(&s, &bob, &room).await;
    assert_eq!(bodies(&page["chunk"]), ["before bob"], "{page}");
    assert_eq!(event(&s, &bob, &room, &before).await.0, StatusCode::OK);
}

#[tokio::test]
async fn under_invited_visibility_history_starts_at_the_invite() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, room_with_visibility("invited")).await;
    s.send_text(&alice, &room, "before the invite").await;
    assert_eq!(
        s.invite(&alice, &room, &bob.user_id).await.0,
        StatusCode::OK
    );
    s.send_text(&alice, &room, "while invited").await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    let (_, page) = messages(&s, &bob, &room).await;
    assert_eq!(bodies(&page["chunk"]), ["while invited"], "{page}");
}

#[tokio::test]
async fn a_world_readable_room_is_read_without_joining_and_a_changed_visibility_applies_from_then_on(
) {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let reader = s.register("reader").await;
    let room = s
        .create_room(&alice, room_with_visibility("world_readable"))
        .await;
    s.send_text(&alice, &room, "for everyone").await;
    let (status, page) = messages(&s, &reader, &room).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bodies(&page["chunk"]), ["for everyone"]);
    assert_eq!(
        s.get(&format!("/rooms/{}/state", enc(&room)), &reader.token)
            .await
            .0,
        StatusCode::OK
    );
    // Once members only, later messages are for members only.
    let path = format!("/rooms/{}/state/m.room.history_visibility", enc(&room));
    let joined = json!({ "history_visibility": "joined" });
    assert_eq!(s.put(&path, &alice.token, joined).await.0, StatusCode::OK);
    s.send_text(&alice, &room, "members only").await;
    assert_error(&messages(&s, &reader, &room).await, 403, "M_FORBIDDEN");
    let carol = s.register("carol").await;
    assert_eq!(s.join(&carol, &room).await.0, StatusCode::OK);
    let (_, page) = messages(&s, &carol, &room).await;
    assert_eq!(bodies(&page["chunk"]), ["for everyone"], "{page}");
}

#[tokio::test]
async fn after_leaving_a_user_reads_up_to_their_leave_and_the_state_as_it_was() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat", "name": "old" }))
        .await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    s.send_text(&alice, &room, "while bob was here").await;
    let leave = s
        .post(
            &format!("/rooms/{}/leave", enc(&room)),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(leave.0, StatusCode::OK);
    s.send_text(&alice, &room, "after bob left").await;
    let name = format!("/rooms/{}/state/m.room.name", enc(&room));
    assert_eq!(
        s.put(&name, &alice.token, json!({ "name": "new" })).await.0,
        StatusCode::OK
    );

    let (_, page) = messages(&s, &bob, &room).await;
    assert_eq!(bodies(&page["chunk"]), ["while bob was here"], "{page}");
    assert_eq!(s.get(&name, &bob.token).await.1, json!({ "name": "old" }));
}

#[tokio::test]
async fn an_erased_users_messages_are_redacted_for_those_who_join_later() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let carol = s.register("carol").await;
    let room = s.create_room(&alice, room_with_visibility("shared")).await;
    assert_eq!(s.join(&carol, &room).await.0, StatusCode::OK);
    let said = s.send_text(&carol, &room, "forget me").await;
    let auth = json!({ "type": "m.login.password", "user": "carol", "password": "correct horse" });
    let gone = s
        .post(
            "/account/deactivate",
            &carol.token,
            json!({ "auth": auth, "erase": true }),
        )
        .await;
    assert_eq!(gone.0, StatusCode::OK, "{:?}", gone.1);
    let dave = s.register("dave").await;
    assert_eq!(s.join(&dave, &room).await.0, StatusCode::OK);

    let (status, seen) = event(&s, &dave, &room, &said).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["content"], json!({}), "{seen}");
    let (_, page) = messages(&s, &dave, &room).await;
    let message = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == said.as_str());
    assert_eq!(message.unwrap()["content"], json!({}));
    // Alice was in the room when carol said it.
    let (_, seen) = event(&s, &alice, &room, &said).await;
    assert_eq!(seen["content"]["body"], "forget me");
}
