//! One HTTP request to an endpoint and what came of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::redirect::Policy as Redirects;

use super::ssrf::{GuardedResolver, Refused, TargetPolicy};
use crate::db::models::delivery::DeliveryJob;
use crate::domain::{EventId, Policy, SigningSecret, is_reserved_header};
use crate::metrics::AttemptOutcome;
use crate::signing::outgoing::{self, InvalidSecret, Signatures};

/// How much of an endpoint's answer is kept with the attempt.
const RESPONSE_BODY_LIMIT: usize = 4096;

/// The outbound HTTP client, shared by every delivery: one connection pool per process.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
    policy: Arc<TargetPolicy>,
}

/// What one attempt did.
#[derive(Debug)]
pub struct Attempt {
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// How long a 429 or 503 answer asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// How it ended, as the metrics count it.
    pub outcome: AttemptOutcome,
}

impl Attempt {
    /// An attempt that was not made, and why.
    fn refused(started_at: DateTime<Utc>, reason: String, outcome: AttemptOutcome) -> Self {
        Attempt {
            started_at,
            duration_ms: 0,
            status_code: None,
            error: Some(reason),
            response_body: None,
            retry_after: None,
            outcome,
        }
    }

    /// Only a 2xx answer is a delivery; redirects are not followed and count as failures.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
            && self
                .status_code
                .is_some_and(|code| (200..300).contains(&code))
    }
}

impl HttpClient {
    /// A client that follows no redirects, gives up after `timeout`, and connects only where
    /// `policy` allows.
    pub fn new(timeout: Duration, policy: Arc<TargetPolicy>) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(GuardedResolver::new(policy.clone()))
            // A proxy would resolve target names itself, past the guard.
            .no_proxy()
            .user_agent(concat!("Spenza/", env!("CARGO_PKG_VERSION")))
            .redirect(Redirects::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(HttpClient {
            client,
            timeout,
            policy,
        })
    }

    /// The client itself, which others sending where the same guard applies share (its pool,
    /// its resolver, its TLS roots) rather than build their own.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The timeout of an attempt whose subscription sets none.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs the event's exact bytes to its endpoint, as its subscription's policy says: within
    /// its timeout, with its extra headers (never in place of the relay's own).
    pub async fn attempt(&self, id: EventId, job: &DeliveryJob, policy: &Policy) -> Attempt {
        let started_at = Utc::now();
        let clock = Instant::now();
        // Names are checked as they resolve; an IP literal never reaches the resolver.
        let url = job.url();
        let literal_refusal = url::Url::parse(&url)
            .ok()
            .and_then(|url| self.policy.refusal_for_literal(&url));
        if let Some(refusal) = literal_refusal {
            return Attempt::refused(started_at, refusal, AttemptOutcome::Refused);
        }
        let signatures = match sign(id, started_at, job) {
            Ok(signatures) => signatures,
            Err(InvalidSecret) => {
                return Attempt::refused(
                    started_at,
                    "the subscription's signing secret is not valid base64".into(),
                    AttemptOutcome::OtherError,
                );
            }
        };
        let timeout = policy.timeout().unwrap_or(self.timeout);
        let mut request = self.client.post(url.as_ref()).timeout(timeout);
        for (name, value) in &policy.headers {
            if !is_reserved_header(name) {
                request = request.header(name, value);
            }
        }
        let mut request = request
            .header("webhook-id", id.to_string())
            .header("webhook-timestamp", started_at.timestamp().to_string())
            .header("webhook-signature", signatures.webhook_signature)
            .header("x-spenza-signature", signatures.spenza_signature)
            .body(job.body.clone());
        if let Some(content_type) = job
            .content_type
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let (status_code, error, response_body, retry_after, outcome) = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = match status {
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        parse_retry_after(response.headers())
                    }
                    _ => None,
                };
                let error = if status.is_success() {
                    None
                } else if status.is_redirection() {
                    let location = response
                        .headers()
                        .get(LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("nowhere");
                    Some(format!(
                        "HTTP {status}: redirect to {location} not followed"
                    ))
                } else {
                    Some(format!("HTTP {status}"))
                };
                let body = read_truncated(response).await;
                let outcome = AttemptOutcome::of_status(status.as_u16());
                (
                    Some(i32::from(status.as_u16())),
                    error,
                    body,
                    retry_after,
                    outcome,
                )
            }
            Err(error) => {
                let outcome = outcome_of(&error);
                (None, Some(describe(&error, timeout)), None, None, outcome)
            }
        };
        Attempt {
            started_at,
            duration_ms: i32::try_from(clock.elapsed().as_millis()).unwrap_or(i32::MAX),
            status_code,
            error,
            response_body,
            retry_after,
            outcome,
        }
    }
}

/// What went wrong with a request that got no answer.
pub(crate) fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("timed out after {timeout:?}")
    } else if error.is_connect() {
        format!("connection failed: {}", root_cause(error))
    } else {
        format!("request failed: {}", root_cause(error))
    }
}

/// This attempt's signatures: by the current secret and, during a rotation, the previous one.
pub(crate) fn sign(
    id: EventId,
    at: DateTime<Utc>,
    job: &DeliveryJob,
) -> Result<Signatures, InvalidSecret> {
    let current = SigningSecret::from_stored(job.signing_secret.clone());
    let previous = match (&job.previous_signing_secret, job.previous_secret_expires_at) {
        (Some(previous), Some(until)) if until > at => {
            Some(SigningSecret::from_stored(previous.clone()))
        }
        _ => None,
    };
    let secrets: Vec<&SigningSecret> = std::iter::once(&current).chain(previous.as_ref()).collect();
    outgoing::sign(&id.to_string(), at.timestamp(), &job.body, &secrets)
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

/// How a request that got no answer ended: the SSRF guard refused every address its name
/// resolved to, it timed out, it could not connect, or it broke off.
fn outcome_of(error: &reqwest::Error) -> AttemptOutcome {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<Refused>() {
            return AttemptOutcome::Refused;
        }
        cause = current.source();
    }
    if error.is_timeout() {
        AttemptOutcome::Timeout
    } else if error.is_connect() {
        AttemptOutcome::ConnectionError
    } else {
        AttemptOutcome::OtherError
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The first few KiB of the answer, as text; the rest is not read.
pub(crate) async fn read_truncated(mut response: reqwest::Response) -> Option<String> {
    let mut kept = Vec::new();
    while kept.len() < RESPONSE_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    kept.truncate(RESPONSE_BODY_LIMIT);
    (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            parse_retry_after(&headers("120")),
            Some(Duration::from_secs(120))
        );
        let soon = (Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let parsed = parse_retry_after(&headers(&soon)).expect("a date in the future");
        assert!(
            parsed > Duration::from_secs(80) && parsed <= Duration::from_secs(90),
            "{parsed:?}"
        );
        assert_eq!(
            parse_retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(&headers("soon")), None);
    }
}
