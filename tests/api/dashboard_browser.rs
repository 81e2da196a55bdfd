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
async fn landing_page_renders_in_a_browser_and_links_to_readiness() {
    let app = spawn_app().await;
    let browser = Browser::start().await;

    browser.goto(&format!("{}/", app.address)).await;
    browser.wait_for("h1").await;
    let heading = browser.text("h1").await;
    assert!(heading.contains("Spenza"), "the heading reads {heading:?}");
    assert_eq!(browser.attr("html", "lang").await.as_deref(), Some("en"));
    browser.screenshot(screenshot_path("landing.png")).await;

    browser.click("a[href='/readyz']").await;
    assert_eq!(browser.current_url().await.path(), "/readyz");

    browser.close().await;
    app.shutdown().await;
}

#[tokio::test]
async fn landing_page_reads_on_a_phone_without_javascript() {
    let app = spawn_app().await;
    let browser = Browser::start_with(BrowserOptions {
        javascript: false,
        screen: Screen::Phone,
    })
    .await;

    browser.goto(&format!("{}/", app.address)).await;
    let heading = browser.text("h1").await;
    assert!(heading.contains("Spenza"), "the heading reads {heading:?}");
    let path = screenshot_path("landing-phone.png");
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
