//! The email_account_validity port (synapse-email-account-validity), over
//! HTTP with non-admin users, mailing through a local SMTP sink. Emails are
//! bound to accounts through the admin API, as an operator does.

// Name the module crate, so the linker keeps its registration.
use email_account_validity as _;

use axon_testkit::*;

use axon_testkit::smtp_sink;
use smtp_sink::SmtpSink;

const BASE: &str = "/_synapse/client/email_account_validity";

fn config(sink: &SmtpSink, module: &str) -> String {
    format!(
        "public_baseurl: https://hs.test/\nemail: {{smtp_host: 127.0.0.1, smtp_port: {}, enable_tls: false, notif_from: '%(app)s <noreply@test.local>', app_name: Axon Test}}\nmodules:\n  - module: email_account_validity::EmailAccountValidity\n    config:\n{module}",
        sink.port
    )
}

struct Setup {
    s: TestServer,
    sink: SmtpSink,
    admin: User,
}

async fn start(module: &str) -> Setup {
    let sink = SmtpSink::start().await;
    let s = TestServer::start_with(&config(&sink, module)).await;
    let admin = register_admin(&s, "root").await;
    Setup { s, sink, admin }
}

impl Setup {
    /// Registers a user and binds `email` to them.
    async fn user_with_email(&self, name: &str, email: &str) -> User {
        let user = self.s.register(name).await;
        let (status, body) = self
            .s
            .request(
                Method::PUT,
                &format!("/_synapse/admin/v2/users/{}", enc(&user.user_id)),
                Some(&self.admin.token),
                Some(json!({ "threepids": [{ "medium": "email", "address": email }] })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        user
    }

    async fn whoami(&self, user: &User) -> (StatusCode, Value) {
        self.s.get("/account/whoami", &user.token).await
    }

    async fn set_expiry(&self, as_user: &User, body: Value) -> (StatusCode, Value) {
        self.s
            .request(
                Method::POST,
                &format!("{BASE}/admin"),
                Some(&as_user.token),
                Some(body),
            )
            .await
    }

    async fn send_mail(&self, user: &User) -> (StatusCode, Value) {
        self.s
            .request(
                Method::POST,
                &format!("{BASE}/send_mail"),
                Some(&user.token),
                None,
            )
            .await
    }

    /// `GET /renew?token=…`, with the user's access token if given: status and HTML.
    async fn renew(&self, token: Option<&str>, user: Option<&User>) -> (StatusCode, String) {
        let url = match token {
            Some(t) => format!("{}{BASE}/renew?token={t}", self.s.base),
            None => format!("{}{BASE}/renew", self.s.base),
        };
        let mut request = self.s.http.get(url);
        if let Some(user) = user {
            request = request.bearer_auth(&user.token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "an HTML page"
        );
        (status, response.text().await.unwrap())
    }

    /// The mails received so far, raw: the link must be whole in them.
    fn mails(&self) -> Vec<(Vec<String>, String)> {
        self.sink
            .mails()
            .into_iter()
            .map(|m| (m.to, m.data))
            .collect()
    }

    /// Waits (up to 10 s) for `n` mails in all.
    async fn wait_for_mails(&self, n: usize) -> Vec<(Vec<String>, String)> {
        for _ in 0..200 {
            if self.mails().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.mails()
    }
}

fn assert_expired(response: (StatusCode, Value)) {
    assert_eq!(
        response,
        (
            StatusCode::FORBIDDEN,
            json!({ "errcode": "ORG_MATRIX_EXPIRED_ACCOUNT", "error": "User account has expired" })
        )
    );
}

/// The renewal link's token in a mail.
fn link_token(mail: &str) -> String {
    let prefix = "https://hs.test/_synapse/client/email_account_validity/renew?token=";
    let start = mail
        .find(prefix)
        .unwrap_or_else(|| panic!("a renewal link in {mail}"))
        + prefix.len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn an_account_expires_after_the_period_and_an_admin_can_renew_it() {
    let t = start("      period: 6w\n      renew_at: 1w\n").await;
    let alice = t.s.register("alice").await;
    assert_eq!(t.whoami(&alice).await.0, StatusCode::OK);

    let past = now_ms() - 1000;
    let (status, body) = t
        .set_expiry(
            &t.admin,
            json!({ "user_id": alice.user_id, "expiration_ts": past }),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "expiration_ts": past }))
    );
    assert_expired(t.whoami(&alice).await);
    // The token stays valid: logging out still works for an expired account.

    let (status, body) = t
        .set_expiry(&t.admin, json!({ "user_id": alice.user_id }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let renewed_to = body["expiration_ts"].as_u64().unwrap();
    let six_weeks = 6 * 7 * 86_400_000;
    assert!(
        renewed_to >= past + six_weeks && renewed_to <= now_ms() + six_weeks,
        "{body}"
    );
    assert_eq!(t.whoami(&alice).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_new_account_expires_one_period_after_registration() {
    let t = start("      period: 1s\n      renew_at: 1w\n").await;
    let alice = t.s.register("alice").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_expired(t.whoami(&alice).await);
}

#[tokio::test]
async fn a_renewal_link_goes_by_mail_and_renews_once() {
    let t = start("      period: 6w\n      renew_at: 1w\n").await;
    let alice = t.user_with_email("alice", "alice@example.org").await;
    t.set_expiry(
        &t.admin,
        json!({ "user_id": alice.user_id, "expiration_ts": now_ms() - 1 }),
    )
    .await;
    assert_expired(t.whoami(&alice).await);

    // An expired user may still ask for the mail.
    assert_eq!(t.send_mail(&alice).await, (StatusCode::OK, json!({})));
    let mails = t.mails();
    assert_eq!(mails.len(), 1);
    let (to, mail) = &mails[0];
    assert_eq!(to, &["<alice@example.org>"]);
    assert!(
        mail.contains("Subject: Renew your Axon Test account"),
        "{mail}"
    );
    assert!(mail.contains("Hello alice,"), "{mail}");
    let token = link_token(mail);
    assert_eq!(token.len(), 32, "{token}");
    assert!(token.chars().all(|c| c.is_ascii_alphabetic()));

    let (status, page) = t.renew(Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Your account has been successfully renewed"),
        "{page}"
    );
    assert_eq!(t.whoami(&alice).await.0, StatusCode::OK);

    let (status, page) = t.renew(Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Your account is valid until"), "{page}");
    assert!(!page.contains("successfully renewed"));

    let (status, page) = t
        .renew(Some("NotATokenAnyoneWasSentAtAllXXXXX"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Invalid renewal token"), "{page}");
    assert_eq!(t.renew(None, None).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_new_mail_replaces_the_previous_link() {
    let t = start("      period: 6w\n      renew_at: 1w\n").await;
    let alice = t.user_with_email("alice", "alice@example.org").await;
    t.send_mail(&alice).await;
    t.send_mail(&alice).await;
    let mails = t.mails();
    let (first, second) = (link_token(&mails[0].1), link_token(&mails[1].1));
    assert_ne!(first, second);
    assert_eq!(t.renew(Some(&first), None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(t.renew(Some(&second), None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn with_send_links_false_the_mail_carries_a_code_that_needs_the_users_login() {
    let t = start("      period: 6w\n      renew_at: 1w\n      send_links: false\n      renew_email_subject: \"%(app)s: your code\"\n").await;
    let alice = t.user_with_email("alice", "alice@example.org").await;
    let bob = t.s.register("bob").await;
    t.set_expiry(
        &t.admin,
        json!({ "user_id": alice.user_id, "expiration_ts": now_ms() - 1 }),
    )
    .await;
    assert_eq!(t.send_mail(&alice).await.0, StatusCode::OK);
    let (_, mail) = &t.mails()[0];
    assert!(mail.contains("Subject: Axon Test: your code"), "{mail}");
    assert!(!mail.contains("/renew?token="), "no link: {mail}");
    let marker = "enter the following code in your client:";
    let after = &mail[mail.find(marker).unwrap_or_else(|| panic!("{mail}")) + marker.len()..];
    let code: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    assert_eq!(code.len(), 8, "{mail}");

    assert_eq!(
        t.renew(Some(&code), None).await.0,
        StatusCode::BAD_REQUEST,
        "not without logging in"
    );
    assert_eq!(
        t.renew(Some(&code), Some(&bob)).await.0,
        StatusCode::BAD_REQUEST,
        "not as someone else"
    );
    let (status, page) = t.renew(Some(&code), Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("successfully renewed"));
    assert_eq!(t.whoami(&alice).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_user_without_an_email_gets_no_mail_and_no_error() {
    let t = start("      period: 6w\n      renew_at: 1w\n").await;
    let alice = t.s.register("alice").await;
    assert_eq!(t.send_mail(&alice).await, (StatusCode::OK, json!({})));
    assert!(t.mails().is_empty());
}

#[tokio::test]
async fn the_renewal_mail_goes_out_once_to_users_expiring_within_renew_at() {
    let mut t = start("      period: 6w\n      renew_at: 1w\n").await;
    let soon = t.user_with_email("soon", "soon@example.org").await;
    let later = t.user_with_email("later", "later@example.org").await;
    let quiet = t.user_with_email("quiet", "quiet@example.org").await;
    let in_a_day = now_ms() + 86_400_000;
    t.set_expiry(
        &t.admin,
        json!({ "user_id": soon.user_id, "expiration_ts": in_a_day }),
    )
    .await;
    t.set_expiry(
        &t.admin,
        json!({ "user_id": quiet.user_id, "expiration_ts": in_a_day, "enable_renewal_emails": false }),
    )
    .await;
    let _ = later; // expires in 6 weeks: not yet

    // The job runs when the server starts, then every 30 minutes.
    t.s.restart().await;
    t.wait_for_mails(1).await;
    // Time for a wrong second mail to arrive, if one were sent.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mails = t.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].0, ["<soon@example.org>"]);

    t.s.restart().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(t.mails().len(), 1, "not sent twice");
}

#[tokio::test]
async fn users_registered_before_the_module_was_enabled_are_given_an_expiry() {
    let sink = SmtpSink::start().await;
    let mut s = TestServer::start().await;
    let alice = s.register("alice").await;
    s.restart_with(&config(&sink, "      period: 1\n      renew_at: 1w\n"))
        .await;
    // A period of 1 ms: back-filled with an expiry already past.
    assert_expired(s.get("/account/whoami", &alice.token).await);

    let mut s2 = TestServer::start().await;
    let bob = s2.register("bob").await;
    s2.restart_with(&config(&sink, "      period: 6w\n      renew_at: 1w\n"))
        .await;
    assert_eq!(
        s2.get("/account/whoami", &bob.token).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_admin_endpoint_is_for_server_admins_and_checks_its_body() {
    let t = start("      period: 6w\n      renew_at: 1w\n").await;
    let alice = t.s.register("alice").await;
    let refused = t
        .set_expiry(&alice, json!({ "user_id": alice.user_id }))
        .await;
    assert_error(&refused, 403, "M_FORBIDDEN");
    assert_eq!(refused.1["error"], "You are not a server admin");

    let missing = t.set_expiry(&t.admin, json!({ "expiration_ts": 5 })).await;
    assert_error(&missing, 400, "M_UNKNOWN");
    assert_eq!(
        missing.1["error"],
        "Missing property 'user_id' in the request body"
    );
    assert_error(
        &t.set_expiry(&t.admin, json!({ "user_id": "@nobody:test.local" }))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &t.set_expiry(
            &t.admin,
            json!({ "user_id": alice.user_id, "expiration_ts": "soon" }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    let not_json =
        t.s.raw(
            Method::POST,
            &format!("{BASE}/admin"),
            Some(&t.admin.token),
            "{nope",
        )
        .await;
    assert_error(&not_json, 400, "M_NOT_JSON");
    assert_error(
        &t.s.request(Method::POST, &format!("{BASE}/send_mail"), None, None)
            .await,
        401,
        "M_MISSING_TOKEN",
    );
}

#[test]
fn config_errors_name_the_key_at_fault() {
    let module = |config: &str| {
        modules_load_error(&format!(
            "modules:\n  - module: email_account_validity::EmailAccountValidity\n    config:\n{config}"
        ))
    };
    let missing = module("      renew_at: 1w\n");
    assert!(missing.contains("missing field `period`"), "{missing}");
    let missing = module("      period: 6w\n");
    assert!(missing.contains("missing field `renew_at`"), "{missing}");
    let bad = module("      period: 6 weeks\n      renew_at: 1w\n");
    assert!(
        bad.contains("`modules[0].config.period`") && bad.contains("`6 weeks` is not a duration"),
        "{bad}"
    );
    let zero = module("      period: 0\n      renew_at: 1w\n");
    assert!(zero.contains("`period` must be longer than 0"), "{zero}");
    let unknown = module("      period: 6w\n      renew_at: 1w\n      send_link: false\n");
    assert!(unknown.contains("unknown field `send_link`"), "{unknown}");
}
