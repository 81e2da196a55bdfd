//! The provider check as the source and subscription forms post it: a kind chosen from
//! [`PROVIDERS`], and the fields that kind needs. Secrets are write-only: an edit form never
//! holds them, so a secret left blank keeps the stored one.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::problem::FieldError;
use crate::signing::incoming::ProviderConfig;

/// A form input the provider check uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Secret,
    VerifyToken,
    PublicKey,
    Username,
    Header,
    Query,
}

impl Input {
    /// Its name in the form.
    pub fn name(self) -> &'static str {
        match self {
            Input::Secret => "provider_secret",
            Input::VerifyToken => "provider_verify_token",
            Input::PublicKey => "provider_public_key",
            Input::Username => "provider_username",
            Input::Header => "provider_header",
            Input::Query => "provider_query",
        }
    }

    /// Whether it holds a secret: a password input, never filled in again.
    pub fn is_secret(self) -> bool {
        matches!(self, Input::Secret | Input::VerifyToken)
    }
}

/// One field a provider needs.
#[derive(Debug)]
pub struct Field {
    pub input: Input,
    /// The field of the `provider` object it sets.
    pub key: &'static str,
    pub label: &'static str,
    /// What to type, shown in the empty input.
    pub placeholder: &'static str,
    /// Whether it may be left empty.
    pub optional: bool,
}

/// A provider the forms offer.
#[derive(Debug)]
pub struct ProviderInfo {
    pub kind: &'static str,
    pub label: &'static str,
    /// Where to find what to paste, in a line.
    pub help: &'static str,
    /// What the relay answers for the provider when it probes the URL, if it does.
    pub handshake: Option<&'static str>,
    pub fields: &'static [Field],
    /// The generic HMAC's algorithm, encoding and prefix.
    pub hmac_options: bool,
}

const fn field(
    input: Input,
    key: &'static str,
    label: &'static str,
    placeholder: &'static str,
) -> Field {
    Field {
        input,
        key,
        label,
        placeholder,
        optional: false,
    }
}

const SECRET: Field = field(
    Input::Secret,
    "secret",
    "Secret",
    "the secret the provider signs with",
);

/// Every provider the forms offer, in the order they list them.
pub static PROVIDERS: [ProviderInfo; 25] = [
    ProviderInfo {
        kind: "stripe",
        label: "Stripe",
        help: "Developers → Webhooks → the endpoint → Signing secret (whsec_…).",
        handshake: None,
        fields: &[field(Input::Secret, "secret", "Signing secret", "whsec_…")],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "github",
        label: "GitHub",
        help: "The webhook's Secret, as you typed it in the repository's or organization's settings.",
        handshake: None,
        fields: &[field(
            Input::Secret,
            "secret",
            "Webhook secret",
            "the webhook's secret",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "gitlab",
        label: "GitLab",
        help: "The webhook's Secret token; GitLab sends it as is in X-Gitlab-Token.",
        handshake: None,
        fields: &[field(
            Input::Secret,
            "secret",
            "Secret token",
            "the webhook's secret token",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "shopify",
        label: "Shopify",
        help: "The app's Client secret (Partners → Apps → the app → Client credentials).",
        handshake: None,
        fields: &[field(
            Input::Secret,
            "secret",
            "Client secret",
            "the app's client secret",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "slack",
        label: "Slack",
        help: "Basic Information → App Credentials → Signing Secret. The Events API's URL verification is answered for you.",
        handshake: Some("Events API url_verification"),
        fields: &[field(
            Input::Secret,
            "secret",
            "Signing secret",
            "the app's signing secret",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "meta",
        label: "Meta (Facebook, Instagram, WhatsApp)",
        help: "App settings → Basic → App secret, and the Verify token you type in the app's webhook settings. The hub.challenge verification is answered for you.",
        handshake: Some("hub.challenge verification"),
        fields: &[
            field(Input::Secret, "secret", "App secret", "the app's secret"),
            field(
                Input::VerifyToken,
                "verify_token",
                "Verify token",
                "the verify token you typed at Meta",
            ),
        ],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "discord",
        label: "Discord interactions",
        help: "Developer Portal → the application → General Information → Public Key. Discord also wants its own 200 answer: set the answer below.",
        handshake: Some("PING"),
        fields: &[field(
            Input::PublicKey,
            "public_key",
            "Public key",
            "64 hex digits",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "dropbox",
        label: "Dropbox",
        help: "App Console → the app → Settings → App secret. The challenge is echoed for you.",
        handshake: Some("challenge"),
        fields: &[field(
            Input::Secret,
            "secret",
            "App secret",
            "the app's secret",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "microsoft_graph",
        label: "Microsoft Graph",
        help: "The clientState you gave when you created the Graph subscription. The validationToken is answered for you.",
        handshake: Some("validationToken"),
        fields: &[field(
            Input::Secret,
            "client_state",
            "Client state",
            "the subscription's clientState",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "zoom",
        label: "Zoom",
        help: "Marketplace → the app → Features → Access → Secret Token. The endpoint.url_validation event is answered for you.",
        handshake: Some("endpoint.url_validation"),
        fields: &[field(
            Input::Secret,
            "secret",
            "Secret token",
            "the app's secret token",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "x",
        label: "X (Twitter) Account Activity",
        help: "Developer Portal → the app → Keys and tokens → API Key Secret (consumer secret). The CRC check is answered for you.",
        handshake: Some("CRC check"),
        fields: &[field(
            Input::Secret,
            "secret",
            "Consumer secret",
            "the API key secret",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "okta",
        label: "Okta event hooks",
        help: "The event hook's authentication field and secret. The one-time verification is answered for you.",
        handshake: Some("one-time verification"),
        fields: &[
            field(
                Input::Header,
                "header",
                "Authentication field",
                "Authorization",
            ),
            field(
                Input::Secret,
                "secret",
                "Authentication secret",
                "the value Okta sends in that field",
            ),
        ],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "twitch",
        label: "Twitch EventSub",
        help: "The secret you gave when you created the EventSub subscription. The callback verification is answered for you.",
        handshake: Some("callback verification"),
        fields: &[field(
            Input::Secret,
            "secret",
            "Secret",
            "the subscription's secret",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "twilio",
        label: "Twilio",
        help: "Console → Account Info → Auth Token. Twilio signs the public URL: set SPENZA_PUBLIC_URL behind a proxy.",
        handshake: None,
        fields: &[field(
            Input::Secret,
            "secret",
            "Auth token",
            "the account's auth token",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "sendgrid",
        label: "SendGrid (signed Event Webhook)",
        help: "Settings → Mail Settings → Signed Event Webhook Requests → Verification Key.",
        handshake: None,
        fields: &[field(
            Input::PublicKey,
            "public_key",
            "Verification key",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE…",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "square",
        label: "Square",
        help: "Developer Dashboard → Webhooks → the subscription → Signature key. Square signs the public URL.",
        handshake: None,
        fields: &[field(
            Input::Secret,
            "secret",
            "Signature key",
            "the subscription's signature key",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "paddle",
        label: "Paddle Billing",
        help: "Developer tools → Notifications → the destination → Secret key (pdl_ntfset_…).",
        handshake: None,
        fields: &[field(Input::Secret, "secret", "Secret key", "pdl_ntfset_…")],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "hubspot",
        label: "HubSpot",
        help: "The app's Auth settings → Client secret. HubSpot signs the public URL.",
        handshake: None,
        fields: &[field(
            Input::Secret,
            "secret",
            "Client secret",
            "the app's client secret",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "linear",
        label: "Linear",
        help: "Settings → API → the webhook → Signing secret.",
        handshake: None,
        fields: &[field(Input::Secret, "secret", "Signing secret", "lin_wh_…")],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "intercom",
        label: "Intercom",
        help: "Developer Hub → the app → Basic information → Client secret.",
        handshake: None,
        fields: &[field(
            Input::Secret,
            "secret",
            "Client secret",
            "the app's client secret",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "mailgun",
        label: "Mailgun",
        help: "Sending → Webhooks → HTTP webhook signing key.",
        handshake: None,
        fields: &[field(
            Input::Secret,
            "secret",
            "Webhook signing key",
            "the HTTP webhook signing key",
        )],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "standard",
        label: "Standard Webhooks / Svix",
        help: "The endpoint's signing secret, whsec_ followed by base64.",
        handshake: None,
        fields: &[field(Input::Secret, "secret", "Signing secret", "whsec_…")],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "hmac",
        label: "Other: an HMAC header",
        help: "Any provider that puts an HMAC of the body in one header: name the header, the hash and how it is written.",
        handshake: None,
        fields: &[
            SECRET,
            field(Input::Header, "header", "Signature header", "X-Signature"),
        ],
        hmac_options: true,
    },
    ProviderInfo {
        kind: "basic",
        label: "HTTP Basic authentication",
        help: "For a provider that can only send a user name and password (in the URL or its settings).",
        handshake: None,
        fields: &[
            field(
                Input::Username,
                "username",
                "User name",
                "the user name you gave the provider",
            ),
            field(
                Input::Secret,
                "password",
                "Password",
                "the password you gave the provider",
            ),
        ],
        hmac_options: false,
    },
    ProviderInfo {
        kind: "api_key",
        label: "API key (header or query parameter)",
        help: "A key the provider sends in a header or a query parameter you name (fill in one of the two). A query key is never stored or forwarded.",
        handshake: None,
        fields: &[
            Field {
                optional: true,
                ..field(Input::Header, "header", "Header", "X-Api-Key")
            },
            Field {
                optional: true,
                ..field(Input::Query, "query", "Query parameter", "key")
            },
            field(Input::Secret, "value", "Key", "the key the provider sends"),
        ],
        hmac_options: false,
    },
];

/// The provider of this kind, if the forms offer it.
pub fn provider(kind: &str) -> Option<&'static ProviderInfo> {
    PROVIDERS.iter().find(|info| info.kind == kind)
}

/// The provider check's fields, as the forms post them. No `Debug`: it holds secrets.
#[derive(Default, Clone, Deserialize)]
pub struct ProviderFields {
    /// `none` (or left out when creating) for no check; left out when editing keeps the check.
    #[serde(default)]
    pub provider_kind: String,
    #[serde(default)]
    pub provider_secret: String,
    #[serde(default)]
    pub provider_verify_token: String,
    #[serde(default)]
    pub provider_public_key: String,
    #[serde(default)]
    pub provider_username: String,
    #[serde(default)]
    pub provider_header: String,
    #[serde(default)]
    pub provider_query: String,
    #[serde(default)]
    pub provider_algorithm: String,
    #[serde(default)]
    pub provider_encoding: String,
    #[serde(default)]
    pub provider_prefix: String,
}

impl ProviderFields {
    /// The fields of a stored check: everything but its secrets.
    pub fn of(provider: Option<&ProviderConfig>) -> Self {
        let Some(provider) = provider else {
            return ProviderFields {
                provider_kind: "none".to_owned(),
                ..ProviderFields::default()
            };
        };
        let view = provider.public_view();
        let text = |key: &str| view[key].as_str().unwrap_or_default().to_owned();
        let mut fields = ProviderFields {
            provider_kind: provider.kind().to_owned(),
            provider_algorithm: text("algorithm"),
            provider_encoding: text("encoding"),
            provider_prefix: text("prefix"),
            ..ProviderFields::default()
        };
        for field in self::provider(provider.kind()).map_or(&[][..], |info| info.fields) {
            if !field.input.is_secret() {
                *fields.input_mut(field.input) = text(field.key);
            }
        }
        fields
    }

    /// The same fields with the secrets dropped, to show the form again.
    pub fn without_secrets(self) -> Self {
        ProviderFields {
            provider_secret: String::new(),
            provider_verify_token: String::new(),
            ..self
        }
    }

    /// What an input holds.
    pub fn value(&self, input: Input) -> &str {
        match input {
            Input::Secret => &self.provider_secret,
            Input::VerifyToken => &self.provider_verify_token,
            Input::PublicKey => &self.provider_public_key,
            Input::Username => &self.provider_username,
            Input::Header => &self.provider_header,
            Input::Query => &self.provider_query,
        }
    }

    fn input_mut(&mut self, input: Input) -> &mut String {
        match input {
            Input::Secret => &mut self.provider_secret,
            Input::VerifyToken => &mut self.provider_verify_token,
            Input::PublicKey => &mut self.provider_public_key,
            Input::Username => &mut self.provider_username,
            Input::Header => &mut self.provider_header,
            Input::Query => &mut self.provider_query,
        }
    }

    /// The check the fields describe, given the one stored now (`None` when creating): a blank
    /// secret keeps the stored one of the same kind. Problems are reported by input.
    pub fn config(
        &self,
        current: Option<&ProviderConfig>,
    ) -> Result<Option<ProviderConfig>, Vec<FieldError>> {
        let invalid = |field: &str, message: String| FieldError {
            field: field.to_owned(),
            message,
        };
        let kind = match self.provider_kind.trim() {
            "" => return Ok(current.cloned()),
            "none" => return Ok(None),
            kind => kind,
        };
        let Some(info) = provider(kind) else {
            return Err(vec![invalid(
                "provider_kind",
                "choose a provider from the list".to_owned(),
            )]);
        };
        let mut config = Map::new();
        config.insert("kind".to_owned(), Value::from(kind));
        for field in info.fields {
            let value = self.value(field.input).trim();
            if !(value.is_empty() && field.optional) {
                config.insert(field.key.to_owned(), Value::from(value));
            }
        }
        if info.hmac_options {
            let or = |value: &str, default: &str| {
                Value::from(if value.is_empty() { default } else { value }.to_owned())
            };
            config.insert(
                "algorithm".to_owned(),
                or(&self.provider_algorithm, "sha256"),
            );
            config.insert("encoding".to_owned(), or(&self.provider_encoding, "hex"));
            let prefix = self.provider_prefix.trim();
            if !prefix.is_empty() {
                config.insert("prefix".to_owned(), Value::from(prefix));
            }
        }
        let parsed: ProviderConfig =
            serde_json::from_value(Value::Object(config)).map_err(|_| {
                vec![invalid(
                    "provider_kind",
                    "choose a provider, and its options, from the lists".to_owned(),
                )]
            })?;
        let parsed = match current {
            Some(current) => parsed.keeping_secrets_of(current),
            None => parsed,
        };
        // A required field still empty (a secret with none stored to keep) is the field's.
        let stored = serde_json::to_value(&parsed).unwrap_or_default();
        let missing: Vec<FieldError> = info
            .fields
            .iter()
            .filter(|field| !field.optional && stored[field.key].as_str() == Some(""))
            .map(|field| {
                invalid(
                    field.input.name(),
                    format!("enter the {}", field.label.to_lowercase()),
                )
            })
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        // A problem is shown beside the input it is about, when the form has one.
        match parsed.problem() {
            None => Ok(Some(parsed)),
            Some((key, message)) => {
                let input = info.fields.iter().find(|field| field.key == key);
                let at = input.map_or("provider", |field| field.input.name());
                Err(vec![invalid(at, message)])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(kind: &str, pairs: &[(Input, &str)]) -> ProviderFields {
        let mut fields = ProviderFields {
            provider_kind: kind.to_owned(),
            ..ProviderFields::default()
        };
        for (input, value) in pairs {
            *fields.input_mut(*input) = (*value).to_owned();
        }
        fields
    }

    #[test]
    fn every_kind_is_offered_once_and_builds_a_check_that_holds() {
        let mut kinds: Vec<&str> = PROVIDERS.iter().map(|info| info.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), PROVIDERS.len());
        for info in &PROVIDERS {
            let mut form = fields(info.kind, &[]);
            for field in info.fields {
                let value = match (info.kind, field.input) {
                    ("discord", _) => {
                        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
                    }
                    ("sendgrid", _) => {
                        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyeMbnMZQvzJpoaWSHuCzliLvMbxaC6ixkBrJLjqXM6ECNyGvWF530N1iqk6o6tBcTWcEMPW2S5otF00Cjh+pQA=="
                    }
                    ("standard", _) => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    ("api_key", Input::Query) => continue,
                    (_, Input::Header) => "X-Signature",
                    _ => "value-1",
                };
                *form.input_mut(field.input) = value.to_owned();
            }
            let config = form
                .config(None)
                .unwrap_or_else(|e| panic!("{}: {e:?}", info.kind));
            let config = config.expect("a check");
            assert_eq!(config.kind(), info.kind);
            assert_eq!(config.check(), Ok(()), "{}", info.kind);
        }
    }

    #[test]
    fn a_blank_secret_keeps_the_stored_one_and_is_required_otherwise() {
        let stored: ProviderConfig = serde_json::from_value(
            serde_json::json!({"kind": "meta", "secret": "app", "verify_token": "tok"}),
        )
        .unwrap();
        let edit = fields("meta", &[(Input::VerifyToken, "new")]);
        let kept = edit.config(Some(&stored)).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&kept).unwrap(),
            serde_json::json!({"kind": "meta", "secret": "app", "verify_token": "new"})
        );
        let errors = fields("meta", &[(Input::Secret, "app")])
            .config(None)
            .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "provider_verify_token");
        assert_eq!(errors[0].message, "enter the verify token");
    }

    #[test]
    fn none_removes_the_check_and_a_left_out_kind_keeps_it() {
        let stored: ProviderConfig =
            serde_json::from_value(serde_json::json!({"kind": "github", "secret": "s"})).unwrap();
        assert_eq!(fields("none", &[]).config(Some(&stored)), Ok(None));
        assert_eq!(
            fields("", &[]).config(Some(&stored)),
            Ok(Some(stored.clone()))
        );
        assert!(fields("paypal", &[]).config(None).is_err());
    }

    #[test]
    fn a_stored_check_fills_the_form_but_never_its_secrets() {
        let stored: ProviderConfig = serde_json::from_value(
            serde_json::json!({"kind": "basic", "username": "acme", "password": "hunter2"}),
        )
        .unwrap();
        let form = ProviderFields::of(Some(&stored));
        assert_eq!(form.provider_kind, "basic");
        assert_eq!(form.provider_username, "acme");
        assert_eq!(form.provider_secret, "");
        assert_eq!(ProviderFields::of(None).provider_kind, "none");
    }

    #[test]
    fn the_readme_has_a_row_for_every_provider() {
        let readme = include_str!("../../README.md");
        for info in &PROVIDERS {
            assert!(
                readme.contains(&format!("| `{}` (", info.kind)),
                "README has no row for {}",
                info.kind
            );
        }
    }

    #[test]
    fn a_problem_is_reported_at_its_input() {
        let errors = fields("discord", &[(Input::PublicKey, "abcd")])
            .config(None)
            .unwrap_err();
        assert_eq!(errors[0].field, "provider_public_key");
        assert!(errors[0].message.contains("64 hex digits"));
        let errors = fields("api_key", &[(Input::Secret, "k")])
            .config(None)
            .unwrap_err();
        assert_eq!(errors[0].field, "provider_header");
    }

    #[test]
    fn hmac_options_default_to_what_the_form_shows_first() {
        let form = fields(
            "hmac",
            &[(Input::Secret, "s3cret"), (Input::Header, "X-Signature")],
        );
        let config = form.config(None).unwrap().unwrap();
        assert_eq!(
            config.public_view(),
            serde_json::json!({"kind": "hmac", "header": "X-Signature", "algorithm": "sha256", "encoding": "hex", "prefix": null})
        );
    }
}
