//! The problem answers the handlers declare in their OpenAPI descriptions, apart from the
//! document that gathers them (`super::openapi`), so that handlers and document do not import
//! each other.

use utoipa::ToResponse;

use crate::problem::Problem;

/// The request could not be understood: a body that is not JSON or is too large, or a query
/// string that does not parse.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BadRequest(pub Problem);

/// No API key, or one that is unknown or revoked.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer`"))
)]
pub struct Unauthorized(pub Problem);

/// The key's role does not allow this: a viewer key only reads, and only an admin or owner key
/// manages members, invitations and keys or reads the audit log.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Forbidden(pub Problem);

/// No such resource of the key's workspace: missing, another workspace's, or an id that is not a UUID.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotFound(pub Problem);

/// The resource is not in a state that allows this.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Conflict(pub Problem);

/// The input failed validation: `errors` names every field that did, and why.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Invalid(pub Problem);

/// An unforeseen failure; its details go to the log, not to the client.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Unexpected(pub Problem);

/// The database did not answer in time; retry later.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Unavailable(pub Problem);
