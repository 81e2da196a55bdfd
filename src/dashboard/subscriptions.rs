//! Subscription pages: the list, create, the subscription's own page, edit, pause and resume,
//! rotate the signing secret, send a test event, delete.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::charts::{Chart, subscription_charts};
use super::error::DashboardError;
use super::events::{EventLog, LogQuery, load_log};
use super::providers::{self, ProviderForm};
use super::session::Session;
use super::view::{
    Flash, FormErrors, Layout, Moment, Nav, ingest_and_curl, pages, redirect, render, render_with,
};
use crate::db::models::subscription::{Subscription, SubscriptionStats};
use crate::domain::{EventId, Filter, Policy, SubscriptionId, SubscriptionKind};
use crate::problem::FieldError;
use crate::service::SubscriptionForm;
use crate::service::provider_form::ProviderFields;
use crate::service::subscriptions::{self, SubscriptionState, stored_provider};
use crate::service::{self, ServiceError};
use crate::state::AppState;

/// A subscription's state as a badge: text and colour, so it reads without colour too.
pub struct StateBadge {
    pub label: &'static str,
    pub class: &'static str,
    pub reason: Option<String>,
}

impl StateBadge {
    pub(super) fn of(subscription: &Subscription) -> Self {
        match SubscriptionState::of(subscription) {
            SubscriptionState::Active => StateBadge {
                label: "Active",
                class: "badge badge-ok",
                reason: None,
            },
            SubscriptionState::Paused => StateBadge {
                label: "Paused",
                class: "badge badge-muted",
                reason: None,
            },
            SubscriptionState::Disabled(reason) => StateBadge {
                label: "Disabled",
                class: "badge badge-bad",
                reason: Some(reason),
            },
        }
    }
}

/// One line of the subscriptions list.
pub struct SubscriptionRow {
    pub id: SubscriptionId,
    pub name: String,
    /// Whether `spenza listen` sessions, not an endpoint, receive its events.
    pub listen: bool,
    pub target_url: String,
    pub state: StateBadge,
    pub events_24h: i64,
    /// Successful attempts out of all in the last 24 h, e.g. "98.5%"; `None` without attempts.
    pub success_rate: Option<String>,
    pub success_class: &'static str,
    pub last_delivery: Option<Moment>,
}

impl SubscriptionRow {
    fn new(subscription: Subscription, stats: Option<SubscriptionStats>) -> Self {
        let now = Utc::now();
        let (events_24h, attempts, successes, last) = stats.map_or((0, 0, 0, None), |s| {
            (s.events, s.attempts, s.successes, s.last_attempt_at)
        });
        let rate = (attempts > 0).then(|| successes as f64 * 100.0 / attempts as f64);
        SubscriptionRow {
            id: subscription.id,
            state: StateBadge::of(&subscription),
            name: subscription.name,
            listen: subscription.kind == SubscriptionKind::Cli,
            target_url: subscription.target_url,
            events_24h,
            success_rate: rate.map(|rate| format!("{:.1}%", (rate * 10.0).floor() / 10.0)),
            success_class: match rate {
                Some(rate) if rate >= 99.0 => "rate rate-ok",
                Some(rate) if rate >= 90.0 => "rate rate-warn",
                Some(_) => "rate rate-bad",
                None => "rate",
            },
            last_delivery: last.map(|at| Moment::of(at, now)),
        }
    }
}

#[derive(Template)]
#[template(path = "subscriptions/list.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<SubscriptionRow>,
}

#[derive(Template)]
#[template(path = "subscriptions/form.html")]
struct FormPage {
    layout: Layout,
    /// `None` when creating.
    editing: Option<SubscriptionId>,
    form: SubscriptionForm,
    errors: FormErrors,
    /// The kind of the check stored now, whose secrets a blank field keeps.
    stored_kind: Option<&'static str>,
    /// The workspace's sources, which a new subscription may receive events from.
    sources: Vec<SourceChoice>,
    /// The names of the extra headers set now (an edit form never holds their values).
    header_names: Vec<String>,
    /// What trying the filter showed, when the form was posted to try it.
    trial: Option<FilterTrial>,
}

/// A source the form offers.
pub struct SourceChoice {
    pub id: String,
    pub name: String,
}

/// What trying a filter on the source's recent events showed.
pub enum FilterTrial {
    /// The filter is valid (it was checked, not tried): what it takes, in a line.
    Valid(String),
    /// The subscription would get a source of its own, which has no events yet.
    NewSource,
    /// The source has received no events yet.
    NoEvents,
    /// The filter was tried on these events, newest first.
    Tried(Vec<TrialLine>),
}

/// One event a filter was tried on.
pub struct TrialLine {
    pub event_id: EventId,
    pub received: Moment,
    pub matched: bool,
    pub mismatch: Option<String>,
}

impl ProviderForm for FormPage {
    fn provider_fields(&self) -> &ProviderFields {
        &self.form.provider
    }

    fn form_errors(&self) -> &FormErrors {
        &self.errors
    }

    fn stored_provider(&self) -> Option<&'static str> {
        self.stored_kind
    }
}

impl FormPage {
    fn action(&self) -> String {
        match self.editing {
            Some(id) => format!("/subscriptions/{id}/edit"),
            None => "/subscriptions".to_owned(),
        }
    }

    /// The name of the source an edited subscription receives events from.
    fn source_name(&self) -> &str {
        self.sources
            .iter()
            .find(|source| source.id == self.form.source_id)
            .map_or("its source", |source| source.name.as_str())
    }

    /// Whether the policy's fields start unfolded: some are set, or wrong.
    fn policy_open(&self) -> bool {
        let form = &self.form;
        [
            &form.retry_schedule,
            &form.timeout,
            &form.max_in_flight,
            &form.rate_limit_count,
            &form.lag_threshold,
        ]
        .iter()
        .any(|field| !field.is_empty())
            || !self.header_names.is_empty()
            || [
                "policy.retry_schedule",
                "policy.timeout",
                "policy.max_in_flight",
                "policy.rate_limit",
                "policy.lag_threshold",
                "policy.headers",
            ]
            .iter()
            .any(|field| self.errors.of(field).is_some())
    }

    /// An example filter, for the editor's placeholder.
    fn filter_example(&self) -> &'static str {
        FILTER_EXAMPLE
    }
}

/// What the filter editor shows before anything is typed.
const FILTER_EXAMPLE: &str = "{\"body\": {\"type\": {\"$startsWith\": \"invoice.\"}}}";

/// The form page, with the workspace's sources to choose from, and what trying its filter showed.
async fn form_page(
    state: &AppState,
    session: &Session,
    editing: Option<&Subscription>,
    form: SubscriptionForm,
    errors: FormErrors,
    trial: Option<FilterTrial>,
) -> Result<FormPage, DashboardError> {
    let sources = service::sources::list(state, session.actor())
        .await?
        .into_iter()
        .map(|source| SourceChoice {
            id: source.id.to_string(),
            name: source.name,
        })
        .collect();
    Ok(FormPage {
        layout: session.layout(Nav::Subscriptions),
        editing: editing.map(|subscription| subscription.id),
        stored_kind: editing
            .and_then(stored_provider)
            .map(|provider| provider.kind()),
        header_names: editing
            .map(|subscription| {
                Policy::from_stored(&subscription.policy)
                    .headers
                    .into_keys()
                    .collect()
            })
            .unwrap_or_default(),
        form,
        errors,
        sources,
        trial,
    })
}

/// Checks the form's filter and, unless it is only `checking`, tries it on its source's recent
/// events: the page to show, with the problem of a filter that is not valid beside it. Always
/// `200`: the page shows the verdict, and htmx swaps it in.
async fn try_filter(
    state: &AppState,
    session: &Session,
    editing: Option<&Subscription>,
    form: SubscriptionForm,
    checking: bool,
) -> Result<HttpResponse, DashboardError> {
    let source = match editing {
        Some(subscription) => Ok(Some(subscription.source_id)),
        None => form.source(),
    };
    let filter = form.filter_json().and_then(|json| {
        json.as_ref()
            .map(Filter::parse)
            .transpose()
            .map_err(|error| error.to_string())
    });
    let (trial, errors) = match (source, filter) {
        (Err(error), _) => (None, vec![error]),
        (_, Err(message)) => (
            None,
            vec![FieldError {
                field: "filter".to_owned(),
                message,
            }],
        ),
        (_, Ok(filter)) if checking => (
            filter.map(|filter| FilterTrial::Valid(filter.summary())),
            Vec::new(),
        ),
        (Ok(None), Ok(_)) => (Some(FilterTrial::NewSource), Vec::new()),
        (Ok(Some(source)), Ok(filter)) => {
            let filter = filter.unwrap_or_else(Filter::everything);
            let trials =
                service::filters::try_on_source(state, session.actor(), source, &filter).await?;
            let now = Utc::now();
            let lines: Vec<TrialLine> = trials
                .into_iter()
                .map(|trial| TrialLine {
                    event_id: trial.event_id,
                    received: Moment::of(trial.received_at, now),
                    matched: trial.matched,
                    mismatch: trial.mismatch,
                })
                .collect();
            let trial = if lines.is_empty() {
                FilterTrial::NoEvents
            } else {
                FilterTrial::Tried(lines)
            };
            (Some(trial), Vec::new())
        }
    };
    let page = form_page(
        state,
        session,
        editing,
        form.without_secret(),
        FormErrors::new(errors),
        trial,
    )
    .await?;
    render(&page)
}

#[derive(Template)]
#[template(path = "subscriptions/show.html")]
struct ShowPage {
    layout: Layout,
    /// Its unresolved issues, as banners.
    issues: Vec<super::issues::IssueBanner>,
    id: SubscriptionId,
    name: String,
    target_url: String,
    /// Whether it is a `cli` subscription, which `spenza listen` makes and configures.
    listen: bool,
    /// The ingest URL and a `curl` line for it; `None` for a role that may not see them.
    ingest: Option<(String, String)>,
    state: StateBadge,
    is_active: bool,
    previous_secret_until: Option<Moment>,
    provider: Option<String>,
    created: Moment,
    charts: Vec<Chart>,
    log: EventLog,
}

#[derive(Template)]
#[template(path = "subscriptions/delete.html")]
struct DeletePage {
    layout: Layout,
    id: SubscriptionId,
    name: String,
    /// Whether its source (made for it, used by no other) goes with it.
    takes_source: bool,
}

pages!(ListPage, FormPage, ShowPage, DeletePage);

fn field_errors(error: ServiceError) -> Result<FormErrors, DashboardError> {
    match error {
        ServiceError::Invalid(fields) => Ok(FormErrors::new(fields)),
        other => Err(other.into()),
    }
}

/// After an action on a subscription: back to its page, saying what was done.
fn back_to(request: &HttpRequest, id: SubscriptionId, done: impl Into<String>) -> HttpResponse {
    redirect(
        request,
        &format!("/subscriptions/{id}"),
        Some(Flash::success(done)),
    )
}

/// `GET /subscriptions`
pub async fn list(
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    let rows = subscriptions::list_with_stats(&state, session.actor())
        .await?
        .into_iter()
        .map(|(subscription, stats)| SubscriptionRow::new(subscription, stats))
        .collect();
    render(&ListPage {
        layout: session.layout(Nav::Subscriptions),
        rows,
    })
}

/// Which source a new subscription starts on, when it is made from a source's page.
#[derive(Debug, Deserialize)]
pub struct NewQuery {
    pub source_id: Option<Uuid>,
}

/// `GET /subscriptions/new`
pub async fn new(
    session: Session,
    state: web::Data<AppState>,
    query: web::Query<NewQuery>,
) -> Result<HttpResponse, DashboardError> {
    let form = SubscriptionForm {
        source_id: query.source_id.map(|id| id.to_string()).unwrap_or_default(),
        ..SubscriptionForm::default()
    };
    let page = form_page(&state, &session, None, form, FormErrors::default(), None).await?;
    render(&page)
}

/// `POST /subscriptions`: creates the subscription, or, from **Test filter**, shows what its
/// filter makes of the source's recent events.
pub async fn create(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    form: web::Form<SubscriptionForm>,
) -> Result<HttpResponse, DashboardError> {
    let form = form.into_inner();
    if form.tests_filter() || form.checks_filter() {
        let checking = form.checks_filter();
        return try_filter(&state, &session, None, form, checking).await;
    }
    match subscriptions::create_from_form(&state, session.actor(), &form).await {
        Ok(created) => Ok(redirect(
            &request,
            &format!("/subscriptions/{}", created.id),
            Some(Flash::success(
                "Subscription created. Point your provider at its ingest URL.",
            )),
        )),
        Err(error) => {
            let errors = field_errors(error)?;
            let page =
                form_page(&state, &session, None, form.without_secret(), errors, None).await?;
            render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}

/// `GET /subscriptions/{id}`
pub async fn show(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    let subscription = subscriptions::get(&state, session.actor(), id).await?;
    let path = format!("/subscriptions/{id}");
    let log = load_log(&state, &session, Some(id), query.into_inner(), path).await?;
    let now = Utc::now();
    let (hour, day) = subscriptions::activity(&state, session.actor(), id, now).await?;
    let ingest = ingest_and_curl(&state, &subscription.ingest_token, session.actor());
    let issues = super::issues::IssueBanner::about(&state, &session, Some(id), None).await?;
    render(&ShowPage {
        issues,
        layout: session.layout(Nav::Subscriptions),
        id,
        state: StateBadge::of(&subscription),
        is_active: subscription.is_active,
        ingest,
        provider: stored_provider(&subscription).map(|p| providers::label(p.kind()).to_owned()),
        previous_secret_until: subscription
            .previous_signing_secret
            .as_ref()
            .and(subscription.previous_secret_expires_at)
            .filter(|until| *until > now)
            .map(|until| Moment::of(until, now)),
        created: Moment::of(subscription.created_at, now),
        charts: subscription_charts(now, &hour, &day),
        name: subscription.name,
        listen: subscription.kind == SubscriptionKind::Cli,
        target_url: subscription.target_url,
        log,
    })
}

/// `GET /subscriptions/{id}/edit`
pub async fn edit_page(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    let subscription = subscriptions::get(&state, session.actor(), id).await?;
    let form = SubscriptionForm::of(&subscription);
    let page = form_page(
        &state,
        &session,
        Some(&subscription),
        form,
        FormErrors::default(),
        None,
    )
    .await?;
    render(&page)
}

/// `POST /subscriptions/{id}/edit`: saves the changes, or, from **Test filter**, shows what the
/// filter typed makes of the source's recent events.
pub async fn edit(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    form: web::Form<SubscriptionForm>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    let form = form.into_inner();
    if form.tests_filter() || form.checks_filter() {
        let subscription = subscriptions::get(&state, session.actor(), id).await?;
        let checking = form.checks_filter();
        return try_filter(&state, &session, Some(&subscription), form, checking).await;
    }
    match subscriptions::edit_from_form(&state, session.actor(), id, &form).await {
        Ok(_) => Ok(back_to(&request, id, "Changes saved.")),
        Err(ServiceError::NotFound(_)) => Err(DashboardError::NotFound),
        Err(error) => {
            let errors = field_errors(error)?;
            let subscription = subscriptions::get(&state, session.actor(), id).await?;
            let page = form_page(
                &state,
                &session,
                Some(&subscription),
                form.without_secret(),
                errors,
                None,
            )
            .await?;
            render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}

/// `POST /subscriptions/{id}/pause`
pub async fn pause(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    subscriptions::set_active(&state, session.actor(), id, false).await?;
    Ok(back_to(
        &request,
        id,
        "Paused. Events are still accepted and held until you resume.",
    ))
}

/// `POST /subscriptions/{id}/resume`: delivers everything held while it was stopped.
pub async fn resume(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    subscriptions::set_active(&state, session.actor(), id, true).await?;
    Ok(back_to(
        &request,
        id,
        "Resumed. Held events are on their way.",
    ))
}

/// `POST /subscriptions/{id}/rotate-secret`
pub async fn rotate_secret(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    subscriptions::rotate_secret(&state, session.actor(), id).await?;
    let overlap = humantime::format_duration(state.secret_rotation_overlap);
    Ok(back_to(
        &request,
        id,
        format!("New signing secret. The previous one keeps signing deliveries for {overlap}."),
    ))
}

/// `POST /subscriptions/{id}/test-event`
pub async fn send_test_event(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    let event = subscriptions::send_test_event(
        &state,
        session.actor(),
        id,
        crate::request_id::of(&request),
    )
    .await?;
    Ok(back_to(&request, id, format!("Test event {event} sent.")))
}

/// `GET /subscriptions/{id}/delete`: asks before deleting.
pub async fn confirm_delete(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    let (subscription, takes_source) =
        subscriptions::get_for_deletion(&state, session.actor(), id).await?;
    render(&DeletePage {
        layout: session.layout(Nav::Subscriptions),
        id,
        name: subscription.name,
        takes_source,
    })
}

/// `POST /subscriptions/{id}/delete`
pub async fn delete(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    let subscription = subscriptions::get(&state, session.actor(), id).await?;
    subscriptions::delete(&state, session.actor(), id).await?;
    Ok(redirect(
        &request,
        "/subscriptions",
        Some(Flash::success(format!(
            "Deleted {} and its events.",
            subscription.name
        ))),
    ))
}

#[derive(Template)]
#[template(path = "partials/secret.html")]
struct SecretFragment {
    secret: String,
    previous: Option<String>,
}

/// `POST /subscriptions/{id}/secret`: the signing secret, for a role that may see it; each
/// reveal is recorded in the audit log.
pub async fn reveal_secret(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SubscriptionId(id.into_inner());
    let subscription = subscriptions::reveal_secret(&state, session.actor(), id).await?;
    let now = Utc::now();
    let previous = subscription.previous_signing_secret.filter(|_| {
        subscription
            .previous_secret_expires_at
            .is_some_and(|until| until > now)
    });
    let html = SecretFragment {
        secret: subscription.signing_secret,
        previous,
    }
    .render()?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(html))
}
