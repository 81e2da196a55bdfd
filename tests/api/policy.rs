//! A delivery policy per subscription: its retry schedule, timeout, in-flight cap, rate limit
//! (across replicas) and extra headers, each in place of the process-wide setting.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    RelayProcess, Script, Sink, TestApp, TestResources, create_user_with_key, spawn_app,
    spawn_app_with, wait_until,
};

impl TestApp {
    /// Creates a subscription to `target` with this policy; its JSON.
    async fn subscription_with_policy(&self, target: &str, policy: Value) -> Value {
        let body = json!({"name": "with a policy", "target_url": target, "policy": policy});
        let response = self
            .send_json(Method::POST, "/api/v1/subscriptions", &body)
            .await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{answer}");
        answer
    }
}

/// The most of these instants that fall within any one window of `width`.
fn most_in_any_window(instants: &[Instant], width: Duration) -> usize {
    let mut sorted = instants.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|first| {
            sorted[first..]
                .iter()
                .take_while(|at| **at - sorted[first] <= width)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriptions_own_retry_schedule_and_timeout_replace_the_process_ones() {
    // The process retries after an hour: only the subscription's own schedule can retry sooner.
    let app = spawn_app_with(|s| s.retry_schedule = "1h".parse().unwrap()).await;
    let failing = Sink::start(Script::Always(503)).await;
    let subscription = app
        .subscription_with_policy(&failing.url, json!({"retry_schedule": ["1s", "2s"]}))
        .await;
    assert_eq!(
        subscription["policy"],
        json!({"retry_schedule": ["1s", "2s"], "timeout": null, "max_in_flight": null,
               "rate_limit": null, "lag_threshold": null, "headers": []})
    );
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;
    let event = app.wait_for_status(&id, "failed").await;
    assert_eq!(event["attempts"], 3, "the first attempt and two retries");
    let at: Vec<Instant> = failing.received().iter().map(|r| r.at).collect();
    assert!(at[1] - at[0] >= Duration::from_millis(900), "{at:?}");
    assert!(at[2] - at[1] >= Duration::from_millis(1900), "{at:?}");

    // A timeout shorter than the process's (5 s in tests) cuts a slow endpoint short.
    let slow = Sink::start(Script::Slow(Duration::from_secs(3))).await;
    let impatient = app
        .subscription_with_policy(&slow.url, json!({"timeout": "1s", "retry_schedule": []}))
        .await;
    let id = app
        .accept(impatient["ingest_url"].as_str().unwrap(), "{}")
        .await;
    let event = app.wait_for_status(&id, "failed").await;
    let attempts = app.get_json(&format!("/api/v1/events/{id}/attempts")).await;
    assert_eq!(
        attempts["data"][0]["error"], "timed out after 1s",
        "{event} {attempts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_headers_reach_the_endpoint_are_never_shown_and_cannot_replace_the_signatures() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app
        .subscription_with_policy(
            &sink.url,
            json!({"headers": {"Authorization": "Bearer endpoint-secret", "X-Team": "billing"}}),
        )
        .await;
    let id = subscription["id"].as_str().unwrap();
    for shown in [
        subscription.clone(),
        app.get_json(&format!("/api/v1/subscriptions/{id}")).await,
        app.get_json("/api/v1/subscriptions").await,
    ] {
        assert!(!shown.to_string().contains("endpoint-secret"), "{shown}");
    }
    assert_eq!(
        subscription["policy"]["headers"],
        json!(["Authorization", "X-Team"])
    );
    let event = app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;
    let received = sink.wait_for_requests(1).await;
    assert_eq!(
        received[0].header("authorization"),
        Some("Bearer endpoint-secret")
    );
    assert_eq!(received[0].header("x-team"), Some("billing"));
    assert_eq!(received[0].header("webhook-id"), Some(event.as_str()));

    let dashboard = app.owner_dashboard().await;
    for page in [format!("/subscriptions/{id}"), format!("/events/{event}")] {
        assert!(!dashboard.page(&page).await.contains("endpoint-secret"));
    }

    // An edit that leaves the headers out keeps them; one naming a signature header is refused.
    let edited = app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/subscriptions/{id}"),
            &json!({"policy": {"timeout": "10s"}}),
        )
        .await;
    let edited: Value = edited.json().await.unwrap();
    assert_eq!(
        edited["policy"]["headers"],
        json!(["Authorization", "X-Team"])
    );
    assert_eq!(edited["policy"]["timeout"], "10s");
    for forged in ["webhook-signature", "X-Spenza-Signature", "Webhook-Id"] {
        let refused = app
            .send_json(
                Method::PATCH,
                &format!("/api/v1/subscriptions/{id}"),
                &json!({"policy": {"headers": {forged: "v1,forged"}}}),
            )
            .await;
        assert_eq!(refused.status(), 422, "{forged}");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "policy.headers", "{problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriptions_in_flight_cap_makes_its_attempts_one_at_a_time() {
    let app = spawn_app().await;
    let slow = Sink::start(Script::Slow(Duration::from_millis(300))).await;
    let subscription = app
        .subscription_with_policy(&slow.url, json!({"max_in_flight": 1}))
        .await;
    let url = subscription["ingest_url"].as_str().unwrap();
    for _ in 0..4 {
        app.accept(url, "{}").await;
    }
    let received = slow.wait_for_requests(4).await;
    let mut at: Vec<Instant> = received.iter().map(|r| r.at).collect();
    at.sort();
    for pair in at.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(280),
            "two attempts at once: {at:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_delivery_waits_without_an_attempt_and_its_page_says_why() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app
        .subscription_with_policy(
            &sink.url,
            json!({"rate_limit": {"count": 1, "per": "minute"}}),
        )
        .await;
    let url = subscription["ingest_url"].as_str().unwrap();
    let first = app.accept(url, "{}").await;
    app.wait_for_status(&first, "completed").await;
    let second = app.accept(url, "{}").await;
    let delivery = app.delivery_of(&second).await;
    let waiting = wait_until(
        Duration::from_secs(10),
        "the second delivery to wait for the rate limit",
        || async {
            let delivery = app
                .get_json(&format!("/api/v1/deliveries/{delivery}"))
                .await;
            if delivery["waiting"] == "rate_limit" {
                Ok(delivery)
            } else {
                Err(delivery.to_string())
            }
        },
    )
    .await;
    assert_eq!(waiting["attempts"], 0, "{waiting}");
    assert_eq!(waiting["status"], "pending", "{waiting}");
    let due: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(waiting["next_attempt_at"].clone()).unwrap();
    let ahead = due - chrono::Utc::now();
    assert!(
        ahead > chrono::TimeDelta::seconds(45) && ahead <= chrono::TimeDelta::seconds(61),
        "due in {ahead}"
    );
    let page = app
        .owner_dashboard()
        .await
        .page(&format!("/events/{second}"))
        .await;
    assert!(page.contains("data-waiting=\"rate_limit\""), "{page}");
    assert!(page.contains("rate limit"));
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_two_worker_processes_in_every_one_second_window() {
    const EVENTS: usize = 30;
    let resources = TestResources::new("1s").await;
    let api = RelayProcess::start(&resources, &[("SPENZA_ROLE", "api")]).await;
    let logs: Vec<std::path::PathBuf> = (0..2)
        .map(|n| std::env::temp_dir().join(format!("spenza-rate-{}-{n}.log", uuid::Uuid::new_v4())))
        .collect();
    let worker = [("SPENZA_ROLE", "worker"), ("SPENZA_LOG_LEVEL", "debug")];
    let workers = [
        RelayProcess::start_logging(&resources, &worker, &logs[0]).await,
        RelayProcess::start_logging(&resources, &worker, &logs[1]).await,
    ];
    let key = create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let sink = Sink::start(Script::Ok).await;
    let client = reqwest::Client::new();
    let subscription: Value = client
        .post(format!("{}/api/v1/subscriptions", api.address))
        .bearer_auth(&key)
        .json(&json!({
            "name": "rate limited", "target_url": sink.url,
            "policy": {
                "rate_limit": {"count": 5, "per": "second"},
                "headers": {"Authorization": "Bearer rate-limited-secret"},
            },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = subscription["ingest_url"].as_str().unwrap();
    for n in 0..EVENTS {
        let response = client
            .post(url)
            .body(format!("{{\"n\": {n}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let received = sink.wait_for_requests(EVENTS).await;
    let at: Vec<Instant> = received.iter().map(|r| r.at).collect();
    let most = most_in_any_window(&at, Duration::from_secs(1));
    assert!(most <= 6, "{most} deliveries in one second");
    assert_eq!(sink.unique_ids().len(), EVENTS);
    // Both processes delivered, and no attempt or retry was spent waiting.
    let logged: Vec<String> = logs
        .iter()
        .map(|log| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    for log in &logged {
        assert!(
            log.contains("\"msg\":\"delivered\""),
            "a worker delivered nothing"
        );
        assert!(
            !log.contains("rate-limited-secret"),
            "a header value was logged"
        );
    }
    // The sink has every request; a worker records the last outcomes just after.
    let events = format!(
        "{}/api/v1/subscriptions/{}/events?limit=100",
        api.address,
        subscription["id"].as_str().unwrap()
    );
    let listed: Value = wait_until(
        Duration::from_secs(15),
        "every outcome recorded",
        || async {
            let listed: Value = client
                .get(&events)
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let rows = listed["data"].as_array().unwrap();
            if rows.len() == EVENTS && rows.iter().all(|row| row["status"] == "completed") {
                Ok(listed)
            } else {
                Err(listed.to_string())
            }
        },
    )
    .await;
    let rows = listed["data"].as_array().unwrap();
    assert!(rows.iter().all(|row| row["attempts"] == 1), "{listed}");
    for log in logs {
        let _ = std::fs::remove_file(log);
    }
    drop((api, workers));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_form_saves_a_filter_and_a_policy_and_keeps_the_hidden_headers() {
    let app = spawn_app().await;
    let dashboard = app.owner_dashboard().await;
    let fields = |headers: &'static str| {
        vec![
            ("name", "billing"),
            ("target_url", "https://billing.example.com/hooks"),
            ("source_id", "new"),
            ("filter", r#"{"body": {"type": "invoice.paid"}}"#),
            ("forward_path", "on"),
            ("retry_schedule", "5s, 1m"),
            ("timeout", "10s"),
            ("max_in_flight", "4"),
            ("rate_limit_count", "10"),
            ("rate_limit_per", "minute"),
            ("lag_threshold", "30m"),
            ("headers", headers),
        ]
    };
    // Each bad field is shown beside itself, and nothing is saved.
    let mut bad = fields("no colon here");
    bad.retain(|(name, _)| !["timeout", "filter", "lag_threshold"].contains(name));
    bad.extend([
        ("timeout", "an hour"),
        ("filter", "{not json"),
        ("lag_threshold", "10s"),
    ]);
    let refused = dashboard.post("/subscriptions", &bad).await;
    assert_eq!(refused.status(), 422);
    let page = refused.text().await.unwrap();
    for message in [
        "not JSON",
        "is not a duration",
        "write each header as Name: value",
        "the lag threshold is from 1m to 7 days",
    ] {
        assert!(page.contains(message), "{message}");
    }
    assert_eq!(
        app.get_json("/api/v1/subscriptions").await["data"],
        json!([])
    );

    let created = dashboard
        .post(
            "/subscriptions",
            &fields("Authorization: Bearer form-secret"),
        )
        .await;
    assert_eq!(created.status(), 303);
    let listed = app.get_json("/api/v1/subscriptions").await;
    let saved = &listed["data"][0];
    assert_eq!(saved["filter"], json!({"body": {"type": "invoice.paid"}}));
    assert_eq!(saved["forward_path"], true);
    assert_eq!(
        saved["policy"],
        json!({"retry_schedule": ["5s", "1m"], "timeout": "10s", "max_in_flight": 4,
               "rate_limit": {"count": 10, "per": "minute"}, "lag_threshold": "30m",
               "headers": ["Authorization"]})
    );

    // The edit form shows the policy, the headers' names and never their values; saved
    // without typing them again, it keeps them.
    let id = saved["id"].as_str().unwrap();
    let edit = dashboard.page(&format!("/subscriptions/{id}/edit")).await;
    assert!(edit.contains("5s, 1m") && edit.contains("<code>Authorization</code>"));
    assert!(
        edit.contains(r#"name="lag_threshold" value="30m""#),
        "{edit}"
    );
    assert!(!edit.contains("form-secret"));
    let mut again = fields("");
    again.retain(|(name, _)| *name != "timeout");
    again.push(("timeout", ""));
    let saved_again = dashboard
        .post(&format!("/subscriptions/{id}/edit"), &again)
        .await;
    assert_eq!(saved_again.status(), 303);
    let edited = app.get_json(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(edited["policy"]["headers"], json!(["Authorization"]));
    assert_eq!(
        edited["policy"]["timeout"],
        Value::Null,
        "blank: the relay's"
    );

    // Without JavaScript, Test filter posts the form and shows the verdict, saving nothing.
    let source = edited["source_id"].as_str().unwrap();
    let mut trying = fields("");
    trying.retain(|(name, _)| *name != "source_id" && *name != "name");
    trying.extend([
        ("source_id", source),
        ("name", "not saved"),
        ("action", "test-filter"),
    ]);
    let tried = dashboard.post("/subscriptions", &trying).await;
    assert_eq!(tried.status(), 200);
    assert!(
        tried
            .text()
            .await
            .unwrap()
            .contains("The source has received no events yet")
    );
    assert_eq!(
        app.get_json("/api/v1/subscriptions").await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
