//! Zoom: events carry `x-zm-signature: v0=<hex>`, an HMAC-SHA256 of `v0:{timestamp}:{body}`
//! keyed with the app's secret token, the timestamp coming from `x-zm-request-timestamp`.
//! Validating the URL sends the signed event `endpoint.url_validation` with a `plainToken`,
//! answered with it and `encryptedToken`, its hex HMAC-SHA256 under the same secret.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{
    Answer, Incoming, Rejection, Validator, header, hex_bytes, parse_timestamp, prefixed,
    verify_any, within_tolerance,
};

const SIGNATURE: &str = "x-zm-signature";
const TIMESTAMP: &str = "x-zm-request-timestamp";

/// Checks Zoom's signatures and answers its URL validation.
pub(super) struct Zoom {
    key: Vec<u8>,
}

impl Zoom {
    pub(super) fn new(secret: &str) -> Self {
        Zoom {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Zoom {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = hex_bytes(prefixed(request.headers, SIGNATURE, "v0=")?)?;
        let signed = header(request.headers, TIMESTAMP)?;
        let timestamp = parse_timestamp(signed)?;
        verify_any::<Hmac<Sha256>>(
            &self.key,
            &[b"v0:", signed.as_bytes(), b":", request.body],
            &[signature],
        )?;
        within_tolerance(timestamp, request.now)
    }

    fn handshake(&self, request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        let event = request.json().filter(|_| request.is_post())?;
        if event.get("event")?.as_str()? != "endpoint.url_validation" {
            return None;
        }
        let plain = event
            .get("payload")?
            .get("plainToken")?
            .as_str()?
            .to_owned();
        Some(self.verify(request).map(|()| {
            let encrypted = super::super::mac::<Hmac<Sha256>>(&self.key, &[plain.as_bytes()])
                .finalize()
                .into_bytes();
            Answer::json(json!({
                "plainToken": plain,
                "encryptedToken": hex::encode(encrypted),
            }))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, NOW, headers, hmac_sha256, post};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "zoom secret token";
    const BODY: &[u8] = br#"{"event":"meeting.started","event_ts":1700000000000,"payload":{"account_id":"AAAAAA"}}"#;

    fn signed(body: &[u8], secret: &str, timestamp: i64) -> HeaderMap {
        let mut message = format!("v0:{timestamp}:").into_bytes();
        message.extend_from_slice(body);
        let value = format!(
            "v0={}",
            hex::encode(hmac_sha256(secret.as_bytes(), &message))
        );
        headers(&[
            ("x-zm-signature", &value),
            ("x-zm-request-timestamp", &timestamp.to_string()),
        ])
    }

    #[test]
    fn a_signed_event_passes_and_tampered_forged_or_stale_ones_do_not() {
        let zoom = Zoom::new(SECRET);
        assert_eq!(zoom.check(&signed(BODY, SECRET, NOW), BODY, NOW), Ok(()));
        assert_eq!(
            zoom.check(&signed(BODY, SECRET, NOW), b"{}", NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            zoom.check(&signed(BODY, "other", NOW), BODY, NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            zoom.check(&signed(BODY, SECRET, NOW - 301), BODY, NOW),
            Err(Rejection::Stale)
        );
        assert_eq!(
            zoom.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
    }

    #[test]
    fn the_url_validation_is_answered_with_the_encrypted_token_when_signed() {
        let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
        let answer = Zoom::new(SECRET)
            .handshake(&post(&signed(body, SECRET, NOW), body, NOW))
            .expect("a handshake")
            .expect("answered");
        let answer: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(answer["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
        assert_eq!(
            answer["encryptedToken"],
            hex::encode(hmac_sha256(SECRET.as_bytes(), b"qgg8vlvZRS6UYooatFL8Aw"))
        );
        assert_eq!(
            Zoom::new(SECRET).handshake(&post(&signed(body, "other", NOW), body, NOW)),
            Some(Err(Rejection::Mismatch))
        );
        assert_eq!(
            Zoom::new(SECRET).handshake(&post(&signed(BODY, SECRET, NOW), BODY, NOW)),
            None
        );
    }

    /// The URL validation answer as elastic/beats' Zoom test has it (Zoom publishes no secret).
    #[test]
    fn the_encrypted_token_matches_a_known_answer() {
        let body = br#"{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}"#;
        let zoom = Zoom::new("secretValueTest");
        let answer = zoom
            .handshake(&post(&signed(body, "secretValueTest", NOW), body, NOW))
            .expect("a handshake")
            .expect("answered");
        let answer: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            answer["encryptedToken"],
            "70c1f2e2e6ca2d39297490d1f9142c7d701415ea8e6151f6562a08fa657a40ff"
        );
    }
}
