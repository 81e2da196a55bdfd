//! Shopify: `X-Shopify-Hmac-Sha256: <base64>`, an HMAC-SHA256 of the raw body keyed with the app's
//! client secret bytes. No timestamp is signed.

use hmac::Hmac;
use sha2::Sha256;

use super::{Incoming, Rejection, Validator, base64_bytes, header, header_key, verify_any};

const SIGNATURE: &str = "x-shopify-hmac-sha256";
const WEBHOOK_ID: &str = "x-shopify-webhook-id";

/// Checks Shopify's signatures.
pub(super) struct Shopify {
    key: Vec<u8>,
}

impl Shopify {
    pub(super) fn new(secret: &str) -> Self {
        Shopify {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Shopify {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let (headers, body) = (request.headers, request.body);
        let signature = base64_bytes(header(headers, SIGNATURE)?)?;
        verify_any::<Hmac<Sha256>>(&self.key, &[body], &[signature])
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        let headers = request.headers;
        // Shopify sends the same webhook id on every retry of a webhook.
        header_key(headers, WEBHOOK_ID)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderMap;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::testing::{Check, NOW, headers, hmac_sha256, with_binary};
    use super::*;

    const SECRET: &str = "shpss_client_secret";
    const BODY: &[u8] = br#"{"order_id":820982911946154508}"#;

    fn signature(secret: &str, body: &[u8]) -> String {
        STANDARD.encode(hmac_sha256(secret.as_bytes(), body))
    }

    fn request(value: &str) -> HeaderMap {
        headers(&[
            ("X-Shopify-Hmac-Sha256", value),
            (
                "X-Shopify-Webhook-Id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
        ])
    }

    fn validator() -> Shopify {
        Shopify::new(SECRET)
    }

    #[test]
    fn a_valid_signature_passes() {
        let value = signature(SECRET, BODY);
        assert_eq!(validator().check(&request(&value), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let value = signature(SECRET, BODY);
        assert_eq!(
            validator().check(&request(&value), b"{\"order_id\":1}", NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_wrong_secret_is_a_mismatch() {
        let value = signature("shpss_other", BODY);
        assert_eq!(
            validator().check(&request(&value), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_missing_header_is_missing() {
        assert_eq!(
            validator().check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
    }

    #[test]
    fn unparseable_headers_are_malformed() {
        assert_eq!(
            validator().check(&request("not base64!"), BODY, NOW),
            Err(Rejection::Malformed)
        );
        let binary = with_binary(HeaderMap::new(), "x-shopify-hmac-sha256");
        assert_eq!(
            validator().check(&binary, BODY, NOW),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn the_idempotency_key_is_the_webhook_id() {
        assert_eq!(
            validator().key(&request("x"), BODY),
            Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".to_owned())
        );
        assert_eq!(validator().key(&HeaderMap::new(), BODY), None);
    }
}
