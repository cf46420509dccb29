//! Room versions 1 to 11, created and used locally: each version's event
//! ID format, creator field, redaction, knocking and power-level rules.

use axon_testkit::*;
use reqwest::StatusCode;
use serde_json::json;

const VERSIONS: [u32; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

#[tokio::test]
async fn capabilities_list_every_version_created_here() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (_, caps) = s.get("/capabilities", &alice.token).await;
    let available = caps["capabilities"]["m.room_versions"]["available"]
        .as_object()
        .unwrap();
    for v in VERSIONS {
        assert_eq!(available[&v.to_string()], "stable", "{caps}");
    }
    assert_error(
        &s.post("/createRoom", &alice.token, json!({ "room_version": "12" }))
            .await,
        400,
        "M_UNSUPPORTED_ROOM_VERSION",
    );
}

#[tokio::test]
async fn each_version_has_its_event_ids_creator_and_redaction() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    for v in VERSIONS {
        let version = v.to_string();
        let room = s
            .create_room(
                &alice,
                json!({ "room_version": version, "name": format!("v{v}") }),
            )
            .await;
        let (_, create) = s
            .get(
                &format!("/rooms/{}/state/m.room.create/", enc(&room)),
                &alice.token,
            )
            .await;
        assert_eq!(create["room_version"], version);
        assert_eq!(create.get("creator").is_some(), v < 11, "v{v}: {create}");

        let event = s.send_text(&alice, &room, "to be redacted").await;
        let id = event.trim_start_matches('$');
        if v <= 2 {
            // `$random:server`, named by the server that made it.
            assert!(id.ends_with(":test.local"), "v{v}: {event}");
        } else {
            assert_eq!(id.len(), 43, "v{v}: {event}");
        }
        if v <= 2 {
        } else if v == 3 {
            assert!(
                !id.contains(['-', '_']),
                "v3 IDs are standard base64: {event}"
            );
        } else {
            assert!(
                !id.contains(['+', '/']),
                "v{v} IDs are URL-safe base64: {event}"
            );
        }
        let (status, body) = s
            .put(
                &format!("/rooms/{}/redact/{}/r{v}", enc(&room), enc(&event)),
                &alice.token,
                json!({ "reason": "test" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "v{v}: {body}");
        let (_, redacted) = s
            .get(
                &format!("/rooms/{}/event/{}", enc(&room), enc(&event)),
                &alice.token,
            )
            .await;
        assert_eq!(redacted["content"], json!({}), "v{v}: {redacted}");
    }
}

#[tokio::test]
async fn knocking_needs_version_7_and_integer_levels_version_10() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    for v in [6, 7] {
        let room = s
            .create_room(
                &alice,
                json!({ "room_version": v.to_string(), "initial_state": [
                    { "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }
                ] }),
            )
            .await;
        let knock = s
            .post(&format!("/knock/{}", enc(&room)), &bob.token, json!({}))
            .await;
        if v == 6 {
            assert_error(&knock, 403, "M_FORBIDDEN");
        } else {
            assert_eq!(knock.0, StatusCode::OK, "{}", knock.1);
        }
    }
    for v in [9, 10] {
        let room = s
            .create_room(&alice, json!({ "room_version": v.to_string() }))
            .await;
        let path = format!("/rooms/{}/state/m.room.power_levels/", enc(&room));
        let (_, mut levels) = s.get(&path, &alice.token).await;
        levels["ban"] = json!("60");
        let answer = s.put(&path, &alice.token, levels).await;
        if v == 9 {
            assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
        } else {
            assert_error(&answer, 400, "M_BAD_JSON");
        }
    }
}

#[tokio::test]
async fn restricted_rooms_admit_members_of_the_allowed_rooms_from_version_8() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let space = s
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let restricted = |version: &str| {
        json!({ "room_version": version, "preset": "private_chat", "initial_state": [{
            "type": "m.room.join_rules", "state_key": "",
            "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] }
        }] })
    };
    let room = s.create_room(&alice, restricted("9")).await;
    let old = s.create_room(&alice, restricted("7")).await;

    // Not in the space yet.
    assert_error(
        &s.post(
            &format!("/rooms/{}/join", enc(&room)),
            &bob.token,
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(s.join(&bob, &space).await.0, StatusCode::OK);
    let (status, body) = s
        .post(
            &format!("/rooms/{}/join", enc(&room)),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let member = s.member(&bob, &room, &bob.user_id).await;
    assert_eq!(member["membership"], "join");
    assert_eq!(member["join_authorised_via_users_server"], alice.user_id);
    // Version 7 has no restricted rule: the room stays closed.
    assert_error(
        &s.post(&format!("/rooms/{}/join", enc(&old)), &bob.token, json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
}

/// The stored PDU of an event, as another server would receive it.
fn pdu(s: &TestServer, event_id: &str) -> serde_json::Value {
    let conn = rusqlite::Connection::open(s.dir.path().join("homeserver.db")).unwrap();
    let text: String = conn
        .query_row(
            "SELECT pdu FROM events WHERE event_id = ?1",
            [event_id],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn versions_1_and_2_reference_events_with_their_hashes() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    for version in ["1", "2"] {
        let room = s
            .create_room(&alice, json!({ "room_version": version }))
            .await;
        let first = s.send_text(&alice, &room, "first").await;
        let second = s.send_text(&alice, &room, "second").await;
        let pdu = pdu(&s, &second);
        assert_eq!(pdu["event_id"], second, "v{version}: {pdu}");
        let prev = &pdu["prev_events"][0];
        assert_eq!(prev[0], first, "v{version}: {pdu}");
        let first_pdu = self::pdu(&s, &first);
        assert_eq!(
            prev[1]["sha256"], first_pdu["hashes"]["sha256"],
            "v{version}"
        );
        for reference in pdu["auth_events"].as_array().unwrap() {
            let id = reference[0].as_str().unwrap();
            assert_eq!(
                reference[1]["sha256"],
                self::pdu(&s, id)["hashes"]["sha256"],
                "v{version}: {pdu}"
            );
        }
    }
    // Later versions list bare IDs.
    let room = s.create_room(&alice, json!({ "room_version": "10" })).await;
    let event = s.send_text(&alice, &room, "x").await;
    assert!(pdu(&s, &event)["prev_events"][0].is_string());
}

#[tokio::test]
async fn every_event_is_hashed_and_signed_with_the_published_key() {
    let s = TestServer::start_with(
        "listeners:
  - port: 0
    bind_addresses: ['127.0.0.1']
    resources: [{names: [client, keys]}]",
    )
    .await;
    let (status, keys) = s
        .request(Method::GET, "/_matrix/key/v2/server", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let mut key_set = ruma::signatures::PublicKeySet::new();
    for (id, key) in keys["verify_keys"].as_object().unwrap() {
        key_set.insert(
            id.clone(),
            ruma::serde::Base64::parse(key["key"].as_str().unwrap()).unwrap(),
        );
    }
    let mut key_map = ruma::signatures::PublicKeyMap::new();
    key_map.insert("test.local".to_string(), key_set);
    let alice = s.register("alice").await;
    for (version, rules) in [
        ("1", ruma::room_version_rules::RoomVersionRules::V1),
        ("3", ruma::room_version_rules::RoomVersionRules::V3),
        ("10", ruma::room_version_rules::RoomVersionRules::V10),
        ("11", ruma::room_version_rules::RoomVersionRules::V11),
    ] {
        let room = s
            .create_room(&alice, json!({ "room_version": version, "name": "signed" }))
            .await;
        let message = s.send_text(&alice, &room, "signed too").await;
        let (status, state) = s
            .get(&format!("/rooms/{}/state", enc(&room)), &alice.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{state}");
        let mut ids: Vec<String> = state
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect();
        ids.push(message);
        for id in ids {
            let event = pdu(&s, &id);
            let object: ruma::CanonicalJsonObject = serde_json::from_value(event.clone()).unwrap();
            let verified = ruma::signatures::verify_event(&key_map, &object, &rules);
            assert!(
                matches!(verified, Ok(ruma::signatures::Verified::All)),
                "version {version}, {id}: {verified:?} {event}"
            );
            if version != "1" {
                let reference = ruma::signatures::reference_hash(&object, &rules).unwrap();
                assert_eq!(id, format!("${reference}"), "the ID is the reference hash");
            }
        }
    }
}
