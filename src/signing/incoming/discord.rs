//! Discord interactions: every request carries `X-Signature-Ed25519` (hex), an Ed25519 signature
//! of `{X-Signature-Timestamp}{body}` under the application's key, checked with its public key.
//! Discord sends a `PING` (type 1) when the URL is saved, answered `{"type": 1}`, and tests that
//! a badly signed request gets `401` before it accepts the URL.

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::json;

use super::{
    Answer, Incoming, Rejection, Validator, header, hex_bytes, parse_timestamp, within_tolerance,
};

const SIGNATURE: &str = "x-signature-ed25519";
const TIMESTAMP: &str = "x-signature-timestamp";

/// The interaction type of a `PING`.
const PING: u64 = 1;

/// The public key a developer portal shows: 32 bytes in hex, a valid curve point.
pub(super) fn public_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Checks Discord's signatures and answers its `PING`.
pub(super) struct Discord {
    /// `None` when the stored key is not one: then nothing verifies. `ProviderConfig::check`
    /// keeps such keys out, but a validator cannot fail to be built.
    key: Option<VerifyingKey>,
}

impl Discord {
    pub(super) fn new(public_key_hex: &str) -> Self {
        Discord {
            key: public_key(public_key_hex),
        }
    }
}

impl Validator for Discord {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = Signature::from_slice(&hex_bytes(header(request.headers, SIGNATURE)?)?)
            .map_err(|_| Rejection::Malformed)?;
        let signed = header(request.headers, TIMESTAMP)?;
        let timestamp = parse_timestamp(signed)?;
        let mut message = Vec::with_capacity(signed.len() + request.body.len());
        message.extend_from_slice(signed.as_bytes());
        message.extend_from_slice(request.body);
        self.key
            .as_ref()
            .ok_or(Rejection::Mismatch)?
            .verify_strict(&message, &signature)
            .map_err(|_| Rejection::Mismatch)?;
        within_tolerance(timestamp, request.now)
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        // Each interaction has its own snowflake id.
        let interaction = request.json()?;
        Some(interaction.get("id")?.as_str()?.to_owned())
    }

    fn handshake(&self, request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        let interaction = request.json().filter(|_| request.is_post())?;
        if interaction.get("type")?.as_u64()? != PING {
            return None;
        }
        Some(
            self.verify(request)
                .map(|()| Answer::json(json!({ "type": PING }))),
        )
    }
}

#[cfg(test)]
mod tests {
    use openssl::pkey::{PKey, Private};

    use super::super::testing::{Check, NOW, ed25519, headers, post};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const BODY: &[u8] = br#"{"id":"1182378223312347217","type":2,"data":{"name":"hello"}}"#;

    fn keys() -> (PKey<Private>, String) {
        let key = PKey::generate_ed25519().unwrap();
        let public = hex::encode(key.raw_public_key().unwrap());
        (key, public)
    }

    fn signed(key: &PKey<Private>, timestamp: i64, body: &[u8]) -> HeaderMap {
        let mut message = timestamp.to_string().into_bytes();
        message.extend_from_slice(body);
        headers(&[
            ("X-Signature-Ed25519", &hex::encode(ed25519(key, &message))),
            ("X-Signature-Timestamp", &timestamp.to_string()),
        ])
    }

    #[test]
    fn a_request_signed_by_the_application_passes_and_others_do_not() {
        let (key, public) = keys();
        let discord = Discord::new(&public);
        assert_eq!(discord.check(&signed(&key, NOW, BODY), BODY, NOW), Ok(()));
        assert_eq!(
            discord.check(&signed(&key, NOW, BODY), b"{\"type\":2}", NOW),
            Err(Rejection::Mismatch)
        );
        let (other, _) = keys();
        assert_eq!(
            discord.check(&signed(&other, NOW, BODY), BODY, NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            discord.check(&signed(&key, NOW - 301, BODY), BODY, NOW),
            Err(Rejection::Stale)
        );
        assert_eq!(
            discord.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Missing)
        );
        let short = headers(&[
            ("X-Signature-Ed25519", "abcd"),
            ("X-Signature-Timestamp", "1"),
        ]);
        assert_eq!(discord.check(&short, BODY, NOW), Err(Rejection::Malformed));
        assert_eq!(
            discord.key(&signed(&key, NOW, BODY), BODY),
            Some("1182378223312347217".to_owned())
        );
    }

    #[test]
    fn a_signed_ping_is_answered_and_an_unsigned_one_is_refused() {
        let (key, public) = keys();
        let discord = Discord::new(&public);
        let ping = br#"{"id":"1","application_id":"2","type":1,"version":1}"#;
        assert_eq!(
            discord.handshake(&post(&signed(&key, NOW, ping), ping, NOW)),
            Some(Ok(Answer::json(json!({"type": 1}))))
        );
        let (other, _) = keys();
        assert_eq!(
            discord.handshake(&post(&signed(&other, NOW, ping), ping, NOW)),
            Some(Err(Rejection::Mismatch))
        );
        assert_eq!(
            discord.handshake(&post(&signed(&key, NOW, BODY), BODY, NOW)),
            None
        );
    }

    #[test]
    fn only_32_byte_hex_points_are_public_keys() {
        let (_, public) = keys();
        assert!(public_key(&public).is_some());
        assert!(public_key(&public[2..]).is_none());
        assert!(public_key("zz").is_none());
    }

    /// A signed `PING` as captured in a bot's tests (Discord's own libraries generate keys).
    #[test]
    fn a_captured_ping_verifies() {
        let discord =
            Discord::new("a58293d7fa04d53ab90108be275a87fe890eece595962273a93e1f87d398df74");
        let signed = headers(&[
            (
                "X-Signature-Ed25519",
                "3a25f3db58760e73b1a0ac5163b331e23c81483177d819158a6c6514a54a3a0ad630fdb35b0bd110d6b701511f70cb28fa00fd417e8868341ce0f25d488b390b",
            ),
            ("X-Signature-Timestamp", "1641309313810"),
        ]);
        let now = 1_641_309_313_810;
        assert_eq!(discord.check(&signed, br#"{"type":1}"#, now), Ok(()));
        assert_eq!(
            discord.check(&signed, br#"{"type":2}"#, now),
            Err(Rejection::Mismatch)
        );
    }
}
