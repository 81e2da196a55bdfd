//! What the benchmarks share: the relay they run (any build of it, see [`spenza_binary`]), its
//! user and API key, and the open-loop ingest load with its latencies.

#![allow(
    dead_code,
    reason = "each benchmark uses its own part of what they share"
)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use spenza::config::{DEFAULT_RETRY_SCHEDULE, QueueKind};
use spenza::domain::RetrySchedule;
use spenza::queue::Topology;
use tokio::sync::Semaphore;

pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// A Stripe-like event of about 700 bytes.
pub const BODY: &str = r#"{"id":"evt_1Q2w3E4r5T6y7U8i","object":"event","api_version":"2024-06-20","created":1732800000,"type":"invoice.paid","livemode":false,"pending_webhooks":1,"request":{"id":"req_a1B2c3D4e5F6","idempotency_key":"5f1c8d2e-7a3b-4c9d-8e0f-1a2b3c4d5e6f"},"data":{"object":{"id":"in_1Q2w3E4r5T6y7U8i","object":"invoice","amount_due":4200,"amount_paid":4200,"currency":"eur","customer":"cus_Q1w2E3r4T5y6","customer_email":"ada@example.com","lines":{"object":"list","data":[{"id":"il_1","amount":4200,"description":"Pro plan (monthly)","quantity":1}],"has_more":false},"status":"paid","subscription":"sub_1Q2w3E4r5T6y7U8i","metadata":{"order":"A-1042","region":"eu-west"}}}}"#;

/// A numeric setting of the benchmark's from the environment, or its default.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The relay binary to run: `BENCH_SPENZA`, or this build's.
pub fn spenza_binary() -> String {
    std::env::var("BENCH_SPENZA").unwrap_or_else(|_| env!("CARGO_BIN_EXE_spenza").to_owned())
}

/// One ingest request: when it was due, how long it took, the event id if accepted.
pub struct Sent {
    pub due: Instant,
    pub latency: Duration,
    pub event_id: Option<String>,
}

pub async fn send(client: &reqwest::Client, url: &str, due: Instant) -> Sent {
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

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Most ingest requests an open-loop phase keeps in flight: half a second's worth at 2,000/s,
/// far above what a relay keeping up needs (a few dozen). The bound keeps a stalled relay from
/// growing the bench's tasks and sockets without limit; a request due while it is full waits
/// for a slot and is reported as not sent on time (its latency still counts from its due time).
pub const MAX_OUTSTANDING: usize = 1000;

/// How long after its last due time an open-loop phase still waits for a free slot before it
/// gives up on the requests left (reported as not sent).
pub const SEND_GRACE: Duration = Duration::from_secs(30);

/// A request issued later than this after its due time counts as late: tokio's timer ticks
/// every millisecond, so up to about a millisecond is the timer, not the sender falling behind.
pub const LATE: Duration = Duration::from_millis(5);

/// Longest a single ingest request may take before it counts as not accepted, so that awaiting
/// every request of a phase is bounded in time.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What an open-loop phase sent, and how well the sender kept to its schedule.
pub struct OpenLoop {
    pub started: Instant,
    pub sent: Vec<Sent>,
    /// Requests due while `MAX_OUTSTANDING` were in flight, which therefore waited for a slot.
    pub held_back: usize,
    /// Requests issued more than `LATE` after their due time, for whatever reason.
    pub late: usize,
    /// Requests never issued: the bound was still full `SEND_GRACE` after the last due time.
    pub not_sent: usize,
    /// Largest delay between a request's due time and its issue.
    pub max_lag: Duration,
}

/// Open loop: `rate * seconds` requests due at fixed times whether or not earlier ones have
/// answered, each in its own task so a slow answer delays no later request, and latency counts
/// from when each was due (no coordinated omission).
pub async fn open_loop(client: &reqwest::Client, url: &str, rate: u64, seconds: u64) -> OpenLoop {
    let count = (rate * seconds) as usize;
    let slots = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    let started = Instant::now();
    let give_up = started + Duration::from_secs(seconds) + SEND_GRACE;
    let mut tasks = Vec::with_capacity(count);
    let (mut held_back, mut late, mut max_lag) = (0, 0, Duration::ZERO);
    for i in 0..count {
        // From the start time each time, so rounding does not accumulate over the phase.
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                held_back += 1;
                match tokio::time::timeout_at(give_up.into(), slots.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    _ => break,
                }
            }
        };
        let lag = due.elapsed();
        max_lag = max_lag.max(lag);
        late += usize::from(lag > LATE);
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let sent = send(&client, &url, due).await;
            drop(permit);
            sent
        }));
    }
    let not_sent = count - tasks.len();
    let mut sent = Vec::with_capacity(tasks.len());
    for task in tasks {
        sent.push(task.await.unwrap());
    }
    OpenLoop {
        started,
        sent,
        held_back,
        late,
        not_sent,
        max_lag,
    }
}

/// Prints whether the sender kept to the schedule, so a rate the bench itself could not
/// produce is not mistaken for one the relay could not take.
pub fn report_sender(run: &OpenLoop) {
    println!(
        "  sender              max {} behind schedule, {} issued over {} late",
        ms(run.max_lag),
        run.late,
        ms(LATE)
    );
    if run.held_back > 0 || run.not_sent > 0 {
        println!(
            "  !! {MAX_OUTSTANDING} in flight: {} requests could not be sent on time ({} waited \
             for a slot, {} never sent)",
            run.held_back + run.not_sent,
            run.held_back,
            run.not_sent
        );
    }
}

/// A relay process serving a database of its own, which it migrated, and a queue prefix of its
/// own.
pub struct Relay {
    pub child: Child,
    pub database: String,
    prefix: String,
    /// The settings it was started with beyond the benchmark's own.
    settings: Vec<(String, String)>,
    pub address: String,
    port: u16,
}

impl Relay {
    /// A relay on a new database, with these settings added to the benchmark's.
    pub async fn start(settings: &[(&str, &str)]) -> Relay {
        use diesel_async::RunQueryDsl;
        let database = format!("spenza_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&format!("{POSTGRES}/postgres"))
            .await
            .expect("PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Relay::spawn(&database, &prefix, port, &settings, false).await;
        Relay {
            child,
            database,
            prefix,
            settings,
            address: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// Stops the relay and starts it again on the same database, queues and port, with
    /// `settings` changed or added.
    pub async fn restart(&mut self, settings: &[(&str, &str)]) {
        self.terminate();
        for (name, value) in settings {
            match self.settings.iter_mut().find(|(set, _)| set == name) {
                Some(setting) => setting.1 = (*value).to_owned(),
                None => self
                    .settings
                    .push(((*name).to_owned(), (*value).to_owned())),
            }
        }
        self.child = Relay::spawn(
            &self.database,
            &self.prefix,
            self.port,
            &self.settings,
            true,
        )
        .await;
    }

    async fn spawn(
        database: &str,
        prefix: &str,
        port: u16,
        settings: &[(String, String)],
        again: bool,
    ) -> Child {
        // BENCH_RELAY_LOG=<file> keeps the relay's log (JSON) there; otherwise it is dropped.
        let (stdout, stderr) = match std::env::var_os("BENCH_RELAY_LOG") {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(again)
                    .truncate(!again)
                    .open(path)
                    .expect("the relay's log file");
                (file.try_clone().unwrap().into(), file.into())
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let mut child = Command::new(spenza_binary())
            .arg("serve")
            .env("SPENZA_DATABASE_URL", format!("{POSTGRES}/{database}"))
            .env("SPENZA_AMQP_URL", AMQP)
            .env("SPENZA_AMQP_PREFIX", prefix)
            .env("SPENZA_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE)
            .env("SPENZA_ALLOWED_TARGET_NETS", "127.0.0.0/8")
            .env("SPENZA_BIND", format!("127.0.0.1:{port}"))
            .env("SPENZA_LOG_FORMAT", "json")
            .envs(settings.iter().map(|(name, value)| (name, value)))
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the relay starts");
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{address}/readyz")).send().await
                && r.status() == 200
            {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the relay did not become ready in 30 s");
    }

    pub fn database_url(&self) -> String {
        format!("{POSTGRES}/{}", self.database)
    }

    /// Runs one of the binary's own commands against the relay's database (so that a build of
    /// another commit, with its own schema, makes its own rows); what it printed.
    pub fn command(&self, args: &[&str]) -> String {
        let output = Command::new(spenza_binary())
            .args(args)
            .env("SPENZA_DATABASE_URL", self.database_url())
            .stderr(Stdio::inherit())
            .output()
            .expect("the relay's binary runs");
        assert!(output.status.success(), "spenza {args:?} failed");
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Makes the benchmark's user ([`EMAIL`], [`PASSWORD`]) with the binary's own commands; an
    /// API key of theirs.
    pub fn user_and_key(&self) -> String {
        self.command(&["users", "create", "--email", EMAIL, "--password", PASSWORD]);
        let created = self.command(&["api-keys", "create", "--email", EMAIL, "--name", "bench"]);
        created
            .lines()
            .last()
            .expect("the key, on the last line")
            .to_owned()
    }

    /// Stops the relay (as a container stop does, with SIGTERM) and waits for it to exit.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Stops the relay and drops its queues, keeping its database.
    pub async fn keep(mut self) {
        self.terminate();
        self.delete_queues().await;
    }

    /// Stops the relay, then drops its database and queues.
    pub async fn stop(mut self) {
        use diesel_async::RunQueryDsl;
        self.terminate();
        let mut admin = AsyncPgConnection::establish(&format!("{POSTGRES}/postgres"))
            .await
            .unwrap();
        let _ = diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        ))
        .execute(&mut admin)
        .await;
        self.delete_queues().await;
    }

    async fn delete_queues(&self) {
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

impl Drop for Relay {
    /// A benchmark that fails half-way must not leave its relay serving: it would hold the
    /// binary (a rebuild could not replace it) and share the machine with the next run.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A subscription named `name` delivering to `target`, made through the API with `key` the way
/// a client of today's API makes one (with a source of its own); the API's answer.
pub async fn subscribe(
    client: &reqwest::Client,
    address: &str,
    key: &str,
    name: &str,
    target: &str,
) -> serde_json::Value {
    client
        .post(format!("{address}/api/v1/subscriptions"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "name": name, "target_url": target }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The benchmark's dashboard user.
pub const EMAIL: &str = "bench@example.com";
pub const PASSWORD: &str = "benchmark password";

/// A client signed in to the dashboard as the benchmark's user, and its session cookie.
pub async fn dashboard_session(address: &str) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client
        .post(format!("{address}/login"))
        .form(&[("email", EMAIL), ("password", PASSWORD)])
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
    (client, cookie)
}
