//! Rooms over HTTP: creation, the membership rules, power levels, sending,
//! state, members, history and single events.

use axon_testkit::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn room_path(room: &str, rest: &str) -> String {
    format!("/rooms/{}{rest}", enc(room))
}

#[tokio::test]
async fn create_room_with_name_topic_alias_and_initial_state() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (status, body) = s
        .post(
            "/createRoom",
            &alice.token,
            json!({
                "name": "Lobby", "topic": "Say hi", "room_alias_name": "lobby", "preset": "public_chat",
                "initial_state": [{ "type": "org.example.setting", "state_key": "", "content": { "on": true } }],
                "creation_content": { "m.federate": false },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_alias"], "#lobby:test.local");
    let room = body["room_id"].as_str().unwrap();
    assert!(room.starts_with('!'));

    let (_, name) = s
        .get(&room_path(room, "/state/m.room.name/"), &alice.token)
        .await;
    assert_eq!(name, json!({ "name": "Lobby" }));
    let (_, name) = s
        .get(&room_path(room, "/state/m.room.name"), &alice.token)
        .await;
    assert_eq!(
        name,
        json!({ "name": "Lobby" }),
        "the empty state key may be left out"
    );
    let (_, topic) = s
        .get(&room_path(room, "/state/m.room.topic/"), &alice.token)
        .await;
    assert_eq!(topic["topic"], "Say hi");
    // `?format=event`: the whole event, as Synapse answers it.
    let (_, event) = s
        .get(
            &room_path(room, "/state/m.room.topic/?format=event"),
            &alice.token,
        )
        .await;
    assert_eq!(event["type"], "m.room.topic");
    assert_eq!(event["state_key"], "");
    assert_eq!(event["content"]["topic"], "Say hi");
    assert_eq!(event["sender"], alice.user_id.as_str());
    assert_error(
        &s.get(
            &room_path(room, "/state/m.room.topic/?format=xml"),
            &alice.token,
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    let (_, setting) = s
        .get(
            &room_path(room, "/state/org.example.setting/"),
            &alice.token,
        )
        .await;
    assert_eq!(setting, json!({ "on": true }));
    let (_, create) = s
        .get(&room_path(room, "/state/m.room.create/"), &alice.token)
        .await;
    assert_eq!(create["room_version"], "10");
    assert_eq!(create["m.federate"], false);
    let (_, rules) = s
        .get(&room_path(room, "/state/m.room.join_rules/"), &alice.token)
        .await;
    assert_eq!(rules["join_rule"], "public");
    let (_, levels) = s
        .get(
            &room_path(room, "/state/m.room.power_levels/"),
            &alice.token,
        )
        .await;
    assert_eq!(levels["users"][&alice.user_id], 100);

    let (status, all) = s.get(&room_path(room, "/state"), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.canonical_alias",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    // Event IDs are reference hashes ($ + 43 URL-safe base64 characters).
    for event in all.as_array().unwrap() {
        let id = event["event_id"].as_str().unwrap();
        assert!(
            id.starts_with('$') && id.len() == 44 && !id.contains(':'),
            "{id}"
        );
    }

    let (_, alias) = s
        .get("/directory/room/%23lobby:test.local", &alice.token)
        .await;
    assert_eq!(alias["room_id"], room);

    let taken = s
        .post(
            "/createRoom",
            &alice.token,
            json!({ "room_alias_name": "lobby" }),
        )
        .await;
    assert_error(&taken, 400, "M_ROOM_IN_USE");
    let version = s
        .post("/createRoom", &alice.token, json!({ "room_version": "12" }))
        .await;
    assert_error(&version, 400, "M_UNSUPPORTED_ROOM_VERSION");
    let v11 = s.create_room(&alice, json!({ "room_version": "11" })).await;
    let (_, create) = s
        .get(&room_path(&v11, "/state/m.room.create/"), &alice.token)
        .await;
    assert_eq!(
        create,
        json!({ "room_version": "11" }),
        "v11 has no `creator`"
    );
}

#[tokio::test]
async fn a_private_room_needs_an_invite() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({})).await;

    let refused = s.join(&bob, &room).await;
    assert_error(&refused, 403, "M_FORBIDDEN");
    assert_eq!(refused.1["error"], "You are not invited to this room.");

    assert_eq!(
        s.invite(&alice, &room, &bob.user_id).await.0,
        StatusCode::OK
    );
    let (status, body) = s.join(&bob, &room).await;
    assert_eq!(
        (status, body["room_id"].as_str()),
        (StatusCode::OK, Some(room.as_str()))
    );
    let (_, rooms) = s.get("/joined_rooms", &bob.token).await;
    assert_eq!(rooms["joined_rooms"], json!([room]));

    // Joining again is harmless.
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    // Bob (power 0) may invite in a private_chat room (invite level 0, as
    // in Synapse; services::members_of_a_private_chat_may_invite_others).
    let carol = s.register("carol").await;
    assert_eq!(
        s.invite(&bob, &room, &carol.user_id).await.0,
        StatusCode::OK
    );
    // An invite to someone already in the room is refused.
    assert_error(
        &s.invite(&alice, &room, &bob.user_id).await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn join_by_alias_and_unknown_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "room_alias_name": "pub" }),
        )
        .await;
    let (status, body) = s
        .post("/join/%23pub:test.local", &bob.token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room);
    assert_error(
        &s.post("/join/%23nope:test.local", &bob.token, json!({}))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(&s.join(&bob, "!nope:test.local").await, 404, "M_NOT_FOUND");
    assert_error(&s.join(&bob, "not-a-room").await, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn kick_ban_unban_follow_power_levels() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    s.join(&carol, &room).await;

    // Bob has power 0: he cannot kick or ban.
    assert_error(
        &s.post(
            &room_path(&room, "/kick"),
            &bob.token,
            json!({ "user_id": carol.user_id }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(
            &room_path(&room, "/ban"),
            &bob.token,
            json!({ "user_id": carol.user_id }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    assert_eq!(
        s.post(
            &room_path(&room, "/kick"),
            &alice.token,
            json!({ "user_id": carol.user_id, "reason": "spam" })
        )
        .await
        .0,
        StatusCode::OK
    );
    let (_, member) = s
        .get(
            &room_path(
                &room,
                &format!("/state/m.room.member/{}", enc(&carol.user_id)),
            ),
            &alice.token,
        )
        .await;
    assert_eq!(member, json!({ "membership": "leave", "reason": "spam" }));
    // Kicked, not banned: she may come back.
    assert_eq!(s.join(&carol, &room).await.0, StatusCode::OK);

    assert_eq!(
        s.post(
            &room_path(&room, "/ban"),
            &alice.token,
            json!({ "user_id": carol.user_id })
        )
        .await
        .0,
        StatusCode::OK
    );
    let banned = s.join(&carol, &room).await;
    assert_error(&banned, 403, "M_FORBIDDEN");
    assert_eq!(banned.1["error"], "You are banned from this room");
    // Nobody can kick the room creator, who has the highest power.
    assert_error(
        &s.post(
            &room_path(&room, "/kick"),
            &bob.token,
            json!({ "user_id": alice.user_id }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    assert_eq!(
        s.post(
            &room_path(&room, "/unban"),
            &alice.token,
            json!({ "user_id": carol.user_id })
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(s.join(&carol, &room).await.0, StatusCode::OK);
    assert_error(
        &s.post(
            &room_path(&room, "/unban"),
            &alice.token,
            json!({ "user_id": bob.user_id }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn only_members_send_and_read() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let eve = s.register("eve").await;
    let room = s.create_room(&alice, json!({})).await;
    let event_id = s.send_text(&alice, &room, "secret").await;

    let send = s
        .put(
            &room_path(&room, "/send/m.room.message/t1"),
            &eve.token,
            json!({ "body": "hi" }),
        )
        .await;
    assert_error(&send, 403, "M_FORBIDDEN");
    assert_error(
        &s.get(&room_path(&room, "/messages?dir=b"), &eve.token)
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.get(&room_path(&room, "/state"), &eve.token).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.get(&room_path(&room, "/members"), &eve.token).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.get(
            &room_path(&room, &format!("/event/{}", enc(&event_id))),
            &eve.token,
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn state_events_need_power() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let (status, body) = s
        .put(
            &room_path(&room, "/state/m.room.topic/"),
            &alice.token,
            json!({ "topic": "new" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["event_id"].as_str().unwrap().starts_with('$'));
    assert_error(
        &s.put(
            &room_path(&room, "/state/m.room.topic/"),
            &bob.token,
            json!({ "topic": "mine" }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // A state key naming another user is theirs alone.
    let others = s
        .put(
            &room_path(&room, &format!("/state/org.example/{}", enc(&bob.user_id))),
            &alice.token,
            json!({}),
        )
        .await;
    assert_error(&others, 403, "M_FORBIDDEN");

    // Alice lets users_default change the topic; then Bob can.
    let (_, mut levels) = s
        .get(
            &room_path(&room, "/state/m.room.power_levels/"),
            &alice.token,
        )
        .await;
    levels["events"]["m.room.topic"] = json!(0);
    assert_eq!(
        s.put(
            &room_path(&room, "/state/m.room.power_levels/"),
            &alice.token,
            levels.clone()
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        s.put(
            &room_path(&room, "/state/m.room.topic/"),
            &bob.token,
            json!({ "topic": "mine" })
        )
        .await
        .0,
        StatusCode::OK
    );
    // Bob cannot make himself an admin.
    levels["users"][&bob.user_id] = json!(100);
    assert_error(
        &s.put(
            &room_path(&room, "/state/m.room.power_levels/"),
            &bob.token,
            levels,
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    assert_error(
        &s.get(&room_path(&room, "/state/m.room.nothing/"), &alice.token)
            .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn sending_is_idempotent_per_device_and_transaction() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let path = room_path(&room, "/send/m.room.message/txn-1");
    let (_, first) = s
        .put(
            &path,
            &alice.token,
            json!({ "msgtype": "m.text", "body": "once" }),
        )
        .await;
    let (_, again) = s
        .put(
            &path,
            &alice.token,
            json!({ "msgtype": "m.text", "body": "once" }),
        )
        .await;
    assert_eq!(first["event_id"], again["event_id"]);
    // Another device of the same user with the same transaction ID sends a new event.
    let (_, login) = s
        .request(
            reqwest::Method::POST,
            "/login",
            None,
            Some(
                json!({ "type": "m.login.password", "user": "alice", "password": "correct horse" }),
            ),
        )
        .await;
    let (_, other) = s
        .put(
            &path,
            login["access_token"].as_str().unwrap(),
            json!({ "msgtype": "m.text", "body": "once" }),
        )
        .await;
    assert_ne!(first["event_id"], other["event_id"]);
    let (_, messages) = s
        .get(&room_path(&room, "/messages?dir=b&limit=5"), &alice.token)
        .await;
    let bodies: Vec<&Value> = messages["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .collect();
    assert_eq!(bodies.len(), 2);
    // The sender's device sees its transaction ID.
    let mine = bodies
        .iter()
        .find(|e| e["event_id"] == first["event_id"])
        .unwrap();
    assert_eq!(mine["unsigned"]["transaction_id"], "txn-1");
}

#[tokio::test]
async fn messages_paginate_both_ways() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    for i in 0..7 {
        s.send_text(&alice, &room, &format!("m{i}")).await;
    }
    let bodies = |chunk: &Value| -> Vec<String> {
        chunk["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| e["content"]["body"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, page1) = s
        .get(&room_path(&room, "/messages?dir=b&limit=3"), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bodies(&page1), ["m6", "m5", "m4"]);
    let end = page1["end"].as_str().unwrap();
    let (_, page2) = s
        .get(
            &room_path(&room, &format!("/messages?dir=b&limit=3&from={end}")),
            &alice.token,
        )
        .await;
    assert_eq!(bodies(&page2), ["m3", "m2", "m1"]);
    // Forward from the second page's end: everything after it, oldest first.
    let end2 = page2["end"].as_str().unwrap();
    let (_, forward) = s
        .get(
            &room_path(&room, &format!("/messages?dir=f&limit=4&from={end2}")),
            &alice.token,
        )
        .await;
    assert_eq!(bodies(&forward), ["m1", "m2", "m3", "m4"]);
    // Back to the start of the room: the creation events, then no `end`.
    let (_, all) = s
        .get(&room_path(&room, "/messages?dir=b&limit=100"), &alice.token)
        .await;
    assert_eq!(
        all["chunk"].as_array().unwrap().last().unwrap()["type"],
        "m.room.create"
    );
    let (_, past) = s
        .get(
            &room_path(
                &room,
                &format!("/messages?dir=b&from={}", all["end"].as_str().unwrap()),
            ),
            &alice.token,
        )
        .await;
    assert_eq!(past["chunk"], json!([]));
    assert!(past.get("end").is_none());
    assert_error(
        &s.get(&room_path(&room, "/messages?dir=x"), &alice.token)
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.get(&room_path(&room, "/messages?from=zzz"), &alice.token)
            .await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn single_events_and_members() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let event_id = s.send_text(&bob, &room, "hello").await;
    let (status, event) = s
        .get(
            &room_path(&room, &format!("/event/{}", enc(&event_id))),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event["sender"], bob.user_id);
    assert_eq!(event["content"]["body"], "hello");
    assert_eq!(event["room_id"], room);
    assert!(event["unsigned"]["age"].is_number());
    assert_error(
        &s.get(&room_path(&room, "/event/%24nope"), &alice.token)
            .await,
        404,
        "M_NOT_FOUND",
    );

    let (_, members) = s.get(&room_path(&room, "/members"), &alice.token).await;
    let ids: Vec<&str> = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&alice.user_id.as_str()) && ids.contains(&bob.user_id.as_str()));
    let (_, joined) = s
        .get(&room_path(&room, "/joined_members"), &alice.token)
        .await;
    assert_eq!(joined["joined"][&bob.user_id]["display_name"], "bob");

    assert_eq!(
        s.post(&room_path(&room, "/leave"), &bob.token, json!({}))
            .await
            .0,
        StatusCode::OK
    );
    let (_, members) = s
        .get(&room_path(&room, "/members?membership=join"), &alice.token)
        .await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 1);
    // After leaving, Bob still sees history up to his leave, but not after.
    let later = s.send_text(&alice, &room, "after bob left").await;
    assert_eq!(
        s.get(
            &room_path(&room, &format!("/event/{}", enc(&event_id))),
            &bob.token
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_error(
        &s.get(
            &room_path(&room, &format!("/event/{}", enc(&later))),
            &bob.token,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    // Leaving twice is refused.
    assert_error(
        &s.post(&room_path(&room, "/leave"), &bob.token, json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
}

/// Identical messages sent at once (same sender, content, parents and
/// millisecond) would hash to one event ID; each send still gets its own.
#[tokio::test]
async fn identical_messages_sent_at_once_are_distinct_events() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..20 {
        let request = s
            .http
            .put(format!(
                "{}/_matrix/client/v3/rooms/{}/send/m.room.message/same{i}",
                s.base,
                enc(&room)
            ))
            .bearer_auth(&alice.token)
            .json(&json!({ "msgtype": "m.text", "body": "same" }));
        sends.spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() });
    }
    let mut ids: Vec<String> = sends
        .join_all()
        .await
        .into_iter()
        .map(|body| {
            body["event_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "one event per send");
}

#[tokio::test]
async fn a_left_room_is_forgotten_until_joined_again() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    s.send_text(&alice, &room, "before bob left").await;
    let forget = room_path(&room, "/forget");
    assert_error(
        &s.post(&forget, &bob.token, json!({})).await,
        400,
        "M_UNKNOWN",
    );
    s.post(&room_path(&room, "/leave"), &bob.token, json!({}))
        .await;
    // Left, Bob can still read what he saw; forgotten, he cannot.
    let messages = room_path(&room, "/messages?dir=b");
    assert_eq!(s.get(&messages, &bob.token).await.0, StatusCode::OK);
    assert_eq!(
        s.post(&forget, &bob.token, json!({})).await.0,
        StatusCode::OK
    );
    assert_error(&s.get(&messages, &bob.token).await, 403, "M_FORBIDDEN");
    let (_, sync) = s.get("/sync?full_state=true", &bob.token).await;
    assert!(sync["rooms"]["leave"].get(&room).is_none());
    // Joining again brings it back.
    s.join(&bob, &room).await;
    assert_eq!(s.get(&messages, &bob.token).await.0, StatusCode::OK);
}
