//! Request ids: every HTTP request has one, taken from its `X-Request-Id` header when that is
//! sane (a proxy's or a provider's id), made up otherwise, and returned in the response's
//! `X-Request-Id`. Log lines about the request, and about the event it brought, carry it.

use std::fmt;
use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};

/// The header a request id arrives and leaves in.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
const MAX_LEN: usize = 128;

/// One request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The client's id, if it is one to repeat in logs and headers: 1 to 128 characters of
    /// letters, digits and `-_.:+/=@` (UUIDs, ULIDs, base64, `trace@span` ids). Anything else
    /// (empty, too long, spaces, quotes, control characters) is not, and a new id is made.
    pub fn sane(presented: &str) -> Option<RequestId> {
        let sane = !presented.is_empty()
            && presented.len() <= MAX_LEN
            && presented
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b));
        sane.then(|| RequestId(presented.to_owned()))
    }

    /// A new id: a UUID v7, so ids sort by time.
    pub fn generate() -> RequestId {
        RequestId(uuid::Uuid::now_v7().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_kept_only_when_it_is_safe_to_repeat() {
        for kept in [
            "0193a5c2-7f3e-7c1a-9b1e-2f4d5e6a7b8c",
            "01JDZ3K8X5",
            "req_a1B2c3D4e5F6",
            "abc+/=",
            "trace@span:1",
        ] {
            assert_eq!(RequestId::sane(kept).unwrap().as_str(), kept);
        }
        for refused in [
            "",
            "has space",
            "quote\"",
            "new\nline",
            "ünïcode",
            &"x".repeat(129),
        ] {
            assert!(RequestId::sane(refused).is_none(), "{refused:?}");
        }
        assert!(RequestId::sane(&"x".repeat(128)).is_some());
    }

    #[test]
    fn made_up_ids_are_distinct_and_sane() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a, b);
        assert!(RequestId::sane(a.as_str()).is_some());
    }
}
