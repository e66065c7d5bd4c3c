//! Liveness, readiness and metrics.

use std::time::Duration;

use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when Herald answers.
    status: String,
}

/// Liveness: Herald's HTTP server answers.
#[endpoint(tags("health"))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: Postgres answers within 2 s (503 otherwise).
#[endpoint(tags("health"))]
pub async fn ready(depot: &mut Depot) -> Result<Json<Health>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let ping = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&state.pool),
    )
    .await;
    match ping {
        Ok(Ok(_)) => Ok(Json(Health {
            status: "ok".into(),
        })),
        _ => Err(ApiError::Unavailable("the database does not answer".into())),
    }
}

/// Prometheus metrics in the text exposition format.
#[endpoint(tags("health"))]
pub async fn metrics(depot: &mut Depot, res: &mut Response) -> Result<(), ApiError> {
    let state = AppState::from_depot(depot)?;
    let body = state
        .metrics
        .as_ref()
        .map(|m| m.render())
        .unwrap_or_default();
    res.add_header("content-type", "text/plain; version=0.0.4", true)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    res.render(body);
    Ok(())
}
