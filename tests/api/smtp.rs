//! A real SMTP server on loopback (mailin's), to receive what the relay mails.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::{Handler, Response, Server, SslConfig, response};

use crate::helpers::wait_until;

/// A message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The whole message: headers and body, as sent.
    pub data: String,
}

impl Received {
    /// The value of a header, as received.
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.data.split("\r\n\r\n").next()?;
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The body, decoded as a mail client does (quoted-printable, or as sent).
    pub fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body);
        match self.header("Content-Transfer-Encoding") {
            Some("quoted-printable") => String::from_utf8(
                quoted_printable::decode(body, quoted_printable::ParseMode::Strict)
                    .expect("valid quoted-printable"),
            )
            .expect("UTF-8"),
            _ => body.to_owned(),
        }
    }
}

/// Collects each message of a session, as the SMTP conversation delivers it.
#[derive(Clone)]
struct Collector {
    received: Arc<Mutex<Vec<Received>>>,
    current: Option<Received>,
}

impl Handler for Collector {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Some(Received {
            from: from.to_owned(),
            to: to.to_vec(),
            data: String::new(),
        });
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(current) = &mut self.current {
            current.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(done) = self.current.take() {
            self.received.lock().unwrap().push(done);
        }
        response::OK
    }
}

/// An SMTP server listening on a free loopback port, for the rest of the test process.
pub struct MailServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl MailServer {
    pub fn start() -> MailServer {
        MailServer::start_on(0)
    }

    /// A server on this loopback port (0: any free one): one that comes up where the relay has
    /// been failing to reach one.
    pub fn start_on(port: u16) -> MailServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut server = Server::new(Collector {
            received: received.clone(),
            current: None,
        });
        server
            .with_name("smtp.test")
            .with_ssl(SslConfig::None)
            .unwrap()
            .with_num_threads(2)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            if let Err(error) = server.serve() {
                panic!("the SMTP server stopped: {error}");
            }
        });
        MailServer { port, received }
    }

    /// `smtp://` URL of the server: plain, no credentials.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Waits for the first message to `to`.
    pub async fn message_to(&self, to: &str) -> Received {
        wait_until(
            Duration::from_secs(10),
            &format!("mail to {to}"),
            || async {
                self.received
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|message| message.to.iter().any(|address| address == to))
                    .cloned()
                    .ok_or_else(|| "none yet".to_owned())
            },
        )
        .await
    }
}
