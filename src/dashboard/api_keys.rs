//! The API keys page: list, create (the key is shown once), revoke.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::error::DashboardError;
use super::session::Session;
use super::view::{Flash, FormErrors, Layout, Moment, Nav, pages, redirect, render_with};
use crate::db::models::api_key::ApiKeyRow;
use crate::domain::{ApiKeyId, Role};
use crate::service::ServiceError;
use crate::service::api_keys::{self, ApiKeyIn};
use crate::state::AppState;

/// A key as the page lists it.
pub struct KeyRow {
    pub id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    pub role: String,
    pub created: Moment,
    pub created_by: Option<String>,
    pub last_used: Option<Moment>,
}

impl KeyRow {
    fn new(key: ApiKeyRow) -> Self {
        let now = Utc::now();
        KeyRow {
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            role: key.role,
            created: Moment::of(key.created_at, now),
            created_by: key.created_by,
            last_used: key.last_used_at.map(|at| Moment::of(at, now)),
        }
    }
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct KeysPage {
    layout: Layout,
    keys: Vec<KeyRow>,
    /// A key just created: shown this once.
    created: Option<(String, String)>,
    name: String,
    /// The role the form has chosen, and those it offers: at most the member's own.
    role: Role,
    roles: Vec<Role>,
    errors: FormErrors,
}

pages!(KeysPage);

/// The create form.
#[derive(Debug, Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

async fn page(
    session: &Session,
    state: &AppState,
    status: StatusCode,
    created: Option<(String, String)>,
    (name, role): (String, Role),
    errors: FormErrors,
) -> Result<HttpResponse, DashboardError> {
    let keys = api_keys::list(&state.db, session.actor())
        .await?
        .into_iter()
        .map(KeyRow::new)
        .collect();
    render_with(
        status,
        &KeysPage {
            layout: session.layout(Nav::ApiKeys),
            keys,
            created,
            name,
            role,
            roles: Role::ALL
                .into_iter()
                .filter(|role| session.workspace.role.includes(*role))
                .collect(),
            errors,
        },
    )
}

/// `GET /api-keys`
pub async fn list(
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    page(
        &session,
        &state,
        StatusCode::OK,
        None,
        (String::new(), Role::Developer),
        FormErrors::default(),
    )
    .await
}

/// `POST /api-keys`: answers with the page showing the new key, once; it is not stored, so no
/// later page can show it again.
pub async fn create(
    session: Session,
    state: web::Data<AppState>,
    form: web::Form<NewKeyForm>,
) -> Result<HttpResponse, DashboardError> {
    let form = form.into_inner();
    let role = form.role.parse::<Role>();
    let created = match role {
        Ok(role) => {
            let input = ApiKeyIn {
                name: form.name.clone(),
                role,
            };
            api_keys::create(&state.db, session.actor(), &input).await
        }
        Err(_) => Err(ServiceError::invalid("role", "choose a role")),
    };
    match created {
        Ok((_, key)) => {
            let created = Some((form.name.trim().to_owned(), key.expose().to_owned()));
            page(
                &session,
                &state,
                StatusCode::OK,
                created,
                (String::new(), Role::Developer),
                FormErrors::default(),
            )
            .await
        }
        Err(ServiceError::Invalid(fields)) => {
            page(
                &session,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                (form.name, role.unwrap_or(Role::Developer)),
                FormErrors::new(fields),
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /api-keys/{id}/revoke`
pub async fn revoke(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    api_keys::revoke(&state.db, session.actor(), ApiKeyId(id.into_inner())).await?;
    Ok(redirect(
        &request,
        "/api-keys",
        Some(Flash::success(
            "Key revoked: requests with it are refused from now on.",
        )),
    ))
}
