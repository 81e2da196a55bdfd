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

/// Credentials by their whole name.
const CREDENTIALS: &[&str] = &["authorization", "proxy-authorization", "cookie"];
/// What only describes this hop.
const HOP: &[&str] = &[
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

/// Whether a header (by lower-case name) carries a credential.
fn is_credential(name: &str) -> bool {
    let name = name.replace('_', "-");
    CREDENTIALS.contains(&name.as_str())
        || name.starts_with("proxy-")
        || CREDENTIAL_MARKS.iter().any(|mark| name.contains(mark))
        || (name.ends_with(KEY_SUFFIX) && !NOT_A_CREDENTIAL.contains(&name.as_str()))
}

/// Whether a header (by lower-case name) is never kept with an event: a credential (`also` names
/// the source's own, if any), or what only describes this hop.
fn dropped(name: &str, also: Option<&str>) -> bool {
    HOP.contains(&name) || is_credential(name) || also == Some(name)
}

const MAX_HEADERS: usize = 64;
const MAX_VALUE_LEN: usize = 2048;

/// The request headers kept with the event (provider ids, topics, signatures), bounded in
/// number and size. `also` is the source's own credential header, if it has one.
pub fn selected_headers(headers: &HeaderMap, also: Option<&str>) -> Value {
    bounded(headers, |name, value| {
        (!dropped(name, also)).then(|| Value::String(value.to_owned()))
    })
}

/// What a refused request's headers are shown as: all of them, bounded like an event's, with
/// every credential's value masked (the source's own named by `also`).
pub fn masked_headers(headers: &HeaderMap, also: Option<&str>) -> Value {
    bounded(headers, |name, value| {
        Some(Value::String(
            if is_credential(name) || also == Some(name) {
                MASK.to_owned()
            } else {
                value.to_owned()
            },
        ))
    })
}

/// What a masked credential reads as.
pub const MASK: &str = "••••••";

/// At most [`MAX_HEADERS`] text headers no longer than [`MAX_VALUE_LEN`], each as `shown`
/// makes it (`None`: left out).
fn bounded(headers: &HeaderMap, shown: impl Fn(&str, &str) -> Option<Value>) -> Value {
    let mut kept = Map::new();
    for (name, value) in headers.iter() {
        if kept.len() == MAX_HEADERS {
            break;
        }
        if let Ok(value) = value.to_str()
            && value.len() <= MAX_VALUE_LEN
            && let Some(value) = shown(name.as_str(), value)
        {
            kept.insert(name.as_str().to_owned(), value);
        }
    }
    Value::Object(kept)
}

/// The query with parameter `name` masked (`Some(mask)`) or left out (`None`), the other
/// parameters as received.
pub fn without_param(query: &str, name: &str, mask: Option<&str>) -> String {
    query
        .split('&')
        .filter_map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            let decoded: String = url::form_urlencoded::parse(key.as_bytes())
                .map(|(key, _)| key.into_owned())
                .collect();
            if decoded != name {
                return Some(pair.to_owned());
            }
            mask.map(|mask| format!("{key}={mask}"))
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

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
            selected_headers(&headers, None),
            serde_json::json!({
                "idempotency-key": "order-42",
                "stripe-signature": "t=1,v1=ab",
                "x-github-event": "push",
                "user-agent": "GitHub-Hookshot"
            })
        );
    }

    #[test]
    fn the_sources_own_credential_header_is_not_kept_either() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-hook-pass"),
            HeaderValue::from_static("s3cret"),
        );
        headers.insert(
            HeaderName::from_static("x-event"),
            HeaderValue::from_static("created"),
        );
        assert_eq!(
            selected_headers(&headers, Some("x-hook-pass")),
            serde_json::json!({"x-event": "created"})
        );
        assert_eq!(
            masked_headers(&headers, Some("x-hook-pass")),
            serde_json::json!({"x-hook-pass": MASK, "x-event": "created"})
        );
    }

    #[test]
    fn refused_requests_show_every_header_with_credentials_masked() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Basic YTpi"),
            ("x-api-key", "k"),
            ("stripe-signature", "t=1,v1=ab"),
            ("content-length", "2"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        assert_eq!(
            masked_headers(&headers, None),
            serde_json::json!({
                "authorization": MASK,
                "x-api-key": MASK,
                "stripe-signature": "t=1,v1=ab",
                "content-length": "2"
            })
        );
    }

    #[test]
    fn a_query_parameter_is_masked_or_left_out_by_its_decoded_name() {
        let query = "a=1&api%5Fkey=s3cret&b=2&api_key=again";
        assert_eq!(without_param(query, "api_key", None), "a=1&b=2");
        assert_eq!(
            without_param(query, "api_key", Some("masked")),
            "a=1&api%5Fkey=masked&b=2&api_key=masked"
        );
        assert_eq!(without_param("a=1", "api_key", None), "a=1");
        assert_eq!(without_param("", "api_key", None), "");
    }
}
