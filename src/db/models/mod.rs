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

use chrono::{DateTime, Utc};

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

/// The hours from `since` to `settled`, each on the hour when `since` is.
fn hours_between(
    since: DateTime<Utc>,
    settled: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Utc>> {
    (0..)
        .map(move |hours| since + chrono::TimeDelta::hours(hours))
        .take_while(move |hour| *hour < settled)
}

/// Which of these `(owner, hour)` pairs, every owner with every hour from `since` to `settled`,
/// are not among those `kept`.
pub(crate) fn hours_missing<T: Copy + Eq + std::hash::Hash>(
    owners: &[T],
    since: DateTime<Utc>,
    settled: DateTime<Utc>,
    kept: &[(T, DateTime<Utc>)],
) -> (Vec<T>, Vec<DateTime<Utc>>) {
    let kept: std::collections::HashSet<&(T, DateTime<Utc>)> = kept.iter().collect();
    owners
        .iter()
        .flat_map(|owner| hours_between(since, settled).map(move |hour| (*owner, hour)))
        .filter(|pair| !kept.contains(pair))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hours_missing_are_each_owners_hours_to_settled_not_kept() {
        let since: DateTime<Utc> = "2026-12-03T06:00:00Z".parse().unwrap();
        let hour = |n| since + chrono::TimeDelta::hours(n);
        // An hour before `since`, kept from an earlier day, changes nothing.
        let kept = [(1, hour(0)), (2, hour(1)), (1, hour(-1))];
        let (owners, hours) = hours_missing(&[1, 2], since, hour(3), &kept);
        assert_eq!(owners, [1, 1, 2, 2]);
        assert_eq!(hours, [hour(1), hour(2), hour(0), hour(2)]);
        let (owners, _) = hours_missing(&[1], since, since, &[]);
        assert!(owners.is_empty(), "no hour is settled yet");
    }

    #[test]
    fn a_key_range_is_the_least_and_the_greatest_key() {
        assert_eq!(key_range(&[3, 1, 2]), (Some(1), Some(3)));
        assert_eq!(key_range::<u8>(&[]), (None, None));
    }
}
