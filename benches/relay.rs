//! Load benchmark: starts the release `spenza` binary against a fresh database and queue prefix,
//! runs a local sink, and measures ingest and end-to-end latency open-loop at a fixed rate, then
//! throughput at full speed, plus the relay's peak memory. Loopback only; every loop is bounded
//! in count and in time.
//!
//! `cargo bench --bench relay` (settings: BENCH_RATE, BENCH_SECONDS, BENCH_EVENTS,
//! BENCH_CONCURRENCY, and BENCH_LIVE=1 to keep the subscription's dashboard page open on the
//! live WebSocket throughout; see `Plan::from_env`).

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::StreamExt;
use spenza::config::{DEFAULT_RETRY_SCHEDULE, DatabaseSettings, QueueKind};
use spenza::domain::RetrySchedule;
use spenza::queue::Topology;

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// A Stripe-like event of about 700 bytes.
const BODY: &str = r#"{"id":"evt_1Q2w3E4r5T6y7U8i","object":"event","api_version":"2024-06-20","created":1732800000,"type":"invoice.paid","livemode":false,"pending_webhooks":1,"request":{"id":"req_a1B2c3D4e5F6","idempotency_key":"5f1c8d2e-7a3b-4c9d-8e0f-1a2b3c4d5e6f"},"data":{"object":{"id":"in_1Q2w3E4r5T6y7U8i","object":"invoice","amount_due":4200,"amount_paid":4200,"currency":"eur","customer":"cus_Q1w2E3r4T5y6","customer_email":"ada@example.com","lines":{"object":"list","data":[{"id":"il_1","amount":4200,"description":"Pro plan (monthly)","quantity":1}],"has_more":false},"status":"paid","subscription":"sub_1Q2w3E4r5T6y7U8i","metadata":{"order":"A-1042","region":"eu-west"}}}}"#;

/// What to run, from the environment.
struct Plan {
    rate: u64,
    seconds: u64,
    events: usize,
    concurrency: usize,
    /// Whether a dashboard page follows the subscription live while the load runs.
    live: bool,
}

impl Plan {
    fn from_env() -> Self {
        let get = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Plan {
            rate: get("BENCH_RATE", 500),
            seconds: get("BENCH_SECONDS", 30),
            events: get("BENCH_EVENTS", 30_000) as usize,
            concurrency: get("BENCH_CONCURRENCY", 64) as usize,
            live: get("BENCH_LIVE", 0) == 1,
        }
    }
}

/// Arrival time of each event id at the sink.
#[derive(Default)]
struct Arrivals {
    at: Mutex<HashMap<String, Instant>>,
    requests: AtomicUsize,
}

async fn sink(request: HttpRequest, arrivals: web::Data<Arrivals>) -> HttpResponse {
    let now = Instant::now();
    arrivals.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(id) = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
    {
        arrivals
            .at
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_insert(now);
    }
    HttpResponse::NoContent().finish()
}

/// One ingest request: when it was due, how long it took, the event id if accepted.
struct Sent {
    due: Instant,
    latency: Duration,
    event_id: Option<String>,
}

async fn send(client: &reqwest::Client, url: &str, due: Instant) -> Sent {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await;
    let event_id = match response {
        Ok(response) if response.status() == 202 => response
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["event_id"].as_str().map(str::to_owned)),
        _ => None,
    };
    Sent {
        due,
        latency: due.elapsed(),
        event_id,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Peak and current resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Waits (bounded) until every accepted event has reached the sink; returns the last arrival.
async fn wait_for_deliveries(arrivals: &Arrivals, sent: &[Sent]) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (missing, last) = {
            let at = arrivals.at.lock().unwrap();
            let mut missing = 0;
            let mut last: Option<Instant> = None;
            for id in sent.iter().filter_map(|s| s.event_id.as_ref()) {
                match at.get(id) {
                    Some(t) => last = Some(last.map_or(*t, |l| l.max(*t))),
                    None => missing += 1,
                }
            }
            (missing, last)
        };
        if missing == 0 {
            return last;
        }
        if Instant::now() > deadline {
            println!("  !! {missing} accepted events not delivered within 120 s");
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints what a phase measured.
fn report(
    name: &str,
    started: Instant,
    sent: &[Sent],
    arrivals: &Arrivals,
    finished: Option<Instant>,
) {
    let accepted: Vec<&Sent> = sent.iter().filter(|s| s.event_id.is_some()).collect();
    let ingest_done = sent
        .iter()
        .map(|s| s.due + s.latency)
        .max()
        .unwrap_or(started);
    let ingest_secs = ingest_done.duration_since(started).as_secs_f64();
    let mut ingest: Vec<Duration> = accepted.iter().map(|s| s.latency).collect();
    ingest.sort();
    let at = arrivals.at.lock().unwrap();
    let mut e2e: Vec<Duration> = accepted
        .iter()
        .filter_map(|s| {
            at.get(s.event_id.as_ref()?)
                .map(|t| t.duration_since(s.due))
        })
        .collect();
    e2e.sort();
    let delivered = e2e.len();
    let delivery_secs = finished.map_or(f64::NAN, |f| f.duration_since(started).as_secs_f64());
    println!("{name}");
    println!(
        "  sent {} / accepted {} / delivered {delivered}",
        sent.len(),
        accepted.len()
    );
    println!(
        "  ingest throughput   {:.0} events/s",
        accepted.len() as f64 / ingest_secs
    );
    println!(
        "  ingest latency      p50 {}  p99 {}",
        ms(percentile(&ingest, 50.0)),
        ms(percentile(&ingest, 99.0))
    );
    println!(
        "  end-to-end latency  p50 {}  p99 {}",
        ms(percentile(&e2e, 50.0)),
        ms(percentile(&e2e, 99.0))
    );
    println!(
        "  deliveries          {:.0} events/s (first ingest to last delivery)",
        delivered as f64 / delivery_secs
    );
}

struct Relay {
    child: Child,
    database: String,
    prefix: String,
}

impl Relay {
    async fn start() -> (Relay, String) {
        use diesel_async::RunQueryDsl;
        let database = format!("spenza_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&format!("{POSTGRES}/postgres"))
            .await
            .expect("PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let mut child = Command::new(env!("CARGO_BIN_EXE_spenza"))
            .arg("serve")
            .env("SPENZA_DATABASE_URL", format!("{POSTGRES}/{database}"))
            .env("SPENZA_AMQP_URL", AMQP)
            .env("SPENZA_AMQP_PREFIX", &prefix)
            .env("SPENZA_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE)
            .env("SPENZA_ALLOWED_TARGET_NETS", "127.0.0.0/8")
            .env("SPENZA_BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the relay starts");
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{address}/readyz")).send().await
                && r.status() == 200
            {
                return (
                    Relay {
                        child,
                        database,
                        prefix,
                    },
                    address,
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the relay did not become ready in 30 s");
    }

    fn database_url(&self) -> String {
        format!("{POSTGRES}/{}", self.database)
    }

    async fn stop(mut self) {
        use diesel_async::RunQueryDsl;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let mut admin = AsyncPgConnection::establish(&format!("{POSTGRES}/postgres"))
            .await
            .unwrap();
        let _ = diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        ))
        .execute(&mut admin)
        .await;
        let prefix = self.prefix.clone();
        tokio::task::spawn_blocking(move || {
            if let Ok(mut connection) = amiquip::Connection::insecure_open(AMQP) {
                if let Ok(channel) = connection.open_channel(None) {
                    let schedule: RetrySchedule = DEFAULT_RETRY_SCHEDULE.parse().unwrap();
                    let topology = Topology::new(&prefix, QueueKind::Quorum, schedule.delays());
                    let _ = topology.delete(&channel);
                }
                let _ = connection.close();
            }
        })
        .await
        .unwrap();
    }
}

/// A dashboard page following a subscription live: what it has read so far.
struct LivePage {
    reader: tokio::task::JoinHandle<()>,
    messages: std::sync::Arc<AtomicUsize>,
    bytes: std::sync::Arc<AtomicUsize>,
}

/// Logs in as the benchmark's user and opens the subscription's page's WebSocket, reading every
/// message as a browser would.
async fn open_live_page(address: &str, subscription: &str) -> LivePage {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client
        .post(format!("{address}/login"))
        .form(&[
            ("email", "bench@example.com"),
            ("password", "benchmark password"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let url = format!(
        "{}/ws?subscription={subscription}",
        address.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", address.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let messages = std::sync::Arc::new(AtomicUsize::new(0));
    let bytes = std::sync::Arc::new(AtomicUsize::new(0));
    let (seen, read) = (messages.clone(), bytes.clone());
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            seen.fetch_add(1, Ordering::Relaxed);
            read.fetch_add(message.len(), Ordering::Relaxed);
        }
    });
    LivePage {
        reader,
        messages,
        bytes,
    }
}

#[tokio::main]
async fn main() {
    let plan = Plan::from_env();
    let (relay, address) = Relay::start().await;
    let pid = relay.child.id();
    let database = DatabaseSettings {
        url: relay.database_url().into(),
        pool_size: 1,
        timeout: Duration::from_secs(5),
    };
    spenza::admin::create_user(&database, "bench@example.com", "benchmark password")
        .await
        .unwrap();
    let key = spenza::admin::create_api_key(&database, "bench@example.com", "bench")
        .await
        .unwrap();

    let arrivals = web::Data::new(Arrivals::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let shared = arrivals.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .default_service(web::to(sink))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let sink_handle = server.handle();
    tokio::spawn(server);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .build()
        .unwrap();
    let subscription: serde_json::Value = client
        .post(format!("{address}/api/v1/subscriptions"))
        .bearer_auth(key.expose())
        .json(&serde_json::json!({ "name": "bench", "target_url": sink_url }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    let live_page = if plan.live {
        let id = subscription["id"].as_str().unwrap();
        Some(open_live_page(&address, id).await)
    } else {
        None
    };
    println!(
        "relay pid {pid}; machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Warm-up: connections, caches, queue; not reported.
    let warm: Vec<Sent> = futures_util::stream::iter(0..500)
        .map(|_| send(&client, &ingest_url, Instant::now()))
        .buffer_unordered(16)
        .collect()
        .await;
    wait_for_deliveries(&arrivals, &warm).await;

    // Open loop: requests are due at a fixed rate whether or not earlier ones have answered,
    // and latency counts from when each was due (no coordinated omission).
    let count = (plan.rate * plan.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / plan.rate as f64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), ingest_url.clone());
        tasks.push(tokio::spawn(async move { send(&client, &url, due).await }));
    }
    let mut sent = Vec::with_capacity(count);
    for task in tasks {
        sent.push(task.await.unwrap());
    }
    let finished = wait_for_deliveries(&arrivals, &sent).await;
    let (peak_open, rss_open) = memory_kib(pid);
    report(
        &format!("open loop, {} events/s for {} s", plan.rate, plan.seconds),
        started,
        &sent,
        &arrivals,
        finished,
    );
    println!(
        "  relay memory        peak {:.1} MiB, now {:.1} MiB",
        peak_open as f64 / 1024.0,
        rss_open as f64 / 1024.0
    );

    // Full speed: a fixed number of events, `concurrency` in flight, bounded in time.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let sent: Vec<Sent> = futures_util::stream::iter(0..plan.events)
        .take_while(|_| std::future::ready(Instant::now() < deadline))
        .map(|_| send(&client, &ingest_url, Instant::now()))
        .buffer_unordered(plan.concurrency)
        .collect()
        .await;
    let finished = wait_for_deliveries(&arrivals, &sent).await;
    let (peak, rss) = memory_kib(pid);
    report(
        &format!(
            "full speed, {} events, {} in flight",
            plan.events, plan.concurrency
        ),
        started,
        &sent,
        &arrivals,
        finished,
    );
    println!(
        "  relay memory        peak {:.1} MiB, now {:.1} MiB",
        peak as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    let duplicates = arrivals.requests.load(Ordering::Relaxed) - arrivals.at.lock().unwrap().len();
    println!("duplicate deliveries: {duplicates}");
    if let Some(page) = live_page {
        page.reader.abort();
        println!(
            "live page: {} messages, {:.1} KiB received",
            page.messages.load(Ordering::Relaxed),
            page.bytes.load(Ordering::Relaxed) as f64 / 1024.0
        );
    }

    sink_handle.stop(false).await;
    relay.stop().await;
}
