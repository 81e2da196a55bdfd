//! A thousand events, fifty at a time: every one accepted is delivered and completed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{Script, Sink, spawn_app, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_posted_fifty_at_a_time_are_all_delivered() {
    const EVENTS: usize = 1000;
    let app = Arc::new(spawn_app().await);
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url: Arc<str> = subscription["ingest_url"].as_str().unwrap().into();

    let accepted: HashSet<String> = futures_util::stream::iter(0..EVENTS)
        .map(|n| {
            let (app, ingest_url) = (app.clone(), ingest_url.clone());
            async move {
                let response = app
                    .ingest(&ingest_url, "application/json", format!(r#"{{"n":{n}}}"#))
                    .await;
                assert_eq!(response.status(), 202, "event {n}");
                let body: Value = response.json().await.unwrap();
                body["event_id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    assert_eq!(accepted.len(), EVENTS);

    wait_until(
        Duration::from_secs(120),
        "every accepted event at the sink",
        || async {
            let delivered = sink.unique_ids();
            if accepted.is_subset(&delivered) {
                Ok(())
            } else {
                Err(format!(
                    "{} of {EVENTS} delivered",
                    accepted.intersection(&delivered).count()
                ))
            }
        },
    )
    .await;
    let completed: i64 = wait_until(Duration::from_secs(30), "every event completed", || async {
        use spenza::db::schema::deliveries;
        let completed: i64 = deliveries::table
            .filter(deliveries::status.eq("completed"))
            .count()
            .get_result(&mut app.db().await)
            .await
            .unwrap();
        if completed == EVENTS as i64 {
            Ok(completed)
        } else {
            Err(format!("{completed} completed"))
        }
    })
    .await;
    assert_eq!(completed, EVENTS as i64);
    let duplicates = sink.received().len() - sink.unique_ids().len();
    println!("{EVENTS} accepted, {EVENTS} delivered, {duplicates} duplicate deliveries");
    sink.stop().await;
    Arc::into_inner(app)
        .expect("no other handle")
        .shutdown()
        .await;
}
