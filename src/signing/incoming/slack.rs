//! Slack: `X-Slack-Signature: v0=<hex>`, an HMAC-SHA256 of `v0:{timestamp}:{body}` keyed with the
//! app's signing secret bytes, the timestamp coming from `X-Slack-Request-Timestamp`.

use hmac::Hmac;
use sha2::Sha256;

use super::{
    Answer, Incoming, Rejection, Validator, header, hex_bytes, parse_timestamp, verify_any,
    within_tolerance,
};

const SIGNATURE: &str = "x-slack-signature";
const TIMESTAMP: &str = "x-slack-request-timestamp";

/// Checks Slack's signatures, and answers the Events API's URL verification. Slack sends no event
/// id in a header, and its bodies differ by product (events, slash commands, interactivity), so
/// there is no idempotency key.
pub(super) struct Slack {
    key: Vec<u8>,
}

impl Slack {
    pub(super) fn new(secret: &str) -> Self {
        Slack {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Slack {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let (headers, body, now) = (request.headers, request.body, request.now);
        let encoded = header(headers, SIGNATURE)?
            .strip_prefix("v0=")
            .ok_or(Rejection::Malformed)?;
        let signature = hex_bytes(encoded)?;
        let signed = header(headers, TIMESTAMP)?;
        let timestamp = parse_timestamp(signed)?;
        verify_any::<Hmac<Sha256>>(
            &self.key,
            &[b"v0:", signed.as_bytes(), b":", body],
            &[signature],
        )?;
        within_tolerance(timestamp, now)
    }

    fn handshake(&self, request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        // `{"type": "url_verification", "challenge": …}`, signed like any event.
        let body = request.json().filter(|_| request.is_post())?;
        if body.get("type")?.as_str()? != "url_verification" {
            return None;
        }
        let challenge = body.get("challenge")?.as_str()?.to_owned();
        Some(self.verify(request).map(|()| Answer::text(challenge)))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderMap;

    use super::super::testing::{Check, NOW, headers, hmac_sha256, post, with_binary};
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&command=%2Fweather";

    fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
        let mut message = format!("v0:{timestamp}:").into_bytes();
        message.extend_from_slice(body);
        format!(
            "v0={}",
            hex::encode(hmac_sha256(secret.as_bytes(), &message))
        )
    }

    fn request(value: &str, timestamp: i64) -> HeaderMap {
        headers(&[
            ("X-Slack-Signature", value),
            ("X-Slack-Request-Timestamp", &timestamp.to_string()),
        ])
    }

    fn validator() -> Slack {
        Slack::new(SECRET)
    }

    #[test]
    fn a_valid_signature_passes() {
        let value = signature(SECRET, NOW, BODY);
        assert_eq!(validator().check(&request(&value, NOW), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let value = signature(SECRET, NOW, BODY);
        assert_eq!(
            validator().check(&request(&value, NOW), b"token=other", NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_wrong_secret_is_a_mismatch() {
        let value = signature("another signing secret", NOW, BODY);
        assert_eq!(
            validator().check(&request(&value, NOW), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_changed_timestamp_is_a_mismatch() {
        let value = signature(SECRET, NOW, BODY);
        assert_eq!(
            validator().check(&request(&value, NOW + 1), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn missing_headers_are_missing() {
        let value = signature(SECRET, NOW, BODY);
        let no_signature = headers(&[("X-Slack-Request-Timestamp", &NOW.to_string())]);
        let no_timestamp = headers(&[("X-Slack-Signature", &value)]);
        for request in [HeaderMap::new(), no_signature, no_timestamp] {
            assert_eq!(
                validator().check(&request, BODY, NOW),
                Err(Rejection::Missing)
            );
        }
    }

    #[test]
    fn unparseable_headers_are_malformed() {
        let value = signature(SECRET, NOW, BODY);
        let bad_timestamp = headers(&[
            ("X-Slack-Signature", &value),
            ("X-Slack-Request-Timestamp", "yesterday"),
        ]);
        assert_eq!(
            validator().check(&bad_timestamp, BODY, NOW),
            Err(Rejection::Malformed)
        );
        for value in [value.replace("v0=", "v1="), "v0=xyz".to_owned()] {
            assert_eq!(
                validator().check(&request(&value, NOW), BODY, NOW),
                Err(Rejection::Malformed),
                "{value}"
            );
        }
        let binary = with_binary(
            headers(&[("X-Slack-Signature", &value)]),
            "x-slack-request-timestamp",
        );
        assert_eq!(
            validator().check(&binary, BODY, NOW),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn timestamps_beyond_the_tolerance_are_stale() {
        for timestamp in [NOW - 301, NOW + 301] {
            let value = signature(SECRET, timestamp, BODY);
            assert_eq!(
                validator().check(&request(&value, timestamp), BODY, NOW),
                Err(Rejection::Stale)
            );
        }
        for timestamp in [NOW - 300, NOW + 300] {
            let value = signature(SECRET, timestamp, BODY);
            assert_eq!(
                validator().check(&request(&value, timestamp), BODY, NOW),
                Ok(())
            );
        }
    }

    #[test]
    fn there_is_no_idempotency_key() {
        let value = signature(SECRET, NOW, BODY);
        assert_eq!(validator().key(&request(&value, NOW), BODY), None);
    }

    #[test]
    fn a_signed_url_verification_is_answered_with_its_challenge_and_an_unsigned_one_is_refused() {
        let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let value = signature(SECRET, NOW, body);
        let answer = validator()
            .handshake(&post(&request(&value, NOW), body, NOW))
            .expect("a handshake");
        assert_eq!(
            answer,
            Ok(Answer::text(
                "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
            ))
        );
        let forged = signature("not the secret", NOW, body);
        assert_eq!(
            validator().handshake(&post(&request(&forged, NOW), body, NOW)),
            Some(Err(Rejection::Mismatch))
        );
        assert_eq!(
            validator().handshake(&post(&HeaderMap::new(), body, NOW)),
            Some(Err(Rejection::Missing))
        );
    }

    #[test]
    fn events_and_commands_are_not_handshakes() {
        let event = br#"{"type":"event_callback","event":{"type":"app_mention"}}"#;
        let value = signature(SECRET, NOW, event);
        assert_eq!(
            validator().handshake(&post(&request(&value, NOW), event, NOW)),
            None
        );
        assert_eq!(
            validator().handshake(&post(&request(&value, NOW), BODY, NOW)),
            None
        );
    }
}
