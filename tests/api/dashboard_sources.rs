//! The sources pages over plain HTTP, as a browser without JavaScript uses them: the list,
//! create, a source's page with its subscriptions and events, edit, delete, tenant isolation.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::Method;
use serde_json::{Value, json};
use spenza::db::schema::{deliveries, delivery_attempts, events, sources};

use crate::helpers::{Dashboard, PASSWORD, Script, Sink, TestApp, set_cookie, spawn_app};

fn location(response: &reqwest::Response) -> &str {
    response.headers()["location"].to_str().unwrap()
}

async fn source_count(app: &TestApp) -> i64 {
    sources::table
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap()
}

/// The provider check stored for the source, secret included.
async fn stored_provider(app: &TestApp, id: &str) -> Option<Value> {
    sources::table
        .filter(sources::id.eq(uuid::Uuid::parse_str(id).unwrap()))
        .select(sources::provider)
        .first(&mut app.db().await)
        .await
        .unwrap()
}

/// Creates a source through the form; returns its id.
async fn create_source(dashboard: &Dashboard, fields: &[(&str, &str)]) -> String {
    let response = dashboard.post("/sources", fields).await;
    assert_eq!(response.status(), 303, "creating a source from {fields:?}");
    location(&response)
        .strip_prefix("/sources/")
        .expect("redirected to the new source")
        .to_owned()
}

/// Creates something through the JSON API as the owner; returns its JSON.
async fn api_create(app: &TestApp, path: &str, body: Value) -> Value {
    let response = app.send_json(Method::POST, path, &body).await;
    assert_eq!(response.status(), 201, "POST {path} {body}");
    response.json().await.unwrap()
}

/// The table row of a page that carries `attribute="id"`, from `<tr` to `</tr>`.
fn row<'a>(page: &'a str, attribute: &str, id: &str) -> &'a str {
    let marker = format!("{attribute}=\"{id}\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no row with {marker} in:\n{page}"));
    let start = page[..at].rfind("<tr").expect("the row starts");
    let end = at + page[at..].find("</tr>").expect("the row ends");
    &page[start..end]
}

/// The ingest URL a source's page shows in `[data-ingest-url]`.
fn ingest_url_in(page: &str) -> String {
    let marker = "data-ingest-url=\"";
    let start = page.find(marker).expect("the page shows the ingest URL") + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sources_page_starts_empty_and_tells_what_to_do() {
    let app = spawn_app().await;
    let page = app.owner_dashboard().await.page("/sources").await;
    assert!(page.contains("Give each provider an address"), "{page}");
    assert!(page.contains("class=\"button primary\" href=\"/sources/new\""));
    assert!(!page.contains("data-source-id"), "no rows: {page}");
    assert!(
        page.contains("href=\"/sources\" aria-current=\"page\""),
        "Sources is the current navigation item"
    );
    let nav = page.find("href=\"/sources\"").unwrap();
    assert!(
        nav < page.find("href=\"/subscriptions\"").unwrap(),
        "Sources comes before Subscriptions"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_created_from_the_form_and_a_blank_name_is_shown_beside_its_field() {
    let app = spawn_app().await;
    let dashboard = app.owner_dashboard().await;
    let form = dashboard.page("/sources/new").await;
    assert!(form.contains("form method=\"post\" action=\"/sources\""));
    assert!(
        form.contains("value=\"none\" selected"),
        "no check by default"
    );

    let refused = dashboard
        .post(
            "/sources",
            &[
                ("name", "  "),
                ("provider_kind", "github"),
                ("provider_secret", "gh-s3cret-value"),
            ],
        )
        .await;
    assert_eq!(refused.status(), 422);
    let page = refused.text().await.unwrap();
    assert!(page.contains("id=\"name-error\""), "{page}");
    assert!(page.contains("a name is required"), "{page}");
    assert!(
        page.contains("value=\"github\" selected"),
        "the choice is kept"
    );
    assert!(
        !page.contains("gh-s3cret-value"),
        "a provider secret is never rendered back"
    );
    let missing_secret = dashboard
        .post(
            "/sources",
            &[("name", "stripe"), ("provider_kind", "stripe")],
        )
        .await;
    assert_eq!(missing_secret.status(), 422);
    let page = missing_secret.text().await.unwrap();
    assert!(page.contains("id=\"provider_secret-error\""), "{page}");
    assert!(page.contains("value=\"stripe\""), "the name is kept");
    assert_eq!(source_count(&app).await, 0);

    let created = dashboard
        .post(
            "/sources",
            &[
                ("name", "Stripe live"),
                ("provider_kind", "stripe"),
                ("provider_secret", "whsec_s3cret"),
            ],
        )
        .await;
    assert_eq!(created.status(), 303);
    assert!(set_cookie(&created, "spenza_flash").is_some(), "a message");
    let id = location(&created)
        .strip_prefix("/sources/")
        .unwrap()
        .to_owned();
    let page = dashboard.page(&format!("/sources/{id}")).await;
    assert!(page.contains("<h1>Stripe live</h1>"), "{page}");
    assert!(
        page.contains("<span data-provider-check>Stripe</span>"),
        "{page}"
    );
    assert!(page.contains("curl -X POST"), "a ready-to-paste curl line");
    assert!(!page.contains("whsec_s3cret"), "the secret is never shown");
    let api = app.get_json(&format!("/api/v1/sources/{id}")).await;
    assert_eq!(ingest_url_in(&page), api["ingest_url"].as_str().unwrap());
    assert_eq!(
        stored_provider(&app, &id).await.unwrap()["secret"],
        "whsec_s3cret"
    );

    let list = dashboard.page("/sources").await;
    let line = row(&list, "data-source-id", &id);
    assert!(
        line.contains("Stripe live") && line.contains(">Stripe<"),
        "{line}"
    );
    assert!(line.contains(api["ingest_url"].as_str().unwrap()), "{line}");
    assert!(line.contains("data-copy="), "a copy button: {line}");
    assert!(line.contains("data-subscriptions=\"0\""), "{line}");
    assert!(line.contains("data-events-24h=\"0\""), "{line}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_page_lists_its_subscriptions_with_their_filters_and_what_each_matched() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let dashboard = app.owner_dashboard().await;
    let source = api_create(&app, "/api/v1/sources", json!({"name": "billing"})).await;
    let id = source["id"].as_str().unwrap();
    let everything = api_create(
        &app,
        "/api/v1/subscriptions",
        json!({"name": "ledger", "target_url": sink.url, "source_id": id}),
    )
    .await;
    let paid = api_create(
        &app,
        "/api/v1/subscriptions",
        json!({
            "name": "receipts",
            "target_url": sink.url,
            "source_id": id,
            "filter": {"body": {"type": "invoice.paid"}},
        }),
    )
    .await;
    let (everything, paid) = (
        everything["id"].as_str().unwrap(),
        paid["id"].as_str().unwrap(),
    );

    let page = dashboard.page(&format!("/sources/{id}")).await;
    assert!(
        page.contains("data-empty=\"events\""),
        "no event yet: {page}"
    );
    assert!(page.contains(&format!("href=\"/subscriptions/new?source_id={id}\"")));
    assert!(page.contains(&format!("href=\"/sources/{id}/edit\"")));
    assert!(page.contains(&format!("href=\"/sources/{id}/delete\"")));

    let ingest_url = ingest_url_in(&page);
    let first = app.accept(&ingest_url, r#"{"type": "invoice.paid"}"#).await;
    let second = app
        .accept(&ingest_url, r#"{"type": "invoice.created"}"#)
        .await;

    let page = dashboard.page(&format!("/sources/{id}")).await;
    let ledger = row(&page, "data-subscription-id", everything);
    assert!(
        ledger.contains(&format!("href=\"/subscriptions/{everything}\"")),
        "{ledger}"
    );
    assert!(ledger.contains(">Active<"), "{ledger}");
    assert!(ledger.contains("every event"), "{ledger}");
    assert!(ledger.contains("data-matched=\"2\""), "{ledger}");
    let receipts = row(&page, "data-subscription-id", paid);
    assert!(receipts.contains("receipts") && receipts.contains(">Active<"));
    assert!(
        receipts.contains("body.type = &#34;invoice.paid&#34;"),
        "the filter's summary: {receipts}"
    );
    assert!(receipts.contains("data-matched=\"1\""), "{receipts}");
    assert!(!page.contains("data-empty=\"events\""), "{page}");
    for event in [&first, &second] {
        let line = row(&page, "data-event-id", event);
        assert!(
            line.contains(&format!("href=\"/events/{event}\"")),
            "{line}"
        );
        assert!(line.contains("class=\"badge status-"), "{line}");
    }
    assert!(
        page.find(&second).unwrap() < page.find(&first).unwrap(),
        "newest first"
    );
    assert!(row(&page, "data-event-id", &first).contains("2 subscriptions"));
    assert!(row(&page, "data-event-id", &second).contains("1 subscription<"));

    let list = dashboard.page("/sources").await;
    let line = row(&list, "data-source-id", id);
    assert!(line.contains("data-subscriptions=\"2\""), "{line}");
    assert!(line.contains("data-events-24h=\"2\""), "{line}");
    assert!(
        line.contains("<span class=\"muted\">none</span>"),
        "no check: {line}"
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_renamed_and_a_blank_secret_keeps_its_provider_check() {
    let app = spawn_app().await;
    let dashboard = app.owner_dashboard().await;
    let id = create_source(
        &dashboard,
        &[
            ("name", "github"),
            ("provider_kind", "github"),
            ("provider_secret", "gh-webhook-secret"),
        ],
    )
    .await;
    let edit = dashboard.page(&format!("/sources/{id}/edit")).await;
    assert!(
        edit.contains(&format!("action=\"/sources/{id}\"")),
        "{edit}"
    );
    assert!(edit.contains("value=\"github\" selected"), "{edit}");
    assert!(edit.contains("unchanged unless you type a new one"));
    assert!(!edit.contains("gh-webhook-secret"));

    let blank = dashboard
        .post(
            &format!("/sources/{id}"),
            &[("name", ""), ("provider_kind", "github")],
        )
        .await;
    assert_eq!(blank.status(), 422);
    assert!(blank.text().await.unwrap().contains("id=\"name-error\""));

    let saved = dashboard
        .post(
            &format!("/sources/{id}"),
            &[("name", "GitHub org"), ("provider_kind", "github")],
        )
        .await;
    assert_eq!(saved.status(), 303);
    assert_eq!(location(&saved), format!("/sources/{id}"));
    assert!(set_cookie(&saved, "spenza_flash").is_some(), "a message");
    let page = dashboard.page(&format!("/sources/{id}")).await;
    assert!(page.contains("<h1>GitHub org</h1>"), "{page}");
    assert_eq!(
        stored_provider(&app, &id).await.unwrap()["secret"],
        "gh-webhook-secret",
        "a blank secret keeps the stored one"
    );

    let dropped = dashboard
        .post(
            &format!("/sources/{id}"),
            &[("name", "GitHub org"), ("provider_kind", "none")],
        )
        .await;
    assert_eq!(dropped.status(), 303);
    assert_eq!(stored_provider(&app, &id).await, None);
    let page = dashboard.page(&format!("/sources/{id}")).await;
    assert!(page.contains("<span data-provider-check class=\"muted\">none</span>"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_source_asks_first_and_then_its_ingest_url_answers_404() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let dashboard = app.owner_dashboard().await;
    let source = api_create(&app, "/api/v1/sources", json!({"name": "shopify"})).await;
    let id = source["id"].as_str().unwrap();
    let subscription = api_create(
        &app,
        "/api/v1/subscriptions",
        json!({"name": "orders", "target_url": sink.url, "source_id": id}),
    )
    .await;
    let ingest_url = source["ingest_url"].as_str().unwrap();
    let event = app.accept(ingest_url, r#"{"order": 1}"#).await;
    app.wait_for_status(&event, "completed").await;

    let confirm = dashboard.page(&format!("/sources/{id}/delete")).await;
    assert!(
        confirm.contains("Its ingest URL stops working"),
        "{confirm}"
    );
    assert!(confirm.contains("<li>orders</li>"), "{confirm}");
    assert!(confirm.contains(&format!("action=\"/sources/{id}/delete\"")));
    assert_eq!(source_count(&app).await, 1, "asking deletes nothing");

    let deleted = dashboard.post(&format!("/sources/{id}/delete"), &[]).await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(location(&deleted), "/sources");
    assert!(set_cookie(&deleted, "spenza_flash").is_some(), "a message");
    assert!(!dashboard.page("/sources").await.contains("shopify"));
    let posted = app.ingest(ingest_url, "application/json", "{}").await;
    assert_eq!(posted.status(), 404, "the ingest URL stopped working");
    assert_eq!(dashboard.get(&format!("/sources/{id}")).await.status(), 404);
    let subscription = format!(
        "/api/v1/subscriptions/{}",
        subscription["id"].as_str().unwrap()
    );
    assert_eq!(app.get(&subscription).await.status(), 404);
    let mut conn = app.db().await;
    let left = (
        events::table
            .count()
            .get_result::<i64>(&mut conn)
            .await
            .unwrap(),
        deliveries::table
            .count()
            .get_result::<i64>(&mut conn)
            .await
            .unwrap(),
        delivery_attempts::table
            .count()
            .get_result::<i64>(&mut conn)
            .await
            .unwrap(),
    );
    assert_eq!(
        left,
        (0, 0, 0),
        "its events, their deliveries and their attempts went with it"
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_source_is_404_on_every_page_and_in_no_list() {
    let app = spawn_app().await;
    let owner = app.owner_dashboard().await;
    let id = create_source(
        &owner,
        &[
            ("name", "owners-source"),
            ("provider_kind", "slack"),
            ("provider_secret", "slack-signing-secret"),
        ],
    )
    .await;
    app.another_user("intruder@example.com").await;
    let intruder = app.dashboard_login("intruder@example.com", PASSWORD).await;
    for path in [
        format!("/sources/{id}"),
        format!("/sources/{id}/edit"),
        format!("/sources/{id}/delete"),
    ] {
        let response = intruder.get(&path).await;
        assert_eq!(response.status(), 404, "GET {path}");
        assert!(response.text().await.unwrap().contains("<html"));
    }
    for (path, fields) in [
        (
            format!("/sources/{id}"),
            vec![("name", "mine"), ("provider_kind", "none")],
        ),
        (format!("/sources/{id}/delete"), vec![]),
    ] {
        assert_eq!(
            intruder.post(&path, &fields).await.status(),
            404,
            "POST {path}"
        );
    }
    let list = intruder.page("/sources").await;
    assert!(
        !list.contains("owners-source") && !list.contains(&id),
        "{list}"
    );
    let untouched = app.get_json(&format!("/api/v1/sources/{id}")).await;
    assert_eq!(untouched["name"], "owners-source");
    assert_eq!(untouched["provider"]["kind"], "slack");
    assert_eq!(source_count(&app).await, 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lists_count_a_settled_hour_once_and_the_last_hour_as_it_happens() {
    use diesel::sql_types::Uuid;
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let dashboard = app.owner_dashboard().await;
    let source = api_create(&app, "/api/v1/sources", json!({"name": "billing"})).await;
    // Through the API: no page has been shown (no hour counted) yet.
    let ingest_url = source["ingest_url"].as_str().unwrap().to_owned();
    let source = source["id"].as_str().unwrap().to_owned();
    let subscription = api_create(
        &app,
        "/api/v1/subscriptions",
        json!({"name": "ledger", "target_url": sink.url, "source_id": source}),
    )
    .await;
    let subscription = subscription["id"].as_str().unwrap().to_owned();
    let first = app.accept(&ingest_url, "{}").await;
    app.wait_for_status(&first, "completed").await;
    // Three more events three hours ago, an hour long settled, each with its delivery: copies of
    // the first with ids of then.
    let mut conn = app.db().await;
    let copied = diesel::sql_query(
        "WITH copies AS (SELECT overlay(first_id_at(now() - interval '3 hours')::text \
                 PLACING substr(gen_random_uuid()::text, 20) FROM 20)::uuid AS id \
             FROM generate_series(1, 3)), \
         new_events AS (INSERT INTO events \
             SELECT (jsonb_populate_record(NULL::events, to_jsonb(e) || jsonb_build_object( \
                 'id', copies.id, 'received_at', now() - interval '3 hours'))).* \
             FROM events e, copies WHERE e.id = $1 RETURNING id) \
         INSERT INTO deliveries \
         SELECT (jsonb_populate_record(NULL::deliveries, to_jsonb(d) || jsonb_build_object( \
             'id', new_events.id, 'event_id', new_events.id))).* \
         FROM deliveries d, new_events WHERE d.event_id = $1",
    )
    .bind::<Uuid, _>(uuid::Uuid::parse_str(&first).unwrap())
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(copied, 3);
    let counts = async || {
        let sources = dashboard.page("/sources").await;
        let subscriptions = dashboard.page("/subscriptions").await;
        let page = dashboard.page(&format!("/sources/{source}")).await;
        let number = |row: &str, attribute: &str| -> i64 {
            let marker = format!("{attribute}=\"");
            let at = row
                .find(&marker)
                .unwrap_or_else(|| panic!("{marker} in {row}"));
            row[at + marker.len()..]
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (
            number(row(&sources, "data-source-id", &source), "data-events-24h"),
            number(
                row(&subscriptions, "data-subscription-id", &subscription),
                "data-events-24h",
            ),
            number(
                row(&page, "data-subscription-id", &subscription),
                "data-matched",
            ),
        )
    };
    assert_eq!(counts().await, (4, 4, 4));
    // Once counted, the hour is read from its counts: its rows are no longer looked at.
    diesel::sql_query(
        "DELETE FROM events WHERE source_id = $1 AND id < first_id_at(now() - interval '1 hour')",
    )
    .bind::<Uuid, _>(uuid::Uuid::parse_str(&source).unwrap())
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("DELETE FROM deliveries WHERE subscription_id = $1 AND id < first_id_at(now() - interval '1 hour')")
        .bind::<Uuid, _>(uuid::Uuid::parse_str(&subscription).unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(counts().await, (4, 4, 4));
    // The last hour is counted as it happens.
    let another = app.accept(&ingest_url, "{}").await;
    app.wait_for_status(&another, "completed").await;
    assert_eq!(counts().await, (5, 5, 5));
    sink.stop().await;
    app.shutdown().await;
}
