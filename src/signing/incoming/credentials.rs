//! Sources whose provider can only send a fixed secret: HTTP Basic authentication, or an API key
//! in a named header or query parameter. Both compare in constant time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{ApiKeyPlace, Incoming, Rejection, Validator, same_secret};

/// A Basic user name the scheme can carry: not empty, no `:`, no control characters.
pub(super) fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
        return Err("the user name must not be empty or hold `:`".to_owned());
    }
    Ok(())
}

/// Checks `Authorization: Basic …`.
pub(super) struct Basic {
    /// `user:password`, as the header carries it once decoded.
    expected: Vec<u8>,
}

impl Basic {
    pub(super) fn new(username: &str, password: &str) -> Self {
        Basic {
            expected: format!("{username}:{password}").into_bytes(),
        }
    }
}

impl Validator for Basic {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let presented = request
            .headers
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, encoded) = value.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("basic")
                    .then_some(encoded.trim())
            })
            .and_then(|encoded| STANDARD.decode(encoded).ok())
            .ok_or(Rejection::Credentials)?;
        if same_secret(&presented, &self.expected) {
            Ok(())
        } else {
            Err(Rejection::Credentials)
        }
    }
}

/// Checks a fixed key in a header or a query parameter.
pub(super) struct ApiKey {
    place: ApiKeyPlace,
    value: Vec<u8>,
}

impl ApiKey {
    pub(super) fn new(place: ApiKeyPlace, value: &str) -> Self {
        ApiKey {
            place,
            value: value.as_bytes().to_vec(),
        }
    }
}

impl Validator for ApiKey {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let held = match &self.place {
            ApiKeyPlace::Header(name) => request
                .headers
                .get(name.as_str())
                .is_some_and(|presented| same_secret(presented.as_bytes(), &self.value)),
            ApiKeyPlace::Query(name) => request
                .query_param(name)
                .is_some_and(|presented| same_secret(presented.as_bytes(), &self.value)),
        };
        if held {
            Ok(())
        } else {
            Err(Rejection::Credentials)
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::testing::{Check, NOW, POST, URL, headers, request};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const BODY: &[u8] = b"{}";

    fn basic(user_password: &str) -> HeaderMap {
        let value = format!("Basic {}", STANDARD.encode(user_password));
        headers(&[("Authorization", &value)])
    }

    #[test]
    fn basic_passes_only_with_the_user_and_password() {
        let check = Basic::new("acme", "pa:ss word");
        assert_eq!(check.check(&basic("acme:pa:ss word"), BODY, NOW), Ok(()));
        for wrong in ["acme:pa:ss wor", "acm:pa:ss word", "acme", ""] {
            assert_eq!(
                check.check(&basic(wrong), BODY, NOW),
                Err(Rejection::Credentials),
                "{wrong}"
            );
        }
        let bearer = headers(&[("Authorization", "Bearer acme:pa:ss word")]);
        assert_eq!(check.check(&bearer, BODY, NOW), Err(Rejection::Credentials));
        assert_eq!(
            check.check(&HeaderMap::new(), BODY, NOW),
            Err(Rejection::Credentials)
        );
        let lower = format!("basic {}", STANDARD.encode("acme:pa:ss word"));
        assert_eq!(
            check.check(&headers(&[("authorization", &lower)]), BODY, NOW),
            Ok(())
        );
    }

    #[test]
    fn a_header_key_passes_only_in_its_header() {
        let check = ApiKey::new(ApiKeyPlace::Header("x-hook-key".into()), "k-123");
        assert_eq!(
            check.check(&headers(&[("X-Hook-Key", "k-123")]), BODY, NOW),
            Ok(())
        );
        assert_eq!(
            check.check(&headers(&[("X-Hook-Key", "k-124")]), BODY, NOW),
            Err(Rejection::Credentials)
        );
        assert_eq!(
            check.check(&headers(&[("X-Other", "k-123")]), BODY, NOW),
            Err(Rejection::Credentials)
        );
    }

    #[test]
    fn a_query_key_passes_only_in_its_parameter_decoded() {
        let check = ApiKey::new(ApiKeyPlace::Query("key".into()), "k 1+2");
        let none = HeaderMap::new();
        let verify = |query: &str| check.verify(&request(&POST, &none, query, URL, BODY));
        assert_eq!(verify("a=1&key=k%201%2B2"), Ok(()));
        assert_eq!(verify("key=k+1%2B2"), Ok(()));
        assert_eq!(verify("key=k%201%2B3"), Err(Rejection::Credentials));
        assert_eq!(verify("other=k%201%2B2"), Err(Rejection::Credentials));
        assert_eq!(verify(""), Err(Rejection::Credentials));
    }

    #[test]
    fn user_names_with_a_colon_are_refused() {
        assert!(check_username("acme").is_ok());
        assert!(check_username("ac:me").is_err());
        assert!(check_username("").is_err());
    }
}
