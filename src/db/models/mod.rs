//! Row types, insert and update forms, and the query functions for each table. Every function
//! takes `&mut AsyncPgConnection`, so callers can compose them in one transaction.

pub mod api_key;
pub mod audit;
pub mod delivery;
pub mod delivery_attempt;
pub mod event;
pub mod invitation;
pub mod issue;
pub mod listen_session;
pub mod login_failure;
pub mod notification;
pub mod rate_limit;
pub mod rejected_request;
pub mod session;
pub mod source;
pub mod subscription;
pub mod user;
pub mod workspace;

use std::time::Duration;

use crate::db::schema::{deliveries, delivery_attempts, events};

// Joins between the tables that grow with every event, which no foreign key declares (see the
// migration `no_keys_between_growing_tables`), so `diesel print-schema` does not write them.
diesel::joinable!(deliveries -> events (event_id));
diesel::joinable!(delivery_attempts -> deliveries (delivery_id));

/// A duration as a PostgreSQL interval, to whole microseconds.
pub fn pg_interval(duration: Duration) -> diesel::data_types::PgInterval {
    diesel::data_types::PgInterval::from_microseconds(
        i64::try_from(duration.as_micros()).unwrap_or(i64::MAX),
    )
}

/// The least and the greatest of a batch's keys (`None` for none). Named beside `= ANY` of the
/// same keys, they let a plan made for any keys skip, as it starts, the partitions of every day
/// the batch has no key in: under such a plan (`super::Plans::Generic`) `= ANY` alone prunes
/// nothing, and each statement searches every day's index.
pub(crate) fn key_range<T: Ord + Copy>(keys: &[T]) -> (Option<T>, Option<T>) {
    (keys.iter().min().copied(), keys.iter().max().copied())
}
