//! Third-party rules, account validity, password auth providers, presence
//! routing, account data, unsigned fields, rate limits and media callbacks
//! over HTTP; and what each failure policy makes of a module that errors,
//! panics or hangs.

use axon_testkit::rules::{modules, rules, rules_with};
use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn check_event_allowed_denies_or_replaces_every_local_event() {
    let log = "allowed";
    let s = TestServer::start_with(&modules(&[
        rules(log, "a", &[("check_event_allowed", "replace")]),
        rules(log, "b", &[("check_event_allowed", "deny")]),
    ]))
    .await;
    let alice = s.register("alice").await;
    // a's replacement stops the chain: b never sees the message, which is stored edited.
    // (Room creation events are not messages, so a allows them and b denies them.)
    let refused = s.post("/createRoom", &alice.token, json!({})).await;
    assert_eq!(
        refused.1,
        json!({ "errcode": "M_FORBIDDEN", "error": "This event is not allowed in this context" })
    );
    assert_eq!(
        only(log, "check_event_allowed"),
        [
            "a:check_event_allowed:m.room.create:0",
            "b:check_event_allowed:m.room.create:0"
        ]
    );

    let log = "replaced";
    let s = TestServer::start_with(&modules(
        &[
            rules(log, "a", &[("check_event_allowed", "replace")]),
            rules(log, "b", &[("check_event_allowed", "deny")]),
        ]
        .map(|e| e.replace("deny", "allow")),
    ))
    .await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let creation = only(log, "check_event_allowed");
    assert!(
        creation
            .iter()
            .any(|c| c == "a:check_event_allowed:m.room.member:1"),
        "with the state before the event: {creation:?}"
    );
    let event_id = s.send_text(&alice, &room, "hello").await;
    let (_, event) = s
        .get(
            &format!("/rooms/{}/event/{}", enc(&room), enc(&event_id)),
            &alice.token,
        )
        .await;
    assert_eq!(event["content"]["body"], "hello (edited by a)");
    assert!(
        !only(log, "check_event_allowed")
            .iter()
            .any(|c| c.starts_with("b:check_event_allowed:m.room.message")),
        "b is not asked after a replacement"
    );
}

#[tokio::test]
async fn on_create_room_may_change_or_refuse_the_request() {
    let log = "on_create";
    let s =
        TestServer::start_with(&modules(&[rules(log, "a", &[("on_create_room", "some")])])).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let (_, topic) = s
        .get(
            &format!("/rooms/{}/state/m.room.topic/", enc(&room)),
            &alice.token,
        )
        .await;
    assert_eq!(topic["topic"], "set by a");
    assert_eq!(
        only(log, "on_create_room"),
        ["a:on_create_room:@alice:test.local:false"]
    );

    let s = TestServer::start_with(&modules(&[rules(
        "on_create_no",
        "a",
        &[("on_create_room", "deny")],
    )]))
    .await;
    let alice = s.register("alice").await;
    let refused = s.post("/createRoom", &alice.token, json!({})).await;
    assert_eq!(
        refused.1,
        json!({ "errcode": "M_FORBIDDEN", "error": "No rooms today" }),
        "the module's own error, as it is"
    );
    for behaviour in ["panic", "hang"] {
        let s = TestServer::start_with(&modules(&[rules(
            &format!("on_create_{behaviour}"),
            "a",
            &[("on_create_room", behaviour)],
        )]))
        .await;
        let alice = s.register("alice").await;
        let failed = s.post("/createRoom", &alice.token, json!({})).await;
        assert_eq!(failed.0, StatusCode::FORBIDDEN, "{behaviour}");
        assert_eq!(
            failed.1,
            json!({ "errcode": "M_UNKNOWN", "error": "Room creation forbidden with these parameters" })
        );
    }
}

#[tokio::test]
async fn on_new_event_hears_of_each_stored_event_after_the_reply() {
    let log = "new_event";
    let s =
        TestServer::start_with(&modules(&[rules(log, "a", &[("on_new_event", "panic")])])).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    s.send_text(&alice, &room, "first").await;
    let seen = wait_for_call(log, "a:on_new_event:m.room.message:first:true").await;
    assert!(
        seen.contains(&"a:on_new_event:m.room.create::true".to_string()),
        "room creation's events too: {seen:?}"
    );
    // It panics every time, and cannot refuse: the server goes on.
    s.send_text(&alice, &room, "second").await;
    wait_for_call(log, "a:on_new_event:m.room.message:second:true").await;
}

#[tokio::test]
async fn directory_visibility_third_party_check_fails_open() {
    let s = TestServer::start_with(&modules(&[rules(
        "visibility",
        "a",
        &[("check_visibility_can_be_modified", "deny")],
    )]))
    .await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let refused = s
        .put(
            &format!("/directory/list/room/{}", enc(&room)),
            &alice.token,
            json!({ "visibility": "public" }),
        )
        .await;
    assert_eq!(
        refused.1,
        json!({ "errcode": "M_UNKNOWN", "error": "Not allowed to publish room" })
    );
    let created = s
        .post(
            "/createRoom",
            &alice.token,
            json!({ "visibility": "public" }),
        )
        .await;
    assert_eq!(
        created.1,
        json!({ "errcode": "M_UNKNOWN", "error": "Room visibility value not allowed." })
    );
    for behaviour in ["panic", "error", "hang"] {
        let s = TestServer::start_with(&modules(&[rules(
            "visibility_open",
            "a",
            &[("check_visibility_can_be_modified", behaviour)],
        )]))
        .await;
        let alice = s.register("alice").await;
        let room = s.create_room(&alice, json!({})).await;
        let allowed = s
            .put(
                &format!("/directory/list/room/{}", enc(&room)),
                &alice.token,
                json!({ "visibility": "public" }),
            )
            .await;
        assert_eq!(allowed.0, StatusCode::OK, "{behaviour}: fails open");
    }
}

#[tokio::test]
async fn deactivation_can_be_refused_and_is_announced() {
    let log = "deactivate";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("check_can_deactivate_user", "deny")],
    )]))
    .await;
    let bob = s.register("bob").await;
    let body = json!({ "auth": { "type": "m.login.password", "user": "bob", "password": "correct horse" } });
    let refused = s
        .post("/account/deactivate", &bob.token, body.clone())
        .await;
    assert_eq!(
        refused.1,
        json!({ "errcode": "M_FORBIDDEN", "error": "Deactivation of this user is forbidden" })
    );
    assert_eq!(s.get("/account/whoami", &bob.token).await.0, StatusCode::OK);

    let log = "deactivated";
    let s = TestServer::start_with(&modules(&[rules(log, "a", &[])])).await;
    let bob = s.register("bob").await;
    let path = format!("/profile/{}/displayname", enc(&bob.user_id));
    assert_eq!(
        s.put(&path, &bob.token, json!({ "displayname": "Bobby" }))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        s.post("/account/deactivate", &bob.token, body).await.0,
        StatusCode::OK
    );
    assert_eq!(
        only(log, "on_profile_update"),
        [
            "a:on_profile_update:@bob:test.local:Bobby::false:false",
            "a:on_profile_update:@bob:test.local:::false:true"
        ]
    );
    assert_eq!(
        only(log, "on_user_deactivation_status_changed"),
        ["a:on_user_deactivation_status_changed:@bob:test.local:true:false"]
    );
    assert_eq!(
        only(log, "check_can_deactivate_user"),
        ["a:check_can_deactivate_user:@bob:test.local:false"]
    );
}

#[tokio::test]
async fn an_expired_account_gets_403_but_can_log_out() {
    let log = "expired";
    let s = TestServer::start_with(&modules(&[
        rules(log, "a", &[]),
        rules(log, "b", &[("is_user_expired", "deny")]),
    ]))
    .await;
    let alice = s.register("alice").await;
    assert_eq!(
        only(log, "on_user_registration"),
        [
            "a:on_user_registration:@alice:test.local",
            "b:on_user_registration:@alice:test.local"
        ]
    );
    assert_eq!(
        only(log, "on_user_login"),
        [
            "a:on_user_login:@alice:test.local:-",
            "b:on_user_login:@alice:test.local:-"
        ]
    );
    let expired = s.get("/account/whoami", &alice.token).await;
    assert_eq!(expired.0, StatusCode::FORBIDDEN);
    assert_eq!(
        expired.1,
        json!({ "errcode": "ORG_MATRIX_EXPIRED_ACCOUNT", "error": "User account has expired" })
    );
    assert_eq!(
        s.post("/logout", &alice.token, json!({})).await.0,
        StatusCode::OK,
        "logout is allowed"
    );
    assert_error(
        &s.get("/account/whoami", &alice.token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );

    // The first module with an answer decides: `Some(false)` from a hides b's `Some(true)`.
    let log = "not_expired";
    let s = TestServer::start_with(&modules(&[
        rules(log, "a", &[("is_user_expired", "some:false")]),
        rules(log, "b", &[("is_user_expired", "deny")]),
    ]))
    .await;
    let alice = s.register("alice").await;
    assert_eq!(
        s.get("/account/whoami", &alice.token).await.0,
        StatusCode::OK
    );
    assert!(only(log, "is_user_expired")
        .iter()
        .all(|c| c.starts_with("a:")));
}

#[tokio::test]
async fn password_auth_providers_choose_the_username_and_display_name() {
    let log = "auth_registration";
    let s = TestServer::start_with(&modules(&[
        rules(log, "a", &[]),
        rules(
            log,
            "b",
            &[
                ("get_username_for_registration", "some:chosen"),
                ("get_displayname_for_registration", "some:Chosen One"),
            ],
        ),
    ]))
    .await;
    let (status, registered) = s
        .request(Method::POST, "/register", None, Some(json!({ "username": "asked", "password": "pw", "auth": { "type": "m.login.dummy" } })))
        .await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    assert_eq!(registered["user_id"], "@chosen:test.local");
    assert_eq!(
        only(log, "get_username_for_registration"),
        [
            "a:get_username_for_registration:asked",
            "b:get_username_for_registration:asked"
        ]
    );
    let (_, name) = s
        .get(
            "/profile/%40chosen:test.local/displayname",
            registered["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(name["displayname"], "Chosen One");
}

#[tokio::test]
async fn password_auth_providers_add_login_types() {
    let log = "auth";
    let types = ", login_types: [['org.test.token', ['token']]]";
    let s = TestServer::start_with(&modules(&[
        rules_with(
            log,
            "a",
            &[
                ("check_auth", "some:@alice:test.local"),
                ("check_3pid_auth", "some:@alice:test.local"),
            ],
            types,
        ),
        rules(log, "b", &[("check_auth", "some:@mallory:test.local")]),
    ]))
    .await;
    let (_, flows) = s.request(Method::GET, "/login", None, None).await;
    assert_eq!(
        flows["flows"],
        json!([{ "type": "m.login.password" }, { "type": "org.test.token" }])
    );

    // a logs users in with its own login type; the user must exist.
    let token_login = json!({ "type": "org.test.token", "identifier": { "type": "m.id.user", "user": "alice" }, "token": "right" });
    assert_error(
        &s.request(Method::POST, "/login", None, Some(token_login.clone()))
            .await,
        403,
        "M_FORBIDDEN",
    );
    s.register("alice").await;
    let (status, logged_in) = s
        .request(Method::POST, "/login", None, Some(token_login))
        .await;
    assert_eq!(status, StatusCode::OK, "{logged_in}");
    assert_eq!(logged_in["user_id"], "@alice:test.local");
    assert!(
        only(log, "check_auth").iter().all(|c| c.starts_with("a:")),
        "only the module that registered the type"
    );
    let wrong = json!({ "type": "org.test.token", "user": "alice", "token": "wrong" });
    assert_error(
        &s.request(Method::POST, "/login", None, Some(wrong)).await,
        403,
        "M_FORBIDDEN",
    );
    let missing = json!({ "type": "org.test.token", "user": "alice" });
    assert_error(
        &s.request(Method::POST, "/login", None, Some(missing)).await,
        400,
        "M_UNKNOWN",
    );
    // A third-party identifier and password.
    let threepid = json!({ "type": "m.login.password", "identifier": { "type": "m.id.thirdparty", "medium": "email", "address": "a@example.org" }, "password": "x" });
    let (status, body) = s
        .request(Method::POST, "/login", None, Some(threepid))
        .await;
    assert_eq!(
        (status, body["user_id"].as_str()),
        (StatusCode::OK, Some("@alice:test.local"))
    );
    assert!(
        only(log, "check_3pid_auth").contains(&"a:check_3pid_auth:email:a@example.org".to_string())
    );

    let token = logged_in["access_token"].as_str().unwrap();
    s.post("/logout", token, json!({})).await;
    let device = logged_in["device_id"].as_str().unwrap();
    assert!(
        only(log, "on_logged_out").contains(&format!("a:on_logged_out:@alice:test.local:{device}"))
    );
    assert!(only(log, "on_user_login")
        .contains(&"a:on_user_login:@alice:test.local:org.test.token".to_string()));
}

#[tokio::test]
async fn a_module_can_take_over_password_logins() {
    let log = "password_module";
    let types = ", login_types: [['m.login.password', ['password']]]";
    let entry = rules_with(log, "a", &[("check_auth", "some:@alice:test.local")], types);
    let s = TestServer::start_with(&modules(&[
        entry.replace("'some:@alice:test.local'", "'some:@bob:test.local'")
    ]))
    .await;
    s.register("alice").await;
    s.register("bob").await;
    // The module answers first: alice's password logs in... as bob, the module's choice.
    let login = json!({ "type": "m.login.password", "user": "alice", "password": "anything" });
    let (status, body) = s.request(Method::POST, "/login", None, Some(login)).await;
    assert_eq!(
        (status, body["user_id"].as_str()),
        (StatusCode::OK, Some("@bob:test.local"))
    );
    assert!(only(log, "check_auth").contains(&"a:check_auth:alice:m.login.password".to_string()));

    // A module that says no: the local password is tried next, unless the operator turned it off.
    let declines = rules_with("password_declines", "a", &[], types);
    let s = TestServer::start_with(&modules(std::slice::from_ref(&declines))).await;
    s.register("alice").await;
    let local = json!({ "type": "m.login.password", "user": "alice", "password": "correct horse" });
    assert_eq!(
        s.request(Method::POST, "/login", None, Some(local.clone()))
            .await
            .0,
        StatusCode::OK
    );
    let s = TestServer::start_with(&format!(
        "password_config: {{localdb_enabled: false}}\n{}",
        modules(&[declines])
    ))
    .await;
    s.register("alice").await;
    assert_error(
        &s.request(Method::POST, "/login", None, Some(local)).await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn two_modules_claiming_one_login_type_differently_stop_startup() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}{}",
        test_config(dir.path(), ""),
        modules(&[
            rules_with(
                "conflict",
                "a",
                &[],
                ", login_types: [['org.test.token', ['token']]]"
            ),
            rules_with(
                "conflict",
                "b",
                &[],
                ", login_types: [['org.test.token', ['secret']]]"
            ),
        ])
    );
    assert_eq!(
        start_error(&yaml).await,
        "1 error in the modules config:\n  - module `test.Rules` at `modules[1]`: login type `org.test.token` is registered with fields [\"secret\"], but modules[0] registered it with [\"token\"]"
    );
}

#[tokio::test]
async fn presence_routers_decide_whose_presence_reaches_sync() {
    let log = "presence";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("get_interested_users", "all")],
    )]))
    .await;
    let alice = s.register("alice").await;
    let stranger = s.register("stranger").await;
    let (_, first) = s.get("/sync", &alice.token).await;
    s.put(
        &format!("/presence/{}/status", enc(&stranger.user_id)),
        &stranger.token,
        json!({ "presence": "online", "status_msg": "hi" }),
    )
    .await;
    let (_, next) = s
        .get(
            &format!("/sync?since={}", first["next_batch"].as_str().unwrap()),
            &alice.token,
        )
        .await;
    let senders: Vec<&str> = next["presence"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sender"].as_str().unwrap())
        .collect();
    assert!(
        senders.contains(&stranger.user_id.as_str()),
        "ALL: a stranger's presence too: {senders:?}"
    );

    let log = "presence_states";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[("get_users_for_states", "some:@alice:test.local")],
    )]))
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let stranger = s.register("stranger").await;
    let (_, first) = s.get("/sync", &alice.token).await;
    s.put(
        &format!("/presence/{}/status", enc(&stranger.user_id)),
        &stranger.token,
        json!({ "presence": "unavailable" }),
    )
    .await;
    let since = first["next_batch"].as_str().unwrap();
    let (_, for_alice) = s.get(&format!("/sync?since={since}"), &alice.token).await;
    assert!(
        for_alice["presence"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["sender"] == stranger.user_id),
        "routed to alice"
    );
    let (_, for_bob) = s.get(&format!("/sync?since={since}"), &bob.token).await;
    assert!(
        !for_bob["presence"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["sender"] == stranger.user_id),
        "not to bob"
    );
}

#[tokio::test]
async fn account_data_writes_are_announced() {
    let log = "account_data";
    let s = TestServer::start_with(&modules(&[rules(log, "a", &[])])).await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    s.put(
        &format!("/user/{}/account_data/org.test.global", enc(&alice.user_id)),
        &alice.token,
        json!({ "a": 1 }),
    )
    .await;
    s.put(
        &format!(
            "/user/{}/rooms/{}/account_data/org.test.room",
            enc(&alice.user_id),
            enc(&room)
        ),
        &alice.token,
        json!({}),
    )
    .await;
    assert_eq!(
        only(log, "on_account_data_updated"),
        [
            "a:on_account_data_updated:@alice:test.local:global:org.test.global".to_string(),
            format!("a:on_account_data_updated:@alice:test.local:{room}:org.test.room"),
        ]
    );
}

#[tokio::test]
async fn unsigned_fields_are_added_wherever_events_are_served() {
    let log = "unsigned";
    let s = TestServer::start_with(&modules(&[
        rules(log, "a", &[("add_field_to_unsigned_callback", "some")]),
        rules(log, "b", &[("add_field_to_unsigned_callback", "some")]),
    ]))
    .await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let event_id = s.send_text(&alice, &room, "hi").await;
    let (_, event) = s
        .get(
            &format!("/rooms/{}/event/{}", enc(&room), enc(&event_id)),
            &alice.token,
        )
        .await;
    // Merged in config order: b wins the shared key, both add their own.
    assert_eq!(event["unsigned"]["org.test.seen_by"], "b");
    assert_eq!(event["unsigned"]["org.test.a"], true);
    assert_eq!(event["unsigned"]["org.test.b"], true);
    assert!(
        event["unsigned"]["age"].is_number(),
        "the server's own fields stay"
    );
    let (_, messages) = s
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=1", enc(&room)),
            &alice.token,
        )
        .await;
    assert_eq!(messages["chunk"][0]["unsigned"]["org.test.seen_by"], "b");
    let (_, sync) = s.get("/sync", &alice.token).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert!(timeline
        .iter()
        .all(|e| e["unsigned"]["org.test.seen_by"] == "b"));
    let (_, state) = s
        .get(&format!("/rooms/{}/state", enc(&room)), &alice.token)
        .await;
    assert!(state
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["unsigned"]["org.test.a"] == true));
}

#[tokio::test]
async fn a_module_can_lift_a_users_rate_limit() {
    let log = "ratelimit";
    let s = TestServer::start_with(&format!(
        "rc_message: {{per_second: 0.1, burst_count: 1}}\n{}",
        modules(&[rules(
            log,
            "a",
            &[("get_ratelimit_override_for_user", "some")]
        )])
    ))
    .await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    for _ in 0..5 {
        s.send_text(&alice, &room, "unlimited").await;
    }
    assert!(only(log, "get_ratelimit_override_for_user")
        .contains(&"a:get_ratelimit_override_for_user:@alice:test.local:rc_message".to_string()));
    // And invites consult it too.
    let bob = s.register("bob").await;
    s.invite(&alice, &room, &bob.user_id).await;
    assert!(only(log, "get_ratelimit_override_for_user")
        .iter()
        .any(|c| c.ends_with(":rc_invites.per_issuer")));
}

#[tokio::test]
async fn media_callbacks_set_the_config_and_the_limits() {
    let log = "media";
    let s = TestServer::start_with(&modules(&[rules(
        log,
        "a",
        &[
            ("get_media_config_for_user", "some:1234"),
            ("get_media_upload_limits_for_user", "some:15"),
        ],
    )]))
    .await;
    let alice = s.register("alice").await;
    let (_, config) = s.get("/_matrix/client/v1/media/config", &alice.token).await;
    assert_eq!(config, json!({ "m.upload.size": 1234 }));
    let first = s
        .raw(
            Method::POST,
            "/_matrix/media/v3/upload",
            Some(&alice.token),
            "ten bytes!",
        )
        .await;
    assert_eq!(first.0, StatusCode::OK);
    let second = s
        .raw(
            Method::POST,
            "/_matrix/media/v3/upload",
            Some(&alice.token),
            "ten more!!",
        )
        .await;
    assert_eq!(second.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        second.1,
        json!({ "errcode": "M_RESOURCE_LIMIT_EXCEEDED", "error": "Media upload limit exceeded" })
    );
    assert_eq!(
        only(log, "on_media_upload_limit_exceeded"),
        ["a:on_media_upload_limit_exceeded:15:10:10"]
    );

    let s = TestServer::start_with(&modules(&[rules(
        "media_size",
        "a",
        &[("is_user_allowed_to_upload_media_of_size", "deny")],
    )]))
    .await;
    let alice = s.register("alice").await;
    let refused = s
        .raw(
            Method::POST,
            "/_matrix/media/v3/upload",
            Some(&alice.token),
            "x",
        )
        .await;
    assert_eq!(
        refused.1,
        json!({ "errcode": "M_TOO_LARGE", "error": "Upload request body is too large" })
    );
    assert_eq!(refused.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_operators_media_upload_limits_apply_without_modules() {
    let s = TestServer::start_with("media_upload_limits: [{time_period: 1h, max_size: 12}]").await;
    let alice = s.register("alice").await;
    assert_eq!(
        s.raw(
            Method::POST,
            "/_matrix/media/v3/upload",
            Some(&alice.token),
            "0123456789"
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_error(
        &s.raw(
            Method::POST,
            "/_matrix/media/v3/upload",
            Some(&alice.token),
            "0123",
        )
        .await,
        400,
        "M_RESOURCE_LIMIT_EXCEEDED",
    );
}

// ---- failure policies ----

#[tokio::test]
async fn a_failing_spam_checker_fails_the_request_and_the_server_keeps_serving() {
    for (behaviour, status, errcode) in [
        ("panic", 500, "M_UNKNOWN"),
        ("hang", 500, "M_UNKNOWN"),
        ("error", 418, "ORG_TEST_TEAPOT"),
    ] {
        let log = format!("failing_{behaviour}");
        let s = TestServer::start_with(&modules(&[
            rules(&log, "a", &[("user_may_create_room", behaviour)]),
            rules(&log, "b", &[]),
        ]))
        .await;
        let alice = s.register("alice").await;
        let started = Instant::now();
        let failed = s.post("/createRoom", &alice.token, json!({})).await;
        assert_error(&failed, status, errcode);
        if behaviour == "hang" {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the 300ms callback_timeout applies"
            );
        }
        assert!(
            only(&log, "user_may_create_room")
                .iter()
                .all(|c| c.starts_with("a:")),
            "{behaviour}: the chain stops"
        );
        // The server keeps serving, other callbacks included.
        let (status, _) = s.get("/account/whoami", &alice.token).await;
        assert_eq!(status, StatusCode::OK);
        let (_, rooms) = s.get("/joined_rooms", &alice.token).await;
        assert_eq!(
            rooms["joined_rooms"],
            json!([]),
            "{behaviour}: nothing was created"
        );
    }
}
