//! No secret leaks: not into the log, not into what is stored with an event.

use std::time::Duration;

use serde_json::Value;
use spenza::config::DEFAULT_RETRY_SCHEDULE;

use crate::helpers::{
    FaultProxy, RelayProcess, Script, Sink, TestResources, create_user_with_key, spawn_app, through,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_during_a_database_outage_logs_the_route_and_never_the_token() {
    let resources = TestResources::new(DEFAULT_RETRY_SCHEDULE).await;
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let postgres: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = FaultProxy::start(postgres).await;
    let database_url = through(&proxy, &resources.database.url);
    let log = std::env::temp_dir().join(format!("spenza-log-{}.jsonl", resources.prefix));
    let mut relay = RelayProcess::start_logging(
        &resources,
        &[
            ("SPENZA_DATABASE_URL", &database_url),
            ("SPENZA_DATABASE_TIMEOUT", "1s"),
        ],
        &log,
    )
    .await;
    let client = reqwest::Client::new();
    let ingest_url = relay.subscribe(&key, "http://127.0.0.1:9/hook").await;
    let token = ingest_url.rsplit('/').next().unwrap().to_owned();

    proxy.cut();
    let answered = client
        .post(&ingest_url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 503);
    proxy.mend();
    assert!(relay.signal("TERM").await.success());

    let logged = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    assert!(
        logged.contains("\"route\":\"/ingest/{token}\""),
        "the failure is logged with its route: {logged}"
    );
    assert!(
        !logged.contains(&token),
        "the token is in the log: {logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_stored_headers_keep_no_credential() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let response = app
        .api
        .post(subscription["ingest_url"].as_str().unwrap())
        .header("content-type", "application/json")
        .header("authorization", "Bearer provider-credential")
        .header("x-api-key", "provider-credential")
        .header("x-gitlab-token", "provider-credential")
        .header("x-auth-token", "provider-credential")
        .header("x-webhook-secret", "provider-credential")
        .header("x-github-event", "push")
        .body("{}")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let event = app.event(accepted["event_id"].as_str().unwrap()).await;
    let headers = event["headers"].as_object().expect("stored headers");
    assert_eq!(headers["x-github-event"], "push", "{headers:?}");
    assert!(
        !event.to_string().contains("provider-credential"),
        "a credential was stored: {headers:?}"
    );
    sink.stop().await;
    app.shutdown().await;
}
