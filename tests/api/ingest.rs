//! Ingest: what a provider is told, and what is stored, for every kind of input.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{FaultProxy, Script, Sink, spawn_app, spawn_app_with, through, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingested_event_is_delivered_byte_for_byte_and_completed() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let body = br#"{"id":"evt_1","type":"invoice.paid","amount":4200}"#;

    let response = app
        .ingest(
            subscription["ingest_url"].as_str().unwrap(),
            "application/json",
            &body[..],
        )
        .await;

    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["event_id"]
        .as_str()
        .expect("an event id")
        .to_owned();
    let received = sink.wait_for_requests(1).await;
    assert_eq!(received[0].body, body);
    assert_eq!(received[0].path, "/hook");
    assert_eq!(received[0].header("webhook-id"), Some(id.as_str()));
    assert_eq!(received[0].header("content-type"), Some("application/json"));
    assert!(
        received[0]
            .header("user-agent")
            .unwrap()
            .starts_with("Spenza/")
    );
    let event = app.wait_for_status(&id, "completed").await;
    assert_eq!(event["attempts"], 1);
    assert_eq!(event["payload"]["type"], "invoice.paid");
    assert!(event["completed_at"].is_string());
    let attempts: Value = app.get_json(&format!("/api/v1/events/{id}/attempts")).await;
    assert_eq!(attempts["data"][0]["attempt"], 1);
    assert_eq!(attempts["data"][0]["status_code"], 200);
    assert_eq!(attempts["data"][0]["response_body"], "ok");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_xml_and_binary_bodies_are_relayed_byte_for_byte_without_a_document() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    let bodies: [(&str, Vec<u8>); 3] = [
        (
            "application/x-www-form-urlencoded",
            b"payload=%7B%22a%22%3A1%7D&name=caf%C3%A9+bar".to_vec(),
        ),
        (
            "application/xml",
            b"<?xml version=\"1.0\"?>\n<event id=\"7\">\r\n  <amount>42</amount>\n</event>\n"
                .to_vec(),
        ),
        (
            "application/octet-stream",
            vec![0, 159, 146, 150, 255, 10, 13],
        ),
    ];

    let mut ids = Vec::new();
    for (content_type, body) in &bodies {
        let response = app.ingest(ingest_url, content_type, body.clone()).await;
        assert_eq!(response.status(), 202, "{content_type}");
        let accepted: Value = response.json().await.unwrap();
        ids.push(accepted["event_id"].as_str().unwrap().to_owned());
    }

    let received = sink.wait_for_requests(3).await;
    for ((content_type, body), id) in bodies.iter().zip(&ids) {
        let delivery = received
            .iter()
            .find(|r| r.header("webhook-id") == Some(id.as_str()))
            .expect("delivered");
        assert_eq!(
            &delivery.body, body,
            "{content_type} body changed in transit"
        );
        assert_eq!(delivery.header("content-type"), Some(*content_type));
        let event = app.wait_for_status(id, "completed").await;
        assert_eq!(
            event["payload"],
            Value::Null,
            "{content_type} is not a JSON document"
        );
    }
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ingest_tokens_get_404_and_nothing_is_stored() {
    let app = spawn_app().await;
    let well_formed_but_unknown = format!("{}/ingest/{}", app.address, "A".repeat(43));
    let malformed = format!("{}/ingest/not-a-token", app.address);

    for url in [well_formed_but_unknown, malformed] {
        let response = app.ingest(&url, "application/json", "{}").await;
        assert_eq!(response.status(), 404, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    assert_eq!(app.stored_events().await, 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_and_nothing_is_stored() {
    let app = spawn_app_with(|settings| settings.max_body_bytes = 1024).await;
    let subscription = app.create_subscription("http://127.0.0.1:9/unused").await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();

    let declared = app.ingest(ingest_url, "text/plain", vec![b'x'; 1025]).await;
    assert_eq!(declared.status(), 413);
    // Without a Content-Length the limit is enforced while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b'x'; 1000]), Ok(vec![b'x'; 1000])];
    let streamed = app
        .api
        .post(ingest_url)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    let at_limit = app.ingest(ingest_url, "text/plain", vec![b'x'; 1024]).await;
    assert_eq!(at_limit.status(), 202);

    assert_eq!(app.stored_events().await, 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_returns_503_when_the_database_is_unreachable_and_stores_nothing() {
    let postgres: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = FaultProxy::start(postgres).await;
    let app = spawn_app_with(|settings| {
        settings.database.url = through(&proxy, settings.database.url.expose()).into();
        settings.database.timeout = Duration::from_secs(2);
    })
    .await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    assert_eq!(
        app.ingest(&ingest_url, "application/json", r#"{"before":"cut"}"#)
            .await
            .status(),
        202
    );

    proxy.cut();
    for attempt in 0..5 {
        let started = Instant::now();
        let response = app
            .ingest(
                &ingest_url,
                "application/json",
                format!(r#"{{"during":{attempt}}}"#),
            )
            .await;
        assert_eq!(
            response.status(),
            503,
            "attempt {attempt} while the database is cut off"
        );
        assert!(response.headers().contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the 503 took {:?}",
            started.elapsed()
        );
    }
    proxy.mend();

    let after: Value = wait_until(Duration::from_secs(20), "ingest to recover", || async {
        let response = app
            .ingest(&ingest_url, "application/json", r#"{"after":"mend"}"#)
            .await;
        if response.status() == 202 {
            Ok(response.json().await.unwrap())
        } else {
            Err(response.status().to_string())
        }
    })
    .await;
    app.wait_for_status(after["event_id"].as_str().unwrap(), "completed")
        .await;
    // Only what was acknowledged with 202 is stored: one before the cut, the first 202 after.
    assert_eq!(app.stored_events().await, 2);
    for received in sink.received() {
        assert!(!String::from_utf8_lossy(&received.body).contains("during"));
    }
    sink.stop().await;
    app.shutdown().await;
}

/// A log kept in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ingest statements waiting on a lock in the database at `url`.
async fn ingests_waiting_on_a_lock(url: &str) -> i64 {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS count FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock' \
           AND query LIKE 'WITH arriving%'",
    )
    .get_result::<Count>(&mut conn)
    .await
    .unwrap()
    .count
}

#[tokio::test]
async fn an_event_that_fails_its_batch_fails_alone_and_its_neighbours_are_stored() {
    use diesel_async::RunQueryDsl;
    use spenza::db::models::event::NewEvent;
    use spenza::db::{Commits, Database, DbError, Plans};
    use spenza::ingest::Intake;
    use spenza::request_id::RequestId;

    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    let token = spenza::domain::IngestToken::parse(ingest_url.rsplit('/').next().unwrap())
        .expect("a token");
    let subscription_id: spenza::domain::SubscriptionId =
        serde_json::from_value(subscription["id"].clone()).unwrap();
    // A row at fault: the database refuses any event whose body says "poison".
    let mut admin = app.db().await;
    diesel::sql_query(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF convert_from(NEW.body, 'UTF8') LIKE '%poison%' THEN \
                 RAISE EXCEPTION 'poisoned event'; END IF; RETURN NEW; END $$",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    diesel::sql_query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW \
         EXECUTE FUNCTION refuse_poison()",
    )
    .execute(&mut admin)
    .await
    .unwrap();

    let settings = crate::helpers::test_settings(&app.database_url, app.prefix());
    let db = Database::new(
        spenza::db::build_pool(&settings.database, 2, Commits::Durable, Plans::Generic).unwrap(),
        Duration::from_secs(20),
    );
    let topology = spenza::queue::Topology::new(
        app.prefix(),
        settings.queue_kind,
        settings.retry_schedule.delays(),
    );
    let (publisher, publisher_thread) = crate::helpers::connected_publisher(topology.clone()).await;
    let (live, live_thread) = spenza::live::LiveThread::start(
        &[crate::helpers::amqp_url()],
        topology,
        false,
        spenza::telemetry::discard(),
    )
    .unwrap();
    let event = |body: &str| NewEvent {
        token: token.clone(),
        routing_version: None,
        routes: vec![subscription_id],
        id: spenza::domain::EventId::new(),
        body: body.to_owned().into(),
        payload: None,
        content_type: None,
        headers: serde_json::json!({}),
        path: String::new(),
        query: String::new(),
        idempotency_key: None,
    };

    // The intake's log, kept to see which batch failed.
    let captured = Captured::default();
    let log = {
        use slog::Drain;
        let drain = slog_json::Json::default(captured.clone()).fuse();
        slog::Logger::root(std::sync::Mutex::new(drain).fuse(), slog::o!())
    };

    let local = tokio::task::LocalSet::new();
    let outcomes = local
        .run_until(async {
            let intake = Intake::start(db, 2, publisher, live, log);
            // Both of the intake's slots are taken by a batch waiting on a lock the test holds,
            // so everything sent next waits in its queue and becomes one batch.
            let mut locker = app.db().await;
            diesel::sql_query("BEGIN")
                .execute(&mut locker)
                .await
                .unwrap();
            diesel::sql_query("LOCK TABLE events IN EXCLUSIVE MODE")
                .execute(&mut locker)
                .await
                .unwrap();
            let url = app.database_url.as_str();
            let mut blockers = Vec::new();
            for waiting in 1..=2 {
                let (intake, blocker) = (intake.clone(), event("{\"blocker\": true}"));
                blockers.push(tokio::task::spawn_local(async move {
                    intake.store(blocker, RequestId::generate()).await
                }));
                wait_until(
                    Duration::from_secs(10),
                    "a batch waiting on the lock",
                    move || async move {
                        match ingests_waiting_on_a_lock(url).await {
                            n if n >= waiting => Ok(()),
                            n => Err(format!("{n} waiting")),
                        }
                    },
                )
                .await;
            }
            let batch: Vec<NewEvent> = (0..21)
                .map(|n| {
                    event(if n == 10 {
                        "poison"
                    } else {
                        "{\"good\": true}"
                    })
                })
                .collect();
            let ids: Vec<_> = batch.iter().map(|event| event.id).collect();
            let stores: Vec<_> = batch
                .into_iter()
                .map(|event| {
                    let intake = intake.clone();
                    tokio::task::spawn_local(async move {
                        intake.store(event, RequestId::generate()).await
                    })
                })
                .collect();
            // Each store task runs once and queues its event before the lock is let go.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            diesel::sql_query("COMMIT")
                .execute(&mut locker)
                .await
                .unwrap();
            for blocker in blockers {
                assert!(matches!(blocker.await.unwrap(), Ok(Some(_))));
            }
            let mut outcomes = Vec::new();
            for (id, store) in ids.into_iter().zip(stores) {
                outcomes.push((id, store.await.unwrap()));
            }
            // The intake publishes what it stored once it has answered: it runs on here.
            sink.wait_for_requests(22).await;
            outcomes
        })
        .await;
    for (n, (id, outcome)) in outcomes.iter().enumerate() {
        match outcome {
            Ok(Some(accepted)) if n != 10 => assert_eq!(accepted.stored, Some(*id)),
            Err(DbError::Query(_)) if n == 10 => {}
            Ok(_) => panic!("event {n}: not stored"),
            Err(error) => panic!("event {n}: {error}"),
        }
    }
    assert_eq!(
        app.stored_events().await,
        22,
        "2 blockers and 20 good events"
    );
    sink.wait_for_requests(22).await;
    tokio::task::spawn_blocking(move || live_thread.stop())
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || publisher_thread.stop())
        .await
        .unwrap();
    sink.stop().await;
    app.shutdown().await;
}
