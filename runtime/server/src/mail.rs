//! Mail through the `email:` SMTP server (Synapse's keys), for modules'
//! `send_mail`.

use crate::config::EmailConfig;
use axon::{ErrCode, ModuleError};
use std::time::Duration;

/// Sends a mail with an HTML and a plain-text part.
pub async fn send_mail(
    config: &EmailConfig,
    recipient: &str,
    subject: &str,
    html: &str,
    text: &str,
) -> Result<(), ModuleError> {
    use lettre::message::header::ContentType;
    use lettre::message::{Mailbox, MultiPart};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let invalid = |what: &str, e: String| {
        ModuleError::new(400, ErrCode::InvalidParam, format!("invalid {what}: {e}"))
    };
    let from: Mailbox = config
        .notif_from
        .replace("%(app)s", &config.app_name)
        .parse()
        .map_err(|e: lettre::address::AddressError| invalid("email.notif_from", e.to_string()))?;
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
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
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
