//! Verifying providers at ingest: their signatures, their handshakes and the fixed credentials
//! some send. Each provider is one [`Validator`] in its own file, so adding a provider is adding
//! a file and a [`ProviderConfig`] variant.

mod credentials;
mod discord;
mod dropbox;
mod github;
mod gitlab;
mod hmac;
mod hubspot;
mod intercom;
mod linear;
mod mailgun;
mod meta;
mod microsoft_graph;
mod okta;
mod paddle;
mod provider;
mod sendgrid;
mod shopify;
mod slack;
mod square;
mod standard;
mod stripe;
mod twilio;
mod twitch;
mod x;
mod zoom;

use std::borrow::Cow;
use std::cell::OnceCell;

use ::hmac::Mac;
use ::hmac::digest::KeyInit;
use actix_web::http::Method;
use actix_web::http::header::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::domain::as_document;

pub use provider::{ApiKeyPlace, HmacAlgorithm, ProviderConfig, SignatureEncoding};

/// How far a signed timestamp may be from now, in either direction, before it counts as a replay.
pub const TOLERANCE_SECONDS: i64 = 300;

/// Why a request is refused. The text goes to the provider in the error body; [`Rejection::reason`]
/// is how it is counted and listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header (or field) the scheme needs is absent.
    #[error("a signature header is missing")]
    Missing,
    /// A header the scheme needs cannot be parsed.
    #[error("a signature header is malformed")]
    Malformed,
    /// The request is well formed but no signature on it matches.
    #[error("the signature does not match")]
    Mismatch,
    /// The signature matches but its timestamp is too far from now.
    #[error("the signature timestamp is too far from the current time")]
    Stale,
    /// Events come by `POST`, and this request is neither that nor a handshake the provider makes.
    #[error("this URL takes events by POST")]
    WrongMethod,
    /// A handshake whose answer the relay may not give (Meta's verify token differs).
    #[error("the handshake's verify token does not match")]
    Handshake,
    /// The fixed credentials the source requires are absent or wrong.
    #[error("the credentials are missing or wrong")]
    Credentials,
}

impl Rejection {
    /// Its name in metrics and in the source's list of rejected requests.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Missing => "missing_header",
            Rejection::Malformed => "malformed",
            Rejection::Mismatch => "bad_signature",
            Rejection::Stale => "stale_timestamp",
            Rejection::WrongMethod => "wrong_method",
            Rejection::Handshake => "failed_handshake",
            Rejection::Credentials => "wrong_credentials",
        }
    }

    /// How the pages name it.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Missing => "missing signature or header",
            Rejection::Malformed => "malformed signature",
            Rejection::Mismatch => "bad signature",
            Rejection::Stale => "stale timestamp",
            Rejection::WrongMethod => "wrong method",
            Rejection::Handshake => "failed handshake",
            Rejection::Credentials => "wrong credentials",
        }
    }

    /// The rejection a stored [`Rejection::reason`] names.
    pub fn from_reason(reason: &str) -> Option<Rejection> {
        Rejection::ALL
            .into_iter()
            .find(|rejection| rejection.reason() == reason)
    }

    /// Every reason there is.
    pub const ALL: [Rejection; 7] = [
        Rejection::Missing,
        Rejection::Malformed,
        Rejection::Mismatch,
        Rejection::Stale,
        Rejection::WrongMethod,
        Rejection::Handshake,
        Rejection::Credentials,
    ];
}

/// One request at an ingest URL, as a provider's check reads it. Its body is parsed as JSON at
/// most once, by whichever reads it first: a check, or ingest storing it.
pub struct Incoming<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The query as received, still percent-encoded, without its `?` (empty when none).
    pub query: &'a str,
    pub body: &'a [u8],
    /// The URL the provider sent the request to, as the provider knows it: the relay's public
    /// URL, the path and the query. Twilio, Square and HubSpot sign it.
    pub url: &'a str,
    /// Unix seconds, passed in so timestamp checks are testable.
    pub now: i64,
    /// The body as a JSON document, once read.
    document: OnceCell<Option<Value>>,
}

impl<'a> Incoming<'a> {
    pub fn new(
        method: &'a Method,
        headers: &'a HeaderMap,
        query: &'a str,
        body: &'a [u8],
        url: &'a str,
        now: i64,
    ) -> Self {
        Incoming {
            method,
            headers,
            query,
            body,
            url,
            now,
            document: OnceCell::new(),
        }
    }

    /// The body as a JSON document ([`as_document`]), for ingest to keep: the one a check
    /// already read, or read now.
    pub fn take_document(&mut self) -> Option<Value> {
        self.document
            .take()
            .unwrap_or_else(|| as_document(self.body))
    }

    /// The first value of a query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The body as a JSON document, when it is one.
    fn json(&self) -> Option<&Value> {
        self.document
            .get_or_init(|| as_document(self.body))
            .as_ref()
    }

    fn is_get(&self) -> bool {
        self.method == Method::GET
    }

    fn is_post(&self) -> bool {
        self.method == Method::POST
    }
}

/// The relay's own answer to a provider's handshake, sent with `200`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    /// The challenge echoed as plain text (sent with `X-Content-Type-Options: nosniff`, so a
    /// browser never reads a reflected challenge as a page).
    fn text(challenge: impl Into<String>) -> Answer {
        Answer {
            content_type: "text/plain; charset=utf-8",
            body: challenge.into(),
        }
    }

    fn json(value: serde_json::Value) -> Answer {
        Answer {
            content_type: "application/json",
            body: value.to_string(),
        }
    }
}

/// One provider's way of proving a request is theirs.
pub trait Validator: Send + Sync {
    /// Accepts an event request when it carries the provider's valid signature or credentials.
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection>;

    /// The provider's id for this event, the same on every retry of it, when it sends one.
    fn idempotency_key(&self, _request: &Incoming<'_>) -> Option<String> {
        None
    }

    /// `None` when the request is not this provider's handshake; otherwise the answer the relay
    /// gives it, or why it refuses (a signed handshake is answered only when its signature holds).
    fn handshake(&self, _request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        None
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.ct_eq(expected).into()
}

/// The signature in header `name` after its `prefix`: what body-HMAC providers send.
fn prefixed<'h>(headers: &'h HeaderMap, name: &str, prefix: &str) -> Result<&'h str, Rejection> {
    header(headers, name)?
        .strip_prefix(prefix)
        .ok_or(Rejection::Malformed)
}

/// A header's value: `Missing` when absent, `Malformed` when it is not visible ASCII.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, Rejection> {
    headers
        .get(name)
        .ok_or(Rejection::Missing)?
        .to_str()
        .map_err(|_| Rejection::Malformed)
}

/// A header used as an idempotency key; an empty or non-text value counts as absent.
fn header_key(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    (!value.is_empty()).then(|| value.to_owned())
}

/// A signed Unix timestamp in seconds.
fn parse_timestamp(raw: &str) -> Result<i64, Rejection> {
    raw.parse().map_err(|_| Rejection::Malformed)
}

/// `Stale` when `timestamp` is more than [`TOLERANCE_SECONDS`] before or after `now`.
fn within_tolerance(timestamp: i64, now: i64) -> Result<(), Rejection> {
    within_window(timestamp, now, TOLERANCE_SECONDS)
}

/// `Stale` when `timestamp` is more than `seconds` before or after `now`, for providers that
/// document a window of their own.
fn within_window(timestamp: i64, now: i64, seconds: i64) -> Result<(), Rejection> {
    // abs_diff cannot overflow, whatever a sender puts in the header.
    if now.abs_diff(timestamp) > seconds.unsigned_abs() {
        return Err(Rejection::Stale);
    }
    Ok(())
}

/// A presented MAC written in hex.
fn hex_bytes(encoded: &str) -> Result<Vec<u8>, Rejection> {
    hex::decode(encoded).map_err(|_| Rejection::Malformed)
}

/// A presented MAC written in standard base64.
fn base64_bytes(encoded: &str) -> Result<Vec<u8>, Rejection> {
    STANDARD.decode(encoded).map_err(|_| Rejection::Malformed)
}

/// Accepts when any presented MAC is the HMAC of `parts` under `key`. Each comparison is
/// constant-time (`verify_slice`), so a forger learns nothing from how long a refusal takes.
fn verify_any<M: Mac + KeyInit + Clone>(
    key: &[u8],
    parts: &[&[u8]],
    presented: &[Vec<u8>],
) -> Result<(), Rejection> {
    let mac: M = super::mac(key, parts);
    if presented
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

/// Helpers shared by the providers' tests. They sign with OpenSSL, an implementation independent
/// of the RustCrypto crates the validators use, so a test passes only if both agree.
#[cfg(test)]
mod testing {
    use actix_web::http::Method;
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::sign::Signer;

    use super::{Incoming, Rejection, Validator};

    /// A fixed "now" for every test.
    pub const NOW: i64 = 1_700_000_000;
    /// The public URL requests are made to in the tests.
    pub const URL: &str = "https://relay.example.com/ingest/tok";

    pub static POST: Method = Method::POST;
    pub static GET: Method = Method::GET;

    fn hmac(digest: MessageDigest, key: &[u8], message: &[u8]) -> Vec<u8> {
        let key = PKey::hmac(key).unwrap();
        let mut signer = Signer::new(digest, &key).unwrap();
        signer.update(message).unwrap();
        signer.sign_to_vec().unwrap()
    }

    pub fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
        hmac(MessageDigest::sha1(), key, message)
    }

    pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        hmac(MessageDigest::sha256(), key, message)
    }

    pub fn hmac_sha512(key: &[u8], message: &[u8]) -> Vec<u8> {
        hmac(MessageDigest::sha512(), key, message)
    }

    /// An Ed25519 signature of `message`, and the public key that checks it, raw.
    pub fn ed25519(key: &PKey<Private>, message: &[u8]) -> Vec<u8> {
        let mut signer = Signer::new_without_digest(key).unwrap();
        signer.sign_oneshot_to_vec(message).unwrap()
    }

    /// An ECDSA P-256 / SHA-256 signature of `message`, DER-encoded as SendGrid sends it.
    pub fn ecdsa_p256(key: &PKey<Private>, message: &[u8]) -> Vec<u8> {
        let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
        signer.update(message).unwrap();
        signer.sign_to_vec().unwrap()
    }

    /// Headers from name/value pairs; names may be in any case.
    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// A header whose value is not text.
    pub fn with_binary(mut map: HeaderMap, name: &str) -> HeaderMap {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        map
    }

    /// A `POST` to [`URL`] with no query.
    pub fn post<'a>(headers: &'a HeaderMap, body: &'a [u8], now: i64) -> Incoming<'a> {
        Incoming::new(&POST, headers, "", body, URL, now)
    }

    /// A request with a method, a query and the URL that goes with it.
    pub fn request<'a>(
        method: &'a Method,
        headers: &'a HeaderMap,
        query: &'a str,
        url: &'a str,
        body: &'a [u8],
    ) -> Incoming<'a> {
        Incoming::new(method, headers, query, body, url, NOW)
    }

    /// Checks of a plain `POST`, for schemes that sign only headers and body.
    pub trait Check {
        fn check(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Rejection>;
        fn key(&self, headers: &HeaderMap, body: &[u8]) -> Option<String>;
    }

    impl<V: Validator> Check for V {
        fn check(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Rejection> {
            self.verify(&post(headers, body, now))
        }

        fn key(&self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
            self.idempotency_key(&post(headers, body, NOW))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_inclusive_both_ways_and_survives_extremes() {
        assert_eq!(within_tolerance(1000, 1300), Ok(()));
        assert_eq!(within_tolerance(1300, 1000), Ok(()));
        assert_eq!(within_tolerance(1000, 1301), Err(Rejection::Stale));
        assert_eq!(within_tolerance(1301, 1000), Err(Rejection::Stale));
        assert_eq!(within_tolerance(i64::MIN, i64::MAX), Err(Rejection::Stale));
        assert_eq!(within_window(1000, 1600, 600), Ok(()));
        assert_eq!(within_window(1000, 1601, 600), Err(Rejection::Stale));
    }

    #[test]
    fn rejection_texts_are_short_and_reasons_distinct() {
        let texts: Vec<String> = Rejection::ALL.iter().map(ToString::to_string).collect();
        assert!(texts.iter().all(|t| !t.is_empty() && t.len() < 80));
        let mut reasons: Vec<&str> = Rejection::ALL.iter().map(|r| r.reason()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), Rejection::ALL.len());
        for rejection in Rejection::ALL {
            assert_eq!(Rejection::from_reason(rejection.reason()), Some(rejection));
        }
        assert_eq!(Rejection::from_reason("answered"), None);
    }

    #[test]
    fn query_parameters_are_read_decoded() {
        let headers = HeaderMap::new();
        let request = Incoming::new(
            &Method::GET,
            &headers,
            "a=1&hub.challenge=x%20y&a=2",
            b"",
            "https://relay.example.com/ingest/t?a=1",
            0,
        );
        assert_eq!(request.query_param("a").as_deref(), Some("1"));
        assert_eq!(request.query_param("hub.challenge").as_deref(), Some("x y"));
        assert_eq!(request.query_param("b"), None);
    }

    #[test]
    fn the_body_read_by_a_check_is_the_document_ingest_keeps() {
        let headers = HeaderMap::new();
        let mut request = Incoming::new(
            &Method::POST,
            &headers,
            "",
            br#"{"type":"invoice.paid"}"#,
            "https://relay.example.com/ingest/t",
            0,
        );
        assert_eq!(request.json().unwrap()["type"], "invoice.paid");
        assert_eq!(
            request.take_document(),
            Some(serde_json::json!({"type": "invoice.paid"}))
        );
        // Taken, it is read again if a check asks (ingest routes an event anew after a change).
        assert_eq!(request.json().unwrap()["type"], "invoice.paid");
        let mut form = Incoming::new(&Method::POST, &headers, "", b"a=1", "https://r/i/t", 0);
        assert!(form.json().is_none());
        assert_eq!(form.take_document(), None);
    }
}
