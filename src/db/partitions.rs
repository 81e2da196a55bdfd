//! The partitions of the tables that grow with every event (events, deliveries,
//! delivery_attempts): one per UTC day of their ids, made ahead of time, and compacted by
//! retention once their day is past it (see the migration `partitions_by_day`, whose SQL
//! functions do the work).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::EventId;

/// Days made ahead of today: a relay whose upkeep stops still stores into days' partitions for
/// that long (and after, into the DEFAULT partitions, until the upkeep runs again).
pub const DAYS_AHEAD: i32 = 3;

/// Makes the partitions from today (UTC) to [`DAYS_AHEAD`] days ahead that do not exist yet;
/// quick when they all do.
pub async fn ensure_ahead(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "SELECT FROM ensure_partitions((now() AT TIME ZONE 'UTC')::date, \
             (now() AT TIME ZONE 'UTC')::date + $1)",
    )
    .bind::<Integer, _>(DAYS_AHEAD)
    .execute(conn)
    .await
    .map(drop)
}

/// A range of ids the growing tables keep in partitions of their own: a day's, or that of the
/// ids stored before the partitioning.
#[derive(Debug, Clone, QueryableByName)]
pub struct Range {
    /// What its partitions' names end with: `20261203`, or `before`.
    #[diesel(sql_type = Text)]
    pub suffix: String,
    /// Its first id; `None`: from the first there is.
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub low: Option<EventId>,
    /// The first id after it.
    #[diesel(sql_type = SqlUuid)]
    pub high: EventId,
    /// When retention last compacted it.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub compacted_at: Option<DateTime<Utc>>,
    /// A compaction of it is under way: some of its partitions are detached.
    #[diesel(sql_type = Bool)]
    pub compacting: bool,
}

impl Range {
    /// Whether retention compacts it now: once its events' arrivals are all older than the
    /// shorter retention, and once more when they are all older than the longer one.
    pub fn due(&self, shorter: Duration, longer: Duration, now: DateTime<Utc>) -> bool {
        let end = self.high.arrival();
        let past =
            |kept: Duration| chrono::Duration::from_std(kept).is_ok_and(|kept| end + kept <= now);
        let longer_end = chrono::Duration::from_std(longer).map(|kept| end + kept);
        self.compacting
            || match self.compacted_at {
                None => past(shorter),
                Some(at) => past(longer) && longer_end.is_ok_and(|end| at < end),
            }
    }
}

/// The ranges of the growing tables' partitions (the DEFAULT ones aside), oldest first, with
/// those whose compaction is under way.
pub async fn ranges(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<Range>> {
    diesel::sql_query(
        "WITH attached AS (SELECT substr(c.relname, 8) AS suffix, \
             substring(pg_get_expr(c.relpartbound, c.oid) FROM $re$FROM \\('([^']+)'\\)$re$) \
                 ::uuid AS low, \
             substring(pg_get_expr(c.relpartbound, c.oid) FROM $re$TO \\('([^']+)'\\)$re$) \
                 ::uuid AS high \
             FROM pg_inherits JOIN pg_class AS c ON c.oid = pg_inherits.inhrelid \
             WHERE pg_inherits.inhparent = 'events'::regclass \
                 AND c.relname <> 'events_default') \
         SELECT suffix, coalesce(attached.low, compacted.low) AS low, \
             coalesce(attached.high, compacted.high) AS high, compacted.compacted_at, \
             EXISTS (SELECT FROM pg_class WHERE relname IN ('events_' || suffix || '_expiring', \
                 'deliveries_' || suffix || '_expiring', \
                 'delivery_attempts_' || suffix || '_expiring')) AS compacting \
         FROM attached FULL JOIN partition_compactions AS compacted USING (suffix) \
         ORDER BY high",
    )
    .load(conn)
    .await
}

/// Detaches the range's three partitions, together, at a moment the three tables are free (for
/// milliseconds); answers false when they were not for 30 s, to be tried again.
pub async fn detach(conn: &mut AsyncPgConnection, range: &Range) -> diesel::QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Detached {
        #[diesel(sql_type = Bool)]
        detached: bool,
    }
    let detached: Detached = diesel::sql_query("SELECT detach_for_compaction($1) AS detached")
        .bind::<Text, _>(&range.suffix)
        .get_result(conn)
        .await?;
    Ok(detached.detached)
}

/// Ends the compaction of a detached range: keeps what stays (see `keep_survivors`), leaving
/// the rest to [`drop_expired`]. Answers the events kept, or `None` when another replica is at
/// it.
pub async fn keep_survivors(
    conn: &mut AsyncPgConnection,
    range: &Range,
    completed_before: DateTime<Utc>,
    failed_before: DateTime<Utc>,
) -> diesel::QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Kept {
        #[diesel(sql_type = Nullable<BigInt>)]
        kept: Option<i64>,
    }
    let kept: Kept = diesel::sql_query("SELECT keep_survivors($1, $2, $3) AS kept")
        .bind::<Text, _>(&range.suffix)
        .bind::<Timestamptz, _>(completed_before)
        .bind::<Timestamptz, _>(failed_before)
        .get_result(conn)
        .await?;
    Ok(kept.kept)
}

/// Drops what compactions left to go (standalone tables no statement reads): empties them
/// first, under their own locks alone, so that dropping them holds the locks of `sources` and
/// `subscriptions`, which ingest waits for, only for catalog work.
pub async fn drop_expired(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    diesel::sql_query("SELECT FROM empty_expired()")
        .execute(conn)
        .await?;
    diesel::sql_query("SELECT FROM drop_expired()")
        .execute(conn)
        .await
        .map(drop)
}

/// The partitions of days that ended at least a day ago and were never vacuumed, oldest first,
/// quoted for SQL: their rows hardly change any more (retries end within hours). See
/// [`vacuum`].
pub async fn settled_unvacuumed(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let tables: Vec<Table> = diesel::sql_query(
        "SELECT quote_ident(relname) AS name FROM pg_stat_user_tables \
         WHERE relname ~ '^(events|deliveries|delivery_attempts)_[0-9]{8}$' \
             AND right(relname, 8) < to_char(now() AT TIME ZONE 'UTC' - interval '1 day', \
                 'YYYYMMDD') \
             AND last_vacuum IS NULL AND last_autovacuum IS NULL \
         ORDER BY right(relname, 8), relname",
    )
    .load(conn)
    .await?;
    Ok(tables.into_iter().map(|table| table.name).collect())
}

/// Vacuums a settled day's partition once, at autovacuum's pace, skipping it when another
/// replica is at it. The visibility map this leaves lets counts and searches over past days
/// read their indexes alone: counting the graveyard read 22,826 pages before, 270 after, at
/// 40,000 failed deliveries. These machines run without autovacuum, which would do as much
/// for tables that are only inserted into.
pub async fn vacuum(conn: &mut AsyncPgConnection, quoted: &str) -> diesel::QueryResult<()> {
    diesel::sql_query("SET vacuum_cost_delay = '2ms'")
        .execute(conn)
        .await?;
    let vacuumed = diesel::sql_query(format!("VACUUM (SKIP_LOCKED) {quoted}"))
        .execute(conn)
        .await;
    diesel::sql_query("RESET vacuum_cost_delay")
        .execute(conn)
        .await?;
    vacuumed.map(drop)
}

/// Where retention stops removing rows one by one: the first id of the oldest day's range not
/// compacted yet, whose rows go with its partitions. `None`: there is no such range.
pub fn row_by_row_until(ranges: &[Range]) -> Option<EventId> {
    ranges
        .iter()
        .filter(|range| range.suffix != "before" && range.compacted_at.is_none())
        .filter(|range| !range.compacting)
        .filter_map(|range| range.low)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(days_ago: i64, compacted_days_ago: Option<i64>) -> Range {
        let now = Utc::now();
        Range {
            suffix: "20261203".into(),
            low: Some(EventId::first_at(
                now - chrono::TimeDelta::days(days_ago + 1),
            )),
            high: EventId::first_at(now - chrono::TimeDelta::days(days_ago)),
            compacted_at: compacted_days_ago.map(|ago| now - chrono::TimeDelta::days(ago)),
            compacting: false,
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_range_is_compacted_past_the_shorter_retention_and_again_past_the_longer() {
        let (shorter, longer, now) = (DAY * 30, DAY * 90, Utc::now());
        assert!(!day(29, None).due(shorter, longer, now));
        assert!(day(31, None).due(shorter, longer, now));
        // Compacted once: again only past the longer retention.
        assert!(!day(60, Some(29)).due(shorter, longer, now));
        assert!(day(91, Some(60)).due(shorter, longer, now));
        // Compacted past both: done.
        assert!(!day(95, Some(2)).due(shorter, longer, now));
        let mut detached = day(1, None);
        detached.compacting = true;
        assert!(
            detached.due(shorter, longer, now),
            "an unfinished one is finished"
        );
    }

    #[test]
    fn rows_are_removed_one_by_one_only_below_the_oldest_range_not_compacted() {
        let ranges = vec![day(40, Some(5)), day(20, None), day(10, None)];
        assert_eq!(row_by_row_until(&ranges), ranges[1].low);
        assert_eq!(row_by_row_until(&ranges[..1]), None);
    }
}
