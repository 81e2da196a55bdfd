//! The SSRF guard, end to end: internal targets are refused, also behind a name. Other address
//! classes are tested on the classifier itself (src/delivery/ssrf.rs), never by connecting.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Script, Sink, spawn_app_with, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_unless_their_range_is_opened() {
    let app = spawn_app_with(|s| s.allowed_target_nets = Vec::new().into()).await;
    let sink = Sink::start(Script::Ok).await;
    let port = sink
        .url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    for literal in [
        "http://127.0.0.1:9/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
    ] {
        let body = json!({ "name": "internal", "target_url": literal });
        let response = app
            .send_json(Method::POST, "/api/v1/subscriptions", &body)
            .await;
        assert_eq!(response.status(), 422, "{literal}");
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("SSRF"),
            "{problem}"
        );
    }

    // A name is checked where it resolves: localhost resolves to loopback only.
    let refused_before = refused_attempts(&app).await;
    let subscription = app
        .create_subscription(&format!("http://localhost:{port}/hook"))
        .await;
    let id = &app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;
    let attempt = wait_until(
        std::time::Duration::from_secs(30),
        "a refused attempt",
        || async {
            let attempts: Value = app.get_json(&format!("/api/v1/events/{id}/attempts")).await;
            match attempts["data"].get(0) {
                Some(first) => Ok(first.clone()),
                None => Err(attempts.to_string()),
            }
        },
    )
    .await;
    let error = attempt["error"].as_str().unwrap();
    assert!(
        error.contains("refused by the SSRF guard") && error.contains("loopback"),
        "{error}"
    );
    assert!(
        sink.received().is_empty(),
        "the guard let a request through"
    );
    // Counted as refused, not as a connection error (other tests of this process count too).
    assert!(refused_attempts(&app).await > refused_before);
    sink.stop().await;
    app.shutdown().await;
}

/// Attempts the process's metrics count as refused by the SSRF guard.
async fn refused_attempts(app: &crate::helpers::TestApp) -> f64 {
    crate::helpers::metric(
        &app.address,
        r#"spenza_delivery_attempts_total{outcome="refused"}"#,
    )
    .await
}
