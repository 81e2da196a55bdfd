//! The server-rendered dashboard (askama). For now: the landing page and its stylesheet.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use askama::Template;

/// Mounts the dashboard pages and its static files.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(index))
        .route("/static/spenza.css", web::get().to(stylesheet));
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

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/spenza.css"))
}
