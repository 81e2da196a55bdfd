//! Linear: `Linear-Signature: <hex>`, an HMAC-SHA256 of the raw body keyed with the webhook's
//! signing secret. The body's `webhookTimestamp` (milliseconds) is inside what is signed, so a
//! replay is refused by it.

use hmac::Hmac;
use sha2::Sha256;

use super::{
    Incoming, Rejection, Validator, header, header_key, hex_bytes, verify_any, within_tolerance,
};

const SIGNATURE: &str = "linear-signature";
/// Linear's id for one delivery, kept across its retries.
const DELIVERY: &str = "linear-delivery";

/// Checks Linear's signatures.
pub(super) struct Linear {
    key: Vec<u8>,
}

impl Linear {
    pub(super) fn new(secret: &str) -> Self {
        Linear {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Linear {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = hex_bytes(header(request.headers, SIGNATURE)?)?;
        verify_any::<Hmac<Sha256>>(&self.key, &[request.body], &[signature])?;
        let millis = request
            .json()
            .and_then(|body| body.get("webhookTimestamp")?.as_i64())
            .ok_or(Rejection::Missing)?;
        within_tolerance(millis / 1000, request.now)
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        header_key(request.headers, DELIVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, NOW, headers, hmac_sha256};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "lin_wh_secret";

    fn body(millis: i64) -> Vec<u8> {
        format!(r#"{{"action":"create","type":"Issue","data":{{"id":"1"}},"webhookTimestamp":{millis}}}"#)
            .into_bytes()
    }

    fn signed(secret: &str, body: &[u8]) -> HeaderMap {
        headers(&[
            (
                "Linear-Signature",
                &hex::encode(hmac_sha256(secret.as_bytes(), body)),
            ),
            ("Linear-Delivery", "234d1a4e-b617-4388-90fe-adc3633d6b72"),
        ])
    }

    #[test]
    fn a_signed_fresh_delivery_passes_and_tampered_forged_or_stale_ones_do_not() {
        let linear = Linear::new(SECRET);
        let fresh = body(NOW * 1000);
        assert_eq!(linear.check(&signed(SECRET, &fresh), &fresh, NOW), Ok(()));
        assert_eq!(
            linear.check(&signed(SECRET, &fresh), &body(NOW * 1000 + 1), NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            linear.check(&signed("other", &fresh), &fresh, NOW),
            Err(Rejection::Mismatch)
        );
        let stale = body((NOW - 301) * 1000);
        assert_eq!(
            linear.check(&signed(SECRET, &stale), &stale, NOW),
            Err(Rejection::Stale)
        );
        assert_eq!(
            linear.check(&HeaderMap::new(), &fresh, NOW),
            Err(Rejection::Missing)
        );
        assert_eq!(
            linear.key(&signed(SECRET, &fresh), &fresh),
            Some("234d1a4e-b617-4388-90fe-adc3633d6b72".to_owned())
        );
    }
}
