//! Server-side key backup: `/room_keys/version` and `/room_keys/keys`, as
//! Element and matrix-sdk use them.

use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn key(first_message_index: u64, forwarded_count: u64, is_verified: bool, data: &str) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": { "ciphertext": data, "ephemeral": "e", "mac": "m" },
    })
}

fn auth_data() -> Value {
    json!({ "public_key": "abcdefg", "signatures": {} })
}

async fn delete(s: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    s.request(Method::DELETE, path, Some(token), None).await
}

#[tokio::test]
async fn backup_versions_are_created_read_updated_and_deleted() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    // No backup: 404 M_NOT_FOUND, what Element takes for "none yet".
    assert_error(
        &s.get("/room_keys/version", &alice.token).await,
        404,
        "M_NOT_FOUND",
    );

    let (status, created) = s
        .post(
            "/room_keys/version",
            &alice.token,
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": auth_data() }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created, json!({ "version": "1" }));
    let (status, current) = s.get("/room_keys/version", &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        current,
        json!({ "version": "1", "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
                "auth_data": auth_data(), "etag": "0", "count": 0 })
    );

    // New auth data; the algorithm and the version cannot change.
    let mut new_auth = auth_data();
    new_auth["public_key"] = json!("hijklmn");
    let (status, _) = s
        .put(
            "/room_keys/version/1",
            &alice.token,
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": new_auth, "version": "1" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, got) = s.get("/room_keys/version/1", &alice.token).await;
    assert_eq!(got["auth_data"], new_auth);
    assert_error(
        &s.put(
            "/room_keys/version/1",
            &alice.token,
            json!({ "algorithm": "m.other", "auth_data": new_auth }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(
            "/room_keys/version/1",
            &alice.token,
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": new_auth, "version": "2" }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.post(
            "/room_keys/version",
            &alice.token,
            json!({ "algorithm": "x" }),
        )
        .await,
        400,
        "M_BAD_JSON",
    );

    // A second version becomes the current one; deleting it leaves the
    // first current again; a deleted version's number is not reused.
    let (_, second) = s
        .post(
            "/room_keys/version",
            &alice.token,
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": auth_data() }),
        )
        .await;
    assert_eq!(second["version"], "2");
    let (status, _) = delete(&s, "/room_keys/version/2", &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &s.get("/room_keys/version/2", &alice.token).await,
        404,
        "M_NOT_FOUND",
    );
    let (_, current) = s.get("/room_keys/version", &alice.token).await;
    assert_eq!(current["version"], "1");
    let (_, third) = s
        .post(
            "/room_keys/version",
            &alice.token,
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": auth_data() }),
        )
        .await;
    assert_eq!(third["version"], "3");
    assert_error(
        &delete(&s, "/room_keys/version/2", &alice.token).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get("/room_keys/version/nope", &alice.token).await,
        404,
        "M_NOT_FOUND",
    );

    // Another user's backups are their own.
    let bob = s.register("bob").await;
    assert_error(
        &s.get("/room_keys/version/1", &bob.token).await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn room_keys_are_stored_better_key_wins_and_only_the_current_version_takes_them() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = "!room:localhost";
    let enc_room = enc(room);
    // Uploads before any backup exists.
    assert_error(
        &s.put(
            "/room_keys/keys?version=1",
            &alice.token,
            json!({ "rooms": { room: { "sessions": { "s1": key(0, 0, false, "a") } } } }),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    let create =
        json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": auth_data() });
    s.post("/room_keys/version", &alice.token, create.clone())
        .await;

    let (status, stored) = s
        .put(
            "/room_keys/keys?version=1",
            &alice.token,
            json!({ "rooms": { room: { "sessions": {
                "s1": key(5, 1, false, "first"),
                "s2": key(0, 0, true, "second"),
            } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored, json!({ "etag": "1", "count": 2 }));

    // A worse key for s1 (later index) changes nothing, etag included.
    let path = format!("/room_keys/keys/{enc_room}/s1?version=1");
    let (_, same) = s.put(&path, &alice.token, key(9, 0, false, "worse")).await;
    assert_eq!(same, json!({ "etag": "1", "count": 2 }));
    // A better one (earlier index) replaces it; verified beats that.
    let (_, better) = s.put(&path, &alice.token, key(2, 3, false, "better")).await;
    assert_eq!(better, json!({ "etag": "2", "count": 2 }));
    let (_, got) = s.get(&path, &alice.token).await;
    assert_eq!(got, key(2, 3, false, "better"));
    s.put(&path, &alice.token, key(7, 7, true, "verified"))
        .await;
    let (_, got) = s.get(&path, &alice.token).await;
    assert_eq!(got["session_data"]["ciphertext"], "verified");

    // The three read shapes.
    let (_, all) = s.get("/room_keys/keys?version=1", &alice.token).await;
    assert_eq!(all["rooms"][room]["sessions"].as_object().unwrap().len(), 2);
    let (_, of_room) = s
        .get(
            &format!("/room_keys/keys/{enc_room}?version=1"),
            &alice.token,
        )
        .await;
    assert_eq!(of_room, all["rooms"][room]);
    let (status, empty_room) = s
        .get(
            &format!("/room_keys/keys/{}?version=1", enc("!other:localhost")),
            &alice.token,
        )
        .await;
    assert_eq!(
        (status, empty_room),
        (StatusCode::OK, json!({ "sessions": {} }))
    );
    assert_error(
        &s.get(
            &format!("/room_keys/keys/{enc_room}/nosuch?version=1"),
            &alice.token,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    let (_, info) = s.get("/room_keys/version", &alice.token).await;
    assert_eq!(
        (info["count"].clone(), info["etag"].clone()),
        (json!(2), json!("3"))
    );

    // A new version: the old one may be read, not written.
    s.post("/room_keys/version", &alice.token, create).await;
    let (status, refused) = s.put(&path, &alice.token, key(0, 0, true, "late")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(refused["current_version"], "2");
    let (status, _) = s.get(&path, &alice.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &s.put(
            "/room_keys/keys?version=7",
            &alice.token,
            json!({ "rooms": {} }),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );

    // Deleting keys: a session, then a room.
    let (_, after) = delete(&s, &path, &alice.token).await;
    assert_eq!(after["count"], 1);
    let (_, after) = delete(
        &s,
        &format!("/room_keys/keys/{enc_room}?version=1"),
        &alice.token,
    )
    .await;
    assert_eq!(after["count"], 0);

    // Malformed keys and a missing version are the request's errors.
    let new_path = format!("/room_keys/keys/{enc_room}/s1?version=2");
    let mut bad = key(0, 0, false, "x");
    bad["is_verified"] = json!("yes");
    assert_error(
        &s.put(&new_path, &alice.token, bad).await,
        400,
        "M_INVALID_PARAM",
    );
    let mut bad = key(0, 0, false, "x");
    bad["first_message_index"] = json!(-1);
    assert_error(
        &s.put(&new_path, &alice.token, bad).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(
            "/room_keys/keys?version=2",
            &alice.token,
            json!({ "rooms": [] }),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &s.get("/room_keys/keys", &alice.token).await,
        400,
        "M_MISSING_PARAM",
    );
    let (_, info) = s.get("/room_keys/version", &alice.token).await;
    assert_eq!(info["count"], 0, "nothing of the refused uploads was kept");
}

#[tokio::test]
async fn a_deactivated_account_loses_its_key_backup() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let create =
        json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": auth_data() });
    for user in [&alice, &bob] {
        s.post("/room_keys/version", &user.token, create.clone())
            .await;
        let (status, _) = s
            .put(
                "/room_keys/keys/!r:localhost/s?version=1",
                &user.token,
                key(0, 0, false, "k"),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let right = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "correct horse" } });
    let (status, body) = s.post("/account/deactivate", &alice.token, right).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let db = rusqlite::Connection::open(s.dir.path().join("homeserver.db")).unwrap();
    let count = |table: &str, user: &str| -> i64 {
        db.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE user_id = ?1"),
            [user],
            |r| r.get(0),
        )
        .unwrap()
    };
    for table in ["e2e_room_keys", "e2e_room_keys_versions"] {
        assert_eq!(count(table, &alice.user_id), 0, "{table}");
        assert_eq!(count(table, &bob.user_id), 1, "{table}: bob keeps his");
    }
}
