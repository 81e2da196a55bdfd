//! Filters and paths: which of a source's events each subscription receives, checked when
//! saved and applied at ingest; the path and query after the token, kept and forwarded.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Script, Sink, TestApp, spawn_app};

impl TestApp {
    /// Creates a subscription from this JSON, which must be accepted; its JSON.
    async fn subscription_from(&self, body: Value) -> Value {
        let response = self
            .send_json(Method::POST, "/api/v1/subscriptions", &body)
            .await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "creating {body}: {answer}");
        answer
    }

    /// A source's id and ingest URL, made new.
    async fn new_source(&self) -> (String, String) {
        let response = self
            .send_json(Method::POST, "/api/v1/sources", &json!({"name": "shop"}))
            .await;
        assert_eq!(response.status(), 201);
        let source: Value = response.json().await.unwrap();
        (
            source["id"].as_str().unwrap().to_owned(),
            source["ingest_url"].as_str().unwrap().to_owned(),
        )
    }

    /// POSTs `body` to `url` with these headers; the id of the accepted event.
    async fn accept_with(&self, url: &str, headers: &[(&str, &str)], body: &str) -> String {
        let mut request = self
            .api
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("ingest answered");
        assert_eq!(response.status(), 202, "ingest of {body} at {url}");
        let accepted: Value = response.json().await.unwrap();
        accepted["event_id"].as_str().unwrap().to_owned()
    }

    /// The subscriptions an event was routed to.
    async fn routed_to(&self, event: &str) -> BTreeSet<String> {
        let event = self.event(event).await;
        event["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| d["subscription_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

fn ids<const N: usize>(values: [&Value; N]) -> BTreeSet<String> {
    values.into_iter().map(id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_delivered_only_to_the_subscriptions_whose_filters_it_passes() {
    let app = spawn_app().await;
    let (everything, invoices, orders) = (
        Sink::start(Script::Ok).await,
        Sink::start(Script::Ok).await,
        Sink::start(Script::Ok).await,
    );
    let (source, url) = app.new_source().await;
    let to_everything = app
        .subscription_from(json!({
            "name": "everything", "target_url": everything.url, "source_id": source,
        }))
        .await;
    let invoice_filter =
        json!({"body": {"type": {"$startsWith": "invoice."}, "amount": {"$gte": 100}}});
    let to_invoices = app
        .subscription_from(json!({
            "name": "big invoices", "target_url": invoices.url, "source_id": source,
            "filter": invoice_filter,
        }))
        .await;
    assert_eq!(to_invoices["filter"], invoice_filter);
    assert_eq!(to_everything["filter"], Value::Null);
    // Headers by any case, the query and the path after the token.
    let to_orders = app
        .subscription_from(json!({
            "name": "acme orders", "target_url": orders.url, "source_id": source,
            "filter": {
                "headers": {"X-Shop-Topic": {"$in": ["orders/create", "orders/paid"]}},
                "query": {"shop": "acme"},
                "path": {"$startsWith": "/orders"},
            },
        }))
        .await;

    let big_invoice = app
        .accept_with(&url, &[], r#"{"type": "invoice.paid", "amount": 250}"#)
        .await;
    let small_invoice = app
        .accept_with(&url, &[], r#"{"type": "invoice.paid", "amount": 5}"#)
        .await;
    let acme_order = app
        .accept_with(
            &format!("{url}/orders/create?shop=acme&page=1"),
            &[("x-shop-topic", "orders/create")],
            r#"{"id": 7}"#,
        )
        .await;
    let other_shop = app
        .accept_with(
            &format!("{url}/orders/create?shop=globex"),
            &[("x-shop-topic", "orders/create")],
            r#"{"id": 8}"#,
        )
        .await;
    let not_json = {
        let response = app.ingest(&url, "text/plain", "invoice.paid").await;
        assert_eq!(response.status(), 202);
        let accepted: Value = response.json().await.unwrap();
        accepted["event_id"].as_str().unwrap().to_owned()
    };

    assert_eq!(
        app.routed_to(&big_invoice).await,
        ids([&to_everything, &to_invoices])
    );
    assert_eq!(app.routed_to(&small_invoice).await, ids([&to_everything]));
    assert_eq!(
        app.routed_to(&acme_order).await,
        ids([&to_everything, &to_orders])
    );
    assert_eq!(app.routed_to(&other_shop).await, ids([&to_everything]));
    assert_eq!(app.routed_to(&not_json).await, ids([&to_everything]));

    // What each endpoint received: every event at one, only its own at the others.
    everything.wait_for_requests(5).await;
    let webhook_ids = |sink: &Sink| -> BTreeSet<String> { sink.unique_ids().into_iter().collect() };
    invoices.wait_for_requests(1).await;
    assert_eq!(
        webhook_ids(&invoices),
        BTreeSet::from([big_invoice.clone()])
    );
    orders.wait_for_requests(1).await;
    assert_eq!(webhook_ids(&orders), BTreeSet::from([acme_order.clone()]));

    // The path and query are kept with the event, as received.
    let kept = app.event(&acme_order).await;
    assert_eq!(kept["path"], "/orders/create");
    assert_eq!(kept["query"], "shop=acme&page=1");
    let plain = app.event(&big_invoice).await;
    assert_eq!(
        (plain["path"].as_str(), plain["query"].as_str()),
        (Some(""), Some(""))
    );
    // Nothing else arrives later at the filtered endpoints.
    assert_eq!(invoices.received().len(), 1);
    assert_eq!(orders.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_filter_takes_is_kept_unrouted_and_answered_202() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let (source, url) = app.new_source().await;
    app.subscription_from(json!({
        "name": "pushes", "target_url": sink.url, "source_id": source,
        "filter": {"headers": {"x-github-event": "push"}},
    }))
    .await;
    let event = app
        .accept_with(&url, &[("x-github-event", "issues")], "{}")
        .await;
    let stored = app.event(&event).await;
    assert_eq!(stored["status"], "unrouted", "{stored}");
    assert_eq!(stored["deliveries"], json!([]));
    assert!(sink.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscription_or_an_edited_filter_applies_from_the_next_event() {
    let app = spawn_app().await;
    let (first, second) = (Sink::start(Script::Ok).await, Sink::start(Script::Ok).await);
    let (source, url) = app.new_source().await;
    let to_first = app
        .subscription_from(json!({"name": "first", "target_url": first.url, "source_id": source}))
        .await;
    // The relay now knows how this source routes its events.
    let before = app.accept_with(&url, &[], r#"{"type": "a"}"#).await;
    assert_eq!(app.routed_to(&before).await, ids([&to_first]));

    let to_second = app
        .subscription_from(json!({
            "name": "second", "target_url": second.url, "source_id": source,
            "filter": {"body": {"type": "b"}},
        }))
        .await;
    let b = app.accept_with(&url, &[], r#"{"type": "b"}"#).await;
    assert_eq!(app.routed_to(&b).await, ids([&to_first, &to_second]));

    let edited = app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/subscriptions/{}", id(&to_first)),
            &json!({"filter": {"body": {"type": "a"}}}),
        )
        .await;
    assert_eq!(edited.status(), 200);
    let edited: Value = edited.json().await.unwrap();
    assert_eq!(edited["filter"], json!({"body": {"type": "a"}}));
    let b_again = app.accept_with(&url, &[], r#"{"type": "b"}"#).await;
    assert_eq!(app.routed_to(&b_again).await, ids([&to_second]));

    // Null removes the filter: every event again.
    let cleared = app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/subscriptions/{}", id(&to_first)),
            &json!({"filter": null}),
        )
        .await;
    assert_eq!(cleared.status(), 200);
    let b_third = app.accept_with(&url, &[], r#"{"type": "b"}"#).await;
    assert_eq!(app.routed_to(&b_third).await, ids([&to_first, &to_second]));

    // A deleted subscription gets nothing more.
    let deleted = app
        .send_json(
            Method::DELETE,
            &format!("/api/v1/subscriptions/{}", id(&to_second)),
            &json!({}),
        )
        .await;
    assert_eq!(deleted.status(), 204);
    let after = app.accept_with(&url, &[], r#"{"type": "b"}"#).await;
    assert_eq!(app.routed_to(&after).await, ids([&to_first]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_refused_where_it_is_wrong_and_nothing_is_saved() {
    let app = spawn_app().await;
    let (source, _) = app.new_source().await;
    let refused = |filter: Value| {
        let app = &app;
        let source = source.clone();
        async move {
            let body = json!({
                "name": "bad", "target_url": "https://example.com/hook", "source_id": source,
                "filter": filter,
            });
            let response = app
                .send_json(Method::POST, "/api/v1/subscriptions", &body)
                .await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let message_of = |problem: &Value| -> String {
        let errors = problem["errors"].as_array().expect("field errors");
        assert_eq!(errors.len(), 1, "{problem}");
        assert_eq!(errors[0]["field"], "filter", "{problem}");
        errors[0]["message"].as_str().unwrap().to_owned()
    };

    let (status, problem) = refused(json!({"body": {"type": {"$gtt": 1}}})).await;
    assert_eq!(status, 422);
    assert_eq!(message_of(&problem), "/body/type/$gtt: unknown operator");

    let (status, problem) = refused(json!({"body": {"n": {"$in": 3}}})).await;
    assert_eq!(status, 422);
    assert!(
        message_of(&problem).starts_with("/body/n/$in: "),
        "{problem}"
    );

    let (status, problem) = refused(json!("type == invoice")).await;
    assert_eq!(status, 422, "{problem}");

    // Deeper than the limit, and far deeper than any parser should recurse: refused quickly.
    let mut deep = json!({"body": {"type": "x"}});
    for _ in 0..40 {
        deep = json!({ "$not": deep });
    }
    let (status, problem) = refused(deep).await;
    assert_eq!(status, 422);
    assert!(
        message_of(&problem).ends_with("nests deeper than 32 levels"),
        "{problem}"
    );
    let abyss = format!(
        r#"{{"name": "bad", "target_url": "https://example.com/hook", "source_id": "{source}", "filter": {}{}}}"#,
        r#"{"$not": "#.repeat(10_000),
        "}".repeat(10_000)
    );
    let started = std::time::Instant::now();
    let response = app
        .api
        .post(format!("{}/api/v1/subscriptions", app.address))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body(abyss)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 400, "refused as unreadable JSON");
    assert!(started.elapsed() < Duration::from_secs(5));

    let listed = app.get_json("/api/v1/subscriptions").await;
    assert_eq!(listed["data"], json!([]), "nothing was saved");

    // An edit with a bad filter changes nothing.
    let saved = app
        .subscription_from(json!({
            "name": "ok", "target_url": "https://example.com/hook", "source_id": source,
            "filter": {"body": {"type": "a"}},
        }))
        .await;
    let response = app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/subscriptions/{}", id(&saved)),
            &json!({"filter": {"body": {"$or": []}}, "name": "renamed"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let kept = app
        .get_json(&format!("/api/v1/subscriptions/{}", id(&saved)))
        .await;
    assert_eq!(kept["filter"], json!({"body": {"type": "a"}}));
    assert_eq!(kept["name"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_forwards_paths_gets_the_path_and_query_after_its_own() {
    let app = spawn_app().await;
    let (forwarding, plain) = (Sink::start(Script::Ok).await, Sink::start(Script::Ok).await);
    let (source, url) = app.new_source().await;
    app.subscription_from(json!({
        "name": "forwarding", "target_url": format!("{}/shop?key=k", forwarding.url),
        "source_id": source, "forward_path": true,
    }))
    .await;
    let not_forwarding = app
        .subscription_from(json!({"name": "plain", "target_url": plain.url, "source_id": source}))
        .await;
    assert_eq!(not_forwarding["forward_path"], false);

    app.accept_with(&format!("{url}/orders/create?topic=a%2Fb"), &[], "{}")
        .await;
    let received = forwarding.wait_for_requests(1).await;
    assert_eq!(received[0].path, "/hook/shop/orders/create");
    assert_eq!(received[0].query, "key=k&topic=a%2Fb");
    let received = plain.wait_for_requests(1).await;
    assert_eq!(
        (received[0].path.as_str(), received[0].query.as_str()),
        ("/hook", "")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_would_climb_out_of_the_endpoints_own_is_refused() {
    let app = spawn_app().await;
    let (_, url) = app.new_source().await;
    // Sent as written: reqwest would resolve the dot segments itself.
    let address = url.trim_start_matches("http://");
    let (host, path) = address.split_once('/').unwrap();
    for climbing in ["/../admin", "/a/%2e%2e/admin", "/./x"] {
        let answer = raw_post(host, &format!("/{path}{climbing}")).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{climbing}: {answer}");
    }
    assert_eq!(app.stored_events().await, 0);
}

/// POSTs `{}` to `path` on `host` over a plain socket, exactly as written; the answer's head.
async fn raw_post(host: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}
