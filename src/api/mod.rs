//! The JSON API under `/api/v1`: bearer-key authenticated, tenant-scoped, problem+json errors.

mod auth;
mod error;
mod events;
mod subscriptions;
mod validated;

use actix_web::web;

pub use auth::ApiUser;
pub use error::ApiError;

/// Mounts every API route.
pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/api/v1")
            .app_data(validated::json_config())
            .app_data(validated::query_config())
            .app_data(validated::path_config())
            .route("/subscriptions", web::post().to(subscriptions::create))
            .route("/subscriptions", web::get().to(subscriptions::list))
            .route("/subscriptions/{id}", web::get().to(subscriptions::get))
            .route("/subscriptions/{id}", web::patch().to(subscriptions::edit))
            .route(
                "/subscriptions/{id}",
                web::delete().to(subscriptions::delete),
            )
            .route("/subscriptions/{id}/events", web::get().to(events::list))
            .route(
                "/subscriptions/{id}/replay",
                web::post().to(subscriptions::replay),
            )
            .route(
                "/subscriptions/{id}/rotate-secret",
                web::post().to(subscriptions::rotate_secret),
            )
            .route("/events", web::get().to(events::list_all))
            .route("/events/{id}", web::get().to(events::get))
            .route("/events/{id}/attempts", web::get().to(events::attempts))
            .route("/events/{id}/replay", web::post().to(events::replay)),
    );
}
