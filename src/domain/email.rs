//! A user's email address, parsed once and stored lower-cased.

use std::fmt;

/// An email address that has the shape of one; compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

/// Why a string is not an email address.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an email address")]
pub struct InvalidEmail(String);

impl EmailAddress {
    /// Parses and normalises (trims, lower-cases) an address.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let email = raw.trim().to_lowercase();
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(|c| c.is_whitespace() || c == ',')
                    && !domain.contains('@')
                    && email.len() <= 254
            }
            None => false,
        };
        if valid {
            Ok(EmailAddress(email))
        } else {
            Err(InvalidEmail(raw.to_owned()))
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        assert_eq!(
            EmailAddress::parse(" Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for raw in [
            "",
            "ada",
            "@example.com",
            "ada@example",
            "ada@.com",
            "a da@example.com",
            "a@b@c.com",
        ] {
            assert!(
                EmailAddress::parse(raw).is_err(),
                "{raw:?} should be refused"
            );
        }
    }
}
