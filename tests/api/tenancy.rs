//! Tenant isolation: a key sees only its own user's data; everything else is 404.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Script, Sink, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_shows_or_changes_another_users_data() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let sub = subscription["id"].as_str().unwrap().to_owned();
    let accepted: Value = app
        .ingest(
            subscription["ingest_url"].as_str().unwrap(),
            "application/json",
            "{}",
        )
        .await
        .json()
        .await
        .unwrap();
    let event = accepted["event_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&event, "completed").await;
    let intruder = app.another_user("intruder@example.com").await;

    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/subscriptions/{sub}"), None),
        (
            Method::PATCH,
            format!("/api/v1/subscriptions/{sub}"),
            Some(json!({ "name": "mine now" })),
        ),
        (Method::DELETE, format!("/api/v1/subscriptions/{sub}"), None),
        (
            Method::GET,
            format!("/api/v1/subscriptions/{sub}/events"),
            None,
        ),
        (Method::GET, format!("/api/v1/events/{event}"), None),
        (
            Method::GET,
            format!("/api/v1/events/{event}/attempts"),
            None,
        ),
    ];
    for (method, path, body) in &routes {
        let mut request = app
            .api
            .request(method.clone(), format!("{}{path}", app.address))
            .bearer_auth(&intruder);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            404,
            "{method} {path} with another user's key"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let theirs: Value = app
        .api
        .get(format!("{}/api/v1/subscriptions", app.address))
        .bearer_auth(&intruder)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["data"], json!([]));

    // The owner's data is untouched.
    let still: Value = app.get_json(&format!("/api/v1/subscriptions/{sub}")).await;
    assert_eq!(still["name"], "test subscription");
    assert_eq!(app.event(&event).await["status"], "completed");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_requests_without_a_valid_key() {
    let app = spawn_app().await;
    let url = format!("{}/api/v1/subscriptions", app.address);
    for key in [None, Some("spz_not-a-real-key"), Some("")] {
        let mut request = app.api.get(&url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "key {key:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    app.shutdown().await;
}
