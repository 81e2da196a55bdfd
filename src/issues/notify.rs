//! Telling channels about issues: the [`Notifier`] every process runs sends what the outbox
//! holds (claimed with a lease, so two processes never send one message at once, and a process
//! that dies mid-send leaves it to another once the lease runs out), and the [`Messenger`]
//! writes and sends one message by email, to Slack, or as a signed webhook.
//!
//! A message keeps its id on every try: it is the webhook's `webhook-id` and the email's
//! `Message-ID`, so a receiver that gets it twice (its sender died after sending, before
//! writing down that it had) can tell.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use serde::Serialize;
use slog::{Logger, info, warn};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::db::models::issue::Issue;
use crate::db::models::notification::{self, Channel, Notification};
use crate::db::schema::{issues, notification_channels, sources, subscriptions};
use crate::db::{Database, DbError};
use crate::domain::{ChannelKind, IssueKind, SigningSecret};
use crate::mail::Mailer;
use crate::metrics::{self, NotificationLabels};
use crate::service::issues::IssueOut;
use crate::signing::outgoing;

/// The longest one message may take to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed message is held: its send (a batch is sent at once), and room to spare.
const LEASE: Duration = Duration::from_secs(20);
/// How often each process looks for messages that are due.
const POLL: Duration = Duration::from_secs(1);
/// Messages claimed at once.
const BATCH: i64 = 16;
/// The longest wait between two tries of a message that could not be sent.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// What a webhook channel receives: the Standard Webhooks shape, `type`, `timestamp` and
/// `data`, signed with the channel's secret like deliveries are.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPayload {
    /// `issue.opened`, `issue.reopened`, `issue.resolved`, `subscription.disabled` or
    /// `subscription.enabled`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it was sent (RFC 3339).
    pub timestamp: chrono::DateTime<Utc>,
    pub data: NotificationData,
}

/// The issue a notification is about, as it is when sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationData {
    pub issue: IssueOut,
    /// How many transitions this message tells of: more than one when a recurring issue's
    /// transitions were held back (at most one message per issue per quiet period) and told
    /// together.
    pub transitions: i32,
    /// The issue's page in the dashboard.
    pub url: String,
    /// Whether this is a test message (**Send test**), about no real issue.
    pub test: bool,
}

/// The names a message about an issue shows.
struct About {
    issue: Issue,
    subscription: Option<String>,
    source: String,
}

/// Writes and sends messages to channels.
pub struct Messenger {
    http: reqwest::Client,
    mailer: Option<Arc<Mailer>>,
    public_base: String,
}

/// Why a message did not go.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotSent(pub String);

impl Messenger {
    /// Posts with `http` (the deliveries' client: the SSRF guard, no redirects, no proxy), mails
    /// through `mailer`.
    pub fn new(http: reqwest::Client, mailer: Option<Arc<Mailer>>, public_base: String) -> Self {
        Messenger {
            http,
            mailer,
            public_base,
        }
    }

    /// The page of an issue.
    pub fn issue_url(&self, issue: &Issue) -> String {
        format!("{}/issues/{}", self.public_base, issue.id)
    }

    /// Sends one message about `issue` to `channel`, with id `id`.
    async fn send(
        &self,
        channel: &Channel,
        id: &str,
        event_type: &str,
        about: &About,
        transitions: i32,
        test: bool,
    ) -> Result<(), NotSent> {
        let url = self.issue_url(&about.issue);
        match channel.kind {
            ChannelKind::Email => {
                let mailer = self.mailer.as_ref().ok_or_else(|| {
                    NotSent("no SMTP server is set (SPENZA_SMTP_URL): email cannot be sent".into())
                })?;
                let (subject, body) = email(event_type, about, transitions, &url, test);
                mailer
                    .send_with_id(&channel.target, &subject, body, Some(id))
                    .await
                    .map_err(|error| NotSent(format!("{error:#}")))
            }
            ChannelKind::Slack => {
                let message = slack(event_type, about, transitions, &url, test);
                self.post(
                    &channel.target,
                    &serde_json::to_vec(&message).unwrap_or_default(),
                    &[],
                )
                .await
            }
            ChannelKind::Webhook => {
                let payload = NotificationPayload {
                    event_type: event_type.to_owned(),
                    timestamp: Utc::now(),
                    data: NotificationData {
                        issue: IssueOut::from(about.issue.clone()),
                        transitions,
                        url,
                        test,
                    },
                };
                let body = serde_json::to_vec(&payload).unwrap_or_default();
                let secret =
                    SigningSecret::from_stored(channel.signing_secret.clone().unwrap_or_default());
                let timestamp = payload.timestamp.timestamp();
                let signatures = outgoing::sign(id, timestamp, &body, &[&secret])
                    .map_err(|error| NotSent(error.to_string()))?;
                self.post(
                    &channel.target,
                    &body,
                    &[
                        ("webhook-id", id.to_owned()),
                        ("webhook-timestamp", timestamp.to_string()),
                        ("webhook-signature", signatures.webhook_signature),
                    ],
                )
                .await
            }
        }
    }

    async fn post(
        &self,
        url: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> Result<(), NotSent> {
        let mut request = self
            .http
            .post(url)
            .timeout(SEND_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|error| {
            NotSent(if error.is_timeout() {
                format!("no answer within {SEND_TIMEOUT:?}")
            } else {
                format!("request failed: {}", root_cause(&error))
            })
        })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(NotSent(format!("HTTP {}", response.status())))
        }
    }

    /// Sends a test message to `channel`: a made-up issue of the first kind it takes, so that
    /// its owner sees what a real one looks like.
    pub async fn send_test(&self, channel: &Channel, workspace_name: &str) -> Result<(), NotSent> {
        let now = Utc::now();
        let kind = channel
            .issue_kinds()
            .into_iter()
            .next()
            .unwrap_or(IssueKind::DeliveriesFailed);
        let issue = Issue {
            id: crate::domain::IssueId(uuid::Uuid::now_v7()),
            workspace_id: channel.workspace_id,
            kind,
            subscription_id: None,
            source_id: crate::domain::SourceId(uuid::Uuid::nil()),
            cause: "HTTP 500 from api.example.com".into(),
            state: crate::domain::IssueState::Open,
            count: 1,
            first_seen: now,
            last_seen: now,
            opened_at: now,
            reopened: 0,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolved_by: None,
            examples: Vec::new(),
            detail: "This is a test message from Spenza: nothing is wrong.".into(),
            transition: 1,
        };
        let about = About {
            issue,
            subscription: Some("(test)".into()),
            source: format!("{workspace_name} (test)"),
        };
        let id = uuid::Uuid::new_v4().to_string();
        self.send(channel, &id, "issue.opened", &about, 1, true)
            .await
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// What happened, in words, for subjects and headlines.
fn headline(event_type: &str, about: &About) -> String {
    let issue = &about.issue;
    let what = match event_type {
        "issue.opened" => "opened",
        "issue.reopened" => "reopened",
        "issue.resolved" => "resolved",
        "subscription.disabled" => "subscription disabled",
        "subscription.enabled" => "subscription enabled",
        other => other,
    };
    let whose = match &about.subscription {
        Some(subscription) => format!("{subscription} (source {})", about.source),
        None => format!("source {}", about.source),
    };
    let cause = if issue.cause.is_empty() {
        String::new()
    } else {
        format!(": {}", issue.cause)
    };
    format!("{}{cause}, {whose}: {what}", issue.kind.title())
}

/// The lines every message carries.
fn facts(about: &About, transitions: i32) -> Vec<String> {
    let issue = &about.issue;
    let mut lines = vec![
        format!("State: {}", issue.state),
        format!("Count: {}", issue.count),
        format!(
            "First seen: {}",
            issue
                .first_seen
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        format!(
            "Last seen: {}",
            issue
                .last_seen
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    ];
    if !issue.detail.is_empty() {
        lines.push(format!("Detail: {}", issue.detail));
    }
    if transitions > 1 {
        lines.push(format!(
            "This message tells of {transitions} changes since the last one (reopened {} times in all).",
            issue.reopened
        ));
    }
    lines
}

fn email(
    event_type: &str,
    about: &About,
    transitions: i32,
    url: &str,
    test: bool,
) -> (String, String) {
    let test_mark = if test { "[test] " } else { "" };
    let subject = format!("[Spenza] {test_mark}{}", headline(event_type, about));
    let mut body = headline(event_type, about);
    body.push_str("\n\n");
    for line in facts(about, transitions) {
        body.push_str(&line);
        body.push('\n');
    }
    body.push_str(&format!("\nSee it and act on it: {url}\n"));
    (subject, body)
}

/// Slack's incoming-webhook message: `text` (the notification's fallback) and blocks.
fn slack(
    event_type: &str,
    about: &About,
    transitions: i32,
    url: &str,
    test: bool,
) -> serde_json::Value {
    let test_mark = if test { "[test] " } else { "" };
    let headline = format!("{test_mark}{}", headline(event_type, about));
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    serde_json::json!({
        "text": format!("{} {url}", escape(&headline)),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("*<{url}|{}>*", escape(&headline))}
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": escape(&facts(about, transitions).join("\n"))}
            },
            {
                "type": "actions",
                "elements": [{
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open the issue"},
                    "url": url
                }]
            }
        ]
    })
}

/// Sends what the outbox holds, every second, until stopped.
pub struct Notifier {
    pub db: Database,
    pub messenger: Arc<Messenger>,
    pub log: Logger,
}

impl Notifier {
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self
                .db
                .run(async |conn| notification::claim_due(conn, BATCH, LEASE).await)
                .await
            {
                // At once, so that a batch takes one send's time at most, well within the lease,
                // and one slow channel does not hold back the others.
                Ok(claimed) => {
                    join_all(claimed.iter().map(|message| self.deliver(message))).await;
                }
                Err(error) => warn!(self.log, "claiming notifications failed"; "error" => %error),
            }
        }
    }

    /// Sends one claimed message and writes down how it went.
    async fn deliver(&self, message: &Notification) {
        let outcome = match self.load(message).await {
            Ok(Some((channel, about))) => {
                let sent = self
                    .messenger
                    .send(
                        &channel,
                        &message.id.to_string(),
                        &message.event_type,
                        &about,
                        message.transitions,
                        false,
                    )
                    .await;
                metrics::get()
                    .notifications
                    .get_or_create(&NotificationLabels {
                        channel: channel.kind.as_str(),
                        outcome: if sent.is_ok() { "sent" } else { "failed" },
                    })
                    .inc();
                sent
            }
            // Its channel or issue is gone, and the message with it.
            Ok(None) => return,
            Err(error) => Err(NotSent(error.to_string())),
        };
        let id = message.id;
        let written = match &outcome {
            Ok(()) => {
                info!(self.log, "notification sent";
                    "notification_id" => %id, "event_type" => &message.event_type,
                    "channel_id" => %message.channel_id, "issue_id" => %message.issue_id);
                self.db
                    .run(async |conn| notification::mark_sent(conn, id).await)
                    .await
            }
            Err(NotSent(error)) => {
                let wait = backoff(message.attempts);
                warn!(self.log, "a notification could not be sent; it is tried again later";
                    "notification_id" => %id, "channel_id" => %message.channel_id,
                    "attempts" => message.attempts, "retry_in" => ?wait, "error" => error);
                self.db
                    .run(async |conn| notification::retry_later(conn, id, error, wait).await)
                    .await
            }
        };
        if let Err(error) = written {
            warn!(self.log, "writing down a notification's outcome failed; its lease runs out and it is tried again";
                "notification_id" => %id, "error" => %error);
        }
    }

    async fn load(&self, message: &Notification) -> Result<Option<(Channel, About)>, DbError> {
        let (channel_id, issue_id) = (message.channel_id, message.issue_id);
        self.db
            .run(async |conn| {
                let Some(channel) = notification_channels::table
                    .filter(notification_channels::id.eq(channel_id))
                    .select(Channel::as_select())
                    .first(conn)
                    .await
                    .optional()?
                else {
                    return Ok(None);
                };
                let Some(issue) = issues::table
                    .filter(issues::id.eq(issue_id))
                    .select(Issue::as_select())
                    .first(conn)
                    .await
                    .optional()?
                else {
                    return Ok(None);
                };
                let subscription = match issue.subscription_id {
                    Some(id) => subscriptions::table
                        .filter(subscriptions::id.eq(id))
                        .select(subscriptions::name)
                        .first::<String>(conn)
                        .await
                        .optional()?,
                    None => None,
                };
                let source = sources::table
                    .filter(sources::id.eq(issue.source_id))
                    .select(sources::name)
                    .first::<String>(conn)
                    .await
                    .optional()?
                    .unwrap_or_default();
                Ok(Some((
                    channel,
                    About {
                        issue,
                        subscription,
                        source,
                    },
                )))
            })
            .await
    }
}

/// The wait before try `attempts + 1`: 5 s, doubling, at most ten minutes.
fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    (Duration::from_secs(5) * 2u32.pow(doublings)).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_that_cannot_go_waits_longer_each_time_up_to_ten_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(30), MAX_WAIT);
    }
}
