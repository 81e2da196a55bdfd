//! Mailgun: the signature is inside the body, as `signature.{timestamp, token, signature}` in a
//! JSON webhook or as the `timestamp`, `token` and `signature` fields of a form: a hex
//! HMAC-SHA256 of `{timestamp}{token}` keyed with the HTTP webhook signing key. The token is
//! unique per request, so it is the idempotency key.

use hmac::Hmac;
use sha2::Sha256;

use super::{
    Incoming, Rejection, Validator, hex_bytes, parse_timestamp, verify_any, within_tolerance,
};

/// Checks Mailgun's signatures.
pub(super) struct Mailgun {
    key: Vec<u8>,
}

impl Mailgun {
    pub(super) fn new(secret: &str) -> Self {
        Mailgun {
            key: secret.as_bytes().to_vec(),
        }
    }
}

/// `timestamp`, `token` and `signature`, from a JSON body or a form.
struct Signed {
    timestamp: String,
    token: String,
    signature: String,
}

fn signed(request: &Incoming<'_>) -> Option<Signed> {
    if let Some(body) = request.json() {
        let part = body.get("signature")?;
        let field = |name: &str| Some(part.get(name)?.as_str()?.to_owned());
        return Some(Signed {
            timestamp: field("timestamp")?,
            token: field("token")?,
            signature: field("signature")?,
        });
    }
    let field = |name: &str| {
        url::form_urlencoded::parse(request.body)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    Some(Signed {
        timestamp: field("timestamp")?,
        token: field("token")?,
        signature: field("signature")?,
    })
}

impl Validator for Mailgun {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signed = signed(request).ok_or(Rejection::Missing)?;
        let timestamp = parse_timestamp(&signed.timestamp)?;
        verify_any::<Hmac<Sha256>>(
            &self.key,
            &[signed.timestamp.as_bytes(), signed.token.as_bytes()],
            &[hex_bytes(&signed.signature)?],
        )?;
        within_tolerance(timestamp, request.now)
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        signed(request).map(|signed| signed.token)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, NOW, hmac_sha256};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const KEY: &str = "mailgun signing key";
    const TOKEN: &str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";

    fn mac(key: &str, timestamp: i64) -> String {
        hex::encode(hmac_sha256(
            key.as_bytes(),
            format!("{timestamp}{TOKEN}").as_bytes(),
        ))
    }

    fn json(timestamp: i64, signature: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "signature": {"timestamp": timestamp.to_string(), "token": TOKEN, "signature": signature},
            "event-data": {"event": "delivered", "id": "CPgfbmQMTCKtHW6uIWtuVe"}
        }))
        .unwrap()
    }

    fn form(timestamp: i64, signature: &str) -> Vec<u8> {
        format!("timestamp={timestamp}&token={TOKEN}&signature={signature}&event=delivered")
            .into_bytes()
    }

    #[test]
    fn json_and_form_webhooks_signed_with_the_key_pass_and_others_do_not() {
        let mailgun = Mailgun::new(KEY);
        let none = HeaderMap::new();
        for body in [json(NOW, &mac(KEY, NOW)), form(NOW, &mac(KEY, NOW))] {
            assert_eq!(mailgun.check(&none, &body, NOW), Ok(()));
            assert_eq!(mailgun.key(&none, &body), Some(TOKEN.to_owned()));
        }
        for body in [json(NOW, &mac("other", NOW)), form(NOW, &mac("other", NOW))] {
            assert_eq!(mailgun.check(&none, &body, NOW), Err(Rejection::Mismatch));
        }
        // Another timestamp than the one signed is a tampered request.
        assert_eq!(
            mailgun.check(&none, &json(NOW + 1, &mac(KEY, NOW)), NOW),
            Err(Rejection::Mismatch)
        );
        let old = NOW - 301;
        assert_eq!(
            mailgun.check(&none, &json(old, &mac(KEY, old)), NOW),
            Err(Rejection::Stale)
        );
        assert_eq!(
            mailgun.check(&none, br#"{"event-data":{}}"#, NOW),
            Err(Rejection::Missing)
        );
        assert_eq!(
            mailgun.check(&none, b"event=delivered", NOW),
            Err(Rejection::Missing)
        );
    }

    /// Mailgun's published example (mailgun-php's webhook test).
    #[test]
    fn mailguns_published_signature_verifies() {
        let body = |token: &str| {
            format!("timestamp=1403645220&token={token}&signature=9cfc5c41582e51246e73c88d34db3af0a3a2692a76fbab81492842f000256d33")
                .into_bytes()
        };
        let mailgun = Mailgun::new("key-3ax6xnjp29jd6fds4gc373sgvjxteol0");
        let none = HeaderMap::new();
        let good = body("5egbgr1vjgqxtrnp65xfznchgdccwh5d6i09vijqi3whgowmn6");
        assert_eq!(mailgun.check(&none, &good, 1_403_645_220), Ok(()));
        let other = body("owyldpe6nxhmrn78epljl6bj0orrki1u3d2v5e6cnlmmuox8jr");
        assert_eq!(
            mailgun.check(&none, &other, 1_403_645_220),
            Err(Rejection::Mismatch)
        );
    }
}
