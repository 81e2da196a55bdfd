//! How the dashboard fails: as a page, never as a bare JSON body.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::db::DbError;
use crate::service::ServiceError;

/// Every way a dashboard request can fail, each with its status code and page.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// No live session: log in first, then come back to `next`.
    #[error("log in to see this page")]
    LoginRequired {
        next: String,
        /// An htmx request, which must navigate the whole page rather than swap the log-in
        /// form into a fragment.
        htmx: bool,
    },
    /// Signed in, but a member of no workspace: the workspaces page says what to do.
    #[error("you are not a member of any workspace")]
    NoWorkspace { htmx: bool },
    /// Missing, or somebody else's: the two are indistinguishable on purpose.
    #[error("there is nothing here, or it is not yours")]
    NotFound,
    /// The member's role does not allow this.
    #[error("{0}")]
    NotAllowed(&'static str),
    /// A state-changing request without this session's CSRF token.
    #[error(
        "this form has expired or did not come from this dashboard: reload the page and try again"
    )]
    Forbidden,
    /// The request could not be understood.
    #[error("{0}")]
    BadRequest(String),
    /// The object is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// PostgreSQL did not answer in time.
    #[error("the relay cannot reach its database right now; try again in a moment")]
    Unavailable(String),
    /// A bug or an unforeseen failure; details go to the log, not to the page.
    #[error("something went wrong on our side; it has been logged")]
    Unexpected(#[source] anyhow::Error),
}

impl From<DbError> for DashboardError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(reason) => DashboardError::Unavailable(reason),
            DbError::Query(error) => DashboardError::Unexpected(error.into()),
        }
    }
}

impl From<ServiceError> for DashboardError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound(_) => DashboardError::NotFound,
            ServiceError::Forbidden(why) => DashboardError::NotAllowed(why),
            ServiceError::Conflict(message) | ServiceError::Limited(message) => {
                DashboardError::Conflict(message)
            }
            ServiceError::Invalid(fields) => DashboardError::BadRequest(
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ServiceError::Database(error) => error.into(),
            ServiceError::Unexpected(error) => DashboardError::Unexpected(error),
        }
    }
}

impl From<askama::Error> for DashboardError {
    fn from(error: askama::Error) -> Self {
        DashboardError::Unexpected(error.into())
    }
}

/// The page every error renders as.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: String,
}

impl ResponseError for DashboardError {
    fn status_code(&self) -> StatusCode {
        match self {
            DashboardError::LoginRequired { .. } | DashboardError::NoWorkspace { .. } => {
                StatusCode::SEE_OTHER
            }
            DashboardError::NotAllowed(_) => StatusCode::FORBIDDEN,
            DashboardError::NotFound => StatusCode::NOT_FOUND,
            DashboardError::Forbidden => StatusCode::FORBIDDEN,
            DashboardError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashboardError::Conflict(_) => StatusCode::CONFLICT,
            DashboardError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DashboardError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let redirect = match self {
            DashboardError::LoginRequired { next, htmx } => Some((
                format!(
                    "/login?next={}",
                    percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
                ),
                *htmx,
            )),
            DashboardError::NoWorkspace { htmx } => Some(("/workspaces".to_owned(), *htmx)),
            _ => None,
        };
        if let Some((to, htmx)) = redirect {
            return if htmx {
                HttpResponse::Ok()
                    .insert_header(("HX-Redirect", to))
                    .finish()
            } else {
                HttpResponse::SeeOther()
                    .insert_header((LOCATION, to))
                    .finish()
            };
        }
        let status = self.status_code();
        let page = ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: sentence(&self.to_string()),
        };
        let mut response = HttpResponse::build(status);
        // A failed htmx action leaves the address bar where it was: the action's URL is no page.
        response.insert_header(("HX-Push-Url", "false"));
        match page.render() {
            Ok(html) => response
                .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
                .body(html),
            Err(_) => response.body(page.message),
        }
    }
}

/// A message as a sentence: a capital first letter and a full stop.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let first = chars.next().map(|c| c.to_uppercase().to_string());
    let mut sentence = first.unwrap_or_default() + chars.as_str();
    if !sentence.ends_with('.') {
        sentence.push('.');
    }
    sentence
}

/// The answer to a path no page has.
pub async fn not_found() -> Result<HttpResponse, DashboardError> {
    Err(DashboardError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_sentences_without_losing_their_capitals() {
        assert_eq!(
            sentence("the relay cannot reach PostgreSQL"),
            "The relay cannot reach PostgreSQL."
        );
        assert_eq!(sentence("Done."), "Done.");
    }
}
