//! `/v1/rooms/{id}/hierarchy`: a space's rooms, breadth first, as far as
//! the user may see them, with `suggested_only`, `max_depth` and paging.

use axon_testkit::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

async fn add_child(s: &TestServer, user: &User, space: &str, child: &str, suggested: bool) {
    let path = format!("/rooms/{}/state/m.space.child/{}", enc(space), enc(child));
    let body = json!({ "via": ["test.local"], "suggested": suggested });
    let (status, answer) = s.put(&path, &user.token, body).await;
    assert_eq!(status, 200, "{answer}");
}

fn room_ids(page: &Value) -> Vec<String> {
    page["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no rooms in {page}"))
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_space_hierarchy_shows_what_the_user_may_see() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let public = json!({ "preset": "public_chat" });
    let space = s
        .create_room(&alice, json!({ "preset": "public_chat", "name": "Space", "creation_content": { "type": "m.space" } }))
        .await;
    let lobby = s
        .create_room(&alice, json!({ "preset": "public_chat", "name": "Lobby" }))
        .await;
    let secret = s
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let sub = s
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let deep = s.create_room(&alice, public).await;
    add_child(&s, &alice, &space, &lobby, true).await;
    add_child(&s, &alice, &space, &secret, false).await;
    add_child(&s, &alice, &space, &sub, false).await;
    add_child(&s, &alice, &sub, &deep, false).await;

    let base = format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&space));
    let (status, page) = s.get(&base, &bob.token).await;
    assert_eq!(status, 200, "{page}");
    let ids = room_ids(&page);
    assert_eq!(ids[0], space);
    let all: BTreeSet<_> = ids.iter().cloned().collect();
    let expected: BTreeSet<_> = [&space, &lobby, &sub, &deep].into_iter().cloned().collect();
    assert_eq!(all, expected, "the private room stays hidden from Bob");
    let root = &page["rooms"][0];
    assert_eq!(root["name"], "Space");
    assert_eq!(root["room_type"], "m.space");
    assert_eq!(root["join_rule"], "public");
    assert_eq!(root["children_state"].as_array().unwrap().len(), 3);
    // Alice, in every room, sees the private one too.
    let (_, hers) = s.get(&base, &alice.token).await;
    assert!(room_ids(&hers).contains(&secret));
    let (_, suggested) = s
        .get(&format!("{base}?suggested_only=true"), &bob.token)
        .await;
    assert_eq!(room_ids(&suggested), [space.clone(), lobby.clone()]);
    let (_, shallow) = s.get(&format!("{base}?max_depth=1"), &bob.token).await;
    assert!(!room_ids(&shallow).contains(&deep));
    // Two at a time.
    let (_, first) = s.get(&format!("{base}?limit=2"), &bob.token).await;
    assert_eq!(room_ids(&first).len(), 2);
    let next = first["next_batch"].as_str().unwrap();
    let (_, rest) = s
        .get(&format!("{base}?limit=2&from={next}"), &bob.token)
        .await;
    let mut paged = room_ids(&first);
    paged.extend(room_ids(&rest));
    assert_eq!(paged, ids);
}

#[tokio::test]
async fn a_private_space_is_refused_to_outsiders() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let carol = s.register("carol").await;
    let space = s
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let base = format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&space));
    assert_error(&s.get(&base, &carol.token).await, 403, "M_FORBIDDEN");
    assert_error(
        &s.get(
            "/_matrix/client/v1/rooms/%21nope%3Atest.local/hierarchy",
            &carol.token,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("{base}?from=zzz"), &alice.token).await,
        400,
        "M_INVALID_PARAM",
    );
}
