//! The event log (across subscriptions at `/events`, of one on its page) with its filters and
//! keyset pages, an event's own page, and replay.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::error::DashboardError;
use super::session::Session;
use super::view::{Flash, FormErrors, Layout, Moment, Nav, pages, redirect, render};
use crate::db::models::delivery::{DeliverySummary, EventPage, RATE_LIMIT, ReplayFilter};
use crate::db::models::delivery_attempt::{DeliveryAttempt, LastAttempt};
use crate::db::models::event::Event;
use crate::domain::{DeliveryId, EventId, EventStatus, SubscriptionId};
use crate::problem::FieldError;
use crate::retention::RetentionPolicy;
use crate::service::{self, Actor, Permission, ServiceError};
use crate::state::AppState;

/// How many events a page of the log shows.
const PAGE: i64 = 50;
/// How much of a binary body the event page shows.
const BINARY_PREVIEW: usize = 256;

/// One delivery of an event as the log shows it. The row carries `data-event-id`,
/// `data-delivery-id` and `data-status`.
pub struct EventLine {
    /// The event's id.
    pub id: String,
    pub delivery_id: String,
    /// The event's subscription (id, name), in a log across subscriptions.
    pub subscription: Option<(SubscriptionId, String)>,
    pub status: &'static str,
    pub attempts: i32,
    pub received: Moment,
    /// How the latest attempt ended: `HTTP 200`, or the error.
    pub last_response: Option<String>,
    /// From arrival to delivery, for a completed event.
    pub delivery_time: Option<String>,
}

impl EventLine {
    /// A delivery of the log, its time described from `now`.
    pub fn new(event: DeliverySummary, last: Option<LastAttempt>, now: DateTime<Utc>) -> Self {
        EventLine {
            id: event.event_id.to_string(),
            delivery_id: event.id.to_string(),
            subscription: None,
            status: event.status.as_str(),
            attempts: event.attempts,
            received: Moment::of(event.received_at, now),
            last_response: last
                .map(|last| outcome(last.status_code, last.error.as_deref()))
                .or(event.last_error),
            delivery_time: event
                .completed_at
                .map(|done| duration(done - event.received_at)),
        }
    }
}

fn outcome(status_code: Option<i32>, error: Option<&str>) -> String {
    match (status_code, error) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(error)) => error.to_owned(),
        (None, None) => "no answer".to_owned(),
    }
}

fn duration(span: TimeDelta) -> String {
    match span.num_milliseconds() {
        ms if ms < 1000 => format!("{} ms", ms.max(0)),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{} min", ms / 60_000),
        ms => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// The log's filters, as its form sends them (`GET`, so a filtered log is a link).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    pub status: String,
    /// `datetime-local` values, read as UTC.
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub payload: String,
    #[serde(default)]
    pub before: String,
}

/// A page of the log, ready to render.
pub struct EventLog {
    pub lines: Vec<EventLine>,
    pub query: LogQuery,
    pub errors: FormErrors,
    /// Where the log's filter form goes: the page it is on.
    pub path: String,
    /// The next (older) page, when there may be one.
    pub older: Option<String>,
    /// Whether any filter is set, to tell "nothing yet" from "nothing matches".
    pub filtered: bool,
    /// Whether the log spans every subscription (each row then names its own).
    pub across: bool,
    /// The WebSocket that keeps this page current.
    pub live_url: String,
    /// Whether rows can be ticked for a bulk replay: the graveyard across subscriptions.
    pub selectable: bool,
}

impl EventLog {
    /// The statuses the filter offers.
    pub fn statuses(&self) -> [&'static str; 4] {
        ["pending", "retrying", "completed", "failed"]
    }
}

fn parse_time(field: &str, raw: &str) -> Result<Option<DateTime<Utc>>, FieldError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
                .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
                .map(|at| at.and_utc())
        })
        .map(Some)
        .map_err(|_| FieldError {
            field: field.to_owned(),
            message: "write a date and time, such as 2026-11-28T09:30 (UTC)".to_owned(),
        })
}

/// A filter that was read, or none, its problem noted.
fn kept<T>(errors: &mut Vec<FieldError>, parsed: Result<Option<T>, FieldError>) -> Option<T> {
    parsed.unwrap_or_else(|error| {
        errors.push(error);
        None
    })
}

impl LogQuery {
    /// The page of events it asks for, and the problems of the fields that could not be read
    /// (those filters are left out, the others apply).
    fn page(&self) -> (EventPage, Vec<FieldError>) {
        let mut errors = Vec::new();
        let status = kept(
            &mut errors,
            match self.status.trim() {
                "" => Ok(None),
                status => status
                    .parse::<EventStatus>()
                    .map(Some)
                    .map_err(|_| FieldError {
                        field: "status".to_owned(),
                        message: "choose a status from the list".to_owned(),
                    }),
            },
        );
        let since = kept(&mut errors, parse_time("since", &self.since));
        let until = kept(&mut errors, parse_time("until", &self.until));
        let payload = kept(
            &mut errors,
            match service::events::payload_filter(&self.payload) {
                Ok(payload) => Ok(payload),
                Err(ServiceError::Invalid(mut fields)) if !fields.is_empty() => {
                    Err(fields.remove(0))
                }
                Err(_) => Ok(None),
            },
        );
        let page = EventPage {
            status,
            before: Uuid::parse_str(self.before.trim()).ok().map(DeliveryId),
            after: None,
            since,
            until,
            payload,
            limit: PAGE,
        };
        (page, errors)
    }

    fn filtered(&self) -> bool {
        [&self.status, &self.since, &self.until, &self.payload]
            .iter()
            .any(|value| !value.trim().is_empty())
    }

    /// The link to the page after `last`, with the same filters.
    fn older_than(&self, path: &str, last: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("status", &self.status)
            .append_pair("since", &self.since)
            .append_pair("until", &self.until)
            .append_pair("payload", &self.payload)
            .append_pair("before", last)
            .finish();
        format!("{path}?{query}")
    }
}

/// The WebSocket URL of a page of the log. New rows are added live only where they belong at the
/// top of the page: not on an older page, nor under a time or payload filter the live feed does
/// not apply; rows already shown are kept current everywhere.
fn live_url(
    subscription: Option<SubscriptionId>,
    page: &EventPage,
    newest: Option<EventId>,
) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(subscription) = subscription {
        query.append_pair("subscription", &subscription.to_string());
    }
    if let Some(status) = page.status {
        query.append_pair("status", status.as_str());
    }
    if page.before.is_some()
        || page.since.is_some()
        || page.until.is_some()
        || page.payload.is_some()
    {
        query.append_pair("new", "false");
    }
    // Events up to the newest shown are on the page already, whenever their notice arrives.
    if let Some(newest) = newest {
        query.append_pair("after", &newest.to_string());
    }
    format!("/ws?{}", query.finish())
}

/// A page of the log of `subscription` (or of all the workspace's), as `query` asks.
pub async fn load_log(
    state: &AppState,
    session: &Session,
    subscription: Option<SubscriptionId>,
    query: LogQuery,
    path: String,
) -> Result<EventLog, DashboardError> {
    let (page, errors) = query.page();
    let found = service::events::log(state, session.actor(), subscription, &page, true).await?;
    let older = (found.len() as i64 == PAGE)
        .then(|| found.last().map(|(delivery, _)| delivery.id.to_string()))
        .flatten()
        .map(|last| query.older_than(&path, &last));
    // Across subscriptions, each row names its own.
    let names: Vec<(SubscriptionId, String)> = match subscription {
        Some(_) => Vec::new(),
        None => service::subscriptions::list(state, session.actor())
            .await?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect(),
    };
    let now = Utc::now();
    Ok(EventLog {
        // Rows are ticked for a bulk replay, which a viewer may not make.
        selectable: subscription.is_none()
            && page.status == Some(EventStatus::Failed)
            && session.actor().may(Permission::Change),
        across: subscription.is_none(),
        live_url: live_url(
            subscription,
            &page,
            found.first().map(|(delivery, _)| delivery.event_id),
        ),
        lines: found
            .into_iter()
            .map(|(event, last)| {
                let subscription = names
                    .iter()
                    .find(|(id, _)| *id == event.subscription_id)
                    .cloned();
                EventLine {
                    subscription,
                    ..EventLine::new(event, last, now)
                }
            })
            .collect(),
        filtered: query.filtered() || page.before.is_some(),
        query,
        errors: FormErrors::new(errors),
        path,
        older,
    })
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    layout: Layout,
    log: EventLog,
    /// How long delivered and failed events are kept, in words.
    kept: String,
    kept_failed: String,
}

/// An event's body as its page shows it.
#[derive(Default)]
pub struct BodyView {
    /// `json`, `text` or `binary`.
    pub kind: &'static str,
    /// Pretty-printed JSON, the text, or a hex preview of the first bytes.
    pub shown: String,
    pub size: usize,
    /// Whether `shown` is only the start of a longer binary body.
    pub cut: bool,
}

impl BodyView {
    fn of(event: &Event) -> Self {
        let size = event.body.len();
        if let Some(document) = &event.payload {
            let pretty = serde_json::to_string_pretty(document).unwrap_or_default();
            return BodyView {
                kind: "json",
                shown: pretty,
                size,
                cut: false,
            };
        }
        match std::str::from_utf8(&event.body) {
            Ok(text) => BodyView {
                kind: "text",
                shown: text.to_owned(),
                size,
                cut: false,
            },
            Err(_) => BodyView {
                kind: "binary",
                shown: event.body[..size.min(BINARY_PREVIEW)]
                    .chunks(16)
                    .map(|line| {
                        line.iter()
                            .map(|byte| format!("{byte:02x}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                size,
                cut: size > BINARY_PREVIEW,
            },
        }
    }
}

/// One attempt as the event's page lists it.
pub struct AttemptLine {
    pub number: i32,
    pub started: Moment,
    pub duration: String,
    pub outcome: String,
    pub succeeded: bool,
    pub response_body: Option<String>,
}

impl AttemptLine {
    fn new(attempt: DeliveryAttempt, now: DateTime<Utc>) -> Self {
        AttemptLine {
            number: attempt.attempt,
            started: Moment::of(attempt.started_at, now),
            duration: duration(TimeDelta::milliseconds(attempt.duration_ms.into())),
            outcome: outcome(attempt.status_code, attempt.error.as_deref()),
            succeeded: attempt
                .status_code
                .is_some_and(|code| (200..300).contains(&code)),
            response_body: attempt.response_body.filter(|body| !body.is_empty()),
        }
    }
}

/// One delivery as the event's page shows it: where it went, how it stands, its attempts.
pub struct DeliveryView {
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
    pub subscription_name: String,
    pub status: &'static str,
    pub replayable: bool,
    /// Whether it waits for its next retry, which can be made now.
    pub retryable: bool,
    pub completed: Option<Moment>,
    pub next_attempt: Option<Moment>,
    /// Why it waits, when not for a retry, in words.
    pub waiting: Option<&'static str>,
    pub last_error: Option<String>,
    pub attempts: Vec<AttemptLine>,
}

/// Everything an event's page shows: the request once, and its deliveries.
pub struct EventDetail {
    pub id: EventId,
    /// Its deliveries' statuses rolled up.
    pub status: &'static str,
    /// Whether a delivery of it has ended, and can be made again.
    pub replayable: bool,
    pub received: Moment,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: BodyView,
    pub deliveries: Vec<DeliveryView>,
}

/// One of the workspace's events as its page shows it, deliveries and attempts included; its body
/// only when asked (a live update does not show it again).
pub async fn event_detail(
    state: &AppState,
    actor: &Actor,
    id: EventId,
    with_body: bool,
) -> Result<EventDetail, DashboardError> {
    let (found, mut attempts) = service::events::get_with_attempts(state, actor, id).await?;
    let names = service::subscriptions::list(state, actor).await?;
    let now = Utc::now();
    let status = found.status();
    let deliveries = found
        .deliveries
        .iter()
        .map(|delivery| DeliveryView {
            id: delivery.id,
            subscription_id: delivery.subscription_id,
            subscription_name: names
                .iter()
                .find(|s| s.id == delivery.subscription_id)
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            status: delivery.status.as_str(),
            replayable: delivery.status.is_final(),
            retryable: delivery.status == EventStatus::Retrying,
            completed: delivery.completed_at.map(|at| Moment::of(at, now)),
            next_attempt: delivery
                .next_attempt_at
                .filter(|_| !delivery.status.is_final())
                .map(|at| Moment::of(at, now)),
            waiting: match delivery.waiting.as_deref() {
                Some(RATE_LIMIT) if !delivery.status.is_final() => Some(
                    "Waiting its turn under its subscription's rate limit: \
                     this uses no attempt and no retry.",
                ),
                _ => None,
            },
            last_error: delivery.last_error.clone(),
            attempts: attempts
                .extract_if(.., |attempt| attempt.delivery_id == delivery.id)
                .map(|attempt| AttemptLine::new(attempt, now))
                .collect(),
        })
        .collect::<Vec<_>>();
    let event = found.event;
    Ok(EventDetail {
        id,
        status: status.as_str(),
        replayable: deliveries.iter().any(|delivery| delivery.replayable),
        received: Moment::of(event.received_at, now),
        content_type: event.content_type.clone(),
        headers: event
            .headers
            .as_object()
            .map(|headers| {
                headers
                    .iter()
                    .map(|(name, value)| {
                        (name.clone(), value.as_str().unwrap_or_default().to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default(),
        body: if with_body {
            BodyView::of(&event)
        } else {
            BodyView::default()
        },
        deliveries,
    })
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventDetailPage {
    layout: Layout,
    detail: EventDetail,
}

pages!(EventsPage, EventDetailPage);

/// `GET /events`: the log across the workspace's subscriptions; `?status=failed` is the graveyard.
pub async fn list(
    session: Session,
    state: web::Data<AppState>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, DashboardError> {
    let log = load_log(&state, &session, None, query.into_inner(), "/events".into()).await?;
    render(&EventsPage {
        layout: session.layout(Nav::Events),
        log,
        kept: RetentionPolicy::describe(state.retention.completed),
        kept_failed: RetentionPolicy::describe(state.retention.failed),
    })
}

/// `GET /events/{id}`
pub async fn show(
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let detail = event_detail(&state, session.actor(), EventId(id.into_inner()), true).await?;
    render(&EventDetailPage {
        layout: session.layout(Nav::Events),
        detail,
    })
}

/// `POST /events/{id}/replay`: makes an event's ended deliveries again (409 while none has
/// ended).
pub async fn replay(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = EventId(id.into_inner());
    service::events::replay(&state, session.actor(), id).await?;
    Ok(redirect(
        &request,
        &format!("/events/{id}"),
        Some(Flash::success(
            "Replayed: the same bytes and webhook-id are on their way, with a fresh retry budget.",
        )),
    ))
}

/// `POST /events/replay`: the graveyard's bulk action. Either the deliveries ticked
/// (`delivery`, once per delivery) or, with `all`, every failed delivery the page's filters
/// take, replayed in the background in bounded batches.
pub async fn replay_many(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    form: web::Bytes,
) -> Result<HttpResponse, DashboardError> {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&form).into_owned().collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    };
    let back = |flash: String| {
        redirect(
            &request,
            "/events?status=failed",
            Some(Flash::success(flash)),
        )
    };
    if field("all") == "1" {
        let query = LogQuery {
            status: "failed".into(),
            since: field("since").into(),
            until: field("until").into(),
            payload: field("payload").into(),
            before: String::new(),
        };
        let (page, errors) = query.page();
        if !errors.is_empty() {
            return Err(DashboardError::BadRequest(
                "the filters could not be read: filter the graveyard again, then replay".into(),
            ));
        }
        let filter = ReplayFilter {
            status: EventStatus::Failed,
            subscription: None,
            since: page.since,
            until: page.until,
            payload: page.payload,
        };
        let queued =
            service::events::replay_in_background(state.into_inner(), session.actor(), filter)
                .await?;
        return Ok(back(format!(
            "Replaying {queued} failed event{} in the background.",
            if queued == 1 { "" } else { "s" }
        )));
    }
    let ids: Vec<DeliveryId> = fields
        .iter()
        .filter(|(key, _)| key == "delivery")
        .filter_map(|(_, value)| Uuid::parse_str(value).ok().map(DeliveryId))
        .collect();
    if ids.is_empty() {
        return Ok(back("Tick the events to replay first.".into()));
    }
    let replayed = service::events::replay_selected(&state, session.actor(), &ids).await?;
    Ok(back(format!(
        "Replayed {replayed} event{}.",
        if replayed == 1 { "" } else { "s" }
    )))
}

/// `POST /deliveries/{id}/replay`: makes a completed or failed delivery again (409 while it is
/// still being made), and shows its event.
pub async fn replay_delivery(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = DeliveryId(id.into_inner());
    let (delivery, _) = service::events::replay_delivery(&state, session.actor(), id).await?;
    Ok(redirect(
        &request,
        &format!("/events/{}", delivery.event_id),
        Some(Flash::success(
            "Replayed: the same bytes and webhook-id are on their way, with a fresh retry budget.",
        )),
    ))
}

/// `POST /deliveries/{id}/retry`: attempts now a delivery that waits for its next retry (409
/// otherwise), and shows its event.
pub async fn retry_delivery(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let id = DeliveryId(id.into_inner());
    let (delivery, _) = service::events::retry_delivery(&state, session.actor(), id).await?;
    Ok(redirect(
        &request,
        &format!("/events/{}", delivery.event_id),
        Some(Flash::success(
            "Retrying now, in place of the scheduled retry.",
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_that_cannot_be_read_are_reported_and_left_out() {
        let query = LogQuery {
            status: "failed".into(),
            since: "2026-11-28T09:30".into(),
            until: "yesterday".into(),
            payload: "{not json".into(),
            before: String::new(),
        };
        let (page, errors) = query.page();
        assert_eq!(page.status, Some(EventStatus::Failed));
        assert_eq!(
            page.since.unwrap().to_rfc3339(),
            "2026-11-28T09:30:00+00:00"
        );
        assert_eq!(page.until, None);
        assert_eq!(page.payload, None);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["until", "payload"]);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(TimeDelta::milliseconds(42)), "42 ms");
        assert_eq!(duration(TimeDelta::milliseconds(1500)), "1.5 s");
        assert_eq!(duration(TimeDelta::minutes(5)), "5 min");
        assert_eq!(duration(TimeDelta::minutes(90)), "1.5 h");
    }

    #[test]
    fn the_older_link_keeps_the_filters() {
        let query = LogQuery {
            status: "failed".into(),
            payload: r#"{"a":1}"#.into(),
            ..LogQuery::default()
        };
        let link = query.older_than("/events", "x");
        assert!(link.starts_with("/events?status=failed&"));
        assert!(link.contains("payload=%7B%22a%22%3A1%7D"));
        assert!(link.ends_with("before=x"));
    }
}
