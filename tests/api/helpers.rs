//! The harness: `spawn_app` (fresh database and queue prefix per test), a scriptable sink, a
//! fault proxy, and `wait_until`.

use std::collections::HashSet;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use clap::Parser;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::StreamExt;
use serde_json::{Value, json};
use spenza::config::{Cli, Command, DEFAULT_RETRY_SCHEDULE, QueueKind, Settings};
use spenza::domain::{EventId, RetrySchedule, SubscriptionId};
use spenza::queue::{Envelope, Publisher, PublisherThread, Topology};
use spenza::startup::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The server tests create their databases on.
pub fn postgres_base() -> String {
    std::env::var("SPENZA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The broker tests declare their queues on.
pub fn amqp_url() -> String {
    std::env::var("SPENZA_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Polls `probe` until it yields `Ok`; on timeout, fails with what it last saw.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last saw: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Settings for a test app: loopback only, a fresh database, a unique queue prefix.
pub fn test_settings(database_url: &str, prefix: &str) -> Settings {
    let Command::Serve(settings) = Cli::try_parse_from(["spenza", "serve"])
        .expect("defaults parse")
        .command
    else {
        unreachable!("serve parses as serve")
    };
    let mut settings = *settings;
    settings.database.url = database_url.to_owned().into();
    settings.database.pool_size = 8;
    settings.database.timeout = Duration::from_secs(3);
    settings.amqp_url = vec![amqp_url().into()].into();
    settings.amqp_prefix = prefix.to_owned();
    settings.queue_kind = QueueKind::Quorum;
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.public_url = None;
    settings.http_workers = Some(1);
    settings.delivery_timeout = Duration::from_secs(5);
    settings.shutdown_timeout = Duration::from_secs(5);
    // The sinks listen on loopback, which the SSRF guard refuses unless opened.
    settings.allowed_target_nets = vec!["127.0.0.0/8".parse().unwrap()].into();
    settings
}

/// A fresh, empty database, dropped (with any connections to it) when this is dropped.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

/// Creates a fresh, empty database.
pub async fn create_database() -> TestDatabase {
    use diesel_async::RunQueryDsl;
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut admin = AsyncPgConnection::establish(&format!("{}/postgres", postgres_base()))
        .await
        .expect("PostgreSQL is reachable");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let url = format!("{}/{name}", postgres_base());
    TestDatabase { name, url }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Its own thread and runtime: a drop cannot await, and may run outside any runtime.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use diesel_async::RunQueryDsl;
                if let Ok(mut admin) =
                    AsyncPgConnection::establish(&format!("{}/postgres", postgres_base())).await
                {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        })
        .join()
        .expect("database cleanup thread");
    }
}

/// A database and a queue prefix of a test's own. Dropping it deletes the queues and drops the
/// database, so runs leave the servers as they found them.
pub struct TestResources {
    pub database: TestDatabase,
    pub prefix: String,
    /// The wait queues to delete: one per delay of the schedule the test ran with.
    pub retry_delays: Vec<Duration>,
}

impl TestResources {
    /// A fresh database and prefix, for an app using `retry_schedule`.
    pub async fn new(retry_schedule: &str) -> TestResources {
        let schedule: RetrySchedule = retry_schedule.parse().expect("a valid schedule");
        TestResources {
            database: create_database().await,
            prefix: format!("test-{}", Uuid::new_v4().simple()),
            retry_delays: schedule.delays(),
        }
    }

    /// Database settings for the test database.
    pub fn database_settings(&self) -> spenza::config::DatabaseSettings {
        test_settings(&self.database.url, &self.prefix).database
    }
}

impl Drop for TestResources {
    fn drop(&mut self) {
        delete_queues(&self.prefix, &self.retry_delays);
    }
}

/// A running application and everything a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    pub database_url: String,
    pub api: reqwest::Client,
    /// A user created for the test, and their key.
    pub api_key: String,
    resources: Option<TestResources>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts the app with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app after `adjust` has changed its settings, with a user and their API key.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut app = spawn_fresh_app_with(adjust).await;
    let resources = app.resources.as_ref().expect("running");
    app.api_key = create_user_with_key(&resources.database_settings(), OWNER_EMAIL).await;
    app
}

/// The address of the user `spawn_app` creates; their password is [`PASSWORD`].
pub const OWNER_EMAIL: &str = "owner@example.com";
/// The password of every user the helpers create.
pub const PASSWORD: &str = "correct horse battery staple";

/// Starts the app after `adjust` has changed its settings, as a fresh install: no user yet.
pub async fn spawn_fresh_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_in(TestResources::new(DEFAULT_RETRY_SCHEDULE).await, adjust).await
}

/// Starts the app on `resources` (a database the test may have written already: the app
/// migrates it) after `adjust` has changed its settings; no API key is made.
pub async fn spawn_app_in(
    mut resources: TestResources,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let database_url = resources.database.url.clone();
    let mut settings = test_settings(&database_url, &resources.prefix);
    adjust(&mut settings);
    resources.retry_delays = settings.retry_schedule.delays();
    let application = Application::build(settings, spenza::telemetry::discard())
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let shutdown = application.shutdown_token();
    let server = tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        database_url,
        api: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        api_key: String::new(),
        resources: Some(resources),
        shutdown,
        server: Some(server),
    }
}

/// Starts the app on a database an earlier version wrote, whose owner (`OWNER_EMAIL`) the test
/// wrote too, with a reaper that looks every 200 ms, and the owner's API key.
pub async fn spawn_app_on_old_database(resources: TestResources) -> TestApp {
    let database = resources.database_settings();
    let mut app = spawn_app_in(resources, |s| {
        s.reaper_interval = Duration::from_millis(200);
        s.reaper_grace = Duration::from_millis(200);
    })
    .await;
    app.api_key = spenza::admin::create_api_key(&database, OWNER_EMAIL, "test")
        .await
        .unwrap()
        .expose()
        .to_owned();
    app
}

/// A migrated database the relay does not serve yet, for tests that write rows before it
/// starts: an owner with an API key, and one source with one subscription (to a closed port),
/// made in SQL.
pub struct SeededDatabase {
    pub resources: TestResources,
    pub conn: diesel_async::AsyncPgConnection,
    pub api_key: String,
    pub source: uuid::Uuid,
    pub subscription: uuid::Uuid,
}

impl SeededDatabase {
    pub async fn new() -> Self {
        use diesel_async::{AsyncConnection, SimpleAsyncConnection};
        let resources = TestResources::new(spenza::config::DEFAULT_RETRY_SCHEDULE).await;
        spenza::db::migrations::run(&resources.database.url)
            .await
            .unwrap();
        let api_key = create_user_with_key(&resources.database_settings(), OWNER_EMAIL).await;
        let (source, subscription) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let mut conn = diesel_async::AsyncPgConnection::establish(&resources.database.url)
            .await
            .unwrap();
        conn.batch_execute(&format!(
            "INSERT INTO sources (id, workspace_id, name, ingest_token) \
                 SELECT '{source}', workspace_id, 's', '{token}' FROM memberships; \
             INSERT INTO subscriptions (id, workspace_id, name, target_url, signing_secret, \
                 source_id) SELECT '{subscription}', workspace_id, 's', \
                 'http://127.0.0.1:9/hook', 'whsec_bmV3LXNlY3JldC1rZXktZm9yLXRlc3Rz', \
                 '{source}' FROM memberships",
            token = "s".repeat(43)
        ))
        .await
        .unwrap();
        SeededDatabase {
            resources,
            conn,
            api_key,
            source,
            subscription,
        }
    }

    /// Stores 2,000 events of a kilobyte that arrived on `day` (UTC), in its partitions if they
    /// are made, each with its delivery, made three days ago, and its attempt.
    pub async fn fill_day(&mut self, day: chrono::NaiveDate) {
        use diesel_async::SimpleAsyncConnection;
        let (source, subscription) = (self.source, self.subscription);
        self.conn
            .batch_execute(&format!(
                "WITH stored AS (INSERT INTO events (id, source_id, body) \
                     SELECT delivery_id(first_id_at('{day}'::timestamptz + n * interval '1 ms')), \
                         '{source}', convert_to(repeat('x', 1000), 'UTF8') \
                     FROM generate_series(1, 2000) AS n RETURNING id), \
                 made AS (INSERT INTO deliveries (id, event_id, subscription_id, status, \
                     completed_at) SELECT delivery_id(id), id, '{subscription}', 'completed', \
                     now() - interval '3 days' FROM stored RETURNING id) \
                 INSERT INTO delivery_attempts (delivery_id, subscription_id, attempt, \
                     started_at, duration_ms) SELECT id, '{subscription}', 1, now(), 5 FROM made"
            ))
            .await
            .unwrap();
    }
}

/// Creates a user with `email` and returns a fresh API key of theirs.
pub async fn create_user_with_key(
    database: &spenza::config::DatabaseSettings,
    email: &str,
) -> String {
    spenza::admin::create_user(database, email, PASSWORD)
        .await
        .expect("user created");
    spenza::admin::create_api_key(database, email, "test")
        .await
        .expect("key created")
        .expose()
        .to_owned()
}

impl TestApp {
    /// Another user of the same relay, with a key of their own.
    pub async fn another_user(&self, email: &str) -> String {
        let resources = self.resources.as_ref().expect("running");
        create_user_with_key(&resources.database_settings(), email).await
    }

    /// The app's queue name prefix.
    pub fn prefix(&self) -> &str {
        &self.resources.as_ref().expect("running").prefix
    }

    /// A direct connection to the app's database, for assertions.
    pub async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.database_url)
            .await
            .expect("test database reachable")
    }

    /// Creates a subscription delivering to `target_url`; returns its JSON.
    pub async fn create_subscription(&self, target_url: &str) -> Value {
        let body = json!({ "name": "test subscription", "target_url": target_url });
        let response = self
            .send_json(reqwest::Method::POST, "/api/v1/subscriptions", &body)
            .await;
        assert_eq!(response.status(), 201, "creating a subscription");
        response.json().await.unwrap()
    }

    /// POSTs a body to an ingest URL with a content type.
    pub async fn ingest(
        &self,
        ingest_url: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.api
            .post(ingest_url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("ingest answered")
    }

    /// POSTs a JSON body to an ingest URL, asserts it was accepted, and returns the event id.
    pub async fn accept(&self, ingest_url: &str, body: &str) -> String {
        let response = self
            .ingest(ingest_url, "application/json", body.to_owned())
            .await;
        assert_eq!(response.status(), 202, "ingest of {body}");
        let accepted: Value = response.json().await.unwrap();
        accepted["event_id"]
            .as_str()
            .expect("an event id")
            .to_owned()
    }

    /// GETs an API path with the owner's key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.api
            .get(format!("{}{path}", self.address))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap()
    }

    /// GETs an API path with the owner's key and reads the JSON answer.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.expect("a JSON answer")
    }

    /// Sends a JSON body to an API path with the owner's key.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.api
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .expect("the API answered")
    }

    /// The event as the API shows it.
    pub async fn event(&self, id: &str) -> Value {
        let response = self.get(&format!("/api/v1/events/{id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// The id of the event's only delivery.
    pub async fn delivery_of(&self, event: &str) -> String {
        let found = self.event(event).await;
        let deliveries = found["deliveries"].as_array().expect("deliveries");
        assert_eq!(deliveries.len(), 1, "{found}");
        deliveries[0]["id"].as_str().unwrap().to_owned()
    }

    /// Waits until the event has `status`; returns it.
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        wait_until(
            Duration::from_secs(30),
            &format!("event {id} to be {status}"),
            || async {
                let event = self.event(id).await;
                if event["status"] == status {
                    Ok(event)
                } else {
                    Err(event.to_string())
                }
            },
        )
        .await
    }

    /// How many events the database holds.
    pub async fn stored_events(&self) -> i64 {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use spenza::db::schema::events;
        events::table
            .count()
            .get_result(&mut self.db().await)
            .await
            .unwrap()
    }

    /// Stops the app gracefully and removes its database and queues.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("app task").expect("app stops cleanly");
        }
        let resources = self.resources.take();
        tokio::task::spawn_blocking(move || drop(resources))
            .await
            .unwrap();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Reached with resources left only when a test failed before `shutdown`.
        if let Some(resources) = self.resources.take() {
            self.shutdown.cancel();
            drop(resources);
        }
    }
}

/// Deletes a prefix's queues and exchanges.
fn delete_queues(prefix: &str, retry_delays: &[Duration]) {
    if let Ok(mut connection) = amiquip::Connection::insecure_open(&amqp_url()) {
        if let Ok(channel) = connection.open_channel(None) {
            let topology = Topology::new(prefix, QueueKind::Quorum, retry_delays.to_vec());
            let _ = topology.delete(&channel);
        }
        let _ = connection.close();
    }
}

/// A publisher of the test's own onto `topology`'s queues, once it is connected.
pub async fn connected_publisher(topology: Topology) -> (Publisher, PublisherThread) {
    let (publisher, thread) =
        Publisher::start(&[amqp_url()], topology, 8, spenza::telemetry::discard()).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the publisher to connect",
        || async {
            if publisher.is_connected() {
                Ok(())
            } else {
                Err("not connected".to_owned())
            }
        },
    )
    .await;
    (publisher, thread)
}

/// Stops a publisher of [`connected_publisher`]'s, waiting for its thread.
pub async fn stop_publisher(publisher: Publisher, thread: PublisherThread) {
    drop(publisher);
    tokio::task::spawn_blocking(move || thread.stop())
        .await
        .unwrap();
}

/// Messages ready in a queue of the broker (not those handed to a consumer), or why they could
/// not be counted.
pub fn ready_in(queue: &str) -> Result<u32, String> {
    ready_in_at(&amqp_url(), queue)
}

/// As [`ready_in`], asking the broker (or cluster node) at `url`. A failed passive declare
/// closes its channel: each look has its own connection.
pub fn ready_in_at(url: &str, queue: &str) -> Result<u32, String> {
    let mut connection = amiquip::Connection::insecure_open(url).map_err(|e| e.to_string())?;
    let declared = connection
        .open_channel(None)
        .unwrap()
        .queue_declare_passive(queue)
        .map(|queue| {
            queue
                .declared_message_count()
                .expect("a passive declare counts messages")
        });
    let _ = connection.close();
    declared.map_err(|error| error.to_string())
}

/// The envelope of an event nobody stored, for tests of the queues alone.
pub fn made_up_envelope() -> Envelope {
    Envelope {
        event_id: EventId::new(),
        delivery_id: None,
        subscription_id: SubscriptionId(uuid::Uuid::new_v4()),
        target_url: "https://example.com/hook".into(),
        retry_count: 0,
        deferrals: 0,
        request_id: None,
    }
}

/// The built `spenza` binary running as a child process, for process-level faults.
pub struct RelayProcess {
    pub address: String,
    child: Option<std::process::Child>,
}

impl RelayProcess {
    /// Starts `spenza serve` on the test's database and prefix with extra `SPENZA_*` settings,
    /// and waits until it reports ready.
    pub async fn start(resources: &TestResources, settings: &[(&str, &str)]) -> RelayProcess {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        RelayProcess::start_on(resources, settings, port).await
    }

    /// As [`RelayProcess::start`], on this port: a restart where the last process stopped.
    pub async fn start_on(
        resources: &TestResources,
        settings: &[(&str, &str)],
        port: u16,
    ) -> RelayProcess {
        RelayProcess::launch(resources, settings, port, None).await
    }

    /// As [`RelayProcess::start`], writing its log (stdout and stderr) to `log`.
    pub async fn start_logging(
        resources: &TestResources,
        settings: &[(&str, &str)],
        log: &std::path::Path,
    ) -> RelayProcess {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        RelayProcess::launch(resources, settings, port, Some(log)).await
    }

    async fn launch(
        resources: &TestResources,
        settings: &[(&str, &str)],
        port: u16,
        log: Option<&std::path::Path>,
    ) -> RelayProcess {
        let (stdout, stderr) = match log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("the log file is created");
                let copy = file.try_clone().expect("the log file opens twice");
                (file.into(), copy.into())
            }
            None => (std::process::Stdio::null(), std::process::Stdio::null()),
        };
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spenza"));
        command
            .arg("serve")
            .env("SPENZA_DATABASE_URL", &resources.database.url)
            .env("SPENZA_DATABASE_POOL_SIZE", "16")
            .env("SPENZA_AMQP_URL", amqp_url())
            .env("SPENZA_AMQP_PREFIX", &resources.prefix)
            .env("SPENZA_BIND", format!("127.0.0.1:{port}"))
            .env("SPENZA_LOG_FORMAT", "json")
            .env("SPENZA_ALLOWED_TARGET_NETS", "127.0.0.0/8")
            .stdout(stdout)
            .stderr(stderr);
        for (name, value) in settings {
            command.env(name, value);
        }
        let relay = RelayProcess {
            address: format!("http://127.0.0.1:{port}"),
            child: Some(command.spawn().expect("spenza starts")),
        };
        let client = reqwest::Client::new();
        wait_until(Duration::from_secs(30), "the relay to be ready", || async {
            match client.get(format!("{}/readyz", relay.address)).send().await {
                Ok(response) if response.status() == 200 => Ok(()),
                Ok(response) => Err(response.status().to_string()),
                Err(error) => Err(error.to_string()),
            }
        })
        .await;
        relay
    }

    /// Creates a subscription to `target` through the API with `key`; its ingest URL.
    pub async fn subscribe(&self, key: &str, target: &str) -> String {
        let subscription = self.create_subscription(key, target).await;
        subscription["ingest_url"].as_str().unwrap().to_owned()
    }

    /// Creates a subscription to `target` through the API with `key`; the API's answer.
    pub async fn create_subscription(&self, key: &str, target: &str) -> Value {
        reqwest::Client::new()
            .post(format!("{}/api/v1/subscriptions", self.address))
            .bearer_auth(key)
            .json(&serde_json::json!({ "name": "fault", "target_url": target }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the API, asked with `key`, shows event `id` in `status`.
    pub async fn wait_for_status(&self, key: &str, id: &str, status: &str) {
        let client = reqwest::Client::new();
        wait_until(
            Duration::from_secs(30),
            &format!("event {id} to be {status}"),
            || async {
                let response = client
                    .get(format!("{}/api/v1/events/{id}", self.address))
                    .bearer_auth(key)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let event: Value = response.json().await.map_err(|e| e.to_string())?;
                if event["status"] == status {
                    Ok(())
                } else {
                    Err(event.to_string())
                }
            },
        )
        .await;
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("an address with a port")
    }

    /// Its resident memory, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn resident_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("still running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("it runs");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }

    /// Sends `signal` (a `kill` name such as TERM or KILL) and waits for the process to exit.
    pub async fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("still running");
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} failed");
        tokio::task::spawn_blocking(move || child.wait().expect("the relay exits"))
            .await
            .unwrap()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How the sink answers a request.
#[derive(Debug, Clone)]
pub enum Script {
    /// 200 to everything.
    Ok,
    /// This status to the first `n` requests, then 200.
    FailFirst(usize, u16),
    /// This status with `Retry-After: <seconds>`, always.
    RetryAfter(u16, u64),
    /// Always this status.
    Always(u16),
    /// A redirect to another URL.
    Redirect(String),
    /// Wait this long, then 200.
    Slow(Duration),
    /// Wait this long, then this status.
    SlowStatus(Duration, u16),
    /// This status with `Retry-After` as an HTTP date this many seconds ahead, always.
    RetryAt(u16, u64),
}

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub path: String,
    /// The query, without its `?`; empty when there was none.
    pub query: String,
}

impl Received {
    /// The value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct SinkState {
    script: Mutex<Script>,
    received: Mutex<Vec<Received>>,
}

/// A real HTTP endpoint on loopback that records every request and answers from a script.
pub struct Sink {
    pub url: String,
    state: Arc<SinkState>,
    server: actix_web::dev::ServerHandle,
}

impl Sink {
    /// Starts a sink on a free loopback port.
    pub async fn start(script: Script) -> Sink {
        let state = Arc::new(SinkState {
            script: Mutex::new(script),
            received: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::from(shared.clone()))
                .default_service(web::to(record))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Sink {
            url,
            state,
            server: handle,
        }
    }

    /// Answers from now on by `script`.
    pub fn set_script(&self, script: Script) {
        *self.state.script.lock().unwrap() = script;
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// The distinct `webhook-id`s received.
    pub fn unique_ids(&self) -> HashSet<String> {
        self.received()
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_owned))
            .collect()
    }

    /// Waits until at least `count` requests have arrived.
    pub async fn wait_for_requests(&self, count: usize) -> Vec<Received> {
        wait_until(
            Duration::from_secs(30),
            &format!("{count} requests at the sink"),
            || async {
                let received = self.received();
                if received.len() >= count {
                    Ok(received)
                } else {
                    Err(format!("{} requests", received.len()))
                }
            },
        )
        .await
    }

    /// Stops the sink.
    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

async fn record(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<SinkState>,
) -> HttpResponse {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let received = Received {
        at: Instant::now(),
        headers,
        body: body.to_vec(),
        path: request.path().to_owned(),
        query: request.query_string().to_owned(),
    };
    let seen = {
        let mut all = state.received.lock().unwrap();
        all.push(received);
        all.len()
    };
    let script = state.script.lock().unwrap().clone();
    match script {
        Script::Ok => HttpResponse::Ok().body("ok"),
        Script::FailFirst(n, status) if seen <= n => status_response(status),
        Script::FailFirst(..) => HttpResponse::Ok().body("ok"),
        Script::RetryAfter(status, seconds) => {
            let mut response = status_response(status);
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(seconds),
            );
            response
        }
        Script::Always(status) => status_response(status),
        Script::Redirect(to) => HttpResponse::Found()
            .insert_header(("location", to.as_str()))
            .finish(),
        Script::Slow(delay) => {
            tokio::time::sleep(delay).await;
            HttpResponse::Ok().body("late")
        }
        Script::SlowStatus(delay, status) => {
            tokio::time::sleep(delay).await;
            status_response(status)
        }
        Script::RetryAt(status, seconds) => {
            let at = chrono::Utc::now() + chrono::TimeDelta::seconds(seconds as i64);
            let mut response = status_response(status);
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_str(
                    &at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                )
                .unwrap(),
            );
            response
        }
    }
}

fn status_response(status: u16) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .body(format!("scripted {status}"))
}

/// The value of one sample (its name and labels, as the exposition writes them) in the
/// `/metrics` of the relay at `address`; 0 while it has not been counted.
pub async fn metric(address: &str, sample: &str) -> f64 {
    let text = reqwest::get(format!("{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// `url` with its port replaced by `proxy`'s, to reach its server through the proxy.
pub fn through(proxy: &FaultProxy, url: &str) -> String {
    let mut url = url::Url::parse(url).expect("a URL");
    url.set_port(Some(proxy.address.port()))
        .expect("a URL with a port");
    url.to_string()
}

/// A TCP proxy on loopback in front of a real server: `cut` drops every connection and refuses
/// new ones, `mend` lets them through again.
pub struct FaultProxy {
    pub address: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    /// While true, nothing the server sends reaches the client (what the client sends still
    /// reaches the server).
    replies: tokio::sync::watch::Sender<bool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (replies, frozen) = tokio::sync::watch::channel(false);
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (cut_flag, tracked) = (cut.clone(), connections.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if cut_flag.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut frozen = frozen.clone();
                let connection = tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_reads, mut client_writes) = inbound.into_split();
                    let (mut server_reads, mut server_writes) = outbound.into_split();
                    let up = tokio::io::copy(&mut client_reads, &mut server_writes);
                    let down = async {
                        let mut buffer = vec![0; 16 * 1024];
                        loop {
                            if frozen.wait_for(|frozen| !*frozen).await.is_err() {
                                return;
                            }
                            // A freeze cuts short a read under way (reads are cancel-safe).
                            tokio::select! {
                                read = server_reads.read(&mut buffer) => match read {
                                    Ok(0) | Err(_) => return,
                                    Ok(read) => {
                                        if client_writes.write_all(&buffer[..read]).await.is_err() {
                                            return;
                                        }
                                    }
                                },
                                changed = frozen.changed() => {
                                    if changed.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        () = down => {}
                    }
                });
                let mut tracked = tracked.lock().unwrap();
                tracked.retain(|c| !c.is_finished());
                tracked.push(connection);
            }
        });
        FaultProxy {
            address,
            cut,
            replies,
            connections,
            acceptor,
        }
    }

    /// From now on, holds back what the server sends on every connection (a broker that takes
    /// everything and answers nothing, not even a confirm).
    pub fn freeze_replies(&self) {
        self.replies.send_replace(true);
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// How many connections it has taken since it was started or last cut.
    pub fn connections(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// Lets connections through again.
    pub fn mend(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

/// A person using the dashboard over plain HTTP (no JavaScript): a session cookie, and forms
/// posted with the CSRF token the pages carry.
pub struct Dashboard {
    pub address: String,
    /// The value of the session cookie.
    pub session: String,
    client: reqwest::Client,
}

/// The value of the `name` cookie a response sets, if it sets one.
pub fn set_cookie<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
}

/// The CSRF token a page carries in its forms.
pub fn csrf_token_in(page: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = page
        .find(marker)
        .expect("the page has a form with a CSRF token")
        + marker.len();
    page[start..]
        .split('"')
        .next()
        .expect("a closing quote")
        .to_owned()
}

impl TestApp {
    /// Logs in through the log-in form; panics unless it succeeds.
    pub async fn dashboard_login(&self, email: &str, password: &str) -> Dashboard {
        Dashboard::log_in(&self.address, self.api.clone(), email, password).await
    }

    /// The owner `spawn_app` created, logged in to the dashboard.
    pub async fn owner_dashboard(&self) -> Dashboard {
        self.dashboard_login(OWNER_EMAIL, PASSWORD).await
    }
}

impl Dashboard {
    /// Logs in to `address`'s dashboard through its log-in form; panics unless it succeeds.
    /// `client` must not follow redirects.
    pub async fn log_in(
        address: &str,
        client: reqwest::Client,
        email: &str,
        password: &str,
    ) -> Dashboard {
        let response = client
            .post(format!("{address}/login"))
            .form(&[("email", email), ("password", password)])
            .send()
            .await
            .expect("the relay answered");
        assert_eq!(response.status(), 303, "logging in as {email}");
        let cookie = set_cookie(&response, "spenza_session").expect("a session cookie");
        let session = cookie["spenza_session=".len()..].split(';').next().unwrap();
        Dashboard::new(address, session, client)
    }

    /// A session of `address`'s dashboard, from its cookie's value.
    fn new(address: &str, session: &str, client: reqwest::Client) -> Dashboard {
        Dashboard {
            address: address.to_owned(),
            session: session.to_owned(),
            client,
        }
    }

    fn cookie(&self) -> String {
        format!("spenza_session={}", self.session)
    }

    /// GETs a dashboard path with the session.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .header("cookie", self.cookie())
            .send()
            .await
            .expect("the relay answered")
    }

    /// GETs a page that must answer 200, and returns its HTML.
    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    /// This session's CSRF token, as its pages carry it.
    pub async fn csrf_token(&self) -> String {
        csrf_token_in(&self.page("/subscriptions/new").await)
    }

    /// Posts a form with this session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let token = self.csrf_token().await;
        let mut fields = fields.to_vec();
        fields.push(("csrf_token", &token));
        self.post_exactly(path, &fields).await
    }

    /// Posts exactly these fields, without adding a CSRF token.
    pub async fn post_exactly(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("cookie", self.cookie())
            .form(fields)
            .send()
            .await
            .expect("the relay answered")
    }

    /// Creates a subscription through the form; returns its id.
    pub async fn create_subscription(&self, name: &str, target_url: &str) -> String {
        let response = self
            .post(
                "/subscriptions",
                &[
                    ("name", name),
                    ("target_url", target_url),
                    ("provider_kind", "none"),
                ],
            )
            .await;
        assert_eq!(response.status(), 303, "creating {name}");
        let location = response.headers()["location"].to_str().unwrap();
        location
            .strip_prefix("/subscriptions/")
            .expect("redirected to the new subscription")
            .to_owned()
    }

    /// The ingest URL a subscription's page shows in `[data-ingest-url]`.
    pub async fn ingest_url(&self, subscription: &str) -> String {
        let page = self.page(&format!("/subscriptions/{subscription}")).await;
        let marker = "data-ingest-url=\"";
        let start = page.find(marker).expect("the page shows the ingest URL") + marker.len();
        page[start..].split('"').next().unwrap().to_owned()
    }
}

/// Waits until every id in `accepted` reached the sink; returns how many duplicates arrived.
pub async fn all_delivered(sink: &Sink, accepted: &HashSet<String>) -> usize {
    wait_until(
        Duration::from_secs(60),
        "every accepted event at the sink",
        || async {
            let delivered = sink.unique_ids();
            let missing = accepted.difference(&delivered).count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} of {} missing", accepted.len()))
            }
        },
    )
    .await;
    let duplicates = sink.received().len() - sink.unique_ids().len();
    println!(
        "{} accepted, all delivered, {duplicates} duplicate deliveries",
        accepted.len()
    );
    duplicates
}

/// Posts `events` events to `ingest_url`, `concurrency` at a time, in a task of its own; the
/// ids of those accepted arrive on the receiver as their 202s do. A request cut off by a kill
/// is not accepted: the provider would retry it.
pub fn start_load(
    ingest_url: Arc<str>,
    events: usize,
    concurrency: usize,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (accepted_tx, accepted_rx) = tokio::sync::mpsc::unbounded_channel();
    let client = reqwest::Client::new();
    let load = tokio::spawn(async move {
        futures_util::stream::iter(0..events)
            .for_each_concurrent(concurrency, |n| {
                let (client, url, accepted) =
                    (client.clone(), ingest_url.clone(), accepted_tx.clone());
                async move {
                    if let Ok(response) = client
                        .post(&*url)
                        .body(format!(r#"{{"n":{n}}}"#))
                        .send()
                        .await
                        && response.status() == 202
                        && let Ok(body) = response.json::<Value>().await
                    {
                        let _ = accepted.send(body["event_id"].as_str().unwrap().to_owned());
                    }
                }
            })
            .await
    });
    (load, accepted_rx)
}

/// Posts an event straight to a relay process's ingest URL; returns its id once accepted.
pub async fn accept(ingest_url: &str) -> String {
    let response = reqwest::Client::new()
        .post(ingest_url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["event_id"].as_str().expect("an event id").to_owned()
}

/// Applies the migrations up to and including `version` (such as `20261203000000`), on a thread
/// of its own (the migration harness blocks): a database as an earlier version left it.
pub fn migrate_up_to(url: &str, version: &str) {
    use diesel::Connection;
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
    use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
    let (url, version) = (url.to_owned(), version.to_owned());
    std::thread::spawn(move || {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url).unwrap();
        while !conn
            .applied_migrations()
            .unwrap()
            .iter()
            .any(|applied| applied.to_string() == version)
        {
            conn.run_next_migration(MIGRATIONS).unwrap();
        }
    })
    .join()
    .unwrap();
}
