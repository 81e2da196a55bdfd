//! The event log, an event's page and replay, over plain HTTP.

use serde_json::Value;

use std::time::Duration;

use crate::helpers::{
    Dashboard, PASSWORD, Script, Sink, TestApp, spawn_app, spawn_app_with, wait_until,
};

/// The `data-event-id`s of a page's rows, in order.
fn event_ids(page: &str) -> Vec<String> {
    page.match_indices("data-event-id=\"")
        .map(|(at, marker)| {
            page[at + marker.len()..]
                .split('"')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// HTML text as the browser reads it (askama escapes `&`, `"` and `'` numerically).
fn unescape(html: &str) -> String {
    html.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
}

/// The href of the page's "Older events" link, unescaped.
fn older_link(page: &str) -> Option<String> {
    let at = page.find("rel=\"next\"")?;
    let start = page[..at].rfind("href=\"")? + "href=\"".len();
    Some(unescape(page[start..].split('"').next()?))
}

async fn subscription_with_events(
    app: &TestApp,
    dashboard: &Dashboard,
    sink: &Sink,
    bodies: &[&str],
) -> (String, Vec<String>) {
    let id = dashboard.create_subscription("log", &sink.url).await;
    let ingest_url = dashboard.ingest_url(&id).await;
    let mut events = Vec::new();
    for body in bodies {
        events.push(app.accept(&ingest_url, body).await);
    }
    (id, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_pages_by_keyset_without_showing_an_event_twice_or_skipping_one() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let dashboard = app.owner_dashboard().await;
    let bodies: Vec<String> = (0..120).map(|n| format!(r#"{{"n": {n}}}"#)).collect();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let (id, mut posted) = subscription_with_events(&app, &dashboard, &sink, &bodies).await;
    posted.reverse();
    for path in ["/events".to_owned(), format!("/subscriptions/{id}")] {
        let mut seen = Vec::new();
        let mut next = Some(path.clone());
        while let Some(page) = next {
            let html = dashboard.page(&page).await;
            seen.extend(event_ids(&html));
            next = older_link(&html);
            assert!(seen.len() <= posted.len(), "{path}: pages never end");
        }
        assert_eq!(seen, posted, "{path}: every event once, newest first");
    }
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filters_by_status_time_and_payload_and_explains_a_bad_filter() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let dashboard = app.owner_dashboard().await;
    let (_, events) = subscription_with_events(
        &app,
        &dashboard,
        &sink,
        &[
            r#"{"type": "invoice.paid", "amount": 1}"#,
            r#"{"type": "invoice.failed"}"#,
            r#"{"type": "invoice.paid", "amount": 2}"#,
        ],
    )
    .await;
    for event in &events {
        app.wait_for_status(event, "completed").await;
    }
    let paid = event_ids(
        &dashboard
            .page("/events?payload=%7B%22type%22%3A%20%22invoice.paid%22%7D")
            .await,
    );
    assert_eq!(paid, [events[2].clone(), events[0].clone()]);
    assert!(event_ids(&dashboard.page("/events?status=failed").await).is_empty());
    assert_eq!(
        event_ids(&dashboard.page("/events?status=completed").await).len(),
        3
    );
    assert!(event_ids(&dashboard.page("/events?since=2999-01-01T00:00").await).is_empty());
    assert_eq!(
        event_ids(&dashboard.page("/events?until=2999-01-01T00:00").await).len(),
        3
    );

    let bad = dashboard
        .get("/events?payload=%7Bnot%20json&status=completed")
        .await;
    assert_eq!(
        bad.status(),
        200,
        "a bad filter is a message, not an error page"
    );
    let html = bad.text().await.unwrap();
    assert!(html.contains("id=\"payload-error\""), "{html}");
    assert!(
        html.contains("value=\"{not json\""),
        "what was typed is kept"
    );
    assert_eq!(event_ids(&html).len(), 3, "the other filters still apply");

    // The API takes the same filters.
    let api: Value = app
        .get_json("/api/v1/events?payload=%7B%22type%22%3A%22invoice.failed%22%7D")
        .await;
    assert_eq!(api["data"].as_array().unwrap().len(), 1);
    assert_eq!(api["data"][0]["id"], events[1].as_str());
    let bad = app.get("/api/v1/events?payload=42").await;
    assert_eq!(bad.status(), 422);
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_page_shows_its_body_headers_and_attempts_and_replays_it() {
    // No retries: a failed attempt sends the event straight to the graveyard.
    let app = spawn_app_with(|s| s.retry_schedule = "".parse().unwrap()).await;
    let sink = Sink::start(Script::Always(500)).await;
    let dashboard = app.owner_dashboard().await;
    let id = dashboard.create_subscription("detail", &sink.url).await;
    let ingest_url = dashboard.ingest_url(&id).await;
    let json = app
        .accept(&ingest_url, r#"{"type":"invoice.paid","amount":4200}"#)
        .await;
    let binary = app
        .ingest(
            &ingest_url,
            "application/octet-stream",
            vec![0u8, 159, 146, 150],
        )
        .await;
    assert_eq!(binary.status(), 202);
    let binary: Value = binary.json().await.unwrap();
    let binary = binary["event_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&json, "failed").await;
    app.wait_for_status(&binary, "failed").await;

    let page = dashboard.page(&format!("/events/{json}")).await;
    assert!(
        unescape(&page).contains("{\n  \"amount\": 4200,\n  \"type\": \"invoice.paid\"\n}"),
        "pretty JSON: {page}"
    );
    assert!(page.contains("data-body-kind=\"json\""));
    assert!(page.contains("HTTP 500"), "the attempt and its status");
    assert!(page.contains("scripted 500"), "the stored response body");
    assert!(page.contains("content-type"), "the stored request headers");
    let binary_page = dashboard.page(&format!("/events/{binary}")).await;
    assert!(binary_page.contains("data-body-kind=\"binary\""));
    assert!(binary_page.contains("00 9f 92 96"), "a hex preview");
    assert!(binary_page.contains("4 bytes"));
    let graveyard = event_ids(&dashboard.page("/events?status=failed").await);
    assert_eq!(graveyard, [binary.clone(), json.clone()]);

    // Fixed endpoint, replayed from the page: delivered again, same webhook-id.
    assert!(page.contains("data-action=\"replay\""));
    sink.set_script(Script::Ok);
    let replayed = dashboard.post(&format!("/events/{json}/replay"), &[]).await;
    assert_eq!(replayed.status(), 303);
    assert_eq!(
        replayed.headers()["location"],
        format!("/events/{json}").as_str()
    );
    app.wait_for_status(&json, "completed").await;
    let deliveries = sink
        .received()
        .iter()
        .filter(|r| r.header("webhook-id") == Some(json.as_str()))
        .count();
    assert_eq!(deliveries, 2);

    // An event still to deliver (held by a paused subscription) cannot be replayed.
    dashboard
        .post(&format!("/subscriptions/{id}/pause"), &[])
        .await;
    let held = app.accept(&ingest_url, "{}").await;
    let page = dashboard.page(&format!("/events/{held}")).await;
    assert!(
        !page.contains("data-action=\"replay\""),
        "no replay while in flight"
    );
    let busy = dashboard.post(&format!("/events/{held}/replay"), &[]).await;
    assert_eq!(busy.status(), 409);
    assert!(
        busy.text()
            .await
            .unwrap()
            .contains("only completed or failed events")
    );

    // Another user sees neither the event nor its replay.
    app.another_user("intruder@example.com").await;
    let intruder = app.dashboard_login("intruder@example.com", PASSWORD).await;
    assert_eq!(intruder.get(&format!("/events/{json}")).await.status(), 404);
    assert_eq!(
        intruder
            .post(&format!("/events/{json}/replay"), &[])
            .await
            .status(),
        404
    );
    assert!(event_ids(&intruder.page("/events").await).is_empty());
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graveyard_replays_the_events_ticked_or_all_that_match() {
    let app = spawn_app_with(|s| s.retry_schedule = "".parse().unwrap()).await;
    let sink = Sink::start(Script::Always(500)).await;
    let dashboard = app.owner_dashboard().await;
    let (_, events) = subscription_with_events(
        &app,
        &dashboard,
        &sink,
        &[
            r#"{"type": "a"}"#,
            r#"{"type": "b"}"#,
            r#"{"type": "b"}"#,
            r#"{"type": "c"}"#,
        ],
    )
    .await;
    for event in &events {
        app.wait_for_status(event, "failed").await;
    }
    let graveyard = dashboard.page("/events?status=failed").await;
    assert!(graveyard.contains("data-action=\"replay-all\""));
    let first = app.delivery_of(&events[0]).await;
    assert!(graveyard.contains(&format!("name=\"delivery\" value=\"{first}\"")));
    sink.set_script(Script::Ok);

    // Ticked: only those, and only final ones of this user.
    let ticked = dashboard
        .post(
            "/events/replay",
            &[
                ("all", "0"),
                ("delivery", &first),
                ("delivery", "not-an-id"),
            ],
        )
        .await;
    assert_eq!(ticked.status(), 303);
    app.wait_for_status(&events[0], "completed").await;

    // All that match the page's filter, in the background: both "b" events, not "c".
    let all = dashboard
        .post(
            "/events/replay",
            &[("all", "1"), ("payload", r#"{"type": "b"}"#)],
        )
        .await;
    assert_eq!(all.status(), 303);
    let flash = crate::helpers::set_cookie(&all, "spenza_flash").expect("a message");
    assert!(!flash.is_empty());
    app.wait_for_status(&events[1], "completed").await;
    app.wait_for_status(&events[2], "completed").await;
    assert_eq!(app.event(&events[3]).await["status"], "failed");
    assert!(
        dashboard
            .page("/events?status=failed")
            .await
            .contains(&events[3])
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriptions_page_charts_its_deliveries_and_latency_in_svg() {
    let app = spawn_app_with(|s| s.retry_schedule = "".parse().unwrap()).await;
    let sink = Sink::start(Script::FailFirst(1, 500)).await;
    let dashboard = app.owner_dashboard().await;
    let (id, events) = subscription_with_events(&app, &dashboard, &sink, &["{}", "{}", "{}"]).await;
    for event in &events {
        wait_until(Duration::from_secs(30), "a final status", || async {
            let status = app.event(event).await["status"].clone();
            if status == "completed" || status == "failed" {
                Ok(())
            } else {
                Err(status.to_string())
            }
        })
        .await;
    }
    let page = dashboard.page(&format!("/subscriptions/{id}")).await;
    for chart in [
        "deliveries-hour",
        "deliveries-day",
        "latency-hour",
        "latency-day",
    ] {
        assert!(
            page.contains(&format!("<svg data-chart=\"{chart}\"")),
            "{chart}"
        );
        assert!(
            page.contains(&format!("<desc id=\"{chart}-desc\">")),
            "{chart}: a text alternative"
        );
    }
    let text = unescape(&page);
    assert!(
        text.contains("Deliveries per minute, last hour: 3 delivery attempts, 2 of them delivered (2xx), 1 not."),
        "{text}"
    );
    assert!(page.contains("class=\"seg-ok\""), "a bar for the delivered");
    assert!(page.contains("class=\"seg-error\""), "and one for the 5xx");
    assert!(page.contains("<polyline class=\"line-p95\""));
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_chart_counts_a_settled_hour_once_and_the_last_hour_as_it_happens() {
    use diesel::sql_types::Uuid;
    use diesel_async::RunQueryDsl;
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    // Through the API: no page of the subscription has been shown (no hour counted) yet.
    let created = app.create_subscription(&sink.url).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ingest_url = created["ingest_url"].as_str().unwrap().to_owned();
    let first = app.accept(&ingest_url, "{}").await;
    app.wait_for_status(&first, "completed").await;
    let delivery = uuid::Uuid::parse_str(&app.delivery_of(&first).await).unwrap();
    let subscription = uuid::Uuid::parse_str(&id).unwrap();
    let dashboard = app.owner_dashboard().await;
    let day = async || {
        let text = unescape(&dashboard.page(&format!("/subscriptions/{id}")).await);
        let start = text
            .find("Deliveries per hour, last 24 hours: ")
            .expect("the day's chart says what it shows");
        text[start..].split('.').next().unwrap().to_owned()
    };
    // Five attempts three hours ago, an hour long settled.
    let mut conn = app.db().await;
    diesel::sql_query(
        "INSERT INTO delivery_attempts \
             (delivery_id, attempt, started_at, duration_ms, status_code, subscription_id) \
         SELECT $1, n, now() - interval '3 hours', 40, 200, $2 FROM generate_series(10, 14) AS n",
    )
    .bind::<Uuid, _>(delivery)
    .bind::<Uuid, _>(subscription)
    .execute(&mut conn)
    .await
    .unwrap();
    let counted =
        "Deliveries per hour, last 24 hours: 6 delivery attempts, 6 of them delivered (2xx), 0 not";
    assert_eq!(day().await, counted);
    // Once counted, the hour is read from its count: the attempts are no longer looked at.
    diesel::sql_query("DELETE FROM delivery_attempts WHERE delivery_id = $1 AND attempt >= 10")
        .bind::<Uuid, _>(delivery)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(day().await, counted);
    // The last hour is counted as it happens.
    let another = app.accept(&ingest_url, "{}").await;
    app.wait_for_status(&another, "completed").await;
    assert_eq!(
        day().await,
        "Deliveries per hour, last 24 hours: 7 delivery attempts, 7 of them delivered (2xx), 0 not"
    );
    sink.stop().await;
    app.shutdown().await;
}
