//! Aliases, the room directory, profiles, the user directory and media.

use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn aliases_can_be_created_resolved_and_deleted() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({})).await;
    let path = "/directory/room/%23home:test.local";
    assert_eq!(
        s.put(path, &alice.token, json!({ "room_id": room }))
            .await
            .0,
        StatusCode::OK
    );
    let (_, resolved) = s.get(path, &bob.token).await;
    assert_eq!(
        resolved,
        json!({ "room_id": room, "servers": ["test.local"] })
    );
    assert_error(
        &s.put(path, &alice.token, json!({ "room_id": room })).await,
        409,
        "M_UNKNOWN",
    );
    assert_error(
        &s.put(
            "/directory/room/%23x:elsewhere.org",
            &alice.token,
            json!({ "room_id": room }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    // Bob is not in the room: he can neither alias it nor delete its alias.
    assert_error(
        &s.put(
            "/directory/room/%23bobs:test.local",
            &bob.token,
            json!({ "room_id": room }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.request(Method::DELETE, path, Some(&bob.token), None)
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.request(Method::DELETE, path, Some(&alice.token), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_error(&s.get(path, &bob.token).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn the_public_room_list() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let public = s
        .create_room(&alice, json!({ "visibility": "public", "name": "Town square", "topic": "all welcome", "room_alias_name": "town" }))
        .await;
    let private = s
        .create_room(&alice, json!({ "name": "Back office" }))
        .await;
    let (_, list) = s.get("/publicRooms", &bob.token).await;
    let chunk = list["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 1);
    assert_eq!(chunk[0]["room_id"], public);
    assert_eq!(chunk[0]["name"], "Town square");
    assert_eq!(chunk[0]["canonical_alias"], "#town:test.local");
    assert_eq!(chunk[0]["num_joined_members"], 1);
    assert_eq!(chunk[0]["join_rule"], "public");

    let (_, vis) = s
        .get(
            &format!("/directory/list/room/{}", enc(&private)),
            &bob.token,
        )
        .await;
    assert_eq!(vis, json!({ "visibility": "private" }));
    assert_error(
        &s.put(
            &format!("/directory/list/room/{}", enc(&private)),
            &bob.token,
            json!({ "visibility": "public" }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.put(
            &format!("/directory/list/room/{}", enc(&private)),
            &alice.token,
            json!({ "visibility": "public" })
        )
        .await
        .0,
        StatusCode::OK
    );
    let (_, searched) = s
        .post(
            "/publicRooms",
            &bob.token,
            json!({ "filter": { "generic_search_term": "office" } }),
        )
        .await;
    assert_eq!(searched["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(searched["chunk"][0]["room_id"], private);
    let (_, paged) = s
        .post("/publicRooms", &bob.token, json!({ "limit": 1 }))
        .await;
    assert_eq!(paged["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(paged["total_room_count_estimate"], 2);
    let (_, page2) = s
        .post(
            "/publicRooms",
            &bob.token,
            json!({ "limit": 1, "since": paged["next_batch"] }),
        )
        .await;
    assert_ne!(page2["chunk"][0]["room_id"], paged["chunk"][0]["room_id"]);
    assert_error(
        &s.request(Method::GET, "/publicRooms", None, None).await,
        401,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn profiles_and_the_member_events_they_update() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let path = format!("/profile/{}/displayname", enc(&bob.user_id));
    assert_eq!(
        s.put(&path, &bob.token, json!({ "displayname": "Bobby" }))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        s.get(&path, &alice.token).await.1,
        json!({ "displayname": "Bobby" })
    );
    let avatar = format!("/profile/{}/avatar_url", enc(&bob.user_id));
    assert_eq!(
        s.put(
            &avatar,
            &bob.token,
            json!({ "avatar_url": "mxc://test.local/abc" })
        )
        .await
        .0,
        StatusCode::OK
    );
    let (_, profile) = s
        .get(&format!("/profile/{}", enc(&bob.user_id)), &alice.token)
        .await;
    assert_eq!(
        profile,
        json!({ "displayname": "Bobby", "avatar_url": "mxc://test.local/abc" })
    );
    assert_error(
        &s.put(&path, &alice.token, json!({ "displayname": "Not yours" }))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.get("/profile/%40nobody:test.local", &alice.token).await,
        404,
        "M_NOT_FOUND",
    );
    // The room sees the new name.
    let member = s.member(&alice, &room, &bob.user_id).await;
    assert_eq!(member["displayname"], "Bobby");
    assert_eq!(member["avatar_url"], "mxc://test.local/abc");
}

#[tokio::test]
async fn the_user_directory_finds_users_sharing_a_room_or_in_public_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let _loner = s.register("bobcat").await;
    let room = s.create_room(&alice, json!({})).await;
    s.invite(&alice, &room, &bob.user_id).await;
    s.join(&bob, &room).await;
    let (status, found) = s
        .post(
            "/user_directory/search",
            &alice.token,
            json!({ "search_term": "bob" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [bob.user_id.as_str()],
        "bobcat shares no room with alice"
    );
    assert_eq!(found["limited"], false);
}

#[tokio::test]
async fn media_upload_and_download() {
    let s = TestServer::start_with("max_upload_size: 1K").await;
    let alice = s.register("alice").await;
    let response = s
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename=my%20hello.txt",
            s.base
        ))
        .bearer_auth(&alice.token)
        .header("content-type", "text/plain")
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    let uri = body["content_uri"].as_str().unwrap();
    let id = uri
        .strip_prefix("mxc://test.local/")
        .expect("an mxc URI of this server");

    for url in [
        format!(
            "{}/_matrix/client/v1/media/download/test.local/{id}",
            s.base
        ),
        format!("{}/_matrix/media/v3/download/test.local/{id}", s.base),
    ] {
        let got = s
            .http
            .get(&url)
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK, "{url}");
        assert_eq!(got.headers()["content-type"], "text/plain; charset=UTF-8");
        assert_eq!(
            got.headers()["content-disposition"],
            "inline; filename*=utf-8''my%20hello.txt"
        );
        assert_eq!(got.text().await.unwrap(), "hello world");
    }
    // Authenticated media needs a token.
    let anonymous = s
        .http
        .get(format!(
            "{}/_matrix/client/v1/media/download/test.local/{id}",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_error(
        &s.get(
            "/_matrix/client/v1/media/download/test.local/nope",
            &alice.token,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(
            &format!("/_matrix/client/v1/media/download/other.org/{id}"),
            &alice.token,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );

    let (_, config) = s.get("/_matrix/client/v1/media/config", &alice.token).await;
    assert_eq!(config, json!({ "m.upload.size": 1024 }));
    let big = s
        .raw(
            Method::POST,
            "/_matrix/media/v3/upload",
            Some(&alice.token),
            vec![b'x'; 2048],
        )
        .await;
    assert_error(&big, 413, "M_TOO_LARGE");
    // Nothing was stored for the refused upload.
    let files = std::fs::read_dir(s.dir.path().join("media"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
}
