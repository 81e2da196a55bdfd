//! `/healthz` (the process is up) and `/readyz` (PostgreSQL and RabbitMQ are reachable, and a
//! delivering process's consumer takes deliveries).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::queue::ConsumerStatus;
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
    // A process that delivers is ready only while it takes deliveries.
    let consumer = state.consumer.as_ref().map(ConsumerStatus::is_consuming);
    let ready = database && broker && consumer != Some(false);
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": if database { "up" } else { "down" },
        "broker": if broker { "up" } else { "down" },
        "consumer": match consumer {
            Some(true) => "up",
            Some(false) => "down",
            None => "off",
        },
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
