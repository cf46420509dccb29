//! Each operation exists once, in the service layer: reached from the
//! client API, the admin API or a module's `ModuleApi`, it asks the same
//! callbacks with the same arguments (`by_admin` telling the doors apart),
//! as Synapse does.

use axon_testkit::operator::OPERATOR;
use axon_testkit::rules::{modules, rules};
use axon_testkit::*;

/// A server with `test.Rules` (logging under `log`, answering `verdicts`)
/// and `test.Operator`, so tests drive the module entry point too.
async fn server(log: &str, verdicts: &[(&str, &str)]) -> TestServer {
    let yaml = modules(&[rules(log, "a", verdicts), OPERATOR.to_string()]);
    TestServer::start_with(&yaml).await
}

/// `POST /_synapse/client/operator/{operation}`: the `ModuleApi` acts.
async fn operate(s: &TestServer, operation: &str, body: Value) -> (StatusCode, Value) {
    s.request(
        Method::POST,
        &format!("/_synapse/client/operator/{operation}"),
        None,
        Some(body),
    )
    .await
}

async fn admin_put(s: &TestServer, admin: &User, user: &str, body: Value) -> (StatusCode, Value) {
    s.put(
        &format!("/_synapse/admin/v2/users/{}", enc(user)),
        &admin.token,
        body,
    )
    .await
}

fn password_auth(user: &str) -> Value {
    json!({ "auth": { "type": "m.login.password", "user": user, "password": "correct horse" } })
}

#[tokio::test]
async fn deactivation_asks_the_modules_the_same_way_from_every_entry_point() {
    let log = "svc_deactivate";
    let s = server(log, &[]).await;
    let admin = register_admin(&s, "root").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let dave = s.register("dave").await;

    let by_client = s
        .post("/account/deactivate", &bob.token, password_auth("bob"))
        .await;
    assert_eq!(by_client.0, StatusCode::OK, "{}", by_client.1);
    let by_admin = admin_put(&s, &admin, &carol.user_id, json!({ "deactivated": true })).await;
    assert_eq!(by_admin.0, StatusCode::OK, "{}", by_admin.1);
    let by_module = operate(&s, "deactivate", json!({ "user": dave.user_id })).await;
    assert_eq!(by_module.0, StatusCode::OK, "{}", by_module.1);

    assert_eq!(
        only(log, "check_can_deactivate_user"),
        [
            "a:check_can_deactivate_user:@bob:test.local:false",
            "a:check_can_deactivate_user:@carol:test.local:true",
            "a:check_can_deactivate_user:@dave:test.local:true",
        ]
    );
    assert_eq!(
        only(log, "on_user_deactivation_status_changed"),
        [
            "a:on_user_deactivation_status_changed:@bob:test.local:true:false",
            "a:on_user_deactivation_status_changed:@carol:test.local:true:true",
            "a:on_user_deactivation_status_changed:@dave:test.local:true:true",
        ]
    );
    assert_eq!(
        only(log, "on_profile_update"),
        [
            "a:on_profile_update:@bob:test.local:::false:true",
            "a:on_profile_update:@carol:test.local:::true:true",
            "a:on_profile_update:@dave:test.local:::true:true",
        ]
    );
    for user in [&bob, &carol, &dave] {
        assert_error(
            &s.get("/account/whoami", &user.token).await,
            401,
            "M_UNKNOWN_TOKEN",
        );
    }
}

#[tokio::test]
async fn a_module_veto_on_deactivation_holds_for_admins_and_modules_too() {
    let log = "svc_veto";
    let s = server(log, &[("check_can_deactivate_user", "deny")]).await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;
    let forbidden =
        json!({ "errcode": "M_FORBIDDEN", "error": "Deactivation of this user is forbidden" });

    let by_admin = admin_put(
        &s,
        &admin,
        &alice.user_id,
        json!({ "deactivated": true, "displayname": "Not changed" }),
    )
    .await;
    assert_eq!(by_admin, (StatusCode::FORBIDDEN, forbidden.clone()));
    let by_module = operate(&s, "deactivate", json!({ "user": alice.user_id })).await;
    assert_eq!(by_module, (StatusCode::FORBIDDEN, forbidden));

    // Nothing changed: still logged in, same name.
    assert_eq!(
        s.get("/account/whoami", &alice.token).await.0,
        StatusCode::OK
    );
    let (_, profile) = s
        .get(&format!("/profile/{}", enc(&alice.user_id)), &alice.token)
        .await;
    assert_eq!(profile["displayname"], "alice");
    assert_eq!(
        only(log, "check_can_deactivate_user"),
        [
            "a:check_can_deactivate_user:@alice:test.local:true",
            "a:check_can_deactivate_user:@alice:test.local:true",
        ]
    );
    assert!(only(log, "on_user_deactivation_status_changed").is_empty());
}

#[tokio::test]
async fn an_admin_sets_both_profile_fields_and_modules_hear_it_was_an_admin() {
    let log = "svc_profile";
    let s = server(log, &[]).await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;

    let (status, body) = admin_put(
        &s,
        &admin,
        &alice.user_id,
        json!({ "displayname": "Alice A", "avatar_url": "mxc://test.local/face" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["displayname"], &body["avatar_url"]),
        (&json!("Alice A"), &json!("mxc://test.local/face"))
    );
    let (_, profile) = s
        .get(&format!("/profile/{}", enc(&alice.user_id)), &alice.token)
        .await;
    assert_eq!(
        profile,
        json!({ "displayname": "Alice A", "avatar_url": "mxc://test.local/face" })
    );

    // The same operation from the client (by_admin false) and a module (true).
    let path = format!("/profile/{}/displayname", enc(&alice.user_id));
    assert_eq!(
        s.put(&path, &alice.token, json!({ "displayname": "Ally" }))
            .await
            .0,
        StatusCode::OK
    );
    let by_module = operate(
        &s,
        "set_displayname",
        json!({ "user": alice.user_id, "displayname": "Al" }),
    )
    .await;
    assert_eq!(by_module.0, StatusCode::OK, "{}", by_module.1);
    assert_eq!(
        only(log, "on_profile_update"),
        [
            "a:on_profile_update:@alice:test.local:Alice A:mxc://test.local/face:true:false",
            "a:on_profile_update:@alice:test.local:Ally:mxc://test.local/face:false:false",
            "a:on_profile_update:@alice:test.local:Al:mxc://test.local/face:true:false",
        ]
    );
}

#[tokio::test]
async fn an_invite_in_initial_state_meets_the_invite_checks() {
    let log = "svc_initial_invite";
    let s = server(log, &[("user_may_invite", "deny")]).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let body = json!({
        "initial_state": [{
            "type": "m.room.member",
            "state_key": bob.user_id,
            "content": { "membership": "invite" },
        }],
    });
    let refused = s.post("/createRoom", &alice.token, body).await;
    assert_eq!(
        refused,
        (
            StatusCode::FORBIDDEN,
            json!({ "errcode": "M_FORBIDDEN", "error": "Invites have been disabled on this server" })
        )
    );
    assert_eq!(
        only(log, "user_may_invite"),
        ["a:user_may_invite:@alice:test.local>@bob:test.local"]
    );
    let (_, sync) = s.get("/sync", &bob.token).await;
    assert_eq!(sync["rooms"]["invite"], json!({}), "bob was not invited");
}

#[tokio::test]
async fn initial_state_memberships_are_sent_once_the_room_exists_and_count_as_invites() {
    let s = TestServer::start_with(
        "rc_invites: {per_room: {per_second: 0.1, burst_count: 2}, per_user: {per_second: 100, burst_count: 100}, per_issuer: {per_second: 100, burst_count: 100}}",
    )
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let member = |user: &str, membership: &str| json!({ "type": "m.room.member", "state_key": user, "content": { "membership": membership } });
    let room = s
        .create_room(
            &alice,
            json!({ "initial_state": [member(&bob.user_id, "invite")] }),
        )
        .await;
    let (_, sync) = s.get("/sync", &bob.token).await;
    assert!(
        sync["rooms"]["invite"][&room].is_object(),
        "bob is invited: {sync}"
    );
    let (status, members) = s
        .get(&format!("/rooms/{}/members", enc(&room)), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let invite = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state_key"] == bob.user_id)
        .expect("bob's membership");
    assert_eq!(invite["content"]["membership"], "invite");
    assert_eq!(invite["sender"], alice.user_id);

    // Three invites at once exceed rc_invites.per_room's burst of 2, however
    // they are asked for (Synapse: "Cannot invite so many users at once").
    let three = ["@x:test.local", "@y:test.local", "@z:test.local"];
    let listed = s
        .post("/createRoom", &alice.token, json!({ "invite": three }))
        .await;
    assert_error(&listed, 400, "M_UNKNOWN");
    assert_eq!(listed.1["error"], "Cannot invite so many users at once");
    let in_state: Vec<Value> = three.iter().map(|u| member(u, "invite")).collect();
    let stated = s
        .post(
            "/createRoom",
            &alice.token,
            json!({ "initial_state": in_state }),
        )
        .await;
    assert_error(&stated, 400, "M_UNKNOWN");
}

#[tokio::test]
async fn members_of_a_private_chat_may_invite_others() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    for preset in ["private_chat", "trusted_private_chat"] {
        let room = s
            .create_room(&alice, json!({ "preset": preset, "invite": [bob.user_id] }))
            .await;
        assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
        let (_, levels) = s
            .get(
                &format!("/rooms/{}/state/m.room.power_levels", enc(&room)),
                &bob.token,
            )
            .await;
        assert_eq!(levels["invite"], 0, "{preset}");
        assert_eq!(
            s.invite(&bob, &room, &carol.user_id).await.0,
            StatusCode::OK,
            "{preset}"
        );
    }
    // In a public room inviting still takes power level 50.
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);
    assert_error(
        &s.invite(&bob, &room, &carol.user_id).await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn third_party_identifiers_are_announced_when_added_and_removed() {
    let log = "svc_threepids";
    let s = server(log, &[]).await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;
    let email = |address: &str| json!({ "medium": "email", "address": address });

    let first = admin_put(
        &s,
        &admin,
        &alice.user_id,
        json!({ "threepids": [email("a@example.org"), email("B@Example.org")] }),
    )
    .await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    let second = admin_put(
        &s,
        &admin,
        &alice.user_id,
        json!({ "threepids": [email("b@example.org"), email("c@example.org")] }),
    )
    .await;
    assert_eq!(second.0, StatusCode::OK, "{}", second.1);
    let deactivated = admin_put(&s, &admin, &alice.user_id, json!({ "deactivated": true })).await;
    assert_eq!(deactivated.0, StatusCode::OK, "{}", deactivated.1);

    let user = "@alice:test.local";
    assert_eq!(
        only(log, "on_add_user_third_party_identifier"),
        [
            format!("a:on_add_user_third_party_identifier:{user}:email:a@example.org"),
            format!("a:on_add_user_third_party_identifier:{user}:email:b@example.org"),
            format!("a:on_add_user_third_party_identifier:{user}:email:c@example.org"),
        ]
    );
    assert_eq!(
        only(log, "on_threepid_bind"),
        [
            format!("a:on_threepid_bind:{user}:email:a@example.org"),
            format!("a:on_threepid_bind:{user}:email:b@example.org"),
            format!("a:on_threepid_bind:{user}:email:c@example.org"),
        ]
    );
    assert_eq!(
        only(log, "on_remove_user_third_party_identifier"),
        [
            format!("a:on_remove_user_third_party_identifier:{user}:email:a@example.org"),
            format!("a:on_remove_user_third_party_identifier:{user}:email:b@example.org"),
            format!("a:on_remove_user_third_party_identifier:{user}:email:c@example.org"),
        ]
    );
}

#[tokio::test]
async fn an_admin_reactivates_a_deactivated_user() {
    let log = "svc_reactivate";
    let s = server(log, &[]).await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;
    let deactivated = admin_put(&s, &admin, &alice.user_id, json!({ "deactivated": true })).await;
    assert_eq!(deactivated.1["deactivated"], true);

    let (status, body) = admin_put(
        &s,
        &admin,
        &alice.user_id,
        json!({ "deactivated": false, "password": "a new one" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deactivated"], false);
    let login = json!({ "type": "m.login.password", "user": "alice", "password": "a new one" });
    let (status, body) = s.request(Method::POST, "/login", None, Some(login)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], alice.user_id);
    assert_eq!(
        only(log, "on_user_deactivation_status_changed"),
        [
            "a:on_user_deactivation_status_changed:@alice:test.local:true:true",
            "a:on_user_deactivation_status_changed:@alice:test.local:false:true",
        ]
    );
}

#[tokio::test]
async fn room_operations_ask_the_same_callbacks_from_a_client_and_a_module() {
    let log = "svc_rooms";
    let s = server(log, &[]).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;

    // Creating a room.
    let by_client = s.create_room(&alice, json!({ "name": "by client" })).await;
    let (status, made) = operate(
        &s,
        "create_room",
        json!({ "creator": alice.user_id, "config": { "name": "by module" } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let by_module = made["room_id"].as_str().unwrap().to_string();
    assert_eq!(
        only(log, "user_may_create_room"),
        [
            "a:user_may_create_room:@alice:test.local:by client",
            "a:user_may_create_room:@alice:test.local:by module",
        ]
    );
    assert_eq!(
        only(log, "on_create_room"),
        [
            "a:on_create_room:@alice:test.local:false",
            "a:on_create_room:@alice:test.local:false",
        ]
    );

    // Inviting.
    assert_eq!(
        s.invite(&alice, &by_client, &bob.user_id).await.0,
        StatusCode::OK
    );
    let invited = operate(
        &s,
        "membership",
        json!({ "sender": alice.user_id, "target": carol.user_id, "room": by_module, "membership": "invite" }),
    )
    .await;
    assert_eq!(invited.0, StatusCode::OK, "{}", invited.1);
    assert_eq!(
        only(log, "user_may_invite"),
        [
            "a:user_may_invite:@alice:test.local>@bob:test.local",
            "a:user_may_invite:@alice:test.local>@carol:test.local",
        ]
    );

    // Joining.
    assert_eq!(s.join(&bob, &by_client).await.0, StatusCode::OK);
    let joined = operate(
        &s,
        "membership",
        json!({ "sender": carol.user_id, "target": carol.user_id, "room": by_module, "membership": "join" }),
    )
    .await;
    assert_eq!(joined.0, StatusCode::OK, "{}", joined.1);
    assert_eq!(
        only(log, "user_may_join_room"),
        [
            "a:user_may_join_room:@bob:test.local:true",
            "a:user_may_join_room:@carol:test.local:true",
        ]
    );

    // Sending a message.
    s.send_text(&bob, &by_client, "from a client").await;
    let sent = operate(
        &s,
        "send",
        json!({ "sender": carol.user_id, "room": by_module, "type": "m.room.message", "content": { "msgtype": "m.text", "body": "from a module" } }),
    )
    .await;
    assert_eq!(sent.0, StatusCode::OK, "{}", sent.1);
    assert_eq!(
        only(log, "check_event_for_spam"),
        [
            "a:check_event_for_spam:m.room.message",
            "a:check_event_for_spam:m.room.message",
        ]
    );

    // Account data.
    let path = format!("/user/{}/account_data/org.test.kind", enc(&bob.user_id));
    assert_eq!(
        s.put(&path, &bob.token, json!({ "a": 1 })).await.0,
        StatusCode::OK
    );
    let put = operate(
        &s,
        "account_data",
        json!({ "user": carol.user_id, "type": "org.test.kind", "content": { "a": 1 } }),
    )
    .await;
    assert_eq!(put.0, StatusCode::OK, "{}", put.1);
    assert_eq!(
        only(log, "on_account_data_updated"),
        [
            "a:on_account_data_updated:@bob:test.local:global:org.test.kind",
            "a:on_account_data_updated:@carol:test.local:global:org.test.kind",
        ]
    );
}

#[tokio::test]
async fn every_way_of_registering_tells_the_account_validity_modules() {
    let log = "svc_register";
    let yaml = modules(&[
        rules(log, "a", &[]),
        "  - module: test.Toolkit\n    config: {tick_ms: 60000}\n".to_string(),
    ]);
    let s = TestServer::start_with(&yaml).await;
    let admin = register_admin(&s, "root").await;
    s.register("client").await;
    let created = admin_put(
        &s,
        &admin,
        "@by_admin:test.local",
        json!({ "password": "pw" }),
    )
    .await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
    let (status, bot) = s
        .request(Method::POST, "/_synapse/client/toolkit/bot", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{bot}");
    assert_eq!(
        only(log, "on_user_registration"),
        [
            "a:on_user_registration:@root:test.local",
            "a:on_user_registration:@client:test.local",
            "a:on_user_registration:@by_admin:test.local",
            "a:on_user_registration:@bot:test.local",
        ]
    );
}
