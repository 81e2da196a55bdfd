//! Fail-safe delivery: retries through the wait queues, the graveyard, replay, the breaker.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Script, Sink, TestApp, spawn_app, spawn_app_with, wait_until};

async fn attempts(app: &TestApp, id: &str) -> Vec<Value> {
    let body: Value = app.get_json(&format!("/api/v1/events/{id}/attempts")).await;
    body["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_twice_gets_the_event_on_the_third_attempt() {
    let app = spawn_app_with(|s| s.retry_schedule = "200ms,400ms,800ms".parse().unwrap()).await;
    let sink = Sink::start(Script::FailFirst(2, 500)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), r#"{"n":1}"#)
        .await;

    let event = app.wait_for_status(&id, "completed").await;

    assert_eq!(event["attempts"], 3);
    let recorded = attempts(&app, &id).await;
    let numbers: Vec<i64> = recorded
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    let codes: Vec<i64> = recorded
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(codes, [500, 500, 200]);
    let received = sink.received();
    assert_eq!(received.len(), 3);
    assert!(
        received
            .iter()
            .all(|r| r.header("webhook-id") == Some(id.as_str()) && r.body == br#"{"n":1}"#)
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_always_fails_sends_the_event_to_the_graveyard_and_replay_delivers_it() {
    let app = spawn_app_with(|s| s.retry_schedule = "100ms,200ms".parse().unwrap()).await;
    let sink = Sink::start(Script::Always(500)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let sub = subscription["id"].as_str().unwrap().to_owned();
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    let first = app.accept(&ingest_url, r#"{"n":1}"#).await;
    let second = app.accept(&ingest_url, r#"{"n":2}"#).await;

    for id in [&first, &second] {
        let event = app.wait_for_status(id, "failed").await;
        assert_eq!(event["attempts"], 3, "one attempt and two retries");
        assert_eq!(event["last_error"], "HTTP 500 Internal Server Error");
    }
    let graveyard: Value = app.get_json("/api/v1/events?status=failed").await;
    let buried: Vec<&str> = graveyard["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(buried, [second.as_str(), first.as_str()]);
    let per_subscription: Value = app
        .get_json(&format!("/api/v1/subscriptions/{sub}/events?status=failed"))
        .await;
    assert_eq!(per_subscription["data"].as_array().unwrap().len(), 2);
    // Exactly 1 + retries attempts, and none after: still six once more than the longest
    // wait of the schedule has passed (an absence, so there is nothing to await but time).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sink.received().len(), 6);

    sink.set_script(Script::Ok);
    let replayed = app
        .send_json(
            Method::POST,
            &format!("/api/v1/events/{first}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(replayed.status(), 202);
    let event = app.wait_for_status(&first, "completed").await;
    assert_eq!(event["attempts"], 4);
    let last = sink.received().last().cloned().unwrap();
    assert_eq!(last.header("webhook-id"), Some(first.as_str()));
    assert_eq!(last.body, br#"{"n":1}"#);

    let bulk: Value = app
        .send_json(
            Method::POST,
            &format!("/api/v1/subscriptions/{sub}/replay"),
            &json!({ "status": "failed" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["replayed"], 1);
    app.wait_for_status(&second, "completed").await;
    let again = app
        .send_json(
            Method::POST,
            &format!("/api/v1/events/{second}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(again.status(), 202, "a completed event can be replayed too");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replay_takes_only_events_received_in_its_time_range() {
    let app = spawn_app_with(|s| s.retry_schedule = "".parse().unwrap()).await;
    let sink = Sink::start(Script::Always(500)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let sub = subscription["id"].as_str().unwrap().to_owned();
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    let older = app.accept(&ingest_url, r#"{"n":1}"#).await;
    let older_at = app.wait_for_status(&older, "failed").await["received_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let newer = app.accept(&ingest_url, r#"{"n":2}"#).await;
    let newer_at = app.wait_for_status(&newer, "failed").await["received_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let parse = |at: &str| at.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(parse(&older_at) < parse(&newer_at));

    sink.set_script(Script::Ok);
    let range = json!({ "status": "failed", "since": older_at, "until": newer_at });
    let replayed: Value = app
        .send_json(
            Method::POST,
            &format!("/api/v1/subscriptions/{sub}/replay"),
            &range,
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(
        replayed["replayed"], 1,
        "since is inclusive, until exclusive"
    );
    app.wait_for_status(&older, "completed").await;
    assert_eq!(app.event(&newer).await["status"], "failed");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_refuses_events_still_in_flight_and_other_users_events() {
    let app = spawn_app_with(|s| s.retry_schedule = "1h".parse().unwrap()).await;
    let sink = Sink::start(Script::Always(500)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;
    app.wait_for_status(&id, "retrying").await;

    assert_eq!(
        app.send_json(
            Method::POST,
            &format!("/api/v1/events/{id}/replay"),
            &json!({})
        )
        .await
        .status(),
        409
    );
    let intruder = app.another_user("intruder@example.com").await;
    let theirs = app
        .api
        .post(format!("{}/api/v1/events/{id}/replay", app.address))
        .bearer_auth(&intruder)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    let sub = subscription["id"].as_str().unwrap();
    let bulk = app
        .api
        .post(format!("{}/api/v1/subscriptions/{sub}/replay", app.address))
        .bearer_auth(&intruder)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 404);
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_picks_the_first_level_at_least_that_long() {
    let app = spawn_app_with(|s| s.retry_schedule = "100ms,30m,2h".parse().unwrap()).await;
    let sink = Sink::start(Script::RetryAfter(429, 600)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;

    let event = app.wait_for_status(&id, "retrying").await;

    let first = &attempts(&app, &id).await[0];
    let started: chrono::DateTime<chrono::Utc> =
        first["started_at"].as_str().unwrap().parse().unwrap();
    let due: chrono::DateTime<chrono::Utc> =
        event["next_attempt_at"].as_str().unwrap().parse().unwrap();
    let wait = (due - started).num_seconds();
    // Asked for 10 minutes: the first level at least that long is 30 minutes, not 100 ms.
    assert!(
        (1790..=1810).contains(&wait),
        "next attempt {wait} s after the first"
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_holds_events_until_the_subscription_is_re_enabled() {
    let app = spawn_app_with(|s| {
        s.retry_schedule = "".parse().unwrap();
        s.breaker_threshold = 3;
    })
    .await;
    let sink = Sink::start(Script::Always(503)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let sub = subscription["id"].as_str().unwrap().to_owned();
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    for n in 0..3 {
        let id = app.accept(&ingest_url, &format!(r#"{{"n":{n}}}"#)).await;
        app.wait_for_status(&id, "failed").await;
    }

    let opened: Value = app.get_json(&format!("/api/v1/subscriptions/{sub}")).await;
    assert_eq!(opened["is_active"], false);
    assert!(
        opened["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("3 consecutive failed attempts"),
        "{opened}"
    );

    sink.set_script(Script::Ok);
    let mut held = Vec::new();
    for n in 0..5 {
        held.push(app.accept(&ingest_url, &format!(r#"{{"held":{n}}}"#)).await);
    }
    // Held, not delivered: accepted and stored; once a worker has taken each one it is pending
    // with no due time, and the sink has seen nothing new.
    wait_until(
        Duration::from_secs(10),
        "the new events to be held",
        || async {
            let pending: Value = app
                .get_json(&format!(
                    "/api/v1/subscriptions/{sub}/events?status=pending"
                ))
                .await;
            let held = pending["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["next_attempt_at"].is_null())
                .count();
            if held == 5 {
                Ok(())
            } else {
                Err(format!("{held} held: {pending}"))
            }
        },
    )
    .await;
    assert_eq!(sink.received().len(), 3);

    let reenabled: Value = app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/subscriptions/{sub}"),
            &json!({ "is_active": true }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reenabled["is_active"], true);
    assert_eq!(reenabled["disabled_reason"], Value::Null);
    for id in &held {
        app.wait_for_status(id, "completed").await;
    }
    assert_eq!(sink.unique_ids().len(), 8);
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_resets_the_breaker_count() {
    let app = spawn_app_with(|s| {
        s.retry_schedule = "".parse().unwrap();
        s.breaker_threshold = 2;
    })
    .await;
    let sink = Sink::start(Script::FailFirst(1, 500)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    let failed = app.accept(&ingest_url, "{}").await;
    app.wait_for_status(&failed, "failed").await;
    let delivered = app.accept(&ingest_url, "{}").await;
    app.wait_for_status(&delivered, "completed").await;
    sink.set_script(Script::Always(500));
    let failed_again = app.accept(&ingest_url, "{}").await;
    app.wait_for_status(&failed_again, "failed").await;

    let sub: Value = app
        .get_json(&format!(
            "/api/v1/subscriptions/{}",
            subscription["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(sub["is_active"], true, "two failures, but not consecutive");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_delivers_held_events_of_a_subscription_enabled_behind_the_apis_back() {
    let app = spawn_app_with(|s| s.reaper_interval = Duration::from_millis(200)).await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let sub = subscription["id"].as_str().unwrap().to_owned();
    let disable = json!({ "is_active": false });
    let path = format!("/api/v1/subscriptions/{sub}");
    assert_eq!(
        app.send_json(Method::PATCH, &path, &disable).await.status(),
        200
    );
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;
    wait_until(Duration::from_secs(10), "the event to be held", || async {
        let event = app.event(&id).await;
        if event["next_attempt_at"].is_null() {
            Ok(())
        } else {
            Err(event.to_string())
        }
    })
    .await;

    // Re-enabled without the API's release (as if that step had failed): the reaper still
    // finds the held event.
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use spenza::db::schema::subscriptions;
        diesel::update(subscriptions::table)
            .set(subscriptions::is_active.eq(true))
            .execute(&mut app.db().await)
            .await
            .unwrap();
    }

    app.wait_for_status(&id, "completed").await;
    assert_eq!(sink.received().len(), 1);
    sink.stop().await;
    app.shutdown().await;
}

/// An app without retries, a sink, and a subscription to it with `failed` deliveries in its
/// graveyard, written straight to the database; the subscription's id.
async fn graveyard(failed: usize) -> (TestApp, Sink, uuid::Uuid) {
    use diesel::sql_types::{Array, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;
    let app = spawn_app_with(|s| s.retry_schedule = "".parse().unwrap()).await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let sub: uuid::Uuid = subscription["id"].as_str().unwrap().parse().unwrap();
    let source: uuid::Uuid = subscription["source_id"].as_str().unwrap().parse().unwrap();
    let ids: Vec<uuid::Uuid> = (0..failed)
        .map(|_| spenza::domain::EventId::new().0)
        .collect();
    diesel::sql_query(
        "WITH stored AS (INSERT INTO events (id, source_id, body) \
             SELECT id, $3, '\\x7b7d' FROM unnest($1) AS id RETURNING id) \
         INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, last_error) \
         SELECT id, id, $2, 'failed', 1, 'scripted 500' FROM stored",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<SqlUuid, _>(sub)
    .bind::<SqlUuid, _>(source)
    .execute(&mut app.db().await)
    .await
    .unwrap();
    (app, sink, sub)
}

/// The deliveries still in the graveyard.
const STILL_FAILED: &str = "SELECT count(*) AS count FROM deliveries WHERE status = 'failed'";

/// The count a query answers, in a column named `count`.
async fn count(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .await
        .unwrap()
        .count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_replay_answers_at_once_and_queues_its_events_in_the_background() {
    const FAILED: usize = 20_000;
    // A graveyard of 20,000, written straight to the database: forty batches.
    let (app, sink, sub) = graveyard(FAILED).await;
    let mut conn = app.db().await;

    let replayed: Value = app
        .send_json(
            Method::POST,
            &format!("/api/v1/subscriptions/{sub}/replay"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    // The answer counts them all and comes before the work: most are still in the graveyard.
    let left = count(&mut conn, STILL_FAILED).await;
    assert_eq!(replayed["replayed"], FAILED);
    assert!(
        left > (FAILED / 2) as i64,
        "the request waited for the replay: {left} left when it answered"
    );
    // Then every one of them is queued, batch after batch.
    wait_until(Duration::from_secs(60), "every event queued", || async {
        match count(&mut app.db().await, STILL_FAILED).await {
            0 => Ok(()),
            left => Err(format!("{left} still failed")),
        }
    })
    .await;
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_replay_waits_for_graveyard_rows_another_transaction_holds_rather_than_pass_them_by()
{
    use diesel_async::{AsyncConnection, RunQueryDsl};
    const FAILED: usize = 1_200;
    let (app, sink, sub) = graveyard(FAILED).await;
    // Another transaction holds the middle of the graveyard, as the issue scan does while it
    // counts it.
    let mut holder = app.db().await;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
    let held = tokio::spawn(async move {
        holder
            .transaction(async |conn| {
                diesel::sql_query(
                    "SELECT id FROM deliveries WHERE status = 'failed' \
                     ORDER BY id OFFSET 500 LIMIT 100 FOR UPDATE",
                )
                .execute(conn)
                .await?;
                locked.send(()).unwrap();
                let _ = released.await;
                Ok::<_, diesel::result::Error>(())
            })
            .await
            .unwrap();
    });
    is_locked.await.unwrap();
    let replayed = app
        .send_json(
            Method::POST,
            &format!("/api/v1/subscriptions/{sub}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(replayed.status(), 202);
    // The replay reaches the held rows and waits for them.
    wait_until(
        Duration::from_secs(10),
        "the replay to wait for the held rows",
        || async {
            match count(
                &mut app.db().await,
                "SELECT count(*) AS count FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE deliveries SET status%'",
            )
            .await
            {
                0 => Err("not waiting".to_owned()),
                _ => Ok(()),
            }
        },
    )
    .await;
    release.send(()).unwrap();
    held.await.unwrap();
    wait_until(Duration::from_secs(60), "every event replayed", || async {
        match count(&mut app.db().await, STILL_FAILED).await {
            0 => Ok(()),
            left => Err(format!("{left} still failed")),
        }
    })
    .await;
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_replay_of_delivered_events_delivers_each_once_more() {
    use diesel::sql_types::{Array, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;
    const DELIVERED: usize = 1_200;
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let sub: uuid::Uuid = subscription["id"].as_str().unwrap().parse().unwrap();
    let source: uuid::Uuid = subscription["source_id"].as_str().unwrap().parse().unwrap();
    // Delivered before, written straight to the database: three batches, each delivered again
    // (so back to completed, the status replayed) before the next is taken.
    let ids: Vec<uuid::Uuid> = (0..DELIVERED)
        .map(|_| spenza::domain::EventId::new().0)
        .collect();
    let mut conn = app.db().await;
    diesel::sql_query(
        "WITH stored AS (INSERT INTO events (id, source_id, body) \
             SELECT id, $3, '\\x7b7d' FROM unnest($1) AS id RETURNING id) \
         INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, completed_at) \
         SELECT id, id, $2, 'completed', 1, now() FROM stored",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<SqlUuid, _>(sub)
    .bind::<SqlUuid, _>(source)
    .execute(&mut conn)
    .await
    .unwrap();

    let replayed: Value = app
        .send_json(
            Method::POST,
            &format!("/api/v1/subscriptions/{sub}/replay"),
            &json!({ "status": "completed" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replayed["replayed"], DELIVERED);
    wait_until(
        Duration::from_secs(60),
        "every event delivered again",
        || async {
            let delivered = sink.unique_ids().len();
            if delivered == DELIVERED {
                Ok(())
            } else {
                Err(format!("{delivered} delivered"))
            }
        },
    )
    .await;
    for id in ids.iter().step_by(100) {
        app.wait_for_status(&id.to_string(), "completed").await;
    }
    assert_eq!(sink.received().len(), DELIVERED, "each event once more");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_now_makes_the_waiting_attempt_at_once_in_place_of_the_scheduled_one() {
    let app = spawn_app_with(|s| s.retry_schedule = "3s,3s".parse().unwrap()).await;
    let sink = Sink::start(Script::Always(500)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), r#"{"n":1}"#)
        .await;
    app.wait_for_status(&id, "retrying").await;
    let delivery = app.delivery_of(&id).await;
    // The event's page offers it beside the waiting delivery.
    let page = app
        .owner_dashboard()
        .await
        .page(&format!("/events/{id}"))
        .await;
    assert!(
        page.contains(&format!("action=\"/deliveries/{delivery}/retry\"")),
        "{page}"
    );
    let retry = format!("/api/v1/deliveries/{delivery}/retry");
    // Two clicks at once: one attempt.
    let (first, second) = tokio::join!(
        app.send_json(Method::POST, &retry, &json!(null)),
        app.send_json(Method::POST, &retry, &json!(null)),
    );
    let statuses = [first.status().as_u16(), second.status().as_u16()];
    assert!(statuses.contains(&202), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 409),
        "{statuses:?}"
    );
    let failed = app.wait_for_status(&id, "failed").await;
    // The first attempt, the one made now, and the last retry: the retry that was scheduled
    // when the button was pressed was dropped, and the budget was not reset.
    assert_eq!(failed["attempts"], 3, "{failed}");
    let received = sink.received();
    assert_eq!(received.len(), 3);
    assert!(
        received[1].at - received[0].at < Duration::from_secs(2),
        "the second attempt came at once, not after the 3 s the schedule waits"
    );
    // An ended delivery has no retry to make now: replay it instead.
    let ended = app.send_json(Method::POST, &retry, &json!(null)).await;
    assert_eq!(ended.status(), 409);
    // The retry is in the audit log.
    let log = app.get_json("/api/v1/audit-log?object_type=delivery").await;
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line["action"] == "delivery.retried" && line["object_id"] == delivery),
        "{log}"
    );
    sink.stop().await;
    app.shutdown().await;
}
