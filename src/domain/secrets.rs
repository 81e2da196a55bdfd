//! Unguessable tokens and secrets. None of them prints itself in `Debug`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system has a random source");
    bytes
}

/// A fresh 256-bit token, as URLs and cookies carry it: 43 characters of base64url.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// Whether `raw` has the shape of a [`random_token`], so junk never reaches the database.
pub fn is_token_shaped(raw: &str) -> bool {
    raw.len() == 43
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The secret part of a subscription's ingest URL: 32 random bytes, base64url.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IngestToken(String);

impl IngestToken {
    /// A fresh token.
    pub fn generate() -> Self {
        IngestToken(random_token())
    }

    /// Accepts only strings shaped like a token, so junk never reaches the database.
    pub fn parse(raw: &str) -> Option<Self> {
        is_token_shaped(raw).then(|| IngestToken(raw.to_owned()))
    }

    /// The token as it appears in the URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IngestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IngestToken(..)")
    }
}

/// The key deliveries are signed with: `whsec_` and base64 of 32 random bytes (Standard Webhooks).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    /// A fresh secret.
    pub fn generate() -> Self {
        SigningSecret(format!("whsec_{}", STANDARD.encode(random_bytes::<32>())))
    }

    /// Wraps a secret read back from the database.
    pub fn from_stored(secret: String) -> Self {
        SigningSecret(secret)
    }

    /// The secret as shown to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

/// A bearer API key: `spz_` and 32 base64url characters. Only its SHA-256 is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    const PREFIX: &'static str = "spz_";
    const SHOWN: usize = 12;

    /// A fresh key.
    pub fn generate() -> Self {
        ApiKey(format!(
            "{}{}",
            Self::PREFIX,
            URL_SAFE_NO_PAD.encode(random_bytes::<24>())
        ))
    }

    /// Wraps a key presented by a client; any string may be presented, it just will not match.
    pub fn presented(raw: &str) -> Self {
        ApiKey(raw.to_owned())
    }

    /// The start of the key, stored and shown so owners can tell their keys apart.
    pub fn shown_prefix(&self) -> &str {
        &self.0[..Self::SHOWN.min(self.0.len())]
    }

    /// What is stored: a key is 192 random bits, so a fast hash is enough (no brute force).
    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }

    /// The key itself, to print once at creation.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}..)", self.shown_prefix())
    }
}

/// A connection URL that may carry a password (PostgreSQL's, RabbitMQ's): `Debug` shows it
/// with the password masked, so settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL itself, to connect with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(url)
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(url.to_owned()))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                // `?password=...` and its kind (libpq takes parameters in the query too).
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(key, value)| {
                        let secret = ["pass", "secret", "token", "key"]
                            .iter()
                            .any(|mark| key.to_ascii_lowercase().contains(mark));
                        let value = if secret {
                            "***".into()
                        } else {
                            value.into_owned()
                        };
                        (key.into_owned(), value)
                    })
                    .collect();
                if !pairs.is_empty() {
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                write!(f, "{:?}", url.as_str())
            }
            Err(_) => f.write_str("\"(not a URL)\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_debug_masks_its_password() {
        let url: SecretUrl = "amqp://guest:hunter2@127.0.0.1:5672/%2f".parse().unwrap();
        assert_eq!(
            format!("{url:?}"),
            "\"amqp://guest:***@127.0.0.1:5672/%2f\""
        );
        let bare: SecretUrl = "postgres://postgres@127.0.0.1/spenza".parse().unwrap();
        assert_eq!(
            format!("{bare:?}"),
            "\"postgres://postgres@127.0.0.1/spenza\""
        );
        let query: SecretUrl = "postgres://db/spenza?sslmode=require&password=hunter2"
            .parse()
            .unwrap();
        assert_eq!(
            format!("{query:?}"),
            "\"postgres://db/spenza?sslmode=require&password=***\""
        );
        let junk: SecretUrl = "postgres://u:p@[".parse().unwrap();
        assert_eq!(format!("{junk:?}"), "\"(not a URL)\"");
    }

    #[test]
    fn generated_ingest_tokens_parse_and_junk_does_not() {
        let token = IngestToken::generate();
        assert_eq!(IngestToken::parse(token.as_str()), Some(token));
        assert!(IngestToken::parse("short").is_none());
        assert!(IngestToken::parse(&"a/".repeat(22)[..43]).is_none());
    }

    #[test]
    fn signing_secrets_hold_32_bytes_of_base64() {
        let secret = SigningSecret::generate();
        let encoded = secret
            .expose()
            .strip_prefix("whsec_")
            .expect("whsec_ prefix");
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), 32);
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let secret = SigningSecret::generate();
        assert!(!format!("{secret:?}").contains(secret.expose()));
        let key = ApiKey::generate();
        assert!(!format!("{key:?}").contains(key.expose()));
    }

    #[test]
    fn api_keys_hash_the_same_when_presented_again() {
        let key = ApiKey::generate();
        assert_eq!(ApiKey::presented(key.expose()).hash(), key.hash());
        assert_ne!(ApiKey::generate().hash(), key.hash());
    }
}
