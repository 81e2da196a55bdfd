//! The provider check's fields in the source and subscription forms, swapped in by htmx when
//! another provider is chosen, and the page that says what each provider needs.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::DashboardError;
use super::session::Session;
use super::view::{FormErrors, Layout, Nav, pages, render};
use crate::service::provider_form::{PROVIDERS, ProviderFields, ProviderInfo, provider};

/// The fields of the chosen provider: what to paste, each input, and the HMAC options.
#[derive(Template)]
#[template(path = "partials/provider_options.html")]
pub struct ProviderOptions<'a> {
    pub info: Option<&'static ProviderInfo>,
    pub fields: &'a ProviderFields,
    pub errors: &'a FormErrors,
    /// Whether secrets of this kind are stored, so that a blank one keeps them.
    pub has_secret: bool,
}

impl<'a> ProviderOptions<'a> {
    pub fn new(
        fields: &'a ProviderFields,
        errors: &'a FormErrors,
        stored_kind: Option<&str>,
    ) -> Self {
        let kind = fields.provider_kind.as_str();
        ProviderOptions {
            info: provider(kind),
            fields,
            errors,
            has_secret: stored_kind == Some(kind),
        }
    }

    /// Whether any field is a secret, so the form says they are write-only.
    fn has_secrets(&self) -> bool {
        self.info
            .is_some_and(|info| info.fields.iter().any(|field| field.input.is_secret()))
    }
}

/// A page whose form holds the provider check's fields (the source and subscription forms):
/// what `partials/provider_fields.html` asks of it.
pub trait ProviderForm {
    fn provider_fields(&self) -> &ProviderFields;
    fn form_errors(&self) -> &FormErrors;
    /// The kind of the check stored now, whose secrets a blank field keeps.
    fn stored_provider(&self) -> Option<&'static str>;

    /// Every provider, for the list.
    fn providers(&self) -> &'static [ProviderInfo] {
        &PROVIDERS
    }

    fn stored_kind(&self) -> &str {
        self.stored_provider().unwrap_or_default()
    }

    /// The chosen provider's fields.
    fn provider_options(&self) -> ProviderOptions<'_> {
        ProviderOptions::new(
            self.provider_fields(),
            self.form_errors(),
            self.stored_provider(),
        )
    }
}

/// The label a kind is shown with.
pub fn label(kind: &str) -> &str {
    provider(kind).map_or(kind, |info| info.label)
}

#[derive(Deserialize)]
pub struct OptionsQuery {
    #[serde(default)]
    provider_kind: String,
    /// The kind the edited source checks now.
    #[serde(default)]
    stored_kind: String,
}

/// `GET /provider-options?provider_kind=`: the chosen provider's fields, empty.
pub async fn options(
    _session: Session,
    query: web::Query<OptionsQuery>,
) -> Result<HttpResponse, DashboardError> {
    let fields = ProviderFields {
        provider_kind: query.provider_kind.clone(),
        ..ProviderFields::default()
    };
    let errors = FormErrors::default();
    let html = ProviderOptions::new(&fields, &errors, Some(query.stored_kind.as_str())).render()?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

#[derive(Template)]
#[template(path = "providers.html")]
struct HelpPage {
    layout: Layout,
}

impl HelpPage {
    fn providers(&self) -> &'static [ProviderInfo] {
        &PROVIDERS
    }
}

pages!(HelpPage);

/// `GET /providers`: what each provider needs, and what the relay answers for it.
pub async fn help(session: Session) -> Result<HttpResponse, DashboardError> {
    render(&HelpPage {
        layout: session.layout(Nav::Sources),
    })
}
