//! Synapse as the peer: one Synapse 1.163 for the whole binary
//! (`axon_testkit::synapse::shared`), a fresh Axon per test, each named
//! `127.0.0.1:PORT` and trusting the same test CA.

use axon_testkit::federation::{
    wait_for_membership, wait_for_message, wait_for_state, wait_for_sync,
};
use axon_testkit::synapse::shared;
use axon_testkit::*;
use serde_json::Value;

/// A fresh Axon (its config with `extra` on top) beside the shared
/// Synapse: alice on Axon, bob on Synapse, a name no other test uses.
struct Peers {
    axon: TestServer,
    alice: User,
    synapse: TestServer,
    bob: User,
}

async fn peers(extra: &str) -> Peers {
    let (fed, synapse) = shared();
    let axon = fed.axon(extra).await;
    let alice = axon.register("alice").await;
    let synapse = synapse.client();
    let bob = synapse.register(&format!("bob{}", rand_suffix())).await;
    Peers {
        axon,
        alice,
        synapse,
        bob,
    }
}

/// The end of Synapse's log, for a failure's message.
fn synapse_log() -> String {
    shared().1.log_tail()
}

/// Alice invites bob to her `room` on Axon; he joins from Synapse.
async fn bob_joins(axon: &TestServer, alice: &User, synapse: &TestServer, bob: &User, room: &str) {
    let (status, body) = axon.invite(alice, room, &bob.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    let (status, body) = synapse.join(bob, room).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    wait_for_membership(axon, alice, room, &bob.user_id, "join").await;
}

async fn set_displayname(s: &TestServer, user: &User, name: &str) {
    let path = format!("/profile/{}/displayname", enc(&user.user_id));
    let (status, body) = s
        .put(&path, &user.token, json!({ "displayname": name }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn profiles_are_read_across_axon_and_synapse_both_ways() {
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("").await;
    set_displayname(&axon, &alice, "Alice on Axon").await;
    set_displayname(&synapse_client, &bob, "Bob on Synapse").await;

    let (status, body) = axon
        .get(&format!("/profile/{}", enc(&bob.user_id)), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    assert_eq!(body["displayname"], "Bob on Synapse");

    let (status, body) = synapse_client
        .get(&format!("/profile/{}", enc(&alice.user_id)), &bob.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    assert_eq!(body["displayname"], "Alice on Axon");
}

#[tokio::test]
async fn a_synapse_user_invited_to_an_axon_room_joins_and_both_sides_talk() {
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("").await;
    let room = axon
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "name": "Across" }),
        )
        .await;
    bob_joins(&axon, &alice, &synapse_client, &bob, &room).await;
    assert_eq!(
        axon.member(&alice, &room, &bob.user_id).await["membership"],
        "join"
    );

    axon.send_text(&alice, &room, "hello from Axon").await;
    let seen = wait_for_message(&synapse_client, &bob, &room, "hello from Axon").await;
    assert_eq!(seen, ["hello from Axon"]);
    synapse_client
        .send_text(&bob, &room, "hello from Synapse")
        .await;
    let seen = wait_for_message(&axon, &alice, &room, "hello from Synapse").await;
    assert_eq!(seen, ["hello from Axon", "hello from Synapse"]);
    for n in 0..5 {
        axon.send_text(&alice, &room, &format!("a{n}")).await;
    }
    let seen = wait_for_message(&synapse_client, &bob, &room, "a4").await;
    assert_eq!(
        seen,
        [
            "hello from Axon",
            "hello from Synapse",
            "a0",
            "a1",
            "a2",
            "a3",
            "a4"
        ]
    );

    // State set on either side applies on both.
    let name = json!({ "name": "Renamed on Axon" });
    let (status, _) = axon
        .put(
            &format!("/rooms/{}/state/m.room.name/", enc(&room)),
            &alice.token,
            name.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_state(&synapse_client, &bob, &room, "m.room.name", "", &name).await;
    let levels_path = format!("/rooms/{}/state/m.room.power_levels/", enc(&room));
    let (_, mut levels) = axon.get(&levels_path, &alice.token).await;
    levels["users"][&bob.user_id] = json!(50);
    levels["events"]["m.room.topic"] = json!(50);
    let (status, body) = axon.put(&levels_path, &alice.token, levels.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_state(
        &synapse_client,
        &bob,
        &room,
        "m.room.power_levels",
        "",
        &levels,
    )
    .await;
    // Bob's new power lets him set the topic, which Axon accepts.
    let topic = json!({ "topic": "set on Synapse" });
    let (status, body) = synapse_client
        .put(
            &format!("/rooms/{}/state/m.room.topic/", enc(&room)),
            &bob.token,
            topic.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_state(&axon, &alice, &room, "m.room.topic", "", &topic).await;
}

#[tokio::test]
async fn an_axon_user_joins_a_synapse_room_by_alias_and_sees_its_shared_history() {
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("").await;
    let local = format!("lobby{}", rand_suffix());
    let room = synapse_client
        .create_room(
            &bob,
            json!({
                "preset": "public_chat",
                "room_alias_name": local,
                "name": "Lobby",
                "room_version": "11",
            }),
        )
        .await;
    synapse_client
        .send_text(&bob, &room, "before you came")
        .await;
    synapse_client.send_text(&bob, &room, "still before").await;

    let alias = format!("#{local}:{}", synapse_client.server_name());
    let (status, body) = axon
        .get(&format!("/directory/room/{}", enc(&alias)), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room.as_str());
    let (status, body) = axon
        .post(&format!("/join/{}", enc(&alias)), &alice.token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    assert_eq!(body["room_id"], room.as_str());

    // The room's state came with the join; its history, by backfill.
    let (status, name) = axon
        .get(
            &format!("/rooms/{}/state/m.room.name/", enc(&room)),
            &alice.token,
        )
        .await;
    assert_eq!((status, name), (StatusCode::OK, json!({ "name": "Lobby" })));
    let seen = wait_for_message(&axon, &alice, &room, "still before").await;
    assert_eq!(seen, ["before you came", "still before"]);
    assert_eq!(
        synapse_client.member(&bob, &room, &alice.user_id).await["membership"],
        "join"
    );

    // Then both ways, in order.
    axon.send_text(&alice, &room, "I'm in").await;
    let seen = wait_for_message(&synapse_client, &bob, &room, "I'm in").await;
    assert_eq!(seen, ["before you came", "still before", "I'm in"]);
    synapse_client.send_text(&bob, &room, "welcome").await;
    let seen = wait_for_message(&axon, &alice, &room, "welcome").await;
    assert_eq!(
        seen,
        ["before you came", "still before", "I'm in", "welcome"]
    );
}

#[tokio::test]
async fn a_synapse_user_leaves_is_kicked_and_is_banned_and_both_sides_agree() {
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("").await;
    let room = axon
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    bob_joins(&axon, &alice, &synapse_client, &bob, &room).await;
    let (status, _) = synapse_client
        .post(
            &format!("/rooms/{}/leave", enc(&room)),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_membership(&axon, &alice, &room, &bob.user_id, "leave").await;

    bob_joins(&axon, &alice, &synapse_client, &bob, &room).await;
    let (status, _) = axon
        .post(
            &format!("/rooms/{}/kick", enc(&room)),
            &alice.token,
            json!({ "user_id": bob.user_id, "reason": "out" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_membership(&synapse_client, &bob, &room, &bob.user_id, "leave").await;
    assert_eq!(
        synapse_client.member(&bob, &room, &bob.user_id).await["reason"],
        "out"
    );

    bob_joins(&axon, &alice, &synapse_client, &bob, &room).await;
    let (status, _) = axon
        .post(
            &format!("/rooms/{}/ban", enc(&room)),
            &alice.token,
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A banned user reads the room no more: Synapse drops it from their
    // joined rooms, and their sync's left rooms show the ban.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, joined) = synapse_client.get("/joined_rooms", &bob.token).await;
        if !joined["joined_rooms"]
            .as_array()
            .unwrap()
            .contains(&json!(room))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Synapse never saw the ban"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let left = json!({ "room": { "include_leave": true, "timeline": { "limit": 7 } } });
    let (_, sync) = synapse_client
        .get(
            &format!("/sync?filter={}", enc(&left.to_string())),
            &bob.token,
        )
        .await;
    let timeline = &sync["rooms"]["leave"][&room]["timeline"]["events"];
    assert!(
        timeline
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "ban"),
        "{sync}"
    );
    assert_eq!(
        axon.member(&alice, &room, &bob.user_id).await["membership"],
        "ban"
    );
    // Banned, bob cannot come back in.
    let rejoin = format!(
        "/join/{}?server_name={}",
        enc(&room),
        enc(&axon.server_name())
    );
    let refused = synapse_client.post(&rejoin, &bob.token, json!({})).await;
    assert_error(&refused, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_module_refusing_federated_invites_fails_the_synapse_users_invite_with_its_error() {
    use axon_testkit::rules::{modules, rules};
    let log = format!("fedinvite{}", rand_suffix());
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers(&modules(&[rules(
        &log,
        "a",
        &[("federated_user_may_invite", "deny:ORG_NO_REMOTE_INVITES")],
    )]))
    .await;
    let room = synapse_client
        .create_room(
            &bob,
            json!({ "preset": "private_chat", "room_version": "11" }),
        )
        .await;
    let refused = synapse_client.invite(&bob, &room, &alice.user_id).await;
    assert_error(&refused, 403, "ORG_NO_REMOTE_INVITES");
    let asked = only(&log, "federated_user_may_invite");
    assert_eq!(asked.len(), 1, "{:?}", calls(&log));
    assert!(
        only(&log, "user_may_invite").is_empty(),
        "{:?}",
        calls(&log)
    );
    // Nothing reached alice.
    let (_, sync) = axon.get("/sync", &alice.token).await;
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "{sync}");
}

#[tokio::test]
async fn a_synapse_users_invite_reaches_the_axon_user_who_joins_through_it() {
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("").await;
    let room = synapse_client
        .create_room(
            &bob,
            json!({ "preset": "private_chat", "room_version": "11", "name": "Private" }),
        )
        .await;
    let (status, body) = synapse_client.invite(&bob, &room, &alice.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    let (_, sync) = axon.get("/sync", &alice.token).await;
    let invite_state = &sync["rooms"]["invite"][&room]["invite_state"]["events"];
    assert!(
        invite_state.as_array().is_some_and(|events| events
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite")),
        "{sync}"
    );
    // What Synapse showed of the room with the invite.
    assert!(
        invite_state.as_array().is_some_and(|events| events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Private")),
        "{sync}"
    );
    let (status, body) = axon.join(&alice, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    wait_for_membership(&synapse_client, &bob, &room, &alice.user_id, "join").await;
    synapse_client.send_text(&bob, &room, "glad you came").await;
    wait_for_message(&axon, &alice, &room, "glad you came").await;
}

#[tokio::test]
async fn nothing_synapse_sends_while_axon_restarts_is_lost() {
    let Peers {
        mut axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("").await;
    let room = axon
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    bob_joins(&axon, &alice, &synapse_client, &bob, &room).await;
    synapse_client.send_text(&bob, &room, "before").await;
    wait_for_message(&axon, &alice, &room, "before").await;

    axon.stop().await;
    for n in 1..=4 {
        synapse_client
            .send_text(&bob, &room, &format!("while down {n}"))
            .await;
    }
    axon.restart().await;
    // Synapse catches up with its latest event; Axon fetches the ones
    // before it (get_missing_events).
    let seen = wait_for_message(&axon, &alice, &room, "while down 4").await;
    assert_eq!(
        seen,
        [
            "before",
            "while down 1",
            "while down 2",
            "while down 3",
            "while down 4"
        ]
    );
}

#[tokio::test]
async fn invites_are_rejected_across_axon_and_synapse_both_ways() {
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("").await;
    // Bob's invite from Synapse, rejected on Axon: make_leave/send_leave.
    let theirs = synapse_client
        .create_room(
            &bob,
            json!({ "preset": "private_chat", "room_version": "11" }),
        )
        .await;
    let (status, body) = synapse_client.invite(&bob, &theirs, &alice.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    let (status, body) = axon
        .post(
            &format!("/rooms/{}/leave", enc(&theirs)),
            &alice.token,
            json!({ "reason": "no thanks" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    wait_for_membership(&synapse_client, &bob, &theirs, &alice.user_id, "leave").await;
    let (_, sync) = axon.get("/sync", &alice.token).await;
    assert!(sync["rooms"]["invite"].get(&theirs).is_none(), "{sync}");
    // Rejected twice: Alice is no longer invited.
    let (status, body) = axon
        .post(
            &format!("/rooms/{}/leave", enc(&theirs)),
            &alice.token,
            json!({}),
        )
        .await;
    assert_error(&(status, body), 403, "M_FORBIDDEN");

    // Alice's invite from Axon, rejected on Synapse: Axon is the resident
    // server Synapse asks.
    let ours = axon
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let (status, body) = axon.invite(&alice, &ours, &bob.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    let (status, body) = synapse_client
        .post(
            &format!("/rooms/{}/leave", enc(&ours)),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    wait_for_membership(&axon, &alice, &ours, &bob.user_id, "leave").await;
}

#[tokio::test]
async fn knocks_cross_axon_and_synapse_both_ways() {
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("").await;
    let knock_rules = json!([{
        "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" }
    }]);
    // Alice knocks on Bob's Synapse room; Bob lets her in.
    let theirs = synapse_client
        .create_room(
            &bob,
            json!({ "room_version": "11", "name": "Knock first", "initial_state": knock_rules }),
        )
        .await;
    let path = format!(
        "/knock/{}?server_name={}",
        enc(&theirs),
        enc(&synapse_client.server_name())
    );
    let (status, body) = axon
        .post(&path, &alice.token, json!({ "reason": "let me in" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    assert_eq!(body["room_id"], theirs);
    wait_for_membership(&synapse_client, &bob, &theirs, &alice.user_id, "knock").await;
    let (_, sync) = axon.get("/sync", &alice.token).await;
    let knock_state = &sync["rooms"]["knock"][&theirs]["knock_state"]["events"];
    assert!(
        knock_state.as_array().is_some_and(|events| events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock first")),
        "{sync}"
    );
    let (status, body) = synapse_client.invite(&bob, &theirs, &alice.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    let (status, body) = axon.join(&alice, &theirs).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    wait_for_membership(&synapse_client, &bob, &theirs, &alice.user_id, "join").await;

    // Bob knocks on Alice's Axon room: Axon answers make_knock/send_knock.
    let ours = axon
        .create_room(
            &alice,
            json!({ "room_version": "11", "name": "Ours", "initial_state": knock_rules }),
        )
        .await;
    let path = format!(
        "/knock/{}?server_name={}",
        enc(&ours),
        enc(&axon.server_name())
    );
    let (status, body) = synapse_client.post(&path, &bob.token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    wait_for_membership(&axon, &alice, &ours, &bob.user_id, "knock").await;
    let (status, body) = axon.invite(&alice, &ours, &bob.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    let (status, body) = synapse_client.join(&bob, &ours).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse_log());
    wait_for_membership(&axon, &alice, &ours, &bob.user_id, "join").await;
}

/// Whether a sync shows `user` typing in `room`.
fn typing_in(sync: &Value, room: &str, user: &str) -> bool {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| {
            e["type"] == "m.typing"
                && e["content"]["user_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|u| u == user))
        })
}

/// Whether a sync shows `user`'s public read receipt on `event` in `room`.
fn read_receipt_in(sync: &Value, room: &str, event: &str, user: &str) -> bool {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["type"] == "m.receipt" && e["content"][event]["m.read"].get(user).is_some())
}

#[tokio::test]
async fn typing_and_read_receipts_cross_axon_and_synapse_both_ways() {
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("").await;
    let room = axon
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    bob_joins(&axon, &alice, &synapse_client, &bob, &room).await;

    let typing = |user: &User| format!("/rooms/{}/typing/{}", enc(&room), enc(&user.user_id));
    let (status, body) = axon
        .put(
            &typing(&alice),
            &alice.token,
            json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_sync(&synapse_client, &bob, "alice typing", |sync| {
        typing_in(sync, &room, &alice.user_id)
    })
    .await;
    let (status, body) = synapse_client
        .put(
            &typing(&bob),
            &bob.token,
            json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_sync(&axon, &alice, "bob typing", |sync| {
        typing_in(sync, &room, &bob.user_id)
    })
    .await;

    let from_alice = axon.send_text(&alice, &room, "read me").await;
    wait_for_message(&synapse_client, &bob, &room, "read me").await;
    let receipt = |event: &str| format!("/rooms/{}/receipt/m.read/{}", enc(&room), enc(event));
    let (status, body) = synapse_client
        .post(&receipt(&from_alice), &bob.token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_sync(&axon, &alice, "bob's read receipt", |sync| {
        read_receipt_in(sync, &room, &from_alice, &bob.user_id)
    })
    .await;
    let from_bob = synapse_client.send_text(&bob, &room, "and me").await;
    wait_for_message(&axon, &alice, &room, "and me").await;
    let (status, body) = axon
        .post(&receipt(&from_bob), &alice.token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_sync(&synapse_client, &bob, "alice's read receipt", |sync| {
        read_receipt_in(sync, &room, &from_bob, &alice.user_id)
    })
    .await;
}

/// The room IDs of a public room directory page.
fn listed(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["room_id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn public_room_directories_are_read_across_axon_and_synapse() {
    let Peers {
        axon,
        alice,
        synapse: synapse_client,
        bob,
    } = peers("allow_public_rooms_over_federation: true").await;
    let ours = axon
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "visibility": "public", "name": "Axon lobby" }),
        )
        .await;
    let theirs = synapse_client
        .create_room(
            &bob,
            json!({ "preset": "public_chat", "visibility": "public", "name": format!("Synapse lobby {}", rand_suffix()) }),
        )
        .await;
    let path = |server: &str| format!("/publicRooms?server={}", enc(server));
    let (status, page) = synapse_client
        .get(&path(&axon.server_name()), &bob.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}\n{}", synapse_log());
    assert_eq!(listed(&page), [ours], "{page}");
    assert_eq!(page["chunk"][0]["name"], "Axon lobby");

    let (status, page) = axon
        .get(&path(&synapse_client.server_name()), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(listed(&page).contains(&theirs), "{page}");
    let (status, page) = axon
        .post(
            &path(&synapse_client.server_name()),
            &alice.token,
            json!({ "filter": { "generic_search_term": "no room is called this" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(listed(&page), Vec::<String>::new(), "{page}");

    // An Axon that keeps its directory to itself, as Synapse's default.
    let private = shared().0.axon("").await;
    let (status, page) = synapse_client
        .get(&path(&private.server_name()), &bob.token)
        .await;
    assert_ne!(status, StatusCode::OK, "{page}");
}
