//! Bearer API keys: `Authorization: Bearer spz_...` names the user every query is scoped to.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};

use super::ApiError;
use crate::db::models::api_key;
use crate::domain::{ApiKey, UserId};
use crate::state::AppState;

/// The user whose key authenticated this request.
#[derive(Debug, Clone, Copy)]
pub struct ApiUser(pub UserId);

impl FromRequest for ApiUser {
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
        Box::pin(async move {
            let (Some(key), Some(state)) = (presented, state) else {
                return Err(ApiError::Unauthorized);
            };
            let hash = key.hash();
            state
                .db
                .run(async |conn| api_key::owner_of(conn, &hash).await)
                .await?
                .map(ApiUser)
                .ok_or(ApiError::Unauthorized)
        })
    }
}
