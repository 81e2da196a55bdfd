//! Reading an ingest body within its limit, and what is kept beside the raw bytes.

use actix_web::HttpRequest;
use actix_web::http::header::{CONTENT_LENGTH, HeaderMap};
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::IngestError;

/// Reads the whole body, refusing it as soon as it is known to exceed `limit`.
pub async fn read_limited(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, IngestError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(IngestError::TooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| IngestError::BadBody(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(IngestError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The body as a JSON document, when it is a JSON object or array PostgreSQL can store
/// (`jsonb` refuses the NUL character, which JSON can only carry escaped). Anything else is kept
/// as bytes only.
pub fn as_document(body: &[u8]) -> Option<Value> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if !matches!(first, b'{' | b'[') || body.windows(6).any(|w| w == b"\\u0000") {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Headers never kept: credentials, and what only describes this hop.
const DROPPED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "accept-encoding",
    "keep-alive",
    "upgrade",
    "te",
];
/// Parts of a header name that mark a credential (`x-api-key`, `x-gitlab-token`,
/// `x-auth-token`, `x-webhook-secret`, `x-functions-key`...), underscores read as dashes. The
/// providers' signature headers the validators read (`stripe-signature`,
/// `x-hub-signature-256`, `webhook-signature`...) contain none of them.
const CREDENTIAL_MARKS: &[&str] = &["token", "secret", "password", "apikey", "auth"];
/// Names ending so are keys (`x-api-key`, `ocp-apim-subscription-key`), except the one the
/// relay itself reads, which names an event rather than unlocking anything.
const KEY_SUFFIX: &str = "-key";
const NOT_A_CREDENTIAL: &[&str] = &["idempotency-key"];

/// Whether a header (by lower-case name) is never kept with an event.
fn dropped(name: &str) -> bool {
    let name = name.replace('_', "-");
    DROPPED.contains(&name.as_str())
        || name.starts_with("proxy-")
        || CREDENTIAL_MARKS.iter().any(|mark| name.contains(mark))
        || (name.ends_with(KEY_SUFFIX) && !NOT_A_CREDENTIAL.contains(&name.as_str()))
}
const MAX_HEADERS: usize = 64;
const MAX_VALUE_LEN: usize = 2048;

/// The request headers kept with the event (provider ids, topics, signatures), bounded in
/// number and size.
pub fn selected_headers(headers: &HeaderMap) -> Value {
    let mut kept = Map::new();
    for (name, value) in headers.iter() {
        if kept.len() == MAX_HEADERS {
            break;
        }
        let name = name.as_str();
        if dropped(name) {
            continue;
        }
        if let Ok(value) = value.to_str()
            && value.len() <= MAX_VALUE_LEN
        {
            kept.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn json_objects_and_arrays_become_documents() {
        assert_eq!(
            as_document(b" {\"a\": 1}"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(as_document(b"[1,2]"), Some(serde_json::json!([1, 2])));
    }

    #[test]
    fn other_bodies_stay_bytes_only() {
        for body in [
            &b"a=1&b=2"[..],
            b"<xml/>",
            b"42",
            b"\"text\"",
            b"{broken",
            b"",
            b"{\"a\":\"\\u0000\"}",
        ] {
            assert_eq!(
                as_document(body),
                None,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn credentials_and_hop_headers_are_not_kept() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer x"),
            ("cookie", "a=b"),
            ("x-api-key", "k"),
            ("x-gitlab-token", "t"),
            ("x-auth-token", "t"),
            ("x-webhook-secret", "s"),
            ("x-password", "p"),
            ("x-functions-key", "f"),
            ("ocp-apim-subscription-key", "o"),
            ("x_api_key", "u"),
            ("idempotency-key", "order-42"),
            ("stripe-signature", "t=1,v1=ab"),
            ("x-github-event", "push"),
            ("user-agent", "GitHub-Hookshot"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        assert_eq!(
            selected_headers(&headers),
            serde_json::json!({
                "idempotency-key": "order-42",
                "stripe-signature": "t=1,v1=ab",
                "x-github-event": "push",
                "user-agent": "GitHub-Hookshot"
            })
        );
    }
}
