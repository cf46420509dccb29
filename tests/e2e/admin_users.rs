//! Synapse's admin API for accounts: `GET`/`PUT /_synapse/admin/v2/users/{user_id}`,
//! and the identifiers a user sees at `GET /account/3pid`.

use axon_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn path(user: &str) -> String {
    format!("/_synapse/admin/v2/users/{}", enc(user))
}

async fn admin_put(
    s: &TestServer,
    admin: &User,
    user: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    s.request(Method::PUT, &path(user), Some(&admin.token), Some(body))
        .await
}

#[tokio::test]
async fn an_admin_creates_a_user_with_a_password_and_an_email() {
    let s = TestServer::start().await;
    let admin = register_admin(&s, "root").await;
    let (status, body) = admin_put(
        &s,
        &admin,
        "@carol:test.local",
        json!({ "password": "secret", "displayname": "Carol", "threepids": [{ "medium": "email", "address": "Carol@Example.org" }] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "@carol:test.local");
    assert_eq!(body["displayname"], "Carol");
    assert_eq!(body["admin"], false);
    assert_eq!(body["threepids"][0]["medium"], "email");
    assert_eq!(
        body["threepids"][0]["address"], "carol@example.org",
        "emails are stored lowercased"
    );
    assert!(body["threepids"][0]["added_at"].as_i64().unwrap() > 0);

    let (status, login) = s
        .request(
            Method::POST,
            "/login",
            None,
            Some(json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "carol" }, "password": "secret" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let (status, mine) = s
        .get("/account/3pid", login["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["threepids"], body["threepids"]);

    let (status, got) = s
        .request(
            Method::GET,
            &path("@carol:test.local"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, body);
}

#[tokio::test]
async fn an_admin_changes_an_existing_user() {
    let s = TestServer::start().await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;
    let (status, body) = admin_put(
        &s,
        &admin,
        &alice.user_id,
        json!({ "admin": true, "displayname": "Alice A.", "threepids": [{ "medium": "email", "address": "a@example.org" }] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["admin"], true);
    assert_eq!(body["displayname"], "Alice A.");
    assert_eq!(
        s.get("/account/3pid", &alice.token).await.1["threepids"][0]["address"],
        "a@example.org"
    );
    let (status, body) = admin_put(&s, &admin, &alice.user_id, json!({ "threepids": [] })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["threepids"], json!([]));

    // A new password logs every device out.
    admin_put(&s, &admin, &alice.user_id, json!({ "password": "new" })).await;
    assert_error(
        &s.get("/account/whoami", &alice.token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn an_email_belongs_to_one_user_and_a_refused_request_changes_nothing() {
    let s = TestServer::start().await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    admin_put(
        &s,
        &admin,
        &alice.user_id,
        json!({ "threepids": [{ "medium": "email", "address": "shared@example.org" }] }),
    )
    .await;
    let refused = admin_put(
        &s,
        &admin,
        &bob.user_id,
        json!({ "displayname": "Bob", "threepids": [{ "medium": "email", "address": "SHARED@example.org" }] }),
    )
    .await;
    assert_error(&refused, 409, "M_THREEPID_IN_USE");
    assert_eq!(refused.1["error"], "Threepid already in use");
    assert_eq!(
        s.get("/account/3pid", &bob.token).await.1,
        json!({ "threepids": [] })
    );
    assert_eq!(
        s.get(
            &format!("/profile/{}/displayname", enc(&bob.user_id)),
            &bob.token
        )
        .await
        .1["displayname"],
        "bob",
        "the display name was not changed either"
    );
    // Nor is a user created with an email that is taken.
    let refused = admin_put(
        &s,
        &admin,
        "@dave:test.local",
        json!({ "password": "pw", "threepids": [{ "medium": "email", "address": "shared@example.org" }] }),
    )
    .await;
    assert_error(&refused, 409, "M_THREEPID_IN_USE");
    assert_error(
        &s.request(
            Method::GET,
            &path("@dave:test.local"),
            Some(&admin.token),
            None,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn deactivating_through_the_admin_api_logs_out_and_drops_the_emails() {
    let s = TestServer::start().await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;
    admin_put(
        &s,
        &admin,
        &alice.user_id,
        json!({ "threepids": [{ "medium": "email", "address": "a@example.org" }] }),
    )
    .await;
    let (status, body) =
        admin_put(&s, &admin, &alice.user_id, json!({ "deactivated": true })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deactivated"], true);
    assert_eq!(body["threepids"], json!([]));
    assert_error(
        &s.get("/account/whoami", &alice.token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn bad_requests_get_matrix_errors() {
    let s = TestServer::start().await;
    let admin = register_admin(&s, "root").await;
    let alice = s.register("alice").await;

    let not_admin = s
        .request(Method::GET, &path(&admin.user_id), Some(&alice.token), None)
        .await;
    assert_error(&not_admin, 403, "M_FORBIDDEN");
    assert_eq!(not_admin.1["error"], "You are not a server admin");
    assert_error(
        &admin_put(&s, &alice, &alice.user_id, json!({ "admin": true })).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.request(
            Method::GET,
            &path("@nobody:test.local"),
            Some(&admin.token),
            None,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    let remote = admin_put(&s, &admin, "@x:elsewhere.org", json!({})).await;
    assert_error(&remote, 400, "M_UNKNOWN");
    assert_eq!(
        remote.1["error"],
        "This endpoint can only be used with local users"
    );
    assert_error(
        &admin_put(
            &s,
            &admin,
            &alice.user_id,
            json!({ "threepids": [{ "medium": "email", "address": "not-an-address" }] }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &admin_put(&s, &admin, &alice.user_id, json!({ "admin": "yes" })).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &admin_put(&s, &admin, "@Bad Name:test.local", json!({})).await,
        400,
        "M_INVALID_USERNAME",
    );
}

#[tokio::test]
async fn an_admin_creating_a_deactivated_user_gets_one_that_cannot_log_in() {
    let s = TestServer::start().await;
    let admin = register_admin(&s, "root").await;
    let body = json!({ "password": "secret", "deactivated": true });
    let (status, created) = admin_put(&s, &admin, "@dormant:test.local", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["deactivated"], true, "{created}");
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "dormant" }, "password": "secret" });
    let refused = s.request(Method::POST, "/login", None, Some(login)).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN, "{}", refused.1);
}
