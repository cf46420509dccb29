//! `/sync` over HTTP: initial and incremental, long-polling, invites,
//! leaves, presence and account data.

use axon_testkit::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn sync(s: &TestServer, user: &User, since: Option<&str>, timeout_ms: u64) -> Value {
    let path = match since {
        Some(since) => format!("/sync?since={since}&timeout={timeout_ms}"),
        None => "/sync".to_string(),
    };
    let (status, body) = s.get(&path, &user.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn timeline_bodies(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .map(|e| e["content"]["body"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn initial_sync_has_the_rooms_state_and_timeline() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({ "name": "Room" })).await;
    s.send_text(&alice, &room, "first").await;
    let body = sync(&s, &alice, None, 0).await;
    assert!(body["next_batch"].is_string());
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(timeline_bodies(&body, &room), ["first"]);
    let timeline = joined["timeline"]["events"].as_array().unwrap();
    assert!(
        timeline.iter().all(|e| e.get("room_id").is_none()),
        "no room_id inside /sync rooms"
    );
    // The timeline holds the latest 10 events; state holds what came before.
    assert_eq!(joined["timeline"]["limited"], false);
    assert_eq!(timeline.first().unwrap()["type"], "m.room.create");
}

#[tokio::test]
async fn incremental_sync_has_only_what_is_new() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let first = sync(&s, &alice, None, 0).await;
    let since = first["next_batch"].as_str().unwrap().to_string();
    s.send_text(&alice, &room, "new").await;
    let next = sync(&s, &alice, Some(&since), 0).await;
    assert_eq!(timeline_bodies(&next, &room), ["new"]);
    assert_eq!(
        next["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Nothing new: no rooms.
    let idle = sync(&s, &alice, Some(next["next_batch"].as_str().unwrap()), 0).await;
    assert_eq!(idle["rooms"]["join"], json!({}));
    assert_eq!(idle["next_batch"], next["next_batch"]);
}

#[tokio::test]
async fn a_gap_larger_than_the_limit_is_limited_with_the_state_in_between() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let since = sync(&s, &alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_string();
    s.put(
        &format!("/rooms/{}/state/m.room.topic/", enc(&room)),
        &alice.token,
        json!({ "topic": "changed early" }),
    )
    .await;
    for i in 0..12 {
        s.send_text(&alice, &room, &format!("m{i}")).await;
    }
    let next = sync(&s, &alice, Some(&since), 0).await;
    let joined = &next["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true);
    assert_eq!(joined["timeline"]["events"].as_array().unwrap().len(), 10);
    let state_types: Vec<&str> = joined["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        state_types,
        ["m.room.topic"],
        "only state that changed in the gap"
    );
    // prev_batch continues backwards from the timeline's start.
    let prev = joined["timeline"]["prev_batch"].as_str().unwrap();
    let (_, older) = s
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=2&from={prev}", enc(&room)),
            &alice.token,
        )
        .await;
    let bodies: Vec<&str> = older["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap_or("(state)"))
        .collect();
    assert_eq!(bodies, ["m1", "m0"]);
    // A filter can raise the limit.
    let (_, filter) = s
        .post(
            &format!("/user/{}/filter", enc(&alice.user_id)),
            &alice.token,
            json!({ "room": { "timeline": { "limit": 50 } } }),
        )
        .await;
    let (_, big) = s
        .get(
            &format!(
                "/sync?since={since}&filter={}",
                filter["filter_id"].as_str().unwrap()
            ),
            &alice.token,
        )
        .await;
    assert_eq!(big["rooms"]["join"][&room]["timeline"]["limited"], false);
}

#[tokio::test]
async fn long_poll_returns_when_a_message_arrives() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let since = sync(&s, &bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let (poll, _) = tokio::join!(sync(&s, &bob, Some(&since), 30_000), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.send_text(&alice, &room, "wake up").await;
    });
    assert_eq!(timeline_bodies(&poll, &room), ["wake up"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the message, not the timeout"
    );

    // With nothing new, the long poll ends at its timeout with an empty answer.
    let started = Instant::now();
    let idle = sync(&s, &bob, Some(poll["next_batch"].as_str().unwrap()), 500).await;
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(idle["rooms"]["join"], json!({}));
}

#[tokio::test]
async fn invites_and_leaves_show_in_sync() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "name": "Secret club" }))
        .await;
    let since = sync(&s, &bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_string();
    s.invite(&alice, &room, &bob.user_id).await;
    let invited = sync(&s, &bob, Some(&since), 0).await;
    let invite_state = invited["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .unwrap();
    let name = invite_state
        .iter()
        .find(|e| e["type"] == "m.room.name")
        .unwrap();
    assert_eq!(name["content"]["name"], "Secret club");
    let me = invite_state
        .iter()
        .find(|e| e["type"] == "m.room.member")
        .unwrap();
    assert_eq!(me["content"]["membership"], "invite");
    assert_eq!(me["sender"], alice.user_id);

    s.join(&bob, &room).await;
    let since = invited["next_batch"].as_str().unwrap().to_string();
    let joined = sync(&s, &bob, Some(&since), 0).await;
    assert!(joined["rooms"]["join"].get(&room).is_some(), "{joined}");

    let since = joined["next_batch"].as_str().unwrap().to_string();
    s.post(
        &format!("/rooms/{}/kick", enc(&room)),
        &alice.token,
        json!({ "user_id": bob.user_id }),
    )
    .await;
    let left = sync(&s, &bob, Some(&since), 0).await;
    let events = left["rooms"]["leave"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert_eq!(events.last().unwrap()["content"]["membership"], "leave");
    assert!(left["rooms"]["join"].get(&room).is_none());
}

#[tokio::test]
async fn presence_and_account_data_reach_sync() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let since = sync(&s, &bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, _) = s
        .put(
            &format!("/presence/{}/status", enc(&alice.user_id)),
            &alice.token,
            json!({ "presence": "unavailable", "status_msg": "lunch" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .put(
            &format!(
                "/user/{}/account_data/org.example.settings",
                enc(&bob.user_id)
            ),
            &bob.token,
            json!({ "theme": "dark" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .put(
            &format!(
                "/user/{}/rooms/{}/account_data/m.tag.test",
                enc(&bob.user_id),
                enc(&room)
            ),
            &bob.token,
            json!({ "x": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let next = sync(&s, &bob, Some(&since), 0).await;
    let presence = next["presence"]["events"].as_array().unwrap();
    let alices = presence
        .iter()
        .find(|p| p["sender"] == alice.user_id)
        .expect("alice's presence");
    assert_eq!(alices["content"]["presence"], "unavailable");
    assert_eq!(alices["content"]["status_msg"], "lunch");
    assert_eq!(
        next["account_data"]["events"],
        json!([{ "type": "org.example.settings", "content": { "theme": "dark" } }])
    );
    assert_eq!(
        next["rooms"]["join"][&room]["account_data"]["events"],
        json!([{ "type": "m.tag.test", "content": { "x": 1 } }])
    );

    let (_, status) = s
        .get(
            &format!("/presence/{}/status", enc(&alice.user_id)),
            &bob.token,
        )
        .await;
    assert_eq!(status["presence"], "unavailable");
    let (_, data) = s
        .get(
            &format!(
                "/user/{}/account_data/org.example.settings",
                enc(&bob.user_id)
            ),
            &bob.token,
        )
        .await;
    assert_eq!(data, json!({ "theme": "dark" }));
}

#[tokio::test]
async fn lazy_loading_sends_only_the_members_a_client_needs_and_each_once() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    // Named: an unnamed room's heroes would be sent too.
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat", "name": "Lazy" }))
        .await;
    let mut quiet = Vec::new();
    for i in 0..5 {
        let user = s.register(&format!("quiet{i}")).await;
        assert_eq!(s.join(&user, &room).await.0, StatusCode::OK);
        quiet.push(user);
    }
    let bob = s.register("bob").await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    s.send_text(&alice, &room, "hello").await;
    let lazy = enc(r#"{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":1}}}"#);
    let members = |sync: &Value| -> Vec<String> {
        let mut keys: Vec<String> = sync["rooms"]["join"][&room]["state"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.member")
            .map(|e| e["state_key"].as_str().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    };
    // The initial sync's state: the timeline's sender and bob himself,
    // not the five who said nothing.
    let (_, first) = s.get(&format!("/sync?filter={lazy}"), &bob.token).await;
    let mut expected = vec![alice.user_id.clone(), bob.user_id.clone()];
    expected.sort();
    assert_eq!(members(&first), expected, "{first}");
    // A quiet member speaks: an incremental sync brings their membership
    // once; their next message comes without it.
    let since = first["next_batch"].as_str().unwrap();
    s.send_text(&quiet[0], &room, "I exist").await;
    let (_, next) = s
        .get(&format!("/sync?filter={lazy}&since={since}"), &bob.token)
        .await;
    assert_eq!(members(&next), [quiet[0].user_id.clone()], "{next}");
    let since = next["next_batch"].as_str().unwrap();
    s.send_text(&quiet[0], &room, "again").await;
    let (_, again) = s
        .get(&format!("/sync?filter={lazy}&since={since}"), &bob.token)
        .await;
    assert_eq!(members(&again), Vec::<String>::new(), "{again}");
    // Without lazy-loading, every member is there.
    let eager = enc(r#"{"room":{"timeline":{"limit":1}}}"#);
    let (_, full) = s.get(&format!("/sync?filter={eager}"), &bob.token).await;
    assert_eq!(members(&full).len(), 7);
}

#[tokio::test]
async fn an_event_reaches_a_client_once() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    let first = sync(&s, &bob, None, 0).await;
    let mut since = first["next_batch"].as_str().unwrap().to_string();
    let alice_since = sync(&s, &alice, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = s
        .put(
            &format!("/profile/{}/displayname", enc(&alice.user_id)),
            &alice.token,
            json!({ "displayname": "Alice Liddell" }),
        )
        .await;
    assert_eq!(status, 200);
    s.send_text(&alice, &room, "after the rename").await;
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..3 {
        let next = sync(&s, &bob, Some(&since), 200).await;
        let joined = &next["rooms"]["join"][&room];
        for section in ["timeline", "state"] {
            for event in joined[section]["events"].as_array().into_iter().flatten() {
                seen.push(event["event_id"].as_str().unwrap().to_string());
            }
        }
        since = next["next_batch"].as_str().unwrap().to_string();
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(seen.len(), unique.len(), "delivered twice: {seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");

    // A profile change is not a new join: alice's own sync has the two new
    // events, not the room from its start (Element warned of duplicates).
    let own = sync(&s, &alice, Some(&alice_since), 0).await;
    let timeline = &own["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], false, "{own}");
    assert_eq!(timeline["events"].as_array().unwrap().len(), 2, "{own}");
}

#[tokio::test]
async fn an_unnamed_room_has_heroes_and_member_counts() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    s.invite(&alice, &room, &carol.user_id).await;
    let (_, synced) = s.get("/sync", &alice.token).await;
    let summary = &synced["rooms"]["join"][&room]["summary"];
    assert_eq!(
        *summary,
        json!({
            "m.joined_member_count": 2,
            "m.invited_member_count": 1,
            "m.heroes": [bob.user_id, carol.user_id],
        })
    );
    // Lazy-loading still sends the heroes' memberships.
    let filter = enc(r#"{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":1}}}"#);
    let (_, lazy) = s.get(&format!("/sync?filter={filter}"), &bob.token).await;
    let joined = &lazy["rooms"]["join"][&room];
    let state = joined["state"]["events"].as_array().unwrap();
    let timeline = joined["timeline"]["events"].as_array().unwrap();
    for hero in [&alice.user_id, &carol.user_id] {
        assert!(
            state
                .iter()
                .chain(timeline)
                .any(|e| e["type"] == "m.room.member" && e["state_key"] == hero.as_str()),
            "{hero} missing from {lazy}"
        );
    }
    // A named room has no heroes.
    s.put(
        &format!("/rooms/{}/state/m.room.name/", enc(&room)),
        &alice.token,
        json!({ "name": "Named" }),
    )
    .await;
    let (_, named) = s.get("/sync", &alice.token).await;
    assert!(
        named["rooms"]["join"][&room]["summary"]
            .get("m.heroes")
            .is_none(),
        "{named}"
    );
}

#[tokio::test]
async fn filters_of_the_wrong_shape_are_refused() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let path = format!("/user/{}/filter", enc(&alice.user_id));
    for bad in [
        json!({ "room": { "state": { "lazy_load_members": "true" } } }),
        json!({ "room": { "timeline": { "limit": "10" } } }),
        json!({ "room": { "rooms": "!a:b" } }),
        json!({ "presence": { "types": [1] } }),
        json!({ "event_format": "xml" }),
        json!({ "room": [] }),
    ] {
        let refused = s.post(&path, &alice.token, bad.clone()).await;
        assert_error(&refused, 400, "M_BAD_JSON");
    }
    let (status, body) = s
        .post(
            &path,
            &alice.token,
            json!({ "room": { "state": { "lazy_load_members": true }, "timeline": { "limit": 5 } },
                    "org.example.future_field": { "anything": 1 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Inline filters get the same checks; an ID must be one of the user's.
    let inline = enc(r#"{"room":{"timeline":{"limit":"x"}}}"#);
    assert_error(
        &s.get(&format!("/sync?filter={inline}"), &alice.token).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &s.get(&format!("/sync?filter={}", enc("{not json")), &alice.token)
            .await,
        400,
        "M_NOT_JSON",
    );
    assert_error(
        &s.get("/sync?filter=12345", &alice.token).await,
        400,
        "M_INVALID_PARAM",
    );
    let id = body["filter_id"].as_str().unwrap();
    let (status, _) = s.get(&format!("/sync?filter={id}"), &alice.token).await;
    assert_eq!(status, StatusCode::OK);
}
