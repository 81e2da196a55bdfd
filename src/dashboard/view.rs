//! What every page shares: the layout's context (who is signed in, their CSRF token, the flash
//! message), times shown relative with the exact UTC time beside them, and the responses pages
//! and actions answer with.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::csrf::CSRF_HEADER;
use super::error::DashboardError;
use super::session::WORKSPACE_HEADER;
use crate::auth::CurrentWorkspace;
use crate::domain::Role;
use crate::problem::FieldError;
use crate::service::Actor;
use crate::state::AppState;

const FLASH_COOKIE: &str = "spenza_flash";

/// Which navigation item a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Sources,
    Subscriptions,
    Events,
    ApiKeys,
    Members,
    AuditLog,
    Workspaces,
    Issues,
}

/// A one-time message shown on the page an action redirects to ("Changes saved.").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    /// Whether it tells of something that did not work.
    pub problem: bool,
}

/// What a problem's flash cookie starts with (outside base64's URL-safe alphabet).
const PROBLEM_MARK: char = '!';

impl Flash {
    /// A message reporting what an action did.
    pub fn success(text: impl Into<String>) -> Self {
        Flash {
            text: text.into(),
            problem: false,
        }
    }

    /// A message reporting that what an action tried did not work.
    pub fn problem(text: impl Into<String>) -> Self {
        Flash {
            text: text.into(),
            problem: true,
        }
    }

    fn encode(&self) -> String {
        let text = URL_SAFE_NO_PAD.encode(&self.text);
        if self.problem {
            format!("{PROBLEM_MARK}{text}")
        } else {
            text
        }
    }

    fn decode(raw: &str) -> Option<Self> {
        let (problem, raw) = match raw.strip_prefix(PROBLEM_MARK) {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
        Some(Flash { text, problem })
    }

    /// The flash a request carries (set by the action that redirected to it).
    pub fn from_request(request: &HttpRequest) -> Option<Self> {
        request
            .cookie(FLASH_COOKIE)
            .and_then(|cookie| Flash::decode(cookie.value()))
    }

    fn cookie(&self) -> Cookie<'static> {
        Cookie::build(FLASH_COOKIE, self.encode())
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .max_age(actix_web::cookie::time::Duration::minutes(5))
            .finish()
    }

    fn removal() -> Cookie<'static> {
        let mut cookie = Cookie::build(FLASH_COOKIE, "").path("/").finish();
        cookie.make_removal();
        cookie
    }
}

/// The layout's context: every page has one.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The signed-in user's address; `None` on the log-in and sign-up pages.
    pub user_email: Option<String>,
    /// The session's CSRF token, for every form and htmx request.
    pub csrf_token: String,
    pub flash: Option<Flash>,
    pub nav: Option<Nav>,
    /// The workspace the page is for; `None` outside a workspace.
    pub workspace: Option<WorkspaceBadge>,
}

/// The current workspace, as the top bar shows it.
#[derive(Debug, Clone)]
pub struct WorkspaceBadge {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Its open issues (acknowledged ones aside): the count beside Issues in the navigation.
    pub open_issues: i64,
}

impl WorkspaceBadge {
    pub fn of(workspace: &CurrentWorkspace) -> Self {
        WorkspaceBadge {
            id: workspace.id.to_string(),
            name: workspace.name.clone(),
            role: workspace.role,
            open_issues: workspace.open_issues,
        }
    }

    /// Whether the member may administer it: members, keys and the audit log.
    pub fn administers(&self) -> bool {
        self.role.includes(Role::Admin)
    }

    /// Whether the member may change sources, subscriptions and events.
    pub fn changes(&self) -> bool {
        self.role.includes(Role::Developer)
    }
}

impl Layout {
    /// The current workspace's name; empty outside one.
    pub fn workspace_name(&self) -> &str {
        self.workspace
            .as_ref()
            .map_or("", |workspace| &workspace.name)
    }

    /// Whether the member may administer the current workspace (members, keys, audit log).
    pub fn administers(&self) -> bool {
        self.workspace
            .as_ref()
            .is_some_and(WorkspaceBadge::administers)
    }

    /// Whether the member may change sources, subscriptions and events, and see secrets.
    pub fn changes(&self) -> bool {
        self.workspace.as_ref().is_some_and(WorkspaceBadge::changes)
    }

    /// The current workspace's open issues, acknowledged ones aside.
    pub fn open_issues(&self) -> i64 {
        self.workspace
            .as_ref()
            .map_or(0, |workspace| workspace.open_issues)
    }

    /// The member's role in the current workspace; empty outside one.
    pub fn role(&self) -> &'static str {
        self.workspace
            .as_ref()
            .map_or("", |workspace| workspace.role.as_str())
    }

    /// `aria-current` for a navigation link: `page` for the page's own item.
    pub fn current(&self, item: &str) -> &'static str {
        let nav = match item {
            "sources" => Nav::Sources,
            "subscriptions" => Nav::Subscriptions,
            "events" => Nav::Events,
            "members" => Nav::Members,
            "audit-log" => Nav::AuditLog,
            "workspaces" => Nav::Workspaces,
            "issues" => Nav::Issues,
            _ => Nav::ApiKeys,
        };
        if self.nav == Some(nav) {
            "page"
        } else {
            "false"
        }
    }

    /// The `hx-headers` value that sends with every htmx request the session's CSRF token,
    /// and the workspace the page is for.
    pub fn hx_headers(&self) -> String {
        let mut headers = serde_json::json!({ CSRF_HEADER: self.csrf_token });
        if let Some(workspace) = &self.workspace {
            headers[WORKSPACE_HEADER] = workspace.id.clone().into();
        }
        headers.to_string()
    }
}

/// The ingest URL and a ready-to-paste `curl` line posting to it, for someone whose role may
/// see it.
pub fn ingest_and_curl(state: &AppState, token: &str, actor: &Actor) -> Option<(String, String)> {
    state.ingest_url_for(token, actor).map(|ingest_url| {
        let curl = format!(
            "curl -X POST '{ingest_url}' -H 'Content-Type: application/json' \
             -d '{{\"type\": \"test.event\", \"hello\": \"world\"}}'"
        );
        (ingest_url, curl)
    })
}

/// A page: a template that carries the layout's context.
pub trait Page: Template {
    fn layout(&self) -> &Layout;
}

/// Implements [`Page`] for templates with a `layout` field.
macro_rules! pages {
    ($($page:ty),* $(,)?) => {
        $(impl $crate::dashboard::view::Page for $page {
            fn layout(&self) -> &$crate::dashboard::view::Layout {
                &self.layout
            }
        })*
    };
}
pub(crate) use pages;

/// A page, with this status. A flash it showed is cleared, so it shows once.
pub fn render_with(
    status: actix_web::http::StatusCode,
    page: &impl Page,
) -> Result<HttpResponse, DashboardError> {
    let html = page.render()?;
    let mut response = HttpResponse::build(status);
    response.insert_header((CONTENT_TYPE, "text/html; charset=utf-8"));
    if page.layout().flash.is_some() {
        response.cookie(Flash::removal());
    }
    Ok(response.body(html))
}

/// A page, 200 OK.
pub fn render(page: &impl Page) -> Result<HttpResponse, DashboardError> {
    render_with(actix_web::http::StatusCode::OK, page)
}

/// After an action: go to `location`, showing `flash` there. Plain browsers get `303 See Other`;
/// htmx gets `HX-Location`, so it fetches the page and swaps it in, with the URL in the history.
pub fn redirect(request: &HttpRequest, location: &str, flash: Option<Flash>) -> HttpResponse {
    redirect_builder(request, location, flash).finish()
}

/// [`redirect`], for a response that sets more cookies.
pub fn redirect_builder(
    request: &HttpRequest,
    location: &str,
    flash: Option<Flash>,
) -> HttpResponseBuilder {
    let mut response = if is_htmx(request) {
        let mut ok = HttpResponse::Ok();
        ok.insert_header(("HX-Location", location.to_owned()));
        ok
    } else {
        let mut see_other = HttpResponse::SeeOther();
        see_other.insert_header((LOCATION, location.to_owned()));
        see_other
    };
    if let Some(flash) = flash {
        response.cookie(flash.cookie());
    }
    response
}

/// Whether htmx sent the request.
pub fn is_htmx(request: &HttpRequest) -> bool {
    request.headers().contains_key("HX-Request")
}

/// What was wrong with a submitted form, field by field, to show beside each field.
#[derive(Debug, Clone, Default)]
pub struct FormErrors(Vec<FieldError>);

impl FormErrors {
    /// The errors of a refused input.
    pub fn new(fields: Vec<FieldError>) -> Self {
        FormErrors(fields)
    }

    /// The message for `field`, if it has one (several are joined).
    pub fn of(&self, field: &str) -> Option<String> {
        let messages: Vec<&str> = self
            .0
            .iter()
            .filter(|error| error.field == field)
            .map(|error| error.message.as_str())
            .collect();
        (!messages.is_empty()).then(|| messages.join("; "))
    }

    /// Whether any field has an error.
    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }
}

/// A point in time as pages show it: relative ("3 min ago"), with the exact UTC time on hover.
#[derive(Debug, Clone)]
pub struct Moment {
    pub relative: String,
    pub exact: String,
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
}

impl Moment {
    /// `at`, described from `now`.
    pub fn of(at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Moment {
            relative: relative(at, now),
            exact: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let (amount, future) = (seconds.unsigned_abs(), seconds < 0);
    let span = match amount {
        0..=9 => return "just now".to_owned(),
        10..=59 => format!("{amount} s"),
        60..=3599 => format!("{} min", amount / 60),
        3600..=86_399 => format!("{} h", amount / 3600),
        86_400..=2_591_999 => format!("{} d", amount / 86_400),
        _ => return at.format("%Y-%m-%d").to_string(),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_relative_to_now() {
        let now = Utc::now();
        let ago = |seconds| relative(now - chrono::TimeDelta::seconds(seconds), now);
        assert_eq!(ago(3), "just now");
        assert_eq!(ago(42), "42 s ago");
        assert_eq!(ago(180), "3 min ago");
        assert_eq!(ago(2 * 3600 + 5), "2 h ago");
        assert_eq!(ago(3 * 86_400), "3 d ago");
        assert_eq!(ago(-120), "in 2 min");
        let long_ago = now - chrono::TimeDelta::days(60);
        assert_eq!(
            relative(long_ago, now),
            long_ago.format("%Y-%m-%d").to_string()
        );
    }

    #[test]
    fn a_moment_carries_the_exact_utc_time() {
        let at = DateTime::parse_from_rfc3339("2026-11-28T10:20:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let moment = Moment::of(at, at);
        assert_eq!(moment.exact, "2026-11-28 10:20:30 UTC");
        assert_eq!(moment.iso, "2026-11-28T10:20:30Z");
    }

    #[test]
    fn flashes_survive_their_cookie() {
        for flash in [
            Flash::success("Saved: «ünïcode» & <tags>"),
            Flash::success(""),
        ] {
            assert_eq!(Flash::decode(&flash.encode()), Some(flash));
        }
        assert_eq!(Flash::decode("not base64!"), None);
        assert_eq!(Flash::decode(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])), None);
    }
}
