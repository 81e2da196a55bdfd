//! The dashboard as a person sees it: the real app in headless Chromium.

use std::path::PathBuf;

use crate::browser::{Browser, BrowserOptions, Screen};
use crate::helpers::spawn_app;

/// Where a test leaves its screenshots, to look at after a run.
fn screenshot_path(name: &str) -> PathBuf {
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

#[tokio::test]
async fn the_root_sends_a_visitor_to_log_in() {
    let app = spawn_app().await;
    let browser = Browser::start().await;

    browser.goto(&format!("{}/", app.address)).await;
    browser.wait_for("h1").await;
    assert_eq!(browser.text("h1").await, "Log in");
    assert_eq!(browser.current_url().await.path(), "/login");
    assert_eq!(browser.attr("html", "lang").await.as_deref(), Some("en"));
    browser.screenshot(screenshot_path("login.png")).await;

    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_log_in_page_reads_on_a_phone_without_javascript() {
    let app = spawn_app().await;
    let browser = Browser::start_with(BrowserOptions {
        javascript: false,
        screen: Screen::Phone,
    })
    .await;

    browser.goto(&format!("{}/", app.address)).await;
    assert_eq!(browser.text("h1").await, "Log in");
    let path = screenshot_path("login-phone.png");
    browser.screenshot(&path).await;
    let (width, _) = png_size(&std::fs::read(&path).unwrap());
    assert_eq!(
        width,
        Screen::Phone.size().0,
        "the page is laid out at phone width"
    );

    browser.close().await;
    app.shutdown().await;
}
