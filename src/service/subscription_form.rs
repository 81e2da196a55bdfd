//! The subscription form, as the dashboard posts it: flat fields, a provider chosen by kind, and
//! its secret write-only (an edit form never holds it, so a blank one keeps the stored secret).

use serde::Deserialize;
use serde_json::json;

use super::ServiceError;
use super::subscriptions::{SubscriptionIn, stored_provider};
use crate::db::models::subscription::Subscription;
use crate::problem::FieldError;
use crate::signing::incoming::ProviderConfig;

/// The values of the subscription form, as typed.
#[derive(Debug, Default, Deserialize)]
pub struct SubscriptionForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub target_url: String,
    /// `none` (or left out when creating) for no check; left out when editing keeps the check.
    #[serde(default)]
    pub provider_kind: String,
    #[serde(default)]
    pub provider_secret: String,
    #[serde(default)]
    pub provider_header: String,
    #[serde(default)]
    pub provider_algorithm: String,
    #[serde(default)]
    pub provider_encoding: String,
    #[serde(default)]
    pub provider_prefix: String,
}

impl SubscriptionForm {
    /// The form for an existing subscription: its values, but never its provider's secret.
    pub fn of(subscription: &Subscription) -> Self {
        let provider = stored_provider(subscription);
        let view = provider.as_ref().map(ProviderConfig::public_view);
        let option = |name: &str| {
            view.as_ref()
                .and_then(|view| view[name].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        SubscriptionForm {
            name: subscription.name.clone(),
            target_url: subscription.target_url.clone(),
            provider_kind: provider
                .as_ref()
                .map_or("none", ProviderConfig::kind)
                .to_owned(),
            provider_secret: String::new(),
            provider_header: option("header"),
            provider_algorithm: option("algorithm"),
            provider_encoding: option("encoding"),
            provider_prefix: option("prefix"),
        }
    }

    /// The same values with the secret dropped, to show the form again.
    pub fn without_secret(self) -> Self {
        SubscriptionForm {
            provider_secret: String::new(),
            ..self
        }
    }

    /// The input it describes, given the provider stored now (`None` when creating). Every
    /// problem of the provider's fields is reported, and with them those of the other fields.
    pub(super) fn input(
        &self,
        current: Option<&ProviderConfig>,
        check_others: impl FnOnce(&SubscriptionIn) -> Result<(), ServiceError>,
    ) -> Result<SubscriptionIn, ServiceError> {
        let mut input = SubscriptionIn {
            name: self.name.clone(),
            target_url: self.target_url.trim().to_owned(),
            source_id: None,
            provider: None,
        };
        match self.provider(current) {
            Ok(provider) => {
                input.provider = provider;
                Ok(input)
            }
            Err(mut fields) => {
                if let Err(ServiceError::Invalid(others)) = check_others(&input) {
                    fields.extend(others);
                }
                Err(ServiceError::Invalid(fields))
            }
        }
    }

    fn provider(
        &self,
        current: Option<&ProviderConfig>,
    ) -> Result<Option<ProviderConfig>, Vec<FieldError>> {
        let invalid = |field: &str, message: &str| {
            vec![FieldError {
                field: field.to_owned(),
                message: message.to_owned(),
            }]
        };
        let kind = match self.provider_kind.trim() {
            "" => return Ok(current.cloned()),
            "none" => return Ok(None),
            kind => kind,
        };
        let secret = match (self.provider_secret.trim(), current) {
            ("", Some(current)) if current.kind() == kind => current.secret().to_owned(),
            ("", _) => {
                return Err(invalid(
                    "provider_secret",
                    "enter the secret the provider signs with",
                ));
            }
            (secret, _) => secret.to_owned(),
        };
        let config = if kind == "hmac" {
            let prefix = self.provider_prefix.trim();
            json!({
                "kind": kind,
                "secret": secret,
                "header": self.provider_header.trim(),
                "algorithm": or_default(&self.provider_algorithm, "sha256"),
                "encoding": or_default(&self.provider_encoding, "hex"),
                "prefix": (!prefix.is_empty()).then_some(prefix),
            })
        } else {
            json!({ "kind": kind, "secret": secret })
        };
        serde_json::from_value(config).map(Some).map_err(|_| {
            invalid(
                "provider_kind",
                "choose a provider, and its options, from the lists",
            )
        })
    }
}

/// A select's value, or what it shows first when the form left it out.
fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str, secret: &str) -> SubscriptionForm {
        SubscriptionForm {
            provider_kind: kind.to_owned(),
            provider_secret: secret.to_owned(),
            ..SubscriptionForm::default()
        }
    }

    fn github(secret: &str) -> ProviderConfig {
        ProviderConfig::Github {
            secret: secret.to_owned(),
        }
    }

    #[test]
    fn a_blank_secret_keeps_the_stored_one_of_the_same_kind_only() {
        let stored = github("old");
        assert_eq!(
            form("github", "").provider(Some(&stored)),
            Ok(Some(stored.clone()))
        );
        assert_eq!(
            form("github", "new").provider(Some(&stored)),
            Ok(Some(github("new")))
        );
        assert!(form("stripe", "").provider(Some(&stored)).is_err());
        assert!(form("github", "").provider(None).is_err());
    }

    #[test]
    fn none_removes_the_check_and_a_missing_kind_keeps_it() {
        let stored = github("old");
        assert_eq!(form("none", "").provider(Some(&stored)), Ok(None));
        assert_eq!(form("", "").provider(Some(&stored)), Ok(Some(stored)));
        assert_eq!(form("", "").provider(None), Ok(None));
    }

    #[test]
    fn hmac_options_default_to_what_the_form_shows_first() {
        let mut hmac = form("hmac", "s3cret");
        hmac.provider_header = "X-Signature".into();
        let Ok(Some(ProviderConfig::Hmac {
            algorithm,
            encoding,
            prefix,
            ..
        })) = hmac.provider(None)
        else {
            panic!("an HMAC provider")
        };
        assert_eq!(
            serde_json::to_value((algorithm, encoding)).unwrap(),
            json!(["sha256", "hex"])
        );
        assert_eq!(prefix, None);
        assert!(form("carrier-pigeon", "s3cret").provider(None).is_err());
    }
}
