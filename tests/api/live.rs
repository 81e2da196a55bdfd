//! The live WebSocket from outside: who may connect, what each session sees, and updates that
//! cross from one relay process to another.

use std::time::Duration;

use futures_util::StreamExt;
use spenza::config::DEFAULT_RETRY_SCHEDULE;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::{
    Dashboard, PASSWORD, RelayProcess, Script, Sink, TestResources, create_user_with_key, spawn_app,
};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws?{query}` on `address` with these headers; the handshake's error if refused.
async fn open(
    address: &str,
    query: &str,
    headers: &[(&str, String)],
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = format!("{}/ws?{query}", address.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .expect("a header name");
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(value).unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// A signed-in page's WebSocket.
pub(crate) async fn open_as(dashboard: &Dashboard, query: &str) -> Socket {
    open(
        &dashboard.address,
        query,
        &[
            ("cookie", format!("spenza_session={}", dashboard.session)),
            ("origin", dashboard.address.clone()),
        ],
    )
    .await
    .expect("the relay accepts its own page's WebSocket")
}

/// Reads messages until one contains `wanted`; fails after `timeout` with what it read.
async fn read_until(socket: &mut Socket, wanted: &str, timeout: Duration) -> String {
    let mut seen = Vec::new();
    let read = async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Text(text)) = message {
                let text = text.to_string();
                if text.contains(wanted) {
                    return Some(text);
                }
                seen.push(text);
            }
        }
        None
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Some(text)) => text,
        _ => panic!("no message with {wanted} within {timeout:?}; read: {seen:?}"),
    }
}

/// The number of new events a message's marker counts, if it has the marker.
fn marker_count(message: &str) -> Option<usize> {
    let before = &message[..message.find(" new event")?];
    before[before.rfind('>')? + 1..].parse().ok()
}

/// The status an update gives `event`'s row, if it has the row.
fn status_in<'a>(message: &'a str, event: &str) -> Option<&'a str> {
    let row = &message[message.find(&format!("data-event-id=\"{event}\""))?..];
    let marker = "data-status=\"";
    let start = row.find(marker)? + marker.len();
    row[start..].split('"').next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_signed_in_page_of_the_relay_may_open_the_websocket() {
    let app = spawn_app().await;
    let dashboard = app.owner_dashboard().await;
    let cookie = format!("spenza_session={}", dashboard.session);
    let refused = [
        vec![("origin", app.address.clone())],
        vec![
            ("cookie", cookie.clone()),
            ("origin", "https://evil.example".into()),
        ],
        vec![("cookie", cookie.clone()), ("origin", "null".into())],
        vec![("cookie", cookie.clone())],
        vec![
            (
                "cookie",
                "spenza_session=not-a-live-session-token-at-all-00000".into(),
            ),
            ("origin", app.address.clone()),
        ],
    ];
    for headers in refused {
        let opened = open(&app.address, "", &headers).await;
        assert!(opened.is_err(), "opened with {headers:?}");
    }
    open_as(&dashboard, "").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sees_its_users_events_arrive_and_complete_and_never_another_users() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let owner = app.owner_dashboard().await;
    let mine = owner.create_subscription("mine", &sink.url).await;
    app.another_user("other@example.com").await;
    let other = app.dashboard_login("other@example.com", PASSWORD).await;
    let theirs = other.create_subscription("theirs", &sink.url).await;

    let mut all = open_as(&owner, "").await;
    let mut one = open_as(&owner, &format!("subscription={mine}")).await;
    let foreign = app
        .accept(&other.ingest_url(&theirs).await, r#"{"secret": "theirs"}"#)
        .await;
    let event = app
        .accept(&owner.ingest_url(&mine).await, r#"{"n": 1}"#)
        .await;

    for socket in [&mut all, &mut one] {
        let added = read_until(socket, &event, Duration::from_secs(10)).await;
        assert!(
            added.contains("hx-swap-oob=\"afterbegin:#event-rows\""),
            "a new row on top: {added}"
        );
        // Delivered in the same tick, or replaced in place by a later message.
        let mut latest = added;
        while status_in(&latest, &event) != Some("completed") {
            assert!(!latest.contains(&foreign), "{latest}");
            latest = read_until(socket, &event, Duration::from_secs(10)).await;
        }
        assert!(!latest.contains(&foreign), "{latest}");
    }
    // The other user's own page sees theirs, and nothing of the owner's.
    let mut theirs_page = open_as(&other, "").await;
    let second = app.accept(&other.ingest_url(&theirs).await, "{}").await;
    let seen = read_until(&mut theirs_page, &second, Duration::from_secs(10)).await;
    assert!(!seen.contains(&event));
    // And the owner's pages never got a row of theirs.
    let owners_next = app.accept(&owner.ingest_url(&mine).await, "{}").await;
    let seen = read_until(&mut all, &owners_next, Duration::from_secs(10)).await;
    assert!(!seen.contains(&second) && !seen.contains(&foreign));
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_to_one_process_shows_live_on_a_page_served_by_another() {
    // The processes run the default schedule: its wait queues are the ones to delete after.
    let resources = TestResources::new(DEFAULT_RETRY_SCHEDULE).await;
    create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let sink = Sink::start(Script::Ok).await;
    // Neither delivers: the only notice of the event is B's, from its ingest, so the page on A
    // can only hear of it across the broker.
    let api_only = [("SPENZA_ROLE", "api")];
    let a = RelayProcess::start(&resources, &api_only).await;
    let b = RelayProcess::start(&resources, &api_only).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let on_a = Dashboard::log_in(&a.address, client.clone(), "owner@example.com", PASSWORD).await;
    let subscription = on_a.create_subscription("replicated", &sink.url).await;
    let token = on_a
        .ingest_url(&subscription)
        .await
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let mut page_on_a = open_as(&on_a, &format!("subscription={subscription}")).await;
    let posted = client
        .post(format!("{}/ingest/{token}", b.address))
        .header("content-type", "application/json")
        .body(r#"{"via": "b"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let event: serde_json::Value = posted.json().await.unwrap();
    let event = event["event_id"].as_str().unwrap();
    let added = read_until(&mut page_on_a, event, Duration::from_secs(10)).await;
    assert!(
        added.contains("hx-swap-oob=\"afterbegin:#event-rows\""),
        "a new row from B's ingest: {added}"
    );
    sink.stop().await;
    drop((a, b));
}

/// Reads until the relay closes the socket; its close code, if it sent one.
pub(crate) async fn closed(socket: &mut Socket, timeout: Duration) -> Option<u16> {
    let read = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|frame| u16::from(frame.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(timeout, read)
        .await
        .expect("the relay closed the socket in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_session_loses_its_feed_and_a_stopping_relay_closes_for_a_reconnect() {
    let app = spawn_app().await;
    let leaving = app.owner_dashboard().await;
    let staying = app.owner_dashboard().await;
    let mut left = open_as(&leaving, "").await;
    let mut stays = open_as(&staying, "").await;
    assert_eq!(leaving.post("/logout", &[]).await.status(), 303);
    // Checked with every ping (10 s): the logged-out page's feed ends with a policy close.
    assert_eq!(closed(&mut left, Duration::from_secs(25)).await, Some(1008));
    // Stopping the relay closes the others at once with 1012, which htmx reconnects after.
    let stopping = tokio::spawn(app.shutdown());
    assert_eq!(closed(&mut stays, Duration::from_secs(5)).await, Some(1012));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the relay stops without waiting for its pages")
        .unwrap();
}

/// A page's WebSocket over a socket with a small receive buffer, which the test never reads:
/// a browser tab that hangs.
async fn open_stalled(dashboard: &Dashboard) -> Socket {
    let address = dashboard.address.trim_start_matches("http://");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(address.parse().expect("a socket address"))
        .await
        .expect("the relay listens");
    let mut request = format!("ws://{address}/ws").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "cookie",
        HeaderValue::from_str(&format!("spenza_session={}", dashboard.session)).unwrap(),
    );
    headers.insert("origin", HeaderValue::from_str(&dashboard.address).unwrap());
    let (socket, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("the relay accepts its own page's WebSocket");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_stop_reading_are_closed_and_hold_up_neither_others_nor_memory() {
    const STALLED: usize = 16;
    const LOAD: Duration = Duration::from_secs(45);
    let resources = TestResources::new(DEFAULT_RETRY_SCHEDULE).await;
    create_user_with_key(&resources.database_settings(), "owner@example.com").await;
    let sink = Sink::start(Script::Ok).await;
    let relay = RelayProcess::start(&resources, &[]).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let owner = Dashboard::log_in(
        &relay.address,
        client.clone(),
        "owner@example.com",
        PASSWORD,
    )
    .await;
    let subscription = owner.create_subscription("busy", &sink.url).await;
    let ingest_url = owner.ingest_url(&subscription).await;
    let post = async |body: String| {
        let posted = client
            .post(&ingest_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202);
        posted.json::<serde_json::Value>().await.unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Warmed up: the relay has rendered and delivered before its memory is read.
    let mut reading = open_as(&owner, "").await;
    let first = post("{}".into()).await;
    read_until(&mut reading, &first, Duration::from_secs(10)).await;
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(open_stalled(&owner).await);
    }
    let before = relay.resident_kib();

    // A steady stream of events for longer than the relay waits for a silent browser, read by
    // one page and ignored by the others.
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    let mut posted = 0;
    let mut peak = before;
    let mut counted = None;
    while started.elapsed() < LOAD {
        tick.tick().await;
        post(format!(r#"{{"n": {posted}}}"#)).await;
        posted += 1;
        peak = peak.max(relay.resident_kib());
        // The page that reads keeps up: its messages are not held behind the stalled ones.
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(1), reading.next()).await
        {
            if let Ok(Message::Text(text)) = message {
                counted = marker_count(&text).or(counted);
            }
        }
    }
    // The page that reads is current. A render that found more new events than it shows (the
    // machine busy, a render late) switches the page to counting them in its marker; then the
    // count, not a row, accounts for the last event.
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(1), reading.next()).await
    {
        if let Ok(Message::Text(text)) = message {
            counted = marker_count(&text).or(counted);
        }
    }
    let latest = post(r#"{"n": "latest"}"#.into()).await;
    let current = match counted {
        None => latest.clone(),
        Some(count) => format!(">{} new events: show<", count + 1),
    };
    read_until(&mut reading, &current, Duration::from_secs(5)).await;
    eprintln!("posted {posted}; relay memory {before} KiB before, {peak} KiB at most");
    assert!(
        peak < before + 16 * 1024,
        "{STALLED} stalled pages grew the relay from {before} KiB to {peak} KiB"
    );

    // Each stalled page was given up on: what reaches it once it reads again is bounded, and
    // ends with the relay closing it.
    for mut socket in stalled {
        let mut bytes = 0;
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(message) = socket.next().await {
                match message {
                    Ok(Message::Close(_)) | Err(_) => return,
                    Ok(message) => bytes += message.len(),
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "a stalled page is still open after {bytes} bytes"
        );
        assert!(bytes < 1 << 20, "a stalled page was sent {bytes} bytes");
        eprintln!("a stalled page got {bytes} bytes before its close");
    }
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_reconnects_gets_what_it_missed_at_once() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let owner = app.owner_dashboard().await;
    let subscription = owner.create_subscription("missed", &sink.url).await;
    let ingest_url = owner.ingest_url(&subscription).await;
    // The page had `shown` (in flight, as far as it knew) when its socket dropped; `missed`
    // arrived while it was away.
    let shown = app.accept(&ingest_url, "{}").await;
    let missed = app.accept(&ingest_url, "{}").await;
    app.wait_for_status(&missed, "completed").await;
    app.wait_for_status(&shown, "completed").await;
    let mut page = open_as(
        &owner,
        &format!("subscription={subscription}&after={shown}&rows={shown}"),
    )
    .await;
    let caught_up = read_until(&mut page, &missed, Duration::from_secs(5)).await;
    assert!(
        caught_up.contains("hx-swap-oob=\"afterbegin:#event-rows\""),
        "the missed event as a new row: {caught_up}"
    );
    assert_eq!(status_in(&caught_up, &missed), Some("completed"));
    assert_eq!(
        status_in(&caught_up, &shown),
        Some("completed"),
        "{caught_up}"
    );
    assert_eq!(
        caught_up
            .matches(&format!("data-event-id=\"{shown}\""))
            .count(),
        1,
        "the row it had is replaced, not added: {caught_up}"
    );
    sink.stop().await;
    app.shutdown().await;
}

/// The rows a live message adds on top of the log.
fn new_rows_in(message: &str) -> usize {
    message
        .split("<tbody hx-swap-oob=\"afterbegin:#event-rows\">")
        .nth(1)
        .and_then(|rows| rows.split("</tbody>").next())
        .map_or(0, |rows| rows.matches("data-event-id=").count())
}

/// The count of the "N new events: show" marker, if the message has it.
fn marker_in(message: &str) -> Option<usize> {
    let end = message.find(" new events: show")?;
    message[..end]
        .rsplit('>')
        .next()
        .and_then(|count| count.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_becomes_a_count_on_a_marker_rendered_a_few_times_a_second() {
    const BURST: usize = 200;
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let owner = app.owner_dashboard().await;
    let subscription = owner.create_subscription("burst", &sink.url).await;
    let ingest_url = owner.ingest_url(&subscription).await;
    let mut page = open_as(&owner, &format!("subscription={subscription}")).await;
    let (poster, url) = (&app, &ingest_url);
    let posting = futures_util::stream::iter(0..BURST)
        .map(|n| async move { poster.accept(url, &format!(r#"{{"n": {n}}}"#)).await })
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    let reading = async {
        let mut rows = 0;
        let mut renders = Vec::new();
        let mut marker = 0;
        while rows + marker < BURST {
            let message = tokio::time::timeout(Duration::from_secs(20), page.next())
                .await
                .expect("the page hears of every event")
                .expect("the socket stays open")
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            renders.push(std::time::Instant::now());
            let added = new_rows_in(&text);
            assert!(added <= 20, "one render added {added} rows");
            if let Some(count) = marker_in(&text) {
                marker = count;
            } else {
                assert!(marker == 0, "rows after the marker: {text}");
                rows += added;
            }
        }
        (rows, marker, renders)
    };
    let (posted, (rows, marker, renders)) = tokio::join!(posting, reading);
    assert_eq!(posted.len(), BURST);
    assert!(marker > 0, "{BURST} events in a burst, all {rows} as rows");
    assert_eq!(rows + marker, BURST);
    for pair in renders.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(200),
            "two renders {gap:?} apart"
        );
    }
    sink.stop().await;
    app.shutdown().await;
}
