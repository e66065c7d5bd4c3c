//! Liveness, readiness and metrics, served by every role (`herald serve --role api|worker|all`):
//! an API process serves them beside `/api/v1`, a worker on its own port (`HERALD_WORKER_LISTEN`,
//! [`router`]), so an orchestrator can probe each process the same way (docs/running.md).

use std::time::Duration;

use herald_projections::notify::Notifications;
use metrics_exporter_prometheus::PrometheusHandle;
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::Serialize;
use sqlx::PgPool;

use crate::error::ApiError;

/// What the probes look at, injected into every router that serves them.
#[derive(Clone)]
pub struct Probe {
    pub pool: PgPool,
    pub notifications: Notifications,
    pub metrics: Option<PrometheusHandle>,
}

impl Probe {
    fn from_depot(depot: &Depot) -> Result<Probe, ApiError> {
        depot
            .get_typed::<Probe>()
            .cloned()
            .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("probe state missing")))
    }
}

/// The three probe routes; the API's router and a worker's both mount these.
pub fn routes() -> Vec<Router> {
    vec![
        Router::with_path("health").get(health),
        Router::with_path("health/ready").get(ready),
        Router::with_path("metrics").get(metrics),
    ]
}

/// What a worker process serves: the probes and nothing else.
pub fn router(probe: Probe) -> Router {
    let mut router = Router::new().hoop(affix_state::inject(probe));
    for r in routes() {
        router = router.push(r);
    }
    router
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when Herald answers.
    status: String,
}

/// Liveness: Herald's HTTP server answers.
#[endpoint(tags("health"), status_codes(200))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: Postgres answers within 2 s, and NATS is connected when `NATS_URL` is set
/// (503 otherwise, saying which is down).
#[endpoint(tags("health"), status_codes(200, 503))]
pub async fn ready(depot: &mut Depot) -> Result<Json<Health>, ApiError> {
    let probe = Probe::from_depot(depot)?;
    let ping = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&probe.pool),
    )
    .await;
    if !matches!(ping, Ok(Ok(_))) {
        return Err(ApiError::Unavailable("the database does not answer".into()));
    }
    if probe.notifications.connected() == Some(false) {
        return Err(ApiError::Unavailable(
            "NATS is down (real-time events are not published until it is back)".into(),
        ));
    }
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

/// Prometheus metrics in the text exposition format.
#[endpoint(tags("health"), status_codes(200))]
pub async fn metrics(depot: &mut Depot, res: &mut Response) -> Result<(), ApiError> {
    let probe = Probe::from_depot(depot)?;
    let body = probe
        .metrics
        .as_ref()
        .map(|m| m.render())
        .unwrap_or_default();
    res.add_header("content-type", "text/plain; version=0.0.4", true)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    res.render(body);
    Ok(())
}
