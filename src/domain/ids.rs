//! Id newtypes, so an event id can never be passed where a subscription id is expected.

use std::fmt;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Uuid as SqlUuid;
use diesel::{AsExpression, FromSqlRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            AsExpression, FromSqlRow, ToSchema,
        )]
        #[serde(transparent)]
        #[diesel(sql_type = SqlUuid)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl ToSql<SqlUuid, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <Uuid as ToSql<SqlUuid, Pg>>::to_sql(&self.0, out)
            }
        }

        impl FromSql<SqlUuid, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                <Uuid as FromSql<SqlUuid, Pg>>::from_sql(bytes).map($name)
            }
        }
    };
}

uuid_id!(
    /// Identifies a user.
    UserId
);
uuid_id!(
    /// Identifies a workspace: what owns sources, subscriptions and keys, shared by its members.
    WorkspaceId
);
uuid_id!(
    /// Identifies an invitation to join a workspace.
    InvitationId
);
uuid_id!(
    /// Identifies an issue.
    IssueId
);
uuid_id!(
    /// Identifies a notification channel.
    ChannelId
);
uuid_id!(
    /// Identifies a notification: the same on every try to send it.
    NotificationId
);
uuid_id!(
    /// Identifies an API key.
    ApiKeyId
);
uuid_id!(
    /// Identifies a subscription.
    SubscriptionId
);
uuid_id!(
    /// Identifies a source: what faces a provider, with its ingest URL.
    SourceId
);

uuid_id!(
    /// Identifies a delivery: one event for one subscription. A v7 uuid carrying its event's
    /// arrival, so deliveries sort (and are bounded by time) as their events are.
    DeliveryId
);

uuid_id!(
    /// Identifies an event; a v7 uuid, so ids sort by arrival. Sent as `webhook-id`.
    EventId
);

impl EventId {
    /// A new, time-ordered event id.
    pub fn new() -> Self {
        EventId(Uuid::now_v7())
    }
}

impl EventId {
    /// When the event arrived: the millisecond its id carries, which is also its stored
    /// `received_at`, so a time range means the same by id (the log's index scans) as by
    /// `received_at`.
    pub fn arrival(self) -> chrono::DateTime<chrono::Utc> {
        let millis = self
            .0
            .get_timestamp()
            .map(|at| {
                let (seconds, nanos) = at.to_unix();
                i64::try_from(seconds).unwrap_or(i64::MAX) * 1000 + i64::from(nanos / 1_000_000)
            })
            .unwrap_or_default();
        chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
    }

    /// The smallest id an event received at `at` or later can have: a bound for index scans by
    /// time. Arrivals are whole milliseconds, so a time within one rounds up to the next.
    pub fn first_at(at: chrono::DateTime<chrono::Utc>) -> Self {
        let partial = !at.timestamp_subsec_nanos().is_multiple_of(1_000_000);
        let millis = u64::try_from(at.timestamp_millis() + i64::from(partial)).unwrap_or(0);
        EventId(uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid())
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_sort_by_creation() {
        let first = EventId::new();
        let second = EventId::new();
        assert!(first < second);
    }

    #[test]
    fn an_ids_arrival_is_the_first_millisecond_it_bounds() {
        let id = EventId::new();
        let arrival = id.arrival();
        assert!((chrono::Utc::now() - arrival).num_seconds().abs() < 5);
        assert!(EventId::first_at(arrival) <= id);
        assert!(EventId::first_at(arrival + chrono::TimeDelta::microseconds(1)) > id);
    }

    #[test]
    fn first_at_bounds_the_ids_of_later_events_only() {
        let now = chrono::Utc::now();
        let bound = EventId::first_at(now - chrono::TimeDelta::seconds(1));
        assert!(bound < EventId::new());
        assert!(EventId::first_at(now + chrono::TimeDelta::seconds(1)) > EventId::new());
    }
}
