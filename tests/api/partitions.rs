//! The growing tables are partitioned by the UTC day of their ids: a database written before
//! the partitioning keeps every row and key, rows of a day without its partition wait in the
//! DEFAULT partition until the day is made, and idempotency keys hold across days.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::Value;

use crate::helpers::{
    OWNER_EMAIL, Script, SeededDatabase, Sink, TestApp, TestResources, migrate_up_to, spawn_app,
    spawn_app_on_old_database,
};

/// The previous version's last migration: the database the migration test starts from.
const PREVIOUS_VERSION: &str = "20261207000000";

/// A v7 id of a moment, as the relay makes them for events arriving then.
fn id_at(at: DateTime<Utc>) -> uuid::Uuid {
    let seconds = u64::try_from(at.timestamp()).unwrap();
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        seconds,
        at.timestamp_subsec_nanos(),
    ))
}

/// The UTC day an id's partition is named by: `20261203`.
fn day_of(id: uuid::Uuid) -> String {
    let (seconds, _) = id.get_timestamp().unwrap().to_unix();
    DateTime::from_timestamp(i64::try_from(seconds).unwrap(), 0)
        .unwrap()
        .format("%Y%m%d")
        .to_string()
}

#[derive(diesel::QueryableByName)]
struct Partition {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The partition of `table` that holds the row whose key is `id`.
async fn partition_of(conn: &mut AsyncPgConnection, table: &str, id: uuid::Uuid) -> String {
    let key = if table == "delivery_attempts" {
        "delivery_id"
    } else {
        "id"
    };
    diesel::sql_query(format!(
        "SELECT tableoid::regclass::text AS name FROM {table} WHERE {key} = '{id}'"
    ))
    .get_result::<Partition>(conn)
    .await
    .unwrap_or_else(|error| panic!("{table} {id}: {error}"))
    .name
}

/// POSTs `body` with an idempotency key to an ingest URL: its status and answer.
async fn ingest_keyed(app: &TestApp, ingest_url: &str, key: &str) -> (u16, Value) {
    let response = app
        .api
        .post(ingest_url)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(format!(r#"{{"key":"{key}"}}"#))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partitioning_keeps_every_event_attempt_and_key_of_a_database_written_before_it() {
    let resources = TestResources::new(spenza::config::DEFAULT_RETRY_SCHEDULE).await;
    let url = resources.database.url.clone();
    migrate_up_to(&url, PREVIOUS_VERSION);
    let sink = Sink::start(Script::Ok).await;
    let now = Utc::now();
    // The previous version's rows: events of the last days in every status, with attempts
    // and keys, one of them older than the keys are remembered; one is overdue, for the reaper.
    let (recent, ancient, failed, due) = (
        id_at(now - TimeDelta::days(3)),
        id_at(now - TimeDelta::days(9)),
        id_at(now - TimeDelta::days(2)),
        id_at(now - TimeDelta::hours(1)),
    );
    let (workspace, user, source, subscription) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let token = "t".repeat(43);
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO workspaces (id, name) VALUES ('{workspace}', 'w'); \
         INSERT INTO users (id, email, password_hash) VALUES ('{user}', '{OWNER_EMAIL}', 'x'); \
         INSERT INTO memberships (workspace_id, user_id, role) \
             VALUES ('{workspace}', '{user}', 'owner'); \
         INSERT INTO sources (id, workspace_id, name, ingest_token) \
             VALUES ('{source}', '{workspace}', 's', '{token}'); \
         INSERT INTO subscriptions (id, workspace_id, name, target_url, signing_secret, \
             source_id) VALUES ('{subscription}', '{workspace}', 's', '{target}', 'whsec_bmV3LXNlY3JldC1rZXktZm9yLXRlc3Rz', \
             '{source}'); \
         INSERT INTO events (id, source_id, body, payload, idempotency_key) VALUES \
             ('{recent}', '{source}', '\\x7b7d', '{{}}', 'key-3-days'), \
             ('{ancient}', '{source}', '\\x7b7d', '{{}}', 'key-9-days'), \
             ('{failed}', '{source}', '\\x7b7d', '{{}}', NULL), \
             ('{due}', '{source}', '\\x7b7d', '{{}}', NULL); \
         INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, \
             next_attempt_at, completed_at) \
             SELECT delivery_id(id), id, '{subscription}', \
                 CASE id WHEN '{failed}' THEN 'failed' WHEN '{due}' THEN 'pending' \
                     ELSE 'completed' END, \
                 CASE id WHEN '{failed}' THEN 3 WHEN '{due}' THEN 0 ELSE 1 END, \
                 CASE id WHEN '{due}' THEN now() - interval '1 hour' END, \
                 CASE WHEN id NOT IN ('{failed}', '{due}') THEN now() END \
             FROM events; \
         INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, \
             status_code, subscription_id) \
             SELECT deliveries.id, attempt, now(), 5, \
                 CASE status WHEN 'failed' THEN 500 ELSE 200 END, subscription_id \
             FROM deliveries, generate_series(1, deliveries.attempts) AS attempt;",
        target = sink.url,
    ))
    .await
    .unwrap();
    drop(conn);

    let app = spawn_app_on_old_database(resources).await;

    // Every row stayed where it was: the old tables are now the partitions of the ids before
    // the migration, read through the partitioned tables.
    let mut conn = app.db().await;
    for event in [recent, ancient, failed, due] {
        assert_eq!(
            partition_of(&mut conn, "events", event).await,
            "events_before"
        );
        let delivery: uuid::Uuid = app.delivery_of(&event.to_string()).await.parse().unwrap();
        assert_eq!(
            partition_of(&mut conn, "deliveries", delivery).await,
            "deliveries_before"
        );
    }
    for (event, status, attempts) in [(recent, "completed", 1), (ancient, "completed", 1)] {
        let found = app.event(&event.to_string()).await;
        assert_eq!(
            (found["status"].as_str(), found["attempts"].as_i64()),
            (Some(status), Some(attempts)),
            "{found}"
        );
    }
    let graveyard = app.get_json("/api/v1/events?status=failed").await;
    let buried: Vec<&str> = graveyard["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["id"].as_str().unwrap())
        .collect();
    assert_eq!(buried, vec![failed.to_string()], "{graveyard}");
    let logged = app
        .get_json(&format!("/api/v1/events/{failed}/attempts"))
        .await;
    assert_eq!(logged["data"].as_array().unwrap().len(), 3, "{logged}");

    // The overdue one is delivered, once.
    app.wait_for_status(&due.to_string(), "completed").await;
    assert_eq!(sink.wait_for_requests(1).await.len(), 1);

    // A key of three days ago is still a duplicate; one of nine days ago is past the window
    // keys are remembered for, and its repeat is a new event.
    let ingest_url = format!("{}/ingest/{token}", app.address);
    let (status, answer) = ingest_keyed(&app, &ingest_url, "key-3-days").await;
    assert_eq!(
        (status, answer["event_id"].as_str()),
        (200, Some(recent.to_string().as_str())),
        "{answer}"
    );
    let (status, answer) = ingest_keyed(&app, &ingest_url, "key-9-days").await;
    assert_eq!(status, 202, "{answer}");
    let fresh = answer["event_id"].as_str().unwrap().to_owned();
    assert_ne!(fresh, ancient.to_string());
    // New events go to the days' partitions.
    let id: uuid::Uuid = fresh.parse().unwrap();
    assert_eq!(
        partition_of(&mut conn, "events", id).await,
        format!("events_{}", day_of(id))
    );
    app.wait_for_status(&fresh, "completed").await;
    assert_eq!(sink.wait_for_requests(2).await.len(), 2);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_a_day_without_its_partition_wait_in_the_default_one_until_the_day_is_made() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let source = subscription["source_id"].as_str().unwrap();
    let subscription = subscription["id"].as_str().unwrap();
    // A day long past, which has no partition: its event, delivery and attempt go to the
    // DEFAULT partitions.
    let at = Utc::now() - TimeDelta::days(20);
    let event = id_at(at);
    let mut conn = app.db().await;
    conn.batch_execute(&format!(
        "INSERT INTO events (id, source_id, body, payload) \
             VALUES ('{event}', '{source}', '\\x7b7d', '{{}}'); \
         INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, completed_at) \
             VALUES (delivery_id('{event}'), '{event}', '{subscription}', 'completed', 1, now()); \
         INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, \
             status_code, subscription_id) \
             SELECT id, 1, now(), 5, 200, subscription_id FROM deliveries \
             WHERE event_id = '{event}';"
    ))
    .await
    .unwrap();
    let delivery: uuid::Uuid = app.delivery_of(&event.to_string()).await.parse().unwrap();
    let rows = [
        ("events", event),
        ("deliveries", delivery),
        ("delivery_attempts", delivery),
    ];
    for (table, id) in rows {
        assert_eq!(
            partition_of(&mut conn, table, id).await,
            format!("{table}_default")
        );
    }

    // Making the day moves them into its partitions, where they read as before.
    conn.batch_execute(&format!(
        "SELECT ensure_partitions('{day}', '{day}')",
        day = at.date_naive()
    ))
    .await
    .unwrap();
    let day = at.format("%Y%m%d");
    for (table, id) in rows {
        assert_eq!(
            partition_of(&mut conn, table, id).await,
            format!("{table}_{day}")
        );
    }
    let found = app.event(&event.to_string()).await;
    assert_eq!(
        (found["status"].as_str(), found["attempts"].as_i64()),
        (Some("completed"), Some(1)),
        "{found}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_stored_yesterday_is_a_duplicate_today() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let source = subscription["source_id"].as_str().unwrap();
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    let yesterday = Utc::now() - TimeDelta::days(1);
    let first = id_at(yesterday);
    let mut conn = app.db().await;
    conn.batch_execute(&format!(
        "SELECT ensure_partitions('{day}', '{day}'); \
         INSERT INTO events (id, source_id, body, payload, idempotency_key) \
             VALUES ('{first}', '{source}', '\\x7b7d', '{{}}', 'order-7');",
        day = yesterday.date_naive()
    ))
    .await
    .unwrap();
    assert_eq!(
        partition_of(&mut conn, "events", first).await,
        format!("events_{}", yesterday.format("%Y%m%d"))
    );

    let (status, answer) = ingest_keyed(&app, ingest_url, "order-7").await;
    assert_eq!(
        (
            status,
            answer["event_id"].as_str(),
            answer["duplicate"].as_bool()
        ),
        (200, Some(first.to_string().as_str()), Some(true)),
        "{answer}"
    );
    // A new key is stored, in today's partition, and repeats of it are duplicates.
    let (status, answer) = ingest_keyed(&app, ingest_url, "order-8").await;
    assert_eq!(status, 202, "{answer}");
    let stored: uuid::Uuid = answer["event_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        partition_of(&mut conn, "events", stored).await,
        format!("events_{}", day_of(stored))
    );
    let (status, answer) = ingest_keyed(&app, ingest_url, "order-8").await;
    assert_eq!(
        (status, answer["event_id"].as_str()),
        (200, Some(stored.to_string().as_str())),
        "{answer}"
    );
    assert_eq!(app.stored_events().await, 2);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_goes_and_gives_its_space_back_while_sources_and_subscriptions_are_being_read() {
    // A relay's database with a full day of delivered events three days ago, written before
    // the relay starts, so that its retention's first runs find the day due.
    let mut seeded = SeededDatabase::new().await;
    let url = seeded.resources.database.url.clone();
    let at = Utc::now() - TimeDelta::days(3);
    let day = at.format("%Y%m%d").to_string();
    seeded
        .conn
        .batch_execute(&format!(
            "SELECT ensure_partitions('{date}', '{date}')",
            date = at.date_naive()
        ))
        .await
        .unwrap();
    seeded.fill_day(at.date_naive()).await;

    // A long read of sources and subscriptions (a report, a dashboard page) holds them shared
    // throughout the compaction. Detaching and attaching lock them only against writes, so
    // the day goes meanwhile; only dropping the emptied tables waits for the read to end.
    let mut reader = AsyncPgConnection::establish(&url).await.unwrap();
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM sources; SELECT count(*) FROM subscriptions")
        .await
        .unwrap();
    let app = crate::helpers::spawn_app_in(seeded.resources, |settings| {
        settings.retention = std::time::Duration::from_secs(2 * 86_400);
        settings.failed_retention = std::time::Duration::from_secs(2 * 86_400);
        // Retention runs every tenth of the shortest retention: every 100 ms.
        settings.issue_retention = std::time::Duration::from_secs(1);
    })
    .await;

    #[derive(diesel::QueryableByName)]
    struct Expired {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }
    let expired_sql = "SELECT relname::text AS name, pg_relation_size(oid) AS bytes \
        FROM pg_class WHERE relkind = 'r' AND relname ~ '_(expired|expiring|kept)$' \
        ORDER BY relname";
    let left = crate::helpers::wait_until(
        std::time::Duration::from_secs(20),
        "the day to go, emptied",
        || async {
            let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
            let partitions: Vec<Partition> = diesel::sql_query(format!(
                "SELECT relname::text AS name FROM pg_class WHERE relname ~ '_{day}$'"
            ))
            .load(&mut conn)
            .await
            .unwrap();
            let expired: Vec<Expired> = diesel::sql_query(expired_sql)
                .load(&mut conn)
                .await
                .unwrap();
            if partitions.is_empty() && expired.len() == 3 && expired.iter().all(|t| t.bytes == 0) {
                Ok(expired)
            } else {
                Err(format!(
                    "partitions {:?}, detached {:?}",
                    partitions.iter().map(|p| &p.name).collect::<Vec<_>>(),
                    expired
                        .iter()
                        .map(|t| (&t.name, t.bytes))
                        .collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
    let names: Vec<&str> = left.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("deliveries_{day}_expired"),
            format!("delivery_attempts_{day}_expired"),
            format!("events_{day}_expired"),
        ]
    );

    // Once the read ends, the empty tables are dropped.
    reader.batch_execute("COMMIT").await.unwrap();
    crate::helpers::wait_until(
        std::time::Duration::from_secs(20),
        "the emptied tables to be dropped",
        || async {
            let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
            // Names only: a table dropped meanwhile has no size.
            let expired: Vec<Partition> = diesel::sql_query(
                "SELECT relname::text AS name FROM pg_class \
                 WHERE relname ~ '_(expired|expiring|kept)$'",
            )
            .load(&mut conn)
            .await
            .unwrap();
            if expired.is_empty() {
                Ok(())
            } else {
                Err(format!("{} left", expired.len()))
            }
        },
    )
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_days_partitions_are_vacuumed_once_and_the_days_still_changing_are_not() {
    // Partitions of the last four days, each with a delivered event, written before the
    // relay starts.
    let SeededDatabase {
        resources,
        mut conn,
        source,
        subscription,
        ..
    } = SeededDatabase::new().await;
    let url = resources.database.url.clone();
    conn.batch_execute(
        "SELECT ensure_partitions((now() AT TIME ZONE 'UTC')::date - 3, \
             (now() AT TIME ZONE 'UTC')::date)",
    )
    .await
    .unwrap();
    let days: Vec<(String, uuid::Uuid)> = (0..4)
        .map(|ago| {
            let at = Utc::now() - TimeDelta::days(ago);
            (at.format("%Y%m%d").to_string(), id_at(at))
        })
        .collect();
    for (_, event) in &days {
        conn.batch_execute(&format!(
            "INSERT INTO events (id, source_id, body) VALUES ('{event}', '{source}', '\\x7b7d'); \
             INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, \
                 completed_at) VALUES (delivery_id('{event}'), '{event}', '{subscription}', \
                 'completed', 1, now()); \
             INSERT INTO delivery_attempts (delivery_id, subscription_id, attempt, started_at, \
                 duration_ms) SELECT id, subscription_id, 1, now(), 5 FROM deliveries \
                 WHERE event_id = '{event}'"
        ))
        .await
        .unwrap();
    }

    let app = crate::helpers::spawn_app_in(resources, |settings| {
        // Retention runs every tenth of the shortest retention: every 100 ms.
        settings.issue_retention = std::time::Duration::from_secs(1);
    })
    .await;

    #[derive(diesel::QueryableByName)]
    struct Vacuumed {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        vacuums: i64,
    }
    let vacuumed_sql = "SELECT relname::text AS name, vacuum_count AS vacuums \
        FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL ORDER BY relname";
    // The days that ended a day ago or more: three and two days ago.
    let settled: Vec<String> = days[2..]
        .iter()
        .flat_map(|(day, _)| {
            ["deliveries", "delivery_attempts", "events"].map(|table| format!("{table}_{day}"))
        })
        .collect();
    let vacuumed = crate::helpers::wait_until(
        std::time::Duration::from_secs(20),
        "the settled days to be vacuumed",
        || async {
            let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
            let vacuumed: Vec<Vacuumed> = diesel::sql_query(vacuumed_sql)
                .load(&mut conn)
                .await
                .unwrap();
            let names: Vec<&String> = vacuumed.iter().map(|table| &table.name).collect();
            if settled.iter().all(|table| names.contains(&table)) {
                Ok(vacuumed)
            } else {
                Err(format!("{names:?}"))
            }
        },
    )
    .await;
    // Only those, and each once. (Whether a vacuum could mark their pages all visible, so that
    // an index alone answers for them, depends on the oldest transaction running on the server
    // at the time, which other tests' sessions may hold.)
    assert_eq!(
        vacuumed
            .iter()
            .map(|table| &table.name)
            .collect::<std::collections::BTreeSet<_>>(),
        settled.iter().collect(),
        "yesterday's and today's partitions still change"
    );
    assert!(
        vacuumed.iter().all(|table| table.vacuums == 1),
        "{:?}",
        vacuumed
            .iter()
            .map(|table| (&table.name, table.vacuums))
            .collect::<Vec<_>>()
    );
    app.shutdown().await;
}
