//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature` (or the same under
//! Svix's `svix-*` names), the signature being space-separated `v1,<base64>` HMAC-SHA256s of
//! `{id}.{timestamp}.{body}` keyed with the secret's base64-decoded bytes.

use hmac::Hmac;
use sha2::Sha256;

use super::{
    HeaderMap, Incoming, Rejection, Validator, base64_bytes, header, header_key, parse_timestamp,
    verify_any, within_tolerance,
};
use crate::signing::outgoing::decode_key;

/// The header names of one spelling of the scheme.
struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const WEBHOOK: Names = Names {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

const SVIX: Names = Names {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

/// Checks Standard Webhooks (and Svix) signatures.
pub(super) struct Standard {
    /// `None` when the secret is not base64: then nothing can match. `ProviderConfig::check`
    /// keeps such secrets out, but a validator cannot fail to be built.
    key: Option<Vec<u8>>,
}

impl Standard {
    pub(super) fn new(secret: &str) -> Self {
        Standard {
            key: decode_key(secret).ok(),
        }
    }
}

/// The spelling a request uses: the one whose signature header is present, so the three headers
/// always come from the same sender's set.
fn names(headers: &HeaderMap) -> &'static Names {
    if !headers.contains_key(WEBHOOK.signature) && headers.contains_key(SVIX.signature) {
        &SVIX
    } else {
        &WEBHOOK
    }
}

impl Validator for Standard {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let (headers, body, now) = (request.headers, request.body, request.now);
        let names = names(headers);
        let id = header(headers, names.id)?;
        let signed = header(headers, names.timestamp)?;
        let timestamp = parse_timestamp(signed)?;
        let mut signatures = Vec::new();
        for entry in header(headers, names.signature)?.split_whitespace() {
            let (version, encoded) = entry.split_once(',').ok_or(Rejection::Malformed)?;
            // Other versions (v1a is Ed25519) are for other verifiers; any v1 may match.
            if version == "v1" {
                signatures.push(base64_bytes(encoded)?);
            }
        }
        let key = self.key.as_deref().ok_or(Rejection::Mismatch)?;
        verify_any::<Hmac<Sha256>>(
            key,
            &[id.as_bytes(), b".", signed.as_bytes(), b".", body],
            &signatures,
        )?;
        within_tolerance(timestamp, now)
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        let headers = request.headers;
        // The message id stays the same across a message's retries, by the specification. It is
        // read from the set of headers whose signature was checked, so it is signed too.
        header_key(headers, names(headers).id)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::testing::{Check, NOW, headers, hmac_sha256, with_binary};
    use super::*;

    /// The Standard Webhooks specification's example.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .unwrap();
        let mut message = format!("{id}.{timestamp}.").into_bytes();
        message.extend_from_slice(body);
        format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &message)))
    }

    fn request(prefix: &str, timestamp: i64, value: &str) -> HeaderMap {
        headers(&[
            (&format!("{prefix}-id"), ID),
            (&format!("{prefix}-timestamp"), &timestamp.to_string()),
            (&format!("{prefix}-signature"), value),
        ])
    }

    fn validator() -> Standard {
        Standard::new(SECRET)
    }

    #[test]
    fn the_specification_example_passes() {
        let published = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(
            validator().check(&request("webhook", 1614265330, published), BODY, 1614265330),
            Ok(())
        );
    }

    #[test]
    fn a_valid_signature_passes_under_both_spellings() {
        let value = signature(SECRET, ID, NOW, BODY);
        for prefix in ["webhook", "svix", "Webhook", "SVIX"] {
            assert_eq!(
                validator().check(&request(prefix, NOW, &value), BODY, NOW),
                Ok(()),
                "{prefix}"
            );
        }
    }

    #[test]
    fn a_bare_base64_secret_works_too() {
        let bare = Standard::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let value = signature(SECRET, ID, NOW, BODY);
        assert_eq!(
            bare.check(&request("webhook", NOW, &value), BODY, NOW),
            Ok(())
        );
    }

    #[test]
    fn any_v1_may_match_and_other_versions_are_ignored() {
        let old = signature("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ID, NOW, BODY);
        let value = format!(
            "v1a,c29tZSBlZDI1NTE5 {old} {}",
            signature(SECRET, ID, NOW, BODY)
        );
        assert_eq!(
            validator().check(&request("webhook", NOW, &value), BODY, NOW),
            Ok(())
        );
        let only_other = "v1a,c29tZSBlZDI1NTE5 v2,abc";
        assert_eq!(
            validator().check(&request("webhook", NOW, only_other), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_tampered_body_is_a_mismatch() {
        let value = signature(SECRET, ID, NOW, BODY);
        for prefix in ["webhook", "svix"] {
            assert_eq!(
                validator().check(&request(prefix, NOW, &value), b"{\"test\": 1}", NOW),
                Err(Rejection::Mismatch)
            );
        }
    }

    #[test]
    fn a_wrong_secret_is_a_mismatch() {
        let value = signature("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ID, NOW, BODY);
        for prefix in ["webhook", "svix"] {
            assert_eq!(
                validator().check(&request(prefix, NOW, &value), BODY, NOW),
                Err(Rejection::Mismatch)
            );
        }
    }

    #[test]
    fn a_different_message_id_is_a_mismatch() {
        let value = signature(SECRET, "msg_other", NOW, BODY);
        assert_eq!(
            validator().check(&request("webhook", NOW, &value), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn an_undecodable_secret_matches_nothing() {
        let broken = Standard::new("whsec_not base64!");
        let value = signature(SECRET, ID, NOW, BODY);
        assert_eq!(
            broken.check(&request("webhook", NOW, &value), BODY, NOW),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn missing_headers_are_missing() {
        let value = signature(SECRET, ID, NOW, BODY);
        let now = NOW.to_string();
        for prefix in ["webhook", "svix"] {
            let id = format!("{prefix}-id");
            let timestamp = format!("{prefix}-timestamp");
            let signature = format!("{prefix}-signature");
            for request in [
                headers(&[(&timestamp, &now), (&signature, &value)]),
                headers(&[(&id, ID), (&signature, &value)]),
                headers(&[(&id, ID), (&timestamp, &now)]),
            ] {
                assert_eq!(
                    validator().check(&request, BODY, NOW),
                    Err(Rejection::Missing),
                    "{request:?}"
                );
            }
        }
        assert_eq!(
            validator().check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
    }

    #[test]
    fn unparseable_headers_are_malformed() {
        let value = signature(SECRET, ID, NOW, BODY);
        let bad_timestamp = headers(&[
            ("webhook-id", ID),
            ("webhook-timestamp", "now"),
            ("webhook-signature", &value),
        ]);
        assert_eq!(
            validator().check(&bad_timestamp, BODY, NOW),
            Err(Rejection::Malformed)
        );
        for value in ["v1", "v1,not base64!"] {
            assert_eq!(
                validator().check(&request("svix", NOW, value), BODY, NOW),
                Err(Rejection::Malformed),
                "{value}"
            );
        }
        let binary = with_binary(request("webhook", NOW, &value), "webhook-id");
        assert_eq!(
            validator().check(&binary, BODY, NOW),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn timestamps_beyond_the_tolerance_are_stale() {
        for prefix in ["webhook", "svix"] {
            for timestamp in [NOW - 301, NOW + 301] {
                let value = signature(SECRET, ID, timestamp, BODY);
                assert_eq!(
                    validator().check(&request(prefix, timestamp, &value), BODY, NOW),
                    Err(Rejection::Stale),
                    "{prefix} {timestamp}"
                );
            }
            for timestamp in [NOW - 300, NOW + 300] {
                let value = signature(SECRET, ID, timestamp, BODY);
                assert_eq!(
                    validator().check(&request(prefix, timestamp, &value), BODY, NOW),
                    Ok(())
                );
            }
        }
    }

    #[test]
    fn the_idempotency_key_is_the_message_id() {
        for prefix in ["webhook", "svix"] {
            assert_eq!(
                validator().key(&request(prefix, NOW, "v1,x"), BODY),
                Some(ID.to_owned())
            );
        }
        assert_eq!(validator().key(&HeaderMap::new(), BODY), None);
    }
}
