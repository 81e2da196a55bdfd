//! Extractors that refuse bad input before a handler runs: malformed JSON and query strings are
//! 400, ids that are not ids are 404 (they name nothing), and `Valid<T>` is 422 with every field
//! that failed garde validation.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use super::ApiError;

/// JSON that deserialized and passed validation.
pub struct Valid<T>(pub T);

impl<T> FromRequest for Valid<T>
where
    T: DeserializeOwned + garde::Validate<Context = ()> + 'static,
{
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<T>::from_request(request, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            value.validate().map_err(ApiError::from)?;
            Ok(Valid(value))
        })
    }
}

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|error, _| {
            ApiError::BadRequest(format!("invalid JSON body: {error}")).into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| {
        ApiError::BadRequest(format!("invalid query string: {error}")).into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| ApiError::NotFound("resource").into())
}
