//! Where an event is in its life.

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use diesel::{AsExpression, FromSqlRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a delivery is in its life (the status column of `deliveries`), and an event's
/// roll-up of its deliveries' (see [`EventStatus::roll_up`]).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[diesel(sql_type = Text)]
#[schema(
    description = "Where a delivery is in its life: `pending` (not yet attempted), `retrying` (an attempt failed, another is scheduled), `completed` (delivered), `failed` (retries exhausted; it can be replayed). An event's status rolls its deliveries' up: `failed` if any failed, else `retrying` if any retries, else `pending` if any is pending, else `completed`; `unrouted` when no subscription took it."
)]
pub enum EventStatus {
    /// Stored, not yet attempted.
    Pending,
    /// At least one attempt failed; another is scheduled.
    Retrying,
    /// Delivered: the endpoint answered 2xx.
    Completed,
    /// Retries exhausted: in the graveyard, can be replayed.
    Failed,
    /// An event that no subscription's filter took: kept, and delivered nowhere. Never the
    /// status of a delivery.
    Unrouted,
}

impl EventStatus {
    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Retrying => "retrying",
            EventStatus::Completed => "completed",
            EventStatus::Failed => "failed",
            EventStatus::Unrouted => "unrouted",
        }
    }

    /// An event's status, from its deliveries': `failed` if any failed, else `retrying` if any
    /// retries, else `pending` if any is pending, else `completed`; `unrouted` with none.
    pub fn roll_up(deliveries: impl IntoIterator<Item = EventStatus>) -> EventStatus {
        let mut rolled = EventStatus::Unrouted;
        for status in deliveries {
            rolled = match (rolled, status) {
                (EventStatus::Failed, _) | (_, EventStatus::Failed) => EventStatus::Failed,
                (EventStatus::Retrying, _) | (_, EventStatus::Retrying) => EventStatus::Retrying,
                (EventStatus::Pending, _) | (_, EventStatus::Pending) => EventStatus::Pending,
                _ => EventStatus::Completed,
            };
        }
        rolled
    }

    /// Whether the event has reached the end of its life.
    pub fn is_final(self) -> bool {
        matches!(self, EventStatus::Completed | EventStatus::Failed)
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("unknown event status {0:?}")]
pub struct UnknownStatus(String);

impl FromStr for EventStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(EventStatus::Pending),
            "retrying" => Ok(EventStatus::Retrying),
            "completed" => Ok(EventStatus::Completed),
            "failed" => Ok(EventStatus::Failed),
            "unrouted" => Ok(EventStatus::Unrouted),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

impl ToSql<Text, Pg> for EventStatus {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
    }
}

impl FromSql<Text, Pg> for EventStatus {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Ok(text.parse()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for status in [
            EventStatus::Pending,
            EventStatus::Retrying,
            EventStatus::Completed,
            EventStatus::Failed,
            EventStatus::Unrouted,
        ] {
            assert_eq!(status.as_str().parse::<EventStatus>().unwrap(), status);
        }
    }

    #[test]
    fn an_events_status_rolls_up_its_deliveries_worst_first() {
        use EventStatus::*;
        assert_eq!(EventStatus::roll_up([]), Unrouted);
        assert_eq!(EventStatus::roll_up([Completed, Completed]), Completed);
        assert_eq!(EventStatus::roll_up([Completed, Pending]), Pending);
        assert_eq!(
            EventStatus::roll_up([Pending, Retrying, Completed]),
            Retrying
        );
        assert_eq!(EventStatus::roll_up([Retrying, Failed, Pending]), Failed);
        assert_eq!(EventStatus::roll_up([Failed, Completed]), Failed);
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!("done".parse::<EventStatus>().is_err());
    }
}
