//! The sources pages in headless Chromium, on a desktop and on a phone: the list, the form with
//! a problem, and a source's page with its subscriptions and events, none of them spilling
//! sideways.

use reqwest::Method;
use serde_json::{Value, json};

use crate::browser::{Browser, BrowserOptions, Screen};
use crate::dashboard_browser::{log_in, screenshot_path};
use crate::helpers::{Script, Sink, TestApp, spawn_app};

/// Whether the page is wider than the screen, a table scrolls sideways in its frame, or a card
/// or fieldset is wider than the room it has.
pub(crate) async fn spills(browser: &Browser) -> bool {
    let script = "return document.documentElement.scrollWidth > window.innerWidth \
                  || [...document.querySelectorAll('.table-wrap, .card, fieldset')] \
                         .some(box => box.scrollWidth > box.clientWidth + 1);";
    browser.execute(script).await == Value::Bool(true)
}

/// Creates something through the JSON API as the owner; returns its JSON.
async fn api(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let response = app.send_json(method, path, &body).await;
    assert!(response.status().is_success(), "{path} {body}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_read_at_a_glance_on_a_desktop_and_a_phone() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;

    // No source yet: the list says what to do; the form shows a problem beside its field.
    let browser = Browser::start().await;
    log_in(&browser, &app.address).await;
    browser.click("nav.mainnav a[href='/sources']").await;
    browser
        .wait_for("nav.mainnav a[href='/sources'][aria-current='page']")
        .await;
    assert!(
        browser
            .text("main")
            .await
            .contains("Give each provider an address")
    );
    browser
        .screenshot(screenshot_path("desktop-sources-empty.png"))
        .await;
    browser.click("main a[href='/sources/new']").await;
    browser.wait_for("form[action='/sources']").await;
    browser
        .execute("document.getElementById('provider_kind').value = 'stripe';")
        .await;
    browser
        .click("form[action='/sources'] button[type='submit']")
        .await;
    assert_eq!(browser.text("#name-error").await, "a name is required");
    assert!(
        browser
            .text("#provider_secret-error")
            .await
            .contains("secret")
    );
    browser
        .screenshot(screenshot_path("desktop-source-form-error.png"))
        .await;
    browser.fill("name", "Stripe").await;
    browser.fill("provider_secret", "whsec_browser").await;
    browser
        .click("form[action='/sources'] button[type='submit']")
        .await;
    browser.wait_for("[data-ingest-url]").await;
    assert_eq!(browser.text("[data-provider-check]").await, "Stripe");
    assert!(browser.text("main").await.contains("No subscription yet"));
    browser
        .screenshot(screenshot_path("desktop-source-new.png"))
        .await;
    browser.close().await;

    // A source with three subscriptions (one filtered, one paused) and three events.
    let shop = api(
        &app,
        Method::POST,
        "/api/v1/sources",
        json!({"name": "Shop"}),
    )
    .await;
    let mut subscriptions = Vec::new();
    for (name, filter) in [
        ("ledger", Value::Null),
        ("receipts", json!({"body": {"type": "invoice.paid"}})),
        ("analytics", Value::Null),
    ] {
        let created = api(
            &app,
            Method::POST,
            "/api/v1/subscriptions",
            json!({
                "name": name,
                "target_url": sink.url,
                "source_id": shop["id"],
                "filter": filter,
            }),
        )
        .await;
        subscriptions.push(created["id"].as_str().unwrap().to_owned());
    }
    api(
        &app,
        Method::PATCH,
        &format!("/api/v1/subscriptions/{}", subscriptions[2]),
        json!({"is_active": false}),
    )
    .await;
    let ingest_url = shop["ingest_url"].as_str().unwrap();
    for kind in ["invoice.paid", "invoice.created", "customer.updated"] {
        app.accept(ingest_url, &json!({ "type": kind }).to_string())
            .await;
    }
    let shop = shop["id"].as_str().unwrap();

    for (screen, run) in [(Screen::Desktop, "desktop"), (Screen::Phone, "phone")] {
        let browser = Browser::start_with(BrowserOptions {
            javascript: true,
            screen,
        })
        .await;
        log_in(&browser, &app.address).await;
        browser.goto(&format!("{}/sources", app.address)).await;
        let row = format!("tr[data-source-id='{shop}']");
        browser.wait_for(&row).await;
        assert_eq!(
            browser
                .attr(&format!("{row} [data-events-24h]"), "data-events-24h")
                .await
                .as_deref(),
            Some("3")
        );
        assert!(browser.text("main").await.contains("Stripe"), "{run}");
        assert!(!spills(&browser).await, "{run}: the list spills sideways");
        browser
            .screenshot(screenshot_path(&format!("{run}-sources.png")))
            .await;

        browser
            .goto(&format!("{}/sources/{shop}", app.address))
            .await;
        browser.wait_for("tr[data-event-id]").await;
        let matched = async |subscription: &str| {
            browser
                .attr(
                    &format!("tr[data-subscription-id='{subscription}'] [data-matched]"),
                    "data-matched",
                )
                .await
        };
        assert_eq!(matched(&subscriptions[0]).await.as_deref(), Some("3"));
        assert_eq!(matched(&subscriptions[1]).await.as_deref(), Some("1"));
        assert_eq!(matched(&subscriptions[2]).await.as_deref(), Some("3"));
        let table = browser.text("table.source-subscriptions").await;
        assert!(table.contains(r#"body.type = "invoice.paid""#), "{table}");
        assert!(
            table.contains("every event") && table.contains("Paused"),
            "{table}"
        );
        assert_eq!(
            browser
                .execute("return document.querySelectorAll('tr[data-event-id]').length;")
                .await,
            json!(3)
        );
        assert!(!spills(&browser).await, "{run}: the source spills sideways");
        browser
            .screenshot(screenshot_path(&format!("{run}-source.png")))
            .await;
        browser
            .execute("document.querySelector('table.source-subscriptions').scrollIntoView();")
            .await;
        browser
            .screenshot(screenshot_path(&format!("{run}-source-below.png")))
            .await;
        browser.close().await;
    }
    sink.stop().await;
    app.shutdown().await;
}
