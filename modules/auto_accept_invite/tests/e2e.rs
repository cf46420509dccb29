//! The auto_accept_invite port (synapse-auto-accept-invite), over HTTP with
//! non-admin users.

// Name the module crate, so the linker keeps its registration.
use auto_accept_invite as _;

use axon_testkit::*;
use std::time::Duration;

fn config(body: &str) -> String {
    format!("modules:\n  - module: auto_accept_invite::InviteAutoAccepter\n    config:\n{body}")
}

/// Whether `user` ends up joined to `room` within a few seconds.
async fn joined_soon(s: &TestServer, user: &User, room: &str) -> bool {
    for _ in 0..60 {
        let (_, rooms) = s.get("/joined_rooms", &user.token).await;
        if rooms["joined_rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == room)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn invited_local_users_join() {
    let s = TestServer::start_with(&config("      {}\n")).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({})).await;
    s.invite(&alice, &room, &bob.user_id).await;
    assert!(joined_soon(&s, &bob, &room).await);
    // Not a direct message: m.direct is left alone.
    assert_error(
        &s.get(
            &format!("/user/{}/account_data/m.direct", enc(&bob.user_id)),
            &bob.token,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn direct_messages_are_recorded_in_m_direct() {
    let s = TestServer::start_with(&config(
        "      accept_invites_only_for_direct_messages: true\n",
    ))
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let group = s
        .create_room(&alice, json!({ "invite": [bob.user_id] }))
        .await;
    let dm = s
        .create_room(
            &alice,
            json!({ "invite": [bob.user_id], "is_direct": true }),
        )
        .await;
    assert!(joined_soon(&s, &bob, &dm).await);
    assert!(!joined_soon(&s, &bob, &group).await, "only direct messages");
    let (_, direct) = s
        .get(
            &format!("/user/{}/account_data/m.direct", enc(&bob.user_id)),
            &bob.token,
        )
        .await;
    assert_eq!(direct, json!({ "@alice:test.local": [dm] }));
    // A second DM from alice is appended to her list.
    let dm2 = s
        .create_room(
            &alice,
            json!({ "invite": [bob.user_id], "is_direct": true }),
        )
        .await;
    assert!(joined_soon(&s, &bob, &dm2).await);
    let (_, direct) = s
        .get(
            &format!("/user/{}/account_data/m.direct", enc(&bob.user_id)),
            &bob.token,
        )
        .await;
    assert_eq!(direct, json!({ "@alice:test.local": [dm, dm2] }));
}

#[tokio::test]
async fn an_inviter_entry_that_is_not_a_list_is_left_untouched() {
    let s = TestServer::start_with(&config("      {}\n")).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let odd =
        json!({ "@alice:test.local": "not a list", "@carol:test.local": ["!old:test.local"] });
    s.put(
        &format!("/user/{}/account_data/m.direct", enc(&bob.user_id)),
        &bob.token,
        odd.clone(),
    )
    .await;
    let dm = s
        .create_room(
            &alice,
            json!({ "invite": [bob.user_id], "is_direct": true }),
        )
        .await;
    assert!(joined_soon(&s, &bob, &dm).await);
    let (_, direct) = s
        .get(
            &format!("/user/{}/account_data/m.direct", enc(&bob.user_id)),
            &bob.token,
        )
        .await;
    assert_eq!(direct, odd);
}

#[tokio::test]
async fn local_inviters_are_accepted_when_only_local_users_are() {
    // The inviter here is local; remote inviters reach on_new_event the same way.
    let s = TestServer::start_with(&config(
        "      accept_invites_only_from_local_users: true\n",
    ))
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "invite": [bob.user_id] }))
        .await;
    assert!(joined_soon(&s, &bob, &room).await);
}

#[tokio::test]
async fn a_worker_to_run_on_turns_the_module_off_on_this_single_process() {
    let s = TestServer::start_with(&config("      worker_to_run_on: background_worker\n")).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "invite": [bob.user_id] }))
        .await;
    assert!(!joined_soon(&s, &bob, &room).await);
}

#[test]
fn unknown_config_keys_stop_startup() {
    let error = modules_load_error(&config("      accept_only_dms: true\n"));
    assert!(
        error.contains("at `modules[0].config.accept_only_dms`: unknown field `accept_only_dms`"),
        "{error}"
    );
}
