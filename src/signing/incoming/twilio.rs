//! Twilio: `X-Twilio-Signature: <base64>`, an HMAC-SHA1 keyed with the account's auth token of
//! the full public URL the request was sent to, followed by every form parameter of the body,
//! sorted by name, as name and value run together. A JSON body is not in the MAC: its hex
//! SHA-256 is in the URL's `bodySHA256` parameter instead, checked against the body. As Twilio's
//! own libraries do, the URL is tried both with and without its default port.

use hmac::Hmac;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{
    Incoming, Rejection, Validator, base64_bytes, header, header_key, same_secret, verify_any,
};

const SIGNATURE: &str = "x-twilio-signature";
/// The same on every retry of one webhook request.
const IDEMPOTENCY: &str = "i-twilio-idempotency-token";

/// Checks Twilio's signatures.
pub(super) struct Twilio {
    key: Vec<u8>,
}

impl Twilio {
    pub(super) fn new(secret: &str) -> Self {
        Twilio {
            key: secret.as_bytes().to_vec(),
        }
    }
}

impl Validator for Twilio {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = base64_bytes(header(request.headers, SIGNATURE)?)?;
        let params = match request.query_param("bodySHA256") {
            Some(declared) => {
                let actual = hex::encode(Sha256::digest(request.body));
                if !same_secret(declared.to_ascii_lowercase().as_bytes(), actual.as_bytes()) {
                    return Err(Rejection::Mismatch);
                }
                String::new()
            }
            None => sorted_params(request.body),
        };
        let signatures = [signature];
        url_spellings(request.url)
            .iter()
            .find_map(|url| {
                verify_any::<Hmac<Sha1>>(
                    &self.key,
                    &[url.as_bytes(), params.as_bytes()],
                    &signatures,
                )
                .ok()
            })
            .ok_or(Rejection::Mismatch)
    }

    fn idempotency_key(&self, request: &Incoming<'_>) -> Option<String> {
        header_key(request.headers, IDEMPOTENCY)
    }
}

/// A form body's parameters, sorted by name (then value), each name followed by its value.
fn sorted_params(body: &[u8]) -> String {
    let mut params: Vec<(String, String)> =
        url::form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    params
        .into_iter()
        .map(|(name, value)| name + &value)
        .collect()
}

/// The URL as given, and with its default port added or removed.
fn url_spellings(url: &str) -> Vec<String> {
    let mut spellings = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return spellings;
    };
    let default = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return spellings,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let other = match authority.strip_suffix(default) {
        Some(bare) => format!("{scheme}://{bare}{tail}"),
        None if !authority
            .rsplit('@')
            .next()
            .unwrap_or(authority)
            .contains(':') =>
        {
            format!("{scheme}://{authority}{default}{tail}")
        }
        None => return spellings,
    };
    spellings.push(other);
    spellings
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::testing::{Check, NOW, POST, headers, hmac_sha1, request};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    /// twilio-python's test request (`tests/unit/test_request_validator.py`).
    const FORM: &[u8] = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";

    fn signature(url: &str, params: &str) -> String {
        STANDARD.encode(hmac_sha1(
            TOKEN.as_bytes(),
            format!("{url}{params}").as_bytes(),
        ))
    }

    fn check(signature: &str, query: &str, url: &str, body: &[u8]) -> Result<(), Rejection> {
        let headers = headers(&[("X-Twilio-Signature", signature)]);
        Twilio::new(TOKEN).verify(&request(&POST, &headers, query, url, body))
    }

    #[test]
    fn a_form_request_signed_over_the_url_and_sorted_params_passes() {
        // Twilio's published signature of this request.
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert_eq!(check(good, "foo=1&bar=2", URL, FORM), Ok(()));
        let params =
            "CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212";
        assert_eq!(signature(URL, params), good, "OpenSSL agrees with Twilio");
        assert_eq!(
            check(
                good,
                "foo=1&bar=2",
                URL,
                b"CallSid=CA1234567890ABCDE&Digits=9999"
            ),
            Err(Rejection::Mismatch)
        );
        let elsewhere = "https://mycompany.com/other.php?foo=1&bar=2";
        assert_eq!(
            check(good, "foo=1&bar=2", elsewhere, FORM),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn the_url_is_tried_with_and_without_its_default_port() {
        // Twilio's published signatures over the URL with its port.
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(
            check("kvajT1Ptam85bY51eRf/AJRuM3w=", "foo=1&bar=2", URL, FORM),
            Ok(())
        );
        let http = "http://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            check("0ZXoZLH/DfblKGATFgpif+LLRf4=", "foo=1&bar=2", http, FORM),
            Ok(())
        );
        let params = sorted_params(FORM);
        assert_eq!(
            check(&signature(URL, &params), "foo=1&bar=2", with_port, FORM),
            Ok(())
        );
        assert_eq!(
            url_spellings("http://user@host:8080/x"),
            vec!["http://user@host:8080/x".to_owned()]
        );
    }

    #[test]
    fn a_json_body_is_checked_through_body_sha256() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = hex::encode(Sha256::digest(body));
        let query = format!("foo=1&bar=2&bodySHA256={hash}");
        let url = format!("https://mycompany.com/myapp.php?{query}");
        // Twilio's published signature of this request.
        let good = "a9nBmqA0ju/hNViExpshrM61xv4=";
        assert_eq!(signature(&url, ""), good, "OpenSSL agrees with Twilio");
        assert_eq!(check(good, &query, &url, body), Ok(()));
        assert_eq!(
            check(
                good,
                &query,
                &url,
                br#"{"property": "other", "boolean": true}"#
            ),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn repeated_parameters_are_sorted_by_value_too() {
        let body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
        assert_eq!(
            check("IK+Dwps556ElfBT0I3Rgjkr1wJU=", "foo=1&bar=2", URL, body),
            Ok(())
        );
    }

    #[test]
    fn a_missing_or_unreadable_signature_is_refused_and_the_idempotency_token_is_kept() {
        let twilio = Twilio::new(TOKEN);
        assert_eq!(
            twilio.check(&HeaderMap::new(), FORM, NOW),
            Err(Rejection::Missing)
        );
        assert_eq!(
            twilio.check(&headers(&[("X-Twilio-Signature", "!!")]), FORM, NOW),
            Err(Rejection::Malformed)
        );
        let retried = headers(&[("I-Twilio-Idempotency-Token", "a1b2c3")]);
        assert_eq!(twilio.key(&retried, FORM), Some("a1b2c3".to_owned()));
    }
}
