//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use herald_domain::session::Session;
use herald_domain::store::{self, HeraldCqrs};
use herald_domain::template::Template;
use herald_gateway::Gateway;
use salvo::prelude::Depot;
use sqlx::PgPool;

use crate::config::Settings;
use crate::error::ApiError;
use crate::tokens::JwtKeys;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    pub settings: Settings,
    pub gateway: Arc<dyn Gateway>,
    pub jwt: JwtKeys,
    pub templates: HeraldCqrs<Template>,
    pub sessions: HeraldCqrs<Session>,
    /// The base URL the gateway reaches Herald at.
    pub public_url: String,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Stores webhook posts with group commit (`inbox_writer`).
    pub inbox_writer: herald_inbox::writer::InboxWriter,
    /// Sessions' webhook credentials, read once per [`herald_inbox::credentials::TTL`].
    pub webhook_credentials: herald_inbox::credentials::CredentialCache,
    /// Meta's Graph API, the proof of Cloud API phone number ids (decision 0041).
    pub meta_graph: herald_gateway::meta_graph::GraphClient,
    /// Image downloads, password hashing, event streams and imports, shared fairly (decision 0043).
    pub pools: crate::pools::Pools,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        pool: PgPool,
        settings: Settings,
        gateway: Arc<dyn Gateway>,
        public_url: String,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> anyhow::Result<Self> {
        let meta_graph = herald_gateway::meta_graph::GraphClient::new(&settings.meta_graph_url)?;
        Ok(AppState(Arc::new(Inner {
            meta_graph,
            jwt: JwtKeys::new(&settings.jwt_secret),
            templates: store::cqrs(pool.clone(), ()),
            sessions: store::cqrs(pool.clone(), ()),
            inbox_writer: herald_inbox::writer::InboxWriter::spawn(pool.clone(), 4),
            webhook_credentials: Default::default(),
            pools: crate::pools::Pools::new(&settings.pools),
            pool,
            settings,
            gateway,
            public_url,
            metrics,
        })))
    }

    pub fn from_depot(depot: &Depot) -> Result<AppState, ApiError> {
        depot
            .get_typed::<AppState>()
            .cloned()
            .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("application state missing")))
    }

    /// Read-your-writes for work that spans several aggregates (cancel appends the campaign's event,
    /// then every recipient's): waits until `projector` has applied the newest event in the store.
    pub async fn wait_projected_everything(&self, projector: &str) -> Result<(), ApiError> {
        let newest: Option<(i64, i64)> = sqlx::query_as(
            "SELECT tx_id::text::bigint, global_position FROM events
              ORDER BY tx_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        self.wait_position(projector, newest).await
    }

    /// Read-your-writes: waits (briefly) until `projector` has applied the aggregate's latest
    /// event, so a GET right after a POST sees what the POST did. Durable either way.
    pub async fn wait_projected(
        &self,
        projector: &str,
        aggregate_type: &str,
        id: &str,
    ) -> Result<(), ApiError> {
        let position = store::latest_position(&self.pool, aggregate_type, id).await?;
        self.wait_position(projector, position).await
    }

    async fn wait_position(
        &self,
        projector: &str,
        position: Option<(i64, i64)>,
    ) -> Result<(), ApiError> {
        let Some(position) = position else {
            return Ok(());
        };
        let caught_up = herald_projections::runtime::wait_for(
            &self.pool,
            projector,
            position,
            Duration::from_secs(5),
        )
        .await?;
        if !caught_up {
            tracing::warn!(projector, "read model is lagging more than 5 s behind");
        }
        Ok(())
    }
}
