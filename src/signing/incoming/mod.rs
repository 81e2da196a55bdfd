//! Verifying providers' signatures at ingest. Each provider is one [`Validator`] in its own file,
//! so adding a provider is adding a file and a [`ProviderConfig`] variant.

mod github;
mod hmac;
mod shopify;
mod slack;
mod standard;
mod stripe;

use std::fmt;

use ::hmac::Mac;
use ::hmac::digest::KeyInit;
use actix_web::http::header::{HeaderMap, HeaderName};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// How far a signed timestamp may be from now, in either direction, before it counts as a replay.
pub const TOLERANCE_SECONDS: i64 = 300;

/// The longest secret a provider config takes: real ones are far shorter, and it bounds the row.
const MAX_SECRET_CHARS: usize = 1024;

/// Why a request's signature is refused. The text goes to the provider in the 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header the scheme needs is absent.
    #[error("a signature header is missing")]
    Missing,
    /// A header the scheme needs cannot be parsed.
    #[error("a signature header is malformed")]
    Malformed,
    /// The request is well formed but no signature on it matches.
    #[error("the signature does not match")]
    Mismatch,
    /// The signature matches but its timestamp is too far from now.
    #[error(
        "the signature timestamp is more than {} seconds from the current time",
        TOLERANCE_SECONDS
    )]
    Stale,
}

/// One provider's way of signing requests.
pub trait Validator: Send + Sync {
    /// Accepts the request when it carries a valid signature of `body`. `now` is Unix seconds,
    /// passed in so timestamp checks are testable.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Rejection>;

    /// The provider's id for this event, the same on every retry of it, when it sends one.
    fn idempotency_key(&self, headers: &HeaderMap, body: &[u8]) -> Option<String>;
}

/// HMAC algorithms of the generic scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How the generic scheme writes the MAC into its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Hexadecimal, either case.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Which provider signs a subscription's incoming requests, and with what secret. Stored as
/// JSONB, secret included; `Debug` and [`ProviderConfig::public_view`] leave the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[schema(
    description = "Which provider signs a subscription's incoming requests, named by `kind`, and with what secret. The secret is write-only: the API never shows it."
)]
pub enum ProviderConfig {
    /// Stripe's `Stripe-Signature`; the secret is the endpoint's `whsec_...` string.
    Stripe {
        /// The endpoint signing secret.
        secret: String,
    },
    /// GitHub's `X-Hub-Signature-256`.
    Github {
        /// The webhook secret.
        secret: String,
    },
    /// Shopify's `X-Shopify-Hmac-Sha256`.
    Shopify {
        /// The app's client secret.
        secret: String,
    },
    /// Slack's `X-Slack-Signature`.
    Slack {
        /// The app's signing secret.
        secret: String,
    },
    /// Standard Webhooks (`webhook-*` headers) and Svix (`svix-*` headers).
    Standard {
        /// `whsec_` and base64, or bare base64.
        secret: String,
    },
    /// Any HMAC of the raw body in one header.
    Hmac {
        /// The shared secret, used as the key as is.
        secret: String,
        /// The header carrying the signature.
        header: String,
        /// The hash under the HMAC.
        algorithm: HmacAlgorithm,
        /// How the MAC is written.
        encoding: SignatureEncoding,
        /// Text before the MAC, such as `sha256=`; required when set.
        #[serde(default)]
        prefix: Option<String>,
    },
}

impl ProviderConfig {
    /// The validator that checks requests signed this way.
    pub fn validator(&self) -> Box<dyn Validator> {
        match self {
            ProviderConfig::Stripe { secret } => Box::new(stripe::Stripe::new(secret)),
            ProviderConfig::Github { secret } => Box::new(github::Github::new(secret)),
            ProviderConfig::Shopify { secret } => Box::new(shopify::Shopify::new(secret)),
            ProviderConfig::Slack { secret } => Box::new(slack::Slack::new(secret)),
            ProviderConfig::Standard { secret } => Box::new(standard::Standard::new(secret)),
            ProviderConfig::Hmac {
                secret,
                header,
                algorithm,
                encoding,
                prefix,
            } => Box::new(self::hmac::GenericHmac::new(
                secret,
                header,
                *algorithm,
                *encoding,
                prefix.clone(),
            )),
        }
    }

    /// The `kind` tag, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Stripe { .. } => "stripe",
            ProviderConfig::Github { .. } => "github",
            ProviderConfig::Shopify { .. } => "shopify",
            ProviderConfig::Slack { .. } => "slack",
            ProviderConfig::Standard { .. } => "standard",
            ProviderConfig::Hmac { .. } => "hmac",
        }
    }

    /// The config as it may be shown back to its owner: everything but the secret.
    pub fn public_view(&self) -> serde_json::Value {
        match self {
            ProviderConfig::Hmac {
                header,
                algorithm,
                encoding,
                prefix,
                ..
            } => json!({
                "kind": self.kind(),
                "header": header,
                "algorithm": algorithm,
                "encoding": encoding,
                "prefix": prefix,
            }),
            _ => json!({ "kind": self.kind() }),
        }
    }

    /// Refuses configs that could never verify anything, with a message for the person who
    /// entered it (it never quotes the secret).
    pub fn check(&self) -> Result<(), String> {
        let secret = self.secret();
        if secret.is_empty() {
            return Err("the secret must not be empty".to_owned());
        }
        if secret.chars().count() > MAX_SECRET_CHARS {
            return Err(format!(
                "the secret must be at most {MAX_SECRET_CHARS} characters"
            ));
        }
        match self {
            ProviderConfig::Hmac { header, .. }
                if HeaderName::from_bytes(header.as_bytes()).is_err() =>
            {
                Err("the header is not a valid HTTP header name".to_owned())
            }
            ProviderConfig::Standard { secret } if super::outgoing::decode_key(secret).is_err() => {
                Err("the secret must be whsec_ followed by base64, or base64".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// The provider's secret, so that an edit that leaves it blank keeps it. Never show it:
    /// provider secrets are write-only.
    pub fn secret(&self) -> &str {
        match self {
            ProviderConfig::Stripe { secret }
            | ProviderConfig::Github { secret }
            | ProviderConfig::Shopify { secret }
            | ProviderConfig::Slack { secret }
            | ProviderConfig::Standard { secret }
            | ProviderConfig::Hmac { secret, .. } => secret,
        }
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand so the secret never reaches a log line or an error message.
        let mut out = f.debug_struct("ProviderConfig");
        out.field("kind", &self.kind());
        if let ProviderConfig::Hmac {
            header,
            algorithm,
            encoding,
            prefix,
            ..
        } = self
        {
            out.field("header", header)
                .field("algorithm", algorithm)
                .field("encoding", encoding)
                .field("prefix", prefix);
        }
        out.finish_non_exhaustive()
    }
}

/// A header's value: `Missing` when absent, `Malformed` when it is not visible ASCII.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, Rejection> {
    headers
        .get(name)
        .ok_or(Rejection::Missing)?
        .to_str()
        .map_err(|_| Rejection::Malformed)
}

/// A header used as an idempotency key; an empty or non-text value counts as absent.
fn header_key(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    (!value.is_empty()).then(|| value.to_owned())
}

/// A signed Unix timestamp in seconds.
fn parse_timestamp(raw: &str) -> Result<i64, Rejection> {
    raw.parse().map_err(|_| Rejection::Malformed)
}

/// `Stale` when `timestamp` is more than [`TOLERANCE_SECONDS`] before or after `now`.
fn within_tolerance(timestamp: i64, now: i64) -> Result<(), Rejection> {
    // abs_diff cannot overflow, whatever a sender puts in the header.
    if now.abs_diff(timestamp) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(Rejection::Stale);
    }
    Ok(())
}

/// A presented MAC written in hex.
fn hex_bytes(encoded: &str) -> Result<Vec<u8>, Rejection> {
    hex::decode(encoded).map_err(|_| Rejection::Malformed)
}

/// A presented MAC written in standard base64.
fn base64_bytes(encoded: &str) -> Result<Vec<u8>, Rejection> {
    STANDARD.decode(encoded).map_err(|_| Rejection::Malformed)
}

/// Accepts when any presented MAC is the HMAC of `parts` under `key`. Each comparison is
/// constant-time (`verify_slice`), so a forger learns nothing from how long a refusal takes.
fn verify_any<M: Mac + KeyInit + Clone>(
    key: &[u8],
    parts: &[&[u8]],
    presented: &[Vec<u8>],
) -> Result<(), Rejection> {
    let mac: M = super::mac(key, parts);
    if presented
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

/// Helpers shared by the providers' tests. They compute MACs with the hmac crate directly, never
/// through the code under test.
#[cfg(test)]
mod testing {
    use ::hmac::{Hmac, Mac};
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    use sha2::{Sha256, Sha512};

    /// A fixed "now" for every test.
    pub const NOW: i64 = 1_700_000_000;

    pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    pub fn hmac_sha512(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    /// Headers from name/value pairs; names may be in any case.
    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// A header whose value is not text.
    pub fn with_binary(mut map: HeaderMap, name: &str) -> HeaderMap {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<ProviderConfig> {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        vec![
            ProviderConfig::Stripe {
                secret: secret.clone(),
            },
            ProviderConfig::Github {
                secret: secret.clone(),
            },
            ProviderConfig::Shopify {
                secret: secret.clone(),
            },
            ProviderConfig::Slack {
                secret: secret.clone(),
            },
            ProviderConfig::Standard {
                secret: secret.clone(),
            },
            ProviderConfig::Hmac {
                secret,
                header: "X-Sig".to_owned(),
                algorithm: HmacAlgorithm::Sha256,
                encoding: SignatureEncoding::Hex,
                prefix: Some("sha256=".to_owned()),
            },
        ]
    }

    #[test]
    fn a_stripe_config_parses() {
        let config: ProviderConfig =
            serde_json::from_str(r#"{"kind":"stripe","secret":"whsec_x"}"#).unwrap();
        assert_eq!(
            config,
            ProviderConfig::Stripe {
                secret: "whsec_x".to_owned()
            }
        );
    }

    #[test]
    fn an_hmac_config_parses_with_and_without_a_prefix() {
        let with: ProviderConfig = serde_json::from_str(
            r#"{"kind":"hmac","secret":"s","header":"X-Sig","algorithm":"sha512","encoding":"base64","prefix":"sha512="}"#,
        )
        .unwrap();
        assert_eq!(
            with,
            ProviderConfig::Hmac {
                secret: "s".to_owned(),
                header: "X-Sig".to_owned(),
                algorithm: HmacAlgorithm::Sha512,
                encoding: SignatureEncoding::Base64,
                prefix: Some("sha512=".to_owned()),
            }
        );
        let without: ProviderConfig = serde_json::from_str(
            r#"{"kind":"hmac","secret":"s","header":"X-Sig","algorithm":"sha256","encoding":"hex"}"#,
        )
        .unwrap();
        assert!(matches!(without, ProviderConfig::Hmac { prefix: None, .. }));
    }

    #[test]
    fn every_kind_round_trips_through_json() {
        for config in all_kinds() {
            let json = serde_json::to_value(&config).unwrap();
            assert_eq!(json["kind"], config.kind());
            let back: ProviderConfig = serde_json::from_value(json).unwrap();
            assert_eq!(back, config);
        }
    }

    #[test]
    fn unknown_kinds_and_fields_are_refused() {
        for bad in [
            r#"{"kind":"paypal","secret":"x"}"#,
            r#"{"secret":"x"}"#,
            r#"{"kind":"stripe","secret":"x","extra":1}"#,
            r#"{"kind":"stripe"}"#,
            r#"{"kind":"hmac","secret":"s","header":"X","algorithm":"md5","encoding":"hex"}"#,
        ] {
            assert!(
                serde_json::from_str::<ProviderConfig>(bad).is_err(),
                "{bad} parsed"
            );
        }
    }

    #[test]
    fn debug_and_public_view_never_show_the_secret() {
        for config in all_kinds() {
            let secret = config.secret().to_owned();
            let debug = format!("{config:?}");
            assert!(!debug.contains(&secret), "{debug}");
            assert!(debug.contains(config.kind()));
            let view = config.public_view();
            assert!(!view.to_string().contains(&secret), "{view}");
            assert!(view.get("secret").is_none());
            // The view is the stored form minus the secret.
            let mut stored = serde_json::to_value(&config).unwrap();
            stored.as_object_mut().unwrap().remove("secret");
            assert_eq!(view, stored);
        }
    }

    #[test]
    fn public_view_of_hmac_shows_its_settings() {
        let config = all_kinds().pop().unwrap();
        assert_eq!(
            config.public_view(),
            json!({"kind":"hmac","header":"X-Sig","algorithm":"sha256","encoding":"hex","prefix":"sha256="})
        );
    }

    #[test]
    fn check_accepts_good_configs_and_explains_bad_ones() {
        for config in all_kinds() {
            assert_eq!(config.check(), Ok(()), "{config:?}");
        }
        let raw_base64 = ProviderConfig::Standard {
            secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
        };
        assert_eq!(raw_base64.check(), Ok(()));

        let empty = ProviderConfig::Github {
            secret: String::new(),
        };
        assert!(empty.check().is_err());
        let long = ProviderConfig::Slack {
            secret: "x".repeat(MAX_SECRET_CHARS + 1),
        };
        assert!(long.check().is_err());
        let longest = ProviderConfig::Slack {
            secret: "x".repeat(MAX_SECRET_CHARS),
        };
        assert_eq!(longest.check(), Ok(()));
        let not_base64 = ProviderConfig::Standard {
            secret: "whsec_not base64!".to_owned(),
        };
        let message = not_base64.check().unwrap_err();
        assert!(!message.contains("not base64!"));
        let bad_header = ProviderConfig::Hmac {
            secret: "s".to_owned(),
            header: "X Sig:".to_owned(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: None,
        };
        assert!(bad_header.check().is_err());
    }

    #[test]
    fn tolerance_is_inclusive_both_ways_and_survives_extremes() {
        assert_eq!(within_tolerance(1000, 1300), Ok(()));
        assert_eq!(within_tolerance(1300, 1000), Ok(()));
        assert_eq!(within_tolerance(1000, 1301), Err(Rejection::Stale));
        assert_eq!(within_tolerance(1301, 1000), Err(Rejection::Stale));
        assert_eq!(within_tolerance(i64::MIN, i64::MAX), Err(Rejection::Stale));
    }

    #[test]
    fn rejection_texts_are_short_and_distinct() {
        let texts: Vec<String> = [
            Rejection::Missing,
            Rejection::Malformed,
            Rejection::Mismatch,
            Rejection::Stale,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert!(texts.iter().all(|t| !t.is_empty() && t.len() < 80));
        assert_eq!(
            texts[3],
            "the signature timestamp is more than 300 seconds from the current time"
        );
    }
}
