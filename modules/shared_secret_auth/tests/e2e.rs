//! The shared_secret_auth port (matrix-synapse-shared-secret-auth), over
//! HTTP: every rule of its spec and every config key.

// Name the module crate, so the linker keeps its registration.
use shared_secret_auth as _;

use axon_testkit::*;
use hmac::{Hmac, Mac};

const SECRET: &str = "s3cret";

fn token(user_id: &str) -> String {
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(user_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn config(extra: &str) -> String {
    format!("modules:\n  - module: shared_secret_auth::SharedSecretAuthProvider\n    config:\n      shared_secret: {SECRET}\n{extra}")
}

async fn login(s: &TestServer, body: Value) -> (StatusCode, Value) {
    s.request(Method::POST, "/login", None, Some(body)).await
}

#[tokio::test]
async fn the_token_logs_in_as_any_existing_user() {
    let s = TestServer::start_with(&config("")).await;
    s.register("alice").await;
    let (_, flows) = s.request(Method::GET, "/login", None, None).await;
    assert_eq!(
        flows["flows"],
        json!([{ "type": "m.login.password" }, { "type": "com.devture.shared_secret_auth" }])
    );
    for user in ["alice", "@alice:test.local"] {
        let (status, body) = login(
            &s,
            json!({ "type": "com.devture.shared_secret_auth", "identifier": { "type": "m.id.user", "user": user }, "token": token("@alice:test.local") }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{user}: {body}");
        assert_eq!(body["user_id"], "@alice:test.local");
        assert_eq!(
            s.get("/account/whoami", body["access_token"].as_str().unwrap())
                .await
                .0,
            StatusCode::OK
        );
    }
    // Another user's token, a malformed one, a missing user: refused; users are never created.
    for (user, tok) in [
        ("alice", token("@bob:test.local")),
        ("alice", "zz".to_string()),
        ("nobody", token("@nobody:test.local")),
    ] {
        let refused = login(
            &s,
            json!({ "type": "com.devture.shared_secret_auth", "user": user, "token": tok }),
        )
        .await;
        assert_error(&refused, 403, "M_FORBIDDEN");
    }
    let (status, _) = s
        .request(
            Method::GET,
            "/register/available?username=nobody",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "nobody was registered");
    // The token field is required.
    assert_error(
        &login(
            &s,
            json!({ "type": "com.devture.shared_secret_auth", "user": "alice" }),
        )
        .await,
        400,
        "M_UNKNOWN",
    );
    // Without m_login_password_support_enabled, the token is no password.
    let as_password = login(&s, json!({ "type": "m.login.password", "user": "alice", "password": token("@alice:test.local") })).await;
    assert_error(&as_password, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn password_logins_accept_the_token_and_still_the_password() {
    let s = TestServer::start_with(&config("      m_login_password_support_enabled: true\n")).await;
    s.register("alice").await;
    let (status, body) = login(&s, json!({ "type": "m.login.password", "user": "alice", "password": token("@alice:test.local") })).await;
    assert_eq!(
        (status, body["user_id"].as_str()),
        (StatusCode::OK, Some("@alice:test.local"))
    );
    // Not the module's token: the server's own password check follows.
    let (status, _) = login(
        &s,
        json!({ "type": "m.login.password", "user": "alice", "password": "correct horse" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &login(
            &s,
            json!({ "type": "m.login.password", "user": "alice", "password": "wrong" }),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn the_custom_login_type_can_be_turned_off() {
    let s = TestServer::start_with(&config(
        "      m_login_password_support_enabled: true\n      com_devture_shared_secret_auth_support_enabled: false\n",
    ))
    .await;
    s.register("alice").await;
    let (_, flows) = s.request(Method::GET, "/login", None, None).await;
    assert_eq!(flows["flows"], json!([{ "type": "m.login.password" }]));
    let refused = login(&s, json!({ "type": "com.devture.shared_secret_auth", "user": "alice", "token": token("@alice:test.local") })).await;
    assert_error(&refused, 400, "M_UNKNOWN");
    let (status, _) = login(&s, json!({ "type": "m.login.password", "user": "alice", "password": token("@alice:test.local") })).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn config_errors_stop_startup() {
    let errors = |yaml: &str| modules_load_error(yaml);
    let missing = "modules:\n  - module: shared_secret_auth::SharedSecretAuthProvider\n    config: {m_login_password_support_enabled: true}\n";
    assert!(
        errors(missing).contains("at `modules[0].config`: missing field `shared_secret`"),
        "{}",
        errors(missing)
    );
    let both_off = config("      com_devture_shared_secret_auth_support_enabled: false\n");
    assert!(
        errors(&both_off).contains("both login types are disabled"),
        "{}",
        errors(&both_off)
    );
    let typo = config("      m_login_password_support: true\n");
    assert!(errors(&typo).contains("unknown field `m_login_password_support`"));
}
