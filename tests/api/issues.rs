//! Issues: each trigger opens one, it resolves by itself when its condition clears, a recurrence
//! reopens it, and channels are told (webhook signed, Slack's format, email over a real SMTP
//! conversation), once per transition, held back when an issue flaps.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use spenza::config::Settings;

use diesel_async::AsyncConnection;

use crate::helpers::{
    Received, RelayProcess, Script, Sink, TestApp, TestResources, create_user_with_key, metric,
    spawn_app_with, wait_until,
};
use crate::signatures::standard_signatures_verified_by;
use crate::smtp::MailServer;

/// Scans often, so that tests see issues within a second.
fn scanning_often(settings: &mut Settings) {
    settings.issue_scan_interval = Duration::from_millis(200);
}

impl TestApp {
    /// The workspace's issues matching `query` (`?kind=...`), newest first.
    pub async fn issues(&self, query: &str) -> Vec<Value> {
        let answer = self.get_json(&format!("/api/v1/issues{query}")).await;
        answer["items"].as_array().expect("items").clone()
    }

    /// Waits until the only issue matching `query` satisfies `wanted`; answers it.
    pub async fn wait_for_issue(
        &self,
        query: &str,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(Duration::from_secs(20), what, || async {
            let found = self.issues(query).await;
            match found.as_slice() {
                [issue] if wanted(issue) => Ok(issue.clone()),
                _ => Err(format!("{found:?}")),
            }
        })
        .await
    }

    /// Adds a notification channel; its JSON.
    pub async fn add_channel(&self, channel: Value) -> Value {
        let created = self
            .send_json(Method::POST, "/api/v1/notification-channels", &channel)
            .await;
        assert_eq!(created.status(), 201, "adding {channel}");
        created.json().await.unwrap()
    }
}

/// The JSON bodies a channel's receiver got, in order.
fn payloads(receiver: &Sink) -> Vec<Value> {
    receiver
        .received()
        .iter()
        .map(|request| serde_json::from_slice(&request.body).expect("a JSON payload"))
        .collect()
}

/// Waits until the receiver got a payload of `event_type` about `issue`; answers the request.
async fn told(receiver: &Sink, event_type: &str, issue: &Value) -> Received {
    wait_until(
        Duration::from_secs(20),
        &format!("{event_type} about {issue}"),
        || async {
            receiver
                .received()
                .into_iter()
                .find(|request| {
                    let payload: Value = serde_json::from_slice(&request.body).unwrap();
                    payload["type"] == event_type && payload["data"]["issue"]["id"] == issue["id"]
                })
                .ok_or_else(|| format!("{:?}", payloads(receiver)))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_that_opens_makes_an_issue_a_signed_webhook_tells_and_delivering_again_resolves()
{
    let app = spawn_app_with(|s| {
        scanning_often(s);
        s.retry_schedule = "".parse().unwrap();
        s.breaker_threshold = 2;
    })
    .await;
    let receiver = Sink::start(Script::Ok).await;
    let channel = app
        .add_channel(
            json!({"kind": "webhook", "url": receiver.url, "kinds": ["subscription_disabled"]}),
        )
        .await;
    let secret = channel["signing_secret"]
        .as_str()
        .expect("a webhook channel's secret");
    let endpoint = Sink::start(Script::Always(500)).await;
    let subscription = app.create_subscription(&endpoint.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    for _ in 0..2 {
        let id = app.accept(ingest_url, "{}").await;
        app.wait_for_status(&id, "failed").await;
    }

    let opened = app
        .wait_for_issue(
            "?kind=subscription_disabled",
            "the breaker's issue",
            |issue| issue["state"] == "open",
        )
        .await;
    assert_eq!(opened["subscription_id"], subscription["id"]);
    assert_eq!(opened["source_id"], subscription["source_id"]);
    assert_eq!(opened["count"], 1);
    assert!(
        opened["detail"]
            .as_str()
            .unwrap()
            .starts_with("circuit breaker opened after 2 consecutive failed attempts"),
        "{opened}"
    );
    for event_type in ["issue.opened", "subscription.disabled"] {
        let message = told(&receiver, event_type, &opened).await;
        assert_eq!(
            standard_signatures_verified_by(&message, secret),
            1,
            "{event_type} is signed with the channel's secret"
        );
    }

    endpoint.set_script(Script::Ok);
    let path = format!(
        "/api/v1/subscriptions/{}",
        subscription["id"].as_str().unwrap()
    );
    let enabled = app
        .send_json(Method::PATCH, &path, &json!({"is_active": true}))
        .await;
    assert_eq!(enabled.status(), 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        app.issues("?kind=subscription_disabled").await[0]["state"],
        "open",
        "enabled again, but not yet delivering: still open"
    );
    let delivered = app.accept(ingest_url, "{}").await;
    app.wait_for_status(&delivered, "completed").await;
    let resolved = app
        .wait_for_issue(
            "?kind=subscription_disabled",
            "the breaker's issue resolved",
            |issue| issue["state"] == "resolved",
        )
        .await;
    assert_eq!(resolved["id"], opened["id"]);
    assert_eq!(
        resolved["resolved_by"],
        Value::Null,
        "it resolved by itself"
    );
    for event_type in ["issue.resolved", "subscription.enabled"] {
        let message = told(&receiver, event_type, &opened).await;
        assert_eq!(standard_signatures_verified_by(&message, secret), 1);
    }
    let types: Vec<Value> = payloads(&receiver)
        .iter()
        .map(|p| p["type"].clone())
        .collect();
    assert_eq!(
        types.len(),
        4,
        "one message per transition and event type, none for the graveyard issue the channel does not take: {types:?}"
    );
    receiver.stop().await;
    endpoint.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_in_the_graveyard_make_one_issue_per_subscription_and_cause_with_a_count() {
    let app = spawn_app_with(|s| {
        scanning_often(s);
        s.retry_schedule = "".parse().unwrap();
    })
    .await;
    let failing = Sink::start(Script::Always(500)).await;
    let subscription = app.create_subscription(&failing.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    let mut failed = Vec::new();
    for n in 0..7 {
        let id = app.accept(ingest_url, &format!("{{\"n\": {n}}}")).await;
        app.wait_for_status(&id, "failed").await;
        failed.push(id);
    }
    // Nothing listens on port 9: a second cause, for another subscription.
    let refused = app.create_subscription("http://127.0.0.1:9/hook").await;
    let refused_event = app
        .accept(refused["ingest_url"].as_str().unwrap(), "{}")
        .await;
    app.wait_for_status(&refused_event, "failed").await;

    let query = format!(
        "?kind=deliveries_failed&subscription_id={}",
        subscription["id"].as_str().unwrap()
    );
    let issue = app
        .wait_for_issue(&query, "seven failures in one issue", |issue| {
            issue["count"] == 7
        })
        .await;
    assert_eq!(issue["cause"], "HTTP 500 from 127.0.0.1");
    assert_eq!(issue["state"], "open");
    let examples: Vec<&str> = issue["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    let newest: Vec<&str> = failed.iter().rev().take(5).map(String::as_str).collect();
    assert_eq!(
        examples, newest,
        "the five newest failed events, newest first"
    );
    let other = app
        .wait_for_issue(
            &format!(
                "?kind=deliveries_failed&subscription_id={}",
                refused["id"].as_str().unwrap()
            ),
            "the refused connection's issue",
            |issue| issue["count"] == 1,
        )
        .await;
    assert_eq!(other["cause"], "connection refused at 127.0.0.1");
    assert_eq!(app.issues("?kind=deliveries_failed").await.len(), 2);

    // Fixed, and replayed: the subscription delivers, and the issue resolves.
    failing.set_script(Script::Ok);
    let replay = app
        .send_json(
            Method::POST,
            &format!("/api/v1/events/{}/replay", failed[0]),
            &json!({}),
        )
        .await;
    assert_eq!(replay.status(), 202);
    app.wait_for_status(&failed[0], "completed").await;
    let resolved = app
        .wait_for_issue(&query, "resolved once delivering", |issue| {
            issue["state"] == "resolved"
        })
        .await;
    assert_eq!(resolved["count"], 7);

    // It breaks again: the same issue reopens and counts on.
    failing.set_script(Script::Always(502));
    let again = app.accept(ingest_url, "{}").await;
    app.wait_for_status(&again, "failed").await;
    failing.set_script(Script::Always(500));
    let again = app.accept(ingest_url, "{}").await;
    app.wait_for_status(&again, "failed").await;
    let (newer, reopened) = wait_until(
        Duration::from_secs(20),
        "a 502 issue, and the 500 one reopened",
        || async {
            match app.issues(&query).await.as_slice() {
                [newer, older] if older["count"] == 8 && older["state"] == "open" => {
                    Ok((newer.clone(), older.clone()))
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(reopened["id"], issue["id"], "reopened, not duplicated");
    assert_eq!(reopened["reopened"], 1);
    assert_eq!(newer["cause"], "HTTP 502 from 127.0.0.1");
    assert_eq!(
        (&newer["count"], &newer["state"]),
        (&json!(1), &json!("open"))
    );
    failing.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_refusing_requests_opens_an_issue_that_resolves_when_they_stop_and_reopens() {
    let app = spawn_app_with(|s| {
        scanning_often(s);
        s.source_refusal_threshold = 3;
        s.source_refusal_window = Duration::from_secs(2);
    })
    .await;
    let created = app
        .send_json(
            Method::POST,
            "/api/v1/sources",
            &json!({"name": "github", "provider": {"kind": "github", "secret": "gh"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let source: Value = created.json().await.unwrap();
    let ingest_url = source["ingest_url"].as_str().unwrap();
    let query = format!(
        "?kind=source_rejecting&source_id={}",
        source["id"].as_str().unwrap()
    );
    let client = &app;
    let refuse = async |count: usize| {
        for _ in 0..count {
            let answer = client.ingest(ingest_url, "application/json", "{}").await;
            assert_eq!(answer.status(), 401, "unsigned: refused");
        }
    };

    refuse(2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        app.issues(&query).await.is_empty(),
        "two refusals are under the threshold"
    );
    refuse(2).await;
    let opened = app
        .wait_for_issue(&query, "an issue for four refusals", |issue| {
            issue["state"] == "open"
        })
        .await;
    assert_eq!(opened["count"], 4);
    assert_eq!(opened["subscription_id"], Value::Null);
    assert_eq!(opened["examples"].as_array().unwrap().len(), 4);
    assert_eq!(
        opened["detail"], "the last refused request: missing_header",
        "unsigned requests lack GitHub's signature header"
    );
    refuse(1).await;
    app.wait_for_issue(&query, "a later refusal counted", |issue| {
        issue["count"] == 5
    })
    .await;

    let resolved = app
        .wait_for_issue(&query, "resolved after a window with none", |issue| {
            issue["state"] == "resolved"
        })
        .await;
    assert_eq!(resolved["resolved_by"], Value::Null);
    refuse(3).await;
    let reopened = app
        .wait_for_issue(&query, "reopened", |issue| issue["state"] == "open")
        .await;
    assert_eq!(reopened["id"], opened["id"]);
    assert_eq!(
        (&reopened["reopened"], &reopened["count"]),
        (&json!(1), &json!(8))
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_falling_behind_its_own_threshold_opens_an_issue_until_it_catches_up() {
    let app = spawn_app_with(|s| {
        scanning_often(s);
        s.lag_threshold = Duration::from_secs(1);
    })
    .await;
    // Each delivery takes 1.5 s, one at a time: the third event waits 3 s.
    let sink = Sink::start(Script::Slow(Duration::from_millis(1500))).await;
    let slow = json!({"name": "slow", "target_url": sink.url, "policy": {"max_in_flight": 1}});
    let patient = json!({"name": "patient", "target_url": sink.url,
        "policy": {"max_in_flight": 1, "lag_threshold": "1h"}});
    let mut subscriptions = Vec::new();
    for body in [slow, patient] {
        let created = app
            .send_json(Method::POST, "/api/v1/subscriptions", &body)
            .await;
        assert_eq!(created.status(), 201);
        subscriptions.push(created.json::<Value>().await.unwrap());
    }
    assert_eq!(subscriptions[1]["policy"]["lag_threshold"], "1h");
    for subscription in &subscriptions {
        for _ in 0..4 {
            let ingest_url = subscription["ingest_url"].as_str().unwrap();
            app.accept(ingest_url, "{}").await;
        }
    }

    let slow_id = subscriptions[0]["id"].as_str().unwrap();
    let query = format!("?kind=subscription_lagging&subscription_id={slow_id}");
    let lagging = app
        .wait_for_issue(&query, "the slow subscription lagging", |issue| {
            issue["state"] == "open"
        })
        .await;
    assert!(
        lagging["detail"]
            .as_str()
            .unwrap()
            .starts_with("its oldest undelivered event has waited"),
        "{lagging}"
    );
    assert_eq!(lagging["examples"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.issues("?kind=subscription_lagging").await.len(),
        1,
        "the patient subscription's own threshold is an hour"
    );

    // Once its backlog is delivered, the issue resolves by itself.
    let resolved = app
        .wait_for_issue(&query, "caught up", |issue| issue["state"] == "resolved")
        .await;
    assert_eq!(resolved["id"], lagging["id"]);
    sink.stop().await;
    app.shutdown().await;
}

/// A GitHub source whose unsigned requests are refused; its JSON.
async fn refusing_source(app: &TestApp) -> Value {
    let created = app
        .send_json(
            Method::POST,
            "/api/v1/sources",
            &json!({"name": "orders", "provider": {"kind": "github", "secret": "gh"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    created.json().await.unwrap()
}

/// Has `source` refuse one request.
async fn refuse_one(app: &TestApp, source: &Value) {
    let answer = app
        .ingest(
            source["ingest_url"].as_str().unwrap(),
            "application/json",
            "{}",
        )
        .await;
    assert_eq!(answer.status(), 401);
}

/// Settings under which one refused request opens an issue, which resolves two seconds after:
/// time enough, on a loaded machine too, for the notifier (which looks every second) to tell
/// of the opening before the resolution would fold into the same message.
fn one_refusal_opens(settings: &mut Settings) {
    scanning_often(settings);
    settings.source_refusal_threshold = 1;
    settings.source_refusal_window = Duration::from_secs(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_and_slack_channels_get_the_issue_with_a_link_to_its_page() {
    let mail = MailServer::start();
    let smtp_url = mail.url();
    let app = spawn_app_with(|s| {
        one_refusal_opens(s);
        s.smtp_url = Some(smtp_url.clone().into());
        s.smtp_from = Some("Spenza <relay@example.com>".into());
    })
    .await;
    let slack = Sink::start(Script::Ok).await;
    app.add_channel(json!({"kind": "email", "address": "Oncall@Example.com", "name": "on call"}))
        .await;
    let channel = app
        .add_channel(json!({"kind": "slack", "url": slack.url, "kinds": ["source_rejecting"]}))
        .await;
    assert_eq!(
        channel["signing_secret"],
        Value::Null,
        "only webhooks are signed"
    );
    assert_eq!(channel["kinds"], json!(["source_rejecting"]));
    // Other tests' processes count in the same registry: counts go up by at least ours.
    let opened_sample =
        r#"spenza_issue_transitions_total{kind="source_rejecting",change="opened"}"#;
    let sent_sample = r#"spenza_notifications_total{channel="slack",outcome="sent"}"#;
    let (opened_before, sent_before) = (
        metric(&app.address, opened_sample).await,
        metric(&app.address, sent_sample).await,
    );
    let source = refusing_source(&app).await;
    refuse_one(&app, &source).await;
    let issue = app
        .wait_for_issue("?kind=source_rejecting", "the refusal's issue", |_| true)
        .await;
    let page = format!("{}/issues/{}", app.address, issue["id"].as_str().unwrap());

    let message = mail.message_to("oncall@example.com").await;
    let subject = message.header("Subject").unwrap();
    assert!(
        subject.starts_with("[Spenza] Source refusing requests, source orders: opened"),
        "{subject}"
    );
    let body = message.body();
    assert!(body.contains(&page), "{body}");
    assert!(body.contains("Count: 1"), "{body}");
    let message_id = message.header("Message-ID").unwrap();
    assert!(message_id.ends_with("@example.com>"), "{message_id}");

    let posted = slack.wait_for_requests(1).await;
    assert_eq!(posted[0].header("content-type"), Some("application/json"));
    let payload: Value = serde_json::from_slice(&posted[0].body).unwrap();
    let text = payload["text"].as_str().unwrap();
    assert!(
        text.starts_with("Source refusing requests, source orders: opened"),
        "{text}"
    );
    assert!(text.ends_with(&page), "{text}");
    let blocks = payload["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    assert!(
        blocks[0]["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("*<{page}|")),
        "a link to the issue's page: {payload}"
    );
    assert_eq!(blocks[2]["elements"][0]["url"], page.as_str());
    assert!(metric(&app.address, opened_sample).await > opened_before);
    // Counted once the send returns, a moment after Slack had it.
    wait_until(Duration::from_secs(5), "the send counted", || async {
        match metric(&app.address, sent_sample).await {
            sent if sent > sent_before => Ok(()),
            sent => Err(sent.to_string()),
        }
    })
    .await;

    // Send test: a made-up issue, said to be one.
    let tested = app
        .send_json(
            Method::POST,
            &format!(
                "/api/v1/notification-channels/{}/test",
                channel["id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await;
    assert_eq!(tested.status(), 200);
    assert_eq!(
        tested.json::<Value>().await.unwrap(),
        json!({"sent": true, "error": null})
    );
    let test: Value = serde_json::from_slice(&slack.wait_for_requests(2).await[1].body).unwrap();
    assert!(
        test["text"].as_str().unwrap().starts_with("[test] "),
        "{test}"
    );
    slack.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_that_opens_while_the_smtp_server_is_down_is_mailed_once_it_is_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(|s| {
        one_refusal_opens(s);
        // It stays open: the message waiting for the server tells of its opening.
        s.source_refusal_window = Duration::from_secs(3600);
        s.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into());
        s.smtp_from = Some("relay@example.com".into());
    })
    .await;
    let channel = app
        .add_channel(json!({"kind": "email", "address": "oncall@example.com"}))
        .await;
    let down = app
        .send_json(
            Method::POST,
            &format!(
                "/api/v1/notification-channels/{}/test",
                channel["id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await;
    let down: Value = down.json().await.unwrap();
    assert_eq!(down["sent"], false);
    assert!(down["error"].as_str().unwrap().contains("SMTP"), "{down}");
    refuse_one(&app, &refusing_source(&app).await).await;
    let error: String = wait_until(
        Duration::from_secs(20),
        "a failed try, written down",
        || async {
            use diesel_async::RunQueryDsl;
            let mut db = app.db().await;
            diesel::sql_query("SELECT last_error FROM notifications WHERE sent_at IS NULL")
                .load::<LastError>(&mut db)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .find_map(|row| row.last_error)
                .ok_or_else(|| "not tried yet".to_owned())
        },
    )
    .await;
    assert!(error.contains("SMTP"), "{error}");

    let mail = MailServer::start_on(port);
    let message = mail.message_to("oncall@example.com").await;
    let subject = message.header("Subject").unwrap();
    assert!(subject.ends_with("opened"), "{subject}");
    app.shutdown().await;
}

#[derive(diesel::QueryableByName)]
struct LastError {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    last_error: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_that_flaps_is_told_once_per_quiet_period_with_the_transitions_counted() {
    let app = spawn_app_with(|s| {
        one_refusal_opens(s);
        // Longer than three recurrences take.
        s.notification_quiet = Duration::from_secs(12);
    })
    .await;
    let receiver = Sink::start(Script::Ok).await;
    app.add_channel(json!({"kind": "webhook", "url": receiver.url}))
        .await;
    let source = refusing_source(&app).await;
    let state = async |wanted: &'static str| {
        app.wait_for_issue("?kind=source_rejecting", wanted, |issue| {
            issue["state"] == wanted
        })
        .await
    };
    refuse_one(&app, &source).await;
    let issue = state("open").await;
    state("resolved").await;
    let told = receiver.wait_for_requests(2).await;
    let types: Vec<Value> = told
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"].clone())
        .collect();
    assert_eq!(
        types,
        ["issue.opened", "issue.resolved"],
        "each told at once"
    );
    let last_told = told[1].at;

    // Three recurrences within the quiet period: held, and told together.
    for _ in 0..3 {
        refuse_one(&app, &source).await;
        state("open").await;
        state("resolved").await;
    }
    let held = receiver.wait_for_requests(3).await;
    assert_eq!(held.len(), 3, "one message for the lot");
    assert!(
        held[2].at.duration_since(last_told) >= Duration::from_secs(11),
        "held until the quiet period after the last message"
    );
    let payload: Value = serde_json::from_slice(&held[2].body).unwrap();
    assert_eq!(payload["type"], "issue.resolved", "where it ended");
    assert_eq!(
        payload["data"]["transitions"], 6,
        "three reopenings, three resolutions"
    );
    assert_eq!(payload["data"]["issue"]["id"], issue["id"]);
    assert_eq!(payload["data"]["issue"]["reopened"], 3);
    let ids: std::collections::HashSet<_> = receiver.unique_ids();
    assert_eq!(ids.len(), 3);
    receiver.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_is_told_once_across_two_processes_even_when_one_dies_mid_send() {
    let resources = TestResources::new("").await;
    let settings = [
        ("SPENZA_ISSUE_SCAN_INTERVAL", "200ms"),
        ("SPENZA_SOURCE_REFUSAL_THRESHOLD", "1"),
        ("SPENZA_SOURCE_REFUSAL_WINDOW", "1h"),
    ];
    let mut first = RelayProcess::start(&resources, &settings).await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let api = reqwest::Client::new();
    let post = async |relay: &RelayProcess, path: &str, body: Value| {
        api.post(format!("{}/api/v1{path}", relay.address))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap()
    };
    // The receiver holds the first message: its sender dies before it has an answer.
    let receiver = Sink::start(Script::Slow(Duration::from_secs(60))).await;
    let channel: Value = post(
        &first,
        "/notification-channels",
        json!({"kind": "webhook", "url": receiver.url}),
    )
    .await
    .json()
    .await
    .unwrap();
    let secret = channel["signing_secret"].as_str().unwrap().to_owned();
    let source: Value = post(
        &first,
        "/sources",
        json!({"name": "orders", "provider": {"kind": "github", "secret": "gh"}}),
    )
    .await
    .json()
    .await
    .unwrap();
    let refused = api
        .post(source["ingest_url"].as_str().unwrap())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let in_flight = receiver.wait_for_requests(1).await;
    assert_eq!(first.signal("KILL").await.code(), None, "killed mid-send");

    // Two processes now: one of them sends it again, with the same id, once its hold runs out.
    receiver.set_script(Script::Ok);
    let second = RelayProcess::start(&resources, &settings).await;
    let third = RelayProcess::start(&resources, &settings).await;
    let again = receiver.wait_for_requests(2).await;
    assert_eq!(
        again[1].header("webhook-id"),
        in_flight[0].header("webhook-id")
    );
    let (before, after): (Value, Value) = (
        serde_json::from_slice(&in_flight[0].body).unwrap(),
        serde_json::from_slice(&again[1].body).unwrap(),
    );
    assert_eq!(
        (
            &after["type"],
            &after["data"]["issue"]["id"],
            &after["data"]["transitions"]
        ),
        (&before["type"], &before["data"]["issue"]["id"], &json!(1)),
        "the same message"
    );
    assert_eq!(standard_signatures_verified_by(&again[1], &secret), 1);

    // The next transition, with both running: told once.
    let issue_id = after["data"]["issue"]["id"].as_str().unwrap().to_owned();
    let resolved = api
        .patch(format!("{}/api/v1/issues/{issue_id}", third.address))
        .bearer_auth(&key)
        .json(&json!({"state": "resolved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status(), 200);
    let all = receiver.wait_for_requests(3).await;
    let told: Value = serde_json::from_slice(&all[2].body).unwrap();
    assert_eq!(told["type"], "issue.resolved");
    // Every message written down as sent: none is left for a process to send again.
    let mut db = diesel_async::AsyncPgConnection::establish(&resources.database.url)
        .await
        .unwrap();
    let unsent: i64 = {
        use diesel_async::RunQueryDsl;
        diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "SELECT count(*) FROM notifications WHERE sent_at IS NULL",
        )
        .get_result(&mut db)
        .await
        .unwrap()
    };
    let sent_once = receiver.received().len();
    assert_eq!(
        sent_once, 3,
        "two transitions, one message each, one of them tried twice"
    );
    assert_eq!(receiver.unique_ids().len(), 2);
    assert_eq!(unsent, 0);
    drop((second, third));
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_issues_go_once_past_their_retention_and_unresolved_ones_stay() {
    let app = spawn_app_with(|s| s.issue_retention = Duration::from_secs(1)).await;
    let source: Value = app
        .send_json(Method::POST, "/api/v1/sources", &json!({"name": "kept"}))
        .await
        .json()
        .await
        .unwrap();
    let insert = async |state: &str, resolved_at: &str| {
        use diesel_async::RunQueryDsl;
        let id = uuid::Uuid::now_v7();
        diesel::sql_query(format!(
            "INSERT INTO issues (id, workspace_id, kind, source_id, cause, state, count, \
                 first_seen, last_seen, opened_at, resolved_at) \
             SELECT $1, workspace_id, 'source_rejecting', id, $3, $4, 1, now(), now(), now(), \
                 {resolved_at} FROM sources WHERE id = $2"
        ))
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::Uuid, _>(
            uuid::Uuid::parse_str(source["id"].as_str().unwrap()).unwrap(),
        )
        // Its state as its cause too: one source's two issues need two causes.
        .bind::<diesel::sql_types::Text, _>(state)
        .bind::<diesel::sql_types::Text, _>(state)
        .execute(&mut app.db().await)
        .await
        .unwrap();
        id.to_string()
    };
    let old = insert("resolved", "now() - interval '1 hour'").await;
    let open = insert("open", "NULL").await;
    wait_until(
        Duration::from_secs(10),
        "the old resolved issue removed",
        || async {
            match app
                .get(&format!("/api/v1/issues/{old}"))
                .await
                .status()
                .as_u16()
            {
                404 => Ok(()),
                status => Err(status.to_string()),
            }
        },
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/v1/issues/{open}")).await.status(),
        200
    );
    app.shutdown().await;
}

/// The last migration before issues.
const BEFORE_ISSUES: &str = "20261204000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graveyard_of_before_the_upgrade_opens_no_issue_and_a_failure_after_it_does() {
    use diesel_async::SimpleAsyncConnection;
    let resources = TestResources::new("").await;
    let url = resources.database.url.clone();
    crate::helpers::migrate_up_to(&url, BEFORE_ISSUES);
    let sink = Sink::start(Script::Always(500)).await;
    let (user, source, subscription) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let mut conn = diesel_async::AsyncPgConnection::establish(&url)
        .await
        .unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO users (id, email, password_hash) VALUES ('{user}', 'old@example.com', 'x'); \
         INSERT INTO workspaces (id, name) VALUES ('{user}', 'old@example.com'); \
         INSERT INTO memberships (workspace_id, user_id, role) VALUES ('{user}', '{user}', 'owner'); \
         INSERT INTO sources (id, workspace_id, name, ingest_token) \
             VALUES ('{source}', '{user}', 'stripe', '{token}'); \
         INSERT INTO subscriptions (id, workspace_id, source_id, name, target_url, signing_secret) \
             VALUES ('{subscription}', '{user}', '{source}', 'billing', '{target}', \
             'whsec_bWlncmF0ZWQtc2VjcmV0LWZvci10ZXN0'); \
         WITH stored AS (INSERT INTO events (id, source_id, body) \
             VALUES ('{event}', '{source}', '{{}}') RETURNING id) \
         INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, last_error) \
             SELECT '{event}', id, '{subscription}', 'failed', 3, 'HTTP 500 Internal Server Error' \
             FROM stored;",
        token = "t".repeat(43),
        target = sink.url,
        event = uuid::Uuid::now_v7(),
    ))
    .await
    .unwrap();
    drop(conn);
    let mut app = crate::helpers::spawn_app_in(resources, |s| {
        scanning_often(s);
        s.retry_schedule = "".parse().unwrap();
    })
    .await;
    app.api_key =
        spenza::admin::create_api_key(&app_database(&app), "old@example.com", "after the upgrade")
            .await
            .unwrap()
            .expose()
            .to_owned();

    let ingest_url = format!("{}/ingest/{}", app.address, "t".repeat(43));
    let after = app.accept(&ingest_url, "{}").await;
    app.wait_for_status(&after, "failed").await;
    let issue = app
        .wait_for_issue(
            "?kind=deliveries_failed",
            "the failure after the upgrade",
            |_| true,
        )
        .await;
    assert_eq!(issue["subscription_id"], subscription.to_string());
    assert_eq!(issue["cause"], "HTTP 500 from 127.0.0.1");
    assert_eq!(
        (&issue["count"], &issue["examples"]),
        (&json!(1), &json!([after])),
        "the failure from before the upgrade was not counted"
    );
    sink.stop().await;
    app.shutdown().await;
}

/// The settings of the app's database, for the admin commands.
fn app_database(app: &TestApp) -> spenza::config::DatabaseSettings {
    let mut settings = crate::helpers::test_settings(&app.database_url, app.prefix()).database;
    settings.pool_size = 2;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_slack_channels_pass_the_same_ssrf_guard_as_subscriptions() {
    let app = spawn_app_with(|s| s.allowed_target_nets = Vec::new().into()).await;
    for kind in ["webhook", "slack"] {
        let refused = app
            .send_json(
                Method::POST,
                "/api/v1/notification-channels",
                &json!({"kind": kind, "url": "http://127.0.0.1:9/hook"}),
            )
            .await;
        assert_eq!(refused.status(), 422, "{kind}: an internal address");
        let problem: Value = refused.json().await.unwrap();
        assert!(problem.to_string().contains("SSRF guard"), "{problem}");
    }
    // A name is checked as it resolves, when a message is sent.
    let channel = app
        .add_channel(json!({"kind": "webhook", "url": "http://localhost:9/hook"}))
        .await;
    let tested: Value = app
        .send_json(
            Method::POST,
            &format!(
                "/api/v1/notification-channels/{}/test",
                channel["id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tested["sent"], false);
    assert!(
        tested["error"].as_str().unwrap().contains("SSRF guard"),
        "{tested}"
    );
    app.shutdown().await;
}
