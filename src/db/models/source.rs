//! `sources`: what faces a provider: a name, the ingest URL's token and the provider check.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{source_hours, sources, subscriptions};
use crate::domain::{SourceId, SubscriptionId, WorkspaceId};

/// A source as stored. `Debug` leaves out its token and the provider's secret.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = sources)]
pub struct Source {
    pub id: SourceId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub ingest_token: String,
    /// The provider whose signatures ingest checks, secret included (never shown).
    pub provider: Option<serde_json::Value>,
    /// Made for a subscription created without a source; deleted with its last subscription.
    pub implicit: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What an accepted request is answered with, when not the default (a `ResponseConfig`).
    pub response: Option<serde_json::Value>,
    /// When the relay last answered (or refused) the provider's handshake, and how.
    pub last_handshake_at: Option<DateTime<Utc>>,
    pub last_handshake_outcome: Option<String>,
    /// When a handshake was last answered (the last one may have been refused since).
    pub last_handshake_answered_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("name", &self.name)
            .field(
                "provider",
                &self
                    .provider
                    .as_ref()
                    .and_then(|provider| provider.get("kind")),
            )
            .field("implicit", &self.implicit)
            .finish_non_exhaustive()
    }
}

/// A source to create. No `Debug`: it holds the token and the provider's secret.
#[derive(Insertable)]
#[diesel(table_name = sources)]
pub struct NewSource<'a> {
    pub id: SourceId,
    pub workspace_id: WorkspaceId,
    pub name: &'a str,
    pub ingest_token: &'a str,
    pub provider: Option<serde_json::Value>,
    pub response: Option<serde_json::Value>,
    pub implicit: bool,
}

/// The fields an edit may change; `None` leaves a field as it is. No `Debug`: a provider holds
/// its secret.
#[derive(Default, AsChangeset)]
#[diesel(table_name = sources)]
pub struct SourceChanges<'a> {
    pub name: Option<&'a str>,
    pub provider: Option<Option<serde_json::Value>>,
    pub response: Option<Option<serde_json::Value>>,
}

/// Stores a new source.
pub async fn insert(conn: &mut AsyncPgConnection, source: &NewSource<'_>) -> QueryResult<Source> {
    diesel::insert_into(sources::table)
        .values(source)
        .returning(Source::as_returning())
        .get_result(conn)
        .await
}

/// A workspace's sources, oldest first.
pub async fn list_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
) -> QueryResult<Vec<Source>> {
    sources::table
        .filter(sources::workspace_id.eq(workspace))
        .order(sources::created_at.asc())
        .select(Source::as_select())
        .load(conn)
        .await
}

/// A workspace's sources of this name (names need not be unique), oldest first.
pub async fn named_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    name: &str,
) -> QueryResult<Vec<Source>> {
    sources::table
        .filter(sources::name.eq(name))
        .filter(sources::workspace_id.eq(workspace))
        .order(sources::created_at)
        .select(Source::as_select())
        .load(conn)
        .await
}

/// One of a workspace's sources; someone else's is `None`, exactly like a missing one.
pub async fn find_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: SourceId,
) -> QueryResult<Option<Source>> {
    sources::table
        .filter(sources::id.eq(id))
        .filter(sources::workspace_id.eq(workspace))
        .select(Source::as_select())
        .first(conn)
        .await
        .optional()
}

/// How much a source has: its subscriptions, and the events it received in a recent window.
#[derive(Debug, Clone, QueryableByName)]
pub struct SourceCounts {
    #[diesel(sql_type = SqlUuid)]
    pub source_id: SourceId,
    #[diesel(sql_type = BigInt)]
    pub subscriptions: i64,
    /// Events received since the window's start, routed or not.
    #[diesel(sql_type = BigInt)]
    pub events: i64,
}

/// Each of a workspace's sources' subscriptions, and the events it received since `since`
/// (`since` and `settled` on the hour). Each hour before `settled` is counted once, into
/// `source_hours`, and read from there; only the events since `settled` are counted, so the list
/// reads about an hour of a busy source's events rather than a day. Events walk the
/// `(source_id, id)` index from an id bound rather than scanning by time (event ids carry their
/// arrival).
pub async fn counts_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    since: DateTime<Utc>,
    settled: DateTime<Utc>,
) -> QueryResult<Vec<SourceCounts>> {
    let owners: Vec<SourceId> = sources::table
        .filter(sources::workspace_id.eq(workspace))
        .select(sources::id)
        .load(conn)
        .await?;
    let kept: Vec<(SourceId, DateTime<Utc>)> = source_hours::table
        .filter(source_hours::source_id.eq_any(&owners))
        .filter(source_hours::hour.ge(since))
        .select((source_hours::source_id, source_hours::hour))
        .load(conn)
        .await?;
    let (missing, hours) = super::hours_missing(&owners, since, settled, &kept);
    if !missing.is_empty() {
        // Two lists counting the same hour at once count the same events: either's count will
        // do.
        diesel::sql_query(
            "INSERT INTO source_hours (source_id, hour, events) \
             SELECT missing.id, missing.hour, (SELECT count(*) FROM events e \
                 WHERE e.source_id = missing.id AND e.id >= first_id_at(missing.hour) \
                     AND e.id < first_id_at(missing.hour + interval '1 hour')) \
             FROM unnest($1, $2) AS missing (id, hour) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<Array<SqlUuid>, _>(&missing)
        .bind::<Array<Timestamptz>, _>(&hours)
        .execute(conn)
        .await?;
        diesel::delete(
            source_hours::table
                .filter(source_hours::source_id.eq_any(&owners))
                .filter(source_hours::hour.lt(since)),
        )
        .execute(conn)
        .await?;
    }
    diesel::sql_query(
        "SELECT s.id AS source_id, \
             (SELECT count(*) FROM subscriptions b WHERE b.source_id = s.id) AS subscriptions, \
             (SELECT coalesce(sum(k.events), 0)::bigint FROM source_hours k \
                 WHERE k.source_id = s.id AND k.hour >= $2 AND k.hour < $3) \
             + (SELECT count(*) FROM events e \
                 WHERE e.source_id = s.id AND e.id >= first_id_at($3)) AS events \
         FROM sources s WHERE s.workspace_id = $1",
    )
    .bind::<SqlUuid, _>(workspace)
    .bind::<Timestamptz, _>(since)
    .bind::<Timestamptz, _>(settled)
    .load(conn)
    .await
}

/// Applies an edit to one of a workspace's sources; `None` when it is not theirs.
pub async fn update_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: SourceId,
    changes: &SourceChanges<'_>,
) -> QueryResult<Option<Source>> {
    diesel::update(
        sources::table
            .filter(sources::id.eq(id))
            .filter(sources::workspace_id.eq(workspace)),
    )
    .set((changes, sources::updated_at.eq(diesel::dsl::now)))
    .returning(Source::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Deletes one of a workspace's sources and, with it, its subscriptions and events; whether it
/// existed.
pub async fn delete_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: SourceId,
) -> QueryResult<bool> {
    diesel::delete(
        sources::table
            .filter(sources::id.eq(id))
            .filter(sources::workspace_id.eq(workspace)),
    )
    .execute(conn)
    .await
    .map(|deleted| deleted > 0)
}

/// Whether deleting the subscription deletes its source too: the source was made for it, and
/// no other subscription uses it (see [`delete_if_implicit_and_unused`]).
pub async fn goes_with(
    conn: &mut AsyncPgConnection,
    subscription: SubscriptionId,
) -> QueryResult<bool> {
    let others = diesel::alias!(subscriptions as others);
    subscriptions::table
        .inner_join(sources::table)
        .filter(subscriptions::id.eq(subscription))
        .select(
            sources::implicit.and(diesel::dsl::not(diesel::dsl::exists(
                others
                    .filter(others.field(subscriptions::source_id).eq(sources::id))
                    .filter(others.field(subscriptions::id).ne(subscription)),
            ))),
        )
        .first(conn)
        .await
        .optional()
        .map(|goes| goes.unwrap_or(false))
}

/// Deletes the source if it was made for a subscription and none is left on it.
pub async fn delete_if_implicit_and_unused(
    conn: &mut AsyncPgConnection,
    id: SourceId,
) -> QueryResult<bool> {
    diesel::delete(
        sources::table
            .filter(sources::id.eq(id))
            .filter(sources::implicit)
            .filter(diesel::dsl::not(diesel::dsl::exists(
                subscriptions::table.filter(subscriptions::source_id.eq(sources::id)),
            ))),
    )
    .execute(conn)
    .await
    .map(|deleted| deleted > 0)
}

/// What ingest routes a source's events by, read in one statement: the source, its provider
/// check, its routing version and each subscription's filter.
pub struct Routing {
    pub source_id: SourceId,
    pub workspace_id: WorkspaceId,
    /// The provider check, secret included.
    pub provider: Option<serde_json::Value>,
    /// What an accepted request is answered with, when set.
    pub response: Option<serde_json::Value>,
    /// Bumped by the database whenever where the source's events go changes.
    pub version: i64,
    /// Each subscription, with its filter as stored.
    pub subscriptions: Vec<(SubscriptionId, Option<serde_json::Value>)>,
}

/// How the source with this ingest token routes its events; `None` when no source has it.
pub async fn routing_for_token(
    conn: &mut AsyncPgConnection,
    token: &str,
) -> QueryResult<Option<Routing>> {
    type Row = (
        SourceId,
        WorkspaceId,
        Option<serde_json::Value>,
        Option<serde_json::Value>,
        i64,
        Option<SubscriptionId>,
        Option<serde_json::Value>,
    );
    let rows: Vec<Row> = sources::table
        .left_join(subscriptions::table)
        .filter(sources::ingest_token.eq(token))
        .order(subscriptions::id.nullable().asc())
        .select((
            sources::id,
            sources::workspace_id,
            sources::provider,
            sources::response,
            sources::routing_version,
            subscriptions::id.nullable(),
            subscriptions::filter.nullable(),
        ))
        .load(conn)
        .await?;
    let mut rows = rows.into_iter().peekable();
    let Some((source_id, workspace_id, provider, response, version, _, _)) = rows.peek().cloned()
    else {
        return Ok(None);
    };
    Ok(Some(Routing {
        source_id,
        workspace_id,
        provider,
        response,
        version,
        subscriptions: rows
            .filter_map(|(.., subscription, filter)| Some((subscription?, filter)))
            .collect(),
    }))
}

/// The outcome of a handshake the relay answered.
pub const ANSWERED: &str = "answered";

/// Notes that the source answered ([`ANSWERED`]) or refused (the reason) its provider's
/// handshake just now.
pub async fn record_handshake(
    conn: &mut AsyncPgConnection,
    id: SourceId,
    outcome: &str,
) -> QueryResult<()> {
    // No column here is part of the routing, so no routing version changes.
    let source = sources::table.filter(sources::id.eq(id));
    let noted = (
        sources::last_handshake_at.eq(diesel::dsl::now),
        sources::last_handshake_outcome.eq(outcome),
    );
    if outcome == ANSWERED {
        diesel::update(source)
            .set((
                noted,
                sources::last_handshake_answered_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await
    } else {
        diesel::update(source).set(noted).execute(conn).await
    }
    .map(drop)
}
