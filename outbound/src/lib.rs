//! Outbound webhooks: Herald's events pushed to the tenants' own URLs, signed as the Standard
//! Webhooks specification says, delivered at least once from a durable queue in Postgres
//! (docs/webhooks-out.md, docs/decisions/0062, 0076-0079).
//!
//! Layout
//! - [`endpoints`]: a tenant's endpoints (URL, event filter, secrets, rotation), tenant-scoped.
//! - [`signing`]: the Standard Webhooks signature, tested with the specification's vectors.
//! - [`address`]: the SSRF rules a URL passes at creation and before every delivery.
//! - [`projector`]: committed events → queued messages, one per subscribed endpoint.
//! - [`queue`]: the queue's rows, leases, the attempt log, test messages.
//! - [`worker`]: leases due rows and posts them, bounded per endpoint and overall.
//! - [`schedule`]: when a failed delivery is retried (`Retry-After` honoured).
//! - [`replay`]: queues an endpoint's past events again, from the event store.
//!
//! The HTTP endpoints live in the API crate, which only translates to these functions.

pub mod address;
pub mod endpoints;
pub mod projector;
pub mod queue;
pub mod replay;
pub mod schedule;
pub mod signing;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{watch, Notify};

/// How the worker delivers.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// `HERALD_ALLOW_PRIVATE_WEBHOOK_URLS` (tests only): URLs may reach loopback and private
    /// addresses.
    pub allow_private: bool,
    /// One attempt, connecting included.
    pub timeout: Duration,
    /// The delays before each retry ([`schedule::RETRY_SCHEDULE`]; tests shorten them).
    pub retry_schedule: Vec<Duration>,
    /// Requests in flight to one endpoint from one worker.
    pub per_endpoint: usize,
    /// Endpoints one worker serves at once (its concurrency is `endpoints * per_endpoint`).
    pub endpoints: usize,
    /// Rows leased per endpoint at a time.
    pub batch: i64,
    /// How often the worker looks for due rows when nothing woke it.
    pub poll: Duration,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            allow_private: false,
            timeout: Duration::from_secs(15),
            retry_schedule: schedule::RETRY_SCHEDULE.to_vec(),
            per_endpoint: 8,
            endpoints: 32,
            batch: 64,
            poll: Duration::from_millis(500),
        }
    }
}

impl OutboundConfig {
    /// How long a leased batch is held: long enough for every attempt of it to time out.
    pub fn lease(&self) -> Duration {
        let rounds = (self.batch.max(1) as u64).div_ceil(self.per_endpoint.max(1) as u64);
        self.timeout * u32::try_from(rounds).unwrap_or(u32::MAX) + Duration::from_secs(10)
    }
}

/// Starts the `outbound_webhooks` projector and the delivery worker of this process.
pub fn spawn(
    pool: PgPool,
    config: OutboundConfig,
    wakeup: herald_projections::Wakeup,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let queued = Arc::new(Notify::new());
    let projector = tokio::spawn(herald_projections::runtime::run(
        pool.clone(),
        Arc::new(projector::OutboundProjector::new(queued.clone())),
        wakeup,
        herald_projections::RunnerConfig::default(),
        shutdown.clone(),
    ));
    let worker = worker::spawn(pool, config, queued, shutdown);
    vec![projector, worker]
}
