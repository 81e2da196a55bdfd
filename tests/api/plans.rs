//! The batch statements of ingest and delivery run with generic plans (planned once per
//! connection, not once per run), which is only safe if those plans reach events, deliveries
//! and attempts by their keys whatever the tables hold. A generic plan is made without the
//! statement's values, from what the planner believes of the tables. So each statement is
//! planned on a new database never analysed (where PostgreSQL assumes a few pages: a fresh
//! deployment), and on one analysed with rows in it, and every way into those tables must be
//! an index searched for the batch's keys. (A table analysed while tiny makes every
//! plan look as cheap as any other; the pools replace their connections after
//! `SPENZA_DATABASE_REPLAN_AFTER` for that, which is checked last. A day's partition analysed
//! while empty looks emptier still: the relay's upkeep makes such partitions again, never
//! analysed, and the analysed database here has had its upkeep.)

use std::time::Duration;

use chrono::Utc;
use diesel::sql_types::{BigInt, Json, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use spenza::db::models::delivery::{self, AttemptRecord, Claim};
use spenza::db::models::event::{self, NewEvent};
use spenza::db::models::rate_limit;
use spenza::db::{Commits, Plans};
use spenza::domain::{DeliveryId, EventId, EventStatus, IngestToken, SubscriptionId};

/// The tables that grow with traffic: only ever reached by key.
const GROWING: [&str; 3] = ["events", "deliveries", "delivery_attempts"];

#[derive(diesel::QueryableByName)]
struct Prepared {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    statement: String,
    #[diesel(sql_type = BigInt)]
    parameters: i64,
    #[diesel(sql_type = BigInt)]
    generic_plans: i64,
    #[diesel(sql_type = BigInt)]
    custom_plans: i64,
}

#[derive(diesel::QueryableByName)]
struct Explained {
    #[diesel(sql_type = Json, column_name = "QUERY PLAN")]
    plan: serde_json::Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_delivery_statements_reach_growing_tables_by_key_even_planned_on_an_empty_database()
 {
    let database = crate::helpers::create_database().await;
    spenza::db::migrations::run(&database.url).await.unwrap();
    let settings = crate::helpers::test_settings(&database.url, "unused").database;
    let mut setup = AsyncPgConnection::establish(&database.url).await.unwrap();
    // A subscription for the rate limit's row to belong to; the growing tables stay empty.
    let subscription = add_subscription(&mut setup).await;

    for analysed in [false, true] {
        if analysed {
            // A database in use: thousands of events of the last seconds with their
            // deliveries, then analysed (the days ahead too, empty), then the relay's upkeep.
            setup
                .batch_execute(&format!(
                    "INSERT INTO events (id, source_id, body) \
                     SELECT delivery_id(first_id_at(now() - n * interval '1 millisecond')), \
                         sources.id, '\\x00' \
                     FROM sources, generate_series(1, 20000) AS n; \
                 INSERT INTO deliveries (id, event_id, subscription_id, next_attempt_at, status) \
                     SELECT delivery_id(events.id), events.id, '{}', now(), \
                         CASE WHEN random() < 0.9 THEN 'completed' ELSE 'pending' END \
                     FROM events; \
                 ANALYZE; \
                 SELECT ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, \
                     (now() AT TIME ZONE 'UTC')::date + 3)",
                    subscription.0
                ))
                .await
                .unwrap();
        }
        let when = if analysed {
            "analysed with 20,000 events"
        } else {
            "never analysed, empty"
        };
        // The pools as the relay builds them: a new connection each time, so the statements
        // are prepared, and planned, anew.
        let intake =
            spenza::db::build_pool(&settings, 1, Commits::Durable, Plans::Generic).unwrap();
        let mut conn = intake.get().await.unwrap();
        run_intake_statements(&mut conn).await;
        check_plans(&mut conn, &format!("intake, {when}"), 1).await;

        let deliveries =
            spenza::db::build_pool(&settings, 1, Commits::Asynchronous, Plans::Generic).unwrap();
        let mut conn = deliveries.get().await.unwrap();
        run_delivery_statements(&mut conn, subscription).await;
        check_plans(&mut conn, &format!("delivery, {when}"), 2).await;
    }
}

#[tokio::test]
async fn a_connection_with_generic_plans_is_replaced_after_its_lifetime_and_others_are_kept() {
    let database = crate::helpers::create_database().await;
    let mut settings = crate::helpers::test_settings(&database.url, "unused").database;
    settings.replan_after = Duration::from_secs(1);
    for (plans, replaced) in [(Plans::Generic, true), (Plans::Custom, false)] {
        let pool = spenza::db::build_pool(&settings, 1, Commits::Durable, plans).unwrap();
        let first = backend(&pool).await;
        let started = std::time::Instant::now();
        if replaced {
            crate::helpers::wait_until(Duration::from_secs(10), "a new connection", || {
                let pool = pool.clone();
                async move {
                    match backend(&pool).await {
                        pid if pid != first => Ok(()),
                        pid => Err(format!("still server process {pid}")),
                    }
                }
            })
            .await;
            assert!(
                started.elapsed() >= Duration::from_millis(900),
                "replaced before its lifetime"
            );
        } else {
            while started.elapsed() < Duration::from_secs(2) {
                assert_eq!(backend(&pool).await, first, "{plans:?}: replaced");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The server process of the connection the pool hands out.
async fn backend(pool: &spenza::db::DbPool) -> i32 {
    #[derive(diesel::QueryableByName)]
    struct Backend {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let mut conn = pool.get().await.unwrap();
    let found: Backend = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(&mut *conn)
        .await
        .unwrap();
    found.pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_and_the_record_search_only_the_partitions_of_the_days_their_batch_holds() {
    let database = crate::helpers::create_database().await;
    spenza::db::migrations::run(&database.url).await.unwrap();
    let settings = crate::helpers::test_settings(&database.url, "unused").database;
    let mut setup = AsyncPgConnection::establish(&database.url).await.unwrap();
    let subscription = add_subscription(&mut setup).await;
    // Ten days kept and three ahead, as a relay keeping ten days has them.
    setup
        .batch_execute(
            "SELECT ensure_partitions((now() AT TIME ZONE 'UTC')::date - 10, \
                 (now() AT TIME ZONE 'UTC')::date + 3)",
        )
        .await
        .unwrap();
    let deliveries =
        spenza::db::build_pool(&settings, 1, Commits::Asynchronous, Plans::Generic).unwrap();
    let mut conn = deliveries.get().await.unwrap();
    run_delivery_statements(&mut conn, subscription).await;
    let prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT name, statement, cardinality(parameter_types)::bigint AS parameters, \
             generic_plans, custom_plans \
         FROM pg_prepared_statements \
         WHERE statement LIKE 'WITH wanted AS%' OR statement LIKE 'WITH outcome AS%'",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    assert_eq!(prepared.len(), 2, "the claim and the record are prepared");
    for statement in &prepared {
        // For no keys at all: a plan that prunes as it starts is left with no partition.
        let nulls = vec!["NULL"; usize::try_from(statement.parameters).unwrap()].join(", ");
        let explained: Explained = diesel::sql_query(format!(
            "EXPLAIN (FORMAT JSON) EXECUTE \"{}\"({nulls})",
            statement.name
        ))
        .get_result(&mut *conn)
        .await
        .unwrap();
        let plan = &explained.plan[0]["Plan"];
        let mut searched = Vec::new();
        find_partitions_searched(plan, &mut searched);
        assert!(
            searched.is_empty(),
            "{}\nsearches partitions of days its batch has no key in: {searched:?}\n{plan:#}",
            statement.statement
        );
    }
}

/// Adds a workspace, a source and a subscription; the subscription's id.
async fn add_subscription(conn: &mut AsyncPgConnection) -> SubscriptionId {
    let subscription = SubscriptionId(uuid::Uuid::now_v7());
    conn.batch_execute(&format!(
        "INSERT INTO workspaces (id, name) VALUES ('{workspace}', 'w'); \
         INSERT INTO sources (id, workspace_id, name, ingest_token) \
             VALUES ('{source}', '{workspace}', 's', 'token'); \
         INSERT INTO subscriptions (id, workspace_id, name, target_url, signing_secret, source_id) \
             VALUES ('{subscription}', '{workspace}', 's', 'http://127.0.0.1:9/', 'secret', '{source}')",
        workspace = uuid::Uuid::now_v7(),
        source = uuid::Uuid::now_v7(),
        subscription = subscription.0,
    ))
    .await
    .unwrap();
    subscription
}

/// Collects the plan's scans of a day's partition of a growing table (`<table>_<yyyymmdd>`).
fn find_partitions_searched(node: &serde_json::Value, found: &mut Vec<String>) {
    let relation = node["Relation Name"].as_str().unwrap_or_default();
    let day = GROWING.iter().any(|table| {
        relation
            .strip_prefix(table)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|day| day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit()))
    });
    if day && node["Node Type"].as_str() != Some("ModifyTable") {
        found.push(relation.to_owned());
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        find_partitions_searched(child, found);
    }
}

/// Runs what an ingest batch runs, twice (a statement prepared once is planned once).
async fn run_intake_statements(conn: &mut AsyncPgConnection) {
    for _ in 0..2 {
        let event = NewEvent {
            token: IngestToken::generate(),
            routing_version: None,
            routes: vec![SubscriptionId(uuid::Uuid::now_v7())],
            id: EventId::new(),
            body: "{}".into(),
            payload: Some(serde_json::json!({})),
            content_type: None,
            headers: serde_json::json!({}),
            path: String::new(),
            query: String::new(),
            idempotency_key: Some("key".into()),
        };
        event::accept_all(conn, &[event]).await.unwrap();
    }
}

/// Runs each statement a delivery worker runs, twice.
async fn run_delivery_statements(conn: &mut AsyncPgConnection, subscription: SubscriptionId) {
    let id = DeliveryId(uuid::Uuid::now_v7());
    for _ in 0..2 {
        let claim = Claim {
            id,
            event: EventId::new(),
            retry_count: 0,
        };
        let timeout = Duration::from_secs(30);
        delivery::claim_for_delivery(conn, &[claim], timeout, timeout, false)
            .await
            .unwrap();
        let attempt = AttemptRecord {
            delivery: id,
            event: EventId::new(),
            subscription,
            started_at: Utc::now(),
            duration_ms: 1,
            status_code: Some(500),
            error: Some("HTTP 500".into()),
            response_body: None,
            status: EventStatus::Retrying,
            next_attempt_at: Some(Utc::now()),
            retry_count: 1,
        };
        delivery::record_attempts(conn, &[attempt], 5)
            .await
            .unwrap();
        delivery::hold(conn, &[id]).await.unwrap();
        delivery::release_leases(conn, &[id]).await.unwrap();
        delivery::wait_for_rate_limit(conn, id, Utc::now())
            .await
            .unwrap();
        let spacing = Duration::from_millis(200);
        let _ = rate_limit::take_send(conn, subscription, spacing)
            .await
            .unwrap();
        rate_limit::reserve_slot(conn, subscription, spacing)
            .await
            .unwrap();
    }
}

/// Checks every statement prepared on this connection: planned generically only, and, planned
/// so, reaching the growing tables by key alone.
async fn check_plans(conn: &mut AsyncPgConnection, pool: &str, at_least: usize) {
    let prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT name, statement, cardinality(parameter_types)::bigint AS parameters, \
             generic_plans, custom_plans \
         FROM pg_prepared_statements \
         WHERE NOT from_sql AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .load(conn)
    .await
    .unwrap();
    assert!(
        prepared.len() >= at_least,
        "{pool}: {} statements prepared, expected at least {at_least}",
        prepared.len()
    );
    for statement in &prepared {
        let what = format!("{pool}: {}", statement.statement);
        assert!(
            statement.custom_plans == 0 && statement.generic_plans >= 1,
            "{what}\nplanned {} times for its values and {} generically",
            statement.custom_plans,
            statement.generic_plans
        );
        let arguments = match usize::try_from(statement.parameters).unwrap() {
            0 => String::new(),
            n => format!("({})", vec!["NULL"; n].join(", ")),
        };
        let explained: Explained = diesel::sql_query(format!(
            "EXPLAIN (FORMAT JSON) EXECUTE \"{}\"{arguments}",
            statement.name
        ))
        .get_result(conn)
        .await
        .unwrap();
        let plan = &explained.plan[0]["Plan"];
        let mut unkeyed = Vec::new();
        find_unkeyed(plan, &mut unkeyed);
        assert!(
            unkeyed.is_empty(),
            "{what}\nreaches a growing table other than by key: {unkeyed:?}\n{plan:#}"
        );
    }
}

/// Collects the plan's nodes that read a growing table other than through its primary key or
/// an index searched for the batch's keys: a sequential scan, a walk over a whole (partial)
/// index, or a search of another index on something else (which may read all of it).
fn find_unkeyed(node: &serde_json::Value, found: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str().unwrap_or_default();
    let index = node["Index Name"].as_str().unwrap_or_default();
    // A growing table is partitioned by day: its partitions' names start with its own.
    let growing = GROWING
        .iter()
        .any(|t| relation.starts_with(t) || index.starts_with(t));
    let keyed = match kind {
        "Index Scan" | "Index Only Scan" | "Bitmap Index Scan" => {
            let condition = node["Index Cond"].as_str().unwrap_or_default();
            // Its primary key searched, or any index searched for the batch's keys (an array
            // of them: one search of the index per key).
            !growing
                || (!condition.is_empty() && index.ends_with("_pkey"))
                || condition.contains("= ANY ($")
        }
        // Their rows come from the scans under them, checked in turn.
        "Bitmap Heap Scan" | "ModifyTable" => true,
        _ => !growing,
    };
    if !keyed {
        found.push(format!(
            "{kind} on {}",
            if index.is_empty() { relation } else { index }
        ));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        find_unkeyed(child, found);
    }
}
