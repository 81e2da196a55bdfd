//! What an operator sees of the relay: request ids, and log lines they can follow an event by.

use serde_json::Value;

use crate::helpers::{RelayProcess, Script, Sink, TestResources, create_user_with_key, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_the_clients_when_sane_a_new_one_otherwise() {
    let app = spawn_app().await;
    let id_of = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-request-id")
            .expect("the response has an X-Request-Id")
            .to_str()
            .unwrap()
            .to_owned()
    };

    let kept = app
        .api
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "lb-7f3e:01")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&kept), "lb-7f3e:01");

    let mut made_up = Vec::new();
    for presented in [None, Some("two words"), Some(&*"x".repeat(200))] {
        let mut request = app.api.get(format!("{}/healthz", app.address));
        if let Some(presented) = presented {
            request = request.header("x-request-id", presented);
        }
        let id = id_of(&request.send().await.unwrap());
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "{presented:?} gets a new id, not {id:?}"
        );
        made_up.push(id);
    }
    let distinct: std::collections::HashSet<&String> = made_up.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "each request has its own id: {made_up:?}"
    );

    // Errors too: an unknown ingest URL, a refused API call, a form without its CSRF token.
    let unknown = app
        .api
        .post(format!("{}/ingest/not-a-token", app.address))
        .header("x-request-id", "provider-1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(id_of(&unknown), "provider-1");
    let unauthorised = app
        .api
        .get(format!("{}/api/v1/subscriptions", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    id_of(&unauthorised);
    let forged = app
        .api
        .post(format!("{}/login", app.address))
        .header("sec-fetch-site", "cross-site")
        .form(&[("email", "owner@example.com"), ("password", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    id_of(&forged);
    app.shutdown().await;
}

/// The relay's JSON log lines, parsed.
fn lines(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The first line with this message about this event.
fn line<'a>(lines: &'a [Value], msg: &str, event: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["msg"] == msg && line["event_id"] == event)
        .unwrap_or_else(|| panic!("no {msg:?} line for {event}: {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_about_an_event_name_its_request_and_subscription_at_the_level_asked_for() {
    let resources = TestResources::new("100ms").await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let flaky = Sink::start(Script::FailFirst(1, 500)).await;
    let broken = Sink::start(Script::Always(500)).await;
    let log = std::env::temp_dir().join(format!("spenza-log-{}.jsonl", resources.prefix));
    let mut relay = RelayProcess::start_logging(
        &resources,
        &[
            ("SPENZA_LOG_LEVEL", "debug"),
            ("SPENZA_RETRY_SCHEDULE", "100ms"),
        ],
        &log,
    )
    .await;
    let client = reqwest::Client::new();
    let post = async |ingest_url: &str, request_id: &str| -> String {
        let answer: Value = client
            .post(ingest_url)
            .header("content-type", "application/json")
            .header("x-request-id", request_id)
            .body(r#"{"type":"invoice.paid"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["event_id"].as_str().unwrap().to_owned()
    };
    let retried = post(&relay.subscribe(&key, &flaky.url).await, "provider-req-1").await;
    let dead = post(&relay.subscribe(&key, &broken.url).await, "provider-req-2").await;
    relay.wait_for_status(&key, &retried, "completed").await;
    relay.wait_for_status(&key, &dead, "failed").await;
    assert!(relay.signal("TERM").await.success());

    let logged = lines(&log);
    let stored = line(&logged, "event stored", &retried);
    assert_eq!(stored["level"], "DEBG");
    assert_eq!(stored["request_id"], "provider-req-1");
    let subscription = stored["subscription_id"]
        .as_str()
        .expect("a subscription id");
    for (msg, level) in [
        ("delivery attempt failed; it will be retried", "INFO"),
        ("delivered", "DEBG"),
    ] {
        let attempt = line(&logged, msg, &retried);
        assert_eq!(attempt["level"], level, "{attempt}");
        assert_eq!(attempt["request_id"], "provider-req-1", "{attempt}");
        assert_eq!(attempt["subscription_id"], subscription, "{attempt}");
    }
    let graveyard = line(
        &logged,
        "delivery failed for good: the event is in the graveyard",
        &dead,
    );
    assert_eq!(graveyard["level"], "WARN");
    assert_eq!(
        graveyard["request_id"], "provider-req-2",
        "the retry kept the request's id"
    );
    assert_eq!(graveyard["status_code"], 500);

    // At the default level, none of the debug lines.
    let mut relay = RelayProcess::start_logging(&resources, &[], &log).await;
    let quiet = post(&relay.subscribe(&key, &flaky.url).await, "provider-req-3").await;
    relay.wait_for_status(&key, &quiet, "completed").await;
    assert!(relay.signal("TERM").await.success());
    let logged = lines(&log);
    std::fs::remove_file(&log).unwrap();
    assert!(
        logged.iter().any(|line| line["level"] == "INFO"),
        "{logged:#?}"
    );
    assert!(
        logged.iter().all(|line| line["level"] != "DEBG"),
        "{logged:#?}"
    );
}
