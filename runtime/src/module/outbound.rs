//! Reaching out: an HTTP client for modules (an antispam service, an
//! identity check) and mail through the configured SMTP server.

use super::api::ModuleApi;
use crate::error::{ErrCode, ModuleError};
use std::time::Duration;

/// Outbound HTTP for modules, with a timeout on every request (default 30 s).
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
}

fn failed(url: &str, e: reqwest::Error) -> ModuleError {
    let status = if e.is_timeout() { 504 } else { 502 };
    ModuleError::new(
        status,
        ErrCode::Unknown,
        format!("request to {url} failed: {e}"),
    )
}

impl HttpClient {
    fn new(timeout: Duration) -> HttpClient {
        let client = reqwest::Client::builder()
            .user_agent(concat!("Axon/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        HttpClient { client, timeout }
    }

    /// The same client with another timeout per request.
    pub fn with_timeout(&self, timeout: Duration) -> HttpClient {
        HttpClient {
            client: self.client.clone(),
            timeout,
        }
    }

    /// GET `url` and parse the JSON answer; a non-2xx status is an error.
    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, ModuleError> {
        self.send_json(url, self.client.get(url)).await
    }

    /// POST `body` as JSON to `url` and parse the JSON answer.
    pub async fn post_json_get_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ModuleError> {
        self.send_json(url, self.client.post(url).json(body)).await
    }

    async fn send_json(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, ModuleError> {
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| failed(url, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ModuleError::new(
                502,
                ErrCode::Unknown,
                format!("request to {url} answered {status}"),
            ));
        }
        response.json().await.map_err(|e| failed(url, e))
    }

    /// The underlying reqwest client, for anything else.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl ModuleApi {
    /// An HTTP client with a 30 s timeout per request.
    ///
    /// ```no_run
    /// # async fn demo(api: &axon::module::ModuleApi) -> Result<(), axon::ModuleError> {
    /// let verdict = api
    ///     .http_client()
    ///     .with_timeout(std::time::Duration::from_secs(2))
    ///     .post_json_get_json("http://antispam.internal/check", &serde_json::json!({ "user": "@a:b" }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn http_client(&self) -> HttpClient {
        HttpClient::new(Duration::from_secs(30))
    }

    /// The `email.app_name` of the config, if mail is configured.
    pub fn email_app_name(&self) -> Option<String> {
        let app = self.shared().app.get()?.upgrade()?;
        app.config.email.as_ref().map(|e| e.app_name.clone())
    }

    /// Sends a mail with an HTML and a plain-text part through the `email:`
    /// SMTP server (Synapse's `send_mail`).
    pub async fn send_mail(
        &self,
        recipient: &str,
        subject: &str,
        html: &str,
        text: &str,
    ) -> Result<(), ModuleError> {
        use lettre::message::header::ContentType;
        use lettre::message::{Mailbox, MultiPart};
        use lettre::transport::smtp::client::{Tls, TlsParameters};
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let app = self
            .shared()
            .app
            .get()
            .and_then(|weak| weak.upgrade())
            .ok_or_else(|| ModuleError::internal("the server is not running"))?;
        let config = app.config.email.clone().ok_or_else(|| {
            ModuleError::internal("mail is not configured: add an `email:` section to the config")
        })?;
        let invalid = |what: &str, e: String| {
            ModuleError::new(400, ErrCode::InvalidParam, format!("invalid {what}: {e}"))
        };
        let from: Mailbox = config
            .notif_from
            .replace("%(app)s", &config.app_name)
            .parse()
            .map_err(|e: lettre::address::AddressError| {
                invalid("email.notif_from", e.to_string())
            })?;
        let to: Mailbox = recipient
            .parse()
            .map_err(|e: lettre::address::AddressError| invalid("recipient", e.to_string()))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(readable_part(ContentType::TEXT_PLAIN, text))
                    .singlepart(readable_part(ContentType::TEXT_HTML, html)),
            )
            .map_err(|e| ModuleError::internal(format!("cannot build the mail: {e}")))?;
        let tls = if config.force_tls || config.require_transport_security || config.enable_tls {
            let parameters = TlsParameters::new(config.smtp_host.clone()).map_err(|e| {
                ModuleError::internal(format!("TLS set-up for {} failed: {e}", config.smtp_host))
            })?;
            if config.force_tls {
                Tls::Wrapper(parameters)
            } else if config.require_transport_security {
                Tls::Required(parameters)
            } else {
                Tls::Opportunistic(parameters)
            }
        } else {
            Tls::None
        };
        let mut transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
                .port(config.smtp_port)
                .tls(tls)
                .timeout(Some(Duration::from_secs(30)));
        if let (Some(user), Some(pass)) = (config.smtp_user.clone(), config.smtp_pass.clone()) {
            transport = transport.credentials(
                lettre::transport::smtp::authentication::Credentials::new(user, pass),
            );
        }
        transport
            .build()
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| {
                ModuleError::new(
                    502,
                    ErrCode::Unknown,
                    format!("sending mail to {recipient} failed: {e}"),
                )
            })
    }
}

/// A mail part sent as it is written (7bit) when it is ASCII with lines
/// SMTP accepts (998 characters), so links stay whole in the raw message;
/// lettre would quote-print any line from 76 characters. Other text gets
/// lettre's choice (quoted-printable or base64).
fn readable_part(
    content_type: lettre::message::header::ContentType,
    body: &str,
) -> lettre::message::SinglePart {
    use lettre::message::header::ContentTransferEncoding;
    use lettre::message::{Body, SinglePart};
    let readable = body.is_ascii() && !body.contains('\0') && body.lines().all(|l| l.len() <= 998);
    let body = if readable {
        let crlf = body.replace("\r\n", "\n").replace('\n', "\r\n");
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
    } else {
        Body::new(body.to_string())
    };
    SinglePart::builder().header(content_type).body(body)
}
