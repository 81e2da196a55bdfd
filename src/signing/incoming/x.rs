//! X (Twitter) Account Activity: events carry `x-twitter-webhooks-signature: sha256=<base64>`, an
//! HMAC-SHA256 of the raw body keyed with the app's consumer secret. X checks the URL with a
//! challenge-response check (CRC), `GET ?crc_token=…`, answered with
//! `{"response_token": "sha256=" + base64 HMAC-SHA256(consumer secret, crc_token)}`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{Answer, Incoming, Rejection, Validator, base64_bytes, prefixed, verify_any};

const SIGNATURE: &str = "x-twitter-webhooks-signature";

/// Checks X's signatures and answers its CRC.
pub(super) struct X {
    key: Vec<u8>,
}

impl X {
    pub(super) fn new(secret: &str) -> Self {
        X {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for X {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = base64_bytes(prefixed(request.headers, SIGNATURE, "sha256=")?)?;
        verify_any::<Hmac<Sha256>>(&self.key, &[request.body], &[signature])
    }

    fn handshake(&self, request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        let token = request
            .query_param("crc_token")
            .filter(|_| request.is_get())?;
        let mac = super::super::mac::<Hmac<Sha256>>(&self.key, &[token.as_bytes()])
            .finalize()
            .into_bytes();
        Some(Ok(Answer::json(json!({
            "response_token": format!("sha256={}", STANDARD.encode(mac)),
        }))))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::testing::{Check, GET, NOW, URL, headers, hmac_sha256, request};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "x consumer secret";
    const BODY: &[u8] = br#"{"for_user_id":"2244994945","tweet_create_events":[]}"#;

    fn signed(body: &[u8], secret: &str) -> HeaderMap {
        let value = format!(
            "sha256={}",
            STANDARD.encode(hmac_sha256(secret.as_bytes(), body))
        );
        headers(&[("x-twitter-webhooks-signature", &value)])
    }

    #[test]
    fn a_signed_event_passes_and_a_tampered_or_forged_one_does_not() {
        let x = X::new(SECRET);
        assert_eq!(x.check(&signed(BODY, SECRET), BODY, NOW), Ok(()));
        assert_eq!(
            x.check(&signed(BODY, SECRET), b"{}", NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            x.check(&signed(BODY, "other"), BODY, NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            x.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
    }

    #[test]
    fn the_crc_is_answered_with_the_hmac_of_the_token() {
        let none = HeaderMap::new();
        let url = format!("{URL}?crc_token=abc%2B123");
        let answer = X::new(SECRET)
            .handshake(&request(&GET, &none, "crc_token=abc%2B123", &url, b""))
            .expect("a handshake")
            .expect("answered");
        let expected = format!(
            "sha256={}",
            STANDARD.encode(hmac_sha256(SECRET.as_bytes(), b"abc+123"))
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&answer.body).unwrap(),
            serde_json::json!({ "response_token": expected })
        );
        assert_eq!(answer.content_type, "application/json");
    }

    /// X's published examples (xdevplatform/autohook's signature test).
    #[test]
    fn xs_published_signatures_verify() {
        let x = X::new("test");
        for (body, signature) in [
            (
                &b"test=1&other_test=2"[..],
                "sha256=25Cu3iwbbiqBTwQRzcKJZwisjf736V2Q8UaTlkfLSoc=",
            ),
            (
                br#"{"test_number":1,"test_string":"two"}"#,
                "sha256=YWHphPn/JFq43jkF0y4/w8R/SelmLjvpunhVFY8JhlI=",
            ),
        ] {
            let signed = headers(&[("x-twitter-webhooks-signature", signature)]);
            assert_eq!(x.check(&signed, body, NOW), Ok(()));
        }
    }
}
