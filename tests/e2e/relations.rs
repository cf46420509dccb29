//! `/v1/rooms/{id}/relations/{event}[/{relType}[/{eventType}]]`: edits,
//! reactions and thread replies found from the event they relate to.

use axon_testkit::*;
use serde_json::{json, Value};

async fn send(s: &TestServer, user: &User, room: &str, event_type: &str, content: Value) -> String {
    let path = format!("/rooms/{}/send/{event_type}/{}", enc(room), rand_suffix());
    let (status, body) = s.put(&path, &user.token, content).await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn relations_are_listed_by_type_newest_first_a_page_at_a_time() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let root = s.send_text(&alice, &room, "root").await;
    let reaction = send(
        &s,
        &bob,
        &room,
        "m.reaction",
        json!({
            "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "👍" },
        }),
    )
    .await;
    let edit = send(
        &s,
        &alice,
        &room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "* root!",
            "m.new_content": { "msgtype": "m.text", "body": "root!" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": root },
        }),
    )
    .await;
    let mut thread = Vec::new();
    for i in 0..3 {
        thread.push(
            send(
                &s,
                &bob,
                &room,
                "m.room.message",
                json!({
                    "msgtype": "m.text", "body": format!("reply {i}"),
                    "m.relates_to": { "rel_type": "m.thread", "event_id": root },
                }),
            )
            .await,
        );
    }
    let base = format!(
        "/_matrix/client/v1/rooms/{}/relations/{}",
        enc(&room),
        enc(&root)
    );
    let (status, all) = s.get(&format!("{base}?limit=10"), &alice.token).await;
    assert_eq!(status, 200, "{all}");
    let mut expected = vec![reaction.clone(), edit.clone()];
    expected.extend(thread.iter().cloned());
    expected.reverse();
    assert_eq!(ids(&all), expected);
    assert!(all.get("next_batch").is_none());
    let (_, replies) = s.get(&format!("{base}/m.thread"), &alice.token).await;
    assert_eq!(
        ids(&replies),
        [thread[2].clone(), thread[1].clone(), thread[0].clone()]
    );
    let (_, reactions) = s
        .get(&format!("{base}/m.annotation/m.reaction"), &alice.token)
        .await;
    assert_eq!(ids(&reactions), [reaction]);
    let (_, none) = s
        .get(&format!("{base}/m.annotation/m.room.message"), &alice.token)
        .await;
    assert_eq!(ids(&none), Vec::<String>::new());
    // Two at a time, oldest first, then the rest from next_batch.
    let (_, first) = s
        .get(&format!("{base}/m.thread?dir=f&limit=2"), &alice.token)
        .await;
    assert_eq!(ids(&first), thread[..2]);
    let next = first["next_batch"].as_str().unwrap();
    let (_, rest) = s
        .get(
            &format!("{base}/m.thread?dir=f&limit=2&from={next}"),
            &alice.token,
        )
        .await;
    assert_eq!(ids(&rest), thread[2..]);
}

#[tokio::test]
async fn relations_errors() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let carol = s.register("carol").await;
    let room = s.create_room(&alice, json!({})).await;
    let root = s.send_text(&alice, &room, "root").await;
    let path = |event: &str| {
        format!(
            "/_matrix/client/v1/rooms/{}/relations/{}",
            enc(&room),
            enc(event)
        )
    };
    assert_error(
        &s.get(&path("$missing:test.local"), &alice.token).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(&s.get(&path(&root), &carol.token).await, 403, "M_FORBIDDEN");
    assert_error(
        &s.get(&format!("{}?dir=up", path(&root)), &alice.token)
            .await,
        400,
        "M_INVALID_PARAM",
    );
}

fn reply(root: &str, body: &str) -> Value {
    json!({
        "msgtype": "m.text", "body": body,
        "m.relates_to": { "rel_type": "m.thread", "event_id": root },
    })
}

#[tokio::test]
async fn an_event_carries_its_thread_edit_and_references_and_threads_are_listed() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    s.join(&carol, &room).await;
    let first = s.send_text(&alice, &room, "first topic").await;
    let second = s.send_text(&alice, &room, "second topic").await;
    send(
        &s,
        &carol,
        &room,
        "m.room.message",
        reply(&first, "carol's reply"),
    )
    .await;
    let mut replies = Vec::new();
    for i in 0..2 {
        replies.push(
            send(
                &s,
                &bob,
                &room,
                "m.room.message",
                reply(&second, &format!("bob {i}")),
            )
            .await,
        );
    }
    let edit = send(
        &s,
        &alice,
        &room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "* second topic!",
            "m.new_content": { "msgtype": "m.text", "body": "second topic!" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": second },
        }),
    )
    .await;
    let reference = send(
        &s,
        &bob,
        &room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "see above",
            "m.relates_to": { "rel_type": "m.reference", "event_id": second },
        }),
    )
    .await;
    let path = format!("/rooms/{}/event/{}", enc(&room), enc(&second));
    let (_, event) = s.get(&path, &carol.token).await;
    let relations = &event["unsigned"]["m.relations"];
    assert_eq!(relations["m.thread"]["count"], 2, "{event}");
    assert_eq!(
        relations["m.thread"]["latest_event"]["event_id"],
        replies[1]
    );
    assert_eq!(relations["m.thread"]["current_user_participated"], false);
    assert_eq!(relations["m.replace"]["event_id"], edit);
    assert_eq!(
        relations["m.reference"]["chunk"],
        json!([{ "event_id": reference }])
    );
    let (_, as_bob) = s.get(&path, &bob.token).await;
    assert_eq!(
        as_bob["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
        true
    );
    // Threads, the most recently replied to first.
    let threads = format!("/_matrix/client/v1/rooms/{}/threads", enc(&room));
    let (status, all) = s.get(&threads, &carol.token).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), [second.clone(), first.clone()]);
    assert_eq!(
        all["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"],
        2
    );
    let (_, mine) = s
        .get(&format!("{threads}?include=participated"), &carol.token)
        .await;
    assert_eq!(ids(&mine), std::slice::from_ref(&first));
    let (_, page) = s.get(&format!("{threads}?limit=1"), &carol.token).await;
    assert_eq!(ids(&page), [second]);
    let next = page["next_batch"].as_str().unwrap();
    let (_, page) = s
        .get(&format!("{threads}?limit=1&from={next}"), &carol.token)
        .await;
    assert_eq!(ids(&page), [first]);
    assert_error(
        &s.get(&format!("{threads}?include=some"), &carol.token)
            .await,
        400,
        "M_INVALID_PARAM",
    );
}
