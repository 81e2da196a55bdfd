//! Providers as they really behave, over real HTTP: the handshakes the relay answers at an ingest
//! URL, schemes that sign the URL, fixed credentials, the answer a source gives, and the list of
//! refused requests. Signatures are made here with OpenSSL, independently of the relay's own
//! RustCrypto code.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Script, Sink, TestApp, metric, spawn_app, spawn_app_with, wait_until};

fn hmac(digest: MessageDigest, key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = PKey::hmac(key).unwrap();
    let mut signer = Signer::new(digest, &key).unwrap();
    signer.update(message).unwrap();
    signer.sign_to_vec().unwrap()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac(MessageDigest::sha256(), key, message)
}

fn ed25519(key: &PKey<Private>, message: &[u8]) -> Vec<u8> {
    Signer::new_without_digest(key)
        .unwrap()
        .sign_oneshot_to_vec(message)
        .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl TestApp {
    /// Creates a source with a provider check (and an answer, when given); its JSON.
    async fn source_with(&self, provider: Value, response: Option<Value>) -> Value {
        let mut body = json!({ "name": provider["kind"], "provider": provider });
        if let Some(response) = response {
            body["response"] = response;
        }
        let created = self.send_json(Method::POST, "/api/v1/sources", &body).await;
        assert_eq!(
            created.status(),
            201,
            "creating a {} source",
            provider["kind"]
        );
        created.json().await.unwrap()
    }

    /// The source as the API shows it now.
    async fn source(&self, source: &Value) -> Value {
        self.get_json(&format!(
            "/api/v1/sources/{}",
            source["id"].as_str().unwrap()
        ))
        .await
    }

    /// The source's refused requests, newest first.
    async fn rejections(&self, source: &Value) -> Vec<Value> {
        let path = format!(
            "/api/v1/sources/{}/rejections",
            source["id"].as_str().unwrap()
        );
        self.get_json(&path).await["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until the source's last handshake reads `outcome`.
    async fn wait_for_handshake(&self, source: &Value, outcome: &str) -> Value {
        wait_until(
            Duration::from_secs(10),
            "the handshake noted on its source",
            || async {
                let seen = self.source(source).await["last_handshake"].clone();
                if seen["outcome"] == outcome {
                    Ok(seen)
                } else {
                    Err(seen.to_string())
                }
            },
        )
        .await
    }

    /// Waits until the source lists `count` refused requests.
    async fn wait_for_rejections(&self, source: &Value, count: usize) -> Vec<Value> {
        wait_until(Duration::from_secs(10), "the refusals listed", || async {
            let listed = self.rejections(source).await;
            if listed.len() == count {
                Ok(listed)
            } else {
                Err(format!("{listed:?}"))
            }
        })
        .await
    }
}

fn ingest_url(source: &Value) -> &str {
    source["ingest_url"].as_str().unwrap()
}

/// The status, content type, `X-Content-Type-Options` and body of an answer.
async fn answer(response: reqwest::Response) -> (u16, String, String, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (content_type, nosniff) = (header("content-type"), header("x-content-type-options"));
    (
        response.status().as_u16(),
        content_type,
        nosniff,
        response.text().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handshake_is_answered_at_the_ingest_url_and_none_is_stored() {
    let app = spawn_app().await;
    let client = &app.api;

    // Slack: a signed url_verification.
    let slack = app
        .source_with(json!({"kind": "slack", "secret": "slack-secret"}), None)
        .await;
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let timestamp = now().to_string();
    let signature = hmac_sha256(b"slack-secret", format!("v0:{timestamp}:{body}").as_bytes());
    let slack_answer = answer(
        client
            .post(ingest_url(&slack))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", &timestamp)
            .header(
                "x-slack-signature",
                format!("v0={}", hex::encode(signature)),
            )
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(slack_answer.0, 200);
    assert!(slack_answer.1.starts_with("text/plain"), "{slack_answer:?}");
    assert_eq!(slack_answer.2, "nosniff");
    assert_eq!(
        slack_answer.3,
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    // Meta: the hub.challenge GET, with the verify token.
    let meta = app
        .source_with(
            json!({"kind": "meta", "secret": "app-secret", "verify_token": "tok en"}),
            None,
        )
        .await;
    let meta_answer = answer(
        client
            .get(format!(
                "{}?hub.mode=subscribe&hub.verify_token=tok%20en&hub.challenge=1158201444",
                ingest_url(&meta)
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((meta_answer.0, meta_answer.3.as_str()), (200, "1158201444"));

    // Dropbox: the challenge echoed, nosniff.
    let dropbox = app
        .source_with(json!({"kind": "dropbox", "secret": "dbx"}), None)
        .await;
    let dropbox_answer = answer(
        client
            .get(format!("{}?challenge=<b>abc</b>", ingest_url(&dropbox)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(dropbox_answer.0, 200);
    assert!(dropbox_answer.1.starts_with("text/plain"));
    assert_eq!(dropbox_answer.2, "nosniff");
    assert_eq!(dropbox_answer.3, "<b>abc</b>");

    // Microsoft Graph: the validationToken POST, decoded.
    let graph = app
        .source_with(
            json!({"kind": "microsoft_graph", "client_state": "state-1"}),
            None,
        )
        .await;
    let graph_answer = answer(
        client
            .post(format!(
                "{}?validationToken=Validation%3A%20Testing%20client%20application%20reachability",
                ingest_url(&graph)
            ))
            .header("content-type", "text/plain")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(graph_answer.0, 200);
    assert!(graph_answer.1.starts_with("text/plain"));
    assert_eq!(
        graph_answer.3,
        "Validation: Testing client application reachability"
    );

    // Zoom: endpoint.url_validation, signed, answered with the encrypted token.
    let zoom = app
        .source_with(json!({"kind": "zoom", "secret": "zoom-secret"}), None)
        .await;
    let body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let timestamp = now().to_string();
    let signature = hmac_sha256(b"zoom-secret", format!("v0:{timestamp}:{body}").as_bytes());
    let zoom_answer = answer(
        client
            .post(ingest_url(&zoom))
            .header("content-type", "application/json")
            .header("x-zm-request-timestamp", &timestamp)
            .header("x-zm-signature", format!("v0={}", hex::encode(signature)))
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(zoom_answer.0, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&zoom_answer.3).unwrap(),
        json!({
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": hex::encode(hmac_sha256(b"zoom-secret", b"qgg8vlvZRS6UYooatFL8Aw")),
        })
    );

    // X: the CRC GET.
    let x = app
        .source_with(json!({"kind": "x", "secret": "consumer-secret"}), None)
        .await;
    let x_answer = answer(
        client
            .get(format!("{}?crc_token=challenge%2B1", ingest_url(&x)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(x_answer.0, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&x_answer.3).unwrap(),
        json!({"response_token": format!(
            "sha256={}",
            STANDARD.encode(hmac_sha256(b"consumer-secret", b"challenge+1"))
        )})
    );

    // Discord: a PING signed with the application's key.
    let key = PKey::generate_ed25519().unwrap();
    let discord = app
        .source_with(
            json!({"kind": "discord", "public_key": hex::encode(key.raw_public_key().unwrap())}),
            None,
        )
        .await;
    let body = r#"{"id":"1","application_id":"2","type":1,"version":1}"#;
    let timestamp = now().to_string();
    let discord_answer = answer(
        client
            .post(ingest_url(&discord))
            .header("content-type", "application/json")
            .header("x-signature-timestamp", &timestamp)
            .header(
                "x-signature-ed25519",
                hex::encode(ed25519(&key, format!("{timestamp}{body}").as_bytes())),
            )
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(discord_answer.0, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&discord_answer.3).unwrap(),
        json!({"type": 1})
    );

    // Okta: the verification GET, with the configured header.
    let okta = app
        .source_with(
            json!({"kind": "okta", "header": "Authorization", "secret": "Bearer okta"}),
            None,
        )
        .await;
    let okta_answer = answer(
        client
            .get(ingest_url(&okta))
            .header("x-okta-verification-challenge", "C6bNT2ZOvRKSX2iIzgu_Cg")
            .header("authorization", "Bearer okta")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(okta_answer.0, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&okta_answer.3).unwrap(),
        json!({"verification": "C6bNT2ZOvRKSX2iIzgu_Cg"})
    );

    // Twitch: a signed webhook_callback_verification.
    let twitch = app
        .source_with(json!({"kind": "twitch", "secret": "twitch-secret"}), None)
        .await;
    let body = r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"type":"channel.follow"}}"#;
    let (id, timestamp) = (
        "e76c6bd4-55c9-4987-8304-da1588d8988b",
        chrono::Utc::now().to_rfc3339(),
    );
    let signature = hmac_sha256(
        b"twitch-secret",
        format!("{id}{timestamp}{body}").as_bytes(),
    );
    let twitch_answer = answer(
        client
            .post(ingest_url(&twitch))
            .header("content-type", "application/json")
            .header("twitch-eventsub-message-id", id)
            .header("twitch-eventsub-message-timestamp", &timestamp)
            .header(
                "twitch-eventsub-message-type",
                "webhook_callback_verification",
            )
            .header(
                "twitch-eventsub-message-signature",
                format!("sha256={}", hex::encode(signature)),
            )
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(twitch_answer.0, 200);
    assert!(twitch_answer.1.starts_with("text/plain"));
    assert_eq!(twitch_answer.3, "pogchamp-kappa-360noscope-vohiyo");

    for source in [
        &slack, &meta, &dropbox, &graph, &zoom, &x, &discord, &okta, &twitch,
    ] {
        let noted = app.wait_for_handshake(source, "answered").await;
        assert!(noted["at"].is_string(), "{noted}");
        assert!(app.rejections(source).await.is_empty());
    }
    assert_eq!(
        app.stored_events().await,
        0,
        "no handshake is stored as an event"
    );
    assert!(
        metric(
            &app.address,
            "spenza_ingest_requests_total{status=\"handshake\"}"
        )
        .await
            >= 9.0
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_and_requests_are_listed_on_their_source_and_counted() {
    let app = spawn_app().await;
    let client = &app.api;
    let mut counted_before = Vec::new();
    for (kind, reason) in COUNTED {
        counted_before.push(metric(&app.address, &rejections_sample(kind, reason)).await);
    }

    // Meta with the wrong verify token: 403, and the source notes the failed handshake.
    let meta = app
        .source_with(
            json!({"kind": "meta", "secret": "app-secret", "verify_token": "right"}),
            None,
        )
        .await;
    let refused = client
        .get(format!(
            "{}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            ingest_url(&meta)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_ne!(
        refused.text().await.unwrap(),
        "1",
        "the challenge is not echoed"
    );
    app.wait_for_handshake(&meta, "failed_handshake").await;
    let listed = app.wait_for_rejections(&meta, 1).await;
    assert_eq!(listed[0]["reason"], "failed_handshake");
    assert_eq!(listed[0]["handshake"], true);
    assert_eq!(listed[0]["method"], "GET");

    // Discord tests a bad signature before accepting the URL: it must get 401.
    let key = PKey::generate_ed25519().unwrap();
    let other = PKey::generate_ed25519().unwrap();
    let discord = app
        .source_with(
            json!({"kind": "discord", "public_key": hex::encode(key.raw_public_key().unwrap())}),
            None,
        )
        .await;
    let body = r#"{"type":1}"#;
    let timestamp = now().to_string();
    let forged = client
        .post(ingest_url(&discord))
        .header("x-signature-timestamp", &timestamp)
        .header(
            "x-signature-ed25519",
            hex::encode(ed25519(&other, format!("{timestamp}{body}").as_bytes())),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(
        app.wait_for_rejections(&discord, 1).await[0]["reason"],
        "bad_signature"
    );

    // A GitHub source refuses a GET (405, Allow: POST) and an unsigned POST, credentials masked.
    let github = app
        .source_with(json!({"kind": "github", "secret": "gh"}), None)
        .await;
    let get = client.get(ingest_url(&github)).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let unsigned = client
        .post(format!("{}/hooks?x=1", ingest_url(&github)))
        .header("authorization", "Bearer do-not-show")
        .header("x-github-event", "push")
        .body("a".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let listed = app.wait_for_rejections(&github, 2).await;
    assert_eq!(listed[0]["reason"], "missing_header");
    assert_eq!(listed[0]["path"], "/hooks?x=1");
    assert_eq!(listed[0]["headers"]["x-github-event"], "push");
    assert_ne!(listed[0]["headers"]["authorization"], "Bearer do-not-show");
    assert!(!listed[0].to_string().contains("do-not-show"));
    assert_eq!(listed[0]["body_sample"].as_str().unwrap().len(), 1024);
    assert_eq!(listed[0]["body_bytes"], 3000);
    assert_eq!(listed[1]["reason"], "wrong_method");

    assert_eq!(app.stored_events().await, 0);
    // The registry is the test process's, shared with tests running beside this one: each
    // count rose by at least this test's refusal.
    for ((kind, reason), before) in COUNTED.iter().zip(counted_before) {
        let after = metric(&app.address, &rejections_sample(kind, reason)).await;
        assert!(after > before, "{kind} {reason}: {before} then {after}");
    }
    app.shutdown().await;
}

/// The refusals the test above makes, by provider kind and reason.
const COUNTED: [(&str, &str); 4] = [
    ("meta", "failed_handshake"),
    ("discord", "bad_signature"),
    ("github", "wrong_method"),
    ("github", "missing_header"),
];

fn rejections_sample(kind: &str, reason: &str) -> String {
    format!("spenza_ingest_rejections_total{{kind=\"{kind}\",reason=\"{reason}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_keeps_its_last_hundred_refusals() {
    let app = spawn_app().await;
    let github = app
        .source_with(json!({"kind": "github", "secret": "gh"}), None)
        .await;
    for n in 0..105 {
        let refused = app
            .api
            .post(format!("{}?n={n}", ingest_url(&github)))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    }
    // Each refusal is written before it is answered, so all are listed by now.
    let listed = app.rejections(&github).await;
    assert_eq!(listed.len(), 100);
    assert_eq!(listed.last().unwrap()["path"], "?n=5");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_and_api_key_sources_take_only_their_credentials_and_never_keep_them() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;

    let basic = app
        .source_with(
            json!({"kind": "basic", "username": "acme", "password": "pa:ss"}),
            None,
        )
        .await;
    assert_eq!(
        basic["provider"],
        json!({"kind": "basic", "username": "acme"})
    );
    let anonymous = app
        .api
        .post(ingest_url(&basic))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let wrong = app
        .api
        .post(ingest_url(&basic))
        .basic_auth("acme", Some("guess"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app
        .api
        .post(ingest_url(&basic))
        .basic_auth("acme", Some("pa:ss"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 202);
    let listed = app.wait_for_rejections(&basic, 2).await;
    assert!(listed.iter().all(|r| r["reason"] == "wrong_credentials"));
    assert!(
        !serde_json::to_string(&listed)
            .unwrap()
            .contains(&STANDARD.encode("acme:guess"))
    );

    // A key in the query: accepted, then neither stored nor forwarded.
    let by_query = app
        .source_with(
            json!({"kind": "api_key", "query": "key", "value": "k-secret"}),
            None,
        )
        .await;
    let subscription = app
        .send_json(
            Method::POST,
            "/api/v1/subscriptions",
            &json!({"name": "q", "target_url": sink.url, "source_id": by_query["id"]}),
        )
        .await;
    assert_eq!(subscription.status(), 201);
    let refused = app
        .ingest(
            &format!("{}?key=guess&a=1", ingest_url(&by_query)),
            "application/json",
            "{}",
        )
        .await;
    assert_eq!(refused.status(), 401);
    let id = app
        .accept(&format!("{}?a=1&key=k-secret", ingest_url(&by_query)), "{}")
        .await;
    let stored = app.event(&id).await;
    assert!(!stored.to_string().contains("k-secret"), "{stored}");
    let delivered = sink.wait_for_requests(1).await;
    assert!(!delivered[0].query.contains("k-secret"));
    let listed = app.wait_for_rejections(&by_query, 1).await;
    assert_eq!(listed[0]["path"], "?key=masked&a=1");

    // A key in a header of the source's choosing: not kept with the event.
    let by_header = app
        .source_with(
            json!({"kind": "api_key", "header": "X-Hook-Pass", "value": "h-secret"}),
            None,
        )
        .await;
    let accepted = app
        .api
        .post(ingest_url(&by_header))
        .header("x-hook-pass", "h-secret")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let id = accepted.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = app.event(&id).await;
    assert!(!stored.to_string().contains("h-secret"), "{stored}");
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_answers_accepted_requests_as_it_is_set_to() {
    let app = spawn_app().await;
    let plain = app
        .source_with(
            json!({"kind": "gitlab", "secret": "gl-token"}),
            Some(json!({"status": 200, "body": "ok", "content_type": "text/plain"})),
        )
        .await;
    assert_eq!(
        plain["response"],
        json!({"status": 200, "body": "ok", "content_type": "text/plain"})
    );
    let post = |url: String| {
        app.api
            .post(url)
            .header("x-gitlab-token", "gl-token")
            .header("idempotency-key", "push-1")
            .body("{}")
            .send()
    };
    let first = answer(post(ingest_url(&plain).to_owned()).await.unwrap()).await;
    assert_eq!(
        (first.0, first.1.as_str(), first.3.as_str()),
        (200, "text/plain", "ok")
    );
    let again = answer(post(ingest_url(&plain).to_owned()).await.unwrap()).await;
    assert_eq!(
        (again.0, again.3.as_str()),
        (200, "ok"),
        "a duplicate is answered the same"
    );
    assert_eq!(app.stored_events().await, 1);

    // Only the status: the default JSON under it. And 204: nothing.
    let status_only = app
        .source_with(
            json!({"kind": "gitlab", "secret": "gl-token"}),
            Some(json!({"status": 201})),
        )
        .await;
    let created = answer(post(ingest_url(&status_only).to_owned()).await.unwrap()).await;
    assert_eq!(created.0, 201);
    assert!(serde_json::from_str::<Value>(&created.3).unwrap()["event_id"].is_string());
    let empty = app
        .source_with(
            json!({"kind": "gitlab", "secret": "gl-token"}),
            Some(json!({"status": 204})),
        )
        .await;
    let nothing = answer(post(ingest_url(&empty).to_owned()).await.unwrap()).await;
    assert_eq!((nothing.0, nothing.3.as_str()), (204, ""));

    // Back to the default, and answers no provider can be given refused.
    let path = format!("/api/v1/sources/{}", plain["id"].as_str().unwrap());
    let reset = app
        .send_json(Method::PATCH, &path, &json!({"response": null}))
        .await;
    assert_eq!(reset.status(), 200);
    let default = app
        .api
        .post(ingest_url(&plain))
        .header("x-gitlab-token", "gl-token")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(default.status(), 202);
    for bad in [
        json!({"status": 500}),
        json!({"status": 204, "body": "x"}),
        json!({"status": 200, "content_type": "text/plain"}),
    ] {
        let refused = app
            .send_json(Method::PATCH, &path, &json!({"response": bad}))
            .await;
        assert_eq!(refused.status(), 422, "{bad}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemes_that_sign_the_url_verify_against_the_relays_public_url() {
    let app = spawn_app().await;

    // Twilio: the URL (query included) and the sorted form parameters.
    let twilio = app
        .source_with(json!({"kind": "twilio", "secret": "auth-token"}), None)
        .await;
    let url = format!("{}/sms?tenant=7", ingest_url(&twilio));
    let signed = format!("{url}BodyHelloFrom+15005550006");
    let signature = STANDARD.encode(hmac(
        MessageDigest::sha1(),
        b"auth-token",
        signed.as_bytes(),
    ));
    let form = "From=%2B15005550006&Body=Hello";
    let send = |signature: String, body: &'static str| {
        app.api
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body)
            .send()
    };
    assert_eq!(send(signature.clone(), form).await.unwrap().status(), 202);
    assert_eq!(
        send(signature, "From=%2B15005550006&Body=Goodbye")
            .await
            .unwrap()
            .status(),
        401
    );

    // Square: the notification URL and the body.
    let square = app
        .source_with(json!({"kind": "square", "secret": "sq-key"}), None)
        .await;
    let body = r#"{"event_id":"ev-1","type":"payment.created"}"#;
    let signed = format!("{}{body}", ingest_url(&square));
    let accepted = app
        .api
        .post(ingest_url(&square))
        .header(
            "x-square-hmacsha256-signature",
            STANDARD.encode(hmac_sha256(b"sq-key", signed.as_bytes())),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);

    // HubSpot v3: method, URI, body and timestamp.
    let hubspot = app
        .source_with(json!({"kind": "hubspot", "secret": "hs-secret"}), None)
        .await;
    let millis = (chrono::Utc::now().timestamp_millis()).to_string();
    let body = r#"[{"objectId":1,"subscriptionType":"contact.creation"}]"#;
    let signed = format!("POST{}{body}{millis}", ingest_url(&hubspot));
    let accepted = app
        .api
        .post(ingest_url(&hubspot))
        .header("x-hubspot-request-timestamp", &millis)
        .header(
            "x-hubspot-signature-v3",
            STANDARD.encode(hmac_sha256(b"hs-secret", signed.as_bytes())),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    assert_eq!(app.stored_events().await, 3);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_signed_url_is_the_public_one() {
    let app = spawn_app_with(|settings| {
        settings.public_url = Some("https://hooks.example.com/relay".parse().unwrap());
    })
    .await;
    let twilio = app
        .source_with(json!({"kind": "twilio", "secret": "auth-token"}), None)
        .await;
    let public = ingest_url(&twilio);
    assert!(
        public.starts_with("https://hooks.example.com/relay/ingest/"),
        "{public}"
    );
    // The provider signs the URL it was given; the request reaches the relay on its own address.
    let token = public.rsplit('/').next().unwrap();
    let reached = format!("{}/ingest/{token}", app.address);
    let form = "Body=Hi&From=%2B15005550006";
    let sign = |url: &str| {
        let signed = format!("{url}BodyHiFrom+15005550006");
        STANDARD.encode(hmac(
            MessageDigest::sha1(),
            b"auth-token",
            signed.as_bytes(),
        ))
    };
    let send = |signature: String| {
        app.api
            .post(&reached)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(form)
            .send()
    };
    assert_eq!(send(sign(public)).await.unwrap().status(), 202);
    assert_eq!(send(sign(&reached)).await.unwrap().status(), 401);
    app.shutdown().await;
}
