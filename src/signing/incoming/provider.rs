//! The provider check a source is configured with: which provider, and what to check its
//! requests with. Stored as JSONB, secrets included; `Debug` and [`ProviderConfig::public_view`]
//! leave every secret out.

use std::fmt;

use actix_web::http::header::HeaderName;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Validator, credentials, discord, sendgrid};

/// The longest secret a provider config takes: real ones are far shorter, and it bounds the row.
const MAX_SECRET_CHARS: usize = 1024;

/// The fields that hold secrets: write-only, never shown, never logged.
const SECRET_FIELDS: [&str; 5] = [
    "secret",
    "verify_token",
    "client_state",
    "password",
    "value",
];

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

/// Where an `api_key` source's key is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyPlace {
    Header(String),
    Query(String),
}

/// Which provider sends a source's requests, named by `kind`, and what proves a request is
/// theirs. Every secret is write-only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schema(
    description = "Which provider sends a source's requests, named by `kind`, and what proves a request is theirs. Secrets (`secret`, `verify_token`, `client_state`, `password`, `value`) are write-only: the API never shows them."
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
    /// Slack's `X-Slack-Signature`; answers the Events API's URL verification.
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
    /// Meta (Facebook, Instagram, WhatsApp): `X-Hub-Signature-256`, and the `hub.challenge`
    /// verification.
    Meta {
        /// The app secret.
        secret: String,
        /// The verify token entered in the app's webhook settings.
        verify_token: String,
    },
    /// Dropbox: `X-Dropbox-Signature`, and the `challenge` verification.
    Dropbox {
        /// The app secret.
        secret: String,
    },
    /// Microsoft Graph change notifications: `clientState` in every item, and the
    /// `validationToken` validation.
    MicrosoftGraph {
        /// The `clientState` given when the subscription was created.
        client_state: String,
    },
    /// Zoom: `x-zm-signature`, and the `endpoint.url_validation` event.
    Zoom {
        /// The app's secret token.
        secret: String,
    },
    /// X (Twitter) Account Activity: `x-twitter-webhooks-signature`, and the CRC check.
    X {
        /// The app's consumer secret (API key secret).
        secret: String,
    },
    /// Discord interactions: Ed25519 `X-Signature-Ed25519`, and the `PING`.
    Discord {
        /// The application's public key, in hex as the developer portal shows it.
        public_key: String,
    },
    /// Okta event hooks: a fixed authorization header, and the one-time verification.
    Okta {
        /// The header Okta sends the secret in (`Authorization` unless set otherwise).
        header: String,
        /// The header's value.
        secret: String,
    },
    /// Twitch EventSub: `Twitch-Eventsub-Message-Signature`, and the callback verification.
    Twitch {
        /// The secret given when the subscription was created.
        secret: String,
    },
    /// Twilio: `X-Twilio-Signature` over the URL and the form parameters.
    Twilio {
        /// The account's auth token.
        secret: String,
    },
    /// SendGrid's signed Event Webhook: ECDSA P-256.
    Sendgrid {
        /// The verification key, base64 as SendGrid shows it.
        public_key: String,
    },
    /// Square: `x-square-hmacsha256-signature` over the notification URL and the body.
    Square {
        /// The subscription's signature key.
        secret: String,
    },
    /// Paddle Billing: `Paddle-Signature: ts=…;h1=…`.
    Paddle {
        /// The notification destination's secret key.
        secret: String,
    },
    /// HubSpot: `X-HubSpot-Signature-v3`.
    Hubspot {
        /// The app's client secret.
        secret: String,
    },
    /// Linear: `Linear-Signature`, and the `webhookTimestamp` in the body.
    Linear {
        /// The webhook's signing secret.
        secret: String,
    },
    /// Intercom: `X-Hub-Signature` (HMAC-SHA1).
    Intercom {
        /// The app's client secret.
        secret: String,
    },
    /// Mailgun: the signature inside the body (JSON or form).
    Mailgun {
        /// The HTTP webhook signing key.
        secret: String,
    },
    /// GitLab: `X-Gitlab-Token`, compared in constant time.
    Gitlab {
        /// The webhook's secret token.
        secret: String,
    },
    /// HTTP Basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A fixed key in a named header or query parameter (set exactly one of the two).
    ApiKey {
        /// The header carrying the key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// The query parameter carrying the key; it is never stored or forwarded with an event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        /// The key.
        value: String,
    },
}

impl ProviderConfig {
    /// The validator that checks requests this way.
    pub fn validator(&self) -> Box<dyn Validator> {
        use super::*;
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
            } => Box::new(super::hmac::GenericHmac::new(
                secret,
                header,
                *algorithm,
                *encoding,
                prefix.clone(),
            )),
            ProviderConfig::Meta {
                secret,
                verify_token,
            } => Box::new(meta::Meta::new(secret, verify_token)),
            ProviderConfig::Dropbox { secret } => Box::new(dropbox::Dropbox::new(secret)),
            ProviderConfig::MicrosoftGraph { client_state } => {
                Box::new(microsoft_graph::MicrosoftGraph::new(client_state))
            }
            ProviderConfig::Zoom { secret } => Box::new(zoom::Zoom::new(secret)),
            ProviderConfig::X { secret } => Box::new(x::X::new(secret)),
            ProviderConfig::Discord { public_key } => Box::new(discord::Discord::new(public_key)),
            ProviderConfig::Okta { header, secret } => Box::new(okta::Okta::new(header, secret)),
            ProviderConfig::Twitch { secret } => Box::new(twitch::Twitch::new(secret)),
            ProviderConfig::Twilio { secret } => Box::new(twilio::Twilio::new(secret)),
            ProviderConfig::Sendgrid { public_key } => {
                Box::new(sendgrid::Sendgrid::new(public_key))
            }
            ProviderConfig::Square { secret } => Box::new(square::Square::new(secret)),
            ProviderConfig::Paddle { secret } => Box::new(paddle::Paddle::new(secret)),
            ProviderConfig::Hubspot { secret } => Box::new(hubspot::Hubspot::new(secret)),
            ProviderConfig::Linear { secret } => Box::new(linear::Linear::new(secret)),
            ProviderConfig::Intercom { secret } => Box::new(intercom::Intercom::new(secret)),
            ProviderConfig::Mailgun { secret } => Box::new(mailgun::Mailgun::new(secret)),
            ProviderConfig::Gitlab { secret } => Box::new(gitlab::Gitlab::new(secret)),
            ProviderConfig::Basic { username, password } => {
                Box::new(credentials::Basic::new(username, password))
            }
            ProviderConfig::ApiKey { value, .. } => Box::new(credentials::ApiKey::new(
                self.api_key_place().expect("an api_key config"),
                value,
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
            ProviderConfig::Meta { .. } => "meta",
            ProviderConfig::Dropbox { .. } => "dropbox",
            ProviderConfig::MicrosoftGraph { .. } => "microsoft_graph",
            ProviderConfig::Zoom { .. } => "zoom",
            ProviderConfig::X { .. } => "x",
            ProviderConfig::Discord { .. } => "discord",
            ProviderConfig::Okta { .. } => "okta",
            ProviderConfig::Twitch { .. } => "twitch",
            ProviderConfig::Twilio { .. } => "twilio",
            ProviderConfig::Sendgrid { .. } => "sendgrid",
            ProviderConfig::Square { .. } => "square",
            ProviderConfig::Paddle { .. } => "paddle",
            ProviderConfig::Hubspot { .. } => "hubspot",
            ProviderConfig::Linear { .. } => "linear",
            ProviderConfig::Intercom { .. } => "intercom",
            ProviderConfig::Mailgun { .. } => "mailgun",
            ProviderConfig::Gitlab { .. } => "gitlab",
            ProviderConfig::Basic { .. } => "basic",
            ProviderConfig::ApiKey { .. } => "api_key",
        }
    }

    /// Where an `api_key` source's key is presented; `None` for other kinds, or when the config
    /// names neither or both places (which [`ProviderConfig::check`] refuses).
    pub fn api_key_place(&self) -> Option<ApiKeyPlace> {
        match self {
            ProviderConfig::ApiKey {
                header: Some(header),
                query: None,
                ..
            } => Some(ApiKeyPlace::Header(header.clone())),
            ProviderConfig::ApiKey {
                header: None,
                query: Some(query),
                ..
            } => Some(ApiKeyPlace::Query(query.clone())),
            _ => None,
        }
    }

    /// The header that carries a credential for this source, beyond those ingest never keeps:
    /// it is never stored or shown either.
    pub fn credential_header(&self) -> Option<String> {
        match self {
            ProviderConfig::Okta { header, .. } => Some(header.to_ascii_lowercase()),
            _ => match self.api_key_place()? {
                ApiKeyPlace::Header(header) => Some(header.to_ascii_lowercase()),
                ApiKeyPlace::Query(_) => None,
            },
        }
    }

    /// The query parameter that carries a credential for this source: removed from what is kept.
    pub fn credential_query(&self) -> Option<String> {
        match self.api_key_place()? {
            ApiKeyPlace::Query(name) => Some(name),
            ApiKeyPlace::Header(_) => None,
        }
    }

    /// The config as it may be shown back to its owner: everything but the secrets.
    pub fn public_view(&self) -> Value {
        let mut view = serde_json::to_value(self).expect("a provider config serializes");
        if let Some(fields) = view.as_object_mut() {
            for secret in SECRET_FIELDS {
                fields.remove(secret);
            }
        }
        view
    }

    /// This config with every secret left empty filled from `current`, when both are the same
    /// kind: an edit that leaves a secret blank keeps it.
    pub fn keeping_secrets_of(self, current: &ProviderConfig) -> ProviderConfig {
        if self.kind() != current.kind() {
            return self;
        }
        let (mut edited, stored) = (
            serde_json::to_value(&self).expect("a provider config serializes"),
            serde_json::to_value(current).expect("a provider config serializes"),
        );
        for secret in SECRET_FIELDS {
            if edited.get(secret).and_then(Value::as_str) == Some("")
                && let Some(kept) = stored.get(secret)
            {
                edited[secret] = kept.clone();
            }
        }
        serde_json::from_value(edited).unwrap_or(self)
    }

    /// Every secret (and key) with the field it is in, for the checks that none is empty or too
    /// long.
    fn secrets(&self) -> Vec<(&'static str, &str)> {
        match self {
            ProviderConfig::Meta {
                secret,
                verify_token,
            } => vec![("secret", secret), ("verify_token", verify_token)],
            ProviderConfig::MicrosoftGraph { client_state } => vec![("client_state", client_state)],
            ProviderConfig::Discord { public_key } | ProviderConfig::Sendgrid { public_key } => {
                vec![("public_key", public_key)]
            }
            ProviderConfig::Basic { password, .. } => vec![("password", password)],
            ProviderConfig::ApiKey { value, .. } => vec![("value", value)],
            ProviderConfig::Stripe { secret }
            | ProviderConfig::Github { secret }
            | ProviderConfig::Shopify { secret }
            | ProviderConfig::Slack { secret }
            | ProviderConfig::Standard { secret }
            | ProviderConfig::Hmac { secret, .. }
            | ProviderConfig::Dropbox { secret }
            | ProviderConfig::Zoom { secret }
            | ProviderConfig::X { secret }
            | ProviderConfig::Okta { secret, .. }
            | ProviderConfig::Twitch { secret }
            | ProviderConfig::Twilio { secret }
            | ProviderConfig::Square { secret }
            | ProviderConfig::Paddle { secret }
            | ProviderConfig::Hubspot { secret }
            | ProviderConfig::Linear { secret }
            | ProviderConfig::Intercom { secret }
            | ProviderConfig::Mailgun { secret }
            | ProviderConfig::Gitlab { secret } => vec![("secret", secret)],
        }
    }

    /// Refuses configs that could never verify anything, with a message for the person who
    /// entered it (it never quotes a secret).
    pub fn check(&self) -> Result<(), String> {
        self.problem().map_or(Ok(()), |(_, message)| Err(message))
    }

    /// What [`ProviderConfig::check`] refuses, with the field of the config it is about.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        for (field, secret) in self.secrets() {
            if secret.is_empty() {
                return Some((field, "the secret must not be empty".to_owned()));
            }
            if secret.chars().count() > MAX_SECRET_CHARS {
                return Some((
                    field,
                    format!("the secret must be at most {MAX_SECRET_CHARS} characters"),
                ));
            }
        }
        let header_name = |header: &str| {
            HeaderName::from_bytes(header.as_bytes()).is_err().then(|| {
                (
                    "header",
                    "the header is not a valid HTTP header name".to_owned(),
                )
            })
        };
        match self {
            ProviderConfig::Hmac { header, .. } | ProviderConfig::Okta { header, .. } => {
                header_name(header)
            }
            ProviderConfig::Standard { secret }
                if crate::signing::outgoing::decode_key(secret).is_err() =>
            {
                Some((
                    "secret",
                    "the secret must be whsec_ followed by base64, or base64".to_owned(),
                ))
            }
            ProviderConfig::Discord { public_key } => {
                discord::public_key(public_key).is_none().then(|| {
                    (
                        "public_key",
                        "the public key must be 64 hex digits (32 bytes)".to_owned(),
                    )
                })
            }
            ProviderConfig::Sendgrid { public_key } => {
                sendgrid::public_key(public_key).is_none().then(|| {
                    (
                        "public_key",
                        "the verification key must be the base64 P-256 key SendGrid shows"
                            .to_owned(),
                    )
                })
            }
            ProviderConfig::Basic { username, .. } => credentials::check_username(username)
                .err()
                .map(|message| ("username", message)),
            ProviderConfig::ApiKey { header, .. } => match (self.api_key_place(), header) {
                (None, _) => Some((
                    "header",
                    "set either the header or the query parameter, not both".to_owned(),
                )),
                (Some(ApiKeyPlace::Header(_)), Some(header)) => header_name(header),
                (Some(ApiKeyPlace::Query(name)), _) if name.trim().is_empty() => Some((
                    "query",
                    "the query parameter's name must not be empty".to_owned(),
                )),
                _ => None,
            },
            _ => None,
        }
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The public view, so a secret never reaches a log line or an error message.
        write!(f, "ProviderConfig({})", self.public_view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One valid config of every kind, in the JSON a client sends.
    fn all_kinds() -> Vec<ProviderConfig> {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        // RFC 8032's first test key, and a P-256 key made with `openssl ecparam`.
        let discord = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let sendgrid = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyeMbnMZQvzJpoaWSHuCzliLvMbxaC6ixkBrJLjqXM6ECNyGvWF530N1iqk6o6tBcTWcEMPW2S5otF00Cjh+pQA==";
        [
            json!({"kind": "stripe", "secret": secret}),
            json!({"kind": "github", "secret": secret}),
            json!({"kind": "shopify", "secret": secret}),
            json!({"kind": "slack", "secret": secret}),
            json!({"kind": "standard", "secret": secret}),
            json!({"kind": "hmac", "secret": secret, "header": "X-Sig", "algorithm": "sha256", "encoding": "hex", "prefix": "sha256="}),
            json!({"kind": "meta", "secret": secret, "verify_token": "verify me"}),
            json!({"kind": "dropbox", "secret": secret}),
            json!({"kind": "microsoft_graph", "client_state": "state-1"}),
            json!({"kind": "zoom", "secret": secret}),
            json!({"kind": "x", "secret": secret}),
            json!({"kind": "discord", "public_key": discord}),
            json!({"kind": "okta", "header": "Authorization", "secret": "Bearer s"}),
            json!({"kind": "twitch", "secret": secret}),
            json!({"kind": "twilio", "secret": secret}),
            json!({"kind": "sendgrid", "public_key": sendgrid}),
            json!({"kind": "square", "secret": secret}),
            json!({"kind": "paddle", "secret": secret}),
            json!({"kind": "hubspot", "secret": secret}),
            json!({"kind": "linear", "secret": secret}),
            json!({"kind": "intercom", "secret": secret}),
            json!({"kind": "mailgun", "secret": secret}),
            json!({"kind": "gitlab", "secret": secret}),
            json!({"kind": "basic", "username": "acme", "password": "hunter2"}),
            json!({"kind": "api_key", "header": "X-Api-Key", "value": "k-1"}),
            json!({"kind": "api_key", "query": "key", "value": "k-1"}),
        ]
        .into_iter()
        .map(|value| serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{value}: {e}")))
        .collect()
    }

    #[test]
    fn every_kind_parses_round_trips_and_checks() {
        for config in all_kinds() {
            let json = serde_json::to_value(&config).unwrap();
            assert_eq!(json["kind"], config.kind());
            let back: ProviderConfig = serde_json::from_value(json).unwrap();
            assert_eq!(back, config);
            assert_eq!(config.check(), Ok(()), "{config:?}");
        }
    }

    #[test]
    fn unknown_kinds_and_fields_are_refused() {
        for bad in [
            r#"{"kind":"paypal","secret":"x"}"#,
            r#"{"secret":"x"}"#,
            r#"{"kind":"stripe","secret":"x","extra":1}"#,
            r#"{"kind":"stripe"}"#,
            r#"{"kind":"meta","secret":"x"}"#,
            r#"{"kind":"microsoftgraph","client_state":"x"}"#,
            r#"{"kind":"hmac","secret":"s","header":"X","algorithm":"md5","encoding":"hex"}"#,
        ] {
            assert!(
                serde_json::from_str::<ProviderConfig>(bad).is_err(),
                "{bad} parsed"
            );
        }
    }

    #[test]
    fn debug_and_public_view_never_show_a_secret() {
        for config in all_kinds() {
            let stored = serde_json::to_value(&config).unwrap();
            let debug = format!("{config:?}");
            let view = config.public_view();
            for field in SECRET_FIELDS {
                if let Some(secret) = stored.get(field).and_then(Value::as_str) {
                    assert!(!debug.contains(secret), "{debug}");
                    assert!(!view.to_string().contains(secret), "{view}");
                }
                assert!(view.get(field).is_none());
            }
            assert!(debug.contains(config.kind()));
            // The view is the stored form minus the secrets.
            let mut expected = stored.clone();
            for field in SECRET_FIELDS {
                expected.as_object_mut().unwrap().remove(field);
            }
            assert_eq!(view, expected);
        }
    }

    #[test]
    fn public_views_keep_what_is_not_secret() {
        let okta: ProviderConfig =
            serde_json::from_value(json!({"kind":"okta","header":"X-Okta","secret":"s"})).unwrap();
        assert_eq!(okta.public_view(), json!({"kind":"okta","header":"X-Okta"}));
        let key: ProviderConfig =
            serde_json::from_value(json!({"kind":"api_key","query":"key","value":"s"})).unwrap();
        assert_eq!(key.public_view(), json!({"kind":"api_key","query":"key"}));
        let basic: ProviderConfig =
            serde_json::from_value(json!({"kind":"basic","username":"acme","password":"s"}))
                .unwrap();
        assert_eq!(
            basic.public_view(),
            json!({"kind":"basic","username":"acme"})
        );
    }

    #[test]
    fn an_edit_that_leaves_a_secret_blank_keeps_the_stored_one() {
        let stored: ProviderConfig = serde_json::from_value(
            json!({"kind":"meta","secret":"app secret","verify_token":"token"}),
        )
        .unwrap();
        let edit: ProviderConfig =
            serde_json::from_value(json!({"kind":"meta","secret":"","verify_token":"new token"}))
                .unwrap();
        assert_eq!(
            edit.keeping_secrets_of(&stored),
            serde_json::from_value::<ProviderConfig>(
                json!({"kind":"meta","secret":"app secret","verify_token":"new token"})
            )
            .unwrap()
        );
        let other_kind: ProviderConfig =
            serde_json::from_value(json!({"kind":"github","secret":""})).unwrap();
        assert_eq!(other_kind.clone().keeping_secrets_of(&stored), other_kind);
    }

    #[test]
    fn check_explains_bad_configs_without_quoting_secrets() {
        let bad = |value: serde_json::Value| {
            serde_json::from_value::<ProviderConfig>(value)
                .unwrap()
                .check()
                .unwrap_err()
        };
        bad(json!({"kind":"github","secret":""}));
        bad(json!({"kind":"meta","secret":"s","verify_token":""}));
        bad(json!({"kind":"slack","secret":"x".repeat(MAX_SECRET_CHARS + 1)}));
        assert_eq!(
            serde_json::from_value::<ProviderConfig>(
                json!({"kind":"slack","secret":"x".repeat(MAX_SECRET_CHARS)})
            )
            .unwrap()
            .check(),
            Ok(())
        );
        assert!(
            !bad(json!({"kind":"standard","secret":"whsec_not base64!"})).contains("not base64!")
        );
        bad(
            json!({"kind":"hmac","secret":"s","header":"X Sig:","algorithm":"sha256","encoding":"hex"}),
        );
        bad(json!({"kind":"okta","header":"bad header","secret":"s"}));
        bad(json!({"kind":"discord","public_key":"abcd"}));
        bad(json!({"kind":"sendgrid","public_key":"bm90IGEga2V5"}));
        bad(json!({"kind":"basic","username":"a:b","password":"s"}));
        bad(json!({"kind":"api_key","value":"s"}));
        bad(json!({"kind":"api_key","header":"X-Key","query":"key","value":"s"}));
        bad(json!({"kind":"api_key","header":"bad header","value":"s"}));
        bad(json!({"kind":"api_key","query":" ","value":"s"}));
    }

    #[test]
    fn credentials_are_named_for_masking() {
        let by_query: ProviderConfig =
            serde_json::from_value(json!({"kind":"api_key","query":"key","value":"s"})).unwrap();
        assert_eq!(by_query.credential_query().as_deref(), Some("key"));
        assert_eq!(by_query.credential_header(), None);
        let by_header: ProviderConfig =
            serde_json::from_value(json!({"kind":"api_key","header":"X-Key","value":"s"})).unwrap();
        assert_eq!(by_header.credential_header().as_deref(), Some("x-key"));
        let okta: ProviderConfig =
            serde_json::from_value(json!({"kind":"okta","header":"X-Okta","secret":"s"})).unwrap();
        assert_eq!(okta.credential_header().as_deref(), Some("x-okta"));
    }
}
