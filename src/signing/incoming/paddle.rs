//! Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>...]`, an HMAC-SHA256 of
//! `{ts}:{body}` keyed with the notification destination's secret key (several `h1` while a
//! secret is rotated).

use hmac::Hmac;
use sha2::Sha256;

use super::{
    Incoming, Rejection, Validator, header, hex_bytes, parse_timestamp, verify_any,
    within_tolerance,
};

const SIGNATURE: &str = "paddle-signature";

/// Checks Paddle's signatures.
pub(super) struct Paddle {
    key: Vec<u8>,
}

impl Paddle {
    pub(super) fn new(secret: &str) -> Self {
        Paddle {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Paddle {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in header(request.headers, SIGNATURE)?.split(';') {
            let (name, value) = item.trim().split_once('=').ok_or(Rejection::Malformed)?;
            match name {
                "ts" if timestamp.is_some() => return Err(Rejection::Malformed),
                "ts" => timestamp = Some((value, parse_timestamp(value)?)),
                // Paddle's own libraries pass over an `h1` that is not hex, as one from a
                // scheme they do not know; another `h1` may still match.
                "h1" => signatures.extend(hex_bytes(value).ok()),
                _ => {}
            }
        }
        let (signed, timestamp) = timestamp.ok_or(Rejection::Malformed)?;
        verify_any::<Hmac<Sha256>>(
            &self.key,
            &[signed.as_bytes(), b":", request.body],
            &signatures,
        )?;
        within_tolerance(timestamp, request.now)
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        // Paddle's retries keep the notification's `event_id`.
        let event = request.json()?;
        Some(event.get("event_id")?.as_str()?.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, NOW, headers, hmac_sha256};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "pdl_ntfset_01gkpjp8bkm3tm53kdgkx6sms7_6h3qd3uFSi9TvfNKhKdV0e1BU9FRdbCU";
    const BODY: &[u8] =
        br#"{"event_id":"evt_01h8bzakzx3hm2fmen703n5q45","event_type":"transaction.completed"}"#;

    fn h1(secret: &str, timestamp: i64, body: &[u8]) -> String {
        let mut message = format!("{timestamp}:").into_bytes();
        message.extend_from_slice(body);
        format!(
            "h1={}",
            hex::encode(hmac_sha256(secret.as_bytes(), &message))
        )
    }

    fn signed(value: &str) -> HeaderMap {
        headers(&[("Paddle-Signature", value)])
    }

    #[test]
    fn a_signed_notification_passes_and_tampered_forged_or_stale_ones_do_not() {
        let paddle = Paddle::new(SECRET);
        let good = format!("ts={NOW};{}", h1(SECRET, NOW, BODY));
        assert_eq!(paddle.check(&signed(&good), BODY, NOW), Ok(()));
        assert_eq!(
            paddle.check(&signed(&good), b"{}", NOW),
            Err(Rejection::Mismatch)
        );
        let forged = format!("ts={NOW};{}", h1("other", NOW, BODY));
        assert_eq!(
            paddle.check(&signed(&forged), BODY, NOW),
            Err(Rejection::Mismatch)
        );
        let old = NOW - 301;
        let stale = format!("ts={old};{}", h1(SECRET, old, BODY));
        assert_eq!(
            paddle.check(&signed(&stale), BODY, NOW),
            Err(Rejection::Stale)
        );
        assert_eq!(
            paddle.key(&signed(&good), BODY),
            Some("evt_01h8bzakzx3hm2fmen703n5q45".to_owned())
        );
    }

    #[test]
    fn any_h1_may_match_while_a_secret_rotates() {
        let paddle = Paddle::new(SECRET);
        let both = format!(
            "ts={NOW};{};{}",
            h1("old", NOW, BODY),
            h1(SECRET, NOW, BODY)
        );
        assert_eq!(paddle.check(&signed(&both), BODY, NOW), Ok(()));
    }

    #[test]
    fn unreadable_headers_are_malformed() {
        let paddle = Paddle::new(SECRET);
        for value in ["h1=00", "ts=1;ts=2;h1=00", "ts=x;h1=00", "garbage"] {
            assert_eq!(
                paddle.check(&signed(value), BODY, NOW),
                Err(Rejection::Malformed),
                "{value}"
            );
        }
        assert_eq!(
            paddle.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
    }

    /// Paddle's published example (paddle-python-sdk's verifier test): the first `h1` is junk.
    #[test]
    fn paddles_published_signature_verifies() {
        let signed = headers(&[(
            "Paddle-Signature",
            "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02",
        )]);
        let good =
            Paddle::new("pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh");
        let bad =
            Paddle::new("pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_TjIG2BXbm83HPXqNfziwe506sBEdqL/4");
        assert_eq!(good.check(&signed, b"hello-world", 1_696_195_954), Ok(()));
        assert_eq!(
            bad.check(&signed, b"hello-world", 1_696_195_954),
            Err(Rejection::Mismatch)
        );
    }
}
