//! Federation between Axon servers and the transport under it: the TLS
//! listener other servers connect to, signed requests both ways, other
//! servers' keys fetched and cached.

use axon_testkit::tls::TestCa;
use axon_testkit::*;

/// A listener serving federation over TLS, with a certificate from `ca`.
fn tls_listener(ca: &TestCa, name: &str) -> String {
    let issued = ca.issue(name);
    format!(
        "listeners:
  - port: 0
    bind_addresses: ['127.0.0.1']
  - port: 0
    tls: true
    bind_addresses: ['127.0.0.1']
    resources: [{{names: [federation]}}]
tls_certificate_path: {}
tls_private_key_path: {}",
        issued.certificate.display(),
        issued.key.display()
    )
}

#[tokio::test]
async fn the_federation_listener_speaks_tls_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let s = TestServer::start_with(&tls_listener(&ca, "axon")).await;
    let tls_addr = s.server.as_ref().unwrap().addrs[1];
    let url = format!("https://{tls_addr}/_matrix/key/v2/server");
    let response = ca.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["server_name"], "test.local");
    // A client that does not trust the CA refuses the certificate; plain
    // HTTP gets no answer from a TLS port.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .unwrap();
    let refused = untrusting.get(&url).send().await.unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");
    let plain = reqwest::get(format!("http://{tls_addr}/_matrix/key/v2/server")).await;
    assert!(plain.is_err(), "{plain:?}");
    // The client listener stays plain HTTP.
    let (status, _) = s.get("/_matrix/client/versions", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_tls_listener_without_its_certificate_or_with_a_broken_one_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let tls_only = "listeners:
  - port: 0
    tls: true
    bind_addresses: ['127.0.0.1']
    resources: [{names: [client, federation]}]";
    let problems = axon_server::config::HomeserverConfig::parse(&merged(
        &test_config(dir.path(), ""),
        tls_only,
    ))
    .unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        text,
        [
            "at `tls_certificate_path`: listeners[0] has `tls: true`, which needs `tls_certificate_path` (a PEM file)",
            "at `tls_private_key_path`: listeners[0] has `tls: true`, which needs `tls_private_key_path` (a PEM file)",
        ]
    );
    let ca = TestCa::new(&dir.path().join("ca"));
    let issued = ca.issue("axon");
    let other = ca.issue("other");
    // A key that is not the certificate's.
    let mismatched = format!(
        "{tls_only}\ntls_certificate_path: {}\ntls_private_key_path: {}",
        issued.certificate.display(),
        other.key.display()
    );
    let error = start_error(&merged(&test_config(dir.path(), ""), &mismatched)).await;
    assert!(
        error.contains("tls_private_key_path:")
            && error.contains("does not go with tls_certificate_path"),
        "{error}"
    );
    // A certificate file that is not PEM.
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let broken = format!(
        "{tls_only}\ntls_certificate_path: {}\ntls_private_key_path: {}",
        garbage.display(),
        issued.key.display()
    );
    let error = start_error(&merged(&test_config(dir.path(), ""), &broken)).await;
    assert!(
        error.contains("tls_certificate_path:") && error.contains("holds no PEM certificate"),
        "{error}"
    );
}

use axon_testkit::federation::Federation;

/// A request to a server's federation listener, unsigned.
async fn federation_request(
    fed: &Federation,
    s: &TestServer,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = fed
        .ca
        .client()
        .request(method, format!("https://{}{path}", s.server_name()));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The key a server publishes: `(key_id, public_key)`.
async fn published_key(fed: &Federation, s: &TestServer) -> (String, String) {
    let (status, body) =
        federation_request(fed, s, Method::GET, "/_matrix/key/v2/server", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (id, key) = body["verify_keys"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    (id.clone(), key["key"].as_str().unwrap().to_string())
}

/// Whether `object` is signed by `server`'s key.
fn signed_by(object: &Value, server: &str, key: &(String, String)) -> bool {
    let mut set = ruma::signatures::PublicKeySet::new();
    set.insert(key.0.clone(), ruma::serde::Base64::parse(&key.1).unwrap());
    let mut map = ruma::signatures::PublicKeyMap::new();
    map.insert(server.to_string(), set);
    let mut only = object.clone();
    let signature = object["signatures"][server].clone();
    only["signatures"] = json!({ server: signature });
    let canonical: ruma::CanonicalJsonObject = serde_json::from_value(only).unwrap();
    ruma::signatures::verify_json(&map, &canonical).is_ok()
}

#[tokio::test]
async fn a_remote_users_profile_is_asked_of_their_server_in_a_signed_request() {
    let fed = Federation::new();
    let a = fed.axon("").await;
    let b = fed.axon("").await;
    let alice = a.register("alice").await;
    let (status, body) = a
        .put(
            &format!("/profile/{}/displayname", enc(&alice.user_id)),
            &alice.token,
            json!({ "displayname": "Alice of A" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bob = b.register("bob").await;
    let (status, body) = b
        .get(&format!("/profile/{}", enc(&alice.user_id)), &bob.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "displayname": "Alice of A" }));
    let (status, body) = b
        .get(
            &format!("/profile/{}/displayname", enc(&alice.user_id)),
            &bob.token,
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "displayname": "Alice of A" }))
    );
    // A's own answer for a user it does not have comes through as is.
    let nobody = format!("@nobody:{}", a.server_name());
    assert_error(
        &b.get(&format!("/profile/{}", enc(&nobody)), &bob.token)
            .await,
        404,
        "M_NOT_FOUND",
    );
    // A server that is not there: 502.
    let gone = format!("@ghost:127.0.0.1:{}", axon_testkit::tls::free_port());
    assert_error(
        &b.get(&format!("/profile/{}", enc(&gone)), &bob.token).await,
        502,
        "M_UNKNOWN",
    );
    // A checked B's signature with B's key, fetched from B and kept.
    let b_key = published_key(&fed, &b).await;
    let db = rusqlite::Connection::open(a.dir.path().join("homeserver.db")).unwrap();
    let (key_id, public_key): (String, String) = db
        .query_row(
            "SELECT key_id, public_key FROM server_signing_keys WHERE server_name = ?1",
            [b.server_name()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((key_id, public_key), b_key);
}

#[tokio::test]
async fn a_server_request_without_a_valid_x_matrix_signature_is_401() {
    let fed = Federation::new();
    let a = fed.axon("").await;
    let b = fed.axon("").await;
    let alice = a.register("alice").await;
    let path = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        enc(&alice.user_id)
    );
    let b_key = published_key(&fed, &b).await;
    let cases = [
        None,
        Some("Bearer some-token".to_string()),
        Some("X-Matrix origin=nowhere".to_string()),
        // For another server.
        Some(format!(
            "X-Matrix origin=\"{}\",destination=\"example.org\",key=\"{}\",sig=\"AAAA\"",
            b.server_name(),
            b_key.0
        )),
        // B's real key, a signature that is not B's.
        Some(format!(
            "X-Matrix origin=\"{}\",destination=\"{}\",key=\"{}\",sig=\"{}\"",
            b.server_name(),
            a.server_name(),
            b_key.0,
            "A".repeat(86)
        )),
        // A key B does not have.
        Some(format!(
            "X-Matrix origin=\"{}\",destination=\"{}\",key=\"ed25519:nope\",sig=\"{}\"",
            b.server_name(),
            a.server_name(),
            "A".repeat(86)
        )),
    ];
    for authorization in cases {
        let answer =
            federation_request(&fed, &a, Method::GET, &path, authorization.as_deref(), None).await;
        assert_error(&answer, 401, "M_UNAUTHORIZED");
    }
    // Unsigned endpoints answer anyone.
    let (status, body) = federation_request(
        &fed,
        &a,
        Method::GET,
        "/_matrix/federation/v1/version",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server"]["name"], "Axon");
}

#[tokio::test]
async fn a_notary_hands_on_keys_signed_by_their_server_and_by_itself() {
    let fed = Federation::new();
    let a = fed.axon("").await;
    let b = fed.axon("").await;
    let a_key = published_key(&fed, &a).await;
    let b_key = published_key(&fed, &b).await;
    let (status, body) = federation_request(
        &fed,
        &b,
        Method::POST,
        "/_matrix/key/v2/query",
        None,
        Some(json!({ "server_keys": { a.server_name(): { a_key.0.clone(): {} } } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answers = body["server_keys"].as_array().unwrap();
    assert_eq!(answers.len(), 1, "{body}");
    let answer = &answers[0];
    assert_eq!(answer["server_name"], json!(a.server_name()));
    assert_eq!(answer["verify_keys"][&a_key.0]["key"], json!(a_key.1));
    assert!(signed_by(answer, &a.server_name(), &a_key), "{answer}");
    assert!(signed_by(answer, &b.server_name(), &b_key), "{answer}");
    // The GET form, for all of a server's keys; and the notary's own.
    let (status, body) = federation_request(
        &fed,
        &b,
        Method::GET,
        &format!("/_matrix/key/v2/query/{}", a.server_name()),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["server_keys"][0]["verify_keys"][&a_key.0]["key"],
        json!(a_key.1)
    );
    let (_, body) = federation_request(
        &fed,
        &b,
        Method::GET,
        &format!("/_matrix/key/v2/query/{}", b.server_name()),
        None,
        None,
    )
    .await;
    assert!(
        signed_by(&body["server_keys"][0], &b.server_name(), &b_key),
        "{body}"
    );
}

#[tokio::test]
async fn keys_of_a_server_that_is_down_come_from_a_trusted_key_server() {
    let fed = Federation::new();
    let notary = fed.axon("").await;
    let mut down = fed.axon("").await;
    let notary_key = published_key(&fed, &notary).await;
    let down_key = published_key(&fed, &down).await;
    // The notary learns the keys while their server is up.
    let (status, body) = federation_request(
        &fed,
        &notary,
        Method::GET,
        &format!("/_matrix/key/v2/query/{}", down.server_name()),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let down_name = down.server_name();
    down.stop().await;
    let asking = fed
        .axon(&format!(
            "trusted_key_servers:
  - server_name: '{}'
    verify_keys: {{'{}': '{}'}}",
            notary.server_name(),
            notary_key.0,
            notary_key.1
        ))
        .await;
    let (status, body) = federation_request(
        &fed,
        &asking,
        Method::POST,
        "/_matrix/key/v2/query",
        None,
        Some(json!({ "server_keys": { &down_name: { down_key.0.clone(): {} } } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = &body["server_keys"][0];
    assert_eq!(
        answer["verify_keys"][&down_key.0]["key"],
        json!(down_key.1),
        "{body}"
    );
    assert!(signed_by(answer, &down_name, &down_key), "{answer}");
    // Without a trusted key server there is nobody to ask.
    let alone = fed.axon("").await;
    let (status, body) = federation_request(
        &fed,
        &alone,
        Method::POST,
        "/_matrix/key/v2/query",
        None,
        Some(json!({ "server_keys": { &down_name: { down_key.0.clone(): {} } } })),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "server_keys": [] }))
    );
}

#[tokio::test]
async fn a_trusted_key_server_without_verify_keys_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = merged(
        &test_config(dir.path(), ""),
        "trusted_key_servers: [{server_name: matrix.org}]",
    );
    let problems = axon_server::config::HomeserverConfig::parse(&yaml).unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        text,
        ["at `trusted_key_servers[0]`: `matrix.org` has no `verify_keys`: name its keys (`{\"ed25519:id\": \"base64\"}`) so its answers can be checked, or set `accept_keys_insecurely: true`"]
    );
}

#[tokio::test]
async fn two_axon_servers_share_a_room_and_the_queue_outlives_a_restart() {
    use axon_testkit::federation::wait_for_message;
    let fed = Federation::new();
    let mut a = fed.axon("").await;
    let mut b = fed.axon("").await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = a
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "name": "A and B" }),
        )
        .await;
    let (status, body) = a.invite(&alice, &room, &bob.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, sync) = b.get("/sync", &bob.token).await;
    assert!(sync["rooms"]["invite"].get(&room).is_some(), "{sync}");
    let (status, body) = b.join(&bob, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        a.member(&alice, &room, &bob.user_id).await["membership"],
        "join"
    );
    let (_, name) = b
        .get(
            &format!("/rooms/{}/state/m.room.name/", enc(&room)),
            &bob.token,
        )
        .await;
    assert_eq!(name, json!({ "name": "A and B" }));
    a.send_text(&alice, &room, "one").await;
    wait_for_message(&b, &bob, &room, "one").await;
    b.send_text(&bob, &room, "two").await;
    wait_for_message(&a, &alice, &room, "two").await;

    // B is down: what A sends waits in A's queue, which outlives A's
    // own restart; B, back, gets it all.
    b.stop().await;
    a.send_text(&alice, &room, "three").await;
    a.send_text(&alice, &room, "four").await;
    a.restart().await;
    b.restart().await;
    b.send_text(&bob, &room, "five").await;
    let on_b = wait_for_message(&b, &bob, &room, "four").await;
    assert!(on_b.contains(&"three".to_string()), "{on_b:?}");
    let on_a = wait_for_message(&a, &alice, &room, "five").await;
    assert_eq!(on_a, ["one", "two", "three", "four", "five"]);
    let db = rusqlite::Connection::open(a.dir.path().join("homeserver.db")).unwrap();
    let queued: i64 = db
        .query_row("SELECT COUNT(*) FROM federation_outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(queued, 0, "A's queue is empty once B has it all");
}

/// B's copy of `room` as it is now.
async fn snapshot_of(
    b: &TestServer,
    room: &str,
) -> std::sync::Arc<axon_server::storage::RoomSnapshot> {
    let hs = &b.server.as_ref().unwrap().homeserver;
    let room_id = ruma::OwnedRoomId::try_from(room).unwrap();
    hs.storage.room_snapshot(&room_id).await.unwrap().unwrap()
}

/// A PDU of `room` as `b` would send it: built on B's copy of the room,
/// from `sender`, signed with B's key.
async fn pdu_from(
    b: &TestServer,
    room: &str,
    sender: &str,
    event_type: &str,
    state_key: Option<&str>,
    content: Value,
) -> Value {
    let snapshot = snapshot_of(b, room).await;
    pdu_on(
        b,
        &snapshot,
        sender,
        event_type,
        state_key,
        content,
        axon::time::now_ms(),
    )
}

/// A PDU as `b` would have sent it when its copy of the room was
/// `snapshot` (a fork, if the room has moved on), at time `ts`.
fn pdu_on(
    b: &TestServer,
    snapshot: &axon_server::storage::RoomSnapshot,
    sender: &str,
    event_type: &str,
    state_key: Option<&str>,
    content: Value,
    ts: i64,
) -> Value {
    let hs = &b.server.as_ref().unwrap().homeserver;
    let draft = axon_server::events::EventDraft {
        sender: ruma::OwnedUserId::try_from(sender).unwrap(),
        event_type: event_type.into(),
        state_key: state_key.map(str::to_string),
        content: serde_json::from_value(content).unwrap(),
    };
    let built = axon_server::events::build_event(
        snapshot,
        &draft,
        ts,
        &Default::default(),
        &hs.server_keys,
    )
    .unwrap();
    Value::Object(built.pdu)
}

/// `PUT /send/{txn}` to `a`, signed by `b`.
async fn send_transaction(
    b: &TestServer,
    a: &TestServer,
    txn: &str,
    body: Value,
) -> Result<Value, String> {
    let hs = &b.server.as_ref().unwrap().homeserver;
    let destination = ruma::OwnedServerName::try_from(a.server_name()).unwrap();
    hs.federation
        .send(
            &hs.server_keys,
            &destination,
            Method::PUT,
            &format!("/_matrix/federation/v1/send/{txn}"),
            Some(&body),
        )
        .await
        .map_err(|e| e.to_string())
}

/// A request of `b` to `a` without a body, signed by `b`.
async fn signed_request(
    b: &TestServer,
    a: &TestServer,
    method: Method,
    path: &str,
) -> Result<Value, String> {
    let hs = &b.server.as_ref().unwrap().homeserver;
    let destination = ruma::OwnedServerName::try_from(a.server_name()).unwrap();
    hs.federation
        .send(&hs.server_keys, &destination, method, path, None)
        .await
        .map_err(|e| e.to_string())
}

fn reference_id(pdu: &Value) -> String {
    let object: ruma::CanonicalJsonObject = serde_json::from_value(pdu.clone()).unwrap();
    let hash =
        ruma::signatures::reference_hash(&object, &ruma::room_version_rules::RoomVersionRules::V10)
            .unwrap();
    format!("${hash}")
}

#[tokio::test]
async fn each_pdu_of_a_transaction_is_checked_on_its_own() {
    let fed = Federation::new();
    let a = fed.axon("").await;
    let b = fed.axon("").await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = a
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "room_version": "10" }),
        )
        .await;
    a.invite(&alice, &room, &bob.user_id).await;
    let (status, body) = b.join(&bob, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let origin = b.server_name();

    let good = pdu_from(
        &b,
        &room,
        &bob.user_id,
        "m.room.message",
        None,
        json!({ "msgtype": "m.text", "body": "fine" }),
    )
    .await;
    // Content changed after signing: the hash fails, and the event is
    // kept redacted.
    let mut tampered = pdu_from(
        &b,
        &room,
        &bob.user_id,
        "m.room.message",
        None,
        json!({ "msgtype": "m.text", "body": "original" }),
    )
    .await;
    tampered["content"]["body"] = json!("changed on the way");
    // A signature that is not B's.
    let mut forged = pdu_from(
        &b,
        &room,
        &bob.user_id,
        "m.room.message",
        None,
        json!({ "msgtype": "m.text", "body": "forged" }),
    )
    .await;
    let key_id = forged["signatures"][&origin]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    forged["signatures"][&origin] = json!({ key_id: "A".repeat(86) });
    // Bob may not change the power levels (he has 0 of the 100 needed).
    let usurp = pdu_from(
        &b,
        &room,
        &bob.user_id,
        "m.room.power_levels",
        Some(""),
        json!({ "users": { bob.user_id.clone(): 100 } }),
    )
    .await;
    // A room A is not in.
    let mut elsewhere = good.clone();
    elsewhere["room_id"] = json!(format!("!nowhere:{origin}"));
    let answer = send_transaction(
        &b,
        &a,
        "t1",
        json!({
            "origin": origin,
            "origin_server_ts": axon::time::now_ms(),
            "pdus": [good, tampered, forged, usurp, elsewhere, "not a PDU"],
        }),
    )
    .await
    .unwrap();
    let results = &answer["pdus"];
    assert_eq!(results[reference_id(&good)], json!({}), "{answer}");
    assert_eq!(results[reference_id(&tampered)], json!({}), "{answer}");
    assert!(
        results[reference_id(&forged)]["error"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{answer}"
    );
    assert!(
        results[reference_id(&usurp)]["error"].is_string(),
        "{answer}"
    );
    assert!(
        results[reference_id(&elsewhere)]["error"]
            .as_str()
            .unwrap()
            .contains("not in"),
        "{answer}"
    );

    // A has the good one as sent and the tampered one redacted; nothing else.
    let (_, page) = a
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=20", enc(&room)),
            &alice.token,
        )
        .await;
    let messages: Vec<&Value> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .collect();
    assert_eq!(messages.len(), 2, "{page}");
    assert_eq!(messages[1]["content"]["body"], "fine");
    assert_eq!(messages[0]["content"], json!({}));
    let (_, levels) = a
        .get(
            &format!("/rooms/{}/state/m.room.power_levels/", enc(&room)),
            &alice.token,
        )
        .await;
    assert_eq!(levels["users"].get(&bob.user_id), None, "{levels}");

    // The good event's auth chain, as A serves it to B: the create event,
    // the power levels and bob's join among it, each a signed PDU.
    let chain = signed_request(
        &b,
        &a,
        Method::GET,
        &format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            enc(&room),
            enc(&reference_id(&good))
        ),
    )
    .await
    .unwrap();
    let types: Vec<&str> = chain["auth_chain"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for wanted in ["m.room.create", "m.room.power_levels", "m.room.member"] {
        assert!(types.contains(&wanted), "{chain}");
    }
    assert!(
        chain["auth_chain"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["signatures"].is_object() && e["hashes"].is_object()),
        "{chain}"
    );

    // Over the limits: 400, and nothing of it is taken.
    let pdus: Vec<Value> = (0..51).map(|_| json!({})).collect();
    let error = send_transaction(
        &b,
        &a,
        "t2",
        json!({ "origin": origin, "origin_server_ts": 0, "pdus": pdus }),
    )
    .await
    .unwrap_err();
    assert!(error.contains("400"), "{error}");
    let edus: Vec<Value> = (0..101)
        .map(|_| json!({ "edu_type": "m.typing", "content": {} }))
        .collect();
    let error = send_transaction(
        &b,
        &a,
        "t3",
        json!({ "origin": origin, "origin_server_ts": 0, "pdus": [], "edus": edus }),
    )
    .await
    .unwrap_err();
    assert!(error.contains("400"), "{error}");
    let error = send_transaction(&b, &a, "t4", json!({ "origin": origin, "pdus": "many" }))
        .await
        .unwrap_err();
    assert!(error.contains("400"), "{error}");
}

#[tokio::test]
async fn presence_to_device_messages_and_device_changes_cross_two_axon_servers() {
    use axon_testkit::federation::wait_for_sync;
    let fed = Federation::new();
    let a = fed.axon("").await;
    let b = fed.axon("").await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = a
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    let (status, body) = a.invite(&alice, &room, &bob.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = b.join(&bob, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Alice's presence reaches bob through his server.
    let (status, body) = a
        .put(
            &format!("/presence/{}/status", enc(&alice.user_id)),
            &alice.token,
            json!({ "presence": "unavailable", "status_msg": "at lunch" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_sync(&b, &bob, "alice's presence", |sync| {
        sync["presence"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["sender"] == alice.user_id.as_str()
                    && e["content"]["presence"] == "unavailable"
                    && e["content"]["status_msg"] == "at lunch"
            })
        })
    })
    .await;

    // A to-device message to bob's device, sent once though retried.
    let path = format!("/sendToDevice/m.test/txn{}", rand_suffix());
    let message = json!({ "messages": { &bob.user_id: { &bob.device_id: { "hello": "bob" } } } });
    for _ in 0..2 {
        let (status, body) = a.put(&path, &alice.token, message.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let sync = wait_for_sync(&b, &bob, "alice's to-device message", |sync| {
        sync["to_device"]["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["type"] == "m.test"))
    })
    .await;
    let received: Vec<&Value> = sync["to_device"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.test")
        .collect();
    assert_eq!(received.len(), 1, "{sync}");
    assert_eq!(received[0]["sender"], alice.user_id.as_str());
    assert_eq!(received[0]["content"], json!({ "hello": "bob" }));

    // A new device of alice's: bob is told her device list changed, and
    // his keys query, answered by her server, names it.
    let (_, first) = b.get("/sync?timeout=0", &bob.token).await;
    let since = first["next_batch"].as_str().unwrap().to_string();
    let (status, login) = a
        .request(
            Method::POST,
            "/login",
            None,
            Some(json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "alice" },
                "password": "correct horse",
                "device_id": "ALICEPHONE",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let phone = User {
        user_id: alice.user_id.clone(),
        token: login["access_token"].as_str().unwrap().to_string(),
        device_id: "ALICEPHONE".into(),
    };
    let signing = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let (status, body) = a
        .post(
            "/keys/upload",
            &phone.token,
            json!({
                "device_keys": crate::keys::device_keys(&phone, &signing),
                "one_time_keys": { "signed_curve25519:AAAA": crate::keys::signed_key("once") },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, sync) = b
            .get(
                &format!("/sync?timeout=1000&since={}", enc(&since)),
                &bob.token,
            )
            .await;
        let changed = sync["device_lists"]["changed"]
            .as_array()
            .is_some_and(|c| c.iter().any(|u| u == alice.user_id.as_str()));
        if changed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no device list change: {sync}"
        );
    }
    let (status, keys) = b
        .post(
            "/keys/query",
            &bob.token,
            json!({ "device_keys": { &alice.user_id: [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    assert_eq!(keys["failures"], json!({}), "{keys}");
    assert_eq!(
        keys["device_keys"][&alice.user_id]["ALICEPHONE"],
        crate::keys::device_keys(&phone, &signing),
        "{keys}"
    );
    // Bob's device claims the phone's one-time key from alice's server, once.
    let claim =
        json!({ "one_time_keys": { &alice.user_id: { "ALICEPHONE": "signed_curve25519" } } });
    let (status, claimed) = b.post("/keys/claim", &bob.token, claim.clone()).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(
        claimed["one_time_keys"][&alice.user_id]["ALICEPHONE"]["signed_curve25519:AAAA"],
        crate::keys::signed_key("once"),
        "{claimed}"
    );
    let (_, again) = b.post("/keys/claim", &bob.token, claim).await;
    assert_eq!(again["one_time_keys"], json!({}), "{again}");

    // A server that is down is a failure of the query, not an absence.
    drop(a);
    let (status, keys) = b
        .post(
            "/keys/query",
            &bob.token,
            json!({ "device_keys": { &alice.user_id: [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    assert!(
        keys["failures"]
            .get(alice.user_id.split_once(':').unwrap().1)
            .is_some(),
        "{keys}"
    );
}

/// Alice on A and bob on B in A's room (version 10), bob allowed to name it.
async fn shared_room(a: &TestServer, b: &TestServer) -> (User, User, String) {
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = a
        .create_room(
            &alice,
            json!({
                "preset": "private_chat",
                "room_version": "10",
                "power_level_content_override": { "users": { &alice.user_id: 100, &bob.user_id: 50 } },
            }),
        )
        .await;
    let (status, body) = a.invite(&alice, &room, &bob.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = b.join(&bob, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (alice, bob, room)
}

#[tokio::test]
async fn concurrent_state_changes_are_settled_by_state_resolution_not_arrival() {
    let fed = Federation::new();
    let a = fed.axon("").await;
    let b = fed.axon("").await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let origin = b.server_name();
    // B's view before alice's change: bob names the room from there, at a
    // time before hers; it reaches A after hers.
    let before = snapshot_of(&b, &room).await;
    let earlier = axon::time::now_ms() - 60_000;
    let (status, body) = a
        .put(
            &format!("/rooms/{}/state/m.room.name/", enc(&room)),
            &alice.token,
            json!({ "name": "From A" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let concurrent = pdu_on(
        &b,
        &before,
        &bob.user_id,
        "m.room.name",
        Some(""),
        json!({ "name": "From B" }),
        earlier,
    );
    let answer = send_transaction(
        &b,
        &a,
        "fork1",
        json!({ "origin": origin, "origin_server_ts": axon::time::now_ms(), "pdus": [concurrent] }),
    )
    .await
    .unwrap();
    assert_eq!(
        answer["pdus"][reference_id(&concurrent)],
        json!({}),
        "{answer}"
    );
    // Both names are in the timeline; the state is what resolution says:
    // of two names by members of equal standing, the later one (hers),
    // though bob's arrived last.
    axon_testkit::federation::wait_for_state(
        &a,
        &alice,
        &room,
        "m.room.name",
        "",
        &json!({ "name": "From A" }),
    )
    .await;
    let (_, page) = a
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=20", enc(&room)),
            &alice.token,
        )
        .await;
    let names: Vec<&Value> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.name")
        .map(|e| &e["content"]["name"])
        .collect();
    assert_eq!(names, [&json!("From B"), &json!("From A")], "{page}");
    // The next event of A's follows both forks.
    a.send_text(&alice, &room, "after the fork").await;
    let (_, page) = a
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=1", enc(&room)),
            &alice.token,
        )
        .await;
    let last = page["chunk"][0]["event_id"].as_str().unwrap().to_string();
    let hs = &a.server.as_ref().unwrap().homeserver;
    let stored = hs.storage.pdus(vec![last]).await.unwrap().pop().unwrap().1;
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored["prev_events"].as_array().unwrap().len(),
        2,
        "{stored}"
    );
}

#[tokio::test]
async fn an_event_the_current_state_forbids_is_soft_failed_kept_and_hidden() {
    let fed = Federation::new();
    let a = fed.axon("").await;
    let b = fed.axon("").await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let origin = b.server_name();
    let before = snapshot_of(&b, &room).await;
    // Alice takes bob's power away; concurrently (in B's view from before),
    // bob renames the room.
    let levels_path = format!("/rooms/{}/state/m.room.power_levels/", enc(&room));
    let (_, mut levels) = a.get(&levels_path, &alice.token).await;
    levels["users"][&bob.user_id] = json!(0);
    let (status, body) = a.put(&levels_path, &alice.token, levels).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rename = pdu_on(
        &b,
        &before,
        &bob.user_id,
        "m.room.name",
        Some(""),
        json!({ "name": "Bob was here" }),
        axon::time::now_ms(),
    );
    let answer = send_transaction(
        &b,
        &a,
        "soft1",
        json!({ "origin": origin, "origin_server_ts": axon::time::now_ms(), "pdus": [rename] }),
    )
    .await
    .unwrap();
    // Accepted (it was allowed where bob wrote it), but not shown.
    let id = reference_id(&rename);
    assert_eq!(answer["pdus"][&id], json!({}), "{answer}");
    let (status, name) = a
        .get(
            &format!("/rooms/{}/state/m.room.name/", enc(&room)),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
    let (_, page) = a
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=20", enc(&room)),
            &alice.token,
        )
        .await;
    assert!(
        !page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_id"] == id.as_str()),
        "{page}"
    );
    let (status, body) = a
        .get(
            &format!("/rooms/{}/event/{}", enc(&room), enc(&id)),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Known all the same: sent again, it is not checked again, and an
    // event that follows it is accepted.
    let again = send_transaction(
        &b,
        &a,
        "soft2",
        json!({ "origin": origin, "origin_server_ts": axon::time::now_ms(), "pdus": [rename] }),
    )
    .await
    .unwrap();
    assert_eq!(again["pdus"][&id], json!({}), "{again}");
}

#[tokio::test]
async fn rc_federation_queues_delays_and_refuses_an_origins_requests_past_its_limits() {
    let fed = Federation::new();
    let a = fed
        .axon("rc_federation: {window_size: 1000, sleep_limit: 2, sleep_delay: 200, reject_limit: 4, concurrent: 1}")
        .await;
    let b = fed.axon("").await;
    let c = fed.axon("").await;
    let alice = a.register("alice").await;
    let path = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        enc(&alice.user_id)
    );
    // Twenty at once from B: at most four are let in at a time (one
    // served, the rest waiting their delay), the others are refused.
    let asks = (0..20).map(|_| signed_request(&b, &a, Method::GET, &path));
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all(asks).await;
    let elapsed = started.elapsed();
    let served = answers.iter().filter(|a| a.is_ok()).count();
    let refused: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(served >= 4 && !refused.is_empty(), "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|e| e.contains("429") && e.contains("M_LIMIT_EXCEEDED")),
        "{refused:?}"
    );
    // Past two in the window, each waited its delay.
    assert!(
        elapsed >= std::time::Duration::from_millis(200),
        "{elapsed:?}"
    );
    // Another server is not held back by B's load; B, once its requests
    // are answered, is let in again.
    assert!(signed_request(&c, &a, Method::GET, &path).await.is_ok());
    assert!(signed_request(&b, &a, Method::GET, &path).await.is_ok());
}

#[tokio::test]
async fn events_a_pdu_follows_that_were_never_sent_are_fetched_with_get_missing_events() {
    let fed = Federation::new();
    let a = fed.axon("").await;
    let b = fed.axon("").await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let origin = b.server_name();
    let hs = &b.server.as_ref().unwrap().homeserver;
    // Two messages B stores without sending: A hears only of the last,
    // and asks B for what comes before it.
    let mut sent = Vec::new();
    for body in ["missed one", "missed two", "the one sent"] {
        let snapshot = snapshot_of(&b, &room).await;
        let draft = axon_server::events::EventDraft {
            sender: ruma::OwnedUserId::try_from(bob.user_id.as_str()).unwrap(),
            event_type: "m.room.message".into(),
            state_key: None,
            content: serde_json::from_value(json!({ "msgtype": "m.text", "body": body })).unwrap(),
        };
        let built = axon_server::events::build_event(
            &snapshot,
            &draft,
            axon::time::now_ms(),
            &Default::default(),
            &hs.server_keys,
        )
        .unwrap();
        sent.push(Value::Object(built.pdu.clone()));
        hs.storage
            .persist_events(None, vec![built.new], None)
            .await
            .unwrap();
    }
    let last = sent.pop().unwrap();
    let answer = send_transaction(
        &b,
        &a,
        "gap1",
        json!({ "origin": origin, "origin_server_ts": axon::time::now_ms(), "pdus": [last] }),
    )
    .await
    .unwrap();
    assert_eq!(answer["pdus"][reference_id(&last)], json!({}), "{answer}");
    let seen = axon_testkit::federation::wait_for_message(&a, &alice, &room, "the one sent").await;
    assert_eq!(seen, ["missed one", "missed two", "the one sent"]);
}
