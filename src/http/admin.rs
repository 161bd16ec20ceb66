//! Operations endpoints: health, actor states, restart, Prometheus metrics.

use actix_web::{HttpResponse, get, post, web};
use serde_json::json;

use super::auth::Admin;
use super::error::ApiError;
use crate::wiring::Pipeline;

/// `GET /admin/health`: 200 when every actor runs, 503 otherwise, naming the actors that do
/// not run with their state, detail and last error (why they stopped, or what they wait for).
#[get("/admin/health")]
pub async fn health(pipeline: web::Data<Pipeline>, _: Admin) -> Result<HttpResponse, ApiError> {
    let ready = pipeline.health.ready();
    let not_running: Vec<_> = pipeline
        .health
        .reports()
        .into_iter()
        .filter(|r| r.state != ttpulse_actors::health::ActorState::Running)
        .collect();
    let body = json!({
        "status": if ready { "ok" } else { "degraded" },
        "mode": if pipeline.distributed { "distributed" } else { "embedded" },
        "roles": pipeline.roles.iter().map(|r| r.name()).collect::<Vec<_>>(),
        "database": pipeline.db_pool.as_ref().map(|p| p.backend()),
        "not_running": not_running.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        "not_running_actors": not_running.iter().map(|r| json!({
            "name": r.name,
            "state": r.state,
            "detail": r.detail,
            "restarts": r.restarts,
            "panics": r.panics,
            "last_error": r.last_error,
        })).collect::<Vec<_>>(),
    });
    Ok(if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) })
}

/// `GET /admin/actors`: each actor's kind, state, restarts, messages handled, queue depth
/// and last message time.
#[get("/admin/actors")]
pub async fn actors(pipeline: web::Data<Pipeline>, _: Admin) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(pipeline.health.reports()))
}

/// `POST /admin/actors/{name}/restart`: stops the actor; its supervisor starts it again.
#[post("/admin/actors/{name}/restart")]
pub async fn restart(
    pipeline: web::Data<Pipeline>,
    name: web::Path<String>,
    _: Admin,
) -> Result<HttpResponse, ApiError> {
    if !pipeline.restartable.restart(name.as_str()) {
        let known: Vec<_> = pipeline.restartable.names().collect();
        return Err(ApiError::NotFound(format!("no restartable actor `{name}`; one of {known:?}")));
    }
    Ok(HttpResponse::Accepted().json(json!({ "restarting": name.as_str() })))
}

/// `GET /metrics`: Prometheus text format.
#[get("/metrics")]
pub async fn metrics(pipeline: web::Data<Pipeline>, _: Admin) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(pipeline.metrics.render()))
}
