//! Faults on the relay's side: the broker goes away, the process is killed or stopped, the
//! schedule changes. Every accepted event must end delivered; duplicates are counted.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use spenza::config::QueueKind;
use spenza::queue::Topology;

use crate::helpers::{
    FaultProxy, RelayProcess, Script, Sink, TestResources, accept, all_delivered, amqp_url,
    create_user_with_key, metric, spawn_app_with, start_load, through, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_accepted_while_the_broker_is_away_are_delivered_seconds_after_it_is_back() {
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let proxy = FaultProxy::start(broker).await;
    // The reaper's defaults: a minute's grace, which the events must not wait out.
    let app = spawn_app_with(|s| {
        s.amqp_url = vec![through(&proxy, s.amqp_url[0].expose()).into()].into();
    })
    .await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();

    proxy.cut();
    wait_until(
        Duration::from_secs(30),
        "readiness to report the broker down",
        || async {
            let response = app.get("/readyz").await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            if status == 503
                && body["broker"] == "down"
                && body["consumer"] == "down"
                && body["database"] == "up"
            {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        },
    )
    .await;
    let mut accepted = HashSet::new();
    for n in 0..20 {
        let response = app
            .ingest(&ingest_url, "application/json", format!(r#"{{"n":{n}}}"#))
            .await;
        assert_eq!(
            response.status(),
            202,
            "ingest must not depend on the broker"
        );
        let body: Value = response.json().await.unwrap();
        accepted.insert(body["event_id"].as_str().unwrap().to_owned());
    }
    assert!(sink.received().is_empty());
    proxy.mend();
    let mended = std::time::Instant::now();

    assert_eq!(all_delivered(&sink, &accepted).await, 0, "no duplicates");
    let took = mended.elapsed();
    assert!(
        took <= Duration::from_secs(10),
        "delivered {took:?} after the broker came back"
    );
    for id in &accepted {
        app.wait_for_status(id, "completed").await;
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["consumer"], "up");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_given_a_clusters_urls_moves_to_the_next_when_its_node_goes_away() {
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    // Two URLs for one broker: the first through a proxy that stands for the node that stops.
    let first = FaultProxy::start(broker).await;
    let app = spawn_app_with(|s| {
        let direct = s.amqp_url[0].expose().to_owned();
        s.amqp_url = vec![through(&first, &direct).into(), direct.into()].into();
    })
    .await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    let mut accepted = HashSet::new();
    accepted.insert(app.accept(&ingest_url, r#"{"n":0}"#).await);
    all_delivered(&sink, &accepted).await;
    assert!(
        first.connections() >= 3,
        "the publisher, the consumer and the live bus connect through the first URL"
    );

    // Its node goes for good: every connection moves to the next URL.
    first.cut();
    for n in 1..=20 {
        accepted.insert(app.accept(&ingest_url, &format!(r#"{{"n":{n}}}"#)).await);
    }
    assert_eq!(all_delivered(&sink, &accepted).await, 0, "no duplicates");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(
        (&ready["broker"], &ready["consumer"]),
        (&"up".into(), &"up".into())
    );
    assert_eq!(
        first.connections(),
        0,
        "nothing went back through the stopped node"
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_flight_when_the_broker_connection_drops_still_complete() {
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let proxy = FaultProxy::start(broker).await;
    let app = spawn_app_with(|s| {
        s.amqp_url = vec![through(&proxy, s.amqp_url[0].expose()).into()].into();
        // Nothing here needs the reaper: every message was published before the cut.
        s.reaper_grace = Duration::from_secs(30);
    })
    .await;
    let sink = Sink::start(Script::Slow(Duration::from_millis(1500))).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    let mut accepted = HashSet::new();
    for n in 0..5 {
        let response = app
            .ingest(&ingest_url, "application/json", format!(r#"{{"n":{n}}}"#))
            .await;
        let body: Value = response.json().await.unwrap();
        accepted.insert(body["event_id"].as_str().unwrap().to_owned());
    }

    // Cut while the slow endpoint holds every delivery: their acks belong to a connection that
    // is gone, and the broker hands the messages out again on the next one.
    sink.wait_for_requests(5).await;
    proxy.cut();
    proxy.mend();

    for id in &accepted {
        app.wait_for_status(id, "completed").await;
    }
    // The broker hands the messages out again, but their events are still held by the
    // deliveries in flight (or delivered by them): the copies make no second request.
    let duplicates = all_delivered(&sink, &accepted).await;
    assert_eq!(duplicates, 0, "for {} events in flight", accepted.len());
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_broker_returns_as_unroutable_are_delivered_once_routing_is_back() {
    let app = spawn_app_with(|s| {
        s.reaper_interval = Duration::from_millis(200);
        s.reaper_grace = Duration::from_secs(1);
    })
    .await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    let topology = Topology::new(app.prefix(), QueueKind::Quorum, Vec::new());
    let rebind = |bound: bool| {
        let mut connection = amiquip::Connection::insecure_open(&amqp_url()).unwrap();
        let channel = connection.open_channel(None).unwrap();
        let (queue, exchange, key) = (
            topology.deliver_queue(),
            topology.deliver_exchange(),
            topology.deliver_routing_key(),
        );
        let changed = if bound {
            channel.queue_bind(queue, exchange, key, amiquip::FieldTable::new())
        } else {
            channel.queue_unbind(queue, exchange, key, amiquip::FieldTable::new())
        };
        changed.unwrap();
        connection.close().unwrap();
    };

    // With no queue bound, the broker returns every publish: nothing reaches a consumer, the
    // event stays due in PostgreSQL, and the reaper delivers it once routing is back.
    rebind(false);
    let id = app.accept(&ingest_url, r#"{"routed":false}"#).await;
    assert_eq!(app.event(&id).await["status"], "pending");
    rebind(true);

    app.wait_for_status(&id, "completed").await;
    assert_eq!(sink.received().len(), 1, "delivered once");
    sink.stop().await;
    app.shutdown().await;
}

// The grace period is short, so that what the reaper repairs shows up within the test, and
// longer than a restart takes, so that it does not republish what is still queued (which
// would show up as duplicates).
const PROCESS_SETTINGS: &[(&str, &str)] = &[
    ("SPENZA_RETRY_SCHEDULE", "500ms,1s"),
    ("SPENZA_REAPER_INTERVAL", "200ms"),
    ("SPENZA_REAPER_GRACE", "5s"),
    ("SPENZA_SHUTDOWN_TIMEOUT", "10s"),
    ("SPENZA_DELIVERY_CONCURRENCY", "16"),
];
/// A crash can repeat at most the deliveries that were in flight: made, not yet recorded.
const IN_FLIGHT: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_in_the_middle_of_a_load_delivers_everything_after_a_restart() {
    const EVENTS: usize = 500;
    let resources = TestResources::new("500ms,1s").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let sink = Sink::start(Script::Ok).await;
    let mut relay = RelayProcess::start(&resources, PROCESS_SETTINGS).await;
    let ingest_url: Arc<str> = relay.subscribe(&key, &sink.url).await.into();
    let (load, mut accepted_rx) = start_load(ingest_url, EVENTS, 20);
    let mut accepted = HashSet::new();
    while accepted.len() < EVENTS / 2 {
        accepted.insert(accepted_rx.recv().await.expect("the load is running"));
    }
    let status = relay.signal("KILL").await;
    assert!(!status.success());
    load.await.unwrap();
    while let Ok(id) = accepted_rx.try_recv() {
        accepted.insert(id);
    }
    assert!(
        accepted.len() < EVENTS,
        "the kill came too late to interrupt the load"
    );

    let restarted = RelayProcess::start(&resources, PROCESS_SETTINGS).await;
    let duplicates = all_delivered(&sink, &accepted).await;
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates: more than the {IN_FLIGHT} deliveries that can be in flight"
    );
    drop(restarted);
    sink.stop().await;
    drop(resources);
}

/// Makes every ingest statement in the test's database take a while, and records which
/// transaction wrote each event: a batch is then mid-commit most of the time, and how events
/// were grouped into commits can be read back.
async fn slow_and_traced_ingest(resources: &TestResources) {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let mut conn = AsyncPgConnection::establish(&resources.database.url)
        .await
        .unwrap();
    for statement in [
        "CREATE TABLE written_by (event_id uuid PRIMARY KEY, tx bigint NOT NULL)",
        "CREATE FUNCTION trace_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             INSERT INTO written_by VALUES (NEW.id, txid_current()); RETURN NULL; END $$",
        "CREATE TRIGGER trace_event AFTER INSERT ON events FOR EACH ROW \
             EXECUTE FUNCTION trace_event()",
        "CREATE FUNCTION slow_ingest() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             PERFORM pg_sleep(0.05); RETURN NULL; END $$",
        "CREATE TRIGGER slow_ingest AFTER INSERT ON events FOR EACH STATEMENT \
             EXECUTE FUNCTION slow_ingest()",
    ] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_while_a_batch_of_ingests_commits_answered_202_only_for_stored_events() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    const EVENTS: usize = 2_000;
    let resources = TestResources::new("500ms,1s").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let sink = Sink::start(Script::Ok).await;
    let mut relay = RelayProcess::start(&resources, PROCESS_SETTINGS).await;
    let ingest_url: Arc<str> = relay.subscribe(&key, &sink.url).await.into();
    slow_and_traced_ingest(&resources).await;
    let (load, mut accepted_rx) = start_load(ingest_url, EVENTS, 64);
    let mut accepted = HashSet::new();
    while accepted.len() < 200 {
        accepted.insert(accepted_rx.recv().await.expect("the load is running"));
    }
    // Killed the moment one of its ingest statements is seen under way.
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let url = resources.database.url.as_str();
    wait_until(
        Duration::from_secs(10),
        "an ingest batch mid-commit",
        move || async move {
            let mut observer = AsyncPgConnection::establish(url).await.unwrap();
            let running: Count = diesel::sql_query(
                "SELECT count(*) AS count FROM pg_stat_activity \
                 WHERE datname = current_database() AND state = 'active' \
                   AND query LIKE 'WITH arriving%'",
            )
            .get_result(&mut observer)
            .await
            .unwrap();
            if running.count > 0 {
                Ok(())
            } else {
                Err("none".to_owned())
            }
        },
    )
    .await;
    let status = relay.signal("KILL").await;
    assert!(!status.success());
    load.await.unwrap();
    while let Ok(id) = accepted_rx.try_recv() {
        accepted.insert(id);
    }
    assert!(
        accepted.len() < EVENTS,
        "the kill came too late to interrupt the load"
    );

    // Every 202 is for an event in the database, and the events were written in batches.
    #[derive(diesel::QueryableByName)]
    struct Written {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        events: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        commits: i64,
    }
    let ids: Vec<uuid::Uuid> = accepted.iter().map(|id| id.parse().unwrap()).collect();
    let mut observer = AsyncPgConnection::establish(url).await.unwrap();
    let written: Written = diesel::sql_query(
        "SELECT count(*) AS events, count(DISTINCT tx) AS commits FROM written_by \
         WHERE event_id = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&ids)
    .get_result(&mut observer)
    .await
    .unwrap();
    assert_eq!(
        written.events as usize,
        accepted.len(),
        "an event answered 202 is missing from the database"
    );
    assert!(
        written.commits * 4 < written.events,
        "{} events in {} commits: not written in batches",
        written.events,
        written.commits
    );
    println!(
        "{} accepted before the kill, in {} commits",
        written.events, written.commits
    );

    let restarted = RelayProcess::start(&resources, PROCESS_SETTINGS).await;
    let duplicates = all_delivered(&sink, &accepted).await;
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates: more than the {IN_FLIGHT} deliveries that can be in flight"
    );
    drop(restarted);
    sink.stop().await;
    drop(resources);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_delivery_in_flight_finish_and_exits_0() {
    let resources = TestResources::new("500ms,1s").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let sink = Sink::start(Script::Slow(Duration::from_secs(2))).await;
    let mut relay = RelayProcess::start(&resources, PROCESS_SETTINGS).await;
    let ingest_url = relay.subscribe(&key, &sink.url).await;

    let id = accept(&ingest_url).await;
    sink.wait_for_requests(1).await;
    let status = relay.signal("TERM").await;

    assert!(status.success(), "exit status {status:?}");
    // The slow delivery finished and was recorded before the relay exited.
    let restarted = RelayProcess::start(&resources, PROCESS_SETTINGS).await;
    let found: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/events/{id}", restarted.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["status"], "completed");
    assert_eq!(found["attempts"], 1);
    assert_eq!(sink.received().len(), 1);
    drop(restarted);
    sink.stop().await;
    drop(resources);
}

/// Waits until the relay process reports the event in `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_retry_schedule_starts_beside_the_old_wait_queues_which_still_deliver() {
    let resources = TestResources::new("5s,1s,2s").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let sink = Sink::start(Script::FailFirst(1, 500)).await;
    // A long grace: what arrives below comes from the old wait queue, not from the reaper.
    let mut old = RelayProcess::start(
        &resources,
        &[
            ("SPENZA_RETRY_SCHEDULE", "5s"),
            ("SPENZA_REAPER_GRACE", "60s"),
        ],
    )
    .await;
    let ingest_url = old.subscribe(&key, &sink.url).await;
    let id = accept(&ingest_url).await;
    old.wait_for_status(&key, &id, "retrying").await;
    assert!(old.signal("TERM").await.success());

    // The new schedule has no 5 s level: its process declares its own wait queues beside the
    // old one, starts, and the retry waiting in the old queue still comes back to be delivered.
    let new = RelayProcess::start(
        &resources,
        &[
            ("SPENZA_RETRY_SCHEDULE", "1s,2s"),
            ("SPENZA_REAPER_GRACE", "60s"),
        ],
    )
    .await;
    new.wait_for_status(&key, &id, "completed").await;
    assert_eq!(sink.received().len(), 2);
    drop(new);
    sink.stop().await;
    drop(resources);
}

/// Deliveries this process counts as made with a 2xx answer, from its `/metrics`.
async fn delivered_by(relay: &RelayProcess) -> f64 {
    metric(
        &relay.address,
        r#"spenza_delivery_attempts_total{outcome="2xx"}"#,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_process_and_two_workers_lose_nothing_when_a_worker_is_killed_mid_load() {
    const EVENTS: usize = 600;
    let resources = TestResources::new("500ms,1s").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let sink = Sink::start(Script::Ok).await;
    let as_role = |role| {
        let mut settings = PROCESS_SETTINGS.to_vec();
        settings.push(("SPENZA_ROLE", role));
        settings
    };
    let api = RelayProcess::start(&resources, &as_role("api")).await;
    let mut doomed = RelayProcess::start(&resources, &as_role("worker")).await;
    let survivor = RelayProcess::start(&resources, &as_role("worker")).await;
    assert_eq!(
        delivered_by(&api).await,
        0.0,
        "an api process delivers nothing"
    );

    let ingest_url: Arc<str> = api.subscribe(&key, &sink.url).await.into();
    let (load, mut accepted_rx) = start_load(ingest_url, EVENTS, 20);
    let mut accepted = HashSet::new();
    while accepted.len() < EVENTS / 3 {
        accepted.insert(accepted_rx.recv().await.expect("the load is running"));
    }
    // Both workers take deliveries before one of them dies.
    wait_until(
        Duration::from_secs(30),
        "both workers delivering",
        || async {
            let counts = (delivered_by(&doomed).await, delivered_by(&survivor).await);
            if counts.0 > 0.0 && counts.1 > 0.0 {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
    let status = doomed.signal("KILL").await;
    assert!(!status.success());
    let before = delivered_by(&survivor).await;
    // A fast load may have been delivered in full before the kill: then nothing is left to
    // take over, and only what was not is the survivor's to deliver.
    let delivered_when_killed = sink.unique_ids().len();
    load.await.unwrap();
    while let Ok(id) = accepted_rx.try_recv() {
        accepted.insert(id);
    }
    assert_eq!(
        accepted.len(),
        EVENTS,
        "the api process accepted every event"
    );

    let duplicates = all_delivered(&sink, &accepted).await;
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates: more than the {IN_FLIGHT} deliveries the killed worker had in flight"
    );
    assert!(
        delivered_when_killed == EVENTS || delivered_by(&survivor).await > before,
        "the surviving worker delivered the rest"
    );
    assert_eq!(
        delivered_by(&api).await,
        0.0,
        "an api process delivers nothing"
    );
    drop((api, survivor));
    sink.stop().await;
    drop(resources);
}
