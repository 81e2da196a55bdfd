//! A subscription's delivery policy as the API takes it: durations as text, each field
//! optional, extra headers write-only.

use std::collections::BTreeMap;

use garde::Validate;
use serde::Deserialize;
use utoipa::ToSchema;

use super::subscriptions::present;
use crate::domain::{
    Policy, RateLimit, check_headers, check_rate_limit, parse_lag_threshold, parse_retry_schedule,
    parse_timeout,
};

/// A delivery policy, or an edit of one. Each field left out keeps its value (the process-wide
/// setting, when creating); `null` puts it back to the process-wide setting.
#[derive(Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyIn {
    /// The waits before each retry, such as `["5s", "1m", "10m"]` (each from 1s to 7 days, at
    /// most 30); `[]` for no retries.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    #[garde(custom(valid_schedule))]
    pub retry_schedule: Option<Option<Vec<String>>>,
    /// How long an attempt may take, such as `"10s"` (from 1s to 2m).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    #[garde(custom(valid_timeout))]
    pub timeout: Option<Option<String>>,
    /// Attempts at the endpoint at once, per delivering process (from 1 to 256).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    #[garde(custom(valid_in_flight))]
    pub max_in_flight: Option<Option<u32>>,
    /// At most `count` deliveries `per` second or minute, evenly spaced, across every replica.
    /// A delivery waiting for its turn uses no attempt and no retry.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimit>)]
    #[garde(custom(valid_rate_limit))]
    pub rate_limit: Option<Option<RateLimit>>,
    /// How long the oldest undelivered event may wait before a `subscription_lagging` issue
    /// opens, such as `"15m"` (from 1m to 7 days); by default the process-wide
    /// `SPENZA_LAG_THRESHOLD`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    #[garde(custom(valid_lag_threshold))]
    pub lag_threshold: Option<Option<String>>,
    /// Headers added to every delivery, such as `{"Authorization": "Bearer …"}`: write-only
    /// (answers show their names only), never logged, and unable to replace the relay's own
    /// (`webhook-*`, `x-spenza-signature`, `content-type`, …). At most 20. Given, they replace
    /// all the headers set before.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    #[garde(custom(valid_headers))]
    pub headers: Option<Option<BTreeMap<String, String>>>,
}

impl std::fmt::Debug for PolicyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyIn")
            .field("retry_schedule", &self.retry_schedule)
            .field("timeout", &self.timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("rate_limit", &self.rate_limit)
            .field("lag_threshold", &self.lag_threshold)
            .field(
                "headers",
                &self
                    .headers
                    .as_ref()
                    .map(|headers| headers.as_ref().map(|h| h.keys().collect::<Vec<_>>())),
            )
            .finish()
    }
}

impl PolicyIn {
    /// `current` with this edit applied. Call it on a validated input only: a field that does
    /// not parse is left as it was.
    pub fn applied_to(&self, current: Policy) -> Policy {
        let mut policy = current;
        if let Some(schedule) = &self.retry_schedule {
            policy.retry_schedule_ms = schedule
                .as_deref()
                .and_then(|delays| parse_retry_schedule(delays).ok());
        }
        if let Some(timeout) = &self.timeout {
            policy.timeout_ms = timeout
                .as_deref()
                .and_then(|timeout| parse_timeout(timeout).ok());
        }
        if let Some(cap) = self.max_in_flight {
            policy.max_in_flight = cap;
        }
        if let Some(limit) = self.rate_limit {
            policy.rate_limit = limit;
        }
        if let Some(threshold) = &self.lag_threshold {
            policy.lag_threshold_ms = threshold
                .as_deref()
                .and_then(|threshold| parse_lag_threshold(threshold).ok());
        }
        if let Some(headers) = &self.headers {
            policy.headers = headers.clone().unwrap_or_default();
        }
        policy
    }
}

fn valid_schedule(value: &Option<Option<Vec<String>>>, _: &()) -> garde::Result {
    match value {
        Some(Some(delays)) => parse_retry_schedule(delays)
            .map(drop)
            .map_err(garde::Error::new),
        _ => Ok(()),
    }
}

fn valid_timeout(value: &Option<Option<String>>, _: &()) -> garde::Result {
    match value {
        Some(Some(timeout)) => parse_timeout(timeout).map(drop).map_err(garde::Error::new),
        _ => Ok(()),
    }
}

fn valid_lag_threshold(value: &Option<Option<String>>, _: &()) -> garde::Result {
    match value {
        Some(Some(threshold)) => parse_lag_threshold(threshold)
            .map(drop)
            .map_err(garde::Error::new),
        _ => Ok(()),
    }
}

fn valid_in_flight(value: &Option<Option<u32>>, _: &()) -> garde::Result {
    match value {
        Some(Some(cap)) if !(1..=crate::domain::MAX_POLICY_IN_FLIGHT).contains(cap) => Err(
            garde::Error::new(format!("from 1 to {}", crate::domain::MAX_POLICY_IN_FLIGHT)),
        ),
        _ => Ok(()),
    }
}

fn valid_rate_limit(value: &Option<Option<RateLimit>>, _: &()) -> garde::Result {
    match value {
        Some(Some(limit)) => check_rate_limit(limit).map_err(garde::Error::new),
        _ => Ok(()),
    }
}

fn valid_headers(value: &Option<Option<BTreeMap<String, String>>>, _: &()) -> garde::Result {
    match value {
        Some(Some(headers)) => check_headers(headers).map_err(garde::Error::new),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edit(json: serde_json::Value) -> PolicyIn {
        serde_json::from_value(json).expect("an edit")
    }

    #[test]
    fn an_edit_changes_what_it_names_and_null_puts_back_the_default() {
        let created = edit(json!({
            "retry_schedule": ["5s", "1m"], "timeout": "10s",
            "rate_limit": {"count": 5, "per": "second"},
            "headers": {"Authorization": "Bearer a"},
        }))
        .applied_to(Policy::default());
        assert_eq!(created.retry_schedule_ms, Some(vec![5_000, 60_000]));
        assert_eq!(created.timeout_ms, Some(10_000));
        let edited = edit(json!({"timeout": null, "max_in_flight": 2})).applied_to(created.clone());
        assert_eq!(edited.timeout_ms, None);
        assert_eq!(edited.max_in_flight, Some(2));
        assert_eq!(edited.retry_schedule_ms, created.retry_schedule_ms);
        assert_eq!(edited.headers, created.headers, "left out: kept");
        let cleared = edit(json!({"headers": null})).applied_to(edited);
        assert!(cleared.headers.is_empty());
    }

    #[test]
    fn each_bad_field_is_reported_by_its_name() {
        let report = edit(json!({
            "retry_schedule": ["soon"], "timeout": "1h", "max_in_flight": 0,
            "rate_limit": {"count": 0, "per": "second"},
            "headers": {"Webhook-Signature": "v1,x"},
        }))
        .validate()
        .expect_err("refused");
        let mut fields: Vec<String> = report.iter().map(|(path, _)| path.to_string()).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "headers",
                "max_in_flight",
                "rate_limit",
                "retry_schedule",
                "timeout"
            ]
        );
        assert!(
            serde_json::from_value::<PolicyIn>(json!({"rate_limit": {"count": 1, "per": "hour"}}))
                .is_err()
        );
    }

    #[test]
    fn debug_shows_header_names_only() {
        let shown = format!("{:?}", edit(json!({"headers": {"X-Key": "secret-value"}})));
        assert!(shown.contains("X-Key") && !shown.contains("secret-value"));
    }
}
