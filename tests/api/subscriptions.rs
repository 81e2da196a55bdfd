//! The subscription API and the event log: shapes, validation, edits and pagination.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Script, Sink, spawn_app, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_subscription_can_be_read_listed_edited_and_deleted() {
    let app = spawn_app().await;
    let created = app
        .create_subscription("https://hooks.example.com/in")
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["name"], "test subscription");
    assert_eq!(created["is_active"], true);
    assert!(
        created["signing_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    let ingest_url = created["ingest_url"].as_str().unwrap();
    assert!(
        ingest_url.starts_with(&format!("{}/ingest/", app.address)),
        "{ingest_url}"
    );

    let fetched: Value = app.get_json(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(fetched, created);
    let listed: Value = app.get_json("/api/v1/subscriptions").await;
    assert_eq!(listed["data"], json!([created]));

    let edit = json!({ "name": "renamed", "target_url": "https://other.example.com/hook", "is_active": false });
    let edited: Value = app
        .send_json(Method::PATCH, &format!("/api/v1/subscriptions/{id}"), &edit)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(edited["name"], "renamed");
    assert_eq!(edited["target_url"], "https://other.example.com/hook");
    assert_eq!(edited["is_active"], false);
    assert_eq!(edited["ingest_url"], created["ingest_url"]);

    let deleted = app
        .api
        .delete(format!("{}/api/v1/subscriptions/{id}", app.address))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        app.get(&format!("/api/v1/subscriptions/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.ingest(ingest_url, "application/json", "{}")
            .await
            .status(),
        404
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subscriptions_are_refused_with_every_failing_field() {
    let app = spawn_app().await;
    let path = "/api/v1/subscriptions";

    let invalid = app
        .send_json(
            Method::POST,
            path,
            &json!({ "name": "", "target_url": "ftp://example.com" }),
        )
        .await;
    assert_eq!(invalid.status(), 422);
    assert_eq!(
        invalid.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = invalid.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "target_url"]);

    let malformed = app
        .api
        .post(format!("{}{path}", app.address))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );

    let unknown_field = app
        .send_json(
            Method::POST,
            path,
            &json!({ "name": "x", "target_url": "https://e.com", "colour": "red" }),
        )
        .await;
    assert_eq!(unknown_field.status(), 400);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_pages_newest_first_and_filters_by_status() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let id = subscription["id"].as_str().unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let accepted: Value = app
            .ingest(
                subscription["ingest_url"].as_str().unwrap(),
                "application/json",
                format!(r#"{{"n":{n}}}"#),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(accepted["event_id"].as_str().unwrap().to_owned());
    }
    for event in &ids {
        app.wait_for_status(event, "completed").await;
    }

    let mut seen = Vec::new();
    let mut path = format!("/api/v1/subscriptions/{id}/events?limit=2");
    loop {
        let page: Value = app.get_json(&path).await;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["next_before"].as_str() {
            Some(before) => {
                path = format!("/api/v1/subscriptions/{id}/events?limit=2&before={before}")
            }
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let completed: Value = app
        .get_json(&format!(
            "/api/v1/subscriptions/{id}/events?status=completed"
        ))
        .await;
    assert_eq!(completed["data"].as_array().unwrap().len(), 5);
    let failed: Value = app
        .get_json(&format!("/api/v1/subscriptions/{id}/events?status=failed"))
        .await;
    assert_eq!(failed["data"], json!([]));
    assert_eq!(
        app.get(&format!("/api/v1/subscriptions/{id}/events?limit=0"))
            .await
            .status(),
        422
    );
    assert_eq!(
        app.get(&format!("/api/v1/subscriptions/{id}/events?status=done"))
            .await
            .status(),
        400
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_report_the_dependencies() {
    let app = spawn_app().await;
    let health: Value = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    // The broker connections open in the background, just after start.
    let ready = wait_until(Duration::from_secs(10), "readiness", || async {
        let response = app.get("/readyz").await;
        match response.status().as_u16() {
            200 => Ok(response.json::<Value>().await.unwrap()),
            status => Err(format!("{status}")),
        }
    })
    .await;
    assert_eq!(
        ready,
        json!({ "status": "ready", "database": "up", "broker": "up", "consumer": "up" })
    );
    let root = app.get("/").await;
    assert_eq!(
        root.status(),
        303,
        "the dashboard's root sends a visitor on"
    );
    assert_eq!(root.headers()["location"], "/login");
    app.shutdown().await;
}
