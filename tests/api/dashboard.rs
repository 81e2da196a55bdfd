//! The dashboard over plain HTTP, as a browser without JavaScript uses it: accounts, sessions,
//! CSRF, subscription pages, API keys, tenant isolation.

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_user_sees_their_subscription_and_its_ingest_url() {
    let app = spawn_app().await;
    let dashboard = app.owner_dashboard().await;
    let id = dashboard
        .create_subscription("payments", "http://127.0.0.1:9/hooks")
        .await;
    let shown = dashboard.ingest_url(&id).await;
    let api = app.get_json(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(shown, api["ingest_url"].as_str().unwrap());
    let list = dashboard.page("/subscriptions").await;
    assert!(list.contains("payments"), "{list}");
    app.shutdown().await;
}
