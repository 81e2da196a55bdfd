//! The JSON API under `/api/v1`: bearer-key authenticated, tenant-scoped, problem+json errors.

mod auth;
mod error;
mod events;
mod issues;
mod listen;
pub mod openapi;
pub mod responses;
mod sources;
mod subscriptions;
mod team;
mod validated;

use actix_web::web;

pub use auth::ApiCaller;
pub use error::ApiError;

/// Where the API is mounted.
pub const SCOPE: &str = "/api/v1";

/// Declares the API's routes once: [`MOUNTED`] lists them and `mount` adds them to a scope, so
/// no route is mounted without being listed.
macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every route of the API: its lower-case method and its path within [`SCOPE`].
        pub const MOUNTED: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// Adds every route of the API to `scope`.
        fn mount(scope: actix_web::Scope) -> actix_web::Scope {
            scope$(.route($path, web::$method().to($handler)))*
        }
    };
}

api_routes! {
    post "/subscriptions" => subscriptions::create,
    get "/subscriptions" => subscriptions::list,
    get "/subscriptions/{id}" => subscriptions::get,
    patch "/subscriptions/{id}" => subscriptions::edit,
    delete "/subscriptions/{id}" => subscriptions::delete,
    get "/subscriptions/{id}/events" => events::list,
    post "/subscriptions/{id}/replay" => subscriptions::replay,
    post "/subscriptions/{id}/rotate-secret" => subscriptions::rotate_secret,
    get "/events" => events::list_all,
    get "/events/{id}" => events::get,
    get "/events/{id}/attempts" => events::attempts,
    post "/events/{id}/replay" => events::replay,
    get "/deliveries/{id}" => events::get_delivery,
    post "/deliveries/{id}/replay" => events::replay_delivery,
    post "/deliveries/{id}/retry" => events::retry_delivery,
    post "/sources" => sources::create,
    get "/sources" => sources::list,
    get "/sources/{id}" => sources::get,
    patch "/sources/{id}" => sources::edit,
    delete "/sources/{id}" => sources::delete,
    get "/sources/{id}/events" => sources::events,
    get "/sources/{id}/rejections" => sources::rejections,
    get "/listen" => listen::connect,
    get "/members" => team::list_members,
    patch "/members/{user_id}" => team::change_role,
    delete "/members/{user_id}" => team::remove_member,
    post "/invitations" => team::invite,
    delete "/invitations/{id}" => team::revoke_invitation,
    post "/api-keys" => team::create_key,
    delete "/api-keys/{id}" => team::revoke_key,
    get "/audit-log" => team::audit_log,
    get "/issues" => issues::list,
    get "/issues/{id}" => issues::get,
    patch "/issues/{id}" => issues::change,
    get "/notification-channels" => issues::list_channels,
    post "/notification-channels" => issues::create_channel,
    get "/notification-channels/{id}" => issues::get_channel,
    patch "/notification-channels/{id}" => issues::edit_channel,
    delete "/notification-channels/{id}" => issues::delete_channel,
    post "/notification-channels/{id}/test" => issues::test_channel,
}

/// Mounts every API route, and the API's OpenAPI document beside them: the document describes
/// the API rather than being part of it, and is served without a key.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route(openapi::PATH, web::get().to(openapi::document))
        .service(mount(
            web::scope(SCOPE)
                .app_data(validated::json_config())
                .app_data(validated::query_config())
                .app_data(validated::path_config()),
        ));
}
