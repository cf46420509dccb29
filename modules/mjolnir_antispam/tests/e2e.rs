//! The mjolnir_antispam port (Mjolnir's in-process module), over HTTP with
//! non-admin users. Policy rules are state events in a list room; an
//! operator names the room in `ban_lists` once it exists, so each test
//! creates it, then restarts the server with the module configured.

// Name the module crate, so the linker keeps its registration.
use mjolnir_antispam as _;

use axon_testkit::*;

const INVITES_REFUSED: &str = "Invites have been disabled on this server";
const SPAM: &str = "This message has been rejected as probable spam";

/// A server whose moderator keeps the list room `list`.
struct Policies {
    s: TestServer,
    moderator: User,
    list: String,
}

impl Policies {
    /// Creates the list room, sets `rules` in it, then restarts with the
    /// module on; `config` is the module's config with `{list}` for the room.
    async fn start(config: &str, rules: &[(&str, &str, Value)]) -> Policies {
        let s = TestServer::start().await;
        let moderator = s.register("moderator").await;
        let list = s.create_room(&moderator, json!({})).await;
        let mut policies = Policies { s, moderator, list };
        for (event_type, key, content) in rules {
            policies.set(event_type, key, content.clone()).await;
        }
        let config = config.replace("{list}", &policies.list);
        policies
            .s
            .restart_with(&format!(
                "modules:\n  - module: mjolnir_antispam::Module\n    config:\n{config}"
            ))
            .await;
        policies
    }

    /// Sets a policy rule (any state event) in the list room.
    async fn set(&self, event_type: &str, key: &str, content: Value) {
        let (status, body) = self
            .s
            .put(
                &format!("/rooms/{}/state/{event_type}/{}", enc(&self.list), enc(key)),
                &self.moderator.token,
                content,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{event_type}: {body}");
    }

    async fn ban(&self, kind: &str, entity: &str) {
        self.set(
            &format!("m.policy.rule.{kind}"),
            &format!("rule:{entity}"),
            json!({ "entity": entity, "recommendation": "m.ban", "reason": "spam" }),
        )
        .await;
    }

    /// Whether `inviter` may invite a fresh user into a room of their own.
    async fn may_invite(&self, inviter: &User) -> bool {
        let room = self.s.create_room(inviter, json!({})).await;
        self.may_invite_into(inviter, &room).await
    }

    async fn may_invite_into(&self, inviter: &User, room: &str) -> bool {
        let invitee = format!("@someone{}:{SERVER_NAME}", rand_suffix());
        let (status, body) = self.s.invite(inviter, room, &invitee).await;
        match status {
            StatusCode::OK => true,
            StatusCode::FORBIDDEN => {
                assert_eq!(
                    body,
                    json!({ "errcode": "M_FORBIDDEN", "error": INVITES_REFUSED })
                );
                false
            }
            other => panic!("invite: {other} {body}"),
        }
    }

    /// Sends a text; true if it was accepted, false if refused as spam.
    async fn may_send(&self, user: &User, room: &str, body: &str) -> bool {
        let (status, response) = self
            .s
            .put(
                &format!(
                    "/rooms/{}/send/m.room.message/t{}",
                    enc(room),
                    rand_suffix()
                ),
                &user.token,
                json!({ "msgtype": "m.text", "body": body }),
            )
            .await;
        match status {
            StatusCode::OK => true,
            StatusCode::FORBIDDEN => {
                assert_eq!(response, json!({ "errcode": "M_FORBIDDEN", "error": SPAM }));
                false
            }
            other => panic!("send: {other} {response}"),
        }
    }
}

fn lists(config: &str) -> String {
    format!("      ban_lists: [\"{{list}}\"]\n{config}")
}

#[tokio::test]
async fn invites_from_banned_users_servers_and_into_banned_rooms_are_refused() {
    let p = Policies::start(&lists(""), &[]).await;
    let spammer = p.s.register("spammer").await;
    let alice = p.s.register("alice").await;
    assert!(p.may_invite(&spammer).await, "no rules yet");

    p.ban("user", "@spam*:test.local").await;
    assert!(!p.may_invite(&spammer).await, "banned inviter");
    assert!(p.may_invite(&alice).await, "someone else");

    // The invitee is not checked: a banned user may be invited.
    let room = p.s.create_room(&alice, json!({})).await;
    assert_eq!(
        p.s.invite(&alice, &room, &spammer.user_id).await.0,
        StatusCode::OK
    );

    p.ban("room", &room).await;
    assert!(!p.may_invite_into(&alice, &room).await, "banned room");
    assert!(p.may_invite(&alice).await, "another room");

    p.ban("server", "TEST.loc?l").await;
    assert!(!p.may_invite(&alice).await, "banned server, any case");
}

#[tokio::test]
async fn rules_in_the_list_at_start_up_apply_from_the_first_request() {
    let p = Policies::start(
        &lists(""),
        &[(
            "m.policy.rule.user",
            "r1",
            json!({ "entity": "@spammer:test.local", "recommendation": "m.ban", "reason": "spam" }),
        )],
    )
    .await;
    let spammer = p.s.register("spammer").await;
    assert!(!p.may_invite(&spammer).await);
}

#[tokio::test]
async fn all_three_rule_type_spellings_and_both_ban_recommendations_count() {
    let p = Policies::start(&lists(""), &[]).await;
    let users = [
        ("m.policy.rule.user", "m.ban"),
        ("m.room.rule.user", "m.ban"),
        ("org.matrix.mjolnir.rule.user", "org.matrix.mjolnir.ban"),
    ];
    for (i, (event_type, recommendation)) in users.iter().enumerate() {
        let user = p.s.register(&format!("user{i}")).await;
        assert!(p.may_invite(&user).await);
        p.set(
            event_type,
            "r",
            json!({ "entity": user.user_id, "recommendation": recommendation, "reason": "" }),
        )
        .await;
        assert!(!p.may_invite(&user).await, "{event_type}");
    }
    let alice = p.s.register("alice").await;
    for (i, event_type) in [
        "m.policy.rule.room",
        "m.room.rule.room",
        "org.matrix.mjolnir.rule.room",
    ]
    .iter()
    .enumerate()
    {
        let room = p.s.create_room(&alice, json!({})).await;
        p.set(
            event_type,
            &format!("r{i}"),
            json!({ "entity": room, "recommendation": "m.ban", "reason": "" }),
        )
        .await;
        assert!(!p.may_invite_into(&alice, &room).await, "{event_type}");
    }
    for event_type in [
        "m.policy.rule.server",
        "m.room.rule.server",
        "org.matrix.mjolnir.rule.server",
    ] {
        let other = p.s.register(&format!("o{}", rand_suffix())).await;
        p.set(
            event_type,
            "r",
            json!({ "entity": "test.local", "recommendation": "m.ban", "reason": "" }),
        )
        .await;
        assert!(!p.may_invite(&other).await, "{event_type}");
        // Lifted again for the next spelling.
        p.set(event_type, "r", json!({})).await;
        assert!(p.may_invite(&other).await, "{event_type} lifted");
    }
}

#[tokio::test]
async fn a_rule_lacking_entity_recommendation_or_reason_is_ignored_and_a_cleared_rule_lifts_the_ban(
) {
    let p = Policies::start(&lists(""), &[]).await;
    let spammer = p.s.register("spammer").await;
    let full = json!({ "entity": spammer.user_id, "recommendation": "m.ban", "reason": "r" });
    for missing in ["entity", "recommendation", "reason"] {
        let mut content = full.clone();
        content.as_object_mut().unwrap().remove(missing);
        p.set("m.policy.rule.user", "r", content).await;
        assert!(p.may_invite(&spammer).await, "without {missing}");
    }
    p.set("m.policy.rule.user", "r", full).await;
    assert!(!p.may_invite(&spammer).await);
    p.set("m.policy.rule.user", "r", json!({})).await;
    assert!(p.may_invite(&spammer).await, "the rule was cleared");
}

#[tokio::test]
async fn the_first_matching_rule_decides_so_a_non_ban_rule_shadows_later_bans() {
    let p = Policies::start(&lists(""), &[]).await;
    let spammer = p.s.register("spammer").await;
    let alice = p.s.register("alice").await;
    p.set(
        "m.policy.rule.user",
        "watch",
        json!({ "entity": "@spammer:*", "recommendation": "org.example.watch", "reason": "" }),
    )
    .await;
    // Rules are consulted oldest first, by their timestamps.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    p.ban("user", "@*:test.local").await;
    assert!(p.may_invite(&spammer).await, "the older non-ban rule wins");
    assert!(!p.may_invite(&alice).await, "the ban applies to the rest");
}

#[tokio::test]
async fn lists_are_consulted_in_config_order() {
    // The second list bans; the first one's non-ban rule comes first.
    let s = TestServer::start().await;
    let moderator = s.register("moderator").await;
    let first = s.create_room(&moderator, json!({})).await;
    let second = s.create_room(&moderator, json!({})).await;
    for (room, recommendation) in [(&second, "m.ban"), (&first, "org.example.note")] {
        let (status, _) = s
            .put(
                &format!("/rooms/{}/state/m.policy.rule.user/r", enc(room)),
                &moderator.token,
                json!({ "entity": "@spammer:test.local", "recommendation": recommendation, "reason": "" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut p = Policies {
        s,
        moderator,
        list: first.clone(),
    };
    // `list` is only where `set` writes; both rooms are configured below.
    let spammer = p.s.register("spammer").await;
    for (order, banned) in [([&first, &second], false), ([&second, &first], true)] {
        p.s.restart_with(&format!(
            "modules:\n  - module: mjolnir_antispam::Module\n    config:\n      ban_lists: [\"{}\", \"{}\"]\n",
            order[0], order[1]
        ))
        .await;
        assert_eq!(!p.may_invite(&spammer).await, banned, "{order:?}");
    }
}

#[tokio::test]
async fn block_invites_false_lets_banned_users_invite() {
    let p = Policies::start(&lists("      block_invites: false\n"), &[]).await;
    let spammer = p.s.register("spammer").await;
    p.ban("user", "@spammer:test.local").await;
    p.ban("server", "*").await;
    assert!(p.may_invite(&spammer).await);
}

#[tokio::test]
async fn block_messages_refuses_messages_of_banned_users_and_servers() {
    let p = Policies::start(&lists("      block_messages: true\n"), &[]).await;
    let spammer = p.s.register("spammer").await;
    let alice = p.s.register("alice").await;
    let room =
        p.s.create_room(&alice, json!({ "preset": "public_chat" }))
            .await;
    p.s.join(&spammer, &room).await;
    assert!(p.may_send(&spammer, &room, "hello").await);

    p.ban("user", "@SPAMMER:test.local").await;
    assert!(!p.may_send(&spammer, &room, "hello").await);
    assert!(p.may_send(&alice, &room, "hello").await);
    // State events are checked too.
    let own = p.s.create_room(&spammer, json!({})).await;
    let (status, body) =
        p.s.put(
            &format!("/rooms/{}/state/m.room.topic/", enc(&own)),
            &spammer.token,
            json!({ "topic": "buy now" }),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            json!({ "errcode": "M_FORBIDDEN", "error": SPAM })
        )
    );

    p.ban("server", "*.local").await;
    assert!(!p.may_send(&alice, &room, "hello").await, "banned server");
    // Rule changes in the list room are always allowed, even from a banned sender.
    p.set("m.policy.rule.server", "rule:*.local", json!({}))
        .await;
    assert!(p.may_send(&alice, &room, "hello").await);
}

#[tokio::test]
async fn without_block_messages_banned_users_may_still_send() {
    let p = Policies::start(&lists(""), &[]).await;
    let spammer = p.s.register("spammer").await;
    let room = p.s.create_room(&spammer, json!({})).await;
    p.ban("user", "@spammer:test.local").await;
    assert!(p.may_send(&spammer, &room, "hello").await);
}

#[tokio::test]
async fn message_max_length_caps_bodies_in_every_room_or_only_the_listed_ones() {
    let mut p = Policies::start("      message_max_length:\n        threshold: 10\n", &[]).await;
    let alice = p.s.register("alice").await;
    let room = p.s.create_room(&alice, json!({})).await;
    assert!(
        p.may_send(&alice, &room, "0123456789").await,
        "10 is allowed"
    );
    assert!(!p.may_send(&alice, &room, "0123456789a").await, "11 is not");
    assert!(
        p.may_send(&alice, &room, "éééééééééé").await,
        "characters are counted, not bytes"
    );
    // Without a body there is nothing to measure.
    let (status, _) =
        p.s.put(
            &format!("/rooms/{}/state/m.room.topic/", enc(&room)),
            &alice.token,
            json!({ "topic": "a topic longer than ten characters" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let capped = p.s.create_room(&alice, json!({})).await;
    p.s.restart_with(&format!(
        "modules:\n  - module: mjolnir_antispam::Module\n    config:\n      message_max_length: {{threshold: 10, rooms: [\"{capped}\"]}}\n"
    ))
    .await;
    assert!(!p.may_send(&alice, &capped, "0123456789a").await);
    assert!(p.may_send(&alice, &room, "0123456789a").await, "not listed");

    p.s.restart_with(
        "modules:\n  - module: mjolnir_antispam::Module\n    config:\n      message_max_length: {threshold: 0, remote_servers: true}\n",
    )
    .await;
    assert!(
        p.may_send(&alice, &room, &"x".repeat(1000)).await,
        "0 is no cap"
    );
}

#[tokio::test]
async fn block_usernames_hides_banned_users_from_user_search() {
    let p = Policies::start(&lists("      block_usernames: true\n"), &[]).await;
    let alice = p.s.register("alice").await;
    let spammer = p.s.register("spammer").await;
    let nice = p.s.register("nice").await;
    let room =
        p.s.create_room(&alice, json!({ "preset": "public_chat" }))
            .await;
    p.s.join(&spammer, &room).await;
    p.s.join(&nice, &room).await;
    let (status, _) =
        p.s.put(
            &format!("/profile/{}/displayname", enc(&nice.user_id)),
            &nice.token,
            json!({ "displayname": "Buy Cheap Pills" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let found = |term: &'static str| {
        let s = &p.s;
        let token = alice.token.clone();
        async move {
            let (status, body) = s
                .post(
                    "/user_directory/search",
                    &token,
                    json!({ "search_term": term }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["user_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("spammer").await, vec![spammer.user_id.clone()]);
    assert_eq!(found("pills").await, vec![nice.user_id.clone()]);

    p.ban("user", "@spam*").await;
    p.ban("user", "*cheap*").await;
    assert!(found("spammer").await.is_empty(), "by user ID");
    assert!(found("pills").await.is_empty(), "by display name");
    assert_eq!(found("alice").await, vec![alice.user_id.clone()]);
}

#[tokio::test]
async fn without_block_usernames_banned_users_stay_searchable() {
    let p = Policies::start(&lists(""), &[]).await;
    let alice = p.s.register("alice").await;
    let spammer = p.s.register("spammer").await;
    let room =
        p.s.create_room(&alice, json!({ "preset": "public_chat" }))
            .await;
    p.s.join(&spammer, &room).await;
    p.ban("user", "@spammer:test.local").await;
    let (_, body) =
        p.s.post(
            "/user_directory/search",
            &alice.token,
            json!({ "search_term": "spammer" }),
        )
        .await;
    assert_eq!(body["results"][0]["user_id"], spammer.user_id);
}

#[tokio::test]
async fn rules_set_in_rooms_not_listed_are_ignored_and_a_missing_list_room_is_empty() {
    let p = Policies::start("      ban_lists: [\"!nowhere:test.local\"]\n", &[]).await;
    let spammer = p.s.register("spammer").await;
    p.ban("user", "@spammer:test.local").await; // in a room not listed
    assert!(p.may_invite(&spammer).await);
}

#[test]
fn config_errors_name_the_key_at_fault() {
    let module = |config: &str| {
        modules_load_error(&format!(
            "modules:\n  - module: mjolnir_antispam::Module\n    config:\n{config}"
        ))
    };
    let bad_room = module("      ban_lists: [\"policies\"]\n");
    assert!(
        bad_room.contains("module `mjolnir_antispam::Module` at `modules[0].config.ban_lists[0]`"),
        "{bad_room}"
    );
    let bad_threshold = module("      message_max_length: {threshold: ten}\n");
    assert!(
        bad_threshold.contains("`modules[0].config.message_max_length.threshold`"),
        "{bad_threshold}"
    );
    let unknown = module("      block_invite: false\n");
    assert!(
        unknown.contains("unknown field `block_invite`"),
        "{unknown}"
    );
    let unknown_nested = module("      message_max_length: {treshold: 5}\n");
    assert!(
        unknown_nested.contains("unknown field `treshold`"),
        "{unknown_nested}"
    );
}
