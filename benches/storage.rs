//! Storage benchmark: what keeping and removing events costs once there are many of them.
//!
//! It starts the release `spenza` binary (or `BENCH_SPENZA`'s) on a new database, makes one
//! source with one subscription through the API, then fills the database in SQL with
//! `STORAGE_EVENTS` synthetic events (10 million by default) spread evenly over the
//! `STORAGE_DAYS` whole UTC days before today (10), each with its delivery and its attempts: one
//! in fifty failed after four attempts, the rest delivered at the first. Their payloads are
//! Stripe-like: twenty event types, a hundred thousand customers. Then `VACUUM` (the relay
//! vacuums each day's partitions once the day is settled) and `ANALYZE` (these machines run
//! with autovacuum off, as some production databases do), a restart of the relay, and:
//!
//! 1. reads, `STORAGE_SAMPLES` times each (40), one after another, with their p50, p95 and
//!    slowest: the dashboard's events page (first, deep, and filtered by payload), the API's lists
//!    (all deliveries, the subscription's, a deep page, the graveyard), payload-containment filters
//!    (a customer's events, a hundred among millions; an event type, one in twenty), and the
//!    subscription's and the source's dashboard pages with their charts, and the lists of sources
//!    and of subscriptions with their counts of the last day;
//! 2. retention removing the oldest day: the relay restarted with a retention that ends an hour
//!    after that day's end, ingest at `STORAGE_RATE` events/s (200) throughout, until the day is gone or
//!    `STORAGE_REMOVAL_LIMIT` seconds (900) have passed: how long it took, ingest's p50 and p99
//!    during it against the same load just before and just after a restart with nothing for
//!    retention to do, and the database's size before and after, with no vacuum in between.
//!
//! `cargo bench --bench storage`. Filling 10 million events takes a while (it prints its
//! progress day by day); `STORAGE_EVENTS=1000000` gives a quick look. Loopback only; every loop
//! is bounded in count and in time. The database goes at the end, unless `STORAGE_KEEP` is set:
//! then it is kept, for a look at it afterwards, and its name printed.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::{DateTime, TimeDelta, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use common::{Relay, dashboard_session, ms, open_loop, percentile, report_sender, subscribe};

/// What to run, from the environment.
struct Plan {
    events: u64,
    days: u32,
    samples: usize,
    rate: u64,
    removal_limit: Duration,
}

impl Plan {
    fn from_env() -> Self {
        let get = common::setting;
        Plan {
            events: get("STORAGE_EVENTS", 10_000_000),
            days: u32::try_from(get("STORAGE_DAYS", 10)).unwrap_or(10).max(2),
            samples: get("STORAGE_SAMPLES", 40) as usize,
            rate: get("STORAGE_RATE", 200),
            removal_limit: Duration::from_secs(get("STORAGE_REMOVAL_LIMIT", 900)),
        }
    }
}

/// How long ingest runs in one go while retention works: between two looks at what is left.
const WINDOW: u64 = 10;

/// The smallest event id of an arrival at or after `at`, as a SQL literal: the arrival's
/// millisecond, then zeros (see `EventId::first_at`).
fn first_id_at(at: DateTime<Utc>) -> String {
    format!("'{:012x}00000000000000000000'::uuid", at.timestamp_millis())
}

/// Fills one day, starting at `start`, with `count` events of `source`, each with its delivery
/// to `subscription` and that delivery's attempts.
async fn fill_day(
    conn: &mut AsyncPgConnection,
    start: DateTime<Utc>,
    count: u64,
    source: &str,
    subscription: &str,
) {
    let (from, to) = (first_id_at(start), first_id_at(start + TimeDelta::days(1)));
    let start_ms = start.timestamp_millis();
    let sql = format!(
        r#"
        SET synchronous_commit = off;
        INSERT INTO events (id, source_id, body, payload, content_type, headers, received_at)
        SELECT id, '{source}', convert_to(payload::text, 'UTF8'), payload, 'application/json',
            '{{"content-type": "application/json", "user-agent": "Stripe/1.0"}}',
            to_timestamp(at / 1000.0)
        FROM (
            SELECT at,
                (lpad(to_hex(at), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid AS id,
                jsonb_build_object(
                    'id', 'evt_' || substr(h, 1, 24), 'object', 'event',
                    'api_version', '2024-06-20', 'created', at / 1000,
                    'type', (ARRAY['invoice.paid', 'invoice.created', 'invoice.finalized',
                        'invoice.payment_failed', 'customer.created', 'customer.updated',
                        'customer.deleted', 'charge.succeeded', 'charge.failed',
                        'charge.refunded', 'payment_intent.created', 'payment_intent.succeeded',
                        'payment_intent.canceled', 'checkout.session.completed',
                        'customer.subscription.created', 'customer.subscription.updated',
                        'customer.subscription.deleted', 'payout.paid', 'payout.failed',
                        'product.updated'])[1 + n % 20],
                    'livemode', false,
                    'data', jsonb_build_object('object', jsonb_build_object(
                        'id', 'in_' || substr(h, 8, 24), 'object', 'invoice',
                        'customer', 'cus_' || (n * 7919 % 100000),
                        'amount_due', n % 10000, 'currency', 'eur', 'status', 'paid',
                        'metadata', jsonb_build_object('order', 'A-' || n)))) AS payload
            FROM (SELECT n, {start_ms} + n * 86400000 / {count} AS at,
                    md5(n::text || '-' || {start_ms}) AS h
                FROM generate_series(0::bigint, {count} - 1) AS n) AS raw
        ) AS made;
        INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, retry_count,
            completed_at, last_error, counted_attempts, due_since)
        SELECT delivery_id(id), id, '{subscription}',
            CASE WHEN failed THEN 'failed' ELSE 'completed' END,
            CASE WHEN failed THEN 4 ELSE 1 END, CASE WHEN failed THEN 3 ELSE 0 END,
            received_at + CASE WHEN failed THEN interval '36 minutes' ELSE interval '40 ms' END,
            CASE WHEN failed THEN 'HTTP 500' END,
            CASE WHEN failed THEN 4 ELSE 1 END, received_at
        FROM (SELECT id, received_at, get_byte(uuid_send(id), 15) % 50 = 0 AS failed
            FROM events WHERE id >= {from} AND id < {to}) AS arrived;
        INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms,
            status_code, response_body, subscription_id)
        SELECT id, attempt, due_since + (attempt - 1) * interval '12 minutes', 25,
            CASE WHEN status = 'failed' THEN 500 ELSE 200 END, '', subscription_id
        FROM deliveries, generate_series(1, deliveries.attempts) AS attempt
        WHERE id >= {from} AND id < {to};
        "#
    );
    conn.batch_execute(&sql).await.expect("the day is filled");
}

#[derive(QueryableByName)]
struct Size {
    #[diesel(sql_type = BigInt)]
    bytes: i64,
}

/// The database's size and that of the tables that grow with events, in MiB.
async fn sizes(conn: &mut AsyncPgConnection) -> String {
    let mut parts = Vec::new();
    // A partitioned table's own size is nothing: its partitions' are summed.
    let table = |name: &str| {
        format!(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint AS bytes \
             FROM pg_partition_tree('{name}')"
        )
    };
    for (name, sql) in [
        (
            "database",
            "SELECT pg_database_size(current_database()) AS bytes".to_owned(),
        ),
        ("events", table("events")),
        ("deliveries", table("deliveries")),
        ("attempts", table("delivery_attempts")),
    ] {
        let size: Size = diesel::sql_query(&sql).get_result(conn).await.unwrap();
        parts.push(format!("{name} {} MiB", size.bytes / (1 << 20)));
    }
    parts.join(", ")
}

#[derive(QueryableByName)]
struct Left {
    #[diesel(sql_type = Bool)]
    any: bool,
}

/// Whether an event, a delivery or an attempt arrived before `until` is still stored.
async fn any_before(conn: &mut AsyncPgConnection, until: &str) -> bool {
    let left: Left = diesel::sql_query(format!(
        "SELECT EXISTS (SELECT FROM events WHERE id < {until}) \
             OR EXISTS (SELECT FROM deliveries WHERE id < {until}) \
             OR EXISTS (SELECT FROM delivery_attempts WHERE delivery_id < {until}) AS any"
    ))
    .get_result(conn)
    .await
    .unwrap();
    left.any
}

/// `samples` requests made by `request` (given the sample's number), one after another; prints
/// their p50, p95 and slowest, and how many did not answer 200.
async fn sample(
    name: &str,
    samples: usize,
    mut request: impl FnMut(usize) -> reqwest::RequestBuilder,
) {
    let mut took = Vec::with_capacity(samples);
    let mut failed = 0;
    for n in 0..samples {
        let started = Instant::now();
        let response = request(n).send().await;
        let ok = match response {
            Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
            Err(_) => false,
        };
        took.push(started.elapsed());
        failed += usize::from(!ok);
    }
    took.sort();
    println!(
        "  {name:<44} p50 {:>10}  p95 {:>10}  max {:>10}{}",
        ms(percentile(&took, 50.0)),
        ms(percentile(&took, 95.0)),
        ms(took.last().copied().unwrap_or_default()),
        if failed > 0 {
            format!("  !! {failed} not 200")
        } else {
            String::new()
        }
    );
}

/// Ingest latencies of open-loop windows, with the sender's schedule.
fn report_ingest(name: &str, runs: &[common::OpenLoop]) {
    let mut latencies: Vec<Duration> = runs
        .iter()
        .flat_map(|run| run.sent.iter().map(|sent| sent.latency))
        .collect();
    latencies.sort();
    let refused: usize = runs
        .iter()
        .flat_map(|run| &run.sent)
        .filter(|sent| sent.event_id.is_none())
        .count();
    println!(
        "  {name:<44} {} events, p50 {}, p99 {}, max {}, {refused} not accepted",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    for run in runs {
        if run.held_back > 0 || run.not_sent > 0 {
            report_sender(run);
        }
    }
}

#[tokio::main]
async fn main() {
    let plan = Plan::from_env();
    // Nothing expires while the database is filled and read.
    let mut relay = Relay::start(&[
        ("SPENZA_RETENTION", "3650d"),
        ("SPENZA_FAILED_RETENTION", "3650d"),
    ])
    .await;
    let key = relay.user_and_key();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|_body: web::Bytes| async {
            HttpResponse::NoContent().finish()
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let sink = server.handle();
    tokio::spawn(server);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let subscription = subscribe(&client, &relay.address, &key, "storage", &sink_url).await;
    let subscription_id = subscription["id"].as_str().unwrap().to_owned();
    let source_id = subscription["source_id"]
        .as_str()
        .expect("a build with sources")
        .to_owned();
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();

    let mut conn = AsyncPgConnection::establish(&relay.database_url())
        .await
        .unwrap();
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let first_day = today - TimeDelta::days(i64::from(plan.days));
    let per_day = plan.events / u64::from(plan.days);
    println!(
        "filling {} events over {} days from {first_day} ({per_day} a day), with their \
         deliveries and attempts",
        per_day * u64::from(plan.days),
        plan.days
    );
    let filling = Instant::now();
    // The days' partitions, as the relay would have made them ahead of each day.
    conn.batch_execute(&format!(
        "SELECT ensure_partitions('{}', '{}')",
        first_day.date_naive(),
        today.date_naive()
    ))
    .await
    .expect("the days' partitions are made");
    for day in 0..plan.days {
        let started = Instant::now();
        let start = first_day + TimeDelta::days(i64::from(day));
        fill_day(&mut conn, start, per_day, &source_id, &subscription_id).await;
        println!(
            "  {} filled in {:.0} s",
            start.date_naive(),
            started.elapsed().as_secs_f64()
        );
    }
    // Vacuumed, as the relay vacuums each day's partitions once the day is settled (here every
    // day but yesterday), and analysed; then the relay's upkeep: the days ahead, analysed
    // empty, are made again. Then a checkpoint, so that writing out the fill does not land in
    // the timed windows.
    conn.batch_execute("VACUUM").await.unwrap();
    conn.batch_execute(
        "ANALYZE; SELECT ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, \
             (now() AT TIME ZONE 'UTC')::date + 3); CHECKPOINT",
    )
    .await
    .unwrap();
    println!(
        "filled, vacuumed and analysed in {:.0} s; {}",
        filling.elapsed().as_secs_f64(),
        sizes(&mut conn).await
    );
    // Its connections plan their statements again, for the tables as they are now.
    relay.restart(&[]).await;

    println!("reads, {} each, one after another", plan.samples);
    let address = relay.address.clone();
    let (dashboard, cookie) = dashboard_session(&address).await;
    let page = |path: String| {
        dashboard
            .get(format!("{address}{path}"))
            .header("cookie", &cookie)
    };
    let api = |path: String| client.get(format!("{address}{path}")).bearer_auth(&key);
    // A page in the middle of the stored days: the deliveries older than one of its ids.
    let middle = first_day + TimeDelta::days(i64::from(plan.days / 2));
    let deep = format!("{:012x}7fff8000000000000000", middle.timestamp_millis());
    let customer = |n: usize| {
        let filter = serde_json::json!({"data": {"object": {"customer": format!("cus_{}", n * 7_919 % 100_000)}}});
        url_encode(&filter.to_string())
    };
    let invoice_paid = url_encode(r#"{"type":"invoice.paid"}"#);
    let subscription_events = format!("/api/v1/subscriptions/{subscription_id}/events");
    sample("dashboard: events", plan.samples, |_| {
        page("/events".into())
    })
    .await;
    sample("dashboard: events, a deep page", plan.samples, |_| {
        page(format!("/events?before={deep}"))
    })
    .await;
    sample("dashboard: events of a customer", plan.samples, |n| {
        page(format!("/events?payload={}", customer(n)))
    })
    .await;
    sample("dashboard: graveyard", plan.samples, |_| {
        page("/events?status=failed".into())
    })
    .await;
    sample("api: all deliveries", plan.samples, |_| {
        api("/api/v1/events?limit=50".into())
    })
    .await;
    sample("api: subscription's deliveries", plan.samples, |_| {
        api(format!("{subscription_events}?limit=50"))
    })
    .await;
    sample("api: subscription's, a deep page", plan.samples, |_| {
        api(format!("{subscription_events}?limit=50&before={deep}"))
    })
    .await;
    sample("api: graveyard", plan.samples, |_| {
        api(format!("{subscription_events}?limit=50&status=failed"))
    })
    .await;
    sample(
        "api: payload of a customer (1 in 100,000)",
        plan.samples,
        |n| {
            api(format!(
                "{subscription_events}?limit=50&payload={}",
                customer(n)
            ))
        },
    )
    .await;
    sample("api: payload of a type (1 in 20)", plan.samples, |_| {
        api(format!(
            "{subscription_events}?limit=50&payload={invoice_paid}"
        ))
    })
    .await;
    sample("dashboard: subscription page", plan.samples, |_| {
        page(format!("/subscriptions/{subscription_id}"))
    })
    .await;
    sample("dashboard: source page", plan.samples, |_| {
        page(format!("/sources/{source_id}"))
    })
    .await;
    sample("dashboard: sources", plan.samples, |_| {
        page("/sources".to_owned())
    })
    .await;
    sample("dashboard: subscriptions", plan.samples, |_| {
        page("/subscriptions".to_owned())
    })
    .await;

    println!(
        "retention: removing {} (ingest at {} events/s throughout)",
        first_day.date_naive(),
        plan.rate
    );
    let load = reqwest::Client::builder()
        .timeout(common::REQUEST_TIMEOUT)
        .build()
        .unwrap();
    // Ingest's first seconds after the reads plan the delivery statements and open the sink's
    // connections: a warm-up, left out, so that the windows compared start warm alike.
    open_loop(&load, &ingest_url, plan.rate, 2).await;
    let before = open_loop(&load, &ingest_url, plan.rate, 3 * WINDOW).await;
    report_ingest("ingest before", &[before]);
    // A control: the same restart with nothing for retention to do, so that what the window
    // after retention's restart shows can be told from what any restart costs.
    relay.restart(&[]).await;
    let restarted = open_loop(&load, &ingest_url, plan.rate, WINDOW).await;
    report_ingest("ingest after a restart alone", &[restarted]);
    let second_day = first_day + TimeDelta::days(1);
    println!("  before: {}", sizes(&mut conn).await);
    // Retention ends an hour into the second day: the first is past it, whole, failed
    // deliveries included (they ended up to 36 minutes after their events arrived).
    let retention = format!(
        "{}s",
        (Utc::now() - second_day - TimeDelta::hours(1))
            .num_seconds()
            .max(1)
    );
    let started = Instant::now();
    relay
        .restart(&[
            ("SPENZA_RETENTION", retention.as_str()),
            ("SPENZA_FAILED_RETENTION", retention.as_str()),
        ])
        .await;
    let until = first_id_at(second_day);
    let mut during = Vec::new();
    let gone = loop {
        during.push(open_loop(&load, &ingest_url, plan.rate, WINDOW).await);
        if !any_before(&mut conn, &until).await {
            break Some(started.elapsed());
        }
        if started.elapsed() > plan.removal_limit {
            break None;
        }
    };
    match gone {
        Some(took) => println!(
            "  the day was removed in {:.0} s (from the relay's restart)",
            took.as_secs_f64()
        ),
        None => {
            #[derive(QueryableByName)]
            struct Count {
                #[diesel(sql_type = BigInt)]
                count: i64,
            }
            let left: Count = diesel::sql_query(format!(
                "SELECT count(*) AS count FROM events WHERE id < {until}"
            ))
            .get_result(&mut conn)
            .await
            .unwrap();
            println!(
                "  !! the day was not removed in {} s: {} of its {per_day} events left",
                plan.removal_limit.as_secs(),
                left.count
            );
        }
    }
    report_ingest("ingest while retention ran", &during);
    println!("  after (no vacuum): {}", sizes(&mut conn).await);

    drop(conn);
    sink.stop(false).await;
    if std::env::var_os("STORAGE_KEEP").is_some() {
        println!("kept: the database {}", relay.database);
        relay.keep().await;
    } else {
        relay.stop().await;
    }
}

/// Percent-encodes a query parameter's value.
fn url_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
