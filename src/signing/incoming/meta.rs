//! Meta (Facebook, Instagram, WhatsApp): events carry `X-Hub-Signature-256: sha256=<hex>`, an
//! HMAC-SHA256 of the raw body keyed with the app secret. Subscribing the URL first sends
//! `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`, answered with the challenge only
//! when the verify token is the one configured.

use hmac::Hmac;
use sha2::Sha256;

use super::{Answer, Incoming, Rejection, Validator, hex_bytes, prefixed, same_secret, verify_any};

const SIGNATURE: &str = "x-hub-signature-256";

/// Checks Meta's signatures and answers its verification requests.
pub(super) struct Meta {
    key: Vec<u8>,
    verify_token: Vec<u8>,
}

impl Meta {
    pub(super) fn new(secret: &str, verify_token: &str) -> Self {
        Meta {
            key: secret.as_bytes().to_vec(),
            verify_token: verify_token.as_bytes().to_vec(),
        }
    }
}

impl Validator for Meta {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = hex_bytes(prefixed(request.headers, SIGNATURE, "sha256=")?)?;
        verify_any::<Hmac<Sha256>>(&self.key, &[request.body], &[signature])
    }

    fn handshake(&self, request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        if !request.is_get() {
            return None;
        }
        let mode = request.query_param("hub.mode")?;
        let token = request.query_param("hub.verify_token").unwrap_or_default();
        if mode != "subscribe" || !same_secret(token.as_bytes(), &self.verify_token) {
            return Some(Err(Rejection::Handshake));
        }
        Some(
            request
                .query_param("hub.challenge")
                .map(Answer::text)
                .ok_or(Rejection::Missing),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, GET, NOW, POST, URL, headers, hmac_sha256, request};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "meta app secret";
    const TOKEN: &str = "my verify token";
    const BODY: &[u8] = br#"{"object":"page","entry":[{"id":"1","time":1700000000}]}"#;

    fn signed(body: &[u8], secret: &str) -> HeaderMap {
        let value = format!(
            "sha256={}",
            hex::encode(hmac_sha256(secret.as_bytes(), body))
        );
        headers(&[("X-Hub-Signature-256", &value)])
    }

    fn validator() -> Meta {
        Meta::new(SECRET, TOKEN)
    }

    #[test]
    fn an_event_signed_with_the_app_secret_passes_and_a_tampered_or_forged_one_does_not() {
        assert_eq!(validator().check(&signed(BODY, SECRET), BODY, NOW), Ok(()));
        assert_eq!(
            validator().check(&signed(BODY, SECRET), b"{\"object\":\"user\"}", NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            validator().check(&signed(BODY, "other"), BODY, NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            validator().check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
        let sha1 = headers(&[("X-Hub-Signature-256", "sha1=00")]);
        assert_eq!(
            validator().check(&sha1, BODY, NOW),
            Err(Rejection::Malformed)
        );
    }

    fn verification(query: &str) -> Option<Result<Answer, Rejection>> {
        let none = HeaderMap::new();
        let url = format!("{URL}?{query}");
        validator().handshake(&request(&GET, &none, query, &url, b""))
    }

    #[test]
    fn the_verification_is_answered_with_the_challenge_only_for_the_right_token() {
        assert_eq!(
            verification(
                "hub.mode=subscribe&hub.verify_token=my+verify+token&hub.challenge=1158201444"
            ),
            Some(Ok(Answer::text("1158201444")))
        );
        assert_eq!(
            verification("hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1158201444"),
            Some(Err(Rejection::Handshake))
        );
        assert_eq!(
            verification("hub.mode=subscribe&hub.challenge=1158201444"),
            Some(Err(Rejection::Handshake))
        );
        assert_eq!(
            verification(
                "hub.mode=unsubscribe&hub.verify_token=my%20verify%20token&hub.challenge=1"
            ),
            Some(Err(Rejection::Handshake))
        );
        assert_eq!(
            verification("hub.mode=subscribe&hub.verify_token=my%20verify%20token"),
            Some(Err(Rejection::Missing))
        );
        assert_eq!(verification("other=1"), None);
    }

    #[test]
    fn a_post_is_never_a_verification() {
        let signed = signed(BODY, SECRET);
        let query = "hub.mode=subscribe&hub.verify_token=my+verify+token&hub.challenge=1";
        let request = request(&POST, &signed, query, URL, BODY);
        assert_eq!(validator().handshake(&request), None);
    }

    /// The example GitHub publishes for the same `X-Hub-Signature-256` scheme.
    #[test]
    fn the_published_hub_signature_example_verifies() {
        let meta = Meta::new("It's a Secret to Everybody", TOKEN);
        let signed = headers(&[(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(meta.check(&signed, b"Hello, World!", NOW), Ok(()));
    }
}
