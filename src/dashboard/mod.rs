//! The server-rendered dashboard (askama). For now: the landing page and its static files.

pub mod assets;

use actix_web::{HttpResponse, web};
use askama::Template;

/// Mounts the dashboard pages and its static files.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(index))
        .configure(assets::routes);
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    version: &'static str,
}

async fn index() -> actix_web::Result<HttpResponse> {
    let page = IndexPage {
        version: env!("CARGO_PKG_VERSION"),
    }
    .render()
    .map_err(actix_web::error::ErrorInternalServerError)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page))
}
