//! Any provider that puts an HMAC of the raw body in one header: the header, hash, encoding and
//! an optional prefix (such as `sha256=`) are configured. No timestamp is signed.

use ::hmac::Hmac;
use sha2::{Sha256, Sha512};

use super::{
    HmacAlgorithm, Incoming, Rejection, SignatureEncoding, Validator, base64_bytes, header,
    hex_bytes, verify_any,
};

/// Checks a configured HMAC header. A generic sender has no known id header, so there is no
/// idempotency key: deduplication needs a dedicated provider.
pub(super) struct GenericHmac {
    key: Vec<u8>,
    header: String,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: Option<String>,
}

impl GenericHmac {
    pub(super) fn new(
        secret: &str,
        header: &str,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        prefix: Option<String>,
    ) -> Self {
        GenericHmac {
            key: secret.as_bytes().to_vec(),
            header: header.to_owned(),
            algorithm,
            encoding,
            prefix,
        }
    }
}

impl Validator for GenericHmac {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let (headers, body) = (request.headers, request.body);
        // An invalid configured name finds no header, so it reads as Missing rather than failing.
        let value = header(headers, &self.header)?;
        let encoded = match &self.prefix {
            Some(prefix) => value
                .strip_prefix(prefix.as_str())
                .ok_or(Rejection::Malformed)?,
            None => value,
        };
        let signature = match self.encoding {
            SignatureEncoding::Hex => hex_bytes(encoded)?,
            SignatureEncoding::Base64 => base64_bytes(encoded)?,
        };
        match self.algorithm {
            HmacAlgorithm::Sha256 => verify_any::<Hmac<Sha256>>(&self.key, &[body], &[signature]),
            HmacAlgorithm::Sha512 => verify_any::<Hmac<Sha512>>(&self.key, &[body], &[signature]),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderMap;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::testing::{Check, NOW, headers, hmac_sha256, hmac_sha512, with_binary};
    use super::*;

    const SECRET: &str = "generic shared secret";
    const BODY: &[u8] = br#"{"event":"ping"}"#;

    /// Every combination of hash, encoding and prefix, with the header value a sender using
    /// `secret` would put on `body`.
    fn setups(secret: &str, body: &[u8]) -> Vec<(GenericHmac, String)> {
        let mut out = Vec::new();
        for algorithm in [HmacAlgorithm::Sha256, HmacAlgorithm::Sha512] {
            let mac = match algorithm {
                HmacAlgorithm::Sha256 => hmac_sha256(secret.as_bytes(), body),
                HmacAlgorithm::Sha512 => hmac_sha512(secret.as_bytes(), body),
            };
            for encoding in [SignatureEncoding::Hex, SignatureEncoding::Base64] {
                let encoded = match encoding {
                    SignatureEncoding::Hex => hex::encode(&mac),
                    SignatureEncoding::Base64 => STANDARD.encode(&mac),
                };
                for prefix in [None, Some("sha=")] {
                    let validator = GenericHmac::new(
                        SECRET,
                        "X-Acme-Signature",
                        algorithm,
                        encoding,
                        prefix.map(str::to_owned),
                    );
                    out.push((validator, format!("{}{encoded}", prefix.unwrap_or(""))));
                }
            }
        }
        out
    }

    fn request(value: &str) -> HeaderMap {
        headers(&[("x-acme-signature", value)])
    }

    #[test]
    fn a_valid_signature_passes() {
        for (validator, value) in setups(SECRET, BODY) {
            assert_eq!(
                validator.check(&request(&value), BODY, NOW),
                Ok(()),
                "{value}"
            );
        }
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        for (validator, value) in setups(SECRET, BODY) {
            assert_eq!(
                validator.check(&request(&value), b"{\"event\":\"pong\"}", NOW),
                Err(Rejection::Mismatch)
            );
        }
    }

    #[test]
    fn a_wrong_secret_is_a_mismatch() {
        for (validator, value) in setups("another secret", BODY) {
            assert_eq!(
                validator.check(&request(&value), BODY, NOW),
                Err(Rejection::Mismatch)
            );
        }
    }

    #[test]
    fn a_mac_of_the_other_hash_is_a_mismatch() {
        let sha512 = GenericHmac::new(
            SECRET,
            "X-Acme-Signature",
            HmacAlgorithm::Sha512,
            SignatureEncoding::Hex,
            None,
        );
        let value = hex::encode(hmac_sha256(SECRET.as_bytes(), BODY));
        assert_eq!(
            sha512.check(&request(&value), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_missing_header_is_missing() {
        for (validator, value) in setups(SECRET, BODY) {
            let elsewhere = headers(&[("x-other-signature", &value)]);
            assert_eq!(
                validator.check(&elsewhere, BODY, NOW),
                Err(Rejection::Missing)
            );
        }
        let invalid_name = GenericHmac::new(
            SECRET,
            "X Bad:",
            HmacAlgorithm::Sha256,
            SignatureEncoding::Hex,
            None,
        );
        assert_eq!(
            invalid_name.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
    }

    #[test]
    fn unparseable_headers_are_malformed() {
        for (validator, value) in setups(SECRET, BODY) {
            if let Some(bare) = value.strip_prefix("sha=") {
                // The configured prefix is required.
                assert_eq!(
                    validator.check(&request(bare), BODY, NOW),
                    Err(Rejection::Malformed)
                );
            }
            assert_eq!(
                validator.check(&request("sha=!!"), BODY, NOW),
                Err(Rejection::Malformed)
            );
            let binary = with_binary(HeaderMap::new(), "x-acme-signature");
            assert_eq!(
                validator.check(&binary, BODY, NOW),
                Err(Rejection::Malformed)
            );
        }
    }

    #[test]
    fn there_is_no_idempotency_key() {
        for (validator, value) in setups(SECRET, BODY) {
            assert_eq!(validator.key(&request(&value), BODY), None);
        }
    }
}
