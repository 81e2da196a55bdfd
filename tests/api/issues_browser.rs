//! Issues in headless Chromium: an endpoint starts failing, the navigation's count of open
//! issues goes up live, the user opens the issue, fixes the endpoint, replays the failed events
//! from the issue's page, and the issue resolves. The pages are shot on a desktop and a phone,
//! with and without issues, and the Notifications page with a form error.

use std::time::Duration;

use serde_json::json;

use crate::browser::{Browser, BrowserOptions, Screen};
use crate::dashboard_browser::{log_in, screenshot_path};
use crate::helpers::{Script, Sink, spawn_app_with};
use crate::sources_browser::spills;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_shows_as_a_live_issue_that_a_fix_and_a_replay_from_its_page_resolve() {
    let app = spawn_app_with(|s| {
        s.issue_scan_interval = Duration::from_millis(200);
        s.retry_schedule = "".parse().unwrap();
    })
    .await;
    let endpoint = Sink::start(Script::Always(500)).await;
    let subscription = app.create_subscription(&endpoint.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();

    let browser = Browser::start().await;
    log_in(&browser, &app.address).await;
    browser.goto(&format!("{}/issues", app.address)).await;
    browser.wait_for("[data-empty]").await;
    browser
        .screenshot(screenshot_path("desktop-issues-empty.png"))
        .await;
    assert_eq!(
        browser.attr("#issue-count", "hidden").await.as_deref(),
        Some("true"),
        "no count while nothing is open"
    );

    // The endpoint fails: the count in the navigation shows it without a reload.
    for n in 0..3 {
        let id = app.accept(&ingest_url, &format!("{{\"n\": {n}}}")).await;
        app.wait_for_status(&id, "failed").await;
    }
    browser
        .wait_for("#issue-count[data-count='1']:not([hidden])")
        .await;
    assert!(browser.text("#issue-count").await.contains('1'));
    browser.goto(&format!("{}/issues", app.address)).await;
    browser
        .wait_for("tr[data-kind='deliveries_failed'][data-state='open']")
        .await;
    browser
        .screenshot(screenshot_path("desktop-issues.png"))
        .await;

    // The user opens it: what happened, the examples, and what to do.
    browser.click("tr[data-kind='deliveries_failed'] a").await;
    browser
        .wait_for("button[data-action='replay-failed']")
        .await;
    let page = browser.text("main").await;
    assert!(page.contains("HTTP 500 from 127.0.0.1"), "{page}");
    assert!(page.contains("Replay the 3 failed events"), "{page}");
    let examples = browser
        .execute("return document.querySelectorAll('[data-examples] a').length;")
        .await;
    assert_eq!(examples, json!(3));
    browser
        .screenshot(screenshot_path("desktop-issue.png"))
        .await;
    assert!(!spills(&browser).await);

    // Acknowledged: someone is on it, and the navigation counts it no more.
    browser.click("button[data-action='acknowledge']").await;
    browser.wait_for("h1 [data-state='acknowledged']").await;
    browser.wait_for("#issue-count[hidden]").await;

    // Fixed, then replayed from the issue's page: delivered, and the issue resolves.
    endpoint.set_script(Script::Ok);
    browser.click("button[data-action='replay-failed']").await;
    browser.wait_for(".flash-success").await;
    endpoint.wait_for_requests(6).await;
    app.wait_for_issue("?kind=deliveries_failed", "the issue resolved", |issue| {
        issue["state"] == "resolved"
    })
    .await;
    browser.goto(browser.current_url().await.as_ref()).await;
    browser.wait_for("h1 [data-state='resolved']").await;
    let page = browser.text("main").await;
    assert!(page.contains("by itself: its condition cleared"), "{page}");
    browser
        .screenshot(screenshot_path("desktop-issue-resolved.png"))
        .await;

    // On a phone.
    let phone = Browser::start_with(BrowserOptions {
        screen: Screen::Phone,
        ..BrowserOptions::default()
    })
    .await;
    log_in(&phone, &app.address).await;
    phone.goto(browser.current_url().await.as_ref()).await;
    phone.wait_for("h1 [data-state='resolved']").await;
    phone.screenshot(screenshot_path("phone-issue.png")).await;
    assert!(!spills(&phone).await);
    phone.goto(&format!("{}/issues", app.address)).await;
    phone.wait_for("tr[data-kind='deliveries_failed']").await;
    phone.screenshot(screenshot_path("phone-issues.png")).await;
    assert!(!spills(&phone).await);

    // Notifications: a form error, then a channel added and tested.
    browser
        .goto(&format!("{}/notifications", app.address))
        .await;
    browser.wait_for("[data-empty='channels']").await;
    browser
        .execute("document.getElementById('kind').value = 'webhook';")
        .await;
    browser.fill("target", "ftp://example.com/hooks").await;
    browser.click("#channel-form button[type='submit']").await;
    browser.wait_for("#target-error").await;
    browser
        .screenshot(screenshot_path("desktop-notifications-error.png"))
        .await;
    let receiver = Sink::start(Script::Ok).await;
    browser
        .execute("document.getElementById('kind').value = 'webhook';")
        .await;
    browser.fill("target", &receiver.url).await;
    browser.fill("name", "ops webhook").await;
    browser.click("#channel-form button[type='submit']").await;
    browser.wait_for("tr[data-channel-id]").await;
    browser.click("button[data-action='test']").await;
    browser.wait_for(".flash-success").await;
    receiver.wait_for_requests(1).await;
    browser
        .screenshot(screenshot_path("desktop-notifications.png"))
        .await;
    phone.goto(&format!("{}/notifications", app.address)).await;
    phone.wait_for("tr[data-channel-id]").await;
    phone
        .screenshot(screenshot_path("phone-notifications.png"))
        .await;
    assert!(!spills(&phone).await);

    phone.close().await;
    browser.close().await;
    receiver.stop().await;
    endpoint.stop().await;
    app.shutdown().await;
}
