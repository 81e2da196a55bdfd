//! Twitch EventSub: messages carry `Twitch-Eventsub-Message-Signature: sha256=<hex>`, an
//! HMAC-SHA256 of `{message id}{timestamp}{body}` keyed with the subscription's secret, the id
//! and the RFC 3339 timestamp coming from their own headers. A new subscription is confirmed by
//! a signed `webhook_callback_verification` message, answered `200 text/plain` with its
//! `challenge`.

use hmac::Hmac;
use sha2::Sha256;

use super::{
    Answer, Incoming, Rejection, Validator, header, header_key, hex_bytes, prefixed, verify_any,
    within_window,
};

const SIGNATURE: &str = "twitch-eventsub-message-signature";
const ID: &str = "twitch-eventsub-message-id";
const TIMESTAMP: &str = "twitch-eventsub-message-timestamp";
const TYPE: &str = "twitch-eventsub-message-type";

/// Twitch asks receivers to refuse messages older than ten minutes.
const WINDOW_SECONDS: i64 = 600;

/// Checks Twitch's signatures and answers its callback verification.
pub(super) struct Twitch {
    key: Vec<u8>,
}

impl Twitch {
    pub(super) fn new(secret: &str) -> Self {
        Twitch {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Twitch {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = hex_bytes(prefixed(request.headers, SIGNATURE, "sha256=")?)?;
        let id = header(request.headers, ID)?;
        let signed = header(request.headers, TIMESTAMP)?;
        let timestamp = chrono::DateTime::parse_from_rfc3339(signed)
            .map_err(|_| Rejection::Malformed)?
            .timestamp();
        verify_any::<Hmac<Sha256>>(
            &self.key,
            &[id.as_bytes(), signed.as_bytes(), request.body],
            &[signature],
        )?;
        within_window(timestamp, request.now, WINDOW_SECONDS)
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        // Twitch resends a message with the same id.
        header_key(request.headers, ID)
    }

    fn handshake(&self, request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        let kind = request.headers.get(TYPE).filter(|_| request.is_post())?;
        if kind.as_bytes() != b"webhook_callback_verification" {
            return None;
        }
        Some(self.verify(request).and_then(|()| {
            let challenge = request
                .json()
                .and_then(|body| Some(body.get("challenge")?.as_str()?.to_owned()))
                .ok_or(Rejection::Malformed)?;
            Ok(Answer::text(challenge))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, NOW, headers, hmac_sha256, post};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "twitch subscription secret";
    const MESSAGE_ID: &str = "e76c6bd4-55c9-4987-8304-da1588d8988b";
    const BODY: &[u8] = br#"{"subscription":{"type":"channel.follow"},"event":{"user_id":"1337"}}"#;

    fn at(unix: i64) -> String {
        chrono::DateTime::from_timestamp(unix, 123_456_789)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }

    fn signed(body: &[u8], secret: &str, when: i64, kind: &str) -> HeaderMap {
        let timestamp = at(when);
        let mut message = format!("{MESSAGE_ID}{timestamp}").into_bytes();
        message.extend_from_slice(body);
        let value = format!(
            "sha256={}",
            hex::encode(hmac_sha256(secret.as_bytes(), &message))
        );
        headers(&[
            ("Twitch-Eventsub-Message-Id", MESSAGE_ID),
            ("Twitch-Eventsub-Message-Timestamp", &timestamp),
            ("Twitch-Eventsub-Message-Signature", &value),
            ("Twitch-Eventsub-Message-Type", kind),
        ])
    }

    #[test]
    fn a_signed_notification_passes_and_tampered_forged_or_stale_ones_do_not() {
        let twitch = Twitch::new(SECRET);
        let good = signed(BODY, SECRET, NOW, "notification");
        assert_eq!(twitch.check(&good, BODY, NOW), Ok(()));
        assert_eq!(twitch.check(&good, b"{}", NOW), Err(Rejection::Mismatch));
        assert_eq!(
            twitch.check(&signed(BODY, "other", NOW, "notification"), BODY, NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            twitch.check(&signed(BODY, SECRET, NOW - 601, "notification"), BODY, NOW),
            Err(Rejection::Stale)
        );
        assert_eq!(
            twitch.check(&signed(BODY, SECRET, NOW - 599, "notification"), BODY, NOW),
            Ok(())
        );
        assert_eq!(twitch.key(&good, BODY), Some(MESSAGE_ID.to_owned()));
    }

    #[test]
    fn a_signed_verification_is_answered_with_its_challenge() {
        let twitch = Twitch::new(SECRET);
        let body = br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"type":"channel.follow"}}"#;
        let kind = "webhook_callback_verification";
        assert_eq!(
            twitch.handshake(&post(&signed(body, SECRET, NOW, kind), body, NOW)),
            Some(Ok(Answer::text("pogchamp-kappa-360noscope-vohiyo")))
        );
        assert_eq!(
            twitch.handshake(&post(&signed(body, "other", NOW, kind), body, NOW)),
            Some(Err(Rejection::Mismatch))
        );
        assert_eq!(
            twitch.handshake(&post(&signed(BODY, SECRET, NOW, "notification"), BODY, NOW)),
            None
        );
    }
}
