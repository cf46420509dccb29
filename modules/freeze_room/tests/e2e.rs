//! The freeze_room port (synapse-freeze-room), over HTTP with non-admin
//! users. The module sends events from inside `check_event_allowed`.

// Name the module crate, so the linker keeps its registration.
use freeze_room as _;

use axon_testkit::*;

fn config(body: &str) -> String {
    format!("modules:\n  - module: freeze_room::FreezeRoom\n    config:\n{body}")
}

async fn state(s: &TestServer, user: &User, room: &str, event_type: &str) -> Value {
    s.get(
        &format!("/rooms/{}/state/{event_type}/", enc(room)),
        &user.token,
    )
    .await
    .1
}

async fn put_state(
    s: &TestServer,
    user: &User,
    room: &str,
    event_type: &str,
    content: Value,
) -> (StatusCode, Value) {
    s.put(
        &format!("/rooms/{}/state/{event_type}/", enc(room)),
        &user.token,
        content,
    )
    .await
}

#[tokio::test]
async fn freezing_locks_the_room_down_and_unfreezing_opens_it() {
    let s = TestServer::start_with(&config("      {}\n")).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;

    let (status, body) = put_state(
        &s,
        &alice,
        &room,
        "org.matrix.room.frozen",
        json!({ "frozen": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        state(&s, &alice, &room, "org.matrix.room.frozen").await,
        json!({ "frozen": true })
    );
    assert_eq!(
        state(&s, &alice, &room, "m.room.join_rules").await["join_rule"],
        "invite",
        "public rooms become invite-only"
    );
    let levels = state(&s, &alice, &room, "m.room.power_levels").await;
    assert_eq!(levels["users_default"], 100);
    assert_eq!(
        levels["users"],
        json!({ "@alice:test.local": 100 }),
        "only the admins stay listed"
    );

    // Frozen: messages and kicks are refused, leaving is not.
    let message = s
        .put(
            &format!("/rooms/{}/send/m.room.message/f1", enc(&room)),
            &bob.token,
            json!({ "body": "hi" }),
        )
        .await;
    assert_eq!(
        message.1,
        json!({ "errcode": "M_FORBIDDEN", "error": "This event is not allowed in this context" })
    );
    assert_error(
        &s.post(
            &format!("/rooms/{}/kick", enc(&room)),
            &alice.token,
            json!({ "user_id": bob.user_id }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // Unfreezing gives the sender 100 and everyone else the default 0.
    let (status, body) = put_state(
        &s,
        &alice,
        &room,
        "org.matrix.room.frozen",
        json!({ "frozen": false }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let levels = state(&s, &alice, &room, "m.room.power_levels").await;
    assert_eq!(
        (
            levels["users_default"].clone(),
            levels["users"]["@alice:test.local"].clone()
        ),
        (json!(0), json!(100))
    );
    s.send_text(&bob, &room, "thawed").await;
    assert_eq!(
        s.post(
            &format!("/rooms/{}/leave", enc(&room)),
            &bob.token,
            json!({})
        )
        .await
        .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_last_admin_leaving_freezes_the_room() {
    let s = TestServer::start_with(&config("      {}\n")).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    assert_eq!(
        s.post(
            &format!("/rooms/{}/leave", enc(&room)),
            &alice.token,
            json!({})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        state(&s, &bob, &room, "org.matrix.room.frozen").await,
        json!({ "frozen": true })
    );
    let message = s
        .put(
            &format!("/rooms/{}/send/m.room.message/f2", enc(&room)),
            &bob.token,
            json!({ "body": "anyone?" }),
        )
        .await;
    assert_error(&message, 403, "M_FORBIDDEN");
    // Leaving a frozen room still works.
    assert_eq!(
        s.post(
            &format!("/rooms/{}/leave", enc(&room)),
            &bob.token,
            json!({})
        )
        .await
        .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn another_admin_keeps_the_room_open() {
    let s = TestServer::start_with(&config("      {}\n")).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({ "preset": "public_chat", "power_level_content_override": { "users": { alice.user_id.clone(): 100, bob.user_id.clone(): 100 } } })).await;
    s.join(&bob, &room).await;
    s.post(
        &format!("/rooms/{}/leave", enc(&room)),
        &alice.token,
        json!({}),
    )
    .await;
    assert_error(
        &s.get(
            &format!("/rooms/{}/state/org.matrix.room.frozen/", enc(&room)),
            &bob.token,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    s.send_text(&bob, &room, "still open").await;
}

#[tokio::test]
async fn moderators_can_be_promoted_instead() {
    let s = TestServer::start_with(&config("      promote_moderators: true\n")).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s.create_room(
        &alice,
        json!({ "preset": "public_chat", "power_level_content_override": { "users": { alice.user_id.clone(): 100, bob.user_id.clone(): 50, carol.user_id.clone(): 20 } } }),
    )
    .await;
    s.join(&bob, &room).await;
    s.join(&carol, &room).await;
    s.post(
        &format!("/rooms/{}/leave", enc(&room)),
        &alice.token,
        json!({}),
    )
    .await;
    let levels = state(&s, &bob, &room, "m.room.power_levels").await;
    assert_eq!(
        levels["users"]["@bob:test.local"], 100,
        "the highest-ranked moderator"
    );
    assert_eq!(levels["users"]["@carol:test.local"], 20);
    assert_error(
        &s.get(
            &format!("/rooms/{}/state/org.matrix.room.frozen/", enc(&room)),
            &bob.token,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn bad_freeze_events_and_blacklisted_unfreezes_are_refused() {
    let s = TestServer::start_with(&config("      unfreeze_blacklist: [test.local]\n")).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    assert_error(
        &put_state(
            &s,
            &alice,
            &room,
            "org.matrix.room.frozen",
            json!({ "frozen": "yes" }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        put_state(
            &s,
            &alice,
            &room,
            "org.matrix.room.frozen",
            json!({ "frozen": true })
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_error(
        &put_state(
            &s,
            &alice,
            &room,
            "org.matrix.room.frozen",
            json!({ "frozen": false }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
}

#[test]
fn unknown_config_keys_stop_startup() {
    let error = modules_load_error(&config("      promote_mods: true\n"));
    assert!(error.contains("unknown field `promote_mods`"), "{error}");
}
