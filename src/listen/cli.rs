//! The `spenza listen` command: holds a WebSocket to the relay, forwards each event it receives
//! to a local URL, reports each outcome back, and reconnects by itself when the connection is
//! lost. Events go to stdout, one line (or JSON object) each; what the command itself has to
//! say goes to stderr.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::protocol::{CLOSE_GONE, Forward, FromCli, ListenQuery, Outcome, ToCli};
use crate::config::{ListenArgs, ListenOutput};
use crate::delivery::{describe, read_truncated};
use crate::domain::forwarded_url;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The first wait before reconnecting, doubling up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// How long the relay may stay silent (it pings every ten seconds) before the connection counts
/// as lost.
const SILENCE_LIMIT: Duration = Duration::from_secs(35);
/// How long Ctrl-C waits, past the longest timeout of the requests under way, for them to end
/// and be reported.
const FINISH_MARGIN: Duration = Duration::from_secs(1);

/// How a connection ended.
enum Ended {
    /// Ctrl-C: the command is done.
    Stopped,
    /// Lost, or closed by the relay for a reason a new connection may not have.
    Lost(String),
}

/// Runs `spenza listen` until Ctrl-C, or until the relay refuses it for good.
pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => hostname::get()
            .context("reading this machine's hostname for the listen subscription's name")?
            .to_string_lossy()
            .into_owned(),
    };
    let query = ListenQuery {
        source: args.source.clone(),
        name,
        filter: args.filter.clone(),
        retry: args.retry,
    };
    let url = listen_url(&args.url, &query)?;
    let http = reqwest::Client::builder()
        // The local URL is on this machine: no proxy in between.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Spenza-listen/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
    }
    let mut backoff = MIN_BACKOFF;
    let mut connected_before = false;
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            connected = connect(&url, &args.api_key) => connected,
        };
        let why = match connected {
            Ok((socket, ready)) => {
                backoff = MIN_BACKOFF;
                say_ready(&ready, &args, connected_before);
                connected_before = true;
                match serve(socket, &args, &http, &stop).await? {
                    Ended::Stopped => {
                        eprintln!(
                            "Stopped. Events not forwarded yet wait for the next spenza listen."
                        );
                        return Ok(());
                    }
                    Ended::Lost(why) => why,
                }
            }
            Err(Refusal::Final(why)) => anyhow::bail!("{why}"),
            // Reconnecting, a session of its own may still count a while (its relay died).
            Err(Refusal::Full(why)) if connected_before => why,
            Err(Refusal::Full(why)) => anyhow::bail!("{why}"),
            Err(Refusal::Passing(why)) => why,
        };
        eprintln!(
            "Connection to the relay lost ({why}); reconnecting in {}.",
            humantime::format_duration(backoff)
        );
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// `ws(s)://<relay>/api/v1/listen?...`, from the relay's URL.
fn listen_url(relay: &url::Url, query: &ListenQuery) -> anyhow::Result<url::Url> {
    let mut base = relay.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let mut url = base.join("api/v1/listen")?;
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => anyhow::bail!("the relay's URL must be http or https, not {other}"),
    };
    url.set_scheme(scheme)
        .map_err(|()| anyhow::anyhow!("cannot make a WebSocket URL of {relay}"))?;
    let mut pairs = url.query_pairs_mut();
    pairs.append_pair("source", &query.source);
    pairs.append_pair("name", &query.name);
    if let Some(filter) = &query.filter {
        pairs.append_pair("filter", filter);
    }
    if query.retry {
        pairs.append_pair("retry", "true");
    }
    drop(pairs);
    Ok(url)
}

/// Why a connection could not be made.
enum Refusal {
    /// The relay refused what was asked (a wrong key, an unknown source): asking again changes
    /// nothing.
    Final(String),
    /// As many sessions as the relay allows are connected.
    Full(String),
    /// The relay is unreachable or restarting: try again.
    Passing(String),
}

/// Connects, and waits for the relay's `ready`.
async fn connect(url: &url::Url, key: &str) -> Result<(Socket, ToCli), Refusal> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|error| Refusal::Final(format!("{url} is not a WebSocket URL: {error}")))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| Refusal::Final("the API key is not valid in a header".to_owned()))?;
    request.headers_mut().insert("authorization", bearer);
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let detail = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
                .and_then(|problem| problem_text(&problem))
                .unwrap_or_else(|| status.to_string());
            let why = match status.as_u16() {
                401 => format!("the relay refused the API key: {detail}"),
                403 => format!("the API key may not listen: {detail}"),
                404 => format!("no such source in the key's workspace: {detail}"),
                _ => format!("the relay answered {status}: {detail}"),
            };
            return Err(match status.as_u16() {
                429 => Refusal::Full(why),
                500.. => Refusal::Passing(why),
                _ => Refusal::Final(why),
            });
        }
        Err(error) => return Err(Refusal::Passing(error.to_string())),
    };
    loop {
        let Ok(message) = tokio::time::timeout(SILENCE_LIMIT, socket.next()).await else {
            return Err(Refusal::Passing(
                "the relay did not start the session".into(),
            ));
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                return match serde_json::from_str::<ToCli>(&text) {
                    Ok(ready @ ToCli::Ready { .. }) => Ok((socket, ready)),
                    _ => Err(Refusal::Final(
                        "the relay did not start the session as this version expects".to_owned(),
                    )),
                };
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(Refusal::Passing(closed(frame.as_ref())));
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(Refusal::Passing(error.to_string())),
            None => return Err(Refusal::Passing("the relay closed the connection".into())),
        }
    }
}

/// A problem's detail, with each invalid field's message.
fn problem_text(problem: &serde_json::Value) -> Option<String> {
    let mut text = problem.get("detail")?.as_str()?.to_owned();
    for error in problem
        .get("errors")
        .and_then(|errors| errors.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(field), Some(message)) = (
            error.get("field").and_then(|f| f.as_str()),
            error.get("message").and_then(|m| m.as_str()),
        ) {
            text.push_str(&format!("; {field}: {message}"));
        }
    }
    Some(text)
}

fn closed(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) if !frame.reason.is_empty() => format!("the relay closed it: {}", frame.reason),
        _ => "the relay closed it".to_owned(),
    }
}

fn say_ready(ready: &ToCli, args: &ListenArgs, again: bool) {
    let ToCli::Ready {
        subscription_id,
        subscription_name,
        source_id,
        source_name,
        in_flight,
    } = ready
    else {
        return;
    };
    if again {
        eprintln!("Reconnected.");
    } else {
        eprintln!(
            "Listening to source {source_name} ({source_id}) as listen subscription \
             {subscription_name:?} ({subscription_id}); forwarding to {}, up to {in_flight} at \
             a time. Ctrl-C to stop.",
            args.forward_to
        );
    }
}

/// Forwards what the relay sends until the connection ends or Ctrl-C.
async fn serve(
    mut socket: Socket,
    args: &ListenArgs,
    http: &reqwest::Client,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Ended> {
    let (done, mut outcomes) = mpsc::unbounded_channel::<Outcome>();
    let mut under_way = 0usize;
    // The longest a request under way may take.
    let mut longest = Duration::ZERO;
    let mut heard = Instant::now();
    let mut check = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            outcome = outcomes.recv() => {
                let outcome = outcome.expect("serve holds a sender");
                under_way -= 1;
                if let Err(error) = report(&mut socket, outcome).await {
                    return Ok(Ended::Lost(error.to_string()));
                }
            }
            message = socket.next() => {
                heard = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ToCli>(&text) {
                        Ok(ToCli::Event(forward)) => {
                            under_way += 1;
                            longest = longest.max(Duration::from_millis(forward.timeout_ms));
                            let (http, done) = (http.clone(), done.clone());
                            let (target, output) = (args.forward_to.clone(), args.output);
                            tokio::spawn(async move {
                                let outcome = forward_locally(&http, &target, forward, output).await;
                                let _ = done.send(outcome);
                            });
                        }
                        Ok(ToCli::Ready { .. }) => {}
                        Err(error) => anyhow::bail!("the relay sent what this version does not understand: {error}"),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        if let Some(frame) = &frame
                            && frame.code == CloseCode::from(CLOSE_GONE)
                        {
                            anyhow::bail!("{}", frame.reason);
                        }
                        return Ok(Ended::Lost(closed(frame.as_ref())));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Ok(Ended::Lost(error.to_string())),
                    None => return Ok(Ended::Lost("the connection ended".into())),
                }
            }
            _ = check.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    return Ok(Ended::Lost("the relay went silent".into()));
                }
            }
        }
    }
    // Ctrl-C: what is under way ends and is reported; what the relay sent meanwhile is not
    // forwarded, and goes back to it as the connection closes.
    let deadline = tokio::time::Instant::now() + longest + FINISH_MARGIN;
    while under_way > 0 {
        match tokio::time::timeout_at(deadline, outcomes.recv()).await {
            Ok(Some(outcome)) => {
                under_way -= 1;
                if report(&mut socket, outcome).await.is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = socket
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "spenza listen stopped".into(),
        }))
        .await;
    // Read until the relay answers the close, briefly.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    Ok(Ended::Stopped)
}

async fn report(socket: &mut Socket, outcome: Outcome) -> Result<(), tungstenite::Error> {
    let frame = serde_json::to_string(&FromCli::Outcome(outcome)).expect("an outcome serializes");
    socket.send(Message::text(frame)).await
}

/// Makes one delivery locally, prints it, and says how it went.
async fn forward_locally(
    http: &reqwest::Client,
    target: &url::Url,
    forward: Forward,
    output: ListenOutput,
) -> Outcome {
    let timeout = Duration::from_millis(forward.timeout_ms);
    let body = STANDARD.decode(&forward.body).unwrap_or_default();
    let url = forwarded_url(target.as_str(), &forward.path, &forward.query);
    let mut headers = HeaderMap::new();
    for (name, value) in &forward.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    let method =
        reqwest::Method::from_bytes(forward.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let event_type = event_type(&body);
    let clock = Instant::now();
    let sent = http
        .request(method, &url)
        .headers(headers)
        .timeout(timeout)
        .body(body)
        .send()
        .await;
    let (status, error, timed_out, response_body) = match sent {
        Ok(response) => {
            let status = response.status();
            let error = (!status.is_success()).then(|| format!("HTTP {status}"));
            (
                Some(status.as_u16()),
                error,
                false,
                read_truncated(response).await,
            )
        }
        Err(error) => (
            None,
            Some(describe(&error, timeout)),
            error.is_timeout(),
            None,
        ),
    };
    let outcome = Outcome {
        delivery_id: forward.delivery_id,
        duration_ms: u32::try_from(clock.elapsed().as_millis()).unwrap_or(u32::MAX),
        status,
        error,
        timed_out,
        response_body,
    };
    print_line(&forward, event_type.as_deref(), &outcome, output);
    outcome
}

/// The provider's event type, when the body is a JSON object with a string `type`.
fn event_type(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(value.get("type")?.as_str()?.to_owned())
}

fn print_line(
    forward: &Forward,
    event_type: Option<&str>,
    outcome: &Outcome,
    output: ListenOutput,
) {
    let now = chrono::Local::now();
    match output {
        ListenOutput::Json => {
            let line = serde_json::json!({
                "time": now.to_rfc3339(),
                "event_id": forward.event_id,
                "delivery_id": forward.delivery_id,
                "type": event_type,
                "status": outcome.status,
                "error": outcome.error,
                "latency_ms": outcome.duration_ms,
            });
            println!("{line}");
        }
        ListenOutput::Text => {
            let result = match (outcome.status, &outcome.error) {
                (Some(status), _) => status.to_string(),
                (None, Some(error)) => error.clone(),
                (None, None) => "?".to_owned(),
            };
            println!(
                "{}  {}  {:<24}  {}  {} ms",
                now.format("%H:%M:%S"),
                forward.event_id,
                event_type.unwrap_or("-"),
                result,
                outcome.duration_ms
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(filter: Option<&str>, retry: bool) -> ListenQuery {
        ListenQuery {
            source: "stripe prod".into(),
            name: "laptop".into(),
            filter: filter.map(str::to_owned),
            retry,
        }
    }

    #[test]
    fn the_listen_url_is_the_relays_own_over_websocket_under_its_path() {
        let relay = url::Url::parse("https://relay.example.com/spenza").unwrap();
        let url = listen_url(&relay, &query(Some(r#"{"type":"a"}"#), true)).unwrap();
        assert_eq!(url.scheme(), "wss");
        assert_eq!(url.path(), "/spenza/api/v1/listen");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("source".into(), "stripe prod".into()),
                ("name".into(), "laptop".into()),
                ("filter".into(), r#"{"type":"a"}"#.into()),
                ("retry".into(), "true".into()),
            ]
        );
        let plain = listen_url(
            &url::Url::parse("http://127.0.0.1:8080").unwrap(),
            &query(None, false),
        )
        .unwrap();
        assert_eq!(
            plain.as_str(),
            "ws://127.0.0.1:8080/api/v1/listen?source=stripe+prod&name=laptop"
        );
    }

    #[test]
    fn an_event_type_is_read_from_a_json_bodys_type() {
        assert_eq!(
            event_type(br#"{"type":"invoice.paid","id":1}"#).as_deref(),
            Some("invoice.paid")
        );
        assert_eq!(event_type(br#"{"type":3}"#), None);
        assert_eq!(event_type(b"a=b"), None);
    }

    #[test]
    fn a_problem_reads_as_its_detail_and_each_field() {
        let problem = serde_json::json!({
            "detail": "the request is invalid",
            "errors": [{"field": "filter", "message": "not JSON"}],
        });
        assert_eq!(
            problem_text(&problem).unwrap(),
            "the request is invalid; filter: not JSON"
        );
    }
}
