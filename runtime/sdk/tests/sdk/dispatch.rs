//! Dispatch: modules run in config order, each callback's combine rule, and
//! what each failure policy makes of an error, a panic and a timeout.

use axon::callbacks::{Callbacks, FailureKind};
use axon::prelude::*;
use axon_testkit::log::*;
use axon_testkit::scripted::*;
use std::time::Duration;

/// Loads `Scripted` modules named a, b, c… with the given behaviours, logging to `log`.
fn chain(log: &str, behaviours: &[&str]) -> std::sync::Arc<Callbacks> {
    chain_with(log, behaviours, "")
}

fn chain_with(log: &str, behaviours: &[&str], extra: &str) -> std::sync::Arc<Callbacks> {
    let mut yaml = String::from("modules:\n");
    for (i, behaviour) in behaviours.iter().enumerate() {
        let name = (b'a' + i as u8) as char;
        yaml += &format!(
            "  - module: test.Scripted\n    callback_timeout: 1s\n    config: {{log: {log}, name: {name}, behaviour: {behaviour}{extra}}}\n"
        );
    }
    load(&yaml).unwrap().callbacks
}

fn alice() -> OwnedUserId {
    user("@alice:test.local")
}

fn event() -> Event {
    serde_json::from_value(serde_json::json!({
        "event_id": "$abc",
        "room_id": "!room:test.local",
        "sender": "@alice:test.local",
        "type": "m.room.message",
        "content": {"body": "hi"},
        "origin_server_ts": 1,
    }))
    .unwrap()
}

fn requester() -> Requester {
    Requester {
        user_id: alice(),
        device_id: None,
        is_guest: false,
        shadow_banned: false,
    }
}

#[tokio::test]
async fn nothing_registered_gives_the_neutral_answer() {
    let callbacks = chain("none", &[]);
    let result = callbacks
        .spam_checker
        .user_may_create_room(&alice(), &JsonObject::new())
        .await;
    assert_eq!(result, Ok(SpamCheck::NotSpam));
    assert_eq!(
        callbacks.account_validity.is_user_expired(&alice()).await,
        Ok(None)
    );
    assert!(
        callbacks
            .third_party_rules
            .check_visibility_can_be_modified(
                "!r:test.local".try_into().unwrap(),
                &StateMap::new(),
                Visibility::Public
            )
            .await
    );
}

#[tokio::test]
async fn first_non_allow_stops_the_chain_in_config_order() {
    let callbacks = chain("fna", &["allow", "deny", "allow"]);
    let result = callbacks
        .spam_checker
        .user_may_create_room(&alice(), &JsonObject::new())
        .await;
    assert_eq!(result, Ok(SpamCheck::deny(ErrCode::Forbidden)));
    assert_eq!(
        calls("fna"),
        ["a:user_may_create_room", "b:user_may_create_room"]
    );
}

#[tokio::test]
async fn first_non_allow_carries_extra_fields_and_all_allow_is_allow() {
    let callbacks = chain("fna2", &["deny_with_fields", "deny"]);
    let Ok(SpamCheck::Deny {
        errcode,
        extra_fields,
    }) = callbacks
        .spam_checker
        .user_may_create_room(&alice(), &JsonObject::new())
        .await
    else {
        panic!("expected a denial")
    };
    assert_eq!(errcode.as_str(), "ORG_TEST_SPAM");
    assert_eq!(extra_fields.get("org.test.by"), Some(&"a".into()));

    let callbacks = chain("fna3", &["allow", "allow"]);
    let result = callbacks
        .spam_checker
        .user_may_create_room(&alice(), &JsonObject::new())
        .await;
    assert_eq!(result, Ok(SpamCheck::NotSpam));
    assert_eq!(calls("fna3").len(), 2);
}

#[tokio::test]
async fn a_replacement_event_stops_the_chain() {
    let callbacks = chain("replace", &["allow", "deny_with_fields", "deny"]);
    let result = callbacks
        .third_party_rules
        .check_event_allowed(&event(), &StateMap::new())
        .await;
    let Ok(EventAllowed::Replace(replaced)) = result else {
        panic!("expected a replacement, got {result:?}")
    };
    assert_eq!(replaced.content.get("replaced_by"), Some(&"b".into()));
    assert_eq!(
        calls("replace"),
        ["a:check_event_allowed", "b:check_event_allowed"]
    );
}

#[tokio::test]
async fn all_true_stops_at_the_first_false() {
    let callbacks = chain("alltrue", &["allow", "deny", "allow"]);
    let room: OwnedRoomId = "!r:test.local".try_into().unwrap();
    let allowed = callbacks
        .third_party_rules
        .check_visibility_can_be_modified(&room, &StateMap::new(), Visibility::Public)
        .await;
    assert!(!allowed);
    assert_eq!(calls("alltrue").len(), 2);
}

#[tokio::test]
async fn any_true_stops_at_the_first_true() {
    let callbacks = chain("anytrue", &["allow", "deny", "deny"]);
    let profile = UserProfile {
        user_id: user("@bob:test.local"),
        display_name: None,
        avatar_url: None,
    };
    let spammy = callbacks
        .spam_checker
        .check_username_for_spam(&profile, &alice())
        .await;
    assert_eq!(spammy, Ok(true));
    assert_eq!(
        calls("anytrue"),
        ["a:check_username_for_spam", "b:check_username_for_spam"]
    );
}

#[tokio::test]
async fn first_some_wins() {
    let callbacks = chain("some", &["allow", "deny", "deny"]);
    assert_eq!(
        callbacks.account_validity.is_user_expired(&alice()).await,
        Ok(Some(true))
    );
    assert_eq!(calls("some"), ["a:is_user_expired", "b:is_user_expired"]);
}

#[tokio::test]
async fn all_calls_every_module_in_order() {
    let callbacks = chain("all", &["allow", "deny", "allow"]);
    callbacks
        .account_data
        .on_account_data_updated(&alice(), None, "m.test", &JsonObject::new())
        .await;
    assert_eq!(
        calls("all"),
        [
            "a:on_account_data_updated",
            "b:on_account_data_updated",
            "c:on_account_data_updated"
        ]
    );
}

#[tokio::test]
async fn each_module_sees_the_request_the_previous_one_changed() {
    let callbacks = chain("mutate", &["allow", "allow"]);
    let mut request = JsonObject::new();
    callbacks
        .third_party_rules
        .on_create_room(&requester(), &mut request, false)
        .await
        .unwrap();
    assert_eq!(request.get("seen_by"), Some(&serde_json::json!(["a", "b"])));
}

#[tokio::test]
async fn unsigned_fields_merge_and_the_last_module_wins_a_key() {
    let yaml = "modules:\n\
      \x20 - module: test.Scripted\n    config: {log: unsigned, name: a, unsigned: {shared: a, only_a: 1}}\n\
      \x20 - module: test.Scripted\n    config: {log: unsigned, name: b, unsigned: {shared: b, only_b: 2}}\n";
    let callbacks = load(yaml).unwrap().callbacks;
    let fields = callbacks
        .add_extra_fields_to_unsigned_client_event
        .add_field_to_unsigned_callback(&event())
        .await
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(fields),
        serde_json::json!({"shared": "b", "only_a": 1, "only_b": 2})
    );
}

#[tokio::test]
async fn interested_users_are_unioned_and_all_short_circuits() {
    let yaml = "modules:\n\
      \x20 - module: test.Scripted\n    config: {log: presence, name: a, interested: ['@x:test.local']}\n\
      \x20 - module: test.Scripted\n    config: {log: presence, name: b, interested: ['@y:test.local']}\n";
    let callbacks = load(yaml).unwrap().callbacks;
    let users = callbacks
        .presence_router
        .get_interested_users(&alice())
        .await;
    assert_eq!(
        users,
        InterestedUsers::Users([user("@x:test.local"), user("@y:test.local")].into())
    );

    let yaml = "modules:\n\
      \x20 - module: test.Scripted\n    config: {log: presence_all, name: a}\n\
      \x20 - module: test.Scripted\n    config: {log: presence_all, name: b, interested: ['@y:test.local']}\n";
    let callbacks = load(yaml).unwrap().callbacks;
    assert_eq!(
        callbacks
            .presence_router
            .get_interested_users(&alice())
            .await,
        InterestedUsers::All
    );
    assert_eq!(calls("presence_all"), ["a:get_interested_users"]);
}

#[tokio::test]
async fn users_for_states_are_unioned_per_user() {
    let yaml = "modules:\n\
      \x20 - module: test.Scripted\n    config: {log: states, name: a, interested: ['@x:test.local']}\n\
      \x20 - module: test.Scripted\n    config: {log: states, name: b, interested: ['@x:test.local', '@y:test.local']}\n";
    let callbacks = load(yaml).unwrap().callbacks;
    let state = PresenceState {
        user_id: alice(),
        presence: Presence::Online,
        status_msg: None,
        last_active_ts: 0,
        currently_active: true,
    };
    let routed = callbacks
        .presence_router
        .get_users_for_states(std::slice::from_ref(&state))
        .await;
    assert_eq!(routed.len(), 2);
    assert_eq!(routed[&user("@x:test.local")].len(), 1);
}

#[tokio::test]
async fn only_the_first_background_update_controller_is_used() {
    let yaml = "modules:\n\
      \x20 - module: test.Scripted\n    config: {log: bg, name: first}\n\
      \x20 - module: test.Scripted\n    config: {log: bg, name: second-one}\n";
    let loaded = load(yaml).unwrap();
    assert_eq!(
        loaded.warnings,
        ["modules[1] (`test.Scripted`): `background_update_controller.default_batch_size` is ignored: only the first module implementing it is used, and that is modules[0] (`test.Scripted`)"]
    );
    let size = loaded
        .callbacks
        .background_update_controller
        .default_batch_size("u", "main")
        .await;
    assert_eq!(size, Some(5));
    assert_eq!(calls("bg"), ["first:default_batch_size"]);
}

// ---- failure policies ----

#[tokio::test]
async fn propagate_passes_a_module_error_through_unchanged() {
    let callbacks = chain("err", &["error", "allow"]);
    let failure = callbacks
        .spam_checker
        .user_may_create_room(&alice(), &JsonObject::new())
        .await
        .unwrap_err();
    assert_eq!(failure.module, "test.Scripted");
    assert_eq!(failure.callback, "spam_checker.user_may_create_room");
    let error = failure.to_error();
    assert_eq!(
        (error.status, error.errcode.as_str()),
        (418, "ORG_TEST_TEAPOT")
    );
    assert_eq!(
        error.body(),
        serde_json::json!({"errcode": "ORG_TEST_TEAPOT", "error": "I'm a teapot"})
    );
    assert_eq!(
        calls("err"),
        ["a:user_may_create_room"],
        "the chain stops at the failure"
    );
}

#[tokio::test]
async fn propagate_turns_a_panic_into_a_500() {
    let callbacks = chain("panic", &["allow", "panic", "allow"]);
    let failure = callbacks
        .spam_checker
        .user_may_create_room(&alice(), &JsonObject::new())
        .await
        .unwrap_err();
    assert_eq!(
        failure.kind,
        FailureKind::Panic("b panics on purpose".into())
    );
    assert_eq!(failure.index, 1);
    assert_eq!(
        failure.to_error().body(),
        serde_json::json!({"errcode": "M_UNKNOWN", "error": "Internal server error"})
    );
    assert_eq!(failure.to_error().status, 500);
    assert_eq!(failure.to_string(), "modules[1] (`test.Scripted`) spam_checker.user_may_create_room: panicked: b panics on purpose");
    // The module is still there and the callbacks still work afterwards.
    assert_eq!(calls("panic").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn propagate_turns_a_timeout_into_a_500() {
    let callbacks = chain("hang", &["hang", "allow"]);
    let started = tokio::time::Instant::now();
    let failure = callbacks
        .spam_checker
        .user_may_create_room(&alice(), &JsonObject::new())
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout(Duration::from_secs(1)));
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "the entry's callback_timeout applies"
    );
    assert_eq!(failure.to_error().status, 500);
    assert_eq!(
        failure.to_string(),
        "modules[0] (`test.Scripted`) spam_checker.user_may_create_room: timed out after 1s"
    );
}

#[tokio::test(start_paused = true)]
async fn fail_open_skips_a_failing_module_and_asks_the_next() {
    for behaviour in ["error", "panic", "hang"] {
        let log = format!("open-{behaviour}");
        let callbacks = chain(&log, &[behaviour, "deny"]);
        let room: OwnedRoomId = "!r:test.local".try_into().unwrap();
        let allowed = callbacks
            .third_party_rules
            .check_visibility_can_be_modified(&room, &StateMap::new(), Visibility::Public)
            .await;
        assert!(
            !allowed,
            "{behaviour}: the second module's false still counts"
        );
        assert_eq!(calls(&log).len(), 2, "{behaviour}");

        let callbacks = chain(&format!("{log}-alone"), &[behaviour]);
        let allowed = callbacks
            .third_party_rules
            .check_visibility_can_be_modified(&room, &StateMap::new(), Visibility::Public)
            .await;
        assert!(
            allowed,
            "{behaviour}: a failing module alone does not refuse"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn refuse_turns_a_panic_or_timeout_into_the_catalogs_refusal() {
    for behaviour in ["panic", "hang"] {
        let callbacks = chain(&format!("refuse-{behaviour}"), &[behaviour]);
        let failure = callbacks
            .third_party_rules
            .on_create_room(&requester(), &mut JsonObject::new(), false)
            .await
            .unwrap_err();
        let error = failure.to_error();
        assert_eq!(error.status, 403, "{behaviour}");
        assert_eq!(
            error.body(),
            serde_json::json!({"errcode": "M_UNKNOWN", "error": "Room creation forbidden with these parameters"})
        );
    }
    // A module's own error still passes through unchanged.
    let callbacks = chain("refuse-error", &["error"]);
    let failure = callbacks
        .third_party_rules
        .on_create_room(&requester(), &mut JsonObject::new(), false)
        .await
        .unwrap_err();
    assert_eq!(failure.to_error().status, 418);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_callback_does_not_block_other_calls() {
    let callbacks = chain_with("concurrent", &["hang"], "");
    let hanging = {
        let callbacks = callbacks.clone();
        tokio::spawn(async move {
            callbacks
                .spam_checker
                .user_may_create_room(&alice(), &JsonObject::new())
                .await
        })
    };
    while calls("concurrent").is_empty() {
        tokio::task::yield_now().await; // until the spawned call is inside the module
    }
    // Meanwhile another callback of the same module instance answers at once:
    // the hang holds no lock on the module or the chain.
    let quick = callbacks
        .background_update_controller
        .default_batch_size("u", "main")
        .await;
    assert_eq!(quick, Some(1), "module `a` answers with its name's length");
    assert!(
        !hanging.is_finished(),
        "the quick answer came while the other call still hangs"
    );
    assert_eq!(
        calls("concurrent"),
        ["a:user_may_create_room", "a:default_batch_size"]
    );
    assert!(
        hanging.await.unwrap().is_err(),
        "the hanging call ends in a timeout"
    );
}
