//! `spenza listen`, run as the real binary against a relay, forwarding to a local HTTP server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Dashboard, OWNER_EMAIL, PASSWORD, RelayProcess, Script, Sink, TestApp, TestResources, amqp_url,
    create_user_with_key, metric, spawn_app, spawn_app_with, wait_until,
};
use crate::signatures::standard_signatures_verified_by;

/// A `spenza listen` process, its output kept as it comes.
struct Listener {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Listener {
    /// Starts `spenza listen` against `relay` with `key`, and these arguments after the command.
    fn start(relay: &str, key: &str, args: &[&str]) -> Listener {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spenza"))
            .arg("listen")
            .args(args)
            .env("SPENZA_URL", relay)
            .env("SPENZA_API_KEY", key)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spenza listen starts");
        let keep = |pipe: Box<dyn std::io::Read + Send>| {
            let kept = Arc::new(Mutex::new(String::new()));
            let into = kept.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut text = into.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            });
            kept
        };
        let stdout = keep(Box::new(child.stdout.take().unwrap()));
        let stderr = keep(Box::new(child.stderr.take().unwrap()));
        Listener {
            child,
            stdout,
            stderr,
        }
    }

    /// Starts it and waits until it says it listens.
    async fn ready(relay: &str, key: &str, args: &[&str]) -> Listener {
        let listener = Listener::start(relay, key, args);
        listener.wait_for_stderr("Listening to source").await;
        listener
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    async fn wait_for_stderr(&self, text: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("{text:?} on stderr"),
            || async {
                let stderr = self.stderr();
                if stderr.contains(text) {
                    Ok(())
                } else {
                    Err(stderr)
                }
            },
        )
        .await;
    }

    /// Waits for it to exit by itself; its status.
    async fn exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "spenza listen did not exit: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ctrl-C, then waits for it to exit; its status.
    async fn interrupt(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.exit().await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a source through the API; its JSON.
async fn create_source(app: &TestApp, name: &str) -> Value {
    let response = app
        .send_json(Method::POST, "/api/v1/sources", &json!({ "name": name }))
        .await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Starts a `spenza listen` against `app` with the owner's key, waits until it listens, and
/// answers it with its subscription, the workspace's first `cli` one.
async fn listening(app: &TestApp, args: &[&str]) -> (Listener, Value) {
    let listener = Listener::ready(&app.address, &app.api_key, args).await;
    let subscription = listen_subscriptions(&app.address, &app.api_key)
        .await
        .remove(0);
    (listener, subscription)
}

/// The workspace's `cli` subscriptions, oldest first.
async fn listen_subscriptions(address: &str, key: &str) -> Vec<Value> {
    let list: Value = reqwest::Client::new()
        .get(format!("{address}/api/v1/subscriptions"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|subscription| subscription["kind"] == "cli")
        .cloned()
        .collect()
}

/// Deletes the listen queues of these subscriptions, which the test's prefix does not cover.
fn delete_listen_queues(prefix: &str, subscriptions: &[Value]) {
    let topology =
        spenza::queue::Topology::new(prefix, spenza::config::QueueKind::Quorum, Vec::new());
    let mut connection = amiquip::Connection::insecure_open(&amqp_url()).unwrap();
    let channel = connection.open_channel(None).unwrap();
    for subscription in subscriptions {
        let id =
            spenza::domain::SubscriptionId(subscription["id"].as_str().unwrap().parse().unwrap());
        let _ = channel.queue_delete(
            topology.listen_queue(id),
            amiquip::QueueDeleteOptions::default(),
        );
    }
    let _ = connection.close();
}

/// The delivery of `event` to the subscription `subscription`, once it has ended.
async fn ended_delivery(app: &TestApp, event: &str, subscription: &str) -> Value {
    wait_until(
        Duration::from_secs(30),
        "the listen delivery to end",
        || async {
            let event = app.event(event).await;
            let delivery = event["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|delivery| delivery["subscription_id"] == subscription)
                .cloned();
            match delivery {
                Some(delivery)
                    if ["completed", "failed"].contains(&delivery["status"].as_str().unwrap()) =>
                {
                    Ok(delivery)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// The attempts made of an event, first first.
async fn attempts(app: &TestApp, event: &str) -> Vec<Value> {
    app.get_json(&format!("/api/v1/events/{event}/attempts"))
        .await["data"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_forwards_each_event_as_it_arrived_signed_and_records_the_outcome() {
    let app = spawn_app().await;
    let source = create_source(&app, "stripe").await;
    let sink = Sink::start(Script::Ok).await;
    let (listener, subscription) = listening(
        &app,
        &["stripe", "--forward-to", &sink.url, "--name", "laptop"],
    )
    .await;
    assert_eq!(subscription["name"], "laptop");
    assert_eq!(subscription["source_id"], source["id"]);

    let body = "{\"type\": \"invoice.paid\",  \"amount\":1.50, \"note\":\"caf\u{e9}\"}\n";
    let ingest = format!(
        "{}/orders/7?expand=lines",
        source["ingest_url"].as_str().unwrap()
    );
    let response = app
        .api
        .post(&ingest)
        .header("content-type", "application/json")
        .header("x-provider-request", "req-42")
        .header("x-api-key", "provider-credential")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let event = response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let received = sink.wait_for_requests(1).await.remove(0);
    assert_eq!(received.body, body.as_bytes(), "the body, byte for byte");
    assert_eq!(received.path, "/hook/orders/7");
    assert_eq!(received.query, "expand=lines");
    assert_eq!(received.header("x-provider-request"), Some("req-42"));
    assert_eq!(received.header("content-type"), Some("application/json"));
    assert_eq!(
        received.header("x-api-key"),
        None,
        "credentials are not kept"
    );
    assert_eq!(received.header("webhook-id"), Some(event.as_str()));
    let secret = subscription["signing_secret"].as_str().unwrap();
    assert_eq!(standard_signatures_verified_by(&received, secret), 1);

    let delivery = ended_delivery(&app, &event, subscription["id"].as_str().unwrap()).await;
    assert_eq!(delivery["status"], "completed");
    assert_eq!(delivery["attempts"], 1);
    let made = attempts(&app, &event).await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["status_code"], 200);
    wait_until(
        Duration::from_secs(10),
        "the line for the event",
        || async {
            let stdout = listener.stdout();
            match stdout.lines().find(|line| line.contains(&event)) {
                Some(line)
                    if line.contains("invoice.paid")
                        && line.contains("200")
                        && line.ends_with(" ms") =>
                {
                    Ok(())
                }
                _ => Err(stdout),
            }
        },
    )
    .await;
    drop(listener);
    delete_listen_queues(app.prefix(), &[subscription]);
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_failure_is_recorded_once_without_retry_and_retried_with_it() {
    let app = spawn_app_with(|settings| {
        settings.retry_schedule = "1s".parse().unwrap();
        settings.issue_scan_interval = Duration::from_millis(200);
    })
    .await;
    let source = create_source(&app, "github").await;
    let ingest = source["ingest_url"].as_str().unwrap();
    let sink = Sink::start(Script::Always(500)).await;
    let closed = format!("http://127.0.0.1:{}/", free_port());

    // Without --retry: a 500, then a refused connection, each recorded once, as failed.
    let (mut listener, subscription) = listening(
        &app,
        &["github", "--forward-to", &sink.url, "--output", "json"],
    )
    .await;
    let id = subscription["id"].as_str().unwrap().to_owned();
    let failed = app.accept(ingest, r#"{"n":1}"#).await;
    let delivery = ended_delivery(&app, &failed, &id).await;
    assert_eq!(
        (delivery["status"].as_str(), delivery["attempts"].as_i64()),
        (Some("failed"), Some(1))
    );
    assert_eq!(attempts(&app, &failed).await[0]["status_code"], 500);
    // The graveyard's scan counts it, and opens no issue: the machine is a developer's.
    wait_until(
        Duration::from_secs(10),
        "the scan to count the failure",
        || async {
            use diesel_async::RunQueryDsl;
            let counted: Vec<i32> = diesel::sql_query("SELECT counted_attempts FROM deliveries")
                .load::<Counted>(&mut app.db().await)
                .await
                .unwrap()
                .into_iter()
                .map(|row| row.counted_attempts)
                .collect();
            if counted == [1] {
                Ok(())
            } else {
                Err(format!("{counted:?}"))
            }
        },
    )
    .await;
    assert_eq!(app.issues("").await, Vec::<Value>::new());
    wait_until(Duration::from_secs(10), "the JSON line", || async {
        let stdout = listener.stdout();
        let line = stdout
            .lines()
            .find(|line| line.contains(&failed))
            .map(|line| serde_json::from_str::<Value>(line).unwrap());
        match line {
            Some(line)
                if line["status"] == 500
                    && line["event_id"] == failed.as_str()
                    && line["latency_ms"].is_u64() =>
            {
                Ok(())
            }
            _ => Err(stdout),
        }
    })
    .await;
    assert_eq!(listener.interrupt().await.code(), Some(0));

    let mut listener = Listener::ready(
        &app.address,
        &app.api_key,
        &["github", "--forward-to", &closed],
    )
    .await;
    let refused = app.accept(ingest, r#"{"n":2}"#).await;
    let delivery = ended_delivery(&app, &refused, &id).await;
    assert_eq!(
        (delivery["status"].as_str(), delivery["attempts"].as_i64()),
        (Some("failed"), Some(1))
    );
    let made = attempts(&app, &refused).await;
    assert_eq!(made[0]["status_code"], Value::Null);
    assert!(
        made[0]["error"].as_str().unwrap().contains("connection"),
        "{made:?}"
    );
    assert_eq!(listener.interrupt().await.code(), Some(0));

    // With --retry: the 500 is retried on the schedule, and the fixed endpoint takes it.
    sink.set_script(Script::FailFirst(sink.received().len() + 1, 500));
    let listener = Listener::ready(
        &app.address,
        &app.api_key,
        &["github", "--forward-to", &sink.url, "--retry"],
    )
    .await;
    let retried = app.accept(ingest, r#"{"n":3}"#).await;
    let delivery = ended_delivery(&app, &retried, &id).await;
    assert_eq!(
        (delivery["status"].as_str(), delivery["attempts"].as_i64()),
        (Some("completed"), Some(2))
    );
    drop(listener);
    delete_listen_queues(app.prefix(), &[subscription]);
    sink.stop().await;
    app.shutdown().await;
}

#[derive(diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    counted_attempts: i32,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_while_no_listen_runs_arrive_when_one_starts_and_a_second_listen_also_receives()
{
    let app = spawn_app().await;
    let source = create_source(&app, "shopify").await;
    let ingest = source["ingest_url"].as_str().unwrap();
    let (sink, other) = (Sink::start(Script::Ok).await, Sink::start(Script::Ok).await);
    let source_id = source["id"].as_str().unwrap();
    // By id this time; Ctrl-C leaves it cleanly.
    let mut first = Listener::ready(
        &app.address,
        &app.api_key,
        &[source_id, "--forward-to", &sink.url, "--name", "desk"],
    )
    .await;
    assert_eq!(first.interrupt().await.code(), Some(0));
    assert!(first.stderr().contains("Stopped."), "{}", first.stderr());

    let mut waiting = Vec::new();
    for n in 0..3 {
        waiting.push(app.accept(ingest, &format!(r#"{{"n":{n}}}"#)).await);
    }
    let desk = Listener::ready(
        &app.address,
        &app.api_key,
        &["shopify", "--forward-to", &sink.url, "--name", "desk"],
    )
    .await;
    let second = Listener::ready(
        &app.address,
        &app.api_key,
        &["shopify", "--forward-to", &other.url, "--name", "laptop"],
    )
    .await;
    sink.wait_for_requests(3).await;
    let live = app.accept(ingest, r#"{"n":3}"#).await;
    let received = sink.wait_for_requests(4).await;
    // Each once; the three that waited (forwarded at once, so in any order) before the live one.
    let ids: Vec<&str> = received
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    let mut first_three = ids[..3].to_vec();
    first_three.sort_unstable();
    let mut waited: Vec<&str> = waiting.iter().map(String::as_str).collect();
    waited.sort_unstable();
    assert_eq!(first_three, waited, "the events that waited, each once");
    assert_eq!(ids[3..], [live.as_str()], "then the live one, once");
    // The second listen has its own subscription, made after the first three arrived.
    let at_other = other.wait_for_requests(1).await;
    assert_eq!(at_other[0].header("webhook-id"), Some(live.as_str()));
    let subscriptions = listen_subscriptions(&app.address, &app.api_key).await;
    assert_eq!(subscriptions.len(), 2, "desk reused, laptop made");
    drop((desk, second));
    delete_listen_queues(app.prefix(), &subscriptions);
    sink.stop().await;
    other.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_an_unknown_source_or_one_session_too_many_is_refused_with_a_clear_message() {
    let app = spawn_app_with(|settings| settings.listen_sessions = 1).await;
    create_source(&app, "stripe").await;
    let local = "http://127.0.0.1:9/";
    let refused = |key: &str, args: &[&str], message: &str| {
        let mut listener = Listener::start(&app.address, key, args);
        let message = message.to_owned();
        async move {
            assert!(!listener.exit().await.success(), "refused");
            assert!(
                listener.stderr().contains(&message),
                "{}",
                listener.stderr()
            );
        }
    };
    let key = app.api_key.as_str();
    refused(
        "spz_not_a_key",
        &["stripe", "--forward-to", local],
        "error: the relay refused the API key",
    )
    .await;
    refused(key, &["nope", "--forward-to", local], "no such source").await;
    refused(
        key,
        &["stripe", "--forward-to", local, "--filter", "{"],
        "filter: the filter is not JSON",
    )
    .await;
    let one = Listener::ready(
        &app.address,
        key,
        &["stripe", "--forward-to", local, "--name", "a"],
    )
    .await;
    refused(
        key,
        &["stripe", "--forward-to", local, "--name", "b"],
        "the most this relay allows",
    )
    .await;
    let subscriptions = listen_subscriptions(&app.address, &app.api_key).await;
    drop(one);
    delete_listen_queues(app.prefix(), &subscriptions);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_subscription_deleted_ends_its_session_for_good() {
    let app = spawn_app().await;
    create_source(&app, "stripe").await;
    let (mut listener, subscription) =
        listening(&app, &["stripe", "--forward-to", "http://127.0.0.1:9/"]).await;
    let path = format!(
        "/api/v1/subscriptions/{}",
        subscription["id"].as_str().unwrap()
    );
    let response = app.send_json(Method::DELETE, &path, &json!({})).await;
    assert_eq!(response.status(), 204);
    assert!(!listener.exit().await.success(), "it does not reconnect");
    assert!(
        listener
            .stderr()
            .contains("the listen subscription was deleted: run spenza listen again"),
        "{}",
        listener.stderr()
    );
    delete_listen_queues(app.prefix(), &[subscription]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_ends_its_session_for_good_and_a_viewers_key_may_not_listen() {
    let app = spawn_app().await;
    create_source(&app, "stripe").await;
    let key = |role: &'static str| {
        let app = &app;
        async move {
            let made = app
                .send_json(
                    Method::POST,
                    "/api/v1/api-keys",
                    &json!({ "name": format!("{role} laptop"), "role": role }),
                )
                .await;
            assert_eq!(made.status(), 201);
            made.json::<Value>().await.unwrap()
        }
    };
    let viewer = key("viewer").await;
    let mut refused = Listener::start(
        &app.address,
        viewer["key"].as_str().unwrap(),
        &["stripe", "--forward-to", "http://127.0.0.1:9/"],
    );
    assert!(!refused.exit().await.success());
    assert!(
        refused.stderr().contains("the API key may not listen"),
        "{}",
        refused.stderr()
    );

    let developer = key("developer").await;
    let mut listener = Listener::ready(
        &app.address,
        developer["key"].as_str().unwrap(),
        &["stripe", "--forward-to", "http://127.0.0.1:9/"],
    )
    .await;
    let path = format!("/api/v1/api-keys/{}", developer["id"].as_str().unwrap());
    let revoked = app.send_json(Method::DELETE, &path, &json!({})).await;
    assert_eq!(revoked.status(), 204);
    assert!(!listener.exit().await.success(), "it does not reconnect");
    assert!(
        listener.stderr().contains("the API key was revoked"),
        "{}",
        listener.stderr()
    );
    let subscriptions = listen_subscriptions(&app.address, &app.api_key).await;
    delete_listen_queues(app.prefix(), &subscriptions);
    app.shutdown().await;
}

/// A relay process's settings for the crash test: a short lease and grace, so that what was
/// in flight when it died is due again within the test.
const CRASH_SETTINGS: &[(&str, &str)] = &[
    ("SPENZA_DELIVERY_TIMEOUT", "2s"),
    ("SPENZA_DATABASE_TIMEOUT", "1s"),
    ("SPENZA_REAPER_INTERVAL", "200ms"),
    ("SPENZA_REAPER_GRACE", "2s"),
    ("SPENZA_LISTEN_IN_FLIGHT", "4"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_killed_mid_stream_and_restarted_loses_nothing_and_records_nothing_twice() {
    const EVENTS: usize = 30;
    let resources = TestResources::new("1s").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let mut relay = RelayProcess::start(&resources, CRASH_SETTINGS).await;
    let client = reqwest::Client::new();
    let source: Value = client
        .post(format!("{}/api/v1/sources", relay.address))
        .bearer_auth(&key)
        .json(&json!({ "name": "stripe" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ingest = source["ingest_url"].as_str().unwrap().to_owned();
    // Slow enough locally that several events are always under way.
    let sink = Sink::start(Script::Slow(Duration::from_millis(100))).await;
    let listener =
        Listener::ready(&relay.address, &key, &["stripe", "--forward-to", &sink.url]).await;
    // The relay process's own registry: this session alone.
    assert_eq!(metric(&relay.address, "spenza_listen_sessions").await, 1.0);
    let mut accepted = Vec::new();
    for n in 0..EVENTS {
        let response = client
            .post(&ingest)
            .body(format!("{{\"n\":{n}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        accepted.push(
            response.json::<Value>().await.unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    sink.wait_for_requests(EVENTS / 3).await;
    let port = relay.port();
    assert!(!relay.signal("KILL").await.success());
    let restarted = RelayProcess::start_on(&resources, CRASH_SETTINGS, port).await;
    listener.wait_for_stderr("Reconnected.").await;

    let subscription = listen_subscriptions(&restarted.address, &key)
        .await
        .remove(0);
    let events = format!(
        "{}/api/v1/subscriptions/{}/events?limit=100",
        restarted.address,
        subscription["id"].as_str().unwrap()
    );
    let deliveries = wait_until(Duration::from_secs(90), "every event delivered", || async {
        let page: Value = client
            .get(&events)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let deliveries = page["data"].as_array().unwrap().clone();
        let completed = deliveries
            .iter()
            .filter(|d| d["status"] == "completed")
            .count();
        if deliveries.len() == EVENTS && completed == EVENTS {
            Ok(deliveries)
        } else {
            Err(format!("{completed} of {} completed", deliveries.len()))
        }
    })
    .await;
    for delivery in &deliveries {
        assert_eq!(delivery["attempts"], 1, "recorded once: {delivery}");
    }
    let delivered = sink.unique_ids();
    for id in &accepted {
        assert!(delivered.contains(id), "{id} arrived locally");
    }
    assert!(
        sink.received().len() - EVENTS <= 4,
        "at most what was in flight arrives twice"
    );
    drop(listener);
    delete_listen_queues(&resources.prefix, &[subscription]);
    drop(restarted);
    sink.stop().await;
    drop(resources);
}

/// The source page's row of a subscription, from `<tr` to `</tr>`.
fn subscription_row<'a>(page: &'a str, id: &str) -> &'a str {
    let marker = format!("data-subscription-id=\"{id}\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {id} in:\n{page}"));
    let start = page[..at].rfind("<tr").unwrap();
    &page[start..at + page[at..].find("</tr>").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_page_shows_a_listen_subscription_connected_and_not_and_its_deliveries_show_on_the_event_page()
 {
    let app = spawn_app().await;
    let source = create_source(&app, "stripe").await;
    let sink = Sink::start(Script::Ok).await;
    let (mut listener, subscription) = listening(
        &app,
        &["stripe", "--forward-to", &sink.url, "--name", "laptop"],
    )
    .await;
    let id = subscription["id"].as_str().unwrap();
    let dashboard = Dashboard::log_in(&app.address, app.api.clone(), OWNER_EMAIL, PASSWORD).await;
    let page = dashboard
        .page(&format!("/sources/{}", source["id"].as_str().unwrap()))
        .await;
    let row = subscription_row(&page, id);
    assert!(row.contains("spenza listen"), "{row}");
    assert!(row.contains("data-connected=\"1\""), "{row}");
    assert!(row.contains("from <code>127.0.0.1</code>"), "{row}");
    assert!(row.contains("held by the replica "), "{row}");
    assert!(
        row.contains(&format!("href=\"/subscriptions/{id}/delete\"")),
        "{row}"
    );

    let event = app
        .accept(source["ingest_url"].as_str().unwrap(), r#"{"type":"a"}"#)
        .await;
    ended_delivery(&app, &event, id).await;
    let page = dashboard.page(&format!("/events/{event}")).await;
    assert!(
        page.contains("laptop"),
        "the listen delivery is on the event page:\n{page}"
    );

    assert_eq!(listener.interrupt().await.code(), Some(0));
    let page = dashboard
        .page(&format!("/sources/{}", source["id"].as_str().unwrap()))
        .await;
    let row = subscription_row(&page, id);
    assert!(row.contains("data-connected=\"0\""), "{row}");
    assert!(row.contains("Not connected"), "{row}");
    delete_listen_queues(app.prefix(), &[subscription]);
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_subscriptions_read_at_a_glance_on_a_desktop_and_a_phone() {
    use crate::browser::{Browser, BrowserOptions, Screen};
    use crate::dashboard_browser::{log_in, screenshot_path};
    use crate::sources_browser::spills;

    let app = spawn_app().await;
    let source = create_source(&app, "Stripe").await;
    let sink = Sink::start(Script::Ok).await;
    let endpoint = json!({
        "name": "Billing service", "target_url": sink.url, "source_id": source["id"],
    });
    assert_eq!(
        app.send_json(Method::POST, "/api/v1/subscriptions", &endpoint)
            .await
            .status(),
        201
    );
    let mut away = Listener::ready(
        &app.address,
        &app.api_key,
        &["Stripe", "--forward-to", &sink.url, "--name", "ci-runner"],
    )
    .await;
    assert_eq!(away.interrupt().await.code(), Some(0));
    let here = Listener::ready(
        &app.address,
        &app.api_key,
        &[
            "Stripe",
            "--forward-to",
            &sink.url,
            "--name",
            "grace-laptop",
            "--filter",
            r#"{"body":{"type":{"$startsWith":"invoice."}}}"#,
        ],
    )
    .await;
    let page = format!("{}/sources/{}", app.address, source["id"].as_str().unwrap());
    for (screen, name) in [(Screen::Desktop, "desktop"), (Screen::Phone, "phone")] {
        let browser = Browser::start_with(BrowserOptions {
            screen,
            ..BrowserOptions::default()
        })
        .await;
        log_in(&browser, &app.address).await;
        browser.goto(&page).await;
        browser.wait_for(".listen-state[data-connected='1']").await;
        assert!(browser.text("main").await.contains("Not connected"));
        assert!(
            !spills(&browser).await,
            "the source page fits the {name} screen"
        );
        browser
            .execute("document.querySelector('.source-subscriptions').scrollIntoView();")
            .await;
        browser
            .screenshot(screenshot_path(&format!("{name}-source-listen.png")))
            .await;
        browser.close().await;
    }
    let subscriptions = listen_subscriptions(&app.address, &app.api_key).await;
    drop(here);
    delete_listen_queues(app.prefix(), &subscriptions);
    sink.stop().await;
    app.shutdown().await;
}
