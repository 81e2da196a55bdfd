//! Signatures both ways and idempotent ingest, end to end. Expected signatures are computed
//! here, independently of the relay's own code.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Received, Script, Sink, TestApp, spawn_app, wait_until};

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Checks a delivery the way a Standard Webhooks receiver does; returns how many of the
/// signatures in `webhook-signature` the secret verifies.
pub fn standard_signatures_verified_by(delivery: &Received, secret: &str) -> usize {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let id = delivery.header("webhook-id").unwrap();
    let timestamp = delivery.header("webhook-timestamp").unwrap();
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&delivery.body);
    let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &signed)));
    delivery
        .header("webhook-signature")
        .unwrap()
        .split(' ')
        .filter(|s| *s == expected)
        .count()
}

fn spenza_signature_verified_by(delivery: &Received, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let header = delivery.header("x-spenza-signature").unwrap();
    let timestamp = header
        .split(',')
        .find_map(|part| part.strip_prefix("t="))
        .unwrap();
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&delivery.body);
    let expected = format!("v1={}", hex::encode(hmac_sha256(&key, &signed)));
    header.split(',').any(|part| part == expected)
}

async fn accepted_id(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["event_id"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_carry_standard_webhooks_and_spenza_signatures_by_both_secrets_during_rotation()
{
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let sub = subscription["id"].as_str().unwrap().to_owned();
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    let old_secret = subscription["signing_secret"].as_str().unwrap().to_owned();

    app.ingest(&ingest_url, "application/json", r#"{"before":"rotation"}"#)
        .await;
    let first = sink.wait_for_requests(1).await.remove(0);
    let now = chrono::Utc::now().timestamp();
    let timestamp: i64 = first.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!(
        (now - timestamp).abs() < 60,
        "webhook-timestamp is the attempt's unix time"
    );
    assert_eq!(standard_signatures_verified_by(&first, &old_secret), 1);
    assert!(spenza_signature_verified_by(&first, &old_secret));

    let rotated: Value = app
        .api
        .post(format!(
            "{}/api/v1/subscriptions/{sub}/rotate-secret",
            app.address
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_secret = rotated["signing_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    app.ingest(&ingest_url, "application/json", r#"{"after":"rotation"}"#)
        .await;
    let second = sink.wait_for_requests(2).await.remove(1);
    assert_eq!(
        second
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    assert_eq!(standard_signatures_verified_by(&second, &new_secret), 1);
    assert_eq!(standard_signatures_verified_by(&second, &old_secret), 1);
    assert!(spenza_signature_verified_by(&second, &new_secret));
    assert!(spenza_signature_verified_by(&second, &old_secret));
    sink.stop().await;
    app.shutdown().await;
}

async fn subscription_with_provider(app: &TestApp, target: &str, provider: Value) -> Value {
    let body = json!({ "name": "verified", "target_url": target, "provider": provider });
    let response = app
        .send_json(Method::POST, "/api/v1/subscriptions", &body)
        .await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_signatures_are_checked_before_anything_is_stored() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = subscription_with_provider(
        &app,
        &sink.url,
        json!({ "kind": "github", "secret": "gh-secret" }),
    )
    .await;
    assert_eq!(
        subscription["provider"],
        json!({ "kind": "github" }),
        "the secret is write-only"
    );
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    let body = br#"{"action":"opened","number":7}"#;
    let signature = format!("sha256={}", hex::encode(hmac_sha256(b"gh-secret", body)));
    let post = |signature: Option<String>, body: &'static [u8]| {
        let mut request = app
            .api
            .post(ingest_url)
            .header("x-github-delivery", "72d3162e-cc78")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send()
    };

    let missing = post(None, body).await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let tampered = post(
        Some(signature.clone()),
        br#"{"action":"closed","number":7}"#,
    )
    .await
    .unwrap();
    assert_eq!(tampered.status(), 401);
    let wrong_secret = format!(
        "sha256={}",
        hex::encode(hmac_sha256(b"not-the-secret", body))
    );
    assert_eq!(post(Some(wrong_secret), body).await.unwrap().status(), 401);
    assert_eq!(
        app.stored_events().await,
        0,
        "nothing is stored for a bad signature"
    );

    let (status, id) = accepted_id(post(Some(signature.clone()), body).await.unwrap()).await;
    assert_eq!(status, 202);
    // GitHub redelivers with the same X-GitHub-Delivery: the same event, not a second one.
    let (again, same) = accepted_id(post(Some(signature), body).await.unwrap()).await;
    assert_eq!((again, same.as_str()), (200, id.as_str()));
    app.wait_for_status(&id, "completed").await;
    assert_eq!(sink.received().len(), 1);
    assert_eq!(app.stored_events().await, 1);
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_signatures_outside_the_tolerance_are_refused_and_the_event_id_dedupes() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = subscription_with_provider(
        &app,
        &sink.url,
        json!({ "kind": "stripe", "secret": "whsec_stripe" }),
    )
    .await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    let body = r#"{"id":"evt_1NG8Du2eZvKYlo2C","type":"invoice.paid"}"#;
    let signed_at = |t: i64| {
        format!(
            "t={t},v1={}",
            hex::encode(hmac_sha256(
                b"whsec_stripe",
                format!("{t}.{body}").as_bytes()
            ))
        )
    };
    let post = |header: String| {
        app.api
            .post(ingest_url)
            .header("stripe-signature", header)
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp();

    assert_eq!(
        post(signed_at(now - 600)).await.unwrap().status(),
        401,
        "ten minutes old"
    );
    let (status, id) = accepted_id(post(signed_at(now)).await.unwrap()).await;
    assert_eq!(status, 202);
    // Stripe retries with a new timestamp but the same event id in the body.
    let (again, same) = accepted_id(post(signed_at(now + 5)).await.unwrap()).await;
    assert_eq!((again, same.as_str()), (200, id.as_str()));
    app.wait_for_status(&id, "completed").await;
    assert_eq!(sink.received().len(), 1);
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_store_and_deliver_one_event() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();

    let responses = futures_util::future::join_all((0..16).map(|_| {
        app.api
            .post(ingest_url)
            .header("idempotency-key", "order-7-paid")
            .body(r#"{"order":7}"#)
            .send()
    }))
    .await;
    let mut answers = Vec::new();
    for response in responses {
        answers.push(accepted_id(response.unwrap()).await);
    }

    assert_eq!(
        answers.iter().filter(|(status, _)| *status == 202).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|(status, _)| *status == 200).count(),
        15,
        "{answers:?}"
    );
    let first = answers[0].1.clone();
    assert!(
        answers.iter().all(|(_, id)| *id == first),
        "every answer names the first event"
    );
    app.wait_for_status(&first, "completed").await;
    assert_eq!(app.stored_events().await, 1);
    // Another event with another key is its own.
    let (status, other) = accepted_id(
        app.api
            .post(ingest_url)
            .header("idempotency-key", "order-8-paid")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202);
    assert_ne!(other, first);
    wait_until(
        std::time::Duration::from_secs(30),
        "both events delivered",
        || async {
            let ids = sink.unique_ids();
            if ids.len() == 2 {
                Ok(())
            } else {
                Err(format!("{ids:?}"))
            }
        },
    )
    .await;
    assert_eq!(sink.received().len(), 2, "the duplicate was delivered");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_and_svix_signatures_are_checked_and_their_ids_dedupe() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let subscription = subscription_with_provider(
        &app,
        &sink.url,
        json!({ "kind": "standard", "secret": secret }),
    )
    .await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let body = r#"{"type":"user.created"}"#;
    let now = chrono::Utc::now().timestamp();
    let signature = |id: &str| {
        format!(
            "v1,{}",
            STANDARD.encode(hmac_sha256(&key, format!("{id}.{now}.{body}").as_bytes()))
        )
    };
    let post = |prefix: &str, id: &str, signature: String| {
        app.api
            .post(ingest_url)
            .header(format!("{prefix}-id"), id)
            .header(format!("{prefix}-timestamp"), now.to_string())
            .header(format!("{prefix}-signature"), signature)
            .body(body)
            .send()
    };

    let (status, first) =
        accepted_id(post("webhook", "msg_1", signature("msg_1")).await.unwrap()).await;
    assert_eq!(status, 202);
    let (status, svix) =
        accepted_id(post("svix", "msg_2", signature("msg_2")).await.unwrap()).await;
    assert_eq!(status, 202, "the same scheme under svix-* names");
    let forged = post("webhook", "msg_3", signature("msg_1")).await.unwrap();
    assert_eq!(forged.status(), 401, "a signature over another id");
    let (again, same) = accepted_id(post("svix", "msg_2", signature("msg_2")).await.unwrap()).await;
    assert_eq!((again, same.as_str()), (200, svix.as_str()));

    app.wait_for_status(&first, "completed").await;
    app.wait_for_status(&svix, "completed").await;
    assert_eq!(sink.received().len(), 2);
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_provider_secret_applies_from_the_next_request_and_the_old_one_stops() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = subscription_with_provider(
        &app,
        &sink.url,
        json!({ "kind": "github", "secret": "old-secret" }),
    )
    .await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap();
    let post = |secret: &'static [u8], delivery: &'static str| {
        let body = format!(r#"{{"delivery":"{delivery}"}}"#);
        let signature = format!(
            "sha256={}",
            hex::encode(hmac_sha256(secret, body.as_bytes()))
        );
        app.api
            .post(ingest_url)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
    };
    // The relay has read the source's check, and keeps it.
    assert_eq!(post(b"old-secret", "1").await.unwrap().status(), 202);

    let changed = app
        .send_json(
            Method::PATCH,
            &format!(
                "/api/v1/sources/{}",
                subscription["source_id"].as_str().unwrap()
            ),
            &json!({"provider": { "kind": "github", "secret": "new-secret" }}),
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(post(b"new-secret", "2").await.unwrap().status(), 202);
    assert_eq!(post(b"old-secret", "3").await.unwrap().status(), 401);
    assert_eq!(app.stored_events().await, 2);
    app.shutdown().await;
}
