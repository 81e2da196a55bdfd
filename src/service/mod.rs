//! What a user can do, whichever door they come through. The JSON API and the dashboard both call
//! these functions, which hold the rules: validation, the SSRF check on target URLs, re-enabling
//! with the release of held events, replaying only what is final. Handlers translate requests
//! and render answers; neither holds a rule or a query.

pub mod access;
pub mod api_keys;
pub mod channels;
pub mod events;
pub mod filters;
pub mod issues;
pub mod listen;
pub mod members;
pub mod policy;
pub mod provider_form;
pub mod sources;
mod subscription_form;
pub mod subscriptions;

pub use access::{Actor, Permission, Principal};
pub use subscription_form::SubscriptionForm;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::BoxFuture;

use crate::db::models::audit::{self, NewEntry};
use crate::db::{Database, DbError};
use crate::problem::FieldError;

/// Deletes something of a workspace with `delete` and, when it deleted it, writes `line`, in one
/// transaction; `NotFound(what)` when there was nothing to delete.
async fn delete_audited(
    db: &Database,
    what: &'static str,
    line: NewEntry,
    delete: impl for<'c> FnOnce(&'c mut AsyncPgConnection) -> BoxFuture<'c, diesel::QueryResult<bool>>
    + Send,
) -> Result<(), ServiceError> {
    let deleted = db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let deleted = delete(conn).await?;
                if deleted {
                    audit::append(conn, &[line]).await?;
                }
                Ok(deleted)
            })
            .await
        })
        .await?;
    if deleted {
        Ok(())
    } else {
        Err(ServiceError::NotFound(what))
    }
}

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Missing, or somebody else's: the two are indistinguishable on purpose.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The actor's role does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The object is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The actor has as much of something as the relay allows.
    #[error("{0}")]
    Limited(String),
    /// The input failed validation, field by field.
    #[error("the input is invalid")]
    Invalid(Vec<FieldError>),
    /// PostgreSQL failed or did not answer in time.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A bug or an unforeseen failure.
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl ServiceError {
    /// An invalid input, blamed on one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Invalid(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }
}

impl From<garde::Report> for ServiceError {
    fn from(report: garde::Report) -> Self {
        ServiceError::Invalid(
            report
                .iter()
                .map(|(path, error)| FieldError {
                    field: path.to_string(),
                    message: error.to_string(),
                })
                .collect(),
        )
    }
}
