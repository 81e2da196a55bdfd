//! GitLab: no signature, but `X-Gitlab-Token` carries the webhook's secret token as is, compared
//! in constant time.

use super::{Incoming, Rejection, Validator, header_key, same_secret};

const TOKEN: &str = "x-gitlab-token";
/// GitLab's id for one event, kept when a delivery is retried.
const EVENT: &str = "x-gitlab-event-uuid";

/// Checks GitLab's secret token.
pub(super) struct Gitlab {
    token: Vec<u8>,
}

impl Gitlab {
    pub(super) fn new(secret: &str) -> Self {
        Gitlab {
            token: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Gitlab {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let presented = request.headers.get(TOKEN).ok_or(Rejection::Credentials)?;
        if same_secret(presented.as_bytes(), &self.token) {
            Ok(())
        } else {
            Err(Rejection::Credentials)
        }
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        header_key(request.headers, EVENT)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, NOW, headers};
    use super::*;

    const BODY: &[u8] = br#"{"object_kind":"push"}"#;

    #[test]
    fn only_the_exact_token_passes() {
        let gitlab = Gitlab::new("glpat-hook-token");
        assert_eq!(
            gitlab.check(
                &headers(&[("X-Gitlab-Token", "glpat-hook-token")]),
                BODY,
                NOW
            ),
            Ok(())
        );
        for wrong in [
            "glpat-hook-toke",
            "glpat-hook-token2",
            "GLPAT-HOOK-TOKEN",
            "",
        ] {
            assert_eq!(
                gitlab.check(&headers(&[("X-Gitlab-Token", wrong)]), BODY, NOW),
                Err(Rejection::Credentials),
                "{wrong}"
            );
        }
        assert_eq!(
            gitlab.check(&headers(&[]), BODY, NOW),
            Err(Rejection::Credentials)
        );
        let event = headers(&[(
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        )]);
        assert_eq!(
            gitlab.key(&event, BODY),
            Some("13792a34-cac6-4fda-95a8-c58e00a3954e".to_owned())
        );
    }
}
