//! `events`: what providers sent, exactly as sent, stored once for their source, and routed
//! at ingest to a delivery for each subscription of the source.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{
    Array, BigInt, Bool, Bytea, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{events, sources};
use crate::domain::{
    DeliveryId, EventId, EventStatus, IngestToken, SourceId, SubscriptionId, WorkspaceId,
};

/// An event as the API shows it, body included.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: EventId,
    pub source_id: SourceId,
    pub body: Vec<u8>,
    pub payload: Option<serde_json::Value>,
    pub content_type: Option<String>,
    pub headers: serde_json::Value,
    pub received_at: DateTime<Utc>,
    /// The path it was posted to after the token (`""` or starting with `/`), and its raw query.
    pub path: String,
    pub query: String,
}

/// An event as received at an ingest URL, to store. Owned: it waits for its batch.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The ingest token it arrived with, which names its source.
    pub token: IngestToken,
    /// The source's routing version `routes` were chosen at: the event is stored only if it is
    /// still the source's (see [`Accepted::current`]). `None`: stored whatever it is.
    pub routing_version: Option<i64>,
    /// The subscriptions of its source it is to be delivered to.
    pub routes: Vec<SubscriptionId>,
    pub id: EventId,
    pub body: Bytes,
    pub payload: Option<serde_json::Value>,
    pub content_type: Option<String>,
    pub headers: serde_json::Value,
    /// The path it was posted to after the token (`""` or starting with `/`), and its raw query.
    pub path: String,
    pub query: String,
    /// The provider's id for the event: a second event with the same key is a retry of the
    /// first and is not stored again.
    pub idempotency_key: Option<String>,
}

/// One delivery made for a stored event, with what its envelope needs.
#[derive(Debug, Clone)]
pub struct Routed {
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
    pub target_url: String,
}

/// What ingest learns of one event from the accept statement.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The event as it arrived (whether stored or not).
    pub id: EventId,
    pub source_id: SourceId,
    /// The source's owner, whose pages hear of the event.
    pub workspace_id: WorkspaceId,
    /// Whether the event's routes were chosen at the source's current routing version; when
    /// not, nothing was stored and it must be routed again.
    pub current: bool,
    /// The stored event's id; `None` when nothing was stored: its routes are out of date, or
    /// its idempotency key was seen before.
    pub stored: Option<EventId>,
    /// The deliveries made for it, one per subscription it was routed to.
    pub deliveries: Vec<Routed>,
}

/// One row of the accept statement: an event, and one of its deliveries if it has any.
#[derive(Queryable)]
struct AcceptedRow {
    id: EventId,
    source_id: SourceId,
    workspace_id: WorkspaceId,
    current: bool,
    stored: Option<EventId>,
    delivery: Option<DeliveryId>,
    subscription_id: Option<SubscriptionId>,
    target_url: Option<String>,
}

/// How long an idempotency key is remembered: a repeat that arrives later is stored and
/// delivered again. Providers retry for less (Stripe for 3 days, Shopify for 2, Svix for about
/// one), and looking further back would read more days' partitions for every keyed event.
pub const IDEMPOTENCY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// The first id an idempotency key is looked for from.
fn idempotency_since() -> EventId {
    EventId::first_at(Utc::now() - IDEMPOTENCY_WINDOW)
}

/// The ingest statement: looks up the tokens, stores the events and makes each a delivery per
/// subscription it was routed to, any number of events, in one round trip, so that the lookups,
/// the events and their deliveries commit together or not at all: a `202` means every delivery
/// is durable. An event is stored only when the routing version its routes were chosen at is
/// still its source's (the statement's snapshot sees one version of the source and its
/// subscriptions). A repeated idempotency key stores nothing, also within the batch: each key is
/// looked up under a lock on it (`idempotency_key_seen`, in the migrations), taken in the keys'
/// order so that two batches with the same keys wait for each other rather than deadlock.
/// Hand-written (a CTE over `unnest` the query builder cannot express) with a static query id,
/// so it is prepared once per connection whatever the batch's size.
struct AcceptEvents<'a> {
    tokens: Vec<&'a str>,
    versions: Vec<Option<i64>>,
    ids: Vec<EventId>,
    /// The arrival each id carries.
    received_at: Vec<DateTime<Utc>>,
    bodies: Vec<&'a [u8]>,
    payloads: Vec<Option<&'a serde_json::Value>>,
    content_types: Vec<Option<&'a str>>,
    headers: Vec<&'a serde_json::Value>,
    paths: Vec<&'a str>,
    queries: Vec<&'a str>,
    keys: Vec<Option<&'a str>>,
    /// The first id a key is looked for from (see [`IDEMPOTENCY_WINDOW`]).
    since: EventId,
    /// The routes, as pairs: an event and one subscription it goes to.
    routed_events: Vec<EventId>,
    routed_subscriptions: Vec<SubscriptionId>,
}

impl QueryId for AcceptEvents<'_> {
    type QueryId = AcceptEvents<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for AcceptEvents<'_> {
    type SqlType = (
        SqlUuid,
        SqlUuid,
        SqlUuid,
        Bool,
        Nullable<SqlUuid>,
        Nullable<SqlUuid>,
        Nullable<SqlUuid>,
        Nullable<Text>,
    );
}

impl QueryFragment<Pg> for AcceptEvents<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH arriving AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.tokens)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.versions)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlUuid>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.received_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bytea>, _>(&self.bodies)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Jsonb>>, _>(&self.payloads)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.content_types)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Jsonb>, _>(&self.headers)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.paths)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.queries)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.keys)?;
        out.push_sql(
            ") AS arriving (token, routing_version, id, received_at, body, payload, \
                 content_type, headers, path, query, idempotency_key)), \
             routes AS (SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<SqlUuid>, _>(&self.routed_events)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlUuid>, _>(&self.routed_subscriptions)?;
        out.push_sql(
            ") AS routes (event_id, subscription_id)), \
             matched AS (SELECT arriving.*, sources.id AS source_id, sources.workspace_id, \
                 sources.routing_version = arriving.routing_version IS NOT FALSE AS current \
                 FROM arriving JOIN sources ON sources.ingest_token = arriving.token), \
             keyed AS MATERIALIZED (SELECT source_id, idempotency_key, \
                     idempotency_key_seen(source_id, idempotency_key, ",
        );
        out.push_bind_param::<SqlUuid, _>(&self.since)?;
        out.push_sql(
            ") AS seen \
                 FROM (SELECT DISTINCT source_id, idempotency_key FROM matched \
                     WHERE current AND idempotency_key IS NOT NULL) AS keys \
                 ORDER BY source_id, idempotency_key), \
             inserted AS (INSERT INTO events (id, received_at, source_id, body, payload, \
                 content_type, headers, path, query, idempotency_key) \
                 SELECT id, received_at, source_id, body, payload, content_type, headers, path, \
                     query, idempotency_key \
                 FROM (SELECT matched.*, row_number() OVER (PARTITION BY matched.source_id, \
                         matched.idempotency_key ORDER BY matched.id) AS nth \
                     FROM matched WHERE current) AS candidates \
                 LEFT JOIN keyed USING (source_id, idempotency_key) \
                 WHERE idempotency_key IS NULL OR (nth = 1 AND NOT keyed.seen) \
                 ORDER BY source_id, idempotency_key, id \
                 RETURNING id, source_id), \
             routed AS (INSERT INTO deliveries (id, event_id, subscription_id, next_attempt_at) \
                 SELECT delivery_id(inserted.id), inserted.id, subscriptions.id, now() \
                 FROM inserted JOIN routes ON routes.event_id = inserted.id \
                 JOIN subscriptions ON subscriptions.id = routes.subscription_id \
                     AND subscriptions.source_id = inserted.source_id \
                 ORDER BY inserted.id, subscriptions.id \
                 RETURNING id, event_id, subscription_id) \
             SELECT matched.id, matched.source_id, matched.workspace_id, matched.current, \
                 inserted.id, routed.id, routed.subscription_id, subscriptions.target_url \
             FROM matched LEFT JOIN inserted ON inserted.id = matched.id \
             LEFT JOIN routed ON routed.event_id = inserted.id \
             LEFT JOIN subscriptions ON subscriptions.id = routed.subscription_id",
        );
        Ok(())
    }
}

/// Stores these events, each for the source that owns its token (see [`Accepted`] for when one
/// is not stored), with their deliveries, in one statement; what it learnt of each event whose
/// token a source owns. The caller commits them together.
pub async fn accept_all(
    conn: &mut AsyncPgConnection,
    events: &[NewEvent],
) -> QueryResult<Vec<Accepted>> {
    let rows: Vec<AcceptedRow> = AcceptEvents {
        tokens: events.iter().map(|event| event.token.as_str()).collect(),
        versions: events.iter().map(|event| event.routing_version).collect(),
        ids: events.iter().map(|event| event.id).collect(),
        received_at: events.iter().map(|event| event.id.arrival()).collect(),
        bodies: events.iter().map(|event| event.body.as_ref()).collect(),
        payloads: events.iter().map(|event| event.payload.as_ref()).collect(),
        content_types: events
            .iter()
            .map(|event| event.content_type.as_deref())
            .collect(),
        headers: events.iter().map(|event| &event.headers).collect(),
        paths: events.iter().map(|event| event.path.as_str()).collect(),
        queries: events.iter().map(|event| event.query.as_str()).collect(),
        routed_events: events
            .iter()
            .flat_map(|event| event.routes.iter().map(|_| event.id))
            .collect(),
        routed_subscriptions: events
            .iter()
            .flat_map(|event| event.routes.iter().copied())
            .collect(),
        keys: events
            .iter()
            .map(|event| event.idempotency_key.as_deref())
            .collect(),
        since: idempotency_since(),
    }
    .load(conn)
    .await?;
    let mut accepted: Vec<Accepted> = Vec::with_capacity(events.len());
    for row in rows {
        let routed = match (row.delivery, row.subscription_id, row.target_url) {
            (Some(id), Some(subscription_id), Some(target_url)) => Some(Routed {
                id,
                subscription_id,
                target_url,
            }),
            _ => None,
        };
        match accepted.iter_mut().rev().find(|event| event.id == row.id) {
            Some(event) => event.deliveries.extend(routed),
            None => accepted.push(Accepted {
                id: row.id,
                source_id: row.source_id,
                workspace_id: row.workspace_id,
                current: row.current,
                stored: row.stored,
                deliveries: routed.into_iter().collect(),
            }),
        }
    }
    Ok(accepted)
}

/// The event a source stored under an idempotency key within [`IDEMPOTENCY_WINDOW`].
pub async fn find_by_idempotency_key(
    conn: &mut AsyncPgConnection,
    source: SourceId,
    key: &str,
) -> QueryResult<Option<EventId>> {
    events::table
        .filter(events::source_id.eq(source))
        .filter(events::idempotency_key.eq(key))
        .filter(events::id.ge(idempotency_since()))
        .order(events::id.desc())
        .select(events::id)
        .first(conn)
        .await
        .optional()
}

/// One of a workspace's events; someone else's is `None`, exactly like a missing one.
pub async fn find_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: EventId,
) -> QueryResult<Option<Event>> {
    events::table
        .inner_join(sources::table)
        .filter(events::id.eq(id))
        .filter(sources::workspace_id.eq(workspace))
        .select(Event::as_select())
        .first(conn)
        .await
        .optional()
}

/// The headers an event arrived with, as kept (credentials left out).
pub async fn headers_of(
    conn: &mut AsyncPgConnection,
    id: EventId,
) -> QueryResult<serde_json::Value> {
    events::table
        .find(id)
        .select(events::headers)
        .first(conn)
        .await
}

/// An event as a source's list shows it: no body, and its deliveries' statuses.
#[derive(Debug, Clone, QueryableByName)]
pub struct EventLine {
    #[diesel(sql_type = SqlUuid)]
    pub id: EventId,
    #[diesel(sql_type = SqlUuid)]
    pub source_id: SourceId,
    #[diesel(sql_type = Nullable<Text>)]
    pub content_type: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub received_at: DateTime<Utc>,
    /// Its deliveries' statuses; empty when no subscription took it.
    #[diesel(sql_type = Array<Text>)]
    pub statuses: Vec<EventStatus>,
}

impl EventLine {
    /// Its status: its deliveries' rolled up.
    pub fn status(&self) -> EventStatus {
        EventStatus::roll_up(self.statuses.iter().copied())
    }
}

/// A page of a source's events, newest first, before `before` when given.
pub async fn list_for_source(
    conn: &mut AsyncPgConnection,
    source: SourceId,
    before: Option<EventId>,
    limit: i64,
) -> QueryResult<Vec<EventLine>> {
    diesel::sql_query(
        "SELECT e.id, e.source_id, e.content_type, e.received_at, \
             coalesce((SELECT array_agg(d.status ORDER BY d.id) FROM deliveries d \
                 WHERE d.event_id = e.id), '{}') AS statuses \
         FROM events e WHERE e.source_id = $1 AND ($2::uuid IS NULL OR e.id < $2) \
         ORDER BY e.id DESC LIMIT $3",
    )
    .bind::<SqlUuid, _>(source)
    .bind::<Nullable<SqlUuid>, _>(before)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// A source's most recent events, bodies included, newest first.
pub async fn recent_for_source(
    conn: &mut AsyncPgConnection,
    source: SourceId,
    limit: i64,
) -> QueryResult<Vec<Event>> {
    events::table
        .filter(events::source_id.eq(source))
        .order(events::id.desc())
        .limit(limit)
        .select(Event::as_select())
        .load(conn)
        .await
}
