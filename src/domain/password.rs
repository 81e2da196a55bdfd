//! Passwords: checked for length, hashed with argon2id, never printed.

use std::fmt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::secrets::random_bytes;

/// A password as typed by its owner.
#[derive(Clone)]
pub struct Password(String);

/// Why a password is refused.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPassword {
    /// Shorter than the minimum.
    #[error("a password needs at least {min} characters")]
    TooShort { min: usize },
    /// Longer than the maximum (bounds the hashing work one request can cause).
    #[error("a password may have at most {max} characters")]
    TooLong { max: usize },
}

impl Password {
    const MIN: usize = 12;
    const MAX: usize = 256;

    /// Accepts a password of a sensible length.
    pub fn parse(raw: &str) -> Result<Self, InvalidPassword> {
        let length = raw.chars().count();
        if length < Self::MIN {
            Err(InvalidPassword::TooShort { min: Self::MIN })
        } else if length > Self::MAX {
            Err(InvalidPassword::TooLong { max: Self::MAX })
        } else {
            Ok(Password(raw.to_owned()))
        }
    }

    /// The argon2id PHC string to store.
    pub fn hash(&self) -> String {
        let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes is a valid salt");
        Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .expect("argon2 with default parameters hashes any password")
            .to_string()
    }

    /// Whether this password matches a stored PHC string.
    pub fn verify(&self, stored: &str) -> bool {
        PasswordHash::new(stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(self.0.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let password = Password::parse("correct horse battery").unwrap();
        let stored = password.hash();
        assert!(stored.starts_with("$argon2id$"));
        assert!(password.verify(&stored));
        assert!(
            !Password::parse("wrong horse battery")
                .unwrap()
                .verify(&stored)
        );
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(300)).is_err());
    }
}
