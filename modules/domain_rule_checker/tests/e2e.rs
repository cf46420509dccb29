//! The domain_rule_checker port (synapse-domain-rule-checker), over HTTP
//! with non-admin users. The server is `test.local`; invitees on other
//! servers are remote users, whose servers do not exist here: an invite
//! the module allows is sent for and fails to reach them (502).

// Name the module crate, so the linker keeps its registration.
use domain_rule_checker as _;

use axon_testkit::*;

fn config(body: &str) -> String {
    format!("modules:\n  - module: domain_rule_checker::DomainRuleChecker\n    config:\n{body}")
}

/// Whether the module let the invite through: it is stored (200), or for
/// a remote invitee sent to their server, which is not there (502); the
/// module's refusal is a 403.
async fn invite(s: &TestServer, inviter: &User, room: &str, invitee: &str) -> bool {
    let (status, body) = s.invite(inviter, room, invitee).await;
    match status {
        StatusCode::FORBIDDEN => {
            assert_eq!(
                body,
                json!({ "errcode": "M_FORBIDDEN", "error": "Invites have been disabled on this server" })
            );
            false
        }
        StatusCode::OK => true,
        StatusCode::BAD_GATEWAY if !invitee.ends_with(":test.local") => {
            assert_eq!(body["errcode"], "M_UNKNOWN", "{body}");
            true
        }
        other => panic!("{other} {body}"),
    }
}

#[tokio::test]
async fn the_domain_mapping_decides_who_may_be_invited() {
    let s = TestServer::start_with(&config(
        "      domain_mapping:\n        test.local: [test.local, b.test]\n        c.test: []\n      can_invite_if_not_in_domain_mapping: false\n",
    ))
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({})).await;
    assert!(invite(&s, &alice, &room, &bob.user_id).await);
    assert!(invite(&s, &alice, &room, "@someone:b.test").await);
    assert!(!invite(&s, &alice, &room, "@someone:d.test").await);
}

#[tokio::test]
async fn inviters_outside_the_mapping_follow_can_invite_if_not_in_domain_mapping() {
    for (allowed, expected) in [("false", false), ("true", true)] {
        let s = TestServer::start_with(&config(&format!(
            "      domain_mapping:\n        other.org: [other.org]\n      can_invite_if_not_in_domain_mapping: {allowed}\n"
        )))
        .await;
        let alice = s.register("alice").await;
        let room = s.create_room(&alice, json!({})).await;
        assert_eq!(
            invite(&s, &alice, &room, "@x:anywhere.org").await,
            expected,
            "{allowed}"
        );
    }
}

#[tokio::test]
async fn joins_can_require_an_invite() {
    let s = TestServer::start_with(&config("      can_invite_if_not_in_domain_mapping: true\n      can_only_join_rooms_with_invite: true\n")).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    let refused = s.join(&carol, &room).await;
    assert_eq!(
        refused.1,
        json!({ "errcode": "M_FORBIDDEN", "error": "Not allowed to join this room" })
    );
    assert!(invite(&s, &alice, &room, &bob.user_id).await);
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);

    let open =
        TestServer::start_with(&config("      can_invite_if_not_in_domain_mapping: true\n")).await;
    let alice = open.register("alice").await;
    let carol = open.register("carol").await;
    let room = open
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(
        open.join(&carol, &room).await.0,
        StatusCode::OK,
        "off by default"
    );
}

#[tokio::test]
async fn invites_can_be_limited_to_rooms_that_look_new() {
    let s = TestServer::start_with(&config("      can_invite_if_not_in_domain_mapping: true\n      can_only_invite_during_room_creation: true\n")).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    // createRoom's invites go out while the room looks new.
    let room = s
        .create_room(&alice, json!({ "invite": [bob.user_id] }))
        .await;
    // Still new: only the creator's join and invites the creator sent.
    assert!(invite(&s, &alice, &room, "@remote:else.where").await);
    // Once an invitee joins, the room is no longer new.
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    assert!(!invite(&s, &alice, &room, &carol.user_id).await);
}

#[tokio::test]
async fn some_domains_may_not_be_invited_to_published_rooms() {
    let s = TestServer::start_with(&config(
        "      can_invite_if_not_in_domain_mapping: true\n      domains_prevented_from_being_invited_to_published_rooms: [b.test]\n",
    ))
    .await;
    let alice = s.register("alice").await;
    let public = s
        .create_room(&alice, json!({ "visibility": "public" }))
        .await;
    let private = s.create_room(&alice, json!({})).await;
    assert!(!invite(&s, &alice, &public, "@x:b.test").await);
    assert!(invite(&s, &alice, &public, "@x:c.test").await);
    assert!(
        invite(&s, &alice, &private, "@x:b.test").await,
        "only published rooms"
    );
}

#[test]
fn config_errors_stop_startup() {
    let errors = |body: &str| modules_load_error(&config(body));
    assert!(errors("      can_only_join_rooms_with_invite: true\n")
        .contains("at `modules[0].config`: missing field `can_invite_if_not_in_domain_mapping`"));
    assert!(errors(
        "      can_invite_if_not_in_domain_mapping: true\n      can_invite_to_everything: true\n"
    )
    .contains("unknown field `can_invite_to_everything`"));
    assert!(
        errors("      can_invite_if_not_in_domain_mapping: true\n      domain_mapping: [a]\n")
            .contains(
                "at `modules[0].config.domain_mapping`: invalid type: sequence, expected a map"
            )
    );
}
