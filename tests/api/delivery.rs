//! Delivery: what counts as delivered, and what each failed attempt records.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Script, Sink, spawn_app, spawn_app_with, wait_until};

async fn first_attempt(app: &crate::helpers::TestApp, id: &str) -> Value {
    wait_until(
        Duration::from_secs(30),
        "an attempt to be recorded",
        || async {
            let attempts: Value = app.get_json(&format!("/api/v1/events/{id}/attempts")).await;
            match attempts["data"].as_array() {
                Some(list) if !list.is_empty() => Ok(list[0].clone()),
                _ => Err(attempts.to_string()),
            }
        },
    )
    .await
}

async fn ingest_one(app: &crate::helpers::TestApp, target: &str) -> String {
    let subscription = app.create_subscription(target).await;
    app.accept(subscription["ingest_url"].as_str().unwrap(), r#"{"n":1}"#)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_answer_is_a_failed_attempt_and_the_event_is_not_completed() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Always(503)).await;
    let id = ingest_one(&app, &sink.url).await;

    let attempt = first_attempt(&app, &id).await;

    assert_eq!(attempt["status_code"], 503);
    assert_eq!(attempt["error"], "HTTP 503 Service Unavailable");
    assert_eq!(attempt["response_body"], "scripted 503");
    let event = app.event(&id).await;
    assert_eq!(event["status"], "retrying");
    assert_eq!(event["last_error"], "HTTP 503 Service Unavailable");
    assert_eq!(event["completed_at"], Value::Null);
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_failures_and_are_not_followed() {
    let app = spawn_app().await;
    let elsewhere = Sink::start(Script::Ok).await;
    let sink = Sink::start(Script::Redirect(elsewhere.url.clone())).await;
    let id = ingest_one(&app, &sink.url).await;

    let attempt = first_attempt(&app, &id).await;

    assert_eq!(attempt["status_code"], 302);
    assert!(
        attempt["error"].as_str().unwrap().contains("not followed"),
        "{attempt}"
    );
    assert_eq!(app.event(&id).await["status"], "retrying");
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
    sink.stop().await;
    elsewhere.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_times_out_as_a_failed_attempt() {
    let app =
        spawn_app_with(|settings| settings.delivery_timeout = Duration::from_millis(300)).await;
    let sink = Sink::start(Script::Slow(Duration::from_secs(3))).await;
    let id = ingest_one(&app, &sink.url).await;

    let attempt = first_attempt(&app, &id).await;

    assert_eq!(attempt["status_code"], Value::Null);
    assert_eq!(attempt["error"], "timed out after 300ms");
    assert!(attempt["duration_ms"].as_i64().unwrap() >= 300);
    assert_eq!(app.event(&id).await["status"], "retrying");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_a_failed_attempt() {
    let app = spawn_app().await;
    // Bind and drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = ingest_one(&app, &format!("http://127.0.0.1:{port}/hook")).await;

    let attempt = first_attempt(&app, &id).await;

    assert_eq!(attempt["status_code"], Value::Null);
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .starts_with("connection failed"),
        "{attempt}"
    );
    app.shutdown().await;
}
