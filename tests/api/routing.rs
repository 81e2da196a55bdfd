//! Routing: sources, fan-out to several subscriptions, deliveries, and the migration from one
//! subscription per ingest URL.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    OWNER_EMAIL, Script, Sink, TestApp, TestResources, migrate_up_to, spawn_app,
    spawn_app_on_old_database, spawn_app_with, wait_until,
};

impl TestApp {
    /// Creates a source; its JSON.
    async fn create_source(&self, name: &str) -> Value {
        let response = self
            .send_json(Method::POST, "/api/v1/sources", &json!({ "name": name }))
            .await;
        assert_eq!(response.status(), 201, "creating a source");
        response.json().await.unwrap()
    }

    /// Creates a subscription on `source` delivering to `target_url`; its JSON.
    async fn subscribe_to(&self, source: &Value, name: &str, target_url: &str) -> Value {
        let body = json!({ "name": name, "target_url": target_url, "source_id": source["id"] });
        let response = self
            .send_json(Method::POST, "/api/v1/subscriptions", &body)
            .await;
        assert_eq!(
            response.status(),
            201,
            "creating a subscription on a source"
        );
        response.json().await.unwrap()
    }
}

/// The subscription ids of an event's deliveries, each with its status.
fn deliveries_of(event: &Value) -> Vec<(String, String)> {
    event["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            (
                d["subscription_id"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_fans_out_to_each_subscription_and_each_delivery_lives_on_its_own() {
    let app = spawn_app_with(|s| s.retry_schedule = "".parse().unwrap()).await;
    let (billing, analytics) = (
        Sink::start(Script::Ok).await,
        Sink::start(Script::Always(503)).await,
    );
    let source = app.create_source("stripe").await;
    let to_billing = app.subscribe_to(&source, "billing", &billing.url).await;
    let to_analytics = app.subscribe_to(&source, "analytics", &analytics.url).await;
    assert_eq!(to_billing["ingest_url"], source["ingest_url"]);
    assert_eq!(to_billing["source_id"], source["id"]);

    let id = app
        .accept(
            source["ingest_url"].as_str().unwrap(),
            r#"{"type":"invoice.paid"}"#,
        )
        .await;
    // Failed at analytics (no retries), delivered at billing: the event rolls up to failed
    // (as soon as one delivery has failed: the other may still be under way).
    app.wait_for_status(&id, "failed").await;
    let event = wait_until(
        Duration::from_secs(30),
        "both deliveries to end",
        || async {
            let event = app.event(&id).await;
            let ended = deliveries_of(&event)
                .iter()
                .all(|(_, status)| status == "completed" || status == "failed");
            if ended {
                Ok(event)
            } else {
                Err(event.to_string())
            }
        },
    )
    .await;
    let mut deliveries = deliveries_of(&event);
    deliveries.sort();
    let mut expected = vec![
        (
            to_billing["id"].as_str().unwrap().to_owned(),
            "completed".to_owned(),
        ),
        (
            to_analytics["id"].as_str().unwrap().to_owned(),
            "failed".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(deliveries, expected, "{event}");
    assert_eq!(event["source_id"], source["id"]);
    assert_eq!(event["attempts"], 2, "one attempt each");
    // The same body and webhook-id at both endpoints.
    for sink in [&billing, &analytics] {
        let received = sink.wait_for_requests(1).await;
        assert_eq!(received[0].body, br#"{"type":"invoice.paid"}"#);
        assert_eq!(received[0].header("webhook-id"), Some(id.as_str()));
    }

    // Each subscription's log lists its own delivery; the graveyard only the failed one.
    for (subscription, status) in [(&to_billing, "completed"), (&to_analytics, "failed")] {
        let log = app
            .get_json(&format!(
                "/api/v1/subscriptions/{}/events",
                subscription["id"].as_str().unwrap()
            ))
            .await;
        let rows = log["data"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{log}");
        assert_eq!(rows[0]["id"], id.as_str());
        assert_eq!(rows[0]["status"], status);
    }
    let graveyard = app.get_json("/api/v1/events?status=failed").await;
    assert_eq!(
        graveyard["data"].as_array().unwrap().len(),
        1,
        "{graveyard}"
    );
    let failed = graveyard["data"][0]["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The source's own list shows the event once, with both deliveries.
    let listed = app
        .get_json(&format!(
            "/api/v1/sources/{}/events",
            source["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(listed["data"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["data"][0]["deliveries"], 2);
    assert_eq!(listed["data"][0]["status"], "failed");

    // Replaying the failed delivery makes it alone again; the delivered one is left alone.
    analytics.set_script(Script::Ok);
    let replayed = app
        .send_json(
            Method::POST,
            &format!("/api/v1/deliveries/{failed}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(replayed.status(), 202);
    app.wait_for_status(&id, "completed").await;
    assert_eq!(analytics.received().len(), 2);
    assert_eq!(
        billing.received().len(),
        1,
        "the delivered one is not made again"
    );
    let delivery = app.get_json(&format!("/api/v1/deliveries/{failed}")).await;
    assert_eq!(delivery["status"], "completed", "{delivery}");
    assert_eq!(delivery["attempt_log"].as_array().unwrap().len(), 2);
    assert_eq!(delivery["attempt_log"][1]["status_code"], 200);

    // Another user's delivery is not found.
    let stranger = app.another_user("stranger@example.com").await;
    let theirs = app
        .api
        .get(format!("{}/api/v1/deliveries/{failed}", app.address))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    billing.stop().await;
    analytics.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_disabled_by_its_breaker_leaves_its_siblings_delivering() {
    let app = spawn_app_with(|s| {
        s.retry_schedule = "".parse().unwrap();
        s.breaker_threshold = 2;
    })
    .await;
    let (healthy, broken) = (
        Sink::start(Script::Ok).await,
        Sink::start(Script::Always(500)).await,
    );
    let source = app.create_source("github").await;
    let to_healthy = app.subscribe_to(&source, "healthy", &healthy.url).await;
    let to_broken = app.subscribe_to(&source, "broken", &broken.url).await;
    let ingest_url = source["ingest_url"].as_str().unwrap();
    for n in 0..2 {
        let id = app.accept(ingest_url, &format!(r#"{{"n":{n}}}"#)).await;
        app.wait_for_status(&id, "failed").await;
    }
    let broken_id = to_broken["id"].as_str().unwrap();
    let disabled = app
        .get_json(&format!("/api/v1/subscriptions/{broken_id}"))
        .await;
    assert_eq!(disabled["is_active"], false, "{disabled}");
    assert!(disabled["disabled_reason"].is_string());

    // The next event: delivered to the healthy one, held for the disabled one.
    let id = app.accept(ingest_url, r#"{"n":2}"#).await;
    healthy.wait_for_requests(3).await;
    let healthy_id = to_healthy["id"].as_str().unwrap();
    wait_until(Duration::from_secs(10), "the healthy delivery", || async {
        let event = app.event(&id).await;
        let statuses = deliveries_of(&event);
        let of = |sub: &str| {
            statuses
                .iter()
                .find(|(s, _)| s == sub)
                .map(|(_, st)| st.clone())
        };
        match (of(healthy_id).as_deref(), of(broken_id).as_deref()) {
            (Some("completed"), Some("pending")) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(app.event(&id).await["status"], "pending");
    assert_eq!(
        broken.received().len(),
        2,
        "nothing more reaches the disabled endpoint"
    );
    healthy.stop().await;
    broken.stop().await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_subscription_made_without_a_source_gets_its_own_and_takes_it_along_when_deleted() {
    let app = spawn_app().await;
    let made = app.create_subscription("http://127.0.0.1:9/hook").await;
    let sources = app.get_json("/api/v1/sources").await;
    let listed = sources["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{sources}");
    assert_eq!(listed[0]["id"], made["source_id"]);
    assert_eq!(listed[0]["ingest_url"], made["ingest_url"]);
    assert_eq!(listed[0]["name"], made["name"]);

    // The dashboard says, before deleting, that the source and its URL go too.
    let dashboard = app.owner_dashboard().await;
    let asked = dashboard
        .page(&format!(
            "/subscriptions/{}/delete",
            made["id"].as_str().unwrap()
        ))
        .await;
    assert!(asked.contains("Its ingest URL stops working"), "{asked}");
    let deleted = app
        .send_json(
            Method::DELETE,
            &format!("/api/v1/subscriptions/{}", made["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(deleted.status(), 204);
    let sources = app.get_json("/api/v1/sources").await;
    assert_eq!(sources["data"].as_array().unwrap().len(), 0, "{sources}");
    let posted = app
        .api
        .post(made["ingest_url"].as_str().unwrap())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 404, "its ingest URL went with it");

    // A subscription on a source made on its own leaves the source when it goes.
    let source = app.create_source("shopify").await;
    let on_source = app
        .subscribe_to(&source, "orders", "http://127.0.0.1:9/hook")
        .await;
    let asked = dashboard
        .page(&format!(
            "/subscriptions/{}/delete",
            on_source["id"].as_str().unwrap()
        ))
        .await;
    assert!(asked.contains("Its source keeps its ingest URL"), "{asked}");
    app.send_json(
        Method::DELETE,
        &format!(
            "/api/v1/subscriptions/{}",
            on_source["id"].as_str().unwrap()
        ),
        &json!({}),
    )
    .await;
    let kept = app
        .get(&format!(
            "/api/v1/sources/{}",
            source["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(kept.status(), 200);

    // A provider belongs to the source; another user's source cannot be named.
    let both = app
        .send_json(
            Method::POST,
            "/api/v1/subscriptions",
            &json!({"name": "x", "target_url": "http://127.0.0.1:9/", "source_id": source["id"],
                    "provider": {"kind": "github", "secret": "s"}}),
        )
        .await;
    assert_eq!(both.status(), 422);
    let stranger = app.another_user("stranger@example.com").await;
    let foreign = app
        .api
        .post(format!("{}/api/v1/subscriptions", app.address))
        .bearer_auth(&stranger)
        .json(&json!({"name": "x", "target_url": "http://127.0.0.1:9/", "source_id": source["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 422);
    let theirs = app
        .api
        .get(format!(
            "{}/api/v1/sources/{}",
            app.address,
            source["id"].as_str().unwrap()
        ))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    app.shutdown().await;
}

#[tokio::test]
async fn an_event_no_subscription_takes_is_kept_as_unrouted() {
    let app = spawn_app().await;
    let source = app.create_source("nobody listens").await;
    let id = app
        .accept(source["ingest_url"].as_str().unwrap(), "{}")
        .await;
    let event = app.event(&id).await;
    assert_eq!(event["status"], "unrouted", "{event}");
    assert_eq!(event["deliveries"], json!([]));
    assert_eq!(event["subscription_id"], Value::Null);
    let replay = app
        .send_json(
            Method::POST,
            &format!("/api/v1/events/{id}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(replay.status(), 409);
    let listed = app
        .get_json(&format!(
            "/api/v1/sources/{}/events",
            source["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(listed["data"][0]["status"], "unrouted", "{listed}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_source_edits_its_provider_and_deleting_it_closes_its_ingest_url() {
    let app = spawn_app().await;
    let source = app.create_source("github").await;
    let id = source["id"].as_str().unwrap();
    let edited = app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/sources/{id}"),
            &json!({"name": "github main", "provider": {"kind": "github", "secret": "gh-secret"}}),
        )
        .await;
    assert_eq!(edited.status(), 200);
    let edited: Value = edited.json().await.unwrap();
    assert_eq!(edited["name"], "github main");
    assert_eq!(edited["provider"]["kind"], "github");
    assert!(edited["provider"].get("secret").is_none(), "write-only");
    // Unsigned posts are refused now.
    let unsigned = app
        .api
        .post(source["ingest_url"].as_str().unwrap())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let bad = app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/sources/{id}"),
            &json!({"name": "  "}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let deleted = app
        .send_json(Method::DELETE, &format!("/api/v1/sources/{id}"), &json!({}))
        .await;
    assert_eq!(deleted.status(), 204);
    let gone = app
        .api
        .post(source["ingest_url"].as_str().unwrap())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    app.shutdown().await;
}

/// A subscription's signing secret before the migration, and the one it rotated out.
const NEW_SECRET: &str = "whsec_bmV3LXNlY3JldC1rZXktZm9yLXRlc3Rz";
const OLD_SECRET: &str = "whsec_b2xkLXNlY3JldC1rZXktZm9yLXRlc3Rz";

/// The previous version's last migration: the database the migration test starts from.
const PREVIOUS_VERSION: &str = "20261129000003";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_to_sources_keeps_every_url_event_attempt_and_key_and_delivers_nothing_twice()
{
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
    let resources = TestResources::new(spenza::config::DEFAULT_RETRY_SCHEDULE).await;
    let url = resources.database.url.clone();
    migrate_up_to(&url, PREVIOUS_VERSION);
    let sink = Sink::start(Script::Ok).await;
    // The previous version's rows: a user; an active subscription with a rotated secret and a
    // provider, a paused one and a disabled one; events in every status, with attempts and
    // idempotency keys. Pending and retrying ones are overdue, for the reaper.
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let (user, active, paused, disabled) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let events: Vec<uuid::Uuid> = (0..6).map(|_| uuid::Uuid::now_v7()).collect();
    let target = &sink.url;
    conn.batch_execute(&format!(
        "INSERT INTO users (id, email, password_hash) VALUES ('{user}', '{OWNER_EMAIL}', 'x'); \
         INSERT INTO subscriptions (id, user_id, name, target_url, ingest_token, signing_secret, \
             previous_signing_secret, previous_secret_expires_at, provider, is_active, \
             disabled_reason, consecutive_failures) VALUES \
         ('{active}', '{user}', 'active', '{target}', '{token_a}', '{new}', '{old}', \
             now() + interval '1 day', '{{\"kind\": \"hmac\", \"secret\": \"ps\", \
             \"header\": \"x-sig\", \"algorithm\": \"sha256\", \"encoding\": \"hex\"}}', \
             true, NULL, 0), \
         ('{paused}', '{user}', 'paused', '{target}', '{token_p}', '{new}', NULL, NULL, NULL, \
             false, NULL, 0), \
         ('{disabled}', '{user}', 'disabled', '{target}', '{token_d}', '{new}', NULL, NULL, \
             NULL, false, 'circuit breaker opened after 100 consecutive failed attempts', 100); \
         INSERT INTO events (id, subscription_id, status, body, payload, idempotency_key, \
             attempts, retry_count, next_attempt_at, completed_at, last_error) VALUES \
         ('{e0}', '{active}', 'completed', '\\x7b7d', '{{}}', 'key-0', 1, 0, NULL, now(), NULL), \
         ('{e1}', '{active}', 'failed', '\\x7b7d', '{{}}', 'key-1', 3, 2, NULL, NULL, 'HTTP 500'), \
         ('{e2}', '{active}', 'pending', '\\x7b7d', '{{}}', 'key-2', 0, 0, \
             now() - interval '1 hour', NULL, NULL), \
         ('{e3}', '{active}', 'retrying', '\\x7b7d', '{{}}', NULL, 1, 1, \
             now() - interval '1 hour', NULL, 'HTTP 503'), \
         ('{e4}', '{paused}', 'pending', '\\x7b7d', '{{}}', NULL, 0, 0, NULL, NULL, NULL), \
         ('{e5}', '{disabled}', 'retrying', '\\x7b7d', '{{}}', NULL, 2, 1, NULL, NULL, 'HTTP 500'); \
         INSERT INTO delivery_attempts (event_id, attempt, started_at, duration_ms, status_code, \
             subscription_id) VALUES \
         ('{e0}', 1, now(), 5, 200, '{active}'), ('{e1}', 1, now(), 5, 500, '{active}'), \
         ('{e1}', 2, now(), 5, 500, '{active}'), ('{e1}', 3, now(), 5, 500, '{active}'), \
         ('{e3}', 1, now(), 5, 503, '{active}'), ('{e5}', 1, now(), 5, 500, '{disabled}'), \
         ('{e5}', 2, now(), 5, 500, '{disabled}');",
        new = NEW_SECRET,
        old = OLD_SECRET,
        token_a = "a".repeat(43),
        token_p = "p".repeat(43),
        token_d = "d".repeat(43),
        e0 = events[0],
        e1 = events[1],
        e2 = events[2],
        e3 = events[3],
        e4 = events[4],
        e5 = events[5],
    ))
    .await
    .unwrap();
    drop(conn);

    let app = spawn_app_on_old_database(resources).await;

    // Every subscription kept its ingest URL, provider check, secrets and state, each on a
    // source of its own.
    let subscriptions = app.get_json("/api/v1/subscriptions").await;
    let find = |id: uuid::Uuid| {
        subscriptions["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id.to_string())
            .cloned()
            .expect("the subscription is kept")
    };
    let (a, p, d) = (find(active), find(paused), find(disabled));
    for (subscription, token) in [(&a, 'a'), (&p, 'p'), (&d, 'd')] {
        assert!(
            subscription["ingest_url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/ingest/{}", token.to_string().repeat(43))),
            "{subscription}"
        );
        assert_eq!(subscription["source_id"], subscription["id"]);
    }
    assert_eq!(a["provider"]["kind"], "hmac");
    assert_eq!(a["signing_secret"], NEW_SECRET);
    assert_eq!(
        (p["is_active"].clone(), p["disabled_reason"].clone()),
        (json!(false), Value::Null)
    );
    assert_eq!(d["is_active"], false);
    assert!(
        d["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("circuit breaker")
    );
    let sources = app.get_json("/api/v1/sources").await;
    assert_eq!(sources["data"].as_array().unwrap().len(), 3);

    // Every event kept its id, status and attempts, as one delivery with the event's id.
    for (event, status, attempts) in [
        (events[0], "completed", 1),
        (events[1], "failed", 3),
        (events[4], "pending", 0),
        (events[5], "retrying", 2),
    ] {
        let found = app.event(&event.to_string()).await;
        assert_eq!(found["status"], status, "{found}");
        assert_eq!(found["attempts"], attempts, "{found}");
        assert_eq!(found["deliveries"][0]["id"], event.to_string(), "{found}");
        let logged = app
            .get_json(&format!("/api/v1/events/{event}/attempts"))
            .await;
        assert_eq!(logged["data"].as_array().unwrap().len(), attempts as usize);
    }
    let mut old = app.db().await;
    let previous: Option<String> = {
        use diesel::{ExpressionMethods, QueryDsl};
        use spenza::db::schema::subscriptions;
        subscriptions::table
            .filter(subscriptions::id.eq(active))
            .select(subscriptions::previous_signing_secret)
            .first(&mut old)
            .await
            .unwrap()
    };
    assert_eq!(
        previous.as_deref(),
        Some(OLD_SECRET),
        "the rotated-out secret still signs"
    );

    // The overdue ones are delivered, once each; the delivered and failed ones are not again,
    // nor the paused and disabled subscriptions' held ones.
    app.wait_for_status(&events[2].to_string(), "completed")
        .await;
    app.wait_for_status(&events[3].to_string(), "completed")
        .await;
    // A new event at the old URL, signed as its provider check asks; an old key is a duplicate.
    let body = r#"{"fresh":true}"#;
    let signature = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"ps").unwrap();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let ingest_url = a["ingest_url"].as_str().unwrap();
    let fresh = app
        .api
        .post(ingest_url)
        .header("x-sig", &signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 202);
    let fresh: Value = fresh.json().await.unwrap();
    app.wait_for_status(fresh["event_id"].as_str().unwrap(), "completed")
        .await;
    let again = app
        .api
        .post(ingest_url)
        .header("x-sig", &signature)
        .header("idempotency-key", "key-0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        200,
        "key-0 was seen by the previous version"
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["event_id"], events[0].to_string());

    let received: Vec<String> = sink
        .received()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    let signatures = sink.received()[0]
        .header("webhook-signature")
        .unwrap()
        .split(' ')
        .count();
    assert_eq!(
        signatures, 2,
        "signed with the new secret and the rotated-out one"
    );
    let unique: HashSet<&String> = received.iter().collect();
    assert_eq!(
        unique.len(),
        received.len(),
        "nothing delivered twice: {received:?}"
    );
    let expected: HashSet<String> = [
        events[2].to_string(),
        events[3].to_string(),
        fresh["event_id"].as_str().unwrap().to_owned(),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<HashSet<_>>(),
        expected
    );
    sink.stop().await;
    app.shutdown().await;
}
