//! Port of [synapse-email-account-validity]: accounts expire `period` after
//! registration or renewal; `renew_at` before that, a mail with a renewal
//! link (or code) goes to the user's email addresses. See this crate's README.
//!
//! [synapse-email-account-validity]: https://github.com/matrix-org/synapse-email-account-validity

mod pages;
mod store;

use axon::config::ConfigDuration;
use axon::prelude::*;
use axum::extract::{Query, Request};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use store::{Store, TokenLookup};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How long an account stays valid without renewal. Required.
    pub period: ConfigDuration,
    /// How long before expiry the renewal mail goes out. Required.
    pub renew_at: ConfigDuration,
    /// Links (32 letters, usable without logging in) or 8-digit codes
    /// (entered by the logged-in user).
    #[serde(default = "yes")]
    pub send_links: bool,
    /// `%(app)s` stands for `email.app_name`.
    #[serde(default)]
    pub renew_email_subject: Option<String>,
}

fn yes() -> bool {
    true
}

/// How often the renewal mails go out, as in the original.
const MAIL_INTERVAL: Duration = Duration::from_secs(30 * 60);

const RESOURCE: &str = "/_synapse/client/email_account_validity";

/// Everything the callbacks and the web resource share.
struct Inner {
    config: Config,
    api: ModuleApi,
    store: Store,
}

pub struct EmailAccountValidity {
    inner: Arc<Inner>,
}

fn error(status: u16, errcode: ErrCode, message: impl Into<String>) -> Response {
    ModuleError::new(status, errcode, message).into_response()
}

impl Inner {
    fn now(&self) -> u64 {
        self.api.current_time_msec()
    }

    fn subject(&self) -> String {
        let subject = self
            .config
            .renew_email_subject
            .as_deref()
            .unwrap_or("Renew your %(app)s account");
        match self.api.email_app_name() {
            Some(app) => subject.replace("%(app)s", &app),
            None => subject.to_string(),
        }
    }

    /// A new token for the user: 32 letters unique in the table, or 8 digits.
    async fn new_token(&self, user: &UserId) -> Result<String, ModuleError> {
        use rand::distributions::{Distribution, Uniform};
        use rand::Rng;
        let long = self.config.send_links;
        for _ in 0..5 {
            let token: String = if long {
                const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
                let pick = Uniform::from(0..LETTERS.len());
                let mut rng = rand::thread_rng();
                (0..32)
                    .map(|_| LETTERS[pick.sample(&mut rng)] as char)
                    .collect()
            } else {
                format!("{:08}", rand::thread_rng().gen_range(0..100_000_000u32))
            };
            if self.store.set_token(user.as_str(), &token, long).await? {
                return Ok(token);
            }
        }
        Err(ModuleError::internal(
            "Couldn't generate a unique string as refresh string.",
        ))
    }

    /// Mails a renewal link or code to each of the user's email addresses,
    /// and records that the mail went out; nothing if they have none.
    async fn send_renewal_mail(
        &self,
        user: &UserId,
        expiration_ts: u64,
    ) -> Result<(), ModuleError> {
        let addresses: Vec<String> = self
            .api
            .get_threepids_for_user(user)
            .await?
            .into_iter()
            .filter(|t| t.medium == "email")
            .map(|t| t.address)
            .collect();
        if addresses.is_empty() {
            return Ok(());
        }
        let display_name = match self.api.get_profile(user).await {
            Ok(profile) => profile.display_name.unwrap_or_else(|| user.to_string()),
            Err(_) => user.to_string(),
        };
        let token = self.new_token(user).await?;
        let link = format!(
            "{}_synapse/client/email_account_validity/renew?token={token}",
            self.api.public_baseurl()
        );
        let renewal = if self.config.send_links {
            pages::Renewal::Link(&link)
        } else {
            pages::Renewal::Code(&token)
        };
        let (html, text) = pages::renewal_mail(&display_name, expiration_ts, renewal);
        let subject = self.subject();
        for address in &addresses {
            self.api.send_mail(address, &subject, &html, &text).await?;
        }
        self.store.set_email_sent(user.as_str()).await
    }

    /// The periodic job: mail everyone expiring within `renew_at` who has
    /// not had the mail yet.
    async fn send_due_mails(&self) {
        let due = match self
            .store
            .expiring_soon(self.config.renew_at.as_millis())
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!("cannot list the accounts to remind: {e}");
                return;
            }
        };
        for (user, expiration_ts) in due {
            let Ok(user) = OwnedUserId::try_from(user.as_str()) else {
                continue;
            };
            if let Err(e) = self.send_renewal_mail(&user, expiration_ts).await {
                tracing::warn!("cannot send {user} their renewal mail: {e}");
            }
        }
    }

    // ---- the web resource ----

    /// `GET /renew?token=…`: renews the account the token was sent for.
    async fn renew(&self, query: HashMap<String, String>, request: Request) -> Response {
        let Some(token) = query.get("token") else {
            return (StatusCode::BAD_REQUEST, Html(pages::missing_token())).into_response();
        };
        let (parts, _) = request.into_parts();
        // Logging in is optional, but needed for a short code.
        let user = self.api.get_user_by_req(&parts, true).await.ok();
        let lookup = self
            .store
            .lookup_token(token, user.as_ref().map(|u| u.user_id.as_str()))
            .await;
        match lookup {
            Ok(TokenLookup::Fresh { user_id }) => {
                let expiration_ts = self.now() + self.config.period.as_millis();
                match self
                    .store
                    .set_validity(&user_id, expiration_ts, false, true)
                    .await
                {
                    Ok(()) => Html(pages::renewed(expiration_ts)).into_response(),
                    Err(e) => e.into_response(),
                }
            }
            Ok(TokenLookup::Used { expiration_ts }) => {
                Html(pages::previously_renewed(expiration_ts)).into_response()
            }
            Ok(TokenLookup::Invalid) => {
                (StatusCode::BAD_REQUEST, Html(pages::invalid_token())).into_response()
            }
            Err(e) => e.into_response(),
        }
    }

    /// `POST /send_mail`: sends the logged-in user (expired or not) their mail now.
    async fn send_mail_now(&self, request: Request) -> Response {
        let (parts, _) = request.into_parts();
        let user = match self.api.get_user_by_req(&parts, true).await {
            Ok(user) => user.user_id,
            Err(e) => return e.into_response(),
        };
        let expiration_ts = match self.store.expiration_ts(user.as_str()).await {
            Ok(Some(ts)) => ts,
            Ok(None) => {
                return error(
                    400,
                    ErrCode::Unknown,
                    format!("User has no expiration time: {user}"),
                )
            }
            Err(e) => return e.into_response(),
        };
        match self.send_renewal_mail(&user, expiration_ts).await {
            Ok(()) => Json(json!({})).into_response(),
            Err(e) => e.into_response(),
        }
    }

    /// `POST /admin`: a server admin sets a user's expiry.
    async fn admin(&self, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let requester = match self.api.get_user_by_req(&parts, false).await {
            Ok(user) => user,
            Err(e) => return e.into_response(),
        };
        if !requester.is_admin {
            return error(403, ErrCode::Forbidden, "You are not a server admin");
        }
        let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
            return error(413, ErrCode::TooLarge, "Request body too large");
        };
        let body: Value = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Value::Object(map),
            Ok(_) => return error(400, ErrCode::BadJson, "Content must be a JSON object."),
            Err(_) => return error(400, ErrCode::NotJson, "Content not JSON."),
        };
        let Some(user_id) = body.get("user_id") else {
            return error(
                400,
                ErrCode::Unknown,
                "Missing property 'user_id' in the request body",
            );
        };
        let Some(user) = user_id.as_str().and_then(|u| OwnedUserId::try_from(u).ok()) else {
            return error(400, ErrCode::InvalidParam, "'user_id' must be a user ID");
        };
        let expiration_ts = match body.get("expiration_ts") {
            None | Some(Value::Null) => self.now() + self.config.period.as_millis(),
            Some(ts) => match ts.as_u64() {
                Some(ts) => ts,
                None => {
                    return error(
                        400,
                        ErrCode::InvalidParam,
                        "'expiration_ts' must be a timestamp in milliseconds",
                    )
                }
            },
        };
        let enable_mails = match body.get("enable_renewal_emails") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return error(
                    400,
                    ErrCode::InvalidParam,
                    "'enable_renewal_emails' must be a boolean",
                )
            }
        };
        match self.api.check_user_exists(&user).await {
            Ok(Some(_)) => {}
            Ok(None) => return error(404, ErrCode::NotFound, "No matching user found"),
            Err(e) => return e.into_response(),
        }
        match self
            .store
            .set_validity(user.as_str(), expiration_ts, !enable_mails, false)
            .await
        {
            Ok(()) => Json(json!({ "expiration_ts": expiration_ts })).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// The web resource under `/_synapse/client/email_account_validity`.
fn resource(inner: &Arc<Inner>) -> Router {
    let (renew, send_mail, admin) = (inner.clone(), inner.clone(), inner.clone());
    Router::new()
        .route(
            "/renew",
            get(
                move |Query(query): Query<HashMap<String, String>>, request: Request| async move {
                    renew.renew(query, request).await
                },
            ),
        )
        .route(
            "/send_mail",
            post(move |request: Request| async move { send_mail.send_mail_now(request).await }),
        )
        .route(
            "/admin",
            post(move |request: Request| async move { admin.admin(request).await }),
        )
}

/// Accounts expire unless renewed through a link or code sent by mail.
#[module]
impl EmailAccountValidity {
    fn new(config: Config, api: &ModuleApi) -> Result<Self, ConfigError> {
        if config.period.as_millis() == 0 {
            return Err(ConfigError::new(
                "`period` must be longer than 0, such as `6w`",
            ));
        }
        let inner = Arc::new(Inner {
            store: Store::new(api),
            config,
            api: api.clone(),
        });
        api.register_web_resource(RESOURCE, resource(&inner));
        Ok(EmailAccountValidity { inner })
    }

    /// Users registered before the module was enabled get an expiry before
    /// the server listens; then the renewal mails go out every 30 minutes,
    /// the first time right away.
    async fn start(&self) -> Result<(), ModuleError> {
        if self.inner.api.email_app_name().is_none() {
            tracing::warn!(
                "email_account_validity: no `email:` section in the config, so no renewal mail can be sent"
            );
        }
        let added = self
            .inner
            .store
            .back_fill(self.inner.config.period.as_millis())
            .await?;
        if added > 0 {
            tracing::info!("email_account_validity: {added} existing users given an expiry");
        }
        let inner = self.inner.clone();
        self.inner.api.run_in_background(async move {
            inner.send_due_mails().await;
        });
        let inner = self.inner.clone();
        self.inner
            .api
            .looping_background_call(MAIL_INTERVAL, move || {
                let inner = inner.clone();
                async move { inner.send_due_mails().await }
            });
        Ok(())
    }

    #[callback(account_validity)]
    async fn is_user_expired(&self, user: &UserId) -> Option<bool> {
        match self.inner.store.expiration_ts(user.as_str()).await {
            Ok(expiry) => expiry.map(|ts| self.inner.now() >= ts),
            Err(e) => {
                tracing::warn!("cannot read {user}'s expiry: {e}");
                None
            }
        }
    }

    #[callback(account_validity)]
    async fn on_user_registration(&self, user: &UserId) {
        let expiry = self.inner.now() + self.inner.config.period.as_millis();
        if let Err(e) = self.inner.store.register(user.as_str(), expiry).await {
            tracing::warn!("cannot set {user}'s expiry: {e}");
        }
    }
}
