//! `spenza listen`: the `cli` subscription a session attaches to, made on the first `listen`
//! with its name and reused by the next, and the sessions connected to a source's.

use diesel_async::AsyncConnection;
use uuid::Uuid;

use super::Principal;
use super::{Actor, Permission, ServiceError};
use crate::db::models::audit;
use crate::db::models::listen_session::{self, NewListenSession};
use crate::db::models::source::{self, Source};
use crate::db::models::subscription::{self, NewSubscription, Subscription, SubscriptionChanges};
use crate::domain::{
    ApiKeyId, Filter, Policy, SigningSecret, SourceId, SubscriptionId, SubscriptionKind,
};
use crate::listen::protocol::ListenQuery;
use crate::state::AppState;

/// What a `listen` attached to.
pub struct Attached {
    pub subscription: Subscription,
    pub source: Source,
}

/// The source a `listen` names, by id or by name, and its `cli` subscription of the name given,
/// made if it has none, with the filter given (none: every event).
pub async fn attach(
    state: &AppState,
    actor: &Actor,
    query: &ListenQuery,
) -> Result<Attached, ServiceError> {
    actor.require(Permission::Change)?;
    let key = key_of(actor)?;
    let limit = state.listen.sessions_per_holder;
    if !state
        .db
        .run(async |conn| listen_session::has_room(conn, key, limit).await)
        .await?
    {
        return Err(too_many(limit));
    }
    let name = query.name.trim();
    super::subscriptions::valid_name(name, &())
        .map_err(|error| ServiceError::invalid("name", error.message().to_string()))?;
    let filter = query
        .filter
        .as_deref()
        .map(|text| {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
                ServiceError::invalid("filter", format!("the filter is not JSON: {error}"))
            })?;
            Filter::parse(&value)
                .map_err(|error| ServiceError::invalid("filter", error.to_string()))?;
            Ok::<_, ServiceError>(value)
        })
        .transpose()?;
    let secret = SigningSecret::generate();
    let target = format!(
        "cli://{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    );
    state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let Some(source) = find_source(conn, actor, &query.source).await? else {
                    return Ok(Err(ServiceError::NotFound("source")));
                };
                let source = match source {
                    Ok(source) => source,
                    Err(conflict) => return Ok(Err(conflict)),
                };
                let subscription = match subscription::find_listen(conn, source.id, name).await? {
                    Some(found) if found.filter == filter => found,
                    Some(found) => {
                        let changes = SubscriptionChanges {
                            filter: Some(filter.as_ref()),
                            ..SubscriptionChanges::default()
                        };
                        let line = actor
                            .audit("subscription.updated", "subscription", found.id)
                            .detail("filter set by spenza listen");
                        audit::append(conn, &[line]).await?;
                        subscription::update_in_workspace(conn, actor.workspace, found.id, &changes)
                            .await?
                            .unwrap_or(found)
                    }
                    None => {
                        let new = NewSubscription {
                            id: SubscriptionId(Uuid::new_v4()),
                            workspace_id: actor.workspace,
                            source_id: source.id,
                            name,
                            target_url: &target,
                            signing_secret: secret.expose(),
                            filter: filter.as_ref(),
                            // The CLI appends what followed the ingest token to its local URL.
                            forward_path: true,
                            policy: Policy::default().to_stored(),
                            kind: SubscriptionKind::Cli,
                        };
                        let created = subscription::insert(conn, &new).await?;
                        let line = actor
                            .audit("subscription.created", "subscription", created.id)
                            .detail("by spenza listen");
                        audit::append(conn, &[line]).await?;
                        created
                    }
                };
                Ok(Ok(Attached {
                    subscription,
                    source,
                }))
            })
            .await
        })
        .await?
}

/// The workspace's source named by `reference`: its id, or its name when that is not one. Two
/// sources of one name are a conflict, settled by giving the id.
async fn find_source(
    conn: &mut diesel_async::AsyncPgConnection,
    actor: &Actor,
    reference: &str,
) -> diesel::QueryResult<Option<Result<Source, ServiceError>>> {
    if let Ok(id) = reference.parse::<Uuid>()
        && let Some(found) = source::find_in_workspace(conn, actor.workspace, SourceId(id)).await?
    {
        return Ok(Some(Ok(found)));
    }
    let mut named = source::named_in_workspace(conn, actor.workspace, reference.trim()).await?;
    Ok(match named.len() {
        0 => None,
        1 => named.pop().map(Ok),
        count => Some(Err(ServiceError::Conflict(format!(
            "{count} sources are named {reference:?}: give the id of the one to listen to"
        )))),
    })
}

/// Opens a session on `subscription` for the key `actor` acts with, unless its holder has as
/// many connected as the relay allows.
pub async fn open_session(
    state: &AppState,
    actor: &Actor,
    subscription: SubscriptionId,
) -> Result<Uuid, ServiceError> {
    let key = key_of(actor)?;
    let id = Uuid::new_v4();
    let config = &state.listen;
    let session = NewListenSession {
        id,
        subscription_id: subscription,
        api_key: key,
        address: actor.ip.as_deref(),
        replica: &config.replica,
    };
    let opened = state
        .db
        .run(async |conn| listen_session::open(conn, &session, config.sessions_per_holder).await)
        .await?;
    if opened {
        Ok(id)
    } else {
        Err(too_many(config.sessions_per_holder))
    }
}

/// The key a `listen` authenticates with: sessions are a key's, never a browser's.
fn key_of(actor: &Actor) -> Result<ApiKeyId, ServiceError> {
    match actor.who {
        Principal::Key { id, .. } => Ok(id),
        Principal::User { .. } => Err(ServiceError::Forbidden(
            "spenza listen authenticates with an API key",
        )),
    }
}

fn too_many(limit: u32) -> ServiceError {
    ServiceError::Limited(format!(
        "{limit} spenza listen sessions of yours are connected, the most this relay allows \
         (SPENZA_LISTEN_SESSIONS): stop one first"
    ))
}
