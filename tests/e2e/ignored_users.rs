//! `m.ignored_user_list`: an ignored user's messages and invites stay out
//! of the ignoring user's `/sync`.

use axon_testkit::*;
use serde_json::{json, Value};

fn bodies(sync: &Value, room: &str) -> Vec<String> {
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
async fn an_ignored_users_messages_and_invites_are_not_synced() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let mallory = s.register("mallory").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    s.join(&mallory, &room).await;
    let ignore = json!({ "ignored_users": { mallory.user_id.as_str(): {} } });
    let path = format!(
        "/user/{}/account_data/m.ignored_user_list",
        enc(bob.user_id.as_str())
    );
    assert_eq!(s.put(&path, &bob.token, ignore).await.0, 200);
    let (_, sync) = s.get("/sync", &bob.token).await;
    let since = sync["next_batch"].as_str().unwrap().to_string();
    s.send_text(&mallory, &room, "spam").await;
    s.send_text(&alice, &room, "hello").await;
    let (_, sync) = s
        .get(&format!("/sync?since={since}&timeout=0"), &bob.token)
        .await;
    assert_eq!(bodies(&sync, &room), ["hello"]);
    let (_, initial) = s.get("/sync", &bob.token).await;
    assert!(!bodies(&initial, &room).contains(&"spam".to_string()));
    // Alice, who ignores nobody, sees both.
    let (_, hers) = s.get("/sync", &alice.token).await;
    assert!(bodies(&hers, &room).contains(&"spam".to_string()));
    // Mallory's invite does not reach Bob.
    let private = s.create_room(&mallory, json!({})).await;
    assert_eq!(
        s.invite(&mallory, &private, bob.user_id.as_str()).await.0,
        200
    );
    let (_, sync) = s.get("/sync", &bob.token).await;
    assert!(
        sync["rooms"]["invite"].get(&private).is_none(),
        "{}",
        sync["rooms"]["invite"]
    );
}
