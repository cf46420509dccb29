//! The `ModuleApi` used by test modules against the real server, over HTTP.

use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const TOOLKIT: &str = "modules:\n  - module: test.Toolkit\n    config: {tick_ms: 50}\n";

#[tokio::test]
async fn a_module_joins_invited_users_from_on_new_event() {
    let s = TestServer::start_with("modules:\n  - module: test.AutoJoin\n").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({})).await;
    assert_eq!(
        s.invite(&alice, &room, &bob.user_id).await.0,
        StatusCode::OK
    );
    // The module's join arrives in the background, through the same rules.
    for _ in 0..100 {
        let (_, rooms) = s.get("/joined_rooms", &bob.token).await;
        if rooms["joined_rooms"] == json!([room]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("bob was not joined");
}

#[tokio::test]
async fn a_web_resource_authenticates_with_client_access_tokens() {
    let s = TestServer::start_with(TOOLKIT).await;
    let alice = s.register("alice").await;
    let (status, me) = s.get("/_synapse/client/toolkit/whoami", &alice.token).await;
    assert_eq!(
        (status, me),
        (
            StatusCode::OK,
            json!({ "user_id": "@alice:test.local", "is_admin": false })
        )
    );
    assert_error(
        &s.request(Method::GET, "/_synapse/client/toolkit/whoami", None, None)
            .await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &s.get("/_synapse/client/toolkit/whoami", "nope").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn a_module_registers_users_and_devices() {
    let s = TestServer::start_with(TOOLKIT).await;
    let (status, bot) = s
        .request(Method::POST, "/_synapse/client/toolkit/bot", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{bot}");
    assert_eq!(bot["user_id"], "@bot:test.local");
    assert_eq!(bot["exists"], "@bot:test.local");
    let (_, whoami) = s
        .get("/account/whoami", bot["access_token"].as_str().unwrap())
        .await;
    assert_eq!(whoami["user_id"], "@bot:test.local");
    assert_eq!(whoami["device_id"], bot["device_id"]);
    let (_, name) = s
        .get(
            "/profile/%40bot:test.local/displayname",
            bot["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(name["displayname"], "The Bot");
    // Twice is refused with the client API's error.
    assert_error(
        &s.request(Method::POST, "/_synapse/client/toolkit/bot", None, None)
            .await,
        400,
        "M_USER_IN_USE",
    );
}

#[tokio::test]
async fn a_module_creates_rooms_sends_events_and_reads_state() {
    let s = TestServer::start_with(TOOLKIT).await;
    let alice = s.register("alice").await;
    let (status, made) = s
        .post("/_synapse/client/toolkit/room", &alice.token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let room = made["room_id"].as_str().unwrap();
    assert_eq!(made["looked_up"], room);
    assert_eq!(made["public"], true);
    assert_eq!(made["state_size"], 1, "filtered to m.room.name");
    assert_eq!(made["name"], "made by a module");
    // Alice sees the room and the module's message like any other.
    let (_, rooms) = s.get("/joined_rooms", &alice.token).await;
    assert_eq!(rooms["joined_rooms"], json!([room]));
    let (_, event) = s
        .get(
            &format!(
                "/rooms/{}/event/{}",
                enc(room),
                enc(made["event_id"].as_str().unwrap())
            ),
            &alice.token,
        )
        .await;
    assert_eq!(event["content"]["body"], "hello from the toolkit");
    assert_eq!(event["sender"], alice.user_id);
    let (_, public) = s.get("/publicRooms", &alice.token).await;
    assert_eq!(public["chunk"][0]["room_id"], room);
}

#[tokio::test]
async fn a_module_writes_account_data_that_sync_delivers() {
    let s = TestServer::start_with(TOOLKIT).await;
    let alice = s.register("alice").await;
    let (_, first) = s.get("/sync", &alice.token).await;
    let (status, written) = s
        .post(
            "/_synapse/client/toolkit/account_data",
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(written["read_back"], json!({ "set_by": "toolkit" }));
    let (_, next) = s
        .get(
            &format!("/sync?since={}", first["next_batch"].as_str().unwrap()),
            &alice.token,
        )
        .await;
    assert_eq!(
        next["account_data"]["events"],
        json!([{ "type": "org.test.toolkit", "content": { "set_by": "toolkit" } }])
    );
}

#[tokio::test]
async fn a_periodic_job_runs_until_the_server_shuts_down() {
    let mut s = TestServer::start_with(TOOLKIT).await;
    let ticks = |s: &TestServer| {
        let base = s.base.clone();
        async move {
            let body: serde_json::Value =
                reqwest::get(format!("{base}/_synapse/client/toolkit/ticks"))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
            body["ticks"].as_u64().unwrap()
        }
    };
    let mut seen = 0;
    for _ in 0..100 {
        seen = ticks(&s).await;
        if seen >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen >= 3, "the job ran {seen} times");
    let server = s.server.take().unwrap();
    let state = server.homeserver.clone();
    server.shutdown().await;
    drop(state);
    // After shutdown the listener is gone.
    assert!(
        reqwest::get(format!("{}/_synapse/client/toolkit/ticks", s.base))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_cached_lookup_is_served_from_the_cache_until_invalidated() {
    let s = TestServer::start_with(TOOLKIT).await;
    let alice = s.register("alice").await;
    let name = |s: &TestServer| {
        let (base, user) = (s.base.clone(), alice.user_id.clone());
        async move {
            let body: serde_json::Value = reqwest::get(format!(
                "{base}/_synapse/client/toolkit/name?user={}",
                enc(&user)
            ))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
            (
                body["name"].as_str().unwrap().to_string(),
                body["lookups"].as_u64().unwrap(),
            )
        }
    };
    assert_eq!(name(&s).await, ("alice".to_string(), 1));
    s.put(
        &format!("/profile/{}/displayname", enc(&alice.user_id)),
        &alice.token,
        json!({ "displayname": "Alicia" }),
    )
    .await;
    assert_eq!(
        name(&s).await,
        ("alice".to_string(), 1),
        "cached: the stale name, no new lookup"
    );
    s.http
        .post(format!(
            "{}/_synapse/client/toolkit/invalidate?user={}",
            s.base,
            enc(&alice.user_id)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(name(&s).await, ("Alicia".to_string(), 2));
}

#[tokio::test]
async fn loading_without_a_server_constructs_the_module_and_checks_its_config() {
    // `--check-config` constructs modules without a server: the constructor's
    // periodic job is only queued, and config errors are reported.
    let yaml: serde_yaml::Value = serde_yaml::from_str(TOOLKIT).unwrap();
    let server = axon::module::ServerInfo {
        server_name: "test.local".try_into().unwrap(),
        public_baseurl: "http://x/".into(),
        measure_callbacks: false,
    };
    let loaded = axon::module::LoadedModules::load(yaml.get("modules"), server).unwrap();
    assert_eq!(loaded.modules.len(), 1);
    let errors = match axon::module::LoadedModules::load(
        serde_yaml::from_str::<serde_yaml::Value>(
            "modules:\n  - module: test.Toolkit\n    config: {tick_ms: 0}\n",
        )
        .unwrap()
        .get("modules"),
        axon::module::ServerInfo {
            server_name: "test.local".try_into().unwrap(),
            public_baseurl: "http://x/".into(),
            measure_callbacks: false,
        },
    ) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("refused"),
    };
    assert!(
        errors
            .contains("module `test.Toolkit` at `modules[0].config.tick_ms`: must be more than 0"),
        "{errors}"
    );
}

#[tokio::test]
async fn a_module_keeps_its_own_table_across_restarts() {
    let mut s = TestServer::start_with("modules:\n  - module: test.Notes\n").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    for text in ["first", "second"] {
        let response = s
            .http
            .post(format!("{}/_synapse/client/notes?text={text}", s.base))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let (_, notes) = s.get("/_synapse/client/notes", &alice.token).await;
    assert_eq!(
        notes,
        json!({ "notes": ["first", "second"], "at_start": 0 })
    );
    let (_, none) = s.get("/_synapse/client/notes", &bob.token).await;
    assert_eq!(none["notes"], json!([]));
    // The table survives a restart; migrations are not applied twice; the
    // start hook reads the table before the server listens.
    s.restart().await;
    let (_, notes) = s.get("/_synapse/client/notes", &alice.token).await;
    assert_eq!(
        notes,
        json!({ "notes": ["first", "second"], "at_start": 2 })
    );
}

#[tokio::test]
async fn a_module_cannot_touch_tables_that_are_not_its_own() {
    let s = TestServer::start_with("modules:\n  - module: test.Notes\n").await;
    let alice = s.register("alice").await;
    for sql in [
        "SELECT * FROM users",
        "DELETE FROM access_tokens",
        "DROP TABLE events",
        "UPDATE users SET admin = 1",
        "ATTACH DATABASE ':memory:' AS x",
    ] {
        let (_, body) = s
            .request(
                Method::GET,
                &format!("/_synapse/client/notes/sneak?sql={}", enc(sql)),
                None,
                None,
            )
            .await;
        assert_eq!(body["refused"], true, "{sql}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("not authorized") || error.contains("prohibited"),
            "{sql}: {body}"
        );
    }
    // The server's data is intact.
    assert_eq!(
        s.get("/account/whoami", &alice.token).await.0,
        StatusCode::OK
    );
    let (_, own) = s
        .request(
            Method::GET,
            &format!(
                "/_synapse/client/notes/sneak?sql={}",
                enc("DELETE FROM m_test_notes__notes")
            ),
            None,
            None,
        )
        .await;
    assert_eq!(own["refused"], false, "its own table: {own}");
}

use axon_testkit::smtp_sink;

#[tokio::test]
async fn a_module_sends_mail_through_the_configured_smtp_server() {
    let sink = smtp_sink::SmtpSink::start().await;
    let s = TestServer::start_with(&format!(
        "email: {{smtp_host: 127.0.0.1, smtp_port: {}, enable_tls: false, notif_from: '%(app)s <noreply@test.local>', app_name: Axon Test}}\nmodules:\n  - module: test.Outbound\n",
        sink.port
    ))
    .await;
    let (status, body) = s
        .request(
            Method::POST,
            "/_synapse/client/outbound/mail?to=alice%40example.org",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["<alice@example.org>"]);
    assert_eq!(mails[0].from, "<noreply@test.local>");
    assert!(
        mails[0].data.contains("Subject: Your Axon Test account"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0]
            .data
            .contains("From: \"Axon Test\" <noreply@test.local>")
            || mails[0]
                .data
                .contains("From: Axon Test <noreply@test.local>"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0].data.contains("Renew now") && mails[0].data.contains("text/html"),
        "{}",
        mails[0].data
    );
    // A bad recipient is the module's 400, not a crash.
    assert_error(
        &s.request(
            Method::POST,
            "/_synapse/client/outbound/mail?to=nobody",
            None,
            None,
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn without_an_email_section_sending_mail_fails_clearly() {
    let s = TestServer::start_with("modules:\n  - module: test.Outbound\n").await;
    let (status, body) = s
        .request(
            Method::POST,
            "/_synapse/client/outbound/mail?to=a%40example.org",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body["error"],
        "mail is not configured: add an `email:` section to the config"
    );
}

#[tokio::test]
async fn a_module_calls_out_over_http_with_a_timeout() {
    let s = TestServer::start_with("modules:\n  - module: test.Outbound\n").await;
    let url = format!("{}/_matrix/client/versions", s.base);
    let (status, body) = s
        .request(
            Method::GET,
            &format!("/_synapse/client/outbound/fetch?url={}", enc(&url)),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["got"]["versions"]
        .as_array()
        .unwrap()
        .contains(&json!("v1.11")));
    // A server that accepts and never answers: the timeout ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let timed_out = s
        .request(
            Method::GET,
            &format!(
                "/_synapse/client/outbound/fetch?timeout_ms=300&url={}",
                enc(&silent_url)
            ),
            None,
            None,
        )
        .await;
    assert_error(&timed_out, 504, "M_UNKNOWN");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
}

#[tokio::test]
async fn a_module_sends_events_from_inside_check_event_allowed_without_deadlock() {
    let s = TestServer::start_with("modules:\n  - module: test.Freezer\n").await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let sent = tokio::time::timeout(
        Duration::from_secs(10),
        s.send_text(&alice, &room, "freeze"),
    )
    .await;
    assert!(sent.is_ok(), "the send completed");
    let (_, topic) = s
        .get(
            &format!("/rooms/{}/state/m.room.topic/", enc(&room)),
            &alice.token,
        )
        .await;
    assert_eq!(topic["topic"], "frozen");
    // The module's own event went through the same callback.
    let (_, seen) = s
        .request(Method::GET, "/_synapse/client/freezer/seen", None, None)
        .await;
    let seen: Vec<&str> = seen["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(&seen[seen.len() - 2..], ["m.room.message", "m.room.topic"]);
    // Both events are in the room, and the room goes on.
    let (_, messages) = s
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=3", enc(&room)),
            &alice.token,
        )
        .await;
    let types: Vec<&str> = messages["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"m.room.message") && types.contains(&"m.room.topic"),
        "{types:?}"
    );
    s.send_text(&alice, &room, "after").await;
}
