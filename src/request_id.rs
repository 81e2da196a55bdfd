//! Request ids: every HTTP request has one, taken from its `X-Request-Id` header when that is
//! sane (a proxy's or a provider's id), made up otherwise, and returned in the response's
//! `X-Request-Id`. Log lines about the request, and about the event it brought, carry it.

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};

pub use crate::domain::RequestId;

/// The header a request id arrives and leaves in.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Middleware: gives the request its id (see [`RequestId::sane`]) and the response its header,
/// error responses included (handlers' and extractors' errors arrive here as responses).
pub async fn assign(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(RequestId::sane)
        .unwrap_or_else(RequestId::generate);
    let header = HeaderValue::from_str(id.as_str()).expect("a sane id is a valid header value");
    request.extensions_mut().insert(id);
    let mut response = next.call(request).await?.map_into_boxed_body();
    response.headers_mut().insert(HEADER, header);
    Ok(response)
}

/// The id of the request being handled; a new one if [`assign`] did not run.
impl FromRequest for RequestId {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<RequestId, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(of(request)))
    }
}

/// The id of `request`; a new one if [`assign`] did not run.
pub fn of(request: &HttpRequest) -> RequestId {
    request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(RequestId::generate)
}
