//! Intercom: `X-Hub-Signature: sha1=<hex>`, an HMAC-SHA1 of the raw body keyed with the app's
//! client secret.

use hmac::Hmac;
use sha1::Sha1;

use super::{Incoming, Rejection, Validator, hex_bytes, prefixed, verify_any};

const SIGNATURE: &str = "x-hub-signature";

/// Checks Intercom's signatures.
pub(super) struct Intercom {
    key: Vec<u8>,
}

impl Intercom {
    pub(super) fn new(secret: &str) -> Self {
        Intercom {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Intercom {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = hex_bytes(prefixed(request.headers, SIGNATURE, "sha1=")?)?;
        verify_any::<Hmac<Sha1>>(&self.key, &[request.body], &[signature])
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        // A notification's `id` (notif_...) stays the same when Intercom retries it.
        let notification = request.json()?;
        Some(notification.get("id")?.as_str()?.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, NOW, headers, hmac_sha1};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "intercom client secret";
    const BODY: &[u8] = br#"{"type":"notification_event","id":"notif_ccd8a4d2-c3f4-11e4-a1fa-e7a5f4a7b49d","topic":"user.created"}"#;

    fn signed(secret: &str, body: &[u8]) -> HeaderMap {
        let value = format!("sha1={}", hex::encode(hmac_sha1(secret.as_bytes(), body)));
        headers(&[("X-Hub-Signature", &value)])
    }

    #[test]
    fn a_signed_notification_passes_and_a_tampered_or_forged_one_does_not() {
        let intercom = Intercom::new(SECRET);
        assert_eq!(intercom.check(&signed(SECRET, BODY), BODY, NOW), Ok(()));
        assert_eq!(
            intercom.check(&signed(SECRET, BODY), b"{}", NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            intercom.check(&signed("other", BODY), BODY, NOW),
            Err(Rejection::Mismatch)
        );
        let sha256 = headers(&[("X-Hub-Signature", "sha256=00")]);
        assert_eq!(
            intercom.check(&sha256, BODY, NOW),
            Err(Rejection::Malformed)
        );
        assert_eq!(
            intercom.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
        assert_eq!(
            intercom.key(&signed(SECRET, BODY), BODY),
            Some("notif_ccd8a4d2-c3f4-11e4-a1fa-e7a5f4a7b49d".to_owned())
        );
    }
}
