//! Room upgrades: `POST /rooms/{room}/upgrade` makes a room of the new
//! version with the old one's state, and retires the old room.

use axon_testkit::*;
use reqwest::StatusCode;
use serde_json::json;

async fn state(s: &TestServer, user: &User, room: &str, event_type: &str) -> serde_json::Value {
    let (status, body) = s
        .get(
            &format!("/rooms/{}/state/{event_type}/", enc(room)),
            &user.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{event_type}: {body}");
    body
}

#[tokio::test]
async fn an_upgrade_carries_the_room_over_and_retires_the_old_one() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let (_, created) = s
        .post(
            "/createRoom",
            &alice.token,
            json!({ "preset": "public_chat", "visibility": "public", "name": "Old times",
                    "topic": "before the upgrade", "room_alias_name": "old" }),
        )
        .await;
    let old = created["room_id"].as_str().unwrap().to_string();
    assert_eq!(s.join(&bob, &old).await.0, StatusCode::OK);
    assert_eq!(s.join(&carol, &old).await.0, StatusCode::OK);
    let (status, _) = s
        .post(
            &format!("/rooms/{}/ban", enc(&old)),
            &alice.token,
            json!({ "user_id": carol.user_id, "reason": "spam" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Per-room settings of alice and bob.
    for user in [&alice, &bob] {
        let (status, _) = s
            .put(
                &format!("/pushrules/global/room/{}", enc(&old)),
                &user.token,
                json!({ "actions": [] }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    s.put(
        &format!(
            "/user/{}/rooms/{}/tags/m.favourite",
            enc(&alice.user_id),
            enc(&old)
        ),
        &alice.token,
        json!({ "order": 0.1 }),
    )
    .await;

    let (status, body) = s
        .post(
            &format!("/rooms/{}/upgrade", enc(&old)),
            &alice.token,
            json!({ "new_version": "11" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = body["replacement_room"].as_str().unwrap().to_string();
    assert_ne!(new, old);

    // The new room: the new version, its predecessor, the old state.
    let create = state(&s, &alice, &new, "m.room.create").await;
    assert_eq!(create["room_version"], "11");
    assert_eq!(create["predecessor"]["room_id"], old);
    assert_eq!(
        state(&s, &alice, &new, "m.room.name").await["name"],
        "Old times"
    );
    assert_eq!(
        state(&s, &alice, &new, "m.room.topic").await["topic"],
        "before the upgrade"
    );
    assert_eq!(
        state(&s, &alice, &new, "m.room.join_rules").await["join_rule"],
        "public"
    );
    let levels = state(&s, &alice, &new, "m.room.power_levels").await;
    assert_eq!(levels["users"][&alice.user_id], 100);
    assert_eq!(levels["events_default"], 0);
    let ban = s.member(&alice, &new, &carol.user_id).await;
    assert_eq!(ban["membership"], "ban");

    // The old room: tombstoned, and ordinary members may no longer talk.
    let tombstone = state(&s, &alice, &old, "m.room.tombstone").await;
    assert_eq!(tombstone["replacement_room"], new);
    let old_levels = state(&s, &alice, &old, "m.room.power_levels").await;
    assert_eq!(old_levels["events_default"], 50);
    assert_eq!(old_levels["invite"], 50);
    let refused = s
        .put(
            &format!("/rooms/{}/send/m.room.message/t1", enc(&old)),
            &bob.token,
            json!({ "msgtype": "m.text", "body": "still here?" }),
        )
        .await;
    assert_error(&refused, 403, "M_FORBIDDEN");

    // The alias, the canonical alias and the directory listing moved.
    let (_, resolved) = s
        .get(
            &format!("/directory/room/{}", enc("#old:test.local")),
            &bob.token,
        )
        .await;
    assert_eq!(resolved["room_id"], new);
    assert_eq!(
        state(&s, &alice, &new, "m.room.canonical_alias").await["alias"],
        "#old:test.local"
    );
    assert_eq!(
        state(&s, &alice, &old, "m.room.canonical_alias").await,
        json!({})
    );
    let (_, public) = s.get("/publicRooms", &bob.token).await;
    let listed: Vec<&str> = public["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [new.as_str()]);

    // Alice's room rule and tag came along; bob's come when he joins.
    let (status, _) = s
        .get(
            &format!("/pushrules/global/room/{}", enc(&new)),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, tags) = s
        .get(
            &format!("/user/{}/rooms/{}/tags", enc(&alice.user_id), enc(&new)),
            &alice.token,
        )
        .await;
    assert_eq!(tags, json!({ "tags": { "m.favourite": { "order": 0.1 } } }));
    let bobs_rule = format!("/pushrules/global/room/{}", enc(&new));
    assert_error(&s.get(&bobs_rule, &bob.token).await, 404, "M_NOT_FOUND");
    assert_eq!(s.join(&bob, &new).await.0, StatusCode::OK);
    let (status, rule) = s.get(&bobs_rule, &bob.token).await;
    assert_eq!(status, StatusCode::OK, "{rule}");
    assert_eq!(rule["actions"], json!([]));
}

#[tokio::test]
async fn upgrade_errors() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let eve = s.register("eve").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let path = format!("/rooms/{}/upgrade", enc(&room));
    let refused = s
        .post(&path, &alice.token, json!({ "new_version": "99" }))
        .await;
    assert_error(&refused, 400, "M_UNSUPPORTED_ROOM_VERSION");
    assert_error(
        &s.post(&path, &alice.token, json!({})).await,
        400,
        "M_MISSING_PARAM",
    );
    assert_error(
        &s.post(&path, &alice.token, json!({ "new_version": 11 }))
            .await,
        400,
        "M_BAD_JSON",
    );
    // Bob may not send the tombstone; eve is not in the room.
    assert_error(
        &s.post(&path, &bob.token, json!({ "new_version": "11" }))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(&path, &eve.token, json!({ "new_version": "11" }))
            .await,
        403,
        "M_FORBIDDEN",
    );
    // Nothing was made: the room has no tombstone.
    assert_error(
        &s.get(
            &format!("/rooms/{}/state/m.room.tombstone/", enc(&room)),
            &alice.token,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
}
