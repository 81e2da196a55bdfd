//! Square: `x-square-hmacsha256-signature: <base64>`, an HMAC-SHA256 of the notification URL
//! (the public URL the request was sent to) followed by the raw body, keyed with the
//! subscription's signature key.

use hmac::Hmac;
use sha2::Sha256;

use super::{Incoming, Rejection, Validator, base64_bytes, header, verify_any};

const SIGNATURE: &str = "x-square-hmacsha256-signature";

/// Checks Square's signatures.
pub(super) struct Square {
    key: Vec<u8>,
}

impl Square {
    pub(super) fn new(secret: &str) -> Self {
        Square {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Square {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = base64_bytes(header(request.headers, SIGNATURE)?)?;
        verify_any::<Hmac<Sha256>>(
            &self.key,
            &[request.url.as_bytes(), request.body],
            &[signature],
        )
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        // Square's retries keep the event's `event_id`.
        let event = request.json()?;
        Some(event.get("event_id")?.as_str()?.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::testing::{Check, NOW, POST, URL, headers, hmac_sha256, request};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const KEY: &str = "square signature key";
    const BODY: &[u8] = br#"{"merchant_id":"6SSW7HV8K2ST5","type":"payment.created","event_id":"13b867cf-db3d-4b1c-90b6-2f32a9d78124"}"#;

    fn signed(url: &str, body: &[u8]) -> HeaderMap {
        let mut message = url.as_bytes().to_vec();
        message.extend_from_slice(body);
        headers(&[(
            "x-square-hmacsha256-signature",
            &STANDARD.encode(hmac_sha256(KEY.as_bytes(), &message)),
        )])
    }

    #[test]
    fn a_notification_signed_over_its_url_and_body_passes_and_others_do_not() {
        let square = Square::new(KEY);
        let good = signed(URL, BODY);
        assert_eq!(square.verify(&request(&POST, &good, "", URL, BODY)), Ok(()));
        assert_eq!(
            square.verify(&request(&POST, &good, "", URL, b"{}")),
            Err(Rejection::Mismatch)
        );
        let moved = "https://relay.example.com/ingest/other";
        assert_eq!(
            square.verify(&request(&POST, &good, "", moved, BODY)),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            square.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
        assert_eq!(
            square.key(&good, BODY),
            Some("13b867cf-db3d-4b1c-90b6-2f32a9d78124".to_owned())
        );
    }

    /// Square's published example (square-python-sdk's webhooks helper test).
    #[test]
    fn squares_published_signature_verifies() {
        let url = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9";
        let body = br#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;
        let signed = headers(&[(
            "x-square-hmacsha256-signature",
            "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=",
        )]);
        let square = Square::new("Ibxx_5AKakO-3qeNVR61Dw");
        assert_eq!(
            square.verify(&request(&POST, &signed, "", url, body)),
            Ok(())
        );
        assert_eq!(
            square.verify(&request(&POST, &signed, "", url, &body[1..])),
            Err(Rejection::Mismatch)
        );
    }
}
