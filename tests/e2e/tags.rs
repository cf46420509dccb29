//! Room tags: `GET /user/{u}/rooms/{r}/tags`, `PUT`/`DELETE …/tags/{tag}`,
//! delivered as the room's `m.tag` account data in `/sync`.

use axon_testkit::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn tags_are_set_listed_removed_and_synced() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let tags = format!("/user/{}/rooms/{}/tags", enc(&alice.user_id), enc(&room));
    assert_eq!(
        s.get(&tags, &alice.token).await,
        (reqwest::StatusCode::OK, json!({ "tags": {} }))
    );
    let (status, body) = s
        .put(
            &format!("{tags}/m.favourite"),
            &alice.token,
            json!({ "order": 0.25 }),
        )
        .await;
    assert_eq!((status.as_u16(), body), (200, json!({})));
    s.put(&format!("{tags}/u.work"), &alice.token, json!({}))
        .await;
    assert_eq!(
        s.get(&tags, &alice.token).await.1,
        json!({ "tags": { "m.favourite": { "order": 0.25 }, "u.work": {} } })
    );

    let (_, synced) = s.get("/sync", &alice.token).await;
    let account_data = &synced["rooms"]["join"][&room]["account_data"]["events"];
    assert!(
        account_data.as_array().unwrap().contains(&json!({
            "type": "m.tag",
            "content": { "tags": { "m.favourite": { "order": 0.25 }, "u.work": {} } }
        })),
        "{account_data}"
    );

    let (status, _) = s
        .request(
            Method::DELETE,
            &format!("{tags}/u.work"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // Deleting a tag that is not there is not an error (as in Synapse).
    let (status, _) = s
        .request(
            Method::DELETE,
            &format!("{tags}/u.work"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.get(&tags, &alice.token).await.1,
        json!({ "tags": { "m.favourite": { "order": 0.25 } } })
    );
}

#[tokio::test]
async fn tag_errors() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({})).await;
    let tags = format!("/user/{}/rooms/{}/tags", enc(&alice.user_id), enc(&room));
    assert_error(
        &s.put(&format!("{tags}/m.favourite"), &bob.token, json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(&s.get(&tags, &bob.token).await, 403, "M_FORBIDDEN");
    let long = "t".repeat(256);
    assert_error(
        &s.put(&format!("{tags}/{long}"), &alice.token, json!({}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    // A room bob was never in.
    let bobs = format!(
        "/user/{}/rooms/{}/tags/m.lowpriority",
        enc(&bob.user_id),
        enc(&room)
    );
    assert_error(
        &s.put(&bobs, &bob.token, json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.raw(
            Method::PUT,
            &format!("{tags}/m.favourite"),
            Some(&alice.token),
            "[1]",
        )
        .await,
        400,
        "M_BAD_JSON",
    );
}

#[tokio::test]
async fn concurrent_tag_changes_all_land() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let tags = format!("/user/{}/rooms/{}/tags", enc(&alice.user_id), enc(&room));
    let puts: Vec<_> = (0..20)
        .map(|i| {
            let (s, tags, token) = (s.clone(), tags.clone(), alice.token.clone());
            tokio::spawn(async move {
                s.put(&format!("{tags}/u.tag{i}"), &token, json!({}))
                    .await
                    .0
            })
        })
        .collect();
    for put in puts {
        assert_eq!(put.await.unwrap(), 200);
    }
    let (_, body) = s.get(&tags, &alice.token).await;
    assert_eq!(body["tags"].as_object().unwrap().len(), 20, "{body}");
}
