//! Dropbox: events carry `X-Dropbox-Signature: <hex>`, an HMAC-SHA256 of the raw body keyed with
//! the app secret. Registering the URL first sends `GET ?challenge=…`, which must be echoed as
//! plain text.

use hmac::Hmac;
use sha2::Sha256;

use super::{Answer, Incoming, Rejection, Validator, header, hex_bytes, verify_any};

const SIGNATURE: &str = "x-dropbox-signature";

/// Checks Dropbox's signatures and echoes its verification challenges.
pub(super) struct Dropbox {
    key: Vec<u8>,
}

impl Dropbox {
    pub(super) fn new(secret: &str) -> Self {
        Dropbox {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Dropbox {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = hex_bytes(header(request.headers, SIGNATURE)?)?;
        verify_any::<Hmac<Sha256>>(&self.key, &[request.body], &[signature])
    }

    fn handshake(&self, request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        // Dropbox does not sign the challenge; echoing it proves only that the URL answers.
        let challenge = request
            .query_param("challenge")
            .filter(|_| request.is_get())?;
        Some(Ok(Answer::text(challenge)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, GET, NOW, URL, headers, hmac_sha256, request};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "dropbox app secret";
    const BODY: &[u8] =
        br#"{"list_folder":{"accounts":["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]}}"#;

    fn signed(body: &[u8], secret: &str) -> HeaderMap {
        headers(&[(
            "X-Dropbox-Signature",
            &hex::encode(hmac_sha256(secret.as_bytes(), body)),
        )])
    }

    #[test]
    fn a_signed_notification_passes_and_a_tampered_or_forged_one_does_not() {
        let dropbox = Dropbox::new(SECRET);
        assert_eq!(dropbox.check(&signed(BODY, SECRET), BODY, NOW), Ok(()));
        assert_eq!(
            dropbox.check(&signed(BODY, SECRET), b"{}", NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            dropbox.check(&signed(BODY, "other"), BODY, NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            dropbox.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
    }

    #[test]
    fn the_challenge_is_echoed_and_other_gets_are_not_handshakes() {
        let none = HeaderMap::new();
        let url = format!("{URL}?challenge=a%20b");
        let answer =
            Dropbox::new(SECRET).handshake(&request(&GET, &none, "challenge=a%20b", &url, b""));
        assert_eq!(answer, Some(Ok(Answer::text("a b"))));
        assert_eq!(
            answer.unwrap().unwrap().content_type,
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            Dropbox::new(SECRET).handshake(&request(&GET, &none, "", URL, b"")),
            None
        );
    }
}
