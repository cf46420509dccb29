//! Push rules: the server-default ruleset, a user's own rules and their
//! order, `enabled` and `actions`, the ruleset in `/sync`, and the errors
//! Synapse gives.

use axon_testkit::*;
use reqwest::Method;
use serde_json::{json, Value};

fn rule_ids(rules: &Value, kind: &str) -> Vec<String> {
    rules[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} rules in {rules}"))
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap().to_string())
        .collect()
}

fn push_rules_in(sync: &Value) -> Option<Value> {
    sync["account_data"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .map(|e| e["content"].clone())
}

#[tokio::test]
async fn a_new_user_has_the_server_default_rules_in_the_api_and_in_initial_sync() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (status, all) = s.get("/pushrules/", &alice.token).await;
    assert_eq!(status, 200, "{all}");
    let global = &all["global"];
    let overrides = rule_ids(global, "override");
    assert_eq!(overrides[0], ".m.rule.master");
    assert!(overrides.contains(&".m.rule.is_user_mention".to_string()));
    assert!(rule_ids(global, "underride").contains(&".m.rule.message".to_string()));
    // Every kind is there, the user's own ones empty.
    for kind in ["content", "room", "sender"] {
        assert!(
            rule_ids(global, kind).iter().all(|id| id.starts_with('.')),
            "{kind}: {global}"
        );
    }
    assert_eq!(global["override"][0]["enabled"], false);
    assert_eq!(global["override"][0]["default"], true);
    let (_, sync) = s.get("/sync", &alice.token).await;
    assert_eq!(push_rules_in(&sync).as_ref(), Some(&all));
    // The scope and one kind alone.
    let (_, scope) = s.get("/pushrules/global/", &alice.token).await;
    assert_eq!(&scope, global);
    let (_, underride) = s.get("/pushrules/global/underride/", &alice.token).await;
    assert_eq!(underride, global["underride"]);
}

#[tokio::test]
async fn a_users_rule_is_added_placed_shown_in_sync_and_deleted() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (_, sync) = s.get("/sync", &alice.token).await;
    let since = sync["next_batch"].as_str().unwrap().to_string();
    let cats = json!({ "pattern": "cats", "actions": ["notify", { "set_tweak": "highlight" }] });
    let (status, body) = s
        .put("/pushrules/global/content/cats", &alice.token, cats)
        .await;
    assert_eq!((status.as_u16(), &body), (200, &json!({})));
    let (status, rule) = s.get("/pushrules/global/content/cats", &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(
        rule,
        json!({
            "rule_id": "cats", "pattern": "cats", "default": false, "enabled": true,
            "actions": ["notify", { "set_tweak": "highlight" }],
        })
    );
    // Placed before "cats", then one after "dogs": dogs, birds, cats.
    let rule = |pattern: &str| json!({ "pattern": pattern, "actions": ["notify"] });
    s.put(
        "/pushrules/global/content/dogs?before=cats",
        &alice.token,
        rule("dogs"),
    )
    .await;
    s.put(
        "/pushrules/global/content/birds?after=dogs",
        &alice.token,
        rule("birds"),
    )
    .await;
    let (_, global) = s.get("/pushrules/global/", &alice.token).await;
    let mine: Vec<_> = rule_ids(&global, "content")
        .into_iter()
        .filter(|id| !id.starts_with('.'))
        .collect();
    assert_eq!(mine, ["dogs", "birds", "cats"]);
    // The change reaches the long-poll as account data.
    let (_, sync) = s
        .get(&format!("/sync?since={since}&timeout=0"), &alice.token)
        .await;
    let synced = push_rules_in(&sync).expect("the changed ruleset is in the incremental sync");
    assert_eq!(synced["global"], global);
    let delete = s
        .request(
            Method::DELETE,
            "/pushrules/global/content/cats",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(delete.0, 200, "{}", delete.1);
    assert_error(
        &s.get("/pushrules/global/content/cats", &alice.token).await,
        404,
        "M_NOT_FOUND",
    );
    // Another user's rules are their own.
    let bob = s.register("bob").await;
    assert_error(
        &s.get("/pushrules/global/content/dogs", &bob.token).await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn a_rule_for_a_room_and_a_conditional_rule() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    // Muting a room, as Element does it.
    let path = format!("/pushrules/global/room/{}", enc(&room));
    let (status, body) = s.put(&path, &alice.token, json!({ "actions": [] })).await;
    assert_eq!(status, 200, "{body}");
    let (_, rule) = s.get(&path, &alice.token).await;
    assert_eq!(rule["rule_id"], room);
    let mute = json!({
        "conditions": [{ "kind": "event_match", "key": "room_id", "pattern": room }],
        "actions": [],
    });
    let path = format!("/pushrules/global/override/{}", enc(&room));
    assert_eq!(s.put(&path, &alice.token, mute).await.0, 200);
    let (_, rule) = s.get(&path, &alice.token).await;
    assert_eq!(rule["conditions"][0]["pattern"], room);
    let (_, global) = s.get("/pushrules/global/", &alice.token).await;
    // A user's override comes after the master rule, before the others.
    assert_eq!(
        rule_ids(&global, "override")[..2],
        [".m.rule.master".to_string(), room]
    );
}

#[tokio::test]
async fn a_default_rule_is_switched_and_given_other_actions() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let master = "/pushrules/global/override/.m.rule.master";
    let (status, _) = s
        .put(
            &format!("{master}/enabled"),
            &alice.token,
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.get(&format!("{master}/enabled"), &alice.token).await.1,
        json!({ "enabled": true })
    );
    let message = "/pushrules/global/underride/.m.rule.message";
    let (status, _) = s
        .put(
            &format!("{message}/actions"),
            &alice.token,
            json!({ "actions": ["notify", { "set_tweak": "sound", "value": "default" }] }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.get(&format!("{message}/actions"), &alice.token).await.1,
        json!({ "actions": ["notify", { "set_tweak": "sound", "value": "default" }] })
    );
    let (_, rule) = s.get(message, &alice.token).await;
    assert_eq!(rule["default"], true);
}

#[tokio::test]
async fn changes_made_at_once_all_land() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let alice = s.register("alice").await;
    let puts: Vec<_> = (0..20)
        .map(|i| {
            let (s, token) = (s.clone(), alice.token.clone());
            tokio::spawn(async move {
                let body = json!({ "pattern": format!("word{i}"), "actions": ["notify"] });
                s.put(&format!("/pushrules/global/content/word{i}"), &token, body)
                    .await
                    .0
            })
        })
        .collect();
    for put in puts {
        assert_eq!(put.await.unwrap(), 200);
    }
    let (_, global) = s.get("/pushrules/global/", &alice.token).await;
    let words = rule_ids(&global, "content")
        .into_iter()
        .filter(|id| id.starts_with("word"))
        .count();
    assert_eq!(words, 20);
}

#[tokio::test]
async fn bad_push_rule_requests_get_matrix_errors() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let notify = json!({ "pattern": "x", "actions": ["notify"] });
    let cases: Vec<(Method, &str, Option<Value>, u16, &str)> = vec![
        (
            Method::GET,
            "/pushrules/device/",
            None,
            400,
            "M_UNRECOGNIZED",
        ),
        (
            Method::GET,
            "/pushrules/global/sideways/x",
            None,
            400,
            "M_UNRECOGNIZED",
        ),
        (
            Method::GET,
            "/pushrules/global/content/nothing",
            None,
            404,
            "M_NOT_FOUND",
        ),
        (
            Method::GET,
            "/pushrules/global/override/.m.rule.master/colour",
            None,
            400,
            "M_UNRECOGNIZED",
        ),
        (
            Method::PUT,
            "/pushrules/global/content/.mine",
            Some(notify.clone()),
            400,
            "M_UNKNOWN",
        ),
        (
            Method::PUT,
            "/pushrules/global/content/x",
            Some(json!({ "pattern": "x" })),
            400,
            "M_UNKNOWN",
        ),
        (
            Method::PUT,
            "/pushrules/global/content/x",
            Some(json!({ "actions": ["notify"] })),
            400,
            "M_UNKNOWN",
        ),
        (
            Method::PUT,
            "/pushrules/global/content/x",
            Some(json!({ "pattern": "x", "actions": "notify" })),
            400,
            "M_UNKNOWN",
        ),
        (
            Method::PUT,
            "/pushrules/global/override/x",
            Some(json!({ "actions": ["notify"] })),
            400,
            "M_UNKNOWN",
        ),
        (
            Method::PUT,
            "/pushrules/global/room/not-a-room",
            Some(json!({ "actions": [] })),
            400,
            "M_UNKNOWN",
        ),
        (
            Method::PUT,
            "/pushrules/global/content/x?before=nothing",
            Some(notify.clone()),
            400,
            "M_UNKNOWN",
        ),
        (
            Method::PUT,
            "/pushrules/global/content/nothing/enabled",
            Some(json!({ "enabled": true })),
            404,
            "M_NOT_FOUND",
        ),
        (
            Method::PUT,
            "/pushrules/global/override/.m.rule.master/enabled",
            Some(json!({ "enabled": "yes" })),
            400,
            "M_BAD_JSON",
        ),
        (
            Method::DELETE,
            "/pushrules/global/content/nothing",
            None,
            404,
            "M_NOT_FOUND",
        ),
        (
            Method::DELETE,
            "/pushrules/global/override/.m.rule.master",
            None,
            400,
            "M_UNKNOWN",
        ),
    ];
    for (method, path, body, status, errcode) in cases {
        let response = s
            .request(method.clone(), path, Some(&alice.token), body)
            .await;
        assert_eq!(
            (response.0.as_u16(), response.1["errcode"].as_str()),
            (status, Some(errcode)),
            "{method} {path}: {}",
            response.1
        );
    }
    assert_error(
        &s.request(Method::GET, "/pushrules/", None, None).await,
        401,
        "M_MISSING_TOKEN",
    );
    // None of them changed anything.
    let (_, global) = s.get("/pushrules/global/", &alice.token).await;
    assert!(!rule_ids(&global, "content").contains(&"x".to_string()));
    assert_eq!(global["override"][0]["enabled"], false);
}
