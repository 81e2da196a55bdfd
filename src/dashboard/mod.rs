//! The server-rendered dashboard: askama pages that work as plain forms and links, made smoother
//! by htmx. Every page and action sits behind a session (but log-in and sign-up), every
//! state-changing request behind its CSRF token, and every page behind a strict
//! Content-Security-Policy.

mod accounts;
mod api_keys;
pub mod assets;
mod charts;
mod csrf;
mod error;
mod events;
pub(crate) mod issues;
mod live;
mod providers;
mod session;
mod sources;
mod subscriptions;
mod team;
mod view;

use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::web;

pub use csrf::CSRF_HEADER;
pub use error::DashboardError;
pub use session::SESSION_COOKIE;

/// Headers on every dashboard answer: scripts and styles only from the relay itself (no inline
/// handlers anywhere), no framing by other sites, no copies in caches, no referrer to other
/// sites.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
             base-uri 'self'; form-action 'self'",
        ))
        .add(("X-Frame-Options", "DENY"))
        // Pages show secrets and carry the session's CSRF token: nothing keeps a copy.
        .add(("Cache-Control", "no-store"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("X-Content-Type-Options", "nosniff"))
}

/// Mounts the dashboard. Register it after the API and ingest: its scope takes every other path.
pub fn routes(config: &mut web::ServiceConfig) {
    config.configure(assets::routes).service(
        web::scope("")
            .wrap(from_fn(csrf::protect))
            .wrap(security_headers())
            .app_data(
                web::PathConfig::default().error_handler(|_, _| DashboardError::NotFound.into()),
            )
            .app_data(
                web::FormConfig::default()
                    .limit(64 * 1024)
                    .error_handler(|error, _| {
                        DashboardError::BadRequest(format!("the form could not be read: {error}"))
                            .into()
                    }),
            )
            .route("/", web::get().to(accounts::home))
            .route("/signup", web::get().to(accounts::signup_page))
            .route("/signup", web::post().to(accounts::signup))
            .route("/login", web::get().to(accounts::login_page))
            .route("/login", web::post().to(accounts::login))
            .route("/logout", web::post().to(accounts::logout))
            .route("/providers", web::get().to(providers::help))
            .route("/provider-options", web::get().to(providers::options))
            .route("/sources", web::get().to(sources::list))
            .route("/sources", web::post().to(sources::create))
            .route("/sources/new", web::get().to(sources::new))
            .route("/sources/{id}", web::get().to(sources::show))
            .route("/sources/{id}", web::post().to(sources::edit))
            .route("/sources/{id}/edit", web::get().to(sources::edit_page))
            .route(
                "/sources/{id}/delete",
                web::get().to(sources::confirm_delete),
            )
            .route("/sources/{id}/delete", web::post().to(sources::delete))
            .route("/subscriptions", web::get().to(subscriptions::list))
            .route("/subscriptions", web::post().to(subscriptions::create))
            .route("/subscriptions/new", web::get().to(subscriptions::new))
            .route("/subscriptions/{id}", web::get().to(subscriptions::show))
            .route(
                "/subscriptions/{id}/edit",
                web::get().to(subscriptions::edit_page),
            )
            .route(
                "/subscriptions/{id}/edit",
                web::post().to(subscriptions::edit),
            )
            .route(
                "/subscriptions/{id}/pause",
                web::post().to(subscriptions::pause),
            )
            .route(
                "/subscriptions/{id}/resume",
                web::post().to(subscriptions::resume),
            )
            .route(
                "/subscriptions/{id}/rotate-secret",
                web::post().to(subscriptions::rotate_secret),
            )
            .route(
                "/subscriptions/{id}/test-event",
                web::post().to(subscriptions::send_test_event),
            )
            .route(
                "/subscriptions/{id}/delete",
                web::get().to(subscriptions::confirm_delete),
            )
            .route(
                "/subscriptions/{id}/delete",
                web::post().to(subscriptions::delete),
            )
            .route(
                "/subscriptions/{id}/secret",
                web::post().to(subscriptions::reveal_secret),
            )
            .route("/ws", web::get().to(live::connect))
            .route("/issues", web::get().to(issues::list))
            .route("/issues/{id}", web::get().to(issues::show))
            .route(
                "/issues/{id}/acknowledge",
                web::post().to(issues::acknowledge),
            )
            .route("/issues/{id}/resolve", web::post().to(issues::resolve))
            .route("/issues/{id}/reenable", web::post().to(issues::reenable))
            .route("/issues/{id}/replay", web::post().to(issues::replay))
            .route("/notifications", web::get().to(issues::notifications))
            .route("/notifications", web::post().to(issues::create_channel))
            .route(
                "/notifications/{id}/edit",
                web::get().to(issues::edit_channel_page),
            )
            .route("/notifications/{id}", web::post().to(issues::edit_channel))
            .route(
                "/notifications/{id}/delete",
                web::post().to(issues::delete_channel),
            )
            .route(
                "/notifications/{id}/test",
                web::post().to(issues::test_channel),
            )
            .route("/events", web::get().to(events::list))
            .route("/events/replay", web::post().to(events::replay_many))
            .route("/events/{id}", web::get().to(events::show))
            .route("/events/{id}/replay", web::post().to(events::replay))
            .route(
                "/deliveries/{id}/replay",
                web::post().to(events::replay_delivery),
            )
            .route(
                "/deliveries/{id}/retry",
                web::post().to(events::retry_delivery),
            )
            .route("/workspaces", web::get().to(team::workspaces))
            .route("/workspaces", web::post().to(team::create_workspace))
            .route("/workspaces/{id}/switch", web::post().to(team::switch))
            .route("/workspace/rename", web::post().to(team::rename))
            .route("/workspace/delete", web::post().to(team::delete))
            .route("/members", web::get().to(team::list))
            .route("/members/invite", web::post().to(team::invite))
            .route("/members/{user_id}/role", web::post().to(team::change_role))
            .route("/members/{user_id}/remove", web::post().to(team::remove))
            .route(
                "/invitations/{id}/revoke",
                web::post().to(team::revoke_invitation),
            )
            .route("/invitations/{token}", web::get().to(team::invitation))
            .route("/invitations/{token}", web::post().to(team::accept))
            .route("/audit-log", web::get().to(team::audit_log))
            .route("/api-keys", web::get().to(api_keys::list))
            .route("/api-keys", web::post().to(api_keys::create))
            .route("/api-keys/{id}/revoke", web::post().to(api_keys::revoke))
            .default_service(web::to(error::not_found)),
    );
}
