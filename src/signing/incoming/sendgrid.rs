//! SendGrid's signed Event Webhook: `X-Twilio-Email-Event-Webhook-Signature` is a base64 DER
//! ECDSA P-256 / SHA-256 signature of `{timestamp}{body}`, the timestamp coming from
//! `X-Twilio-Email-Event-Webhook-Timestamp`, checked with the verification key SendGrid shows
//! (base64 of the DER public key).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use super::{
    Incoming, Rejection, Validator, base64_bytes, header, parse_timestamp, within_tolerance,
};

const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

/// The verification key SendGrid shows: base64 of a DER P-256 public key.
pub(super) fn public_key(base64_key: &str) -> Option<VerifyingKey> {
    let der = STANDARD.decode(base64_key.trim()).ok()?;
    VerifyingKey::from_public_key_der(&der).ok()
}

/// Checks SendGrid's signatures.
pub(super) struct Sendgrid {
    /// `None` when the stored key is not one: then nothing verifies (`ProviderConfig::check`
    /// keeps such keys out).
    key: Option<VerifyingKey>,
}

impl Sendgrid {
    pub(super) fn new(public_key_base64: &str) -> Self {
        Sendgrid {
            key: public_key(public_key_base64),
        }
    }
}

impl Validator for Sendgrid {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature =
            DerSignature::try_from(base64_bytes(header(request.headers, SIGNATURE)?)?.as_slice())
                .map_err(|_| Rejection::Malformed)?;
        let signed = header(request.headers, TIMESTAMP)?;
        let timestamp = parse_timestamp(signed)?;
        let mut message = Vec::with_capacity(signed.len() + request.body.len());
        message.extend_from_slice(signed.as_bytes());
        message.extend_from_slice(request.body);
        self.key
            .as_ref()
            .ok_or(Rejection::Mismatch)?
            .verify(&message, &signature)
            .map_err(|_| Rejection::Mismatch)?;
        within_tolerance(timestamp, request.now)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};

    use super::super::testing::{Check, NOW, ecdsa_p256, headers};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const BODY: &[u8] = br#"[{"email":"example@test.com","event":"processed","sg_event_id":"rbtnWrG1DVDGGGFHFyun0A=="}]"#;

    fn keys() -> (PKey<Private>, String) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let public = STANDARD.encode(key.public_key_to_der().unwrap());
        (key, public)
    }

    fn signed(key: &PKey<Private>, timestamp: i64, body: &[u8]) -> HeaderMap {
        let mut message = timestamp.to_string().into_bytes();
        message.extend_from_slice(body);
        headers(&[
            (
                "X-Twilio-Email-Event-Webhook-Signature",
                &STANDARD.encode(ecdsa_p256(key, &message)),
            ),
            (
                "X-Twilio-Email-Event-Webhook-Timestamp",
                &timestamp.to_string(),
            ),
        ])
    }

    #[test]
    fn events_signed_with_the_account_key_pass_and_others_do_not() {
        let (key, public) = keys();
        let sendgrid = Sendgrid::new(&public);
        assert_eq!(sendgrid.check(&signed(&key, NOW, BODY), BODY, NOW), Ok(()));
        assert_eq!(
            sendgrid.check(&signed(&key, NOW, BODY), b"[]", NOW),
            Err(Rejection::Mismatch)
        );
        let (other, _) = keys();
        assert_eq!(
            sendgrid.check(&signed(&other, NOW, BODY), BODY, NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            sendgrid.check(&signed(&key, NOW - 301, BODY), BODY, NOW),
            Err(Rejection::Stale)
        );
        assert_eq!(
            sendgrid.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
        let garbage = headers(&[
            ("X-Twilio-Email-Event-Webhook-Signature", "AAAA"),
            ("X-Twilio-Email-Event-Webhook-Timestamp", "1"),
        ]);
        assert_eq!(
            sendgrid.check(&garbage, BODY, NOW),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn only_base64_p256_keys_are_verification_keys() {
        let (_, public) = keys();
        assert!(public_key(&public).is_some());
        assert!(public_key("not base64").is_none());
        assert!(public_key(&STANDARD.encode(b"short")).is_none());
    }

    /// SendGrid's published examples (sendgrid-python's and sendgrid-csharp's tests).
    #[test]
    fn sendgrids_published_signatures_verify() {
        let cases: [(&str, &str, &[u8], &str); 2] = [
            (
                "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==",
                "1600112502",
                b"[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n",
                "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=",
            ),
            (
                "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==",
                "1588788367",
                b"{\"category\":\"example_payload\",\"event\":\"test_event\",\"message_id\":\"message_id\"}",
                "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=",
            ),
        ];
        for (key, timestamp, body, signature) in cases {
            let request = headers(&[
                ("X-Twilio-Email-Event-Webhook-Signature", signature),
                ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp),
            ]);
            let now = timestamp.parse().unwrap();
            assert_eq!(Sendgrid::new(key).check(&request, body, now), Ok(()));
            assert_eq!(
                Sendgrid::new(key).check(&request, &body[1..], now),
                Err(Rejection::Mismatch)
            );
        }
    }
}
