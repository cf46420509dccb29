//! Knocking: `POST /knock/{roomIdOrAlias}` on a room whose join rule is
//! `knock`; the knock shows in `/sync` `rooms.knock`, members invite or
//! kick the knocker.

use axon_testkit::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn knock_room(s: &TestServer, owner: &User, alias: Option<&str>) -> String {
    let mut body = json!({
        "preset": "private_chat",
        "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }],
    });
    if let Some(alias) = alias {
        body["room_alias_name"] = json!(alias);
    }
    s.create_room(owner, body).await
}

fn member_events<'a>(sync: &'a Value, section: &str, room: &str) -> Vec<&'a Value> {
    let key = if section == "knock" {
        "knock_state"
    } else {
        "invite_state"
    };
    sync["rooms"][section][room][key]["events"]
        .as_array()
        .map(|events| events.iter().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_knock_is_seen_and_answered_with_an_invite() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = knock_room(&s, &alice, Some("knockers")).await;
    let (_, before) = s.get("/sync", &alice.token).await;
    let since = before["next_batch"].as_str().unwrap().to_string();

    let (status, body) = s
        .post(
            &format!("/knock/{}", enc("#knockers:test.local")),
            &bob.token,
            json!({ "reason": "let me in" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "room_id": room }));

    // Bob sees the room he knocked on, stripped.
    let (_, synced) = s.get("/sync", &bob.token).await;
    let state = member_events(&synced, "knock", &room);
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.join_rules" && e["content"]["join_rule"] == "knock"),
        "{synced}"
    );
    let own = state
        .iter()
        .find(|e| e["type"] == "m.room.member")
        .expect("bob's knock");
    assert_eq!(own["content"]["membership"], "knock");
    assert_eq!(own["content"]["reason"], "let me in");
    assert!(synced["rooms"]["join"].get(&room).is_none());

    // Alice sees the knock in her timeline.
    let (_, alices) = s
        .get(&format!("/sync?since={since}&timeout=0"), &alice.token)
        .await;
    let timeline = alices["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert!(timeline.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == bob.user_id
        && e["content"]["membership"] == "knock"));

    // She lets him in.
    let (status, _) = s.invite(&alice, &room, &bob.user_id).await;
    assert_eq!(status, StatusCode::OK);
    let (_, synced) = s.get("/sync", &bob.token).await;
    assert!(synced["rooms"]["knock"].get(&room).is_none(), "{synced}");
    assert!(
        !member_events(&synced, "invite", &room).is_empty(),
        "{synced}"
    );
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_knock_can_be_withdrawn_or_refused() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = knock_room(&s, &alice, None).await;
    let knock = format!("/knock/{}", enc(&room));
    assert_eq!(
        s.post(&knock, &bob.token, json!({})).await.0,
        StatusCode::OK
    );
    // Bob withdraws.
    let (status, _) = s
        .post(
            &format!("/rooms/{}/leave", enc(&room)),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Knocks again; alice refuses (a kick of a knock).
    assert_eq!(
        s.post(&knock, &bob.token, json!({})).await.0,
        StatusCode::OK
    );
    let (status, body) = s
        .post(
            &format!("/rooms/{}/kick", enc(&room)),
            &alice.token,
            json!({ "user_id": bob.user_id, "reason": "not now" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let member = s.member(&alice, &room, &bob.user_id).await;
    assert_eq!(member["membership"], "leave");
}

#[tokio::test]
async fn knock_errors() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let invite_only = s
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    assert_error(
        &s.post(
            &format!("/knock/{}", enc(&invite_only)),
            &bob.token,
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    let room = knock_room(&s, &alice, None).await;
    let knock = format!("/knock/{}", enc(&room));
    // Alice is in the room already.
    assert_error(
        &s.post(&knock, &alice.token, json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    // A banned user may not knock.
    s.post(
        &format!("/rooms/{}/ban", enc(&room)),
        &alice.token,
        json!({ "user_id": bob.user_id }),
    )
    .await;
    assert_error(
        &s.post(&knock, &bob.token, json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(
            &format!("/knock/{}", enc("#nowhere:test.local")),
            &bob.token,
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.post(
            &format!("/knock/{}", enc("!nothere:test.local")),
            &bob.token,
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
}
