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
    let event = app
        .accept(subscription["ingest_url"].as_str().unwrap(), "{}")
        .await;
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
        (Method::POST, format!("/api/v1/events/{event}/replay"), None),
        (
            Method::POST,
            format!("/api/v1/subscriptions/{sub}/replay"),
            Some(json!({ "status": "completed" })),
        ),
        (
            Method::POST,
            format!("/api/v1/subscriptions/{sub}/rotate-secret"),
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
    for listing in ["/api/v1/subscriptions", "/api/v1/events"] {
        let theirs: Value = app
            .api
            .get(format!("{}{listing}", app.address))
            .bearer_auth(&intruder)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            theirs["data"],
            json!([]),
            "{listing} lists another user's data"
        );
    }

    // The owner's data is untouched.
    let still: Value = app.get_json(&format!("/api/v1/subscriptions/{sub}")).await;
    assert_eq!(still["name"], "test subscription");
    assert_eq!(still["signing_secret"], subscription["signing_secret"]);
    let event = app.event(&event).await;
    assert_eq!(
        (event["status"].as_str(), event["attempts"].as_i64()),
        (Some("completed"), Some(1))
    );
    let owned: Value = app.get_json("/api/v1/events").await;
    assert_eq!(owned["data"].as_array().unwrap().len(), 1);
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
