//! Teams in headless Chromium: an owner invites a second person, who signs up through the link
//! and joins as a viewer, sees the events, and is offered neither the secret nor a replay.

use serde_json::Value;

use crate::browser::{Browser, BrowserOptions, Screen};
use crate::dashboard_browser::{log_in, screenshot_path};
use crate::helpers::{PASSWORD, Script, Sink, spawn_app};
use crate::sources_browser::spills;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_invites_a_viewer_who_sees_the_events_but_no_secret_and_no_replay() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let secret = subscription["signing_secret"].as_str().unwrap().to_owned();
    let event = app
        .accept(
            subscription["ingest_url"].as_str().unwrap(),
            r#"{"type": "invoice.paid"}"#,
        )
        .await;
    app.wait_for_status(&event, "completed").await;

    // The owner invites a viewer from the members page, and copies the link.
    let owner = Browser::start().await;
    log_in(&owner, &app.address).await;
    owner.click("nav.mainnav a[href='/members']").await;
    owner
        .wait_for("nav.mainnav a[href='/members'][aria-current='page']")
        .await;
    owner.fill("email", "viewer@example.com").await;
    owner
        .execute("document.getElementById('invite-role').value = 'viewer';")
        .await;
    owner.click("button[data-action='invite']").await;
    let link = owner
        .attr("[data-invitation-url]", "data-invitation-url")
        .await
        .expect("the link is shown");
    assert!(link.starts_with(&app.address), "{link}");
    owner
        .screenshot(screenshot_path("desktop-members-invited.png"))
        .await;
    assert!(!spills(&owner).await);

    // The invitee opens it in their own browser, chooses a password and is in, as a viewer.
    let viewer = Browser::start().await;
    viewer.goto(&link).await;
    viewer
        .wait_for("button[data-action='sign-up-and-join']")
        .await;
    viewer
        .screenshot(screenshot_path("desktop-invitation.png"))
        .await;
    viewer.fill("password", PASSWORD).await;
    viewer.click("button[data-action='sign-up-and-join']").await;
    viewer
        .wait_for(".who .workspace .role[data-role='viewer']")
        .await;

    // They see the events, and the event's page offers no replay.
    viewer.click("nav.mainnav a[href='/events']").await;
    viewer
        .wait_for(&format!(
            "[data-event-id='{event}'][data-status='completed']"
        ))
        .await;
    viewer
        .goto(&format!("{}/events/{event}", app.address))
        .await;
    viewer.wait_for("[data-replay-hidden]").await;
    let replay_buttons = viewer
        .execute("return document.querySelectorAll('[data-action^=\"replay\"]').length;")
        .await;
    assert_eq!(replay_buttons, Value::from(0));

    // The subscription's page keeps its secret hidden, and offers no way to reveal it.
    viewer
        .goto(&format!(
            "{}/subscriptions/{}",
            app.address,
            subscription["id"].as_str().unwrap()
        ))
        .await;
    viewer.wait_for("[data-secret-hidden]").await;
    let offered = viewer
        .execute(
            "return document.querySelectorAll('[data-action=\"reveal-secret\"], \
             [data-action=\"rotate-secret\"]').length;",
        )
        .await;
    assert_eq!(offered, Value::from(0));
    assert!(!viewer.text("main").await.contains(&secret));
    viewer
        .screenshot(screenshot_path("desktop-subscription-as-viewer.png"))
        .await;
    // Admin pages are not in their navigation.
    let admin_links = viewer
        .execute(
            "return document.querySelectorAll('nav.mainnav a[href=\"/audit-log\"], \
             nav.mainnav a[href=\"/api-keys\"]').length;",
        )
        .await;
    assert_eq!(admin_links, Value::from(0));

    // The owner sees them among the members, and their joining in the audit log.
    owner.goto(&format!("{}/members", app.address)).await;
    owner.wait_for("tr[data-member='viewer@example.com']").await;
    owner.click("nav.mainnav a[href='/audit-log']").await;
    owner.wait_for("tr[data-action='member.joined']").await;
    owner
        .screenshot(screenshot_path("desktop-audit-log.png"))
        .await;
    assert!(!spills(&owner).await);
    owner.click(".who a.workspace").await;
    owner.wait_for("table.workspaces").await;
    owner
        .screenshot(screenshot_path("desktop-workspaces.png"))
        .await;
    owner.close().await;
    viewer.close().await;

    // On a phone, the members and audit log pages fit the screen.
    let phone = Browser::start_with(BrowserOptions {
        screen: Screen::Phone,
        ..BrowserOptions::default()
    })
    .await;
    log_in(&phone, &app.address).await;
    for (page, shot) in [
        ("/members", "phone-members.png"),
        ("/audit-log", "phone-audit-log.png"),
        ("/workspaces", "phone-workspaces.png"),
    ] {
        phone.goto(&format!("{}{page}", app.address)).await;
        phone.wait_for("main h1").await;
        phone.screenshot(screenshot_path(shot)).await;
        assert!(!spills(&phone).await, "{page} spills on a phone");
    }
    phone.close().await;
    sink.stop().await;
    app.shutdown().await;
}
