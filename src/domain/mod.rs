//! Domain types that carry meaning: ids, tokens, secrets, statuses and parsed inputs.

mod document;
mod email;
mod event_status;
mod filter;
mod ids;
mod ingest_response;
mod issue;
mod password;
mod policy;
mod request_id;
mod retry_schedule;
mod role;
mod secrets;
mod target_url;

pub use document::as_document;
pub use email::EmailAddress;
pub use event_status::EventStatus;
pub use filter::{
    Explanation, Filter, FilterError, FilterInput, MAX_BYTES as MAX_FILTER_BYTES,
    MAX_DEPTH as MAX_FILTER_DEPTH, MAX_NODES as MAX_FILTER_NODES, query_object,
};
pub use ids::{
    ApiKeyId, ChannelId, DeliveryId, EventId, InvitationId, IssueId, NotificationId, SourceId,
    SubscriptionId, UserId, WorkspaceId,
};
pub use ingest_response::IngestResponse;
pub use issue::{ChannelKind, IssueKind, IssueState, SubscriptionKind, failure_class};
pub use password::Password;
pub use policy::{
    MAX_IN_FLIGHT as MAX_POLICY_IN_FLIGHT, Per, Policy, RateLimit, check_headers, check_rate_limit,
    is_reserved_header, parse_lag_threshold, parse_retry_schedule, parse_timeout,
};
pub use request_id::RequestId;
pub use retry_schedule::{RetrySchedule, compact as compact_delay};
pub use role::Role;
pub use secrets::{
    ApiKey, IngestToken, SecretUrl, SigningSecret, is_token_shaped, random_bytes, random_token,
};
pub use target_url::{TargetUrl, forwarded_url};
