//! The provider forms in headless Chromium, for the three handshakes a user meets first: Slack,
//! Meta and Discord. Each is chosen from the list (htmx brings its fields), filled in and saved;
//! then the provider's handshake arrives over HTTP and the source's page says how it was
//! answered, and lists what was refused. On a desktop and on a phone.

use std::time::Duration;

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde_json::{Value, json};

use crate::browser::{Browser, BrowserOptions, Screen};
use crate::dashboard_browser::{log_in, screenshot_path};
use crate::helpers::{TestApp, spawn_app, wait_until};
use crate::sources_browser::spills;

/// Chooses a provider in the form's list as a user does: the `change` event htmx listens to.
async fn choose(browser: &Browser, kind: &str) {
    browser
        .execute(&format!(
            "const list = document.getElementById('provider_kind'); list.value = '{kind}'; \
             list.dispatchEvent(new Event('change', {{bubbles: true}}));"
        ))
        .await;
}

/// Saves the source form and waits for the source's page; its ingest URL.
async fn save(browser: &Browser) -> String {
    browser
        .click("form[action='/sources'] button[type='submit']")
        .await;
    browser.wait_for("[data-ingest-url]").await;
    browser
        .attr("[data-ingest-url]", "data-ingest-url")
        .await
        .expect("the ingest URL")
}

async fn reload(browser: &Browser) {
    let url = browser.current_url().await;
    browser.goto(url.as_str()).await;
    browser.wait_for("[data-ingest-url]").await;
}

/// Reloads the source's page until it shows its last handshake answered (it is noted just
/// after the answer goes out).
async fn wait_until_answered(browser: &Browser) {
    wait_until(
        Duration::from_secs(10),
        "the handshake shown answered",
        || async {
            reload(browser).await;
            let shown = browser.text("[data-handshake-outcome]").await;
            if shown == "answered" {
                Ok(())
            } else {
                Err(shown)
            }
        },
    )
    .await;
}

fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_meta_and_discord_are_set_up_from_the_form_and_their_handshakes_shown() {
    let app: TestApp = spawn_app().await;
    let browser = Browser::start().await;
    log_in(&browser, &app.address).await;

    // Slack: its signing secret, then a signed url_verification is answered.
    browser.goto(&format!("{}/sources/new", app.address)).await;
    browser.fill("name", "Slack workspace").await;
    choose(&browser, "slack").await;
    browser.wait_for("#provider_secret").await;
    assert!(
        browser
            .text(".provider-help")
            .await
            .contains("Signing Secret")
    );
    browser
        .fill("provider_secret", "slack-signing-secret")
        .await;
    let slack_url = save(&browser).await;
    assert_eq!(browser.text("[data-provider-check]").await, "Slack");
    assert_eq!(browser.text("[data-handshake-outcome]").await, "none yet");
    let body = r#"{"token":"t","challenge":"from-slack","type":"url_verification"}"#;
    let timestamp = now();
    let key = PKey::hmac(b"slack-signing-secret").unwrap();
    let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
    signer
        .update(format!("v0:{timestamp}:{body}").as_bytes())
        .unwrap();
    let answered = app
        .api
        .post(&slack_url)
        .header("x-slack-request-timestamp", &timestamp)
        .header(
            "x-slack-signature",
            format!("v0={}", hex::encode(signer.sign_to_vec().unwrap())),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.text().await.unwrap(), "from-slack");
    wait_until_answered(&browser).await;

    // Meta: the app secret and a verify token; a wrong token is refused and listed.
    browser.goto(&format!("{}/sources/new", app.address)).await;
    browser.fill("name", "Instagram").await;
    choose(&browser, "meta").await;
    browser.wait_for("#provider_verify_token").await;
    browser.fill("provider_secret", "meta-app-secret").await;
    browser
        .click("form[action='/sources'] button[type='submit']")
        .await;
    assert_eq!(
        browser.text("#provider_verify_token-error").await,
        "enter the verify token"
    );
    browser
        .screenshot(screenshot_path("desktop-source-form-meta-error.png"))
        .await;
    browser.fill("provider_secret", "meta-app-secret").await;
    browser
        .fill("provider_verify_token", "my-verify-token")
        .await;
    let meta_url = save(&browser).await;
    let refused = app
        .api
        .get(format!(
            "{meta_url}?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=7"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    reload(&browser).await;
    assert_eq!(
        browser.text("[data-handshake-outcome]").await,
        "failed handshake"
    );
    assert_eq!(
        browser.text(".source-rejections [data-reason]").await,
        "failed handshake"
    );
    let answered = app
        .api
        .get(format!(
            "{meta_url}?hub.mode=subscribe&hub.verify_token=my-verify-token&hub.challenge=7"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.text().await.unwrap(), "7");
    browser
        .screenshot(screenshot_path("desktop-source-meta-refused.png"))
        .await;
    browser.click(".source-rejections details summary").await;
    browser
        .execute("document.getElementById('rejections').scrollIntoView();")
        .await;
    browser
        .screenshot(screenshot_path("desktop-source-meta-rejections.png"))
        .await;

    // Discord: its public key (a wrong one is explained), and the answer Discord wants.
    let key = PKey::generate_ed25519().unwrap();
    browser.goto(&format!("{}/sources/new", app.address)).await;
    browser.fill("name", "Discord bot").await;
    choose(&browser, "discord").await;
    browser.wait_for("#provider_public_key").await;
    browser.fill("provider_public_key", "not-a-key").await;
    browser
        .click("form[action='/sources'] button[type='submit']")
        .await;
    assert!(
        browser
            .text("#provider_public_key-error")
            .await
            .contains("64 hex digits")
    );
    browser
        .fill(
            "provider_public_key",
            &hex::encode(key.raw_public_key().unwrap()),
        )
        .await;
    browser.click("details.answer summary").await;
    browser
        .execute("document.getElementById('response_status').value = '200';")
        .await;
    browser.fill("response_body", r#"{"type":5}"#).await;
    browser
        .fill("response_content_type", "application/json")
        .await;
    browser
        .screenshot(screenshot_path("desktop-source-form-discord.png"))
        .await;
    let discord_url = save(&browser).await;
    assert!(
        browser
            .text("[data-answer]")
            .await
            .starts_with("200 with a body of its own")
    );
    let ping = r#"{"id":"1","type":1}"#;
    let timestamp = now();
    let mut signer = Signer::new_without_digest(&key).unwrap();
    let signature = signer
        .sign_oneshot_to_vec(format!("{timestamp}{ping}").as_bytes())
        .unwrap();
    let answered = app
        .api
        .post(&discord_url)
        .header("x-signature-timestamp", &timestamp)
        .header("x-signature-ed25519", hex::encode(signature))
        .body(ping)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.json::<Value>().await.unwrap(), json!({"type": 1}));
    wait_until_answered(&browser).await;
    // Discord then checks that a PING without its signature is refused.
    let unsigned = app.api.post(&discord_url).body(ping).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    reload(&browser).await;
    assert_eq!(
        browser.text("[data-handshake-outcome]").await,
        "missing signature or header"
    );
    assert!(
        browser
            .text("[data-handshake-answered]")
            .await
            .starts_with("Last answered")
    );
    assert!(
        browser
            .text(".source-rejections")
            .await
            .contains("missing signature or header")
    );
    browser
        .screenshot(screenshot_path("desktop-source-discord.png"))
        .await;
    let discord_page = browser.current_url().await;
    browser.goto(&format!("{}/providers", app.address)).await;
    assert!(browser.text("#discord").await.contains("Public Key"));
    browser
        .screenshot(screenshot_path("desktop-providers.png"))
        .await;
    browser.close().await;

    // The same page on a phone: nothing spills sideways.
    let phone = Browser::start_with(BrowserOptions {
        screen: Screen::Phone,
        ..BrowserOptions::default()
    })
    .await;
    log_in(&phone, &app.address).await;
    phone.goto(discord_page.as_str()).await;
    phone.wait_for("[data-handshake-outcome]").await;
    phone.click(".source-rejections details summary").await;
    phone
        .execute("document.getElementById('rejections').scrollIntoView();")
        .await;
    phone
        .screenshot(screenshot_path("phone-source-discord-rejections.png"))
        .await;
    assert!(
        !spills(&phone).await,
        "the source's page spills sideways on a phone"
    );
    phone.goto(&format!("{}/sources/new", app.address)).await;
    choose(&phone, "meta").await;
    phone.wait_for("#provider_verify_token").await;
    phone
        .screenshot(screenshot_path("phone-source-form-meta.png"))
        .await;
    assert!(
        !spills(&phone).await,
        "the source form spills sideways on a phone"
    );
    phone.goto(&format!("{}/providers", app.address)).await;
    phone.wait_for("#discord").await;
    phone
        .screenshot(screenshot_path("phone-providers.png"))
        .await;
    assert!(
        !spills(&phone).await,
        "the providers page spills sideways on a phone"
    );
    phone.close().await;
    app.shutdown().await;
}
