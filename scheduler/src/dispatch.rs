//! Dispatch workers (docs/decisions/0053): the write-ahead path from `dispatch_queue` to the gateway.
//!
//! 1. Claim (`dispatch/claim.rs`): a batch with `FOR UPDATE SKIP LOCKED`, mark it leased
//!    (attempt + 1, lease deadline), pass the quota and pacing gates (`dispatch/pacing.rs`),
//!    append each recipient's `DeliveryDispatched` with its deterministic message id (indexed in
//!    `message_index`, where webhook receipts find their delivery), COMMIT.
//! 2. Send (`dispatch/render.rs`, `dispatch/send.rs`): render the batch's messages in one
//!    blocking task (never on the async threads, each tenant's render time per batch bounded),
//!    then call the gateway for each, with bounded concurrency.
//! 3. Record (`dispatch/record.rs`): in one transaction, append the outcomes (`DeliverySent` /
//!    `DeliveryFailed`) through the batch executor, delete finished rows, put retryable ones
//!    back with a backoff.
//! 4. Complete (`dispatch/record.rs`) campaigns that have nothing left in the queue.
//!
//! A worker that dies between 1 and 3 leaves leased rows; when the lease expires any worker takes
//! them again as "in doubt" and resends with the SAME message id, so the gateway and the receipts
//! can tell it is one message. Any number of workers and processes can share one database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use herald_domain::template_body::CompiledTemplate;
use herald_gateway::Gateway;
use sqlx::{PgPool, Row};

use crate::pacing::Pacing;
use crate::single_content::SingleContent;
use herald_media::MediaCache;
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

mod claim;
mod pacing;
mod record;
mod render;
mod send;
mod window;

pub use send::backoff;

use render::Prepared;

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Recipients claimed per batch.
    pub batch_size: i64,
    /// Gateway calls in flight per worker.
    pub concurrency: usize,
    /// Worker tasks in this process.
    pub workers: usize,
    /// How long a claimed recipient stays leased before another worker may take it as in doubt.
    pub lease: Duration,
    /// Sleep when the queue has nothing due.
    pub idle_poll: Duration,
    /// Attempts before a retryable failure becomes final.
    pub max_attempts: i32,
    /// The message quota's window (an hour; shorter only to test window turns).
    pub quota_window: crate::quota::Window,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            batch_size: 500,
            concurrency: 64,
            workers: 4,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(100),
            max_attempts: 5,
            quota_window: crate::quota::Window::default(),
        }
    }
}

/// A campaign's message compiled once and shared by every worker.
struct CompiledMessage {
    body: Option<Arc<CompiledTemplate>>,
    caption: Option<Arc<CompiledTemplate>>,
    /// Image campaigns: the SHA-256 of the stored JPEG (loaded once per process, [`MediaCache`]).
    image: Option<String>,
}

/// Image sends in flight per process: each holds the image's data URL and its JSON request body
/// (up to ~1.4 MB each), so this bounds the dispatcher's image memory to a few tens of MB.
const IMAGE_SENDS_IN_FLIGHT: usize = 16;

/// Shared by the worker tasks of one process.
pub struct Dispatcher {
    pool: PgPool,
    /// WuzAPI sessions' gateway.
    gateway: Arc<dyn Gateway>,
    /// Cloud API sessions' gateway (docs/decisions/0063).
    cloud: Arc<dyn Gateway>,
    config: DispatchConfig,
    messages: Mutex<HashMap<Uuid, Arc<Result<CompiledMessage, String>>>>,
    tokens: Mutex<HashMap<Uuid, (Option<SessionGateway>, tokio::time::Instant)>>,
    media: MediaCache,
    image_sends: tokio::sync::Semaphore,
}

/// Queue rows by key: campaign ids and phones, side by side (bound as two arrays).
type QueueKeys = (Vec<Uuid>, Vec<String>);

/// One claimed recipient.
#[derive(Debug, Clone)]
struct Claimed {
    /// The campaign, or for a single send the message's own id.
    campaign_id: Uuid,
    phone: String,
    tenant_id: Uuid,
    session_id: Uuid,
    message_id: String,
    vars: serde_json::Map<String, serde_json::Value>,
    attempts: i32,
    in_doubt: bool,
    waiting_quota: bool,
    /// A single send's own message (its quota was taken when it was accepted).
    content: Option<SingleContent>,
    pacing: Pacing,
}

impl Claimed {
    fn delivery_id(&self) -> String {
        format!("{}:{}", self.campaign_id, self.phone)
    }

    /// Its first claim, which takes quota (retries and in-doubt resends were counted already).
    fn needs_quota(&self) -> bool {
        self.content.is_none() && self.attempts == 1 && !self.in_doubt
    }

    fn is_campaign(&self) -> bool {
        self.content.is_none()
    }
}

/// A session's credentials and which gateway they are for.
#[derive(Clone)]
pub(crate) struct SessionGateway {
    token: String,
    cloud: bool,
}

enum Outcome {
    /// Accepted by the gateway at this moment (stamped per message, not per batch, so a fast
    /// receipt never looks older than its send), with the gateway's own message id when it
    /// chose one (the Cloud API's wamid), which its statuses name.
    Sent(chrono::DateTime<Utc>, Option<String>),
    /// Final failure with the reason shown to the user.
    Failed(String),
    /// Put back in the queue to try again after the delay.
    Retry(String, Duration),
}

impl Dispatcher {
    /// A dispatcher whose Cloud API sessions cannot send (their recipients fail saying so).
    pub fn new(pool: PgPool, gateway: Arc<dyn Gateway>, config: DispatchConfig) -> Arc<Self> {
        Self::with_cloud(pool, gateway, Arc::new(NoCloudGateway), config)
    }

    /// A dispatcher sending WuzAPI sessions' messages through `gateway` and Cloud API
    /// sessions' through `cloud`.
    pub fn with_cloud(
        pool: PgPool,
        gateway: Arc<dyn Gateway>,
        cloud: Arc<dyn Gateway>,
        config: DispatchConfig,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            gateway,
            cloud,
            config,
            messages: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            media: MediaCache::new(pool.clone()),
            image_sends: tokio::sync::Semaphore::new(IMAGE_SENDS_IN_FLIGHT),
            pool,
        })
    }

    /// Starts the worker tasks; they stop when `shutdown` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.config.workers)
            .map(|i| {
                let this = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { this.worker(i, shutdown).await })
            })
            .collect()
    }

    async fn worker(self: Arc<Self>, index: usize, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            match self.run_once().await {
                Ok(0) => {
                    failures = 0;
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.idle_poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::error!(worker = index, error = %format!("{e:#}"), "dispatch batch failed");
                    let backoff = Duration::from_millis(200 * 2u64.pow(failures.min(5)));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// Claims, sends and records one batch. Returns how many recipients it handled.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        crate::sweep::sweep_cancelled(&self.pool).await?;
        let claimed = self.claim().await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let n = claimed.len();
        let prepared = self.prepare(claimed).await?;
        let sends = futures::stream::iter(prepared.into_iter().map(|(c, p)| async move {
            let outcome = self.send(&c, p).await;
            (c, outcome)
        }))
        .buffer_unordered(self.config.concurrency)
        .collect::<Vec<_>>()
        .await;
        self.record(sends).await?;
        Ok(n)
    }
}

/// The Cloud API gateway of a dispatcher built without one: refuses, never passes a Cloud API
/// session's credentials to WuzAPI.
struct NoCloudGateway;

#[async_trait::async_trait]
impl Gateway for NoCloudGateway {
    async fn send(
        &self,
        _: &str,
        _: &herald_gateway::OutboundMessage,
    ) -> Result<herald_gateway::SendAccepted, herald_gateway::GatewayError> {
        Err(no_cloud())
    }
    async fn set_webhook(
        &self,
        _: &str,
        _: &str,
        _: &[&str],
    ) -> Result<(), herald_gateway::GatewayError> {
        Err(no_cloud())
    }
    async fn session_status(
        &self,
        _: &str,
    ) -> Result<herald_gateway::SessionStatus, herald_gateway::GatewayError> {
        Err(no_cloud())
    }
    async fn set_hmac_key(&self, _: &str, _: &str) -> Result<(), herald_gateway::GatewayError> {
        Err(no_cloud())
    }
    async fn contacts(
        &self,
        _: &str,
    ) -> Result<Vec<herald_gateway::GatewayContact>, herald_gateway::GatewayError> {
        Err(no_cloud())
    }
}

fn no_cloud() -> herald_gateway::GatewayError {
    herald_gateway::GatewayError::Permanent {
        message: "this Herald has no Cloud API gateway configured".into(),
    }
}

async fn delete_rows(
    conn: &mut sqlx::PgConnection,
    campaigns: &[Uuid],
    phones: &[String],
) -> sqlx::Result<()> {
    if campaigns.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM dispatch_queue q USING UNNEST($1::uuid[], $2::text[]) AS d(c, p)
          WHERE q.campaign_id = d.c AND q.phone = d.p",
    )
    .bind(campaigns)
    .bind(phones)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
