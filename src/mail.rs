//! Outgoing mail over SMTP (`SPENZA_SMTP_URL`, `SPENZA_SMTP_FROM`): invitations and issue
//! notifications. The URL says the host, the port, the TLS mode and the credentials: `smtps://`
//! for TLS from the start, `smtp://` for STARTTLS when the server offers it and plain text
//! otherwise (`?tls=required` refuses a server that does not offer it).

use std::time::Duration;

use anyhow::Context;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain::SecretUrl;

/// The longest a message takes to hand to the SMTP server.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends mail through one SMTP server, from one sender.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for the server at `url`, sending as `from` (`Spenza <relay@example.com>`).
    pub fn new(url: &SecretUrl, from: &str) -> anyhow::Result<Self> {
        let mut parsed = url::Url::parse(url.expose())
            .with_context(|| format!("SPENZA_SMTP_URL {url:?} is not a URL"))?;
        if parsed.scheme() == "smtp" && !parsed.query_pairs().any(|(key, _)| key == "tls") {
            parsed.query_pairs_mut().append_pair("tls", "opportunistic");
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(parsed.as_str())
            .with_context(|| format!("SPENZA_SMTP_URL {url:?} is not an SMTP URL"))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from = from
            .parse()
            .with_context(|| format!("SPENZA_SMTP_FROM {from:?} is not an address"))?;
        Ok(Mailer { transport, from })
    }

    /// Sends a plain-text message to `to`.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> anyhow::Result<()> {
        self.send_with_id(to, subject, body, None).await
    }

    /// Sends a plain-text message to `to`, its `Message-ID` made from `id` when given (the
    /// same on every try of one message), else a fresh one.
    pub async fn send_with_id(
        &self,
        to: &str,
        subject: &str,
        body: String,
        id: Option<&str>,
    ) -> anyhow::Result<()> {
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .message_id(id.map(|id| format!("<{id}@{domain}>")))
            .from(self.from.clone())
            .to(to.parse().context("a recipient's address")?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("building a message")?;
        tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message))
            .await
            .context("the SMTP server did not answer in time")?
            .context("the SMTP server refused the message")?;
        Ok(())
    }
}
