//! Two relays on a three-node RabbitMQ cluster on loopback (`scripts/rabbitmq-cluster.sh`), with a
//! node stopped mid-load: one neither relay is connected to, the one both are connected to, and
//! the one leading the queues while retries wait in them. Every accepted event must arrive.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use spenza::config::QueueKind;
use spenza::queue::Topology;

use crate::helpers::{
    RelayProcess, Script, Sink, TestResources, all_delivered, create_user_with_key, metric,
    ready_in_at, start_load, wait_until,
};

/// The one retry's wait: long enough to stop a node while retries wait, well short of the
/// reaper's grace, so that what the retries arrive through is the wait queue. The grace outlasts
/// the longest case (c) can take (30 s to fill the wait queue, 60 s for the retries after the
/// stop): with 45 s, a run on a loaded machine once saw the reaper republish during case (c).
const RETRY: &str = "15s";
const REAPER_GRACE: &str = "120s";
const DELIVERY_CONCURRENCY: usize = 16;

/// Three RabbitMQ nodes of the script's, removed with everything they hold when dropped.
struct Cluster {
    dir: PathBuf,
    urls: Vec<String>,
}

impl Cluster {
    /// Starts and joins the three nodes, on AMQP ports of their own whose distribution ports
    /// (20000 above) are free too, after taking down what aborted runs left.
    async fn up() -> Cluster {
        take_down_abandoned().await;
        let port = (5700..6000)
            .step_by(3)
            .find(|&first| {
                (first..first + 3)
                    .flat_map(|port| [port, port + 20000])
                    .all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
            })
            .expect("three free ports");
        let dir = std::env::temp_dir().join(format!("{CLUSTER_DIR}{port}"));
        let mut cluster = Cluster {
            dir,
            urls: Vec::new(),
        };
        let urls = cluster.script(&["up", &port.to_string()]).await;
        std::fs::write(cluster.dir.join(OWNER), std::process::id().to_string()).unwrap();
        cluster.urls = urls.trim().split(',').map(str::to_owned).collect();
        assert_eq!(cluster.urls.len(), 3, "{urls}");
        cluster
    }

    /// Runs the script on this cluster's folder; what it printed.
    async fn script(&self, arguments: &[&str]) -> String {
        script(&self.dir, arguments).await
    }

    /// Stops node `n` (1-3) at once, as a crash would.
    async fn kill(&self, n: u8) {
        self.script(&["kill", &n.to_string()]).await;
    }

    /// Starts node `n` again and waits until it is back in the cluster.
    async fn start(&self, n: u8) {
        self.script(&["start", &n.to_string()]).await;
    }

    /// The node holding `queue`: a quorum queue's leader.
    async fn home(&self, queue: &str) -> u8 {
        let home = self.script(&["home", queue]).await;
        home.trim()
            .parse()
            .unwrap_or_else(|_| panic!("a node holding {queue}: {home:?}"))
    }

    /// The client connections node `n` holds.
    async fn connections(&self, n: u8) -> usize {
        self.script(&["connections", &n.to_string()])
            .await
            .trim()
            .parse()
            .unwrap()
    }

    /// Messages ready in `queue`, asked of node `n`.
    async fn ready(&self, n: u8, queue: &str) -> Result<u32, String> {
        let (url, queue) = (self.urls[usize::from(n) - 1].clone(), queue.to_owned());
        tokio::task::spawn_blocking(move || ready_in_at(&url, &queue))
            .await
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script_path())
            .arg("down")
            .arg(&self.dir)
            .status();
    }
}

/// The clusters' folders are this in the temporary folder, and their first port.
const CLUSTER_DIR: &str = "spenza-cluster-";
/// The file in a cluster's folder naming the test process that made it.
const OWNER: &str = "test-process";

/// Takes down the clusters of test processes that are gone (killed before they could).
async fn take_down_abandoned() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(CLUSTER_DIR);
        let owner = std::fs::read_to_string(dir.join(OWNER)).unwrap_or_default();
        if ours && !owner.is_empty() && !PathBuf::from(format!("/proc/{owner}")).exists() {
            script(&dir, &["down"]).await;
        }
    }
}

/// Runs `scripts/rabbitmq-cluster.sh` on the cluster in `dir`; what it printed.
async fn script(dir: &Path, arguments: &[&str]) -> String {
    let mut command = std::process::Command::new(script_path());
    command.arg(arguments[0]).arg(dir).args(&arguments[1..]);
    let output = tokio::task::spawn_blocking(move || command.output().expect("bash runs"))
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "rabbitmq-cluster.sh {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq-cluster.sh")
}

/// Events posted per case: `SPENZA_TEST_CLUSTER_EVENTS`, or 300.
fn events() -> usize {
    std::env::var("SPENZA_TEST_CLUSTER_EVENTS").map_or(300, |events| {
        events
            .parse()
            .expect("SPENZA_TEST_CLUSTER_EVENTS is a number")
    })
}

/// Posts `events` events, half through each relay, and runs `midway` once a third of them are
/// accepted; when each event was accepted, by id.
async fn load_through(
    ingest_urls: [String; 2],
    events: usize,
    midway: impl Future<Output = ()>,
) -> HashMap<String, Instant> {
    let (first, mut first_rx) = start_load(ingest_urls[0].as_str().into(), events / 2, 10);
    let (second, mut second_rx) =
        start_load(ingest_urls[1].as_str().into(), events - events / 2, 10);
    let count = Arc::new(AtomicUsize::new(0));
    let collector = tokio::spawn({
        let count = count.clone();
        async move {
            let mut accepted = HashMap::new();
            loop {
                let id = tokio::select! {
                    Some(id) = first_rx.recv() => id,
                    Some(id) = second_rx.recv() => id,
                    else => break accepted,
                };
                accepted.insert(id, Instant::now());
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    wait_until(
        Duration::from_secs(60),
        "a third of the events accepted",
        || async {
            match count.load(Ordering::Relaxed) {
                accepted if accepted >= events / 3 => Ok(()),
                accepted => Err(format!("{accepted} accepted")),
            }
        },
    )
    .await;
    midway.await;
    first.await.unwrap();
    second.await.unwrap();
    let accepted = collector.await.unwrap();
    assert_eq!(
        accepted.len(),
        events,
        "ingest does not wait for the broker: every event is accepted"
    );
    accepted
}

/// Waits until every accepted event reached `sink` and is `completed` in the database, prints
/// the case's figures (duplicates, the time from each event's 202 to its delivery, the reaper's
/// republishes), and returns the number of duplicates.
async fn report(
    case: &str,
    database: &str,
    sink: &Sink,
    accepted: &HashMap<String, Instant>,
    relays: &[RelayProcess; 2],
    republished_before: f64,
) -> usize {
    let ids = accepted.keys().cloned().collect();
    let duplicates = all_delivered(sink, &ids).await;
    let completed = completed(database, accepted.keys()).await;
    assert_eq!(completed, accepted.len(), "case {case}: events completed");
    let mut first_arrival = HashMap::new();
    for request in sink.received() {
        if let Some(id) = request.header("webhook-id") {
            first_arrival.entry(id.to_owned()).or_insert(request.at);
        }
    }
    let mut latencies: Vec<Duration> = accepted
        .iter()
        .map(|(id, at)| first_arrival[id].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "case {case}: {} of {} delivered, {duplicates} duplicates; 202 to delivery p50 {:?}, \
         p99 {:?}, max {:?}; {} republished by the reaper",
        first_arrival.len(),
        accepted.len(),
        quantile(0.5),
        quantile(0.99),
        quantile(1.0),
        republished(relays).await - republished_before
    );
    duplicates
}

/// What the cases that kill a node mid-load share.
struct Case<'a> {
    cluster: &'a Cluster,
    relays: &'a [RelayProcess; 2],
    key: &'a str,
    database: &'a str,
    events: usize,
}

impl Case<'_> {
    /// Posts the events through both relays to a new subscription, kills node `node` once a
    /// third are accepted, and waits for them all (see [`report`]); the duplicates.
    async fn kill_mid_load(&self, case: &str, node: u8) -> usize {
        let sink = Sink::start(Script::Ok).await;
        let ingest_url = self.relays[0].subscribe(self.key, &sink.url).await;
        let both = [
            on(&self.relays[0], &ingest_url),
            on(&self.relays[1], &ingest_url),
        ];
        let before = republished(self.relays).await;
        let accepted = load_through(both, self.events, self.cluster.kill(node)).await;
        let duplicates = report(case, self.database, &sink, &accepted, self.relays, before).await;
        sink.stop().await;
        duplicates
    }
}

/// How many of the events `ids` are `completed` in the database at `url`.
async fn completed(url: &str, ids: impl Iterator<Item = &String>) -> usize {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    use spenza::db::schema::deliveries;
    let ids: Vec<uuid::Uuid> = ids.map(|id| id.parse().unwrap()).collect();
    let mut connection = diesel_async::AsyncPgConnection::establish(url)
        .await
        .unwrap();
    let completed: i64 = deliveries::table
        .filter(deliveries::event_id.eq_any(ids))
        .filter(deliveries::status.eq("completed"))
        .count()
        .get_result(&mut connection)
        .await
        .unwrap();
    usize::try_from(completed).unwrap()
}

/// `ingest_url` (made by one relay) on `relay`.
fn on(relay: &RelayProcess, ingest_url: &str) -> String {
    let path = &ingest_url[ingest_url.find("/ingest/").expect("an ingest URL")..];
    format!("{}{path}", relay.address)
}

/// Events the reaper had to publish again, in both relays.
async fn republished(relays: &[RelayProcess; 2]) -> f64 {
    let mut total = 0.0;
    for relay in relays {
        total += metric(&relay.address, "spenza_reaper_republished_total").await;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_a_three_node_cluster_lose_nothing_whichever_node_stops_mid_load() {
    let events = events();
    let cluster = Cluster::up().await;
    let resources = TestResources::new(RETRY).await;
    // Quorum queues are led from the node they are declared on: declared through node 3, they
    // are led from there while both relays connect to node 1, the first URL of their list.
    let topology = Topology::new(
        &resources.prefix,
        QueueKind::Quorum,
        vec![humantime::parse_duration(RETRY).unwrap()],
    );
    let node_3 = cluster.urls[2].clone();
    let declared = topology.clone();
    tokio::task::spawn_blocking(move || {
        let mut connection = amiquip::Connection::insecure_open(&node_3).unwrap();
        declared
            .declare(&connection.open_channel(None).unwrap())
            .unwrap();
        connection.close().unwrap();
    })
    .await
    .unwrap();
    let wait_queue = topology.retry_queue(humantime::parse_duration(RETRY).unwrap());
    assert_eq!(cluster.home(&topology.deliver_queue()).await, 3);
    assert_eq!(cluster.home(&wait_queue).await, 3);

    let urls = cluster.urls.join(",");
    let concurrency = DELIVERY_CONCURRENCY.to_string();
    let settings = [
        ("SPENZA_AMQP_URL", urls.as_str()),
        ("SPENZA_RETRY_SCHEDULE", RETRY),
        ("SPENZA_REAPER_INTERVAL", "1s"),
        ("SPENZA_REAPER_GRACE", REAPER_GRACE),
        ("SPENZA_DELIVERY_CONCURRENCY", concurrency.as_str()),
        // Case (c) fails every first attempt: the breaker must not stop the retries.
        ("SPENZA_BREAKER_THRESHOLD", "1000000"),
    ];
    let relays = [
        RelayProcess::start(&resources, &settings).await,
        RelayProcess::start(&resources, &settings).await,
    ];
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    // What a killed node or relay connection can make arrive twice: the deliveries in flight.
    let in_flight = 2 * DELIVERY_CONCURRENCY;
    assert!(
        cluster.connections(1).await >= 6,
        "each relay's publisher, consumer, live bus and gauge reader connect to node 1"
    );
    assert_eq!(
        (cluster.connections(2).await, cluster.connections(3).await),
        (0, 0)
    );

    // (a) A node neither relay is connected to, and which leads no queue, stops mid-load.
    let case = Case {
        cluster: &cluster,
        relays: &relays,
        key: &key,
        database: &resources.database.url,
        events,
    };
    let duplicates = case.kill_mid_load("(a)", 2).await;
    assert!(duplicates <= in_flight, "(a) {duplicates} duplicates");
    cluster.start(2).await;

    // (b) The node both relays are connected to stops mid-load: they move to node 2.
    let duplicates = case.kill_mid_load("(b)", 1).await;
    assert!(duplicates <= in_flight, "(b) {duplicates} duplicates");
    assert!(
        cluster.connections(2).await >= 6,
        "both relays' publishers, consumers and live buses reconnected to node 2, the next URL"
    );
    for relay in &relays {
        let ready = reqwest::get(format!("{}/readyz", relay.address))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    }
    cluster.start(1).await;

    // (c) The node leading the wait queue stops while retries wait there: they are delivered
    // from the queue's copies on the other nodes, not republished by the reaper. (Which node
    // leads it by now depends on the elections the stops above caused.)
    let home = cluster.home(&wait_queue).await;
    let sink = Sink::start(Script::Always(503)).await;
    let ingest_url: Arc<str> = relays[0].subscribe(&key, &sink.url).await.into();
    let (load, mut accepted_rx) = start_load(ingest_url, events / 10, 10);
    load.await.unwrap();
    let mut retried = Vec::new();
    while let Ok(id) = accepted_rx.try_recv() {
        retried.push(id);
    }
    assert_eq!(retried.len(), events / 10);
    wait_until(
        Duration::from_secs(30),
        "every retry waiting in the wait queue",
        || async {
            match cluster.ready(home, &wait_queue).await? {
                waiting if waiting as usize == retried.len() => Ok(()),
                waiting => {
                    let failed = metric(
                        &relays[0].address,
                        r#"spenza_delivery_attempts_total{outcome="5xx"}"#,
                    )
                    .await;
                    Err(format!(
                        "{waiting} waiting on node {home}, {failed} failed attempts, {} at the sink",
                        sink.received().len()
                    ))
                }
            }
        },
    )
    .await;
    let republished_before = republished(&relays).await;
    cluster.kill(home).await;
    let killed = Instant::now();
    sink.set_script(Script::Ok);
    let client = reqwest::Client::new();
    for id in &retried {
        wait_until(
            Duration::from_secs(60),
            &format!("event {id} delivered by its retry"),
            || async {
                let event: Value = client
                    .get(format!("{}/api/v1/events/{id}", relays[1].address))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                if event["status"] == "completed" {
                    assert_eq!(event["attempts"], 2, "{event}");
                    Ok(())
                } else {
                    Err(event.to_string())
                }
            },
        )
        .await;
    }
    for id in &retried {
        let (before, after): (Vec<_>, Vec<_>) = sink
            .received()
            .into_iter()
            .filter(|request| request.header("webhook-id") == Some(id.as_str()))
            .partition(|request| request.at < killed);
        assert_eq!(
            (before.len(), after.len()),
            (1, 1),
            "event {id}: its failed attempt before the stop, its retry after (a retry before it \
             means the wait queue's TTL ran out before the node was stopped)"
        );
    }
    println!(
        "case (c): {} retries waiting on node {home}, all delivered {:?} after it stopped; {} \
         republished by the reaper",
        retried.len(),
        killed.elapsed(),
        republished(&relays).await - republished_before
    );
    assert_eq!(
        republished(&relays).await,
        republished_before,
        "the retries came back through the replicated wait queue, not the reaper"
    );
    sink.stop().await;
    drop(relays);
    drop(cluster);
    drop(resources);
}
