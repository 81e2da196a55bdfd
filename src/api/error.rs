//! The API's error type, rendered as problem+json.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::db::DbError;
use crate::problem::{FieldError, Problem};
use crate::service::ServiceError;

/// Every way an API call can fail, each with its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key, or a key that is unknown or revoked.
    #[error("a valid API key is required: send Authorization: Bearer <key>")]
    Unauthorized,
    /// The key's role does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Missing, or somebody else's: the two are indistinguishable on purpose.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The resource is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The caller has as much of something as the relay allows.
    #[error("{0}")]
    Limited(String),
    /// The input failed validation.
    #[error("the request is invalid")]
    Invalid(Vec<FieldError>),
    /// The request could not be understood (malformed JSON, bad query string).
    #[error("{0}")]
    BadRequest(String),
    /// PostgreSQL did not answer in time.
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(String),
    /// A bug or an unforeseen failure; details go to the log, not to the client.
    #[error("an unexpected error occurred")]
    Unexpected(#[source] anyhow::Error),
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(reason) => ApiError::Unavailable(reason),
            DbError::Query(error) => ApiError::Unexpected(error.into()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound(what) => ApiError::NotFound(what),
            ServiceError::Forbidden(why) => ApiError::Forbidden(why),
            ServiceError::Conflict(message) => ApiError::Conflict(message),
            ServiceError::Limited(message) => ApiError::Limited(message),
            ServiceError::Invalid(errors) => ApiError::Invalid(errors),
            ServiceError::Database(error) => error.into(),
            ServiceError::Unexpected(error) => ApiError::Unexpected(error),
        }
    }
}

impl From<garde::Report> for ApiError {
    fn from(report: garde::Report) -> Self {
        ServiceError::from(report).into()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let title = status.canonical_reason().unwrap_or("Error");
        let problem = Problem::new(status, title, self.to_string());
        let problem = match self {
            ApiError::Invalid(errors) => problem.with_errors(errors.clone()),
            _ => problem,
        };
        let mut response = problem.response();
        if let ApiError::Unauthorized = self {
            response.headers_mut().insert(
                actix_web::http::header::WWW_AUTHENTICATE,
                actix_web::http::header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
