//! Source pages: the list, create, the source's own page (its ingest URL, its subscriptions and
//! its latest events), edit, delete.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::DashboardError;
use super::providers::{self, ProviderForm};
use super::session::Session;
use super::subscriptions::StateBadge;
use super::view::{
    Flash, FormErrors, Layout, Moment, Nav, ingest_and_curl, pages, redirect, render, render_with,
};
use crate::db::models::event::EventLine;
use crate::db::models::listen_session::ListenSession;
use crate::db::models::rejected_request::RejectedRequest;
use crate::db::models::source::{self, Source, SourceCounts};
use crate::db::models::subscription::Subscription;
use crate::domain::{EventId, Filter, SourceId, SubscriptionId, SubscriptionKind};
use crate::service::provider_form::{self, ProviderFields};
use crate::service::sources::{self, SourceForm, stored_provider};
use crate::service::{Actor, ServiceError};
use crate::signing::incoming::Rejection;
use crate::state::AppState;

/// How many of its latest events a source's page lists.
const RECENT_EVENTS: i64 = 20;
/// How many of its latest refused requests a source's page lists.
const RECENT_REJECTIONS: i64 = 25;

/// The provider a source checks, as the form names it; `None` when it checks none.
fn provider_label(source: &Source) -> Option<&'static str> {
    stored_provider(source).map(|provider| providers::label(provider.kind()))
}

/// One line of the sources list.
pub struct SourceRow {
    pub id: SourceId,
    pub name: String,
    /// `None` for a role that may not see it.
    pub ingest_url: Option<String>,
    pub provider: Option<&'static str>,
    pub subscriptions: i64,
    pub events_24h: i64,
}

impl SourceRow {
    fn new(source: Source, counts: Option<SourceCounts>, state: &AppState, actor: &Actor) -> Self {
        let (subscriptions, events_24h) = counts.map_or((0, 0), |c| (c.subscriptions, c.events));
        SourceRow {
            id: source.id,
            ingest_url: state.ingest_url_for(&source.ingest_token, actor),
            provider: provider_label(&source),
            name: source.name,
            subscriptions,
            events_24h,
        }
    }
}

/// One subscription of a source, as the source's page lists it.
pub struct SubscriptionLine {
    pub id: SubscriptionId,
    pub name: String,
    pub target_url: String,
    pub state: StateBadge,
    /// What its filter takes, in short; `None` when it takes every event.
    pub filter: Option<String>,
    /// Deliveries made for it of events received in the last 24 hours.
    pub matched_24h: i64,
    /// For a `cli` subscription: the `spenza listen` sessions connected to it.
    pub listen: Option<Vec<Connected>>,
}

/// A `spenza listen` session connected to a subscription.
pub struct Connected {
    pub since: Moment,
    /// The address it connected from.
    pub address: String,
    /// The replica that holds it.
    pub replica: String,
}

impl SubscriptionLine {
    fn new(
        subscription: Subscription,
        matched_24h: i64,
        listening: &[ListenSession],
        now: DateTime<Utc>,
    ) -> Self {
        let listen = (subscription.kind == SubscriptionKind::Cli).then(|| {
            listening
                .iter()
                .filter(|session| session.subscription_id == subscription.id)
                .map(|session| Connected {
                    since: Moment::of(session.connected_at, now),
                    address: session
                        .address
                        .clone()
                        .unwrap_or_else(|| "an unknown address".to_owned()),
                    replica: session.replica.clone(),
                })
                .collect()
        });
        SubscriptionLine {
            listen,
            id: subscription.id,
            state: StateBadge::of(&subscription),
            filter: subscription
                .filter
                .as_ref()
                .map(|json| match Filter::parse(json) {
                    Ok(filter) => filter.summary(),
                    // Checked when saved: only a new filter language makes one unreadable.
                    Err(error) => format!("unreadable filter: {error}"),
                }),
            name: subscription.name,
            target_url: subscription.target_url,
            matched_24h,
        }
    }
}

/// One of a source's latest events.
pub struct RecentEvent {
    pub id: EventId,
    /// Its deliveries' statuses rolled up; `unrouted` when no subscription took it.
    pub status: &'static str,
    /// How many subscriptions it was routed to.
    pub deliveries: usize,
    pub received: Moment,
}

impl RecentEvent {
    fn new(line: EventLine, now: DateTime<Utc>) -> Self {
        RecentEvent {
            id: line.id,
            status: line.status().as_str(),
            deliveries: line.statuses.len(),
            received: Moment::of(line.received_at, now),
        }
    }
}

/// One refused request, as the source's page lists it.
pub struct RejectionLine {
    pub received: Moment,
    pub reason: &'static str,
    pub handshake: bool,
    pub method: String,
    pub path: String,
    /// Its headers, credentials masked, in the order they were stored.
    pub headers: Vec<(String, String)>,
    pub body_sample: String,
    pub body_bytes: i32,
}

impl RejectionLine {
    pub fn new(rejected: RejectedRequest, now: DateTime<Utc>) -> Self {
        RejectionLine {
            received: Moment::of(rejected.received_at, now),
            reason: reason_label(&rejected.reason),
            handshake: rejected.handshake,
            method: rejected.method,
            path: rejected.path,
            headers: rejected
                .headers
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
                .collect(),
            body_sample: String::from_utf8_lossy(&rejected.body_sample).into_owned(),
            body_bytes: rejected.body_bytes,
        }
    }
}

/// What a refusal's reason (a `Rejection::reason`) reads as on the page.
fn reason_label(reason: &str) -> &'static str {
    Rejection::from_reason(reason).map_or("refused", Rejection::label)
}

/// The source's last handshake, as its page shows it.
pub struct HandshakeLine {
    pub when: Moment,
    /// `answered`, or the reason it was refused, as the page reads it.
    pub outcome: &'static str,
    pub answered: bool,
    /// When one was last answered, if the last was refused.
    pub answered_before: Option<Moment>,
}

#[derive(Template)]
#[template(path = "sources/list.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<SourceRow>,
}

#[derive(Template)]
#[template(path = "sources/form.html")]
struct FormPage {
    layout: Layout,
    /// `None` when creating.
    editing: Option<SourceId>,
    form: SourceForm,
    errors: FormErrors,
    /// The kind of the check stored now, whose secrets a blank field keeps.
    stored_kind: Option<&'static str>,
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
    /// Whether the answer's fields start unfolded: some are set, or wrong.
    fn answer_open(&self) -> bool {
        let form = &self.form;
        !(form.response_status.is_empty()
            && form.response_body.trim().is_empty()
            && form.response_content_type.trim().is_empty())
            || self.errors.of("response").is_some()
            || self.errors.of("response_status").is_some()
    }

    fn action(&self) -> String {
        match self.editing {
            Some(id) => format!("/sources/{id}"),
            None => "/sources".to_owned(),
        }
    }
}

#[derive(Template)]
#[template(path = "sources/show.html")]
struct ShowPage {
    layout: Layout,
    /// Its unresolved issues, as banners.
    issues: Vec<super::issues::IssueBanner>,
    id: SourceId,
    name: String,
    /// The ingest URL and a `curl` line for it; `None` for a role that may not see them.
    ingest: Option<(String, String)>,
    provider: Option<&'static str>,
    /// The provider's kind, for the link to what it needs.
    provider_kind: Option<&'static str>,
    /// The handshake the relay answers for the provider, if it makes one.
    handshake: Option<&'static str>,
    last_handshake: Option<HandshakeLine>,
    /// What an accepted request is answered, in words.
    answer: String,
    created: Moment,
    subscriptions: Vec<SubscriptionLine>,
    events: Vec<RecentEvent>,
    rejections: Vec<RejectionLine>,
}

#[derive(Template)]
#[template(path = "sources/delete.html")]
struct DeletePage {
    layout: Layout,
    id: SourceId,
    name: String,
    /// The names of the subscriptions deleted with it.
    subscriptions: Vec<String>,
}

pages!(ListPage, FormPage, ShowPage, DeletePage);

fn field_errors(error: ServiceError) -> Result<FormErrors, DashboardError> {
    match error {
        ServiceError::Invalid(fields) => Ok(FormErrors::new(fields)),
        other => Err(other.into()),
    }
}

/// `GET /sources`
pub async fn list(
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    let rows = sources::list_with_counts(&state, session.actor())
        .await?
        .into_iter()
        .map(|(source, counts)| SourceRow::new(source, counts, &state, session.actor()))
        .collect();
    render(&ListPage {
        layout: session.layout(Nav::Sources),
        rows,
    })
}

/// `GET /sources/new`
pub async fn new(session: Session) -> Result<HttpResponse, DashboardError> {
    render(&FormPage {
        layout: session.layout(Nav::Sources),
        editing: None,
        form: SourceForm::default(),
        errors: FormErrors::default(),
        stored_kind: None,
    })
}

/// `POST /sources`
pub async fn create(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    form: web::Form<SourceForm>,
) -> Result<HttpResponse, DashboardError> {
    let form = form.into_inner();
    match sources::create_from_form(&state, session.actor(), &form).await {
        Ok(created) => Ok(redirect(
            &request,
            &format!("/sources/{}", created.id),
            Some(Flash::success(
                "Source created. Give its ingest URL to your provider, then add a subscription.",
            )),
        )),
        Err(error) => render_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            &FormPage {
                layout: session.layout(Nav::Sources),
                editing: None,
                errors: field_errors(error)?,
                form: form.without_secret(),
                stored_kind: None,
            },
        ),
    }
}

/// `GET /sources/{id}`
pub async fn show(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SourceId(id.into_inner());
    let overview = sources::overview(
        &state,
        session.actor(),
        id,
        RECENT_EVENTS,
        RECENT_REJECTIONS,
    )
    .await?;
    let now = Utc::now();
    let source = overview.source;
    let ingest = ingest_and_curl(&state, &source.ingest_token, session.actor());
    let kind = stored_provider(&source).map(|provider| provider.kind());
    let answer = match sources::stored_response(&source) {
        None => "202 with the event id as JSON (the default)".to_owned(),
        Some(response) => match response.custom_body() {
            Some((_, content_type)) => format!(
                "{} with a body of its own ({content_type})",
                response.status
            ),
            None if response.status == 204 => "204 with no body".to_owned(),
            None => format!("{} with the event id as JSON", response.status),
        },
    };
    let issues = super::issues::IssueBanner::about(&state, &session, None, Some(id)).await?;
    render(&ShowPage {
        issues,
        layout: session.layout(Nav::Sources),
        id,
        ingest,
        provider: provider_label(&source),
        provider_kind: kind,
        handshake: kind
            .and_then(provider_form::provider)
            .and_then(|info| info.handshake),
        last_handshake: source
            .last_handshake_at
            .zip(source.last_handshake_outcome.as_deref())
            .map(|(at, outcome)| {
                let answered = outcome == source::ANSWERED;
                HandshakeLine {
                    when: Moment::of(at, now),
                    answered,
                    outcome: if answered {
                        source::ANSWERED
                    } else {
                        reason_label(outcome)
                    },
                    answered_before: source
                        .last_handshake_answered_at
                        .filter(|_| !answered)
                        .map(|at| Moment::of(at, now)),
                }
            }),
        answer,
        created: Moment::of(source.created_at, now),
        subscriptions: overview
            .subscriptions
            .into_iter()
            .map(|(subscription, matched)| {
                SubscriptionLine::new(subscription, matched, &overview.listening, now)
            })
            .collect(),
        events: overview
            .recent_events
            .into_iter()
            .map(|line| RecentEvent::new(line, now))
            .collect(),
        rejections: overview
            .rejections
            .into_iter()
            .map(|rejected| RejectionLine::new(rejected, now))
            .collect(),
        name: source.name,
    })
}

/// `GET /sources/{id}/edit`
pub async fn edit_page(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SourceId(id.into_inner());
    let source = sources::get(&state, session.actor(), id).await?;
    render(&FormPage {
        layout: session.layout(Nav::Sources),
        editing: Some(id),
        form: SourceForm::of(&source),
        errors: FormErrors::default(),
        stored_kind: stored_provider(&source).map(|provider| provider.kind()),
    })
}

/// `POST /sources/{id}`
pub async fn edit(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    form: web::Form<SourceForm>,
) -> Result<HttpResponse, DashboardError> {
    let id = SourceId(id.into_inner());
    let form = form.into_inner();
    match sources::edit_from_form(&state, session.actor(), id, &form).await {
        Ok(_) => Ok(redirect(
            &request,
            &format!("/sources/{id}"),
            Some(Flash::success("Changes saved.")),
        )),
        Err(ServiceError::NotFound(_)) => Err(DashboardError::NotFound),
        Err(error) => {
            let stored_kind = stored_provider(&sources::get(&state, session.actor(), id).await?)
                .map(|provider| provider.kind());
            render_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                &FormPage {
                    layout: session.layout(Nav::Sources),
                    editing: Some(id),
                    errors: field_errors(error)?,
                    form: form.without_secret(),
                    stored_kind,
                },
            )
        }
    }
}

/// `GET /sources/{id}/delete`: asks before deleting.
pub async fn confirm_delete(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SourceId(id.into_inner());
    let (source, subscriptions) =
        sources::get_with_subscriptions(&state, session.actor(), id).await?;
    render(&DeletePage {
        layout: session.layout(Nav::Sources),
        id,
        name: source.name,
        subscriptions: subscriptions.into_iter().map(|s| s.name).collect(),
    })
}

/// `POST /sources/{id}/delete`
pub async fn delete(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = SourceId(id.into_inner());
    let source = sources::get(&state, session.actor(), id).await?;
    sources::delete(&state, session.actor(), id).await?;
    Ok(redirect(
        &request,
        "/sources",
        Some(Flash::success(format!(
            "Deleted {}, its subscriptions and its events.",
            source.name
        ))),
    ))
}
