//! What an operator sees of the relay: request ids, and log lines they can follow an event by.

use serde_json::Value;

use crate::helpers::{
    RelayProcess, Script, Sink, TestResources, accept, create_user_with_key, spawn_app,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_the_clients_when_sane_a_new_one_otherwise() {
    let app = spawn_app().await;
    let id_of = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-request-id")
            .expect("the response has an X-Request-Id")
            .to_str()
            .unwrap()
            .to_owned()
    };

    let kept = app
        .api
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "lb-7f3e:01")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&kept), "lb-7f3e:01");

    let mut made_up = Vec::new();
    for presented in [None, Some("two words"), Some(&*"x".repeat(200))] {
        let mut request = app.api.get(format!("{}/healthz", app.address));
        if let Some(presented) = presented {
            request = request.header("x-request-id", presented);
        }
        let id = id_of(&request.send().await.unwrap());
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "{presented:?} gets a new id, not {id:?}"
        );
        made_up.push(id);
    }
    let distinct: std::collections::HashSet<&String> = made_up.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "each request has its own id: {made_up:?}"
    );

    // Errors too: an unknown ingest URL, a refused API call, a form without its CSRF token.
    let unknown = app
        .api
        .post(format!("{}/ingest/not-a-token", app.address))
        .header("x-request-id", "provider-1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(id_of(&unknown), "provider-1");
    let unauthorised = app
        .api
        .get(format!("{}/api/v1/subscriptions", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    id_of(&unauthorised);
    let forged = app
        .api
        .post(format!("{}/login", app.address))
        .header("sec-fetch-site", "cross-site")
        .form(&[("email", "owner@example.com"), ("password", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    id_of(&forged);
    app.shutdown().await;
}

/// The relay's JSON log lines, parsed.
fn lines(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The first line with this message about this event.
fn line<'a>(lines: &'a [Value], msg: &str, event: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["msg"] == msg && line["event_id"] == event)
        .unwrap_or_else(|| panic!("no {msg:?} line for {event}: {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_about_an_event_name_its_request_and_subscription_at_the_level_asked_for() {
    let resources = TestResources::new("100ms").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let flaky = Sink::start(Script::FailFirst(1, 500)).await;
    let broken = Sink::start(Script::Always(500)).await;
    let log = std::env::temp_dir().join(format!("spenza-log-{}.jsonl", resources.prefix));
    let mut relay = RelayProcess::start_logging(
        &resources,
        &[
            ("SPENZA_LOG_LEVEL", "debug"),
            ("SPENZA_RETRY_SCHEDULE", "100ms"),
        ],
        &log,
    )
    .await;
    let client = reqwest::Client::new();
    let post = async |ingest_url: &str, request_id: &str| -> String {
        let answer: Value = client
            .post(ingest_url)
            .header("content-type", "application/json")
            .header("x-request-id", request_id)
            .body(r#"{"type":"invoice.paid"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["event_id"].as_str().unwrap().to_owned()
    };
    let retried = post(&relay.subscribe(&key, &flaky.url).await, "provider-req-1").await;
    let dead = post(&relay.subscribe(&key, &broken.url).await, "provider-req-2").await;
    relay.wait_for_status(&key, &retried, "completed").await;
    relay.wait_for_status(&key, &dead, "failed").await;
    assert!(relay.signal("TERM").await.success());

    let logged = lines(&log);
    let stored = line(&logged, "event stored", &retried);
    assert_eq!(stored["level"], "DEBG");
    assert_eq!(stored["request_id"], "provider-req-1");
    let subscription = stored["subscription_id"]
        .as_str()
        .expect("a subscription id");
    for (msg, level) in [
        ("delivery attempt failed; it will be retried", "INFO"),
        ("delivered", "DEBG"),
    ] {
        let attempt = line(&logged, msg, &retried);
        assert_eq!(attempt["level"], level, "{attempt}");
        assert_eq!(attempt["request_id"], "provider-req-1", "{attempt}");
        assert_eq!(attempt["subscription_id"], subscription, "{attempt}");
    }
    let graveyard = line(
        &logged,
        "delivery failed for good: the event is in the graveyard",
        &dead,
    );
    assert_eq!(graveyard["level"], "WARN");
    assert_eq!(
        graveyard["request_id"], "provider-req-2",
        "the retry kept the request's id"
    );
    assert_eq!(graveyard["status_code"], 500);

    // At the default level, none of the debug lines.
    let mut relay =
        RelayProcess::start_logging(&resources, &[("SPENZA_RETRY_SCHEDULE", "100ms")], &log).await;
    let quiet = post(&relay.subscribe(&key, &flaky.url).await, "provider-req-3").await;
    relay.wait_for_status(&key, &quiet, "completed").await;
    assert!(relay.signal("TERM").await.success());
    let logged = lines(&log);
    std::fs::remove_file(&log).unwrap();
    assert!(
        logged.iter().any(|line| line["level"] == "INFO"),
        "{logged:#?}"
    );
    assert!(
        logged.iter().all(|line| line["level"] != "DEBG"),
        "{logged:#?}"
    );
}

/// One scrape of `/metrics`, parsed as Prometheus parses it.
async fn scrape(address: &str) -> prometheus_parse::Scrape {
    let response = reqwest::get(format!("{address}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .expect("the exposition parses")
}

/// The value of the sample named `metric` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == metric
                && labels
                    .iter()
                    .all(|(name, value)| sample.labels.get(name) == Some(*value))
        })
        .unwrap_or_else(|| panic!("no {metric} {labels:?} in {:#?}", scrape.samples));
    match &sample.value {
        prometheus_parse::Value::Counter(value)
        | prometheus_parse::Value::Gauge(value)
        | prometheus_parse::Value::Untyped(value) => *value,
        other => panic!("{metric} is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_ingest_and_delivery_did_and_label_nothing_unbounded() {
    let resources = TestResources::new("100ms").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let working = Sink::start(Script::Ok).await;
    let broken = Sink::start(Script::Always(500)).await;
    let relay = RelayProcess::start(
        &resources,
        &[
            ("SPENZA_RETRY_SCHEDULE", "100ms"),
            ("SPENZA_BREAKER_THRESHOLD", "2"),
            ("SPENZA_MAX_BODY_BYTES", "1024"),
            ("SPENZA_GAUGE_INTERVAL", "100ms"),
        ],
    )
    .await;
    let before = scrape(&relay.address).await;
    assert_eq!(value(&before, "spenza_live_connections", &[]), 0.0);

    let client = reqwest::Client::new();
    let send = async |url: &str, body: String, key: Option<&str>| -> (u16, Value) {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    let to_working = relay.subscribe(&key, &working.url).await;
    let to_broken = relay.subscribe(&key, &broken.url).await;
    let mut delivered = Vec::new();
    for key in ["first", "second", "first"] {
        let (status, answer) = send(&to_working, "{}".into(), Some(key)).await;
        assert!(status == 202 || status == 200, "{status}");
        if status == 202 {
            delivered.push(answer["event_id"].as_str().unwrap().to_owned());
        }
    }
    let (_, answer) = send(&to_broken, "{}".into(), None).await;
    let failed = answer["event_id"].as_str().unwrap().to_owned();
    let unknown = format!("{}/ingest/{}", relay.address, "x".repeat(43));
    assert_eq!(send(&unknown, "{}".into(), None).await.0, 404);
    assert_eq!(send(&to_working, "x".repeat(2048), None).await.0, 413);
    for id in &delivered {
        relay.wait_for_status(&key, id, "completed").await;
    }
    relay.wait_for_status(&key, &failed, "failed").await;

    // The gauges are read every 100 ms: once the failed event is counted, all of it is in.
    let url = relay.address.as_str();
    let after = crate::helpers::wait_until(
        std::time::Duration::from_secs(10),
        "the failed event in the gauge",
        move || async move {
            let after = scrape(url).await;
            if value(&after, "spenza_events", &[("status", "failed")]) == 1.0 {
                Ok(after)
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;
    let counter = |metric: &str, labels: &[(&str, &str)]| value(&after, metric, labels);
    assert_eq!(
        counter("spenza_ingest_requests_total", &[("status", "202")]),
        3.0
    );
    assert_eq!(
        counter("spenza_ingest_requests_total", &[("status", "200")]),
        1.0
    );
    assert_eq!(
        counter("spenza_ingest_requests_total", &[("status", "404")]),
        1.0
    );
    assert_eq!(
        counter("spenza_ingest_requests_total", &[("status", "413")]),
        1.0
    );
    assert_eq!(counter("spenza_ingest_duration_seconds_count", &[]), 6.0);
    assert!(counter("spenza_ingest_batch_events_sum", &[]) >= 3.0);
    assert_eq!(
        counter("spenza_delivery_attempts_total", &[("outcome", "2xx")]),
        2.0
    );
    assert_eq!(
        counter("spenza_delivery_attempts_total", &[("outcome", "5xx")]),
        2.0
    );
    assert_eq!(counter("spenza_delivery_duration_seconds_count", &[]), 4.0);
    assert_eq!(counter("spenza_end_to_end_seconds_count", &[]), 2.0);
    assert_eq!(counter("spenza_breaker_trips_total", &[]), 1.0);
    assert!(counter("spenza_publish_confirm_seconds_count", &[]) >= 3.0);
    assert_eq!(counter("spenza_reaper_republished_total", &[]), 0.0);
    assert_eq!(counter("spenza_events", &[("status", "pending")]), 0.0);
    assert_eq!(
        counter("spenza_queue_messages", &[("queue", "deliver")]),
        0.0
    );
    assert_eq!(
        counter("spenza_queue_messages", &[("queue", "retry.100ms.quorum")]),
        0.0
    );

    // Labels name statuses, outcomes and queues: never an event, a subscription or a URL.
    let text = reqwest::get(format!("{}/metrics", relay.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for unbounded in delivered.iter().chain([&failed, &working.url, &broken.url]) {
        assert!(
            !text.contains(unbounded.as_str()),
            "{unbounded} is in:\n{text}"
        );
    }
    for sample in &after.samples {
        for (name, _) in sample.labels.iter() {
            assert!(
                ["status", "outcome", "queue", "le"].contains(&name.as_str()),
                "{} has a label {name}",
                sample.metric
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_given_an_address_of_their_own_are_served_there_and_not_beside_the_api() {
    // The relay runs the default schedule: its wait queues are the ones removed at the end.
    let resources = TestResources::new(spenza::config::DEFAULT_RETRY_SCHEDULE).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let apart = format!("127.0.0.1:{port}");
    let relay = RelayProcess::start(&resources, &[("SPENZA_METRICS_BIND", &apart)]).await;
    let beside = reqwest::get(format!("{}/metrics", relay.address))
        .await
        .unwrap();
    assert_eq!(beside.status(), 404);
    let scrape = scrape(&format!("http://{apart}")).await;
    assert_eq!(value(&scrape, "spenza_live_connections", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_who_asks_gets_counts_by_subscription_as_well() {
    let resources = TestResources::new("100ms").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let working = Sink::start(Script::Ok).await;
    let broken = Sink::start(Script::Always(500)).await;
    let relay = RelayProcess::start(
        &resources,
        &[
            ("SPENZA_RETRY_SCHEDULE", "100ms"),
            ("SPENZA_METRICS_PER_SUBSCRIPTION", "true"),
        ],
    )
    .await;
    let mut subscriptions = Vec::new();
    for sink in [&working, &broken] {
        let subscription = relay.create_subscription(&key, &sink.url).await;
        let ingest_url = subscription["ingest_url"].as_str().unwrap();
        let mut events = Vec::new();
        for _ in 0..2 {
            events.push(accept(ingest_url).await);
        }
        subscriptions.push((subscription["id"].as_str().unwrap().to_owned(), events));
    }
    for (status, (_, events)) in ["completed", "failed"].into_iter().zip(&subscriptions) {
        for id in events {
            relay.wait_for_status(&key, id, status).await;
        }
    }

    let after = scrape(&relay.address).await;
    let counter = |metric: &str, labels: &[(&str, &str)]| value(&after, metric, labels);
    let (working_id, broken_id) = (&subscriptions[0].0, &subscriptions[1].0);
    for id in [working_id, broken_id] {
        assert_eq!(
            counter(
                "spenza_subscription_events_ingested_total",
                &[("subscription", id)]
            ),
            2.0
        );
    }
    assert_eq!(
        counter(
            "spenza_subscription_delivery_attempts_total",
            &[("subscription", working_id), ("outcome", "2xx")]
        ),
        2.0
    );
    // Two events, each tried twice: the attempt and its one retry.
    assert_eq!(
        counter(
            "spenza_subscription_delivery_attempts_total",
            &[("subscription", broken_id), ("outcome", "5xx")]
        ),
        4.0
    );
    assert!(
        !after.samples.iter().any(|sample| sample.metric
            == "spenza_subscription_delivery_attempts_total"
            && sample.labels.get("subscription") == Some(working_id.as_str())
            && sample.labels.get("outcome") == Some("5xx")),
        "no series for an outcome a subscription never had"
    );
    working.stop().await;
    broken.stop().await;
}

/// Stores an event of `subscription` (on `source`) that arrived `age` ago, with one delivery
/// (of the event's id) in `status`, finished `finished` ago (if given), with one attempt; its id.
async fn backdated_event(
    conn: &mut diesel_async::AsyncPgConnection,
    (source, subscription): (&str, &str),
    status: &str,
    age: std::time::Duration,
    finished: Option<std::time::Duration>,
) -> String {
    use diesel_async::RunQueryDsl;
    let at = std::time::SystemTime::now() - age;
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap();
    let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        since.as_secs(),
        since.subsec_nanos(),
    ))
    .to_string();
    let ago = |d: std::time::Duration| format!("now() - interval '{} milliseconds'", d.as_millis());
    let completed = match (status, finished) {
        ("completed", Some(finished)) => ago(finished),
        _ => "NULL".to_owned(),
    };
    diesel::sql_query(format!(
        "WITH stored AS (INSERT INTO events (id, source_id, body, received_at) \
             VALUES ('{id}', '{source}', '\\x7b7d', {}) RETURNING id) \
         INSERT INTO deliveries (id, event_id, subscription_id, status, completed_at, \
             next_attempt_at) \
         SELECT id, id, '{subscription}', '{status}', {completed}, now() + interval '1 day' \
         FROM stored",
        ago(age)
    ))
    .execute(conn)
    .await
    .unwrap();
    diesel::sql_query(format!(
        "INSERT INTO delivery_attempts (delivery_id, subscription_id, attempt, started_at, \
             duration_ms) VALUES ('{id}', '{subscription}', 1, {}, 5)",
        ago(age)
    ))
    .execute(conn)
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_events_go_with_their_attempts_once_past_their_retention_and_nothing_else_does() {
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
    use std::time::Duration;

    // A relay's database with events of the last days, written before the relay starts, so
    // that its retention's first run finds them all. Each day from eight days ago to yesterday
    // has its partitions; ten days ago has none, and its rows are in the DEFAULT partitions.
    let mut seeded = crate::helpers::SeededDatabase::new().await;
    let url = seeded.resources.database.url.clone();
    seeded
        .conn
        .batch_execute(
            "SELECT ensure_partitions((now() AT TIME ZONE 'UTC')::date - 8, \
             (now() AT TIME ZONE 'UTC')::date - 1)",
        )
        .await
        .unwrap();
    let (source, subscription) = (seeded.source.to_string(), seeded.subscription.to_string());
    let owner = (source.as_str(), subscription.as_str());
    let day = Duration::from_secs(86_400);
    let mut event = async |status, age, finished| {
        backdated_event(&mut seeded.conn, owner, status, age, finished).await
    };
    // Delivered and failed events whose days are past the retentions (two days; four for
    // failed ones), and what stays of those days: a replay that delivered an old event just
    // now, a failure within its retention, a delivery still to make.
    let expired = event("completed", day * 3, Some(day * 3)).await;
    let replayed = event("completed", day * 3, Some(Duration::ZERO)).await;
    let young_failure = event("failed", day * 3, None).await;
    let alone = event("completed", day * 4, Some(day * 4)).await;
    let old_failure = event("failed", day * 5, None).await;
    let undelivered = event("pending", day * 6, None).await;
    let recent = event("completed", day, Some(day)).await;
    // In the DEFAULT partitions: removed row by row, one of them held by another replica.
    let locked = event("completed", day * 10, Some(day * 10)).await;
    let unpartitioned = event("completed", day * 10, Some(day * 10)).await;
    // The day of three days ago, filled: its partitions' space comes back.
    let three_days_ago = chrono::Utc::now() - chrono::TimeDelta::days(3);
    let filled = format!("{}", three_days_ago.format("%Y%m%d"));
    seeded.fill_day(three_days_ago.date_naive()).await;
    #[derive(diesel::QueryableByName)]
    struct Size {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }
    let size_sql = format!(
        "SELECT (pg_total_relation_size('events_{filled}') \
             + pg_total_relation_size('deliveries_{filled}') \
             + pg_total_relation_size('delivery_attempts_{filled}'))::bigint AS bytes"
    );
    let full: Size = diesel::sql_query(&size_sql)
        .get_result(&mut seeded.conn)
        .await
        .unwrap();

    // Another replica's batch holds one of the DEFAULT partitions' expired events: the job
    // skips it, without waiting.
    let mut other = diesel_async::AsyncPgConnection::establish(&url)
        .await
        .unwrap();
    other
        .batch_execute(&format!(
            "BEGIN; SELECT id FROM deliveries WHERE id = '{locked}' FOR UPDATE"
        ))
        .await
        .unwrap();

    let mut app = crate::helpers::spawn_app_in(seeded.resources, |settings| {
        settings.retention = day * 2;
        settings.failed_retention = day * 4;
        // Retention runs every tenth of the shortest retention: every 100 ms.
        settings.issue_retention = Duration::from_secs(1);
    })
    .await;
    app.api_key = seeded.api_key;
    let listed = app.get_json("/api/v1/events").await;
    assert_eq!(listed["retention"]["completed_seconds"], 2 * 86_400);
    assert_eq!(listed["retention"]["failed_seconds"], 4 * 86_400);
    let dashboard = app.owner_dashboard().await;
    let events = dashboard.page("/events").await;
    assert!(
        events.contains("Delivered events are kept for 2 days, failed ones for 4 days"),
        "{events}"
    );
    let graveyard = dashboard.page("/events?status=failed").await;
    assert!(
        graveyard.contains("They are kept for 4 days."),
        "{graveyard}"
    );

    let url = app.database_url.as_str();
    let present = async move |ids: Vec<String>| -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            id: String,
        }
        let mut conn = diesel_async::AsyncPgConnection::establish(url)
            .await
            .unwrap();
        let list = ids
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(",");
        let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT id::text AS id FROM events WHERE id IN ({list}) \
             UNION ALL SELECT delivery_id::text FROM delivery_attempts \
             WHERE delivery_id IN ({list})"
        ))
        .load(&mut conn)
        .await
        .unwrap();
        rows.into_iter().map(|row| row.id).collect()
    };
    let all = vec![
        expired.clone(),
        replayed.clone(),
        young_failure.clone(),
        alone.clone(),
        old_failure.clone(),
        undelivered.clone(),
        recent.clone(),
        locked.clone(),
        unpartitioned.clone(),
    ];
    // The batches removing the DEFAULT partitions' expired rows one by one skip the held one.
    // (The held table also keeps the days' partitions from being detached: that waits.)
    let held = crate::helpers::wait_until(
        Duration::from_secs(30),
        "the unheld expired event to go",
        || async {
            match present(vec![unpartitioned.clone(), locked.clone()]).await {
                left if left.contains(&unpartitioned) => Err(format!("{left:?}")),
                left => Ok(left),
            }
        },
    )
    .await;
    assert!(held.contains(&locked), "the held one is skipped: {held:?}");
    other.batch_execute("COMMIT").await.unwrap();
    let gone = [&expired, &alone, &old_failure, &unpartitioned, &locked];
    let left = crate::helpers::wait_until(
        Duration::from_secs(30),
        "the expired events to go",
        || async {
            let left = present(all.clone()).await;
            if gone.iter().any(|id| left.contains(id)) {
                Err(format!("{left:?}"))
            } else {
                Ok(left)
            }
        },
    )
    .await;
    for kept in [&replayed, &young_failure, &undelivered, &recent] {
        assert_eq!(
            left.iter().filter(|id| *id == kept).count(),
            2,
            "{kept} and its attempt are kept: {left:?}"
        );
    }
    // The day three days ago went whole, but for what stays: its partitions are new tables,
    // a fraction of the size, without a vacuum. The day with nothing left has no partitions.
    let mut conn = app.db().await;
    let compacted: Size = diesel::sql_query(&size_sql)
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(
        compacted.bytes * 4 < full.bytes,
        "{} bytes before, {} after",
        full.bytes,
        compacted.bytes
    );
    let four_days_ago = (chrono::Utc::now() - chrono::TimeDelta::days(4)).format("%Y%m%d");
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let partitioned: Exists = diesel::sql_query(format!(
        "SELECT to_regclass('events_{four_days_ago}') IS NOT NULL AS exists"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(!partitioned.exists, "a day with nothing left is dropped");
    // And the detached tables that held what went are dropped too.
    crate::helpers::wait_until(
        Duration::from_secs(15),
        "the expired tables to be dropped",
        || async {
            let mut conn = diesel_async::AsyncPgConnection::establish(url)
                .await
                .unwrap();
            let left: Exists = diesel::sql_query(
                "SELECT EXISTS (SELECT FROM pg_class \
                     WHERE relname ~ '_(expired|expiring|kept)$') AS exists",
            )
            .get_result(&mut conn)
            .await
            .unwrap();
            if left.exists {
                Err("some are left".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await;

    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_without_a_key_and_describes_the_api() {
    let app = spawn_app().await;
    let response = app
        .api
        .get(format!("{}/api/v1/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "no key is needed");
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body = response.text().await.unwrap();
    let document: Value = serde_json::from_str(&body).expect("a JSON document");
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    assert!(
        document["paths"]["/api/v1/subscriptions/{id}/replay"]["post"].is_object(),
        "the bulk replay is described: {:?}",
        document["paths"].as_object().map(|paths| paths.keys())
    );
    let spec = oas3::from_json(&body).expect("valid OpenAPI 3.1");
    assert_eq!(
        spec.operations().count(),
        spenza::api::MOUNTED.len(),
        "one operation per route"
    );
    app.shutdown().await;
}
