//! Opening an AMQP connection with TCP_NODELAY set.
//!
//! amiquip's own `Connection::insecure_open` leaves Nagle's algorithm on: a small frame (a
//! publish, an ack) written while an earlier one is unacknowledged then waits for the peer's
//! delayed ACK, up to 40 ms on Linux. So plain `amqp://` URLs are opened here, on a socket we
//! configure, and handed to amiquip; `amqps://` goes through amiquip's TLS opener.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use amiquip::{Auth, Connection, ConnectionOptions, ConnectionTuning};
use anyhow::{Context, bail};
use url::Url;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Seconds between heartbeats: a silent broker is declared lost after about two of them.
const HEARTBEAT: u16 = 10;

/// Opens a connection to the broker through the first of `urls` that takes it (the nodes of a
/// cluster, in the order given); the error names each one's failure.
pub fn open(urls: &[String]) -> anyhow::Result<Connection> {
    let mut failures = Vec::new();
    for url in urls {
        match open_one(url) {
            Ok(connection) => return Ok(connection),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    match failures.as_slice() {
        [] => bail!("no broker URL is configured"),
        [only] => bail!("{only}"),
        all => bail!("no broker took the connection: {}", all.join("; ")),
    }
}

/// Opens a connection to the broker at `url`.
fn open_one(url: &str) -> anyhow::Result<Connection> {
    let parsed = Url::parse(url).context("parsing the AMQP URL")?;
    match parsed.scheme() {
        "amqps" => Ok(Connection::open(url)?),
        "amqp" => open_plain(&parsed),
        other => bail!("unsupported AMQP URL scheme {other:?}"),
    }
}

fn open_plain(url: &Url) -> anyhow::Result<Connection> {
    let host = url.host_str().unwrap_or("localhost");
    let port = url.port().unwrap_or(5672);
    let decode = |part: &str| {
        percent_decode(part).with_context(|| format!("decoding {part:?} in the AMQP URL"))
    };
    let username = match url.username() {
        "" => "guest".to_owned(),
        name => decode(name)?,
    };
    let password = match url.password() {
        None => "guest".to_owned(),
        Some(password) => decode(password)?,
    };
    // The path is the vhost, percent-encoded: "/%2f" is "/", and no path at all is "/" too.
    let vhost = match url.path().strip_prefix('/') {
        None | Some("") => "/".to_owned(),
        Some(encoded) => decode(encoded)?,
    };
    let mut last_error = None;
    for address in (host, port)
        .to_socket_addrs()
        .context("resolving the broker")?
    {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                let stream = mio::net::TcpStream::from_stream(stream)?;
                let options = ConnectionOptions::default()
                    .auth(Auth::Plain { username, password })
                    .virtual_host(vhost)
                    .heartbeat(HEARTBEAT)
                    .connection_timeout(Some(CONNECT_TIMEOUT));
                return Ok(Connection::insecure_open_stream(
                    stream,
                    options,
                    ConnectionTuning::default(),
                )?);
            }
            Err(error) => last_error = Some(error),
        }
    }
    match last_error {
        Some(error) => Err(error).with_context(|| format!("connecting to {host}:{port}")),
        None => bail!("{host} resolves to no address"),
    }
}

fn percent_decode(part: &str) -> anyhow::Result<String> {
    Ok(percent_encoding::percent_decode_str(part)
        .decode_utf8()?
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("%2f").unwrap(), "/");
        assert_eq!(percent_decode("my%20vhost").unwrap(), "my vhost");
        assert_eq!(percent_decode("plain").unwrap(), "plain");
    }

    #[test]
    fn other_schemes_are_refused() {
        assert!(open_one("http://127.0.0.1:5672/").is_err());
    }

    #[test]
    fn a_connection_no_url_takes_says_why_for_each_without_its_password() {
        assert!(open(&[]).unwrap_err().to_string().contains("no broker URL"));
        let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("amqp://guest:guest@{}/%2f", nobody.local_addr().unwrap());
        drop(nobody);
        let refused = open(&[closed.clone(), "http://127.0.0.1:1/".into()])
            .unwrap_err()
            .to_string();
        assert!(
            refused.starts_with("no broker took the connection"),
            "{refused}"
        );
        assert!(refused.contains("unsupported AMQP URL scheme"), "{refused}");
        assert!(!refused.contains("guest:guest"), "{refused}");
    }
}
