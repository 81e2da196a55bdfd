//! HubSpot v3: `X-HubSpot-Signature-v3: <base64>`, an HMAC-SHA256 keyed with the app's client
//! secret of the method, the full request URI, the raw body and `X-HubSpot-Request-Timestamp`
//! (milliseconds), run together. Requests older than five minutes are refused. HubSpot signs
//! the URI with some characters decoded, so they are decoded here the same way.

use hmac::Hmac;
use sha2::Sha256;

use super::{
    Incoming, Rejection, Validator, base64_bytes, header, parse_timestamp, verify_any,
    within_tolerance,
};

const SIGNATURE: &str = "x-hubspot-signature-v3";
const TIMESTAMP: &str = "x-hubspot-request-timestamp";

/// The escapes HubSpot decodes in the URI before signing it.
const DECODED: [(&str, &str); 12] = [
    ("%3A", ":"),
    ("%2F", "/"),
    ("%3F", "?"),
    ("%40", "@"),
    ("%21", "!"),
    ("%24", "$"),
    ("%27", "'"),
    ("%28", "("),
    ("%29", ")"),
    ("%2A", "*"),
    ("%2C", ","),
    ("%3B", ";"),
];

/// Checks HubSpot's v3 signatures.
pub(super) struct Hubspot {
    key: Vec<u8>,
}

impl Hubspot {
    pub(super) fn new(secret: &str) -> Self {
        Hubspot {
            key: secret.as_bytes().to_vec(),
        }
    }
}

/// The URI as HubSpot signs it.
fn signed_uri(url: &str) -> String {
    DECODED
        .iter()
        .fold(url.to_owned(), |uri, (escape, character)| {
            uri.replace(escape, character)
                .replace(&escape.to_ascii_lowercase(), character)
        })
}

impl Validator for Hubspot {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let signature = base64_bytes(header(request.headers, SIGNATURE)?)?;
        let signed = header(request.headers, TIMESTAMP)?;
        let millis = parse_timestamp(signed)?;
        let uri = signed_uri(request.url);
        verify_any::<Hmac<Sha256>>(
            &self.key,
            &[
                request.method.as_str().as_bytes(),
                uri.as_bytes(),
                request.body,
                signed.as_bytes(),
            ],
            &[signature],
        )?;
        within_tolerance(millis / 1000, request.now)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::super::testing::{NOW, POST, headers, hmac_sha256, request};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const SECRET: &str = "hubspot client secret";
    const URL: &str = "https://relay.example.com/ingest/tok/hubspot?portal=62515";
    const BODY: &[u8] =
        br#"[{"objectId":1246965,"subscriptionType":"contact.creation","portalId":62515}]"#;

    fn signed(secret: &str, uri: &str, body: &[u8], millis: i64) -> HeaderMap {
        let mut message = format!("POST{uri}").into_bytes();
        message.extend_from_slice(body);
        message.extend_from_slice(millis.to_string().as_bytes());
        headers(&[
            (
                "X-HubSpot-Signature-v3",
                &STANDARD.encode(hmac_sha256(secret.as_bytes(), &message)),
            ),
            ("X-HubSpot-Request-Timestamp", &millis.to_string()),
        ])
    }

    fn check(headers: &HeaderMap, url: &str, body: &[u8]) -> Result<(), Rejection> {
        let query = url.split_once('?').map_or("", |(_, query)| query);
        Hubspot::new(SECRET).verify(&request(&POST, headers, query, url, body))
    }

    #[test]
    fn a_signed_request_passes_and_tampered_forged_or_stale_ones_do_not() {
        let millis = NOW * 1000;
        assert_eq!(check(&signed(SECRET, URL, BODY, millis), URL, BODY), Ok(()));
        assert_eq!(
            check(&signed(SECRET, URL, BODY, millis), URL, b"[]"),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            check(&signed("other", URL, BODY, millis), URL, BODY),
            Err(Rejection::Mismatch)
        );
        let elsewhere = "https://relay.example.com/ingest/tok/other?portal=62515";
        assert_eq!(
            check(&signed(SECRET, URL, BODY, millis), elsewhere, BODY),
            Err(Rejection::Mismatch)
        );
        let old = (NOW - 301) * 1000;
        assert_eq!(
            check(&signed(SECRET, URL, BODY, old), URL, BODY),
            Err(Rejection::Stale)
        );
        assert_eq!(check(&HeaderMap::new(), URL, BODY), Err(Rejection::Missing));
    }

    #[test]
    fn the_uri_is_signed_with_hubspots_escapes_decoded() {
        let sent = "https://relay.example.com/ingest/tok?from=a%40b.com&list=1%2C2&name=x%20y";
        let as_signed = "https://relay.example.com/ingest/tok?from=a@b.com&list=1,2&name=x%20y";
        assert_eq!(signed_uri(sent), as_signed);
        let millis = NOW * 1000;
        assert_eq!(
            check(&signed(SECRET, as_signed, BODY, millis), sent, BODY),
            Ok(())
        );
    }

    /// HubSpot's published example (hubspot-api-python's signature test).
    #[test]
    fn hubspots_published_signature_verifies() {
        let signed = headers(&[
            (
                "X-HubSpot-Signature-v3",
                "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
            ),
            ("X-HubSpot-Request-Timestamp", "15000000"),
        ]);
        let url = "https://www.example.com/webhook_uri";
        let body = b"{'example_field':'example_value'}";
        let hubspot = Hubspot::new("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy");
        let mut request = request(&POST, &signed, "", url, body);
        request.now = 15_000;
        assert_eq!(hubspot.verify(&request), Ok(()));
        request.body = b"{}";
        assert_eq!(hubspot.verify(&request), Err(Rejection::Mismatch));
    }
}
