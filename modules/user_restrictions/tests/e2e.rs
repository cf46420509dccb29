//! The user_restrictions port (synapse-user-restrictions), over HTTP with
//! non-admin users: every rule of its spec and every config key.

// Name the module crate, so the linker keeps its registration.
use user_restrictions as _;

use axon_testkit::*;

fn config(body: &str) -> String {
    format!("modules:\n  - module: user_restrictions::UserRestrictionsModule\n    config:\n{body}")
}

const SPEC_EXAMPLE: &str = "      rules:
        - match: '@admin.*:test.local'
          allow: [invite, create_room]
        - match: '@assistant.*:test.local'
          allow: [invite]
      default_deny: [invite, create_room]
";

async fn can_create(s: &TestServer, user: &User) -> bool {
    let (status, body) = s.post("/createRoom", &user.token, json!({})).await;
    if status == StatusCode::FORBIDDEN {
        assert_eq!(
            body,
            json!({ "errcode": "M_FORBIDDEN", "error": "You are not permitted to create rooms" })
        );
    }
    status == StatusCode::OK
}

async fn can_invite(s: &TestServer, inviter: &User, room: &str, invitee: &User) -> bool {
    let (status, body) = s.invite(inviter, room, &invitee.user_id).await;
    if status == StatusCode::FORBIDDEN {
        assert_eq!(
            body,
            json!({ "errcode": "M_FORBIDDEN", "error": "Invites have been disabled on this server" })
        );
    }
    status == StatusCode::OK
}

#[tokio::test]
async fn the_readme_example() {
    let s = TestServer::start_with(&config(SPEC_EXAMPLE)).await;
    let admin = s.register("admin1").await;
    let assistant = s.register("assistant7").await;
    let someone = s.register("someone").await;
    let target = s.register("target").await;
    assert!(can_create(&s, &admin).await);
    assert!(
        !can_create(&s, &assistant).await,
        "assistants may only invite"
    );
    assert!(!can_create(&s, &someone).await, "default_deny");

    let room = s
        .create_room(
            &admin,
            json!({ "preset": "public_chat", "power_level_content_override": { "invite": 0 } }),
        )
        .await;
    s.join(&assistant, &room).await;
    s.join(&someone, &room).await;
    assert!(can_invite(&s, &assistant, &room, &target).await);
    assert!(
        !can_invite(&s, &someone, &room, &target).await,
        "default_deny"
    );
    assert!(can_invite(&s, &admin, &room, &s.register("other").await).await);
}

#[tokio::test]
async fn patterns_match_the_whole_user_id_and_dot_is_any_character() {
    let s = TestServer::start_with(&config(
        "      rules:\n        - match: '@b.b:test.local'\n          allow: [create_room]\n        - match: 'carol'\n          allow: [create_room]\n      default_deny: [create_room]\n",
    ))
    .await;
    assert!(
        can_create(&s, &s.register("bob").await).await,
        "`.` matches `o`"
    );
    assert!(
        !can_create(&s, &s.register("bobby").await).await,
        "a prefix is not a full match"
    );
    assert!(
        !can_create(&s, &s.register("carol").await).await,
        "`carol` does not match the whole `@carol:test.local`"
    );
}

#[tokio::test]
async fn the_first_rule_that_names_the_permission_decides() {
    let s = TestServer::start_with(&config(
        "      rules:\n        - match: '@x.*'\n          allow: [invite]\n        - match: '@xa.*'\n          deny: [create_room]\n        - match: '@x.*'\n          allow: [create_room]\n",
    ))
    .await;
    // Rule 1 matches both but says nothing of create_room; rule 2 denies xa; rule 3 allows the rest.
    assert!(!can_create(&s, &s.register("xavier").await).await);
    assert!(can_create(&s, &s.register("xerxes").await).await);
    // No default_deny: unmatched users may do anything.
    assert!(can_create(&s, &s.register("yolanda").await).await);
}

#[tokio::test]
async fn invites_are_judged_by_the_inviter_only() {
    let s = TestServer::start_with(&config(
        "      rules:\n        - match: '@vip:test.local'\n          deny: [invite]\n",
    ))
    .await;
    let alice = s.register("alice").await;
    let vip = s.register("vip").await;
    let room = s
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "power_level_content_override": { "invite": 0 } }),
        )
        .await;
    assert!(
        can_invite(&s, &alice, &room, &vip).await,
        "inviting a denied user is fine"
    );
    s.join(&vip, &room).await;
    assert!(!can_invite(&s, &vip, &room, &s.register("guest").await).await);
}

#[test]
fn config_errors_stop_startup() {
    let errors = |body: &str| modules_load_error(&config(body));
    assert!(errors("      rules: []\n      default_deny: [fly]\n")
        .contains("at `modules[0].config.default_deny[0]`: unknown variant `fly`, expected `invite` or `create_room`"));
    assert!(errors("      default_deny: [invite]\n")
        .contains("at `modules[0].config`: missing field `rules`"));
    assert!(errors("      rules: {match: x}\n")
        .contains("at `modules[0].config.rules`: invalid type: map, expected a sequence"));
    assert!(errors("      rules:\n        - match: '(unclosed'\n")
        .contains("at `modules[0].config.rules[0].match`: not a valid regular expression"));
    assert!(errors("      rules:\n        - allow: [invite]\n").contains("missing field `match`"));
}
