//! `/healthz` (the process is up) and `/readyz` (PostgreSQL and RabbitMQ are reachable).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// Mounts the probes.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state
        .db
        .run(async |conn| {
            use diesel_async::RunQueryDsl;
            diesel::sql_query("SELECT 1").execute(conn).await
        })
        .await
        .is_ok();
    let broker = state.publisher.is_connected();
    let body = json!({
        "status": if database && broker { "ready" } else { "unavailable" },
        "database": if database { "up" } else { "down" },
        "broker": if broker { "up" } else { "down" },
    });
    if database && broker {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
