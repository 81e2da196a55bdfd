//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, an HMAC-SHA256 of the raw body keyed with the
//! webhook secret's bytes. No timestamp is signed, so replays cannot be refused here.

use hmac::Hmac;
use sha2::Sha256;

use super::{Incoming, Rejection, Validator, header, header_key, hex_bytes, verify_any};

const SIGNATURE: &str = "x-hub-signature-256";
const DELIVERY: &str = "x-github-delivery";

/// Checks GitHub's signatures.
pub(super) struct Github {
    key: Vec<u8>,
}

impl Github {
    pub(super) fn new(secret: &str) -> Self {
        Github {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Github {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let (headers, body) = (request.headers, request.body);
        let encoded = header(headers, SIGNATURE)?
            .strip_prefix("sha256=")
            .ok_or(Rejection::Malformed)?;
        verify_any::<Hmac<Sha256>>(&self.key, &[body], &[hex_bytes(encoded)?])
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        let headers = request.headers;
        // GitHub keeps the delivery GUID when a delivery is redelivered.
        header_key(headers, DELIVERY)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderMap;

    use super::super::testing::{Check, NOW, headers, hmac_sha256, with_binary};
    use super::*;

    const SECRET: &str = "github secret";
    const BODY: &[u8] = br#"{"action":"opened"}"#;

    fn signature(secret: &str, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(hmac_sha256(secret.as_bytes(), body))
        )
    }

    fn request(value: &str) -> HeaderMap {
        headers(&[
            ("X-Hub-Signature-256", value),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ])
    }

    fn validator() -> Github {
        Github::new(SECRET)
    }

    #[test]
    fn a_valid_signature_passes() {
        let value = signature(SECRET, BODY);
        assert_eq!(validator().check(&request(&value), BODY, NOW), Ok(()));
        let upper = format!("sha256={}", value["sha256=".len()..].to_uppercase());
        assert_eq!(validator().check(&request(&upper), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let value = signature(SECRET, BODY);
        assert_eq!(
            validator().check(&request(&value), b"{\"action\":\"closed\"}", NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_wrong_secret_is_a_mismatch() {
        let value = signature("another secret", BODY);
        assert_eq!(
            validator().check(&request(&value), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_truncated_signature_is_a_mismatch() {
        let value = signature(SECRET, BODY);
        let short = &value[..value.len() - 2];
        assert_eq!(
            validator().check(&request(short), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_missing_header_is_missing() {
        let only_delivery = headers(&[("X-GitHub-Delivery", "abc")]);
        assert_eq!(
            validator().check(&only_delivery, BODY, NOW),
            Err(Rejection::Missing)
        );
    }

    #[test]
    fn unparseable_headers_are_malformed() {
        let bare = hex::encode(hmac_sha256(SECRET.as_bytes(), BODY));
        for value in [bare.clone(), format!("sha1={bare}"), "sha256=zz".to_owned()] {
            assert_eq!(
                validator().check(&request(&value), BODY, NOW),
                Err(Rejection::Malformed),
                "{value}"
            );
        }
        let binary = with_binary(HeaderMap::new(), "x-hub-signature-256");
        assert_eq!(
            validator().check(&binary, BODY, NOW),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn the_idempotency_key_is_the_delivery_id() {
        assert_eq!(
            validator().key(&request("x"), BODY),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned())
        );
        assert_eq!(validator().key(&HeaderMap::new(), BODY), None);
    }
}
