//! Domain types that carry meaning: ids, tokens, secrets, statuses and parsed inputs.

mod email;
mod event_status;
mod filter;
mod ids;
mod password;
mod retry_schedule;
mod secrets;
mod target_url;

pub use email::EmailAddress;
pub use event_status::EventStatus;
pub use filter::{
    Explanation, Filter, FilterError, FilterInput, MAX_BYTES as MAX_FILTER_BYTES,
    MAX_DEPTH as MAX_FILTER_DEPTH, MAX_NODES as MAX_FILTER_NODES,
};
pub use ids::{ApiKeyId, DeliveryId, EventId, SourceId, SubscriptionId, UserId};
pub use password::Password;
pub use retry_schedule::{RetrySchedule, compact as compact_delay};
pub use secrets::{
    ApiKey, IngestToken, SecretUrl, SigningSecret, is_token_shaped, random_bytes, random_token,
};
pub use target_url::TargetUrl;
