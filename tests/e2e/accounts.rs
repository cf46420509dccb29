//! Registration, login, logout, whoami, deactivation and shared-secret
//! registration, over HTTP against a real server.

use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn registration_is_a_two_step_dummy_flow() {
    let s = TestServer::start().await;
    let (status, body) = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "username": "alice", "password": "pw" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["flows"], json!([{ "stages": ["m.login.dummy"] }]));
    let session = body["session"].as_str().unwrap().to_string();
    assert!(
        body.get("errcode").is_none(),
        "a first challenge is no error: {body}"
    );

    let (status, body) = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "username": "alice", "password": "pw", "auth": { "type": "m.login.dummy", "session": session } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:test.local");
    assert!(body["access_token"].is_string() && body["device_id"].is_string());
    assert_eq!(body["home_server"], "test.local");

    let (status, body) = s
        .get("/account/whoami", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user_id"], "@alice:test.local");
    assert_eq!(body["is_guest"], false);
}

#[tokio::test]
async fn taken_and_invalid_usernames_are_refused() {
    let s = TestServer::start().await;
    s.register("bob").await;
    let again = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "username": "bob", "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_error(&again, 400, "M_USER_IN_USE");
    let upper = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "username": "Bob" })),
        )
        .await;
    // Lower-cased first, as Synapse does (rest/client/register.py): `Bob`
    // is `bob`, who exists.
    assert_error(&upper, 400, "M_USER_IN_USE");
    let underscore = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "username": "_bob" })),
        )
        .await;
    assert_error(&underscore, 400, "M_INVALID_USERNAME");

    let (status, body) = s
        .request(
            Method::GET,
            "/register/available?username=carol",
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "available": true }))
    );
    assert_error(
        &s.request(Method::GET, "/register/available?username=bob", None, None)
            .await,
        400,
        "M_USER_IN_USE",
    );
    assert_error(
        &s.request(
            Method::GET,
            "/register/available?username=B%20b",
            None,
            None,
        )
        .await,
        400,
        "M_INVALID_USERNAME",
    );
}

#[tokio::test]
async fn registration_can_be_closed_and_guests_are_refused() {
    let s = TestServer::start_with("enable_registration: false").await;
    let response = s
        .request(
            Method::POST,
            "/register",
            None,
            Some(json!({ "username": "x", "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_error(&response, 403, "M_FORBIDDEN");
    let s = TestServer::start().await;
    let guest = s
        .request(Method::POST, "/register?kind=guest", None, Some(json!({})))
        .await;
    assert_error(&guest, 403, "M_GUEST_ACCESS_FORBIDDEN");
}

#[tokio::test]
async fn login_with_a_password_and_logout() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let (status, flows) = s.request(Method::GET, "/login", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(flows["flows"], json!([{ "type": "m.login.password" }]));

    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "correct horse", "device_id": "PHONE" });
    let (status, body) = s.request(Method::POST, "/login", None, Some(login)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], alice.user_id);
    assert_eq!(body["device_id"], "PHONE");
    let phone = body["access_token"].as_str().unwrap().to_string();

    // The legacy `user` field and a full user ID work too.
    let legacy = json!({ "type": "m.login.password", "user": "@alice:test.local", "password": "correct horse" });
    assert_eq!(
        s.request(Method::POST, "/login", None, Some(legacy))
            .await
            .0,
        StatusCode::OK
    );

    let wrong = json!({ "type": "m.login.password", "user": "alice", "password": "wrong" });
    assert_error(
        &s.request(Method::POST, "/login", None, Some(wrong)).await,
        403,
        "M_FORBIDDEN",
    );
    let nobody = json!({ "type": "m.login.password", "user": "nobody", "password": "x" });
    assert_error(
        &s.request(Method::POST, "/login", None, Some(nobody)).await,
        403,
        "M_FORBIDDEN",
    );
    let other_type = json!({ "type": "m.login.token", "token": "x" });
    assert_error(
        &s.request(Method::POST, "/login", None, Some(other_type))
            .await,
        400,
        "M_UNKNOWN",
    );

    assert_eq!(s.post("/logout", &phone, json!({})).await.0, StatusCode::OK);
    assert_error(
        &s.get("/account/whoami", &phone).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(
        s.get("/account/whoami", &alice.token).await.0,
        StatusCode::OK,
        "other devices stay logged in"
    );

    assert_eq!(
        s.post("/logout/all", &alice.token, json!({})).await.0,
        StatusCode::OK
    );
    assert_error(
        &s.get("/account/whoami", &alice.token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn deactivation_needs_the_password_and_ends_the_account() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(s.join(&bob, &room).await.0, StatusCode::OK);

    let (status, challenge) = s.post("/account/deactivate", &bob.token, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge["flows"],
        json!([{ "stages": ["m.login.password"] }])
    );

    let wrong = json!({ "auth": { "type": "m.login.password", "user": "bob", "password": "nope", "session": challenge["session"] } });
    let (status, body) = s.post("/account/deactivate", &bob.token, wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errcode"], "M_FORBIDDEN");

    let right = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "bob" }, "password": "correct horse" } });
    let (status, body) = s.post("/account/deactivate", &bob.token, right).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");

    assert_error(
        &s.get("/account/whoami", &bob.token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let login = json!({ "type": "m.login.password", "user": "bob", "password": "correct horse" });
    assert_error(
        &s.request(Method::POST, "/login", None, Some(login)).await,
        403,
        "M_FORBIDDEN",
    );
    // Bob left the room.
    let (_, members) = s
        .get(
            &format!("/rooms/{}/joined_members", enc(&room)),
            &alice.token,
        )
        .await;
    assert!(members["joined"].get(&bob.user_id).is_none(), "{members}");
}

fn admin_mac(secret: &str, nonce: &str, user: &str, password: &str, admin: bool) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(
        format!(
            "{nonce}\0{user}\0{password}\0{}",
            if admin { "admin" } else { "notadmin" }
        )
        .as_bytes(),
    );
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn shared_secret_registration_creates_admins() {
    let s = TestServer::start_with("enable_registration: false").await;
    let (status, nonce) = s
        .request(Method::GET, "/_synapse/admin/v1/register", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let nonce = nonce["nonce"].as_str().unwrap().to_string();
    let mac = admin_mac("test-shared-secret", &nonce, "root", "pw", true);
    let body =
        json!({ "nonce": nonce, "username": "root", "password": "pw", "admin": true, "mac": mac });
    let (status, created) = s
        .request(
            Method::POST,
            "/_synapse/admin/v1/register",
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["user_id"], "@root:test.local");
    assert!(created["access_token"].is_string());

    // A nonce is good once.
    assert_error(
        &s.request(
            Method::POST,
            "/_synapse/admin/v1/register",
            None,
            Some(body),
        )
        .await,
        400,
        "M_UNKNOWN",
    );

    let (_, nonce) = s
        .request(Method::GET, "/_synapse/admin/v1/register", None, None)
        .await;
    let bad = json!({ "nonce": nonce["nonce"], "username": "eve", "password": "pw", "admin": true,
                      "mac": admin_mac("wrong-secret", nonce["nonce"].as_str().unwrap(), "eve", "pw", true) });
    assert_error(
        &s.request(Method::POST, "/_synapse/admin/v1/register", None, Some(bad))
            .await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn shared_secret_registration_is_off_without_a_secret() {
    let s = TestServer::start_with("registration_shared_secret: null").await;
    assert_error(
        &s.request(Method::GET, "/_synapse/admin/v1/register", None, None)
            .await,
        400,
        "M_UNKNOWN",
    );
}

#[tokio::test]
async fn registration_keeps_its_parameters_across_steps_and_its_last_step_can_repeat() {
    let s = TestServer::start().await;
    let first = json!({ "username": "Dave", "password": "long enough password" });
    let (status, challenge) = s
        .request(Method::POST, "/register", None, Some(first))
        .await;
    assert_eq!(status, 401, "{challenge}");
    let session = challenge["session"].as_str().unwrap();
    // The second step names only the stage: the first step's username and
    // password hold.
    let step = json!({ "auth": { "type": "m.login.dummy", "session": session } });
    let (status, done) = s
        .request(Method::POST, "/register", None, Some(step.clone()))
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["user_id"], "@dave:test.local");
    // A client that lost the answer sends the last step again: the same
    // account, logged in again.
    let (status, again) = s.request(Method::POST, "/register", None, Some(step)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["user_id"], "@dave:test.local");
    assert_ne!(again["access_token"], done["access_token"]);
    let login =
        json!({ "type": "m.login.password", "user": "dave", "password": "long enough password" });
    assert_eq!(
        s.request(Method::POST, "/login", None, Some(login)).await.0,
        200
    );
}
