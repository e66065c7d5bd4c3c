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
#[endpoint(tags("health"), status_codes(200))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: Postgres answers within 2 s, and NATS too when `NATS_URL` is set (503 otherwise).
#[endpoint(tags("health"), status_codes(200, 503))]
pub async fn ready(depot: &mut Depot) -> Result<Json<Health>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let ping = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&state.pool),
    )
    .await;
    if !matches!(ping, Ok(Ok(_))) {
        return Err(ApiError::Unavailable("the database does not answer".into()));
    }
    if let Some(url) = &state.settings.nats_url {
        if !nats_answers(url).await {
            return Err(ApiError::Unavailable("NATS does not answer".into()));
        }
    }
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

/// A NATS server greets every new connection with an `INFO {...}` line.
async fn nats_answers(url: &str) -> bool {
    use tokio::io::AsyncReadExt;
    let first = url.split(',').next().unwrap_or_default();
    let rest = first.split_once("://").map(|(_, r)| r).unwrap_or(first);
    let host_port = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host_port = host_port.trim_end_matches('/');
    let addr = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:4222")
    };
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.ok()?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"INFO")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(true))
    )
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn nats_readiness_probes_the_server() {
        let url = std::env::var("HERALD_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        assert!(
            super::nats_answers(&url).await,
            "NATS runs for the tests at {url}"
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!("nats://{}", closed.local_addr().expect("addr"));
        drop(closed);
        assert!(!super::nats_answers(&dead).await);
    }
}

/// Prometheus metrics in the text exposition format.
#[endpoint(tags("health"), status_codes(200))]
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
