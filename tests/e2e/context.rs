//! `/rooms/{id}/context/{event}`: the events around one, tokens to page on
//! from either end, the state, and lazy-loaded members.

use axon_testkit::*;
use serde_json::{json, Value};

fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn the_context_of_an_event_pages_on_from_both_ends() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(s.send_text(&alice, &room, &format!("m{i}")).await);
    }
    let path = format!("/rooms/{}/context/{}?limit=4", enc(&room), enc(&ids[3]));
    let (status, context) = s.get(&path, &bob.token).await;
    assert_eq!(status, 200, "{context}");
    assert_eq!(context["event"]["event_id"], ids[3]);
    assert_eq!(bodies(&context["events_before"]), ["m2", "m1"]);
    assert_eq!(bodies(&context["events_after"]), ["m4", "m5"]);
    let state = context["state"].as_array().unwrap();
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));
    let members: Vec<_> = state
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(members.contains(&bob.user_id.as_str()), "{members:?}");
    let start = context["start"].as_str().unwrap();
    let (_, older) = s
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=1&from={start}", enc(&room)),
            &bob.token,
        )
        .await;
    assert_eq!(bodies(&older["chunk"]), ["m0"]);
    let end = context["end"].as_str().unwrap();
    let (_, newer) = s
        .get(
            &format!("/rooms/{}/messages?dir=f&limit=5&from={end}", enc(&room)),
            &bob.token,
        )
        .await;
    assert_eq!(bodies(&newer["chunk"]), ["m6"]);
    // Lazy-loaded: only the members who sent what is shown.
    let filter = enc(&json!({ "lazy_load_members": true }).to_string());
    let (_, lazy) = s
        .get(
            &format!(
                "/rooms/{}/context/{}?limit=4&filter={filter}",
                enc(&room),
                enc(&ids[3])
            ),
            &bob.token,
        )
        .await;
    let members: Vec<_> = lazy["state"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members, [alice.user_id.to_string()]);
}

#[tokio::test]
async fn context_errors() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let carol = s.register("carol").await;
    let room = s.create_room(&alice, json!({})).await;
    let message = s.send_text(&alice, &room, "private").await;
    let path = |event: &str| format!("/rooms/{}/context/{}", enc(&room), enc(event));
    assert_error(
        &s.get(&path("$missing:test.local"), &alice.token).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&path(&message), &carol.token).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.get(&format!("{}?filter=notjson", path(&message)), &alice.token)
            .await,
        400,
        "M_BAD_JSON",
    );
}
