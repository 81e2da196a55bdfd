//! `rejected_requests`: the last requests each source refused, so that its owner can see why
//! (most often: a secret pasted wrong).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Bytea, Integer, Jsonb, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::rejected_requests;
use crate::domain::SourceId;

/// How many refused requests are kept per source.
pub const KEPT_PER_SOURCE: i64 = 100;

/// A refused request as stored: credentials already masked, the body cut to a sample.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rejected_requests)]
pub struct RejectedRequest {
    pub id: uuid::Uuid,
    pub source_id: SourceId,
    pub received_at: DateTime<Utc>,
    /// A `Rejection::reason`.
    pub reason: String,
    pub handshake: bool,
    pub method: String,
    /// The path and query, the key of an `api_key` source masked.
    pub path: String,
    /// `{name: value}`, credentials masked.
    pub headers: serde_json::Value,
    pub body_sample: Vec<u8>,
    /// The whole body's length.
    pub body_bytes: i32,
}

/// A refused request to keep.
pub struct NewRejected<'a> {
    pub source_id: SourceId,
    pub reason: &'a str,
    pub handshake: bool,
    pub method: &'a str,
    pub path: &'a str,
    pub headers: serde_json::Value,
    pub body_sample: &'a [u8],
    pub body_bytes: i32,
}

/// Keeps a refused request and, in the same statement, forgets the source's older ones past
/// [`KEPT_PER_SOURCE`]. The delete sees the table as it was before the statement, so it keeps
/// one fewer than the limit beside the new row.
pub async fn record(conn: &mut AsyncPgConnection, rejected: &NewRejected<'_>) -> QueryResult<()> {
    diesel::sql_query(
        "WITH added AS ( \
             INSERT INTO rejected_requests \
                 (id, source_id, reason, handshake, method, path, headers, body_sample, body_bytes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id \
         ) \
         DELETE FROM rejected_requests \
         WHERE source_id = $2 AND id IN ( \
             SELECT id FROM rejected_requests WHERE source_id = $2 \
             ORDER BY received_at DESC, id DESC OFFSET $10 - 1 \
         )",
    )
    .bind::<SqlUuid, _>(uuid::Uuid::now_v7())
    .bind::<SqlUuid, _>(rejected.source_id)
    .bind::<Text, _>(rejected.reason)
    .bind::<Bool, _>(rejected.handshake)
    .bind::<Text, _>(rejected.method)
    .bind::<Text, _>(rejected.path)
    .bind::<Jsonb, _>(&rejected.headers)
    .bind::<Bytea, _>(rejected.body_sample)
    .bind::<Integer, _>(rejected.body_bytes)
    .bind::<BigInt, _>(KEPT_PER_SOURCE)
    .execute(conn)
    .await
    .map(drop)
}

/// A source's refused requests, newest first.
pub async fn recent(
    conn: &mut AsyncPgConnection,
    source: SourceId,
    limit: i64,
) -> QueryResult<Vec<RejectedRequest>> {
    rejected_requests::table
        .filter(rejected_requests::source_id.eq(source))
        .order((
            rejected_requests::received_at.desc(),
            rejected_requests::id.desc(),
        ))
        .limit(limit)
        .select(RejectedRequest::as_select())
        .load(conn)
        .await
}
