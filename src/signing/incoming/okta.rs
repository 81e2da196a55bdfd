//! Okta event hooks: no signature, but every request carries a fixed secret in a configured
//! header (`Authorization` by default), compared in constant time. Registering a hook sends a
//! one-time `GET` with `X-Okta-Verification-Challenge`, answered `{"verification": …}`.

use serde_json::json;

use super::{Answer, Incoming, Rejection, Validator, same_secret};

const CHALLENGE: &str = "x-okta-verification-challenge";

/// Checks Okta's header secret and answers its verification.
pub(super) struct Okta {
    header: String,
    secret: Vec<u8>,
}

impl Okta {
    pub(super) fn new(header: &str, secret: &str) -> Self {
        Okta {
            header: header.to_ascii_lowercase(),
            secret: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Okta {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let presented = request
            .headers
            .get(self.header.as_str())
            .ok_or(Rejection::Credentials)?;
        if same_secret(presented.as_bytes(), &self.secret) {
            Ok(())
        } else {
            Err(Rejection::Credentials)
        }
    }

    fn handshake(&self, request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        let challenge = request
            .headers
            .get(CHALLENGE)
            .filter(|_| request.is_get())?;
        // Okta sends the configured header with the verification too.
        Some(self.verify(request).and_then(|()| {
            let challenge = challenge.to_str().map_err(|_| Rejection::Malformed)?;
            Ok(Answer::json(json!({ "verification": challenge })))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, GET, NOW, URL, headers, request};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "Bearer okta-hook-secret";
    const BODY: &[u8] = br#"{"eventType":"com.okta.event_hook","data":{"events":[]}}"#;

    #[test]
    fn requests_pass_only_with_the_configured_header_and_value() {
        let okta = Okta::new("Authorization", SECRET);
        assert_eq!(
            okta.check(&headers(&[("authorization", SECRET)]), BODY, NOW),
            Ok(())
        );
        assert_eq!(
            okta.check(&headers(&[("authorization", "Bearer guess")]), BODY, NOW),
            Err(Rejection::Credentials)
        );
        assert_eq!(
            okta.check(&headers(&[("x-other", SECRET)]), BODY, NOW),
            Err(Rejection::Credentials)
        );
        let custom = Okta::new("X-Okta-Secret", SECRET);
        assert_eq!(
            custom.check(&headers(&[("x-okta-secret", SECRET)]), BODY, NOW),
            Ok(())
        );
    }

    #[test]
    fn the_verification_is_answered_only_with_the_secret() {
        let okta = Okta::new("Authorization", SECRET);
        let with = headers(&[
            ("X-Okta-Verification-Challenge", "C6bNT2ZOvRKSX2iIzgu_Cg"),
            ("Authorization", SECRET),
        ]);
        assert_eq!(
            okta.handshake(&request(&GET, &with, "", URL, b"")),
            Some(Ok(Answer::json(
                json!({"verification": "C6bNT2ZOvRKSX2iIzgu_Cg"})
            )))
        );
        let without = headers(&[("X-Okta-Verification-Challenge", "C6bNT2ZOvRKSX2iIzgu_Cg")]);
        assert_eq!(
            okta.handshake(&request(&GET, &without, "", URL, b"")),
            Some(Err(Rejection::Credentials))
        );
        assert_eq!(
            okta.handshake(&request(&GET, &HeaderMap::new(), "", URL, b"")),
            None
        );
    }
}
