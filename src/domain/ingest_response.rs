//! What a source answers a provider whose request it accepted. By default `202` with the event
//! id as JSON; some providers count anything but `200` as a failure, and Discord wants its own
//! interaction response, so a source can say otherwise.

use actix_web::http::header::HeaderValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The statuses a source may answer an accepted request with.
pub const STATUSES: [u16; 4] = [200, 201, 202, 204];
/// The longest body a source may answer with, in bytes.
pub const MAX_BODY_BYTES: usize = 4096;
/// What a configured body is sent as when no content type is given.
const TEXT: &str = "text/plain; charset=utf-8";

/// A source's answer to an accepted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "What the source answers a request it accepted. Without `body`, the answer is the default JSON (`event_id`, and `duplicate` for a repeated idempotency key); with `body`, exactly that text, as `content_type` (plain text unless set)."
)]
pub struct IngestResponse {
    /// 200, 201, 202 or 204.
    pub status: u16,
    /// The body, as sent; not allowed with 204.
    #[serde(default)]
    pub body: Option<String>,
    /// The body's content type; only with a body.
    #[serde(default)]
    pub content_type: Option<String>,
}

impl IngestResponse {
    /// Refuses answers a provider could not be given, with a message for whoever set it.
    pub fn check(&self) -> Result<(), String> {
        if !STATUSES.contains(&self.status) {
            return Err("the status must be 200, 201, 202 or 204".to_owned());
        }
        if self.status == 204 && self.body.is_some() {
            return Err("a 204 answer has no body".to_owned());
        }
        if self
            .body
            .as_ref()
            .is_some_and(|body| body.len() > MAX_BODY_BYTES)
        {
            return Err(format!("the body must be at most {MAX_BODY_BYTES} bytes"));
        }
        match &self.content_type {
            Some(_) if self.body.is_none() => {
                Err("a content type goes with a body: set both, or neither".to_owned())
            }
            Some(kind)
                if kind.is_empty()
                    || kind.len() > 255
                    || HeaderValue::from_str(kind).is_err()
                    || !kind.contains('/') =>
            {
                Err("the content type must be a media type, such as application/json".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// The configured body and its content type, when one is set.
    pub fn custom_body(&self) -> Option<(&str, &str)> {
        let body = self.body.as_deref()?;
        Some((body, self.content_type.as_deref().unwrap_or(TEXT)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: Option<&str>, content_type: Option<&str>) -> IngestResponse {
        IngestResponse {
            status,
            body: body.map(str::to_owned),
            content_type: content_type.map(str::to_owned),
        }
    }

    #[test]
    fn the_four_statuses_with_or_without_a_body_are_accepted() {
        for status in STATUSES {
            assert_eq!(response(status, None, None).check(), Ok(()));
        }
        assert_eq!(response(200, Some("ok"), None).check(), Ok(()));
        assert_eq!(
            response(200, Some(r#"{"type":5}"#), Some("application/json")).check(),
            Ok(())
        );
        assert_eq!(
            response(200, Some("ok"), None).custom_body(),
            Some(("ok", TEXT))
        );
        assert_eq!(response(200, None, None).custom_body(), None);
    }

    #[test]
    fn answers_a_provider_cannot_get_are_refused() {
        for bad in [
            response(203, None, None),
            response(500, None, None),
            response(204, Some(""), None),
            response(200, Some(&"x".repeat(MAX_BODY_BYTES + 1)), None),
            response(200, None, Some("application/json")),
            response(200, Some("x"), Some("json")),
            response(200, Some("x"), Some("text/plain\nx: y")),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<IngestResponse>(r#"{"status":200,"headers":{}}"#).is_err());
    }
}
