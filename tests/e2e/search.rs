//! `POST /search`: messages found by their words, only in rooms the user is
//! in, by rank or recency, a page at a time; redacted ones are not found.

use axon_testkit::*;
use serde_json::{json, Value};

fn bodies(answer: &Value) -> Vec<String> {
    answer["search_categories"]["room_events"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["content"]["body"].as_str().unwrap().to_string())
        .collect()
}

fn query(term: &str, extra: Value) -> Value {
    let mut criteria = json!({ "search_term": term });
    if let (Value::Object(c), Value::Object(e)) = (&mut criteria, extra) {
        c.extend(e);
    }
    json!({ "search_categories": { "room_events": criteria } })
}

#[tokio::test]
async fn messages_are_found_by_their_words_in_the_users_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({})).await;
    s.send_text(&alice, &room, "the quick brown fox").await;
    s.send_text(&alice, &room, "a lazy dog").await;
    let hunting = s.send_text(&alice, &room, "Fox hunting, again").await;
    let bobs = s.create_room(&bob, json!({})).await;
    s.send_text(&bob, &bobs, "a fox of bob's").await;

    let (status, answer) = s
        .post("/search", &alice.token, query("fox", json!({})))
        .await;
    assert_eq!(status, 200, "{answer}");
    let room_events = &answer["search_categories"]["room_events"];
    assert_eq!(room_events["count"], 2);
    assert_eq!(room_events["highlights"], json!(["fox"]));
    assert!(room_events["results"][0]["rank"].is_number());
    let mut found = bodies(&answer);
    found.sort();
    assert_eq!(found, ["Fox hunting, again", "the quick brown fox"]);
    let (_, recent) = s
        .post(
            "/search",
            &alice.token,
            query("fox", json!({ "order_by": "recent" })),
        )
        .await;
    assert_eq!(
        bodies(&recent),
        ["Fox hunting, again", "the quick brown fox"]
    );
    // Every word must match.
    let (_, both) = s
        .post("/search", &alice.token, query("brown FOX", json!({})))
        .await;
    assert_eq!(bodies(&both), ["the quick brown fox"]);
    // Bob finds only his own room's fox.
    let (_, his) = s.post("/search", &bob.token, query("fox", json!({}))).await;
    assert_eq!(bodies(&his), ["a fox of bob's"]);
    // A page at a time.
    let page = query(
        "fox",
        json!({ "order_by": "recent", "filter": { "limit": 1 } }),
    );
    let (_, first) = s.post("/search", &alice.token, page.clone()).await;
    assert_eq!(bodies(&first), ["Fox hunting, again"]);
    let next = first["search_categories"]["room_events"]["next_batch"]
        .as_str()
        .unwrap();
    let (_, second) = s
        .post(&format!("/search?next_batch={next}"), &alice.token, page)
        .await;
    assert_eq!(bodies(&second), ["the quick brown fox"]);
    assert!(second["search_categories"]["room_events"]
        .get("next_batch")
        .is_none());
    // A redacted message is no longer found.
    let path = format!("/rooms/{}/redact/{}/r1", enc(&room), enc(&hunting));
    assert_eq!(s.put(&path, &alice.token, json!({})).await.0, 200);
    let (_, after) = s
        .post("/search", &alice.token, query("hunting", json!({})))
        .await;
    assert_eq!(bodies(&after), Vec::<String>::new());
}

#[tokio::test]
async fn search_syntax_in_the_term_is_only_words() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    s.send_text(&alice, &room, "near the end").await;
    for term in ["\"", "end\" OR *", "NEAR(end", "-", ""] {
        let (status, answer) = s
            .post("/search", &alice.token, query(term, json!({})))
            .await;
        assert_eq!(status, 200, "{term:?}: {answer}");
    }
    let (_, answer) = s
        .post("/search", &alice.token, query("end\" OR *", json!({})))
        .await;
    assert_eq!(
        bodies(&answer),
        Vec::<String>::new(),
        "`or` is a word, not an operator"
    );
    assert_error(
        &s.post(
            "/search",
            &alice.token,
            query("end", json!({ "order_by": "sideways" })),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.post(
            "/search",
            &alice.token,
            json!({ "search_categories": { "room_events": {} } }),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
}
