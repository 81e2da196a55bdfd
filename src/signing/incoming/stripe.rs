//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, an HMAC-SHA256 of `{t}.{body}`
//! keyed with the endpoint secret's own bytes (Stripe does not decode its `whsec_` secrets).

use hmac::Hmac;
use sha2::Sha256;

use super::{
    Incoming, Rejection, Validator, header, hex_bytes, parse_timestamp, verify_any,
    within_tolerance,
};

const SIGNATURE: &str = "stripe-signature";

/// Checks Stripe's signatures.
pub(super) struct Stripe {
    key: Vec<u8>,
}

impl Stripe {
    pub(super) fn new(secret: &str) -> Self {
        Stripe {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Stripe {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let (headers, body, now) = (request.headers, request.body, request.now);
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in header(headers, SIGNATURE)?.split(',') {
            let (name, value) = item.split_once('=').ok_or(Rejection::Malformed)?;
            match name {
                // Two timestamps would leave it ambiguous which one was signed.
                "t" if timestamp.is_some() => return Err(Rejection::Malformed),
                "t" => timestamp = Some((value, parse_timestamp(value)?)),
                "v1" => signatures.push(hex_bytes(value)?),
                // v0 is Stripe's legacy test scheme; newer schemes are not ours to judge.
                _ => {}
            }
        }
        let (signed, timestamp) = timestamp.ok_or(Rejection::Malformed)?;
        // The timestamp is signed exactly as sent, the way Stripe's own libraries check it.
        verify_any::<Hmac<Sha256>>(&self.key, &[signed.as_bytes(), b".", body], &signatures)?;
        within_tolerance(timestamp, now)
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        // Every Stripe event is a JSON object whose top-level `id` (evt_...) names it.
        Some(request.json()?.as_object()?.get("id")?.as_str()?.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderMap;

    use super::super::testing::{Check, NOW, headers, hmac_sha256, with_binary};
    use super::*;

    const SECRET: &str = "whsec_stripe_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"charge.succeeded"}"#;

    fn signed(secret: &str, timestamp: i64, body: &[u8]) -> String {
        let mut message = format!("{timestamp}.").into_bytes();
        message.extend_from_slice(body);
        hex::encode(hmac_sha256(secret.as_bytes(), &message))
    }

    fn request(value: &str) -> HeaderMap {
        headers(&[("Stripe-Signature", value)])
    }

    fn validator() -> Stripe {
        Stripe::new(SECRET)
    }

    #[test]
    fn a_valid_signature_passes() {
        let value = format!("t={NOW},v1={}", signed(SECRET, NOW, BODY));
        assert_eq!(validator().check(&request(&value), BODY, NOW), Ok(()));
    }

    #[test]
    fn any_v1_may_match_and_v0_is_ignored() {
        let value = format!(
            "t={NOW},v1={},v1={},v0=deadbeef",
            signed("whsec_old", NOW, BODY),
            signed(SECRET, NOW, BODY)
        );
        assert_eq!(validator().check(&request(&value), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let value = format!("t={NOW},v1={}", signed(SECRET, NOW, BODY));
        assert_eq!(
            validator().check(&request(&value), b"{\"id\":\"evt_2\"}", NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_wrong_secret_is_a_mismatch() {
        let value = format!("t={NOW},v1={}", signed("whsec_other", NOW, BODY));
        assert_eq!(
            validator().check(&request(&value), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_signature_over_another_timestamp_is_a_mismatch() {
        let value = format!("t={NOW},v1={}", signed(SECRET, NOW - 1, BODY));
        assert_eq!(
            validator().check(&request(&value), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_missing_header_is_missing() {
        assert_eq!(
            validator().check(&headers(&[]), BODY, NOW),
            Err(Rejection::Missing)
        );
    }

    #[test]
    fn unparseable_headers_are_malformed() {
        let good = signed(SECRET, NOW, BODY);
        for value in [
            format!("v1={good}"),
            format!("t=soon,v1={good}"),
            format!("t={NOW},t={NOW},v1={good}"),
            format!("t={NOW},v1=not-hex"),
            format!("t={NOW},{good}"),
        ] {
            assert_eq!(
                validator().check(&request(&value), BODY, NOW),
                Err(Rejection::Malformed),
                "{value}"
            );
        }
        let binary = with_binary(HeaderMap::new(), "stripe-signature");
        assert_eq!(
            validator().check(&binary, BODY, NOW),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn no_v1_is_a_mismatch() {
        let value = format!("t={NOW},v0={}", signed(SECRET, NOW, BODY));
        assert_eq!(
            validator().check(&request(&value), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn timestamps_beyond_the_tolerance_are_stale() {
        for timestamp in [NOW - 301, NOW + 301] {
            let value = format!("t={timestamp},v1={}", signed(SECRET, timestamp, BODY));
            assert_eq!(
                validator().check(&request(&value), BODY, NOW),
                Err(Rejection::Stale)
            );
        }
        for timestamp in [NOW - 300, NOW + 300] {
            let value = format!("t={timestamp},v1={}", signed(SECRET, timestamp, BODY));
            assert_eq!(validator().check(&request(&value), BODY, NOW), Ok(()));
        }
    }

    #[test]
    fn the_idempotency_key_is_the_event_id() {
        let none = HeaderMap::new();
        assert_eq!(validator().key(&none, BODY), Some("evt_1".to_owned()));
        assert_eq!(validator().key(&none, br#"{"id":7}"#), None);
        assert_eq!(validator().key(&none, br#"["id"]"#), None);
        assert_eq!(validator().key(&none, b"not json"), None);
    }
}
