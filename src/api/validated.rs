//! Extractor settings that refuse bad input before a handler runs: malformed JSON and query
//! strings are 400, ids that are not ids are 404 (they name nothing). Validation (422, field by
//! field) is the service layer's, so the dashboard gets the same.

use actix_web::web;

use super::ApiError;

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
