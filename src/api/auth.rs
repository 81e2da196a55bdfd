//! Bearer API keys: `Authorization: Bearer spz_...` names the workspace every query is scoped to,
//! and the key's role there.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};

use super::ApiError;
use crate::db::models::api_key;
use crate::domain::ApiKey;
use crate::service::{Actor, Principal};
use crate::state::AppState;

/// The key that authenticated this request, acting in its workspace with its role.
#[derive(Debug, Clone)]
pub struct ApiCaller(pub Actor);

impl FromRequest for ApiCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(|key| ApiKey::presented(key.trim()));
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let ip = request.peer_addr().map(|address| address.ip().to_string());
        Box::pin(async move {
            let (Some(key), Some(state)) = (presented, state) else {
                return Err(ApiError::Unauthorized);
            };
            let hash = key.hash();
            let holder = state
                .db
                .run(async |conn| api_key::holder_of(conn, &hash).await)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            let role = holder.role.parse().map_err(|_| {
                ApiError::Unexpected(anyhow::anyhow!("a stored key role is unknown"))
            })?;
            Ok(ApiCaller(Actor {
                workspace: holder.workspace_id,
                role,
                who: Principal::Key {
                    id: holder.id,
                    name: holder.name,
                },
                ip,
            }))
        })
    }
}
