//! The Issues pages (the list, open first, and each issue with what to do about it) and the
//! Notifications page (the workspace's channels: add, edit, remove, send a test).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::error::DashboardError;
use super::session::Session;
use super::sources::RejectionLine;
use super::view::{Flash, FormErrors, Layout, Moment, Nav, pages, redirect, render, render_with};
use crate::db::models::issue::Issue;
use crate::db::models::notification::Channel;
use crate::domain::{ChannelId, ChannelKind, IssueId, IssueKind, IssueState, SourceId};
use crate::problem::FieldError;
use crate::service::channels::{self, ChannelEdit, ChannelIn};
use crate::service::issues;
use crate::service::subscriptions;
use crate::service::{Permission, ServiceError, sources};
use crate::state::AppState;

/// Refused requests an issue about a source shows.
const REJECTIONS_SHOWN: i64 = 5;

/// An issue as the pages show it.
pub struct IssueRow {
    pub id: IssueId,
    pub kind: IssueKind,
    pub state: IssueState,
    pub cause: String,
    /// What it is about, in words, and its page.
    pub about: String,
    pub about_label: &'static str,
    pub about_link: String,
    pub source_id: SourceId,
    pub count: i64,
    pub first_seen: Moment,
    pub last_seen: Moment,
    pub opened_at: Moment,
    pub reopened: i32,
    pub detail: String,
    pub acknowledged_by: Option<String>,
    /// When and by whom it was resolved, in words.
    pub resolved: Option<String>,
}

/// An unresolved issue, as a banner on the page of what it is about.
pub struct IssueBanner {
    pub id: IssueId,
    pub kind: IssueKind,
    pub state: IssueState,
    pub cause: String,
}

impl IssueBanner {
    /// The banners of the unresolved issues about a subscription, or a source itself.
    pub async fn about(
        state: &AppState,
        session: &Session,
        subscription: Option<crate::domain::SubscriptionId>,
        source: Option<SourceId>,
    ) -> Result<Vec<Self>, ServiceError> {
        Ok(
            issues::unresolved_about(state, session.actor(), subscription, source)
                .await?
                .into_iter()
                .map(|issue| IssueBanner {
                    id: issue.id,
                    kind: issue.kind,
                    state: issue.state,
                    cause: issue.cause,
                })
                .collect(),
        )
    }
}

/// The names of the workspace's subscriptions and sources, by id.
struct Names {
    subscriptions: HashMap<Uuid, String>,
    sources: HashMap<Uuid, String>,
}

impl Names {
    async fn of(state: &AppState, session: &Session) -> Result<Self, ServiceError> {
        let actor = session.actor();
        Ok(Names {
            subscriptions: subscriptions::list(state, actor)
                .await?
                .into_iter()
                .map(|s| (s.id.0, s.name))
                .collect(),
            sources: sources::list(state, actor)
                .await?
                .into_iter()
                .map(|s| (s.id.0, s.name))
                .collect(),
        })
    }
}

impl IssueRow {
    fn of(issue: Issue, names: &Names, now: DateTime<Utc>) -> Self {
        let source = names
            .sources
            .get(&issue.source_id.0)
            .cloned()
            .unwrap_or_else(|| "(deleted source)".to_owned());
        let (about, about_label, about_link) = match issue.subscription_id {
            Some(subscription) => (
                format!(
                    "{} (source {source})",
                    names
                        .subscriptions
                        .get(&subscription.0)
                        .map_or("(deleted subscription)", String::as_str)
                ),
                "Subscription",
                format!("/subscriptions/{subscription}"),
            ),
            None => (source, "Source", format!("/sources/{}", issue.source_id)),
        };
        let resolved = issue.resolved_at.map(|at| {
            let when = Moment::of(at, now).relative;
            match &issue.resolved_by {
                Some(by) => format!("{when}, by {by}"),
                None => format!("{when}, by itself: its condition cleared"),
            }
        });
        IssueRow {
            id: issue.id,
            kind: issue.kind,
            state: issue.state,
            cause: issue.cause,
            about,
            about_label,
            about_link,
            source_id: issue.source_id,
            count: issue.count,
            first_seen: Moment::of(issue.first_seen, now),
            last_seen: Moment::of(issue.last_seen, now),
            opened_at: Moment::of(issue.opened_at, now),
            reopened: issue.reopened,
            detail: issue.detail,
            acknowledged_by: issue.acknowledged_by,
            resolved,
        }
    }

    /// The badge of its state.
    pub fn state_class(&self) -> &'static str {
        match self.state {
            IssueState::Open => "badge-bad",
            IssueState::Acknowledged => "status-retrying",
            IssueState::Resolved => "badge-ok",
        }
    }
}

/// The Issues page's filters, as typed.
#[derive(Debug, Default, Deserialize)]
pub struct IssueFilter {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Template)]
#[template(path = "issues/list.html")]
struct IssuesPage {
    layout: Layout,
    filter: IssueFilter,
    rows: Vec<IssueRow>,
    states: &'static [IssueState],
    kinds: &'static [IssueKind],
    has_channels: bool,
}

pages!(IssuesPage);

/// `GET /issues`: unresolved first, the most recently seen first, then resolved ones.
pub async fn list(
    session: Session,
    state: web::Data<AppState>,
    filter: web::Query<IssueFilter>,
) -> Result<HttpResponse, DashboardError> {
    let filter = filter.into_inner();
    let kind = filter.kind.parse().ok();
    let states: Vec<IssueState> = filter.state.parse().ok().into_iter().collect();
    let found = issues::board(&state, session.actor(), kind, &states).await?;
    let names = Names::of(&state, &session).await?;
    let has_channels = !channels::list(&state, session.actor()).await?.is_empty();
    let now = Utc::now();
    render(&IssuesPage {
        layout: session.layout(Nav::Issues),
        rows: found
            .into_iter()
            .map(|issue| IssueRow::of(issue, &names, now))
            .collect(),
        filter,
        states: IssueState::ALL,
        kinds: IssueKind::ALL,
        has_channels,
    })
}

/// A message sent, or waiting, about an issue.
pub struct SentRow {
    pub channel: String,
    pub event_type: String,
    pub transitions: i32,
    /// When it went, or why it has not yet.
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "issues/show.html")]
struct IssuePage {
    layout: Layout,
    issue: IssueRow,
    /// What happened, in a sentence.
    summary: String,
    /// What the count counts.
    count_means: &'static str,
    examples: Vec<Uuid>,
    rejections: Vec<RejectionLine>,
    /// Whether its subscription is disabled now (the breaker's issues).
    subscription_disabled: bool,
    /// Its subscription's deliveries in the graveyard (failures' issues).
    failed: i64,
    notifications: Vec<SentRow>,
}

pages!(IssuePage);

/// `GET /issues/{id}`
pub async fn show(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let actor = session.actor();
    let issue = issues::get(&state, actor, IssueId(id.into_inner())).await?;
    let now = Utc::now();
    let subscription = match issue.subscription_id {
        Some(id) => Some(subscriptions::get(&state, actor, id).await?),
        None => None,
    };
    let subscription_disabled = subscription
        .as_ref()
        .is_some_and(|subscription| !subscription.is_active);
    let failed = match (issue.kind, issue.subscription_id) {
        (IssueKind::DeliveriesFailed, Some(id)) => {
            issues::failed_waiting(&state, actor, id).await?
        }
        _ => 0,
    };
    let rejections = if issue.kind == IssueKind::SourceRejecting {
        sources::rejections(&state, actor, issue.source_id, REJECTIONS_SHOWN)
            .await?
            .into_iter()
            .map(|rejected| RejectionLine::new(rejected, now))
            .collect()
    } else {
        Vec::new()
    };
    let notifications = issues::notifications(&state, actor, issue.id)
        .await?
        .into_iter()
        .map(|sent| SentRow {
            outcome: match (sent.sent_at, &sent.last_error) {
                (Some(at), _) => Moment::of(at, now).relative,
                (None, Some(error)) => format!(
                    "not yet ({} tries; next {}): {error}",
                    sent.attempts,
                    Moment::of(sent.due_at, now).relative
                ),
                (None, None) => format!("due {}", Moment::of(sent.due_at, now).relative),
            },
            channel: sent.channel,
            event_type: sent.event_type,
            transitions: sent.transitions,
        })
        .collect();
    let (summary, count_means) = summary(&issue);
    let examples = if issue.kind == IssueKind::SourceRejecting {
        Vec::new()
    } else {
        issue.examples.clone()
    };
    // The names of what it is about, and no others.
    let source = sources::get(&state, actor, issue.source_id).await?;
    let names = Names {
        subscriptions: subscription.into_iter().map(|s| (s.id.0, s.name)).collect(),
        sources: HashMap::from([(source.id.0, source.name)]),
    };
    render(&IssuePage {
        layout: session.layout(Nav::Issues),
        issue: IssueRow::of(issue, &names, now),
        summary,
        count_means,
        examples,
        rejections,
        subscription_disabled,
        failed,
        notifications,
    })
}

/// What happened, in a sentence, and what the count counts.
fn summary(issue: &Issue) -> (String, &'static str) {
    match issue.kind {
        IssueKind::SubscriptionDisabled => (
            "The circuit breaker disabled this subscription: its endpoint failed too many times in a row.".into(),
            "times disabled",
        ),
        IssueKind::DeliveriesFailed => (
            format!(
                "Deliveries used up their retries and went to the graveyard: {}.",
                issue.cause
            ),
            "failed deliveries",
        ),
        IssueKind::SourceRejecting => (
            "The source keeps refusing requests: their signature, credentials or handshake do not hold.".into(),
            "refused requests",
        ),
        IssueKind::SubscriptionLagging => (
            "The subscription falls behind: its oldest undelivered event waits longer than it should.".into(),
            "times it fell behind",
        ),
    }
}

/// `POST /issues/{id}/acknowledge`
pub async fn acknowledge(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    change(request, session, state, id, IssueState::Acknowledged).await
}

/// `POST /issues/{id}/resolve`
pub async fn resolve(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    change(request, session, state, id, IssueState::Resolved).await
}

async fn change(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    to: IssueState,
) -> Result<HttpResponse, DashboardError> {
    let id = IssueId(id.into_inner());
    issues::change(&state, session.actor(), id, to).await?;
    let flash = match to {
        IssueState::Acknowledged => "Acknowledged: the others know someone is on it.",
        _ => "Resolved. It reopens if its condition is still there.",
    };
    Ok(redirect(
        &request,
        &format!("/issues/{id}"),
        Some(Flash::success(flash)),
    ))
}

/// `POST /issues/{id}/reenable`: enables the breaker's subscription again.
pub async fn reenable(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = IssueId(id.into_inner());
    issues::reenable(&state, session.actor(), id).await?;
    Ok(redirect(
        &request,
        &format!("/issues/{id}"),
        Some(Flash::success(
            "Re-enabled: held events are on their way. The issue resolves once one is delivered.",
        )),
    ))
}

/// `POST /issues/{id}/replay`: replays its subscription's failed deliveries.
pub async fn replay(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = IssueId(id.into_inner());
    let queued = issues::replay_failed(state.into_inner(), session.actor(), id).await?;
    Ok(redirect(
        &request,
        &format!("/issues/{id}"),
        Some(Flash::success(format!(
            "{queued} failed event{} queued again. The issue resolves once one is delivered.",
            if queued == 1 { "" } else { "s" }
        ))),
    ))
}

/// A channel as the Notifications page lists it.
pub struct ChannelRow {
    pub id: ChannelId,
    pub name: String,
    pub kind_label: &'static str,
    pub target: String,
    pub kinds: Vec<IssueKind>,
    /// A webhook channel's secret, for those who may see secrets.
    pub signing_secret: Option<String>,
}

impl ChannelRow {
    fn of(channel: Channel, may_see_secrets: bool) -> Self {
        ChannelRow {
            kinds: channel.issue_kinds(),
            id: channel.id,
            name: channel.name,
            kind_label: match channel.kind {
                ChannelKind::Email => "email",
                ChannelKind::Slack => "Slack",
                ChannelKind::Webhook => "webhook, signed",
            },
            // A Slack or webhook URL lets whoever has it post there: a secret.
            target: if channel.kind == ChannelKind::Email || may_see_secrets {
                channel.target
            } else {
                "(hidden: whoever has it can post there)".to_owned()
            },
            signing_secret: channel.signing_secret.filter(|_| may_see_secrets),
        }
    }
}

/// The channel form, as typed: `kinds` may come several times.
#[derive(Debug, Default)]
pub struct ChannelForm {
    pub kind: String,
    pub target: String,
    pub name: String,
    pub kinds: Vec<String>,
}

impl ChannelForm {
    fn parse(body: &[u8]) -> Self {
        let mut form = ChannelForm::default();
        for (name, value) in url::form_urlencoded::parse(body) {
            match name.as_ref() {
                "kind" => form.kind = value.into_owned(),
                "target" => form.target = value.trim().to_owned(),
                "name" => form.name = value.trim().to_owned(),
                "kinds" => form.kinds.push(value.into_owned()),
                _ => {}
            }
        }
        form
    }

    fn of(channel: &Channel) -> Self {
        ChannelForm {
            kind: channel.kind.to_string(),
            target: channel.target.clone(),
            name: channel.name.clone(),
            kinds: channel.kinds.clone(),
        }
    }

    /// Whether the form ticks `kind` (a new form ticks them all).
    pub fn takes(&self, kind: &IssueKind) -> bool {
        self.kinds.iter().any(|k| k == kind.as_str())
    }

    fn issue_kinds(&self) -> Vec<IssueKind> {
        self.kinds.iter().filter_map(|k| k.parse().ok()).collect()
    }

    fn name(&self) -> Option<String> {
        Some(self.name.clone()).filter(|name| !name.is_empty())
    }

    /// Where it sends, as the API names it for `kind`: `(address, url)`.
    fn target_for(&self, kind: ChannelKind) -> (Option<String>, Option<String>) {
        match kind {
            ChannelKind::Email => (Some(self.target.clone()), None),
            ChannelKind::Slack | ChannelKind::Webhook => (None, Some(self.target.clone())),
        }
    }
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    layout: Layout,
    channels: Vec<ChannelRow>,
    form: ChannelForm,
    errors: FormErrors,
    /// The channel being edited.
    editing: Option<ChannelId>,
    kinds: &'static [IssueKind],
    /// Whether an SMTP server is set.
    mail: bool,
}

pages!(NotificationsPage);

async fn notifications_page(
    state: &AppState,
    session: &Session,
    form: ChannelForm,
    errors: Vec<FieldError>,
    editing: Option<ChannelId>,
) -> Result<NotificationsPage, DashboardError> {
    let may_see_secrets = session.actor().may(Permission::Secrets);
    let channels = channels::list(state, session.actor())
        .await?
        .into_iter()
        .map(|channel| ChannelRow::of(channel, may_see_secrets))
        .collect();
    // The form names where a channel sends `target`, whatever its kind.
    let errors = errors
        .into_iter()
        .map(|error| match error.field.as_str() {
            "address" | "url" => FieldError {
                field: "target".into(),
                ..error
            },
            _ => error,
        })
        .collect();
    Ok(NotificationsPage {
        layout: session.layout(Nav::Issues),
        channels,
        form,
        errors: FormErrors::new(errors),
        editing,
        kinds: IssueKind::ALL,
        mail: state.mailer.is_some(),
    })
}

/// `GET /notifications`
pub async fn notifications(
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    let form = ChannelForm {
        kind: if state.mailer.is_some() {
            "email"
        } else {
            "webhook"
        }
        .into(),
        kinds: IssueKind::ALL
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        ..ChannelForm::default()
    };
    render(&notifications_page(&state, &session, form, Vec::new(), None).await?)
}

/// `POST /notifications`: adds a channel.
pub async fn create_channel(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, DashboardError> {
    let form = ChannelForm::parse(&body);
    let kind = match form.kind.parse::<ChannelKind>() {
        Ok(kind) => kind,
        Err(error) => {
            let errors = vec![FieldError {
                field: "kind".into(),
                message: error.to_string(),
            }];
            let page = notifications_page(&state, &session, form, errors, None).await?;
            return render_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let (address, url) = form.target_for(kind);
    let input = ChannelIn {
        kind,
        name: form.name(),
        address,
        url,
        kinds: Some(form.issue_kinds()),
    };
    match channels::create(&state, session.actor(), &input).await {
        Ok(channel) => Ok(redirect(
            &request,
            "/notifications",
            Some(Flash::success(format!(
                "Channel {} added. Send it a test to see a message.",
                channel.name
            ))),
        )),
        Err(ServiceError::Invalid(errors)) => {
            let page = notifications_page(&state, &session, form, errors, None).await?;
            render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

/// `GET /notifications/{id}/edit`
pub async fn edit_channel_page(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = ChannelId(id.into_inner());
    let channel = channels::get(&state, session.actor(), id).await?;
    let form = ChannelForm::of(&channel);
    render(&notifications_page(&state, &session, form, Vec::new(), Some(id)).await?)
}

/// `POST /notifications/{id}`: saves an edit.
pub async fn edit_channel(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, DashboardError> {
    let id = ChannelId(id.into_inner());
    let channel = channels::get(&state, session.actor(), id).await?;
    let mut form = ChannelForm::parse(&body);
    form.kind = channel.kind.to_string();
    let (address, url) = form.target_for(channel.kind);
    let edit = ChannelEdit {
        name: Some(if form.name.is_empty() {
            channel.name.clone()
        } else {
            form.name.clone()
        }),
        address,
        url,
        kinds: Some(form.issue_kinds()),
    };
    match channels::edit(&state, session.actor(), id, &edit).await {
        Ok(channel) => Ok(redirect(
            &request,
            "/notifications",
            Some(Flash::success(format!("Channel {} saved.", channel.name))),
        )),
        Err(ServiceError::Invalid(errors)) => {
            let page = notifications_page(&state, &session, form, errors, Some(id)).await?;
            render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /notifications/{id}/delete`
pub async fn delete_channel(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    channels::delete(&state, session.actor(), ChannelId(id.into_inner())).await?;
    Ok(redirect(
        &request,
        "/notifications",
        Some(Flash::success("Channel removed.")),
    ))
}

/// `POST /notifications/{id}/test`: sends a test message, and says how it went.
pub async fn test_channel(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = ChannelId(id.into_inner());
    let flash = match channels::send_test(&state, session.actor(), id).await? {
        Ok(()) => Flash::success("Test message sent."),
        Err(error) => Flash::problem(format!("The test message did not go: {error}")),
    };
    Ok(redirect(&request, "/notifications", Some(flash)))
}
