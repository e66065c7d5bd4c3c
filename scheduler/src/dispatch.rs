//! Dispatch workers (docs/decisions/0053): the write-ahead path from `dispatch_queue` to the gateway.
//!
//! 1. Claim (`dispatch/claim.rs`): a batch with `FOR UPDATE SKIP LOCKED`, mark it leased
//!    (attempt + 1, lease deadline), skip opted-out and over-cap recipients
//!    (`dispatch/screen.rs`), pass the quota and pacing gates (`dispatch/pacing.rs`),
//!    append each recipient's `DeliveryDispatched` with its deterministic message id (indexed in
//!    `message_index`, where webhook receipts find their delivery), COMMIT.
//! 2. Send (`dispatch/render.rs`, `dispatch/send.rs`): render the batch's messages in one
//!    blocking task (never on the async threads, each tenant's render time per batch bounded),
//!    then call the gateway for each, with bounded concurrency.
//! 3. Record (`dispatch/record.rs`), as the calls finish, in small groups (whatever finished
//!    while the previous group was written; docs/decisions/0065): in one transaction, append the
//!    outcomes (`DeliverySent` / `DeliveryFailed`) through the batch executor, delete finished
//!    rows, put retryable ones back with a backoff. A call's slot is free again only once its
//!    outcome is stored, so at most `concurrency` calls per worker are ever in doubt.
//! 4. Complete (`dispatch/record.rs`) campaigns that have nothing left in the queue.
//!
//! The claim also runs the safety checks (`dispatch/safety.rs`: halted numbers, send windows,
//! daily caps), and the circuit breaker (`dispatch/safety/breaker.rs`) pauses a number's
//! campaigns after a claim or a record that found it stopped.
//!
//! A worker that dies between 1 and 3 leaves leased rows; when the lease expires any worker takes
//! them again as "in doubt" and resends with the SAME message id, so the gateway and the receipts
//! can tell it is one message. Only the calls in flight were really sent twice (the rest of the
//! batch was never called). Any number of workers and processes can share one database. On
//! shutdown no new call starts, the calls in flight finish and are recorded, and the rest of
//! the batch goes back to the queue (`Outcome::Release`).

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
pub mod safety;
mod screen;
mod send;
mod typing;
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
    /// Set when the shutdown signal turns true: calls not started yet are released, not made.
    stopping: std::sync::atomic::AtomicBool,
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
    /// Waiting for its send window or its number's daily cap (counted as such until it is sent).
    waiting_window: bool,
    waiting_cap: bool,
    /// Its number shows "typing…" before this paced send (`dispatch/typing.rs`).
    typing: bool,
    /// The pacing interval drawn for this send at the claim (0: unpaced).
    interval_ms: i32,
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
    /// Never called (Herald is stopping): back in the queue, due at once, not in doubt.
    Release,
    /// The gateway stopped the number (logged out, spam rate, credentials): the recipient goes
    /// back to the queue like a retry and the circuit breaker pauses the number's campaigns.
    Halt(herald_gateway::HaltReason, String),
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
            stopping: std::sync::atomic::AtomicBool::new(false),
            pool,
        })
    }

    /// Starts the worker tasks; they stop when `shutdown` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = (0..self.config.workers)
            .map(|i| {
                let this = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { this.worker(i, shutdown).await })
            })
            .collect();
        let this = self.clone();
        let mut stop = shutdown;
        tasks.push(tokio::spawn(async move {
            let _ = stop.wait_for(|stop| *stop).await;
            this.stopping
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }));
        tasks
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
    ///
    /// Outcomes are recorded in small groups as the calls finish (`dispatch/record.rs`), and a
    /// call's slot is only given back once its outcome is stored: at most `concurrency` calls of
    /// this worker are ever sent but unrecorded, which bounds the resends after a crash. Once
    /// Herald is stopping, the recipients not called yet go back to the queue untouched.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        crate::sweep::sweep_cancelled(&self.pool).await?;
        let claimed = self.claim().await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let n = claimed.len();
        let keys: QueueKeys = claimed
            .iter()
            .map(|c| (c.campaign_id, c.phone.clone()))
            .unzip();
        let prepared = self.prepare(claimed).await?;
        let slots = tokio::sync::Semaphore::new(self.config.concurrency.max(1));
        let (finished, outcomes) = tokio::sync::mpsc::unbounded_channel();
        let sending = async {
            let finished = finished;
            futures::stream::iter(prepared)
                .for_each_concurrent(self.config.concurrency.max(1), |(c, p)| {
                    let (finished, slots) = (&finished, &slots);
                    async move {
                        // the semaphore is never closed; a closed one would mean no slot at all
                        let Ok(slot) = slots.acquire().await else {
                            return;
                        };
                        let outcome = if self.stopping() {
                            Outcome::Release
                        } else {
                            self.send(&c, p).await
                        };
                        // the recorder gone means the batch failed: its leases are in doubt
                        let _ = finished.send(record::Finished { c, outcome, slot });
                    }
                })
                .await;
            Ok::<(), anyhow::Error>(())
        };
        // A failed recording stops the sending (the try_join drops it): what was not recorded
        // stays leased and is resent, in doubt, when the lease ends.
        let work = async { tokio::try_join!(sending, self.record_as_they_finish(outcomes)) };
        tokio::pin!(work);
        // While the batch's calls go on, its unfinished leases are renewed: a lease only has
        // to outlast the calls in flight, not the whole batch (and expires soon after a crash).
        let mut renew =
            tokio::time::interval((self.config.lease / 3).max(Duration::from_millis(100)));
        renew.tick().await;
        loop {
            tokio::select! {
                done = &mut work => {
                    done?;
                    break;
                }
                _ = renew.tick() => self.renew_leases(&keys).await,
            }
        }
        Ok(n)
    }

    /// Whether this process is stopping (no new gateway call starts).
    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
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
