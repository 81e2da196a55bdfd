//! Signatures on deliveries: Standard Webhooks' `webhook-signature`, so receivers can use its
//! libraries, and `X-Spenza-Signature` in the `t=...,v1=...` shape many receivers already verify.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::SigningSecret;

/// Why a signing secret cannot be turned into an HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the signing secret is not base64 (with or without a whsec_ prefix)")]
pub struct InvalidSecret;

/// The HMAC key a secret stands for: the bytes its base64 encodes, after an optional `whsec_`.
pub fn key_bytes(secret: &SigningSecret) -> Result<Vec<u8>, InvalidSecret> {
    decode_key(secret.expose())
}

/// [`key_bytes`] for a secret that is not (yet) a [`SigningSecret`], such as a provider's.
pub(super) fn decode_key(secret: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
    // An empty key signs with no secret at all: anyone could forge the signature.
    if key.is_empty() {
        return Err(InvalidSecret);
    }
    Ok(key)
}

/// The signature headers of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// The `webhook-signature` header: `v1,<base64>` per secret, separated by spaces.
    pub webhook_signature: String,
    /// The `X-Spenza-Signature` header: `t=<timestamp>` then `,v1=<hex>` per secret.
    pub spenza_signature: String,
}

/// Signs a delivery with every secret, in the order given (newest first while rotating), so a
/// receiver holding either the old or the new secret accepts it. With no secrets the headers
/// carry no signatures.
pub fn sign(
    event_id: &str,
    timestamp: i64,
    body: &[u8],
    secrets: &[&SigningSecret],
) -> Result<Signatures, InvalidSecret> {
    let standard_prefix = format!("{event_id}.{timestamp}.");
    let spenza_prefix = format!("{timestamp}.");
    let mut webhook = Vec::with_capacity(secrets.len());
    let mut spenza = format!("t={timestamp}");
    for secret in secrets {
        let key = key_bytes(secret)?;
        let standard = super::mac::<Hmac<Sha256>>(&key, &[standard_prefix.as_bytes(), body]);
        webhook.push(format!(
            "v1,{}",
            STANDARD.encode(standard.finalize().into_bytes())
        ));
        let ours = super::mac::<Hmac<Sha256>>(&key, &[spenza_prefix.as_bytes(), body]);
        spenza.push_str(",v1=");
        spenza.push_str(&hex::encode(ours.finalize().into_bytes()));
    }
    Ok(Signatures {
        webhook_signature: webhook.join(" "),
        spenza_signature: spenza,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(raw: &str) -> SigningSecret {
        SigningSecret::from_stored(raw.to_owned())
    }

    #[test]
    fn matches_the_standard_webhooks_specification_example() {
        let secret = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let signed = sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
            &[&secret],
        )
        .unwrap();
        assert_eq!(
            signed.webhook_signature,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn two_secrets_give_two_signatures_in_order() {
        let (new, old) = (SigningSecret::generate(), SigningSecret::generate());
        let both = sign("evt_1", 1614265330, b"{}", &[&new, &old]).unwrap();
        let new_only = sign("evt_1", 1614265330, b"{}", &[&new]).unwrap();
        let old_only = sign("evt_1", 1614265330, b"{}", &[&old]).unwrap();

        let parts: Vec<&str> = both.webhook_signature.split(' ').collect();
        assert_eq!(
            parts,
            [
                new_only.webhook_signature.as_str(),
                old_only.webhook_signature.as_str()
            ]
        );
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);

        let new_hex = new_only.spenza_signature.split(",v1=").nth(1).unwrap();
        let old_hex = old_only.spenza_signature.split(",v1=").nth(1).unwrap();
        assert_eq!(
            both.spenza_signature,
            format!("t=1614265330,v1={new_hex},v1={old_hex}")
        );
    }

    #[test]
    fn spenza_signature_is_hex_hmac_of_timestamp_and_body() {
        let secret = SigningSecret::generate();
        let key = STANDARD
            .decode(secret.expose().strip_prefix("whsec_").unwrap())
            .unwrap();
        let body = b"{\"amount\":42}";
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(b"1614265330.");
        mac.update(body);
        let expected = hex::encode(mac.finalize().into_bytes());

        let signed = sign("evt_1", 1614265330, body, &[&secret]).unwrap();
        assert_eq!(
            signed.spenza_signature,
            format!("t=1614265330,v1={expected}")
        );
    }

    #[test]
    fn keys_decode_with_or_without_the_prefix_and_junk_is_refused() {
        let with = key_bytes(&secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        let without = key_bytes(&secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        assert_eq!(with, without);
        assert_eq!(with.len(), 24);
        assert_eq!(key_bytes(&secret("whsec_not base64!")), Err(InvalidSecret));
        assert_eq!(key_bytes(&secret("whsec_")), Err(InvalidSecret));
        let junk = secret("whsec_%%%");
        assert_eq!(sign("evt_1", 1, b"", &[&junk]), Err(InvalidSecret));
    }
}
