//! Sign-up, log-in and log-out.

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::DashboardError;
use super::session::{Visitor, presented_token, session_cookie, session_removal};
use super::view::{
    Flash, FormErrors, Layout, pages, redirect, redirect_builder, render, render_with,
};
use crate::auth::{self, AccountError};
use crate::config::SignupPolicy;
use crate::domain::UserId;
use crate::state::AppState;

/// Where to go after logging in when no (acceptable) `next` was given.
const HOME: &str = "/subscriptions";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    email: String,
    next: String,
    error: Option<String>,
    signup_open: bool,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    layout: Layout,
    open: bool,
    email: String,
    errors: FormErrors,
}

pages!(LoginPage, SignupPage);

/// `?next=` of the log-in page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The log-in form. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// The sign-up form. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct SignupForm {
    email: String,
    password: String,
}

/// A `next` the log-in may send the browser to: a path on this site, nothing else (no
/// `//other.site`, no `https://...`, no `/\other.site`, which browsers read as another host).
fn safe_next(raw: Option<&str>) -> &str {
    match raw {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            next
        }
        _ => HOME,
    }
}

/// `GET /`: the subscriptions when signed in; otherwise sign-up on a fresh install, else log-in.
pub async fn home(
    visitor: Visitor,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    let to = if visitor.user.is_some() {
        HOME
    } else if state.signup == SignupPolicy::First
        && auth::signup_open(&state.db, state.signup).await?
    {
        "/signup"
    } else {
        "/login"
    };
    Ok(HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, to))
        .finish())
}

/// `GET /login`
pub async fn login_page(
    request: HttpRequest,
    visitor: Visitor,
    state: web::Data<AppState>,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, DashboardError> {
    let next = safe_next(query.next.as_deref());
    if visitor.user.is_some() {
        return Ok(redirect(&request, next, None));
    }
    render(&LoginPage {
        layout: visitor.layout(),
        email: String::new(),
        next: next.to_owned(),
        error: None,
        signup_open: auth::signup_open(&state.db, state.signup).await?,
    })
}

/// `POST /login`: a session on success; the same refusal for an unknown address and a wrong
/// password; 429 while the address is throttled.
pub async fn login(
    request: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, DashboardError> {
    let form = form.into_inner();
    let next = safe_next(form.next.as_deref()).to_owned();
    let ip = request.peer_addr().map(|address| address.ip().to_string());
    let (status, error, retry_after) =
        match auth::log_in(&state.db, &form.email, &form.password, ip).await {
            Ok(user) => return signed_in_response(&request, &state, user, &next, None).await,
            Err(AccountError::WrongCredentials) => (
                StatusCode::UNAUTHORIZED,
                "Wrong email address or password.".to_owned(),
                None,
            ),
            Err(AccountError::Throttled { retry_after }) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed log-ins for this address. Try again in {} min.",
                    retry_after.as_secs().div_ceil(60)
                ),
                Some(retry_after),
            ),
            Err(other) => return Err(account_failure(other)),
        };
    let page = LoginPage {
        layout: Layout::default(),
        email: form.email,
        next,
        error: Some(error),
        signup_open: auth::signup_open(&state.db, state.signup).await?,
    };
    let mut response = render_with(status, &page)?;
    if let Some(retry_after) = retry_after {
        response.headers_mut().insert(
            RETRY_AFTER,
            actix_web::http::header::HeaderValue::from(retry_after.as_secs()),
        );
    }
    Ok(response)
}

/// `GET /signup`: the form while sign-up is open; otherwise how an operator adds a user.
pub async fn signup_page(
    visitor: Visitor,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    let open = auth::signup_open(&state.db, state.signup).await?;
    render_with(
        if open {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        },
        &SignupPage {
            layout: visitor.layout(),
            open,
            email: String::new(),
            errors: FormErrors::default(),
        },
    )
}

/// `POST /signup`: creates the account and signs it in.
pub async fn signup(
    request: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignupForm>,
) -> Result<HttpResponse, DashboardError> {
    let form = form.into_inner();
    let (status, open, errors) =
        match auth::sign_up(&state.db, state.signup, &form.email, &form.password).await {
            Ok(user) => {
                let welcome = Flash::success(
                    "Welcome to Spenza. Create a subscription to get your first ingest URL.",
                );
                return signed_in_response(&request, &state, user, HOME, Some(welcome)).await;
            }
            Err(AccountError::Invalid(fields)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                true,
                FormErrors::new(fields),
            ),
            Err(AccountError::SignupClosed) => {
                (StatusCode::FORBIDDEN, false, FormErrors::default())
            }
            Err(other) => return Err(account_failure(other)),
        };
    render_with(
        status,
        &SignupPage {
            layout: Layout::default(),
            open,
            email: form.email,
            errors,
        },
    )
}

/// `POST /logout`: the session's row is deleted and its cookie removed.
pub async fn logout(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    if let Some(token) = presented_token(&request) {
        auth::end_session(&state.db, &token).await?;
    }
    Ok(redirect_builder(
        &request,
        "/login",
        Some(Flash::success("You are logged out.")),
    )
    .cookie(session_removal())
    .finish())
}

pub(super) async fn signed_in_response(
    request: &HttpRequest,
    state: &AppState,
    user: UserId,
    next: &str,
    flash: Option<Flash>,
) -> Result<HttpResponse, DashboardError> {
    let ip = request.peer_addr().map(|address| address.ip().to_string());
    let token = auth::start_session(&state.db, user, state.sessions, ip).await?;
    Ok(redirect_builder(request, next, flash)
        .cookie(session_cookie(&token, state.sessions))
        .finish())
}

fn account_failure(error: AccountError) -> DashboardError {
    match error {
        AccountError::Database(error) => error.into(),
        other => DashboardError::Unexpected(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_are_followed_after_log_in() {
        for good in ["/subscriptions", "/subscriptions/1?x=2", "/"] {
            assert_eq!(safe_next(Some(good)), good);
        }
        for bad in [
            "https://evil.example",
            "//evil.example/path",
            "/\\evil.example",
            "javascript:alert(1)",
            "subscriptions",
            "/a b",
            "/a\nb",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), HOME, "{bad:?}");
        }
        assert_eq!(safe_next(None), HOME);
    }
}
