//! A subscription's delivery policy: what it sets of how its deliveries are made, each field in
//! place of the process-wide setting. Stored as a JSON document in milliseconds (so SQL can read
//! the timeout); the API reads and writes durations as text (`"10s"`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::RetrySchedule;

/// The most retries a subscription's schedule may list.
pub const MAX_RETRIES: usize = 30;
/// The longest wait a subscription's schedule may list: a week.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest and longest delivery timeout a subscription may set.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// The most attempts under way at once a subscription may allow, per process.
pub const MAX_IN_FLIGHT: u32 = 256;
/// The most deliveries a rate limit may allow per second or per minute.
pub const MAX_RATE: u32 = 10_000;
/// The most extra headers, and the longest value of one, in bytes.
pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_VALUE: usize = 4096;

/// Headers the relay sets on every delivery, which extra headers may not replace: the
/// signatures and what describes the body and the connection.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-spenza-signature",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
];

/// The unit a rate limit counts deliveries in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Second,
    Minute,
}

/// At most `count` deliveries `per` second or minute, evenly spaced, across every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// From 1 to 10,000.
    pub count: u32,
    pub per: Per,
}

impl RateLimit {
    /// The least time between two deliveries.
    pub fn spacing(&self) -> Duration {
        let period = match self.per {
            Per::Second => Duration::from_secs(1),
            Per::Minute => Duration::from_secs(60),
        };
        period / self.count.max(1)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.per {
            Per::Second => "second",
            Per::Minute => "minute",
        };
        write!(f, "{} per {per}", self.count)
    }
}

/// A subscription's policy as stored. `Debug` leaves out the headers' values.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_schedule_ms: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// How long its oldest undelivered event may wait before a `subscription_lagging` issue
    /// opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_threshold_ms: Option<u64>,
    /// Added to every delivery; the values are secrets (never shown, never logged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("retry_schedule_ms", &self.retry_schedule_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_in_flight", &self.max_in_flight)
            .field("rate_limit", &self.rate_limit)
            .field("lag_threshold_ms", &self.lag_threshold_ms)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Policy {
    /// Reads a stored policy; one that cannot be read (a bug) is the defaults.
    pub fn from_stored(stored: &serde_json::Value) -> Policy {
        Policy::deserialize(stored).unwrap_or_default()
    }

    /// As stored.
    pub fn to_stored(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Its retry schedule, when it sets one.
    pub fn retry_schedule(&self) -> Option<RetrySchedule> {
        self.retry_schedule_ms
            .as_ref()
            .map(|delays| RetrySchedule::new(delays.iter().map(|ms| Duration::from_millis(*ms))))
    }

    /// Its delivery timeout, when it sets one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    /// Whether it sets nothing.
    pub fn is_default(&self) -> bool {
        self == &Policy::default()
    }
}

/// Checks a retry schedule as written (`["5s", "1m"]`): its delays in milliseconds.
pub fn parse_retry_schedule(written: &[String]) -> Result<Vec<u64>, String> {
    if written.len() > MAX_RETRIES {
        return Err(format!("at most {MAX_RETRIES} retries"));
    }
    written
        .iter()
        .map(|delay| {
            let parsed = humantime::parse_duration(delay.trim())
                .map_err(|_| format!("{delay:?} is not a duration such as \"30s\" or \"5m\""))?;
            if parsed < Duration::from_secs(1) || parsed > MAX_RETRY_DELAY {
                return Err(format!("{delay:?}: each wait is from 1s to 7 days"));
            }
            Ok(u64::try_from(parsed.as_millis()).unwrap_or(u64::MAX))
        })
        .collect()
}

/// Checks a timeout as written (`"10s"`): in milliseconds.
pub fn parse_timeout(written: &str) -> Result<u64, String> {
    let parsed = humantime::parse_duration(written.trim())
        .map_err(|_| format!("{written:?} is not a duration such as \"10s\""))?;
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&parsed) {
        return Err("the timeout is from 1s to 2m".into());
    }
    Ok(u64::try_from(parsed.as_millis()).unwrap_or(u64::MAX))
}

/// The shortest and the longest lag threshold a subscription may set.
pub const MIN_LAG_THRESHOLD: Duration = Duration::from_secs(60);
pub const MAX_LAG_THRESHOLD: Duration = Duration::from_secs(7 * 86_400);

/// Checks a lag threshold as written (`"15m"`): in milliseconds.
pub fn parse_lag_threshold(written: &str) -> Result<u64, String> {
    let parsed = humantime::parse_duration(written.trim())
        .map_err(|_| format!("{written:?} is not a duration such as \"15m\""))?;
    if !(MIN_LAG_THRESHOLD..=MAX_LAG_THRESHOLD).contains(&parsed) {
        return Err("the lag threshold is from 1m to 7 days".into());
    }
    Ok(u64::try_from(parsed.as_millis()).unwrap_or(u64::MAX))
}

/// Checks a rate limit.
pub fn check_rate_limit(limit: &RateLimit) -> Result<(), String> {
    if (1..=MAX_RATE).contains(&limit.count) {
        Ok(())
    } else {
        Err(format!("count is from 1 to {MAX_RATE}"))
    }
}

/// Checks extra headers: valid names and values, not too many or too long, and none the relay
/// sets itself.
pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), String> {
    if headers.len() > MAX_HEADERS {
        return Err(format!("at most {MAX_HEADERS} headers"));
    }
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("{name:?} is not a header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(format!("{name} is set by the relay and cannot be replaced"));
        }
        if value.len() > MAX_HEADER_VALUE || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(format!(
                "the value of {name} must be printable text of at most {MAX_HEADER_VALUE} bytes"
            ));
        }
    }
    let mut names: Vec<String> = headers.keys().map(|n| n.to_ascii_lowercase()).collect();
    names.sort();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err("a header is named twice (names are case-insensitive)".into());
    }
    Ok(())
}

/// Whether extra headers may set this header (by any case): not one the relay sets itself.
pub fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rate_limit_spaces_deliveries_evenly() {
        let five = RateLimit {
            count: 5,
            per: Per::Second,
        };
        assert_eq!(five.spacing(), Duration::from_millis(200));
        let per_minute = RateLimit {
            count: 10,
            per: Per::Minute,
        };
        assert_eq!(per_minute.spacing(), Duration::from_secs(6));
        assert_eq!(per_minute.to_string(), "10 per minute");
    }

    #[test]
    fn a_policy_is_stored_in_milliseconds_and_only_what_it_sets() {
        let policy = Policy {
            retry_schedule_ms: Some(vec![5_000, 60_000]),
            timeout_ms: Some(10_000),
            ..Policy::default()
        };
        assert_eq!(
            policy.to_stored(),
            json!({"retry_schedule_ms": [5000, 60000], "timeout_ms": 10000})
        );
        assert_eq!(Policy::from_stored(&policy.to_stored()), policy);
        assert!(Policy::from_stored(&json!({})).is_default());
        assert_eq!(
            policy.retry_schedule().map(|s| s.to_string()),
            Some("5s,1m".into())
        );
    }

    #[test]
    fn written_durations_are_checked() {
        assert_eq!(
            parse_retry_schedule(&["5s".into(), "1m".into(), "10m".into()]),
            Ok(vec![5_000, 60_000, 600_000])
        );
        assert!(parse_retry_schedule(&["soon".into()]).is_err());
        assert!(parse_retry_schedule(&["100ms".into()]).is_err());
        assert!(parse_retry_schedule(&["8days".into()]).is_err());
        assert!(parse_retry_schedule(&vec!["1s".to_owned(); MAX_RETRIES + 1]).is_err());
        assert_eq!(parse_retry_schedule(&[]), Ok(vec![]));
        assert_eq!(parse_timeout("10s"), Ok(10_000));
        assert!(parse_timeout("500ms").is_err());
        assert!(parse_timeout("5m").is_err());
    }

    #[test]
    fn extra_headers_cannot_replace_the_signatures_or_be_malformed() {
        let headers = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(check_headers(&headers(&[("Authorization", "Bearer abc")])).is_ok());
        for refused in [
            headers(&[("Webhook-Signature", "v1,forged")]),
            headers(&[("X-Spenza-Signature", "x")]),
            headers(&[("Content-Type", "text/plain")]),
            headers(&[("bad name", "x")]),
            headers(&[("X-Ok", "line\r\nbreak")]),
            headers(&[("X-A", "1"), ("x-a", "2")]),
        ] {
            assert!(check_headers(&refused).is_err(), "{:?}", refused.keys());
        }
        assert!(is_reserved_header("WEBHOOK-ID"));
        assert!(!is_reserved_header("authorization"));
    }

    #[test]
    fn debug_leaves_out_header_values() {
        let policy = Policy {
            headers: BTreeMap::from([("Authorization".into(), "Bearer secret-token".into())]),
            ..Policy::default()
        };
        let shown = format!("{policy:?}");
        assert!(shown.contains("Authorization") && !shown.contains("secret-token"));
    }
}
