//! The subscription form, as the dashboard posts it: flat fields, a provider chosen by kind, its
//! filter as JSON text, its policy as text fields, and its secrets write-only (an edit form never
//! holds the provider's secret or the extra headers, so leaving them blank keeps them).

use std::collections::BTreeMap;

use serde::Deserialize;
use uuid::Uuid;

use super::ServiceError;
use super::policy::PolicyIn;
use super::provider_form::ProviderFields;
use super::subscriptions::{SubscriptionIn, stored_provider};
use crate::db::models::subscription::Subscription;
use crate::domain::{Per, Policy, RateLimit, SourceId, compact_delay};
use crate::problem::FieldError;
use crate::signing::incoming::ProviderConfig;

/// The values of the subscription form, as typed.
#[derive(Default, Deserialize)]
pub struct SubscriptionForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub target_url: String,
    /// The check of a source made for it; its secrets write-only.
    #[serde(flatten)]
    pub provider: ProviderFields,
    /// The source it receives events from; blank or `new` for a source of its own.
    #[serde(default)]
    pub source_id: String,
    /// Its filter, as JSON; blank for every event.
    #[serde(default)]
    pub filter: String,
    /// Ticked: the path and query after the ingest token are appended to the endpoint URL.
    #[serde(default)]
    pub forward_path: Option<String>,
    /// The waits before each retry, comma-separated (`5s, 1m`); `none` for no retries; blank
    /// for the relay's schedule.
    #[serde(default)]
    pub retry_schedule: String,
    #[serde(default)]
    pub timeout: String,
    #[serde(default)]
    pub max_in_flight: String,
    #[serde(default)]
    pub rate_limit_count: String,
    #[serde(default)]
    pub rate_limit_per: String,
    /// How long the oldest undelivered event may wait before an issue opens (`15m`); blank for
    /// the relay's setting.
    #[serde(default)]
    pub lag_threshold: String,
    /// Extra headers, one `Name: value` a line. Write-only: blank keeps those set.
    #[serde(default)]
    pub headers: String,
    /// Ticked on an edit: remove the extra headers.
    #[serde(default)]
    pub clear_headers: Option<String>,
    /// `test-filter` when the form was posted to try its filter on recent events, not to save;
    /// `check-filter` to check it only.
    #[serde(default)]
    pub action: String,
}

impl SubscriptionForm {
    /// The form for an existing subscription: its values, but never its provider's secret.
    pub fn of(subscription: &Subscription) -> Self {
        SubscriptionForm {
            name: subscription.name.clone(),
            target_url: subscription.target_url.clone(),
            provider: ProviderFields::of(stored_provider(subscription).as_ref()),
            source_id: subscription.source_id.to_string(),
            filter: subscription
                .filter
                .as_ref()
                .and_then(|filter| serde_json::to_string_pretty(filter).ok())
                .unwrap_or_default(),
            forward_path: subscription.forward_path.then(|| "on".to_owned()),
            ..SubscriptionForm::default()
        }
        .with_policy(&Policy::from_stored(&subscription.policy))
    }

    /// The policy's fields filled in from `policy`, headers left blank (write-only).
    fn with_policy(self, policy: &Policy) -> Self {
        let text = |ms: u64| compact_delay(std::time::Duration::from_millis(ms));
        SubscriptionForm {
            retry_schedule: match &policy.retry_schedule_ms {
                Some(delays) if delays.is_empty() => "none".to_owned(),
                Some(delays) => delays
                    .iter()
                    .map(|ms| text(*ms))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => String::new(),
            },
            timeout: policy.timeout_ms.map(text).unwrap_or_default(),
            max_in_flight: policy
                .max_in_flight
                .map(|cap| cap.to_string())
                .unwrap_or_default(),
            rate_limit_count: policy
                .rate_limit
                .map(|limit| limit.count.to_string())
                .unwrap_or_default(),
            rate_limit_per: match policy.rate_limit.map(|limit| limit.per) {
                Some(Per::Minute) => "minute".to_owned(),
                _ => "second".to_owned(),
            },
            lag_threshold: policy.lag_threshold_ms.map(text).unwrap_or_default(),
            ..self
        }
    }

    /// Whether the form was posted to try its filter rather than to save.
    pub fn tests_filter(&self) -> bool {
        self.action == "test-filter"
    }

    /// Whether the form was posted (as its filter is typed) to check the filter alone.
    pub fn checks_filter(&self) -> bool {
        self.action == "check-filter"
    }

    /// The filter typed, when it is JSON; `Err` with why not; `Ok(None)` when blank.
    pub fn filter_json(&self) -> Result<Option<serde_json::Value>, String> {
        if self.filter.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&self.filter)
            .map(Some)
            .map_err(|error| format!("not JSON: {error}"))
    }

    /// The source chosen; `None` for a source of its own.
    pub fn source(&self) -> Result<Option<SourceId>, FieldError> {
        match self.source_id.trim() {
            "" | "new" => Ok(None),
            id => Uuid::parse_str(id)
                .map(|id| Some(SourceId(id)))
                .map_err(|_| FieldError {
                    field: "source_id".to_owned(),
                    message: "choose a source from the list".to_owned(),
                }),
        }
    }

    /// The same values with the secrets dropped, to show the form again.
    pub fn without_secret(self) -> Self {
        SubscriptionForm {
            provider: self.provider.clone().without_secrets(),
            headers: String::new(),
            action: String::new(),
            ..self
        }
    }

    /// The input it describes, given the provider stored now (`None` when creating), and
    /// whether it edits a subscription (then blank headers keep those set). Every problem of the
    /// form's own fields is reported, and with them those of the other fields.
    pub(super) fn input(
        &self,
        current: Option<&ProviderConfig>,
        editing: bool,
        check_others: impl FnOnce(&SubscriptionIn) -> Result<(), ServiceError>,
    ) -> Result<SubscriptionIn, ServiceError> {
        let mut fields = Vec::new();
        let mut input = SubscriptionIn {
            name: self.name.clone(),
            target_url: self.target_url.trim().to_owned(),
            source_id: self.source().unwrap_or_else(|error| {
                fields.push(error);
                None
            }),
            provider: None,
            filter: self.filter_json().unwrap_or_else(|message| {
                fields.push(FieldError {
                    field: "filter".to_owned(),
                    message,
                });
                None
            }),
            forward_path: self.forward_path.is_some(),
            policy: None,
        };
        let (policy, errors) = self.policy(editing);
        input.policy = Some(policy);
        fields.extend(errors);
        match self.provider.config(current) {
            Ok(provider) => input.provider = provider,
            Err(errors) => fields.extend(errors),
        }
        if fields.is_empty() {
            return Ok(input);
        }
        if let Err(ServiceError::Invalid(others)) = check_others(&input) {
            fields.extend(others);
        }
        Err(ServiceError::Invalid(fields))
    }

    /// The policy the form's fields set (each blank field follows the relay's setting), and the
    /// problems of the fields it could not read, which it leaves as they are.
    fn policy(&self, editing: bool) -> (PolicyIn, Vec<FieldError>) {
        let mut errors = Vec::new();
        let mut invalid = |field: &str, message: &str| {
            errors.push(FieldError {
                field: field.to_owned(),
                message: message.to_owned(),
            });
        };
        let text = |value: &str| Some((!value.trim().is_empty()).then(|| value.trim().to_owned()));
        let retry_schedule = match self.retry_schedule.trim() {
            "" => Some(None),
            "none" => Some(Some(Vec::new())),
            delays => Some(Some(
                delays
                    .split(',')
                    .map(|delay| delay.trim().to_owned())
                    .collect(),
            )),
        };
        let max_in_flight = match self.max_in_flight.trim() {
            "" => Some(None),
            cap => match cap.parse::<u32>() {
                Ok(cap) => Some(Some(cap)),
                Err(_) => {
                    invalid("policy.max_in_flight", "a whole number, from 1 to 256");
                    None
                }
            },
        };
        let rate_limit = match self.rate_limit_count.trim() {
            "" => Some(None),
            count => match (count.parse::<u32>(), self.rate_limit_per.as_str()) {
                (Ok(count), "minute") => Some(Some(RateLimit {
                    count,
                    per: Per::Minute,
                })),
                (Ok(count), _) => Some(Some(RateLimit {
                    count,
                    per: Per::Second,
                })),
                (Err(_), _) => {
                    invalid("policy.rate_limit", "a whole number of deliveries");
                    None
                }
            },
        };
        let mut headers = BTreeMap::new();
        for line in self.headers.lines().filter(|line| !line.trim().is_empty()) {
            match line.split_once(':') {
                Some((name, value)) if !name.trim().is_empty() => {
                    headers.insert(name.trim().to_owned(), value.trim().to_owned());
                }
                _ => invalid(
                    "policy.headers",
                    "write each header as Name: value, one a line",
                ),
            }
        }
        let headers = match (headers.is_empty(), editing, self.clear_headers.is_some()) {
            (_, true, true) => Some(None),
            (true, true, false) => None,
            (true, false, _) => Some(None),
            (false, _, _) => Some(Some(headers)),
        };
        let policy = PolicyIn {
            retry_schedule,
            timeout: text(&self.timeout),
            max_in_flight,
            rate_limit,
            lag_threshold: text(&self.lag_threshold),
            headers,
        };
        (policy, errors)
    }
}
