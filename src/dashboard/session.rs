//! The session cookie, and the extractors that read it: [`Session`] for pages that need a
//! signed-in user, [`Visitor`] for the log-in and sign-up pages.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, web};

use super::error::DashboardError;
use super::view::{Flash, Layout, Nav, WorkspaceBadge, is_htmx};
use crate::auth::{self, CurrentWorkspace, SessionPolicy, SessionToken, SignedIn};
use crate::domain::UserId;
use crate::service::{Actor, Principal};
use crate::state::AppState;

/// The header htmx sends with every request of a page: the workspace the page was rendered
/// for, so that an action from a page left open after switching workspace in another tab is
/// refused rather than applied to the other workspace.
pub const WORKSPACE_HEADER: &str = "X-Spenza-Workspace";

/// The cookie holding a session's token.
pub const SESSION_COOKIE: &str = "spenza_session";

/// The session token a request presents, if it is shaped like one.
pub fn presented_token(request: &HttpRequest) -> Option<SessionToken> {
    request
        .cookie(SESSION_COOKIE)
        .and_then(|cookie| SessionToken::parse(cookie.value()))
}

/// The cookie that carries a new session: not readable by scripts, not sent by other sites'
/// forms, `Secure` when the relay is served over https.
pub fn session_cookie(token: &SessionToken, policy: SessionPolicy) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token.expose().to_owned())
        .path("/")
        .http_only(true)
        .secure(policy.secure_cookie)
        .same_site(SameSite::Lax)
        .finish()
}

/// The cookie that removes the session cookie from the browser.
pub fn session_removal() -> Cookie<'static> {
    let mut cookie = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    cookie.make_removal();
    cookie
}

async fn signed_in(request: &HttpRequest) -> Result<Option<SignedIn>, DashboardError> {
    let Some(token) = presented_token(request) else {
        return Ok(None);
    };
    let state = request
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| DashboardError::Unexpected(anyhow::anyhow!("no application state")))?;
    Ok(auth::resume_session(&state.db, token, state.sessions).await?)
}

/// A signed-in member, acting in the workspace their session is looking at. A page that takes
/// one redirects to log-in without a session, coming back after, and to the workspaces page
/// when its user belongs to none.
pub struct Session {
    pub user: SignedIn,
    pub workspace: CurrentWorkspace,
    actor: Actor,
    flash: Option<Flash>,
}

impl Session {
    /// The signed-in user's id.
    pub fn user_id(&self) -> UserId {
        self.user.user_id
    }

    /// The member, acting in their current workspace with their role there.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The layout's context for a page under `nav`.
    pub fn layout(&self, nav: Nav) -> Layout {
        Layout {
            user_email: Some(self.user.email.clone()),
            csrf_token: self.user.token.csrf_token(),
            flash: self.flash.clone(),
            nav: Some(nav),
            workspace: Some(WorkspaceBadge::of(&self.workspace)),
        }
    }
}

impl FromRequest for Session {
    type Error = DashboardError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            match signed_in(&request).await? {
                Some(user) => {
                    let Some(workspace) = user.workspace.clone() else {
                        return Err(DashboardError::NoWorkspace {
                            htmx: is_htmx(&request),
                        });
                    };
                    // Only an action is refused: a link from such a page shows the page of
                    // the workspace the session is in now.
                    let rendered_for = request
                        .headers()
                        .get(WORKSPACE_HEADER)
                        .and_then(|value| value.to_str().ok())
                        .filter(|_| !matches!(*request.method(), Method::GET | Method::HEAD));
                    if rendered_for.is_some_and(|id| id != workspace.id.to_string()) {
                        return Err(DashboardError::Conflict(format!(
                            "this page belongs to another workspace than the one you are in now \
                             ({}): reload the page",
                            workspace.name
                        )));
                    }
                    let actor = Actor {
                        workspace: workspace.id,
                        role: workspace.role,
                        who: Principal::User {
                            id: user.user_id,
                            email: user.email.clone(),
                        },
                        ip: request.peer_addr().map(|address| address.ip().to_string()),
                    };
                    Ok(Session {
                        user,
                        workspace,
                        actor,
                        flash: Flash::from_request(&request),
                    })
                }
                None => Err(DashboardError::LoginRequired {
                    // After logging in, a page comes back; an action does not run again.
                    next: if request.method() == Method::GET {
                        request
                            .uri()
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .to_owned()
                    } else {
                        "/subscriptions".to_owned()
                    },
                    htmx: is_htmx(&request),
                }),
            }
        })
    }
}

/// Anyone, signed in or not.
pub struct Visitor {
    pub user: Option<SignedIn>,
    pub flash: Option<Flash>,
}

impl Visitor {
    /// The layout's context for a page outside the signed-in navigation.
    pub fn layout(&self) -> Layout {
        Layout {
            flash: self.flash.clone(),
            ..Layout::default()
        }
    }
}

impl FromRequest for Visitor {
    type Error = DashboardError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            Ok(Visitor {
                user: signed_in(&request).await?,
                flash: Flash::from_request(&request),
            })
        })
    }
}
