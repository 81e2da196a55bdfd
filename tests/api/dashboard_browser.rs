//! The dashboard as a person uses it: the real app in headless Chromium, once with JavaScript
//! (htmx boosting every link and form) and once without (plain forms and links).

use std::path::PathBuf;
use std::time::Duration;

use crate::browser::{Browser, BrowserOptions, Screen};
use spenza::config::DEFAULT_RETRY_SCHEDULE;

use crate::helpers::{
    Dashboard, OWNER_EMAIL, PASSWORD, RelayProcess, Script, Sink, TestResources,
    create_user_with_key, spawn_app, spawn_app_with, spawn_fresh_app_with, wait_until,
};

/// Where a test leaves its screenshots, to look at after a run.
pub(crate) fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(name)
}

/// A PNG's width and height, from its header.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (number(16), number(20))
}

/// A new user's first session, start to finish: claim the install, create a subscription
/// through the form, post events to its ingest URL, pause and resume it, create and revoke an
/// API key, log out. Screenshots are named after `run`.
async fn first_session(options: BrowserOptions, run: &str) {
    let app = spawn_fresh_app_with(|_| {}).await;
    let sink = Sink::start(Script::Ok).await;
    let browser = Browser::start_with(options).await;
    let shot = |page: &str| screenshot_path(&format!("{run}-{page}.png"));
    let http = reqwest::Client::new();

    // A fresh install sends its first visitor to sign up.
    browser.goto(&format!("{}/", app.address)).await;
    browser.wait_for("form[action='/signup']").await;
    assert_eq!(browser.current_url().await.path(), "/signup");
    browser.fill("email", "ada@example.com").await;
    browser.fill("password", PASSWORD).await;
    browser
        .click("form[action='/signup'] button[type='submit']")
        .await;
    browser.wait_for("nav.mainnav").await;
    assert_eq!(browser.text("h1").await, "Subscriptions");
    assert!(browser.text(".flash").await.contains("Welcome"));
    browser.screenshot(shot("subscriptions-empty")).await;

    // A subscription through the form.
    browser.click("main a[href='/subscriptions/new']").await;
    browser.wait_for("form[action='/subscriptions']").await;
    browser.fill("name", "payments").await;
    browser.fill("target_url", &sink.url).await;
    browser.screenshot(shot("subscription-new")).await;
    browser
        .click("form[action='/subscriptions'] button.primary[type='submit']")
        .await;
    let ingest_url = browser
        .attr("[data-ingest-url]", "data-ingest-url")
        .await
        .expect("the ingest URL");
    assert!(ingest_url.starts_with(&format!("{}/ingest/", app.address)));
    let page_url = browser.current_url().await;
    assert!(
        page_url.path().starts_with("/subscriptions/"),
        "the subscription's own page is in the address bar: {page_url}"
    );

    // The provider posts an event; it reaches the endpoint.
    let post = |body: &'static str| {
        let (http, ingest_url) = (&http, &ingest_url);
        async move {
            let response = http
                .post(ingest_url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202, "ingest of {body}");
        }
    };
    post(r#"{"type": "invoice.paid"}"#).await;
    sink.wait_for_requests(1).await;
    browser.goto(page_url.as_str()).await;
    browser.wait_for("tr[data-event-id]").await;
    browser.screenshot(shot("subscription")).await;

    // Paused, it holds events; resumed, it delivers them.
    browser.click("button[data-action='pause']").await;
    browser.wait_for("button[data-action='resume']").await;
    assert_eq!(browser.text("h1 .badge").await, "Paused");
    post(r#"{"type": "invoice.held"}"#).await;
    browser.screenshot(shot("subscription-paused")).await;
    browser.click("button[data-action='resume']").await;
    browser.wait_for("button[data-action='pause']").await;
    assert_eq!(browser.text("h1 .badge").await, "Active");
    let received = sink.wait_for_requests(2).await;
    assert!(String::from_utf8_lossy(&received[1].body).contains("invoice.held"));

    browser.click("nav.mainnav a[href='/subscriptions']").await;
    browser.wait_for("tr[data-subscription-id]").await;
    browser.screenshot(shot("subscriptions")).await;

    // The event log and the graveyard (empty here) say how long events are kept.
    browser.click("nav.mainnav a[href='/events']").await;
    browser.wait_for("tr[data-event-id]").await;
    assert!(
        browser
            .text("main")
            .await
            .contains("Delivered events are kept for 30 days, failed ones for 90 days")
    );
    browser.screenshot(shot("events")).await;
    browser
        .click("nav.tabs a[href='/events?status=failed']")
        .await;
    // Every log has the empty row (hidden behind rows): wait for the graveyard's own page.
    browser
        .wait_for("nav.tabs a[href='/events?status=failed'][aria-current='page']")
        .await;
    browser.wait_for("tr.empty-row").await;
    let graveyard = browser.text("main").await;
    assert!(
        graveyard.contains("They are kept for 90 days."),
        "{graveyard}"
    );
    assert!(graveyard.contains("The graveyard is empty"), "{graveyard}");
    browser.screenshot(shot("graveyard-empty")).await;

    // An API key: shown once, works, revoked.
    browser.click("nav.mainnav a[href='/api-keys']").await;
    browser.wait_for("form[action='/api-keys']").await;
    browser.fill("name", "laptop").await;
    browser
        .click("form[action='/api-keys'] button[type='submit']")
        .await;
    let key = browser
        .attr("[data-new-api-key]", "data-new-api-key")
        .await
        .expect("the new key");
    browser.screenshot(shot("api-keys")).await;
    let list = |key: String| {
        let http = &http;
        let url = format!("{}/api/v1/subscriptions", app.address);
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(list(key.clone()).await, 200);
    browser.click("button[data-action='revoke']").await;
    browser.wait_for(".flash").await;
    assert!(browser.text(".flash").await.contains("revoked"));
    assert_eq!(list(key).await, 401);

    // Log out: the session is over.
    browser.click(".who button[type='submit']").await;
    browser.wait_for("form[action='/login']").await;
    browser
        .goto(&format!("{}/subscriptions", app.address))
        .await;
    browser.wait_for("form[action='/login']").await;
    assert_eq!(browser.current_url().await.path(), "/login");

    browser.close().await;
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_manages_a_subscription_in_a_browser() {
    first_session(BrowserOptions::default(), "desktop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_without_javascript() {
    first_session(
        BrowserOptions {
            javascript: false,
            screen: Screen::Desktop,
        },
        "nojs",
    )
    .await;
}

// Chromium's phone emulation taps rather than clicks, and a tap waits forever for the page's
// scripts when JavaScript is off: the phone run keeps JavaScript on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_on_a_phone() {
    first_session(
        BrowserOptions {
            javascript: true,
            screen: Screen::Phone,
        },
        "phone",
    )
    .await;
    let png = std::fs::read(screenshot_path("phone-subscription.png")).unwrap();
    assert_eq!(
        png_size(&png).0,
        Screen::Phone.size().0,
        "laid out at phone width"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_sends_a_visitor_to_log_in() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/", app.address)).await;
    browser.wait_for("form[action='/login']").await;
    assert_eq!(browser.text("h1").await, "Log in");
    assert_eq!(browser.current_url().await.path(), "/login");
    assert_eq!(browser.attr("html", "lang").await.as_deref(), Some("en"));
    browser.screenshot(screenshot_path("login.png")).await;
    browser.close().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_fail_and_are_replayed_live_without_a_reload() {
    let app = spawn_app_with(|s| s.retry_schedule = "".parse().unwrap()).await;
    let sink = Sink::start(Script::Always(503)).await;
    let dashboard = app.owner_dashboard().await;
    let id = dashboard.create_subscription("live", &sink.url).await;
    let ingest_url = dashboard.ingest_url(&id).await;
    let browser = Browser::start().await;
    log_in(&browser, &app.address).await;

    // The log of the subscription is open; an event is posted from outside.
    browser
        .goto(&format!("{}/subscriptions/{id}", app.address))
        .await;
    browser.wait_for("[data-ingest-url]").await;
    let event = app.accept(&ingest_url, r#"{"type": "live"}"#).await;
    // No retries here: its one attempt fails, and the row turns failed in place.
    browser
        .wait_for(&format!(
            "tr[data-event-id='{event}'][data-status='failed']"
        ))
        .await;
    browser.screenshot(screenshot_path("live-failed.png")).await;

    // The graveyard lists it; its page offers Replay.
    browser.click("nav.mainnav a[href='/events']").await;
    browser.click("a[href='/events?status=failed']").await;
    browser
        .wait_for(".tabs a[aria-current='page'][href='/events?status=failed']")
        .await;
    browser
        .click(&format!(
            "tr[data-event-id='{event}'] a[href='/events/{event}']"
        ))
        .await;
    browser.wait_for("button[data-action='replay']").await;
    assert_eq!(
        browser
            .attr("#event-state .badge", "data-status")
            .await
            .as_deref(),
        Some("failed")
    );

    // The endpoint is fixed and the event replayed from its page, which shows the new attempt
    // when it is made.
    sink.set_script(Script::Ok);
    browser.click("button[data-action='replay']").await;
    browser
        .wait_for("#event-attempts li[data-attempt='2']")
        .await;
    browser
        .wait_for("#event-state .badge[data-status='completed']")
        .await;
    browser
        .screenshot(screenshot_path("live-replayed.png"))
        .await;
    assert_eq!(sink.received().len(), 2);

    browser.close().await;
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_page_reconnects_on_its_own_after_the_relay_restarts() {
    let resources = TestResources::new(DEFAULT_RETRY_SCHEDULE).await;
    let key = create_user_with_key(&resources.database_settings(), OWNER_EMAIL).await;
    let sink = Sink::start(Script::Ok).await;
    // The page is served by A; B, another replica, takes events while A restarts.
    let a = RelayProcess::start(&resources, &[]).await;
    let b = RelayProcess::start(&resources, &[]).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let owner = Dashboard::log_in(&a.address, client.clone(), OWNER_EMAIL, PASSWORD).await;
    let id = owner.create_subscription("restarted", &sink.url).await;
    let ingest_url = owner.ingest_url(&id).await;
    let token = ingest_url.rsplit('/').next().unwrap().to_owned();
    let post = async |relay: &RelayProcess| {
        let posted = client
            .post(format!("{}/ingest/{token}", relay.address))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202);
        let posted: serde_json::Value = posted.json().await.unwrap();
        posted["event_id"].as_str().unwrap().to_owned()
    };
    let browser = Browser::start().await;
    log_in(&browser, &a.address).await;
    browser
        .goto(&format!("{}/subscriptions/{id}", a.address))
        .await;
    browser.wait_for("[data-ingest-url]").await;
    let before = post(&a).await;
    browser
        .wait_for(&format!(
            "tr[data-event-id='{before}'][data-status='completed']"
        ))
        .await;
    // Marks this page: a reload would lose the mark.
    browser.execute("window.spenzaStayed = true;").await;

    // A rolling restart: A stops (closing the page's socket with 1012); while it is away, an
    // event arrives at B and is delivered; then A is back on its port.
    let port = a.port();
    let mut a = a;
    assert!(a.signal("TERM").await.success());
    let missed = post(&b).await;
    b.wait_for_status(&key, &missed, "completed").await;
    let a = RelayProcess::start_on(&resources, &[], port).await;

    // The page reconnects by itself and catches up: the event it missed shows, delivered, and
    // the row it had is still there once.
    browser
        .wait_for(&format!(
            "tr[data-event-id='{missed}'][data-status='completed']"
        ))
        .await;
    assert_eq!(
        browser
            .execute(&format!(
                "return document.querySelectorAll(\"tr[data-event-id='{before}']\").length;"
            ))
            .await,
        serde_json::json!(1)
    );
    assert_eq!(
        browser
            .execute("return window.spenzaStayed === true;")
            .await,
        serde_json::Value::Bool(true),
        "the page was reloaded"
    );

    browser.close().await;
    sink.stop().await;
    drop((a, b));
}

/// Logs in as the owner through the form.
pub(crate) async fn log_in(browser: &Browser, address: &str) {
    browser.goto(&format!("{address}/login")).await;
    browser.fill("email", OWNER_EMAIL).await;
    browser.fill("password", PASSWORD).await;
    browser
        .click("form[action='/login'] button[type='submit']")
        .await;
    browser.wait_for("nav.mainnav").await;
}

/// An event routed to two subscriptions, one of which failed, on a desktop and on a phone:
/// the request is shown once, each delivery with its own state, attempts and Replay; replaying
/// the failed one from the page delivers it, and the event turns completed. An event no
/// subscription took, and one that does not exist, are shown too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_page_shows_each_delivery_and_replays_one() {
    use reqwest::Method;
    use serde_json::{Value, json};
    let app = spawn_app_with(|s| s.retry_schedule = "".parse().unwrap()).await;
    let (billing, analytics) = (
        Sink::start(Script::Ok).await,
        Sink::start(Script::Always(500)).await,
    );
    let create = async |path: &str, body: Value| -> Value {
        let response = app.send_json(Method::POST, path, &body).await;
        assert_eq!(response.status(), 201, "{path}");
        response.json().await.unwrap()
    };
    let source = create("/api/v1/sources", json!({"name": "stripe"})).await;
    for (name, sink) in [("billing", &billing), ("analytics", &analytics)] {
        create(
            "/api/v1/subscriptions",
            json!({"name": name, "target_url": sink.url, "source_id": source["id"]}),
        )
        .await;
    }
    let id = app
        .accept(
            source["ingest_url"].as_str().unwrap(),
            r#"{"type":"invoice.paid","amount":4200}"#,
        )
        .await;
    app.wait_for_status(&id, "failed").await;
    let nobody = create("/api/v1/sources", json!({"name": "nobody listens"})).await;
    let unrouted = app
        .accept(nobody["ingest_url"].as_str().unwrap(), "{}")
        .await;

    for (screen, run) in [(Screen::Desktop, "desktop"), (Screen::Phone, "phone")] {
        let browser = Browser::start_with(BrowserOptions {
            javascript: true,
            screen,
        })
        .await;
        log_in(&browser, &app.address).await;
        browser.goto(&format!("{}/events/{id}", app.address)).await;
        browser
            .wait_for(".delivery[data-status='failed'] [data-action='replay-delivery']")
            .await;
        assert_eq!(
            browser
                .attr("#event-state .badge", "data-status")
                .await
                .as_deref(),
            Some("failed")
        );
        let text = browser.text("#event-attempts").await;
        assert!(
            text.contains("billing") && text.contains("analytics"),
            "{text}"
        );
        assert!(
            text.contains("HTTP 500") && text.contains("HTTP 200"),
            "{text}"
        );
        browser
            .screenshot(screenshot_path(&format!("{run}-event-deliveries.png")))
            .await;
        browser
            .execute("document.getElementById('event-attempts').scrollIntoView();")
            .await;
        browser
            .screenshot(screenshot_path(&format!(
                "{run}-event-deliveries-below.png"
            )))
            .await;
        browser
            .goto(&format!("{}/events/{unrouted}", app.address))
            .await;
        browser.wait_for("#event-attempts").await;
        assert!(browser.text("#event-attempts").await.contains("Unrouted"));
        browser
            .screenshot(screenshot_path(&format!("{run}-event-unrouted.png")))
            .await;
        browser
            .goto(&format!("{}/events/{}", app.address, uuid::Uuid::now_v7()))
            .await;
        browser.wait_for("main").await;
        browser
            .screenshot(screenshot_path(&format!("{run}-event-missing.png")))
            .await;
        browser.close().await;
    }

    // Replayed from the page, the failed delivery goes out again and the event completes.
    analytics.set_script(Script::Ok);
    let browser = Browser::start().await;
    log_in(&browser, &app.address).await;
    browser.goto(&format!("{}/events/{id}", app.address)).await;
    browser
        .click(".delivery[data-status='failed'] [data-action='replay-delivery']")
        .await;
    browser
        .wait_for("#event-state .badge[data-status='completed']")
        .await;
    assert_eq!(analytics.received().len(), 2);
    assert_eq!(
        billing.received().len(),
        1,
        "the delivered one is not made again"
    );
    browser
        .screenshot(screenshot_path("desktop-event-replayed.png"))
        .await;
    browser.close().await;
    billing.stop().await;
    analytics.stop().await;
    app.shutdown().await;
}

/// A second subscription, with a filter, on a source that already has one, made through the
/// form: the filter is checked as it is typed and tried on the source's events with **Test
/// filter**; once saved, an event lands only where the filters let it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_subscription_with_a_filter_gets_only_the_events_it_matches() {
    use reqwest::Method;
    use serde_json::{Value, json};
    let app = spawn_app().await;
    let (everything, invoices) = (Sink::start(Script::Ok).await, Sink::start(Script::Ok).await);
    let source: Value = app
        .send_json(Method::POST, "/api/v1/sources", &json!({"name": "stripe"}))
        .await
        .json()
        .await
        .unwrap();
    let (source_id, ingest_url) = (
        source["id"].as_str().unwrap().to_owned(),
        source["ingest_url"].as_str().unwrap().to_owned(),
    );
    let first = app
        .send_json(
            Method::POST,
            "/api/v1/subscriptions",
            &json!({"name": "everything", "target_url": everything.url, "source_id": source_id}),
        )
        .await;
    assert_eq!(first.status(), 201);
    let charge = app
        .accept(&ingest_url, r#"{"type": "charge.succeeded"}"#)
        .await;
    let paid = app.accept(&ingest_url, r#"{"type": "invoice.paid"}"#).await;

    for (screen, run) in [(Screen::Desktop, "desktop"), (Screen::Phone, "phone")] {
        let browser = Browser::start_with(BrowserOptions {
            javascript: true,
            screen,
        })
        .await;
        log_in(&browser, &app.address).await;
        browser
            .goto(&format!("{}/subscriptions/new", app.address))
            .await;
        browser.wait_for("select[name='source_id']").await;
        browser
            .execute(&format!(
                "document.querySelector(\"select[name='source_id']\").value = '{source_id}';"
            ))
            .await;
        browser.fill("name", &format!("invoices ({run})")).await;
        browser.fill("target_url", &invoices.url).await;

        // Checked as it is typed.
        browser
            .fill("filter", r#"{"body": {"type": {"$gtt": "invoice."}}}"#)
            .await;
        browser.wait_for("#filter-trial .field-error").await;
        assert_eq!(
            browser.text("#filter-trial .field-error").await,
            "/body/type/$gtt: unknown operator"
        );
        browser
            .screenshot(screenshot_path(&format!("{run}-filter-invalid.png")))
            .await;
        browser
            .fill(
                "filter",
                r#"{"body": {"type": {"$startsWith": "invoice."}}}"#,
            )
            .await;
        browser.wait_for("#filter-trial .ok").await;

        // Tried on the source's latest events, nothing saved.
        browser.click("button[value='test-filter']").await;
        browser.wait_for("ul.trials li").await;
        assert_eq!(
            browser
                .attr(
                    &format!("ul.trials li[data-event-id='{paid}']"),
                    "data-matched"
                )
                .await
                .as_deref(),
            Some("true")
        );
        assert_eq!(
            browser
                .attr(
                    &format!("ul.trials li[data-event-id='{charge}']"),
                    "data-matched"
                )
                .await
                .as_deref(),
            Some("false")
        );
        assert!(
            browser
                .text(&format!("ul.trials li[data-event-id='{charge}'] .mismatch"))
                .await
                .contains("/body/type"),
        );
        browser
            .execute("document.getElementById('filter-trial').scrollIntoView();")
            .await;
        browser
            .screenshot(screenshot_path(&format!("{run}-filter-tested.png")))
            .await;
        browser.click("details.policy summary").await;
        browser.fill("retry_schedule", "5s, 1m, 10m").await;
        browser.fill("rate_limit_count", "10").await;
        browser
            .execute("document.querySelector('details.policy').scrollIntoView();")
            .await;
        browser
            .screenshot(screenshot_path(&format!("{run}-subscription-policy.png")))
            .await;
        if run == "phone" {
            // One subscription from the form is enough; the phone only looks.
            break;
        }
        browser
            .click("form[action='/subscriptions'] button.primary[type='submit']")
            .await;
        browser.wait_for("[data-ingest-url]").await;
        assert_eq!(
            browser
                .attr("[data-ingest-url]", "data-ingest-url")
                .await
                .as_deref(),
            Some(ingest_url.as_str()),
            "it shares the source's ingest URL"
        );
    }

    let created = app.get_json("/api/v1/subscriptions").await;
    let data = created["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{created}");
    let filtered = data
        .iter()
        .find(|s| s["name"] == "invoices (desktop)")
        .expect("the subscription made in the browser");
    assert_eq!(
        filtered["filter"],
        json!({"body": {"type": {"$startsWith": "invoice."}}})
    );
    assert_eq!(filtered["source_id"], source_id.as_str());
    assert_eq!(
        filtered["policy"]["retry_schedule"],
        json!(["5s", "1m", "10m"])
    );
    assert_eq!(
        filtered["policy"]["rate_limit"],
        json!({"count": 10, "per": "second"})
    );

    let invoice = app
        .accept(&ingest_url, r#"{"type": "invoice.created"}"#)
        .await;
    let customer = app
        .accept(&ingest_url, r#"{"type": "customer.created"}"#)
        .await;
    everything.wait_for_requests(4).await;
    invoices.wait_for_requests(1).await;
    assert_eq!(invoices.unique_ids(), [invoice].into_iter().collect());
    let routed = app.event(&customer).await;
    assert_eq!(
        routed["deliveries"].as_array().unwrap().len(),
        1,
        "{routed}"
    );
}

/// The endpoint failed, its fix is deployed, and the next retry is an hour away: **Retry now**
/// on the event's page delivers at once, and the page shows it. The button still works once the
/// page has had a live update (an update once carried rows, which made the page's forms fall
/// apart as htmx read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_waiting_an_hour_for_its_retry_is_retried_now_from_its_page() {
    let app = spawn_app_with(|s| s.retry_schedule = "1h".parse().unwrap()).await;
    let sink = Sink::start(Script::FailFirst(1, 503)).await;
    let subscription = app.create_subscription(&sink.url).await;
    let id = app
        .accept(subscription["ingest_url"].as_str().unwrap(), r#"{"n":1}"#)
        .await;
    app.wait_for_status(&id, "retrying").await;
    let browser = Browser::start().await;
    log_in(&browser, &app.address).await;
    browser.goto(&format!("{}/events/{id}", app.address)).await;
    browser
        .wait_for(".delivery[data-status='retrying'] [data-action='retry-now']")
        .await;
    browser
        .screenshot(screenshot_path("desktop-event-retry-now.png"))
        .await;
    browser.click("[data-action='retry-now']").await;
    wait_until(Duration::from_secs(10), "the attempt made now", || async {
        match sink.received().len() {
            2 => Ok(()),
            n => Err(format!("{n} requests; event {}", app.event(&id).await)),
        }
    })
    .await;
    browser
        .wait_for(".delivery[data-status='completed'] li[data-attempt='2']")
        .await;
    assert_eq!(sink.received().len(), 2);
    browser
        .screenshot(screenshot_path("desktop-event-retried.png"))
        .await;
    browser.close().await;
    sink.stop().await;
    app.shutdown().await;
}
