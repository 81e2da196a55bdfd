//! Which header names a provider's id for an event, so a provider's retry is not stored (or
//! delivered) twice.

use actix_web::http::header::HeaderMap;
use sha2::{Digest, Sha256};

/// Headers that carry an event id, in order of preference, for subscriptions that name no
/// provider (a provider's own strategy knows its header, or its body field).
const KEY_HEADERS: &[&str] = &[
    "idempotency-key",
    "webhook-id",
    "svix-id",
    "x-github-delivery",
    "x-shopify-webhook-id",
];
/// Longer keys are stored as their SHA-256, so a provider cannot make the index row huge.
const MAX_KEY_LEN: usize = 200;

/// The first event id any of the known headers carries.
pub fn generic_key(headers: &HeaderMap) -> Option<String> {
    let key = KEY_HEADERS.iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?.trim();
        (!value.is_empty()).then(|| value.to_owned())
    });
    bounded(key)
}

/// A key as stored: as given when short, its SHA-256 otherwise.
pub fn bounded(key: Option<String>) -> Option<String> {
    key.map(|key| {
        if key.len() <= MAX_KEY_LEN {
            key
        } else {
            format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_first_known_header_names_the_event() {
        assert_eq!(
            generic_key(&headers(&[("x-github-delivery", "72d3162e")])),
            Some("72d3162e".into())
        );
        assert_eq!(
            generic_key(&headers(&[
                ("webhook-id", "msg_1"),
                ("idempotency-key", "order-7")
            ])),
            Some("order-7".into())
        );
        assert_eq!(
            generic_key(&headers(&[("content-type", "application/json")])),
            None
        );
        assert_eq!(generic_key(&headers(&[("idempotency-key", "  ")])), None);
    }

    #[test]
    fn long_keys_are_stored_as_their_hash() {
        let long = "k".repeat(500);
        let stored = bounded(Some(long.clone())).unwrap();
        assert!(stored.starts_with("sha256:") && stored.len() == 71);
        assert_eq!(bounded(Some(long)), Some(stored));
    }
}
