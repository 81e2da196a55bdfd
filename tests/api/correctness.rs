//! Delivery that stays correct under duplicates, slow endpoints and bad luck: one attempt chain
//! per event, fairness across subscriptions, and `Retry-After` as a lower bound.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use spenza::config::QueueKind;
use spenza::domain::{DeliveryId, EventId, RetrySchedule, SubscriptionId};
use spenza::queue::{Envelope, Publisher, PublisherThread, Route, Topology};

use crate::helpers::{
    FaultProxy, Script, Sink, TestApp, connected_publisher, ready_in, spawn_app_with,
    stop_publisher, through, wait_until,
};

/// A publisher of the test's own onto the app's queues, as a second replica would publish.
async fn second_publisher(app: &TestApp, schedule: &str) -> (Publisher, PublisherThread, Topology) {
    let schedule: RetrySchedule = schedule.parse().unwrap();
    let topology = Topology::new(app.prefix(), QueueKind::Quorum, schedule.delays());
    let (publisher, thread) = connected_publisher(topology.clone()).await;
    (publisher, thread, topology)
}

/// How many attempts each of these events has, from the database.
async fn attempt_counts(app: &TestApp, events: &[String]) -> Vec<i64> {
    let mut counts = Vec::new();
    for id in events {
        counts.push(app.event(id).await["attempts"].as_i64().unwrap());
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_a_delivery_in_flight_make_one_attempt_and_schedule_one_retry() {
    const SCHEDULE: &str = "1h";
    let app = spawn_app_with(|s| s.retry_schedule = SCHEDULE.parse().unwrap()).await;
    let sink = Sink::start(Script::SlowStatus(Duration::from_secs(2), 503)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;
    let (publisher, thread, topology) = second_publisher(&app, SCHEDULE).await;
    // While the first attempt is at the endpoint, a second copy of its message arrives (as a
    // reaper's republish or a redelivery would).
    sink.wait_for_requests(1).await;
    let copy = Envelope {
        event_id: EventId(id.parse().unwrap()),
        delivery_id: Some(DeliveryId(app.delivery_of(&id).await.parse().unwrap())),
        subscription_id: SubscriptionId(subscription["id"].as_str().unwrap().parse().unwrap()),
        target_url: sink.url.clone(),
        retry_count: 0,
        deferrals: 0,
        request_id: None,
    };
    publisher.publish(&copy, Route::Deliver).await.unwrap();
    wait_until(Duration::from_secs(10), "the copy to be taken", || async {
        match ready_in(&topology.deliver_queue())? {
            0 => Ok(()),
            ready => Err(format!("{ready} ready")),
        }
    })
    .await;

    let event = app.wait_for_status(&id, "retrying").await;
    assert_eq!(event["attempts"], 1, "one attempt recorded");
    assert_eq!(sink.received().len(), 1, "one request at the endpoint");
    let retry_queue = topology.retry_queue(Duration::from_secs(3600));
    wait_until(
        Duration::from_secs(10),
        "the retry to be queued",
        || async {
            match ready_in(&retry_queue)? {
                0 => Err("none yet".to_owned()),
                queued => Ok(queued),
            }
        },
    )
    .await;
    assert_eq!(ready_in(&retry_queue).unwrap(), 1, "one retry scheduled");
    stop_publisher(publisher, thread).await;
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_longer_than_the_reapers_grace_attempts_each_event_once() {
    const EVENTS: usize = 40;
    const SCHEDULE: &str = "1h";
    let app = spawn_app_with(|s| {
        s.retry_schedule = SCHEDULE.parse().unwrap();
        s.reaper_grace = Duration::from_secs(1);
        s.reaper_interval = Duration::from_secs(1);
        // One at a time: 40 events of 100 ms each queue for 4 s, four grace periods.
        s.delivery_concurrency = 1;
    })
    .await;
    let sink = Sink::start(Script::SlowStatus(Duration::from_millis(100), 503)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    let mut events = Vec::new();
    for n in 0..EVENTS {
        events.push(app.accept(ingest_url, &format!(r#"{{"n": {n}}}"#)).await);
    }
    for id in &events {
        app.wait_for_status(id, "retrying").await;
    }
    // What the reaper republished meanwhile is drained, each copy dropped without an attempt.
    let topology = Topology::new(
        app.prefix(),
        QueueKind::Quorum,
        SCHEDULE.parse::<RetrySchedule>().unwrap().delays(),
    );
    wait_until(
        Duration::from_secs(30),
        "the copies to be drained",
        || async {
            match ready_in(&topology.deliver_queue())? {
                0 => Ok(()),
                ready => Err(format!("{ready} ready")),
            }
        },
    )
    .await;
    let again = app.wait_for_status(&events[EVENTS - 1], "retrying").await;
    assert_eq!(again["attempts"], 1);

    assert_eq!(attempt_counts(&app, &events).await, vec![1; EVENTS]);
    assert_eq!(sink.received().len(), EVENTS, "one request per event");
    assert_eq!(
        ready_in(&topology.retry_queue(Duration::from_secs(3600))).unwrap(),
        EVENTS as u32,
        "one retry per event"
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_delay_another_subscriptions_deliveries() {
    const SLOW: usize = 300;
    const FAST: usize = 100;
    let app = spawn_app_with(|s| {
        s.delivery_concurrency = 64;
        s.subscription_concurrency = 48;
        s.delivery_timeout = Duration::from_secs(10);
    })
    .await;
    let slow_sink = Sink::start(Script::Slow(Duration::from_secs(5))).await;
    let fast_sink = Sink::start(Script::Ok).await;
    let slow = app.create_subscription(&slow_sink.url).await;
    let fast = app.create_subscription(&fast_sink.url).await;
    let poster = &app;
    let post = async |url: &str, count: usize| -> Vec<(String, Instant)> {
        futures_util::stream::iter(0..count)
            .map(|n| async move {
                let id = poster.accept(url, &format!(r#"{{"n": {n}}}"#)).await;
                (id, Instant::now())
            })
            .buffer_unordered(16)
            .collect()
            .await
    };
    let slow_events = post(slow["ingest_url"].as_str().unwrap(), SLOW).await;
    let fast_events = post(fast["ingest_url"].as_str().unwrap(), FAST).await;

    let arrived = fast_sink.wait_for_requests(FAST).await;
    for (id, accepted) in &fast_events {
        let delivered = arrived
            .iter()
            .find(|request| request.header("webhook-id") == Some(id))
            .expect("every fast event arrives");
        let waited = delivered.at.saturating_duration_since(*accepted);
        assert!(
            waited <= Duration::from_secs(2),
            "a fast event waited {waited:?} behind the slow endpoint"
        );
    }

    // The slow one's are all delivered in the end, each with one attempt.
    let ids: Vec<String> = slow_events.into_iter().map(|(id, _)| id).collect();
    wait_until(
        Duration::from_secs(120),
        "the slow events to be delivered",
        || async {
            let completed = slow_sink.unique_ids().len();
            if completed == SLOW {
                Ok(())
            } else {
                Err(format!("{completed} delivered"))
            }
        },
    )
    .await;
    for id in &ids {
        app.wait_for_status(id, "completed").await;
    }
    assert_eq!(attempt_counts(&app, &ids).await, vec![1; SLOW]);
    assert_eq!(slow_sink.received().len(), SLOW, "one request per event");
    slow_sink.stop().await;
    fast_sink.stop().await;
    app.shutdown().await;
}

/// When each attempt of `id` started, in order.
async fn attempt_times(app: &TestApp, id: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
    let body: Value = app.get_json(&format!("/api/v1/events/{id}/attempts")).await;
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["started_at"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_lengthens_a_wait_but_never_shortens_the_schedule() {
    let app = spawn_app_with(|s| s.retry_schedule = "2s,4s".parse().unwrap()).await;
    // One endpoint asks for a second in seconds, the other as an HTTP date.
    let seconds = Sink::start(Script::RetryAfter(503, 1)).await;
    let date = Sink::start(Script::RetryAt(503, 1)).await;
    let mut events = Vec::new();
    for sink in [&seconds, &date] {
        let subscription = app.create_subscription(&sink.url).await;
        events.push(
            app.accept(subscription["ingest_url"].as_str().unwrap(), "{}")
                .await,
        );
    }
    for id in &events {
        app.wait_for_status(id, "failed").await;
        let times = attempt_times(&app, id).await;
        assert_eq!(times.len(), 3, "an attempt and two retries");
        let gaps: Vec<i64> = times
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).num_milliseconds())
            .collect();
        assert!(
            gaps[0] >= 2000 && gaps[1] >= 4000,
            "the schedule's waits are kept: {gaps:?} ms"
        );
    }
    seconds.stop().await;
    date.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_acknowledged_without_waiting_for_the_brokers_confirm() {
    const SCHEDULE: &str = "1h";
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let proxy = FaultProxy::start(broker).await;
    let app = spawn_app_with(|s| {
        s.amqp_url = vec![through(&proxy, s.amqp_url[0].expose()).into()].into();
        s.retry_schedule = SCHEDULE.parse().unwrap();
    })
    .await;
    let sink = Sink::start(Script::SlowStatus(Duration::from_secs(1), 503)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;
    let topology = Topology::new(
        app.prefix(),
        QueueKind::Quorum,
        SCHEDULE.parse::<RetrySchedule>().unwrap().delays(),
    );
    // The attempt is at the endpoint; from now on the broker answers nothing, confirms
    // included, though it still hears what the relay sends.
    sink.wait_for_requests(1).await;
    proxy.freeze_replies();
    app.wait_for_status(&id, "retrying").await;
    let retry_queue = topology.retry_queue(Duration::from_secs(3600));
    wait_until(
        Duration::from_secs(10),
        "the retry to be published",
        || async {
            match ready_in(&retry_queue)? {
                1 => Ok(()),
                ready => Err(format!("{ready} ready")),
            }
        },
    )
    .await;
    // The acknowledgement follows the retry's publish at once, and is not observable from
    // outside: half a second is ample. Then the connections drop: a message still
    // unacknowledged would go back to the queue.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ready_in(&topology.deliver_queue()).unwrap(),
        0,
        "the failed attempt's message was still waiting for a confirm"
    );
    assert_eq!(sink.received().len(), 1);
    proxy.mend();
    sink.stop().await;
    app.shutdown().await;
}

/// An attempt of `delivery` (of `event`, for `subscription`) that ended as `status`, to record.
fn attempt_of(
    (event, delivery): &(String, String),
    subscription: &str,
    status: spenza::domain::EventStatus,
) -> spenza::db::models::delivery::AttemptRecord {
    spenza::db::models::delivery::AttemptRecord {
        delivery: DeliveryId(delivery.parse().unwrap()),
        event: EventId(event.parse().unwrap()),
        subscription: SubscriptionId(subscription.parse().unwrap()),
        started_at: chrono::Utc::now(),
        duration_ms: 1,
        status_code: Some(if status == spenza::domain::EventStatus::Completed {
            200
        } else {
            500
        }),
        error: (status != spenza::domain::EventStatus::Completed).then(|| "HTTP 500".to_owned()),
        response_body: None,
        status,
        next_attempt_at: None,
        retry_count: 0,
    }
}

/// The subscription's breaker as stored: consecutive failures, and whether it is active.
async fn breaker_of(app: &TestApp, subscription: &str) -> (i32, bool) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use spenza::db::schema::subscriptions;
    let id: uuid::Uuid = subscription.parse().unwrap();
    subscriptions::table
        .filter(subscriptions::id.eq(id))
        .select((
            subscriptions::consecutive_failures,
            subscriptions::is_active,
        ))
        .first(&mut app.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn attempts_recorded_in_batches_count_toward_the_breaker_in_order_and_all_of_them() {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    use spenza::db::models::delivery::record_attempts;
    use spenza::domain::EventStatus::{Completed, Failed};

    // No consumer: the test records every attempt itself.
    let app = spawn_app_with(|s| s.role = spenza::config::Role::Api).await;
    let subscription = app.create_subscription("http://127.0.0.1:9/").await;
    let (ingest_url, sub) = (
        subscription["ingest_url"].as_str().unwrap(),
        subscription["id"].as_str().unwrap(),
    );
    let mut events = Vec::new();
    for n in 0..6 {
        let event = app.accept(ingest_url, &format!(r#"{{"n":{n}}}"#)).await;
        let delivery = app.delivery_of(&event).await;
        events.push((event, delivery));
    }

    // Two failures then a success, threshold 2: the breaker opened on the way, and stays open
    // although the count ends at 0.
    let batch = [
        attempt_of(&events[0], sub, Failed),
        attempt_of(&events[1], sub, Failed),
        attempt_of(&events[2], sub, Completed),
    ];
    record_attempts(&mut app.db().await, &batch, 2)
        .await
        .unwrap();
    assert_eq!(breaker_of(&app, sub).await, (0, false));

    // Two batches at once, each of failures: both count. The first holds the subscription's
    // row until it commits; the second waits for it, then adds its own.
    let mut first = app.db().await;
    diesel::sql_query("BEGIN")
        .execute(&mut first)
        .await
        .unwrap();
    let batch = [
        attempt_of(&events[3], sub, Failed),
        attempt_of(&events[4], sub, Failed),
    ];
    record_attempts(&mut first, &batch, 100).await.unwrap();
    let second = {
        let url = app.database_url.clone();
        let (event, sub) = (events[5].clone(), sub.to_owned());
        tokio::spawn(async move {
            let mut conn = diesel_async::AsyncPgConnection::establish(&url)
                .await
                .unwrap();
            record_attempts(&mut conn, &[attempt_of(&event, &sub, Failed)], 100)
                .await
                .unwrap();
        })
    };
    // The second is seen waiting on the first's lock before the first commits.
    let url = app.database_url.as_str();
    wait_until(
        Duration::from_secs(10),
        "the second batch to wait",
        move || async move {
            #[derive(diesel::QueryableByName)]
            struct Count {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                count: i64,
            }
            let mut observer = diesel_async::AsyncPgConnection::establish(url)
                .await
                .unwrap();
            let waiting: Count = diesel::sql_query(
                "SELECT count(*) AS count FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .get_result(&mut observer)
            .await
            .unwrap();
            if waiting.count > 0 {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;
    diesel::sql_query("COMMIT")
        .execute(&mut first)
        .await
        .unwrap();
    second.await.unwrap();
    assert_eq!(
        breaker_of(&app, sub).await.0,
        3,
        "2 + 1 failures since the success"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_batch_with_a_stale_copy_and_the_current_message_claims_at_the_current_step() {
    use diesel_async::RunQueryDsl;
    use spenza::db::models::delivery::{Claim, claim_for_delivery};

    let app = spawn_app_with(|s| s.role = spenza::config::Role::Api).await;
    let subscription = app.create_subscription("http://127.0.0.1:9/").await;
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;
    let event = DeliveryId(app.delivery_of(&id).await.parse().unwrap());
    diesel::sql_query("UPDATE deliveries SET status = 'retrying', retry_count = 1")
        .execute(&mut app.db().await)
        .await
        .unwrap();
    let event_id = spenza::domain::EventId(id.parse().unwrap());
    let claims = [
        Claim {
            id: event,
            event: event_id,
            retry_count: 0,
        },
        Claim {
            id: event,
            event: event_id,
            retry_count: 1,
        },
    ];
    let claimed = claim_for_delivery(
        &mut app.db().await,
        &claims,
        Duration::from_secs(60),
        Duration::from_secs(30),
        false,
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 1, "one claim of the event");
    assert_eq!((claimed[0].id, claimed[0].retry_count), (event, 1));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pool_plans_and_commits_as_it_is_built_to() {
    use diesel_async::RunQueryDsl;
    use spenza::db::{Commits, Database, Plans};

    #[derive(diesel::QueryableByName)]
    struct Session {
        #[diesel(sql_type = diesel::sql_types::Text)]
        plan_cache_mode: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        synchronous_commit: String,
    }
    let database = crate::helpers::create_database().await;
    let settings = crate::helpers::test_settings(&database.url, "unused");
    for (commits, synchronous_commit) in [(Commits::Durable, "on"), (Commits::Asynchronous, "off")]
    {
        for (plans, plan_cache_mode) in [
            (Plans::Custom, "force_custom_plan"),
            (Plans::Generic, "force_generic_plan"),
        ] {
            let db = Database::new(
                spenza::db::build_pool(&settings.database, 1, commits, plans).unwrap(),
                Duration::from_secs(10),
            );
            let session: Session = db
                .run(async |conn| {
                    diesel::sql_query(
                        "SELECT current_setting('plan_cache_mode') AS plan_cache_mode, \
                         current_setting('synchronous_commit') AS synchronous_commit",
                    )
                    .get_result(conn)
                    .await
                })
                .await
                .unwrap();
            let pool = format!("{commits:?} {plans:?}");
            assert_eq!(session.plan_cache_mode, plan_cache_mode, "{pool}");
            assert_eq!(session.synchronous_commit, synchronous_commit, "{pool}");
            db.close();
        }
    }
}
