//! Typing notifications: seen by the other member, stopped, expired, and
//! refused for someone else or outside the room.

use axon_testkit::*;
use serde_json::{json, Value};

/// The typers of a room in a sync, if the room's list is in it.
fn typers_in(sync: &Value, room: &str) -> Option<Vec<String>> {
    let event = sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.typing")?;
    Some(
        event["content"]["user_ids"]
            .as_array()?
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect(),
    )
}

fn next(sync: &Value) -> String {
    sync["next_batch"].as_str().unwrap().to_string()
}

async fn room_with_bob(s: &TestServer) -> (User, User, String) {
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    (alice, bob, room)
}

#[tokio::test]
async fn typing_is_seen_by_the_other_member_until_it_stops() {
    let s = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&s).await;
    let (_, sync) = s.get("/sync", &bob.token).await;
    assert_eq!(typers_in(&sync, &room), None);
    let path = format!(
        "/rooms/{}/typing/{}",
        enc(&room),
        enc(alice.user_id.as_str())
    );
    let (status, body) = s
        .put(
            &path,
            &alice.token,
            json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    assert_eq!((status.as_u16(), &body), (200, &json!({})));
    let (_, after) = s
        .get(
            &format!("/sync?since={}&timeout=5000", next(&sync)),
            &bob.token,
        )
        .await;
    assert_eq!(
        typers_in(&after, &room),
        Some(vec![alice.user_id.to_string()])
    );
    // A new device's initial sync shows who types now.
    let (_, initial) = s.get("/sync", &bob.token).await;
    assert_eq!(
        typers_in(&initial, &room),
        Some(vec![alice.user_id.to_string()])
    );
    // Typing again changes nothing: no new list.
    s.put(
        &path,
        &alice.token,
        json!({ "typing": true, "timeout": 30000 }),
    )
    .await;
    let (_, again) = s
        .get(
            &format!("/sync?since={}&timeout=0", next(&after)),
            &bob.token,
        )
        .await;
    assert_eq!(typers_in(&again, &room), None);
    s.put(&path, &alice.token, json!({ "typing": false })).await;
    let (_, stopped) = s
        .get(
            &format!("/sync?since={}&timeout=5000", next(&again)),
            &bob.token,
        )
        .await;
    assert_eq!(typers_in(&stopped, &room), Some(vec![]));
}

#[tokio::test]
async fn a_typer_whose_timeout_passes_stops_typing() {
    let s = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&s).await;
    let (_, sync) = s.get("/sync", &bob.token).await;
    let mut since = next(&sync);
    let path = format!(
        "/rooms/{}/typing/{}",
        enc(&room),
        enc(alice.user_id.as_str())
    );
    s.put(
        &path,
        &alice.token,
        json!({ "typing": true, "timeout": 200 }),
    )
    .await;
    // Bob's long-polls see Alice typing, then the list emptied by the expiry.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (_, sync) = s
            .get(&format!("/sync?since={since}&timeout=10000"), &bob.token)
            .await;
        since = next(&sync);
        if let Some(typers) = typers_in(&sync, &room) {
            seen.push(typers.len());
            if typers.is_empty() {
                break;
            }
        }
    }
    assert_eq!(seen.last(), Some(&0), "the typer expired: {seen:?}");
}

#[tokio::test]
async fn typing_for_someone_else_or_outside_the_room_is_refused() {
    let s = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&s).await;
    let carol = s.register("carol").await;
    let typing = |user: &User| {
        format!(
            "/rooms/{}/typing/{}",
            enc(&room),
            enc(user.user_id.as_str())
        )
    };
    assert_error(
        &s.put(&typing(&alice), &bob.token, json!({ "typing": true }))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(&typing(&carol), &carol.token, json!({ "typing": true }))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(&typing(&bob), &bob.token, json!({ "timeout": 1000 }))
            .await,
        400,
        "M_BAD_JSON",
    );
    let (_, sync) = s.get("/sync", &alice.token).await;
    assert_eq!(typers_in(&sync, &room), None);
}
