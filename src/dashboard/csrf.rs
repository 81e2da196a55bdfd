//! CSRF protection for every state-changing dashboard request, in one place so that no action
//! can forget it, in two layers:
//! - a request the browser says comes from another site (`Sec-Fetch-Site`, else `Origin`) is
//!   refused, log-in and sign-up included (another site must not log a visitor in to an account
//!   of its choosing);
//! - a request that presents a session cookie must also present that session's CSRF token: in
//!   the `X-CSRF-Token` header (htmx sends it from the page's `hx-headers`) or as the
//!   `csrf_token` field of a form. Without a session cookie there is nothing to forge: the
//!   action's handler finds no session and sends the browser to log in.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, ResponseError, web};

use super::error::DashboardError;
use super::session::presented_token;

/// Pages that start a session rather than act within one: no session token to check.
const EXEMPT: [&str; 2] = ["/login", "/signup"];

/// The header htmx requests carry the token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// Refuses, with 403 and before any handler runs, a state-changing request from another site,
/// or one whose session's CSRF token is missing or wrong.
pub async fn protect(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    if from_another_site(&request) {
        return Ok(request.into_response(DashboardError::Forbidden.error_response()));
    }
    let token = presented_token(request.request());
    let Some(token) = token.filter(|_| !EXEMPT.contains(&request.path())) else {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let from_header = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let presented = match from_header {
        Some(header) => Some(header),
        None if is_form(&request) => {
            // Read the form to find the token, then put the body back for the handler.
            let body = request.extract::<web::Bytes>().await?;
            let field = url::form_urlencoded::parse(&body)
                .find(|(name, _)| name == "csrf_token")
                .map(|(_, value)| value.into_owned());
            request.set_payload(Payload::from(body));
            field
        }
        None => None,
    };
    if presented.is_some_and(|presented| token.verify_csrf(&presented)) {
        next.call(request)
            .await
            .map(ServiceResponse::map_into_boxed_body)
    } else {
        Ok(request.into_response(DashboardError::Forbidden.error_response()))
    }
}

/// Whether the browser says the request comes from another site. Current browsers send
/// `Sec-Fetch-Site`; every browser sends `Origin` with a POST. A request with neither is not a
/// form another site made a browser send (and still needs the session's token).
fn from_another_site(request: &ServiceRequest) -> bool {
    match request
        .headers()
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
    {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => own_origin(request.request()) == Some(false),
    }
}

/// Whether the `Origin` a browser sent names this very host (`null` and junk do not); `None`
/// when it sent none.
pub fn own_origin(request: &HttpRequest) -> Option<bool> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let origin = header("origin")?;
    let authority = url::Url::parse(origin).ok().and_then(|url| {
        let host = url.host_str()?.to_owned();
        Some(match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
    });
    Some(authority.is_some() && authority.as_deref() == header("host"))
}

fn is_form(request: &ServiceRequest) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}
