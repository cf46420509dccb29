//! The spam checker callbacks over HTTP: where each fires, what the client
//! sees when a module denies, and the order and short-circuit of two modules.

use axon_testkit::rules::{modules, rules};
use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn check_event_for_spam_denies_with_the_modules_code_and_fields() {
    let log = "event_spam";
    let s = TestServer::start_with(&modules(&[
        rules(log, "a", &[]),
        rules(log, "b", &[("check_event_for_spam", "deny_fields")]),
        rules(log, "c", &[("check_event_for_spam", "deny")]),
    ]))
    .await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({ "name": "r" })).await;
    assert!(
        only(log, "check_event_for_spam").is_empty(),
        "not for the events createRoom makes"
    );
    let denied = s
        .put(
            &format!("/rooms/{}/send/m.room.message/t1", enc(&room)),
            &alice.token,
            json!({ "body": "buy now" }),
        )
        .await;
    assert_eq!(denied.0, StatusCode::FORBIDDEN);
    assert_eq!(
        denied.1,
        json!({ "errcode": "ORG_TEST_SPAM", "error": "This message has been rejected as probable spam", "org.test.by": "b" })
    );
    assert_eq!(
        only(log, "check_event_for_spam"),
        [
            "a:check_event_for_spam:m.room.message",
            "b:check_event_for_spam:m.room.message"
        ],
        "c is never asked"
    );
    // State events are checked too; membership events are not.
    let state = s
        .put(
            &format!("/rooms/{}/state/m.room.topic/", enc(&room)),
            &alice.token,
            json!({ "topic": "t" }),
        )
        .await;
    assert_error(&state, 403, "ORG_TEST_SPAM");
    let bob = s.register("bob").await;
    assert_eq!(
        s.invite(&alice, &room, &bob.user_id).await.0,
        StatusCode::OK
    );
    assert!(!only(log, "check_event_for_spam")
        .iter()
        .any(|c| c.ends_with("m.room.member")));
    // Nothing denied was stored.
    let (_, history) = s
        .get(
            &format!("/rooms/{}/messages?dir=b", enc(&room)),
            &alice.token,
        )
        .await;
    assert!(history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] != "m.room.message"));
}

#[tokio::test]
async fn joins_and_invites_can_be_refused_except_for_admins() {
    let log = "join_invite";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[
            ("user_may_join_room", "deny:ORG_NO_JOIN"),
            ("user_may_invite", "deny_fields"),
        ],
    )]))
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    assert!(
        only(log, "user_may_join_room").is_empty(),
        "not for the creator's own join"
    );
    let join = s.join(&bob, &room).await;
    assert_eq!(
        join.1,
        json!({ "errcode": "ORG_NO_JOIN", "error": "Not allowed to join this room" })
    );
    assert_eq!(join.0, StatusCode::FORBIDDEN);
    assert_eq!(
        only(log, "user_may_join_room"),
        ["a:user_may_join_room:@bob:test.local:false"]
    );
    let invite = s.invite(&alice, &room, &bob.user_id).await;
    assert_eq!(invite.0, StatusCode::FORBIDDEN);
    assert_eq!(
        invite.1,
        json!({ "errcode": "ORG_TEST_SPAM", "error": "Invites have been disabled on this server", "org.test.by": "a" })
    );
    // createRoom's invites go through the same check once the room exists,
    // as in Synapse: the request fails, the room stays, without the invite.
    let refused = s
        .post(
            "/createRoom",
            &alice.token,
            json!({ "name": "with bob", "invite": [bob.user_id] }),
        )
        .await;
    assert_error(&refused, 403, "ORG_TEST_SPAM");
    let (_, rooms) = s.get("/joined_rooms", &alice.token).await;
    let created = rooms["joined_rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| *r != &json!(room))
        .expect("the room stays")
        .clone();
    let member = s
        .member(&alice, created.as_str().unwrap(), &bob.user_id)
        .await;
    assert_eq!(member["errcode"], "M_NOT_FOUND", "bob was not invited");
    // A server admin skips both checks.
    let admin = register_admin(&s, "root").await;
    let room2 = s
        .create_room(&admin, json!({ "invite": [bob.user_id] }))
        .await;
    let admin_room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(s.join(&admin, &admin_room).await.0, StatusCode::OK);
    assert!(!room2.is_empty());
}

#[tokio::test]
async fn room_creation_alias_and_publishing_can_be_refused() {
    let log = "create";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("user_may_create_room", "deny_fields")],
    )]))
    .await;
    let alice = s.register("alice").await;
    let refused = s
        .post("/createRoom", &alice.token, json!({ "name": "mine" }))
        .await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.1,
        json!({ "errcode": "ORG_TEST_SPAM", "error": "You are not permitted to create rooms", "org.test.by": "a" })
    );
    assert_eq!(
        only(log, "user_may_create_room"),
        ["a:user_may_create_room:@alice:test.local:mine"],
        "with the request body"
    );
    let admin = register_admin(&s, "root").await;
    assert_eq!(
        s.post("/createRoom", &admin.token, json!({})).await.0,
        StatusCode::OK,
        "admins skip it"
    );

    let log = "alias_publish";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[
            ("user_may_create_room_alias", "deny"),
            ("user_may_publish_room", "deny:ORG_NO_PUBLISH"),
        ],
    )]))
    .await;
    let alice = s.register("alice").await;
    let with_alias = s
        .post(
            "/createRoom",
            &alice.token,
            json!({ "room_alias_name": "x" }),
        )
        .await;
    assert_eq!(
        with_alias.1,
        json!({ "errcode": "M_FORBIDDEN", "error": "This user is not permitted to create this alias" })
    );
    let public = s
        .post(
            "/createRoom",
            &alice.token,
            json!({ "visibility": "public" }),
        )
        .await;
    assert_eq!(
        public.1,
        json!({ "errcode": "ORG_NO_PUBLISH", "error": "Not allowed to publish room" })
    );
    let room = s.create_room(&alice, json!({})).await;
    let alias = s
        .put(
            "/directory/room/%23later:test.local",
            &alice.token,
            json!({ "room_id": room }),
        )
        .await;
    assert_error(&alias, 403, "M_FORBIDDEN");
    let publish = s
        .put(
            &format!("/directory/list/room/{}", enc(&room)),
            &alice.token,
            json!({ "visibility": "public" }),
        )
        .await;
    assert_error(&publish, 403, "ORG_NO_PUBLISH");
    // Making a room private is not publishing.
    assert_eq!(
        s.put(
            &format!("/directory/list/room/{}", enc(&room)),
            &alice.token,
            json!({ "visibility": "private" })
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        only(log, "user_may_create_room_alias"),
        [
            "a:user_may_create_room_alias:#x:test.local",
            "a:user_may_create_room_alias:#later:test.local"
        ]
    );
}

#[tokio::test]
async fn state_events_can_be_refused_and_messages_are_not_asked() {
    let log = "state";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("user_may_send_state_event", "deny")],
    )]))
    .await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({ "name": "n" })).await;
    let denied = s
        .put(
            &format!("/rooms/{}/state/m.room.topic/", enc(&room)),
            &alice.token,
            json!({ "topic": "x" }),
        )
        .await;
    assert_eq!(
        denied.1,
        json!({ "errcode": "M_FORBIDDEN", "error": "You are not permitted to send the state event" })
    );
    assert_eq!(
        only(log, "user_may_send_state_event"),
        ["a:user_may_send_state_event:m.room.topic/"]
    );
    s.send_text(&alice, &room, "messages pass").await;
    assert_eq!(only(log, "user_may_send_state_event").len(), 1);
}

#[tokio::test]
async fn spammy_users_are_hidden_from_the_user_directory() {
    let log = "directory";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("check_username_for_spam", "deny")],
    )]))
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let (_, found) = s
        .post(
            "/user_directory/search",
            &alice.token,
            json!({ "search_term": "bob" }),
        )
        .await;
    assert_eq!(found["results"], json!([]));
    assert_eq!(
        only(log, "check_username_for_spam"),
        ["a:check_username_for_spam:@bob:test.local"]
    );
}

#[tokio::test]
async fn registration_can_be_denied_as_a_rate_limit_or_shadow_banned() {
    let log = "registration";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("check_registration_for_spam", "deny")],
    )]))
    .await;
    let refused = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "username": "spammer", "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_eq!(refused.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.1,
        json!({ "errcode": "M_UNKNOWN", "error": "Rate limited" })
    );
    assert_eq!(
        only(log, "check_registration_for_spam"),
        ["a:check_registration_for_spam:spammer:127.0.0.1"]
    );
    let (_, available) = s
        .request(
            Method::GET,
            "/register/available?username=spammer",
            None,
            None,
        )
        .await;
    assert_eq!(
        available,
        json!({ "available": true }),
        "nothing was created"
    );

    let log = "shadow";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("check_registration_for_spam", "shadow_ban")],
    )]))
    .await;
    let ghost = s.register("ghost").await;
    // Shared-secret registration does not ask the spam checker: the admin is not shadow-banned.
    let admin = register_admin(&s, "root").await;
    let room = s
        .create_room(&admin, json!({ "preset": "public_chat" }))
        .await;
    s.join(&ghost, &room).await;
    let (status, sent) = s
        .put(
            &format!("/rooms/{}/send/m.room.message/g1", enc(&room)),
            &ghost.token,
            json!({ "body": "boo" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        sent["event_id"].as_str().unwrap().starts_with('$'),
        "looks like a real event"
    );
    let (_, history) = s
        .get(
            &format!("/rooms/{}/messages?dir=b", enc(&room)),
            &admin.token,
        )
        .await;
    assert!(
        history["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] != "m.room.message"),
        "nobody sees it"
    );
}

#[tokio::test]
async fn media_can_be_refused_and_nothing_is_stored() {
    let log = "media_spam";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("check_media_file_for_spam", "deny")],
    )]))
    .await;
    let alice = s.register("alice").await;
    let refused = s
        .raw(
            Method::POST,
            "/_matrix/media/v3/upload",
            Some(&alice.token),
            "evil bytes",
        )
        .await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.1,
        json!({ "errcode": "M_UNKNOWN", "error": "Bad content" })
    );
    assert_eq!(
        only(log, "check_media_file_for_spam"),
        ["a:check_media_file_for_spam:10:evil bytes"]
    );
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("media"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn login_can_be_blocked_after_the_password_is_checked() {
    let log = "login_spam";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("check_login_for_spam", "deny_fields")],
    )]))
    .await;
    s.register("alice").await;
    let wrong = json!({ "type": "m.login.password", "user": "alice", "password": "wrong" });
    assert_error(
        &s.request(Method::POST, "/login", None, Some(wrong)).await,
        403,
        "M_FORBIDDEN",
    );
    assert!(
        only(log, "check_login_for_spam").is_empty(),
        "only after valid credentials"
    );
    let right = json!({ "type": "m.login.password", "user": "alice", "password": "correct horse" });
    let blocked = s.request(Method::POST, "/login", None, Some(right)).await;
    assert_eq!(blocked.0, StatusCode::FORBIDDEN);
    assert_eq!(
        blocked.1,
        json!({ "errcode": "ORG_TEST_SPAM", "error": "Login was blocked by the server", "org.test.by": "a" })
    );
}

/// The server cannot read an encrypted message, but its modules are asked
/// about it as about any event (as Synapse's are): they see the
/// `m.room.encrypted` event with its ciphertext, and may refuse it.
#[tokio::test]
async fn encrypted_events_reach_the_event_callbacks_as_they_are() {
    let log = "encrypted_events";
    let s = TestServer::start_with(&modules(&[rules(log, "a", &[])])).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({ "name": "secret" })).await;
    let encrypted = json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg",
        "device_id": "ABCDEF",
        "sender_key": "c2VuZGVyIGtleQ",
        "session_id": "c2Vzc2lvbiBpZA",
    });
    let (status, _) = s
        .put(
            &format!("/rooms/{}/send/m.room.encrypted/e1", enc(&room)),
            &alice.token,
            encrypted,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        only(log, "check_event_for_spam"),
        ["a:check_event_for_spam:m.room.encrypted"]
    );
    assert!(only(log, "check_event_allowed")
        .iter()
        .any(|c| c.starts_with("a:check_event_allowed:m.room.encrypted")));
    wait_for_call(log, "a:on_new_event:m.room.encrypted::true").await;
}
