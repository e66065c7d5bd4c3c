//! Dispatch workers (docs/decisions/0053): the write-ahead path from `dispatch_queue` to the gateway.
//!
//! 1. Claim a batch with `FOR UPDATE SKIP LOCKED`, mark it leased (attempt + 1, lease deadline),
//!    append each recipient's `DeliveryDispatched` with its deterministic message id (indexed in
//!    `message_index`, where webhook receipts find their delivery), COMMIT.
//! 2. Render the batch's messages in one blocking task (`render`: never on the async threads,
//!    each tenant's render time per batch bounded), then call the gateway for each, with bounded
//!    concurrency.
//! 3. In one transaction: append the outcomes (`DeliverySent` / `DeliveryFailed`) through the batch
//!    executor, delete finished rows, put retryable ones back with a backoff.
//! 4. Complete campaigns that have nothing left in the queue.
//!
//! A worker that dies between 1 and 3 leaves leased rows; when the lease expires any worker takes
//! them again as "in doubt" and resends with the SAME message id, so the gateway and the receipts
//! can tell it is one message. Any number of workers and processes can share one database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use herald_domain::campaign::{Campaign, CampaignCommand, MessageSpec};
use herald_domain::delivery::{Delivery, DeliveryCommand};
use herald_domain::store;
use herald_domain::template::TemplateKind;
use herald_domain::template_body::CompiledTemplate;
use herald_gateway::{Gateway, GatewayError, MessageContent, OutboundMessage};
use sqlx::{PgConnection, PgPool, Row};

use crate::media::MediaCache;
use crate::pacing::Pacing;
use crate::quota::{self, Plan};
use crate::single::SingleContent;
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

mod render;

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
    gateway: Arc<dyn Gateway>,
    config: DispatchConfig,
    messages: Mutex<HashMap<Uuid, Arc<Result<CompiledMessage, String>>>>,
    tokens: Mutex<HashMap<Uuid, (Option<String>, tokio::time::Instant)>>,
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

/// What the claim statements return.
const CLAIM_RETURNING: &str = "RETURNING q.campaign_id, q.phone, q.tenant_id, q.session_id,
    q.message_id, q.vars, q.attempts, q.in_doubt, q.waiting_quota, q.content, q.pace_min_ms,
    q.pace_max_ms";

/// What step 3 writes: final outcomes (events, queue rows deleted) and retries (rows due again).
#[derive(Default)]
struct OutcomeBatch {
    commands: Vec<(String, DeliveryCommand)>,
    done_c: Vec<Uuid>,
    done_p: Vec<String>,
    retry_c: Vec<Uuid>,
    retry_p: Vec<String>,
    retry_after: Vec<f64>,
    retry_error: Vec<String>,
}

enum Outcome {
    /// Accepted by the gateway at this moment (stamped per message, not per batch, so a fast
    /// receipt never looks older than its send).
    Sent(chrono::DateTime<Utc>),
    /// Final failure with the reason shown to the user.
    Failed(String),
    /// Put back in the queue to try again after the delay.
    Retry(String, Duration),
}

impl Dispatcher {
    pub fn new(pool: PgPool, gateway: Arc<dyn Gateway>, config: DispatchConfig) -> Arc<Self> {
        Arc::new(Dispatcher {
            gateway,
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
        crate::control::sweep_cancelled(&self.pool).await?;
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

    /// Step 1: claim and lease, with `DeliveryDispatched` appended in the same transaction.
    async fn claim(&self) -> anyhow::Result<Vec<Claimed>> {
        let mut tx = self.pool.begin().await?;
        store::plan_as_key_lookups(&mut tx).await?;
        // Leases whose worker died mid-call go back to `ready`, flagged in doubt; cheap (partial
        // index on leased rows), and it keeps the claim below on the `ready` index only.
        // Both statements pick rows by ctid: a join back on (campaign_id, phone) gets a cached
        // generic plan that degrades to a quadratic nested loop once the queue is large (measured
        // by the benchmark: a 37 s sweep at 20k rows, 3.6 ms this way).
        sqlx::query(
            "UPDATE dispatch_queue SET state = 'ready', in_doubt = true, lease_until = NULL
              WHERE ctid = ANY(ARRAY(SELECT ctid FROM dispatch_queue
                                      WHERE state = 'leased' AND lease_until < now()
                                      FOR UPDATE SKIP LOCKED))",
        )
        .execute(&mut *tx)
        .await?;
        // Unpaced rows, the fast path: the oldest due rows of campaigns not held.
        let unpaced = format!(
            "UPDATE dispatch_queue q
                SET state = 'leased', attempts = q.attempts + 1,
                    lease_until = now() + make_interval(secs => $2)
              WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM dispatch_queue
                     WHERE state = 'ready' AND pace_max_ms = 0 AND not_before <= now()
                       AND NOT EXISTS (SELECT 1 FROM campaign_holds h
                                        WHERE h.campaign_id = dispatch_queue.campaign_id)
                     ORDER BY not_before
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED))
             {CLAIM_RETURNING}"
        );
        let rows = sqlx::query(&unpaced)
            .bind(self.config.batch_size)
            .bind(self.config.lease.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            claimed.push(claimed_from(&r)?);
        }
        // Paced rows: one per session whose next send time has come, the session's pacing row
        // locked until this transaction ends (another instance skips it).
        let paced_due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dispatch_queue
                             WHERE state = 'ready' AND pace_max_ms > 0 AND not_before <= now())",
        )
        .fetch_one(&mut *tx)
        .await?;
        if paced_due {
            let paced = format!(
                "WITH free AS (
                    SELECT p.session_id FROM session_pacing p
                     WHERE p.next_at <= now()
                       AND EXISTS (SELECT 1 FROM dispatch_queue d
                                    WHERE d.session_id = p.session_id AND d.state = 'ready'
                                      AND d.pace_max_ms > 0 AND d.not_before <= now())
                     LIMIT $1
                     FOR UPDATE OF p SKIP LOCKED
                 ), picked AS (
                    SELECT x.ctid FROM free f CROSS JOIN LATERAL (
                        SELECT d.ctid FROM dispatch_queue d
                         WHERE d.session_id = f.session_id AND d.state = 'ready'
                           AND d.pace_max_ms > 0 AND d.not_before <= now()
                           AND NOT EXISTS (SELECT 1 FROM campaign_holds h
                                            WHERE h.campaign_id = d.campaign_id)
                         ORDER BY d.not_before LIMIT 1
                         FOR UPDATE OF d SKIP LOCKED) x
                 )
                 UPDATE dispatch_queue q
                    SET state = 'leased', attempts = q.attempts + 1,
                        lease_until = now() + make_interval(secs => $2)
                  WHERE ctid = ANY(ARRAY(SELECT ctid FROM picked))
                 {CLAIM_RETURNING}"
            );
            let rows = sqlx::query(&paced)
                .bind(self.config.batch_size)
                .bind(self.config.lease.as_secs_f64())
                .fetch_all(&mut *tx)
                .await?;
            for r in rows {
                claimed.push(claimed_from(&r)?);
            }
        }
        let (claimed, unlimited) = self.apply_quota(&mut tx, claimed).await?;
        reserve_pacing(&mut tx, &claimed, self.config.lease).await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(claimed);
        }
        let in_doubt = claimed.iter().filter(|c| c.in_doubt).count();
        if in_doubt > 0 {
            tracing::warn!(
                in_doubt,
                "resending recipients whose lease expired, with their message ids"
            );
            metrics::counter!("herald_dispatch_in_doubt_total").increment(in_doubt as u64);
        }
        let now = Utc::now();
        let commands = claimed
            .iter()
            .map(|c| {
                let cmd = DeliveryCommand::Dispatch {
                    message_id: c.message_id.clone(),
                    attempt: u32::try_from(c.attempts).unwrap_or(0),
                    in_doubt: c.in_doubt,
                    at: now,
                };
                (c.delivery_id(), cmd)
            })
            .collect();
        let outcomes = store::execute_batch::<Delivery>(&mut tx, commands, &()).await?;
        // A recipient that is already final (cancelled, or recorded by an earlier worker whose
        // queue delete was lost) must not be sent again: drop its queue row.
        let mut keep = Vec::with_capacity(claimed.len());
        let mut stale_c: Vec<Uuid> = Vec::new();
        let mut stale_p = Vec::new();
        let mut stale_done = Vec::new();
        for (c, outcome) in claimed.into_iter().zip(outcomes) {
            match outcome {
                Ok(_) => keep.push(c),
                Err(e) => {
                    tracing::info!(campaign = %c.campaign_id, error = %e, "dropping a queued recipient that cannot be sent");
                    if c.is_campaign() {
                        stale_done.push(c.campaign_id);
                    }
                    stale_c.push(c.campaign_id);
                    stale_p.push(c.phone);
                }
            }
        }
        if !stale_c.is_empty() {
            delete_rows(&mut tx, &stale_c, &stale_p).await?;
        }
        // Receipts find their delivery through this index, written before the gateway is
        // called, so it is always there before any receipt can be.
        index_messages(&mut tx, &keep).await?;
        tx.commit().await?;
        if !unlimited.is_empty() {
            let (window_start, _) = self.config.quota_window.around(Utc::now());
            for (tenant, n) in unlimited {
                if let Err(e) = quota::count_unlimited(&self.pool, tenant, window_start, n).await {
                    tracing::warn!(error = %e, "usage of an unlimited tenant not counted");
                }
            }
        }
        if !stale_done.is_empty() {
            // A dropped row may have been its campaign's last (e.g. a receipt proved a retried
            // message delivered): such a campaign is finished now.
            // Never fatal here: the kept rows are leased already and must be sent now.
            stale_done.sort();
            stale_done.dedup();
            if let Err(e) = self.complete_finished(&stale_done).await {
                tracing::error!(error = %format!("{e:#}"), "completing campaigns whose last queued recipients were dropped failed");
            }
        }
        Ok(keep)
    }

    /// Step 2a: each campaign's compiled message (cached), then every recipient's text rendered
    /// in one blocking task for the batch (see [`render`]).
    async fn prepare(&self, claimed: Vec<Claimed>) -> anyhow::Result<Vec<(Claimed, Prepared)>> {
        let mut messages = render::Messages::new();
        for c in claimed.iter().filter(|c| c.content.is_none()) {
            if let std::collections::hash_map::Entry::Vacant(slot) = messages.entry(c.campaign_id) {
                slot.insert(self.message(c.campaign_id).await);
            }
        }
        // A panic here is a bug in the renderer: the batch's leases expire and it is resent.
        let prepared =
            tokio::task::spawn_blocking(move || render::render_batch(claimed, &messages)).await?;
        Ok(prepared)
    }

    /// Step 2b: one gateway call, classified.
    async fn send(&self, c: &Claimed, prepared: Prepared) -> Outcome {
        let outcome = self.send_once(c, prepared).await;
        if c.pacing.is_paced() {
            // The interval drawn at the claim runs from the end of this call, so the gateway
            // never sees two sends of the session closer than it, however slow the call was.
            // (Until now the session was busy: next_at was the lease's end.)
            if let Err(e) = sqlx::query(
                "UPDATE session_pacing
                    SET next_at = clock_timestamp() + make_interval(secs => last_interval_ms / 1000.0)
                  WHERE session_id = $1",
            )
            .bind(c.session_id)
            .execute(&self.pool)
            .await
            {
                tracing::warn!(error = %e, "pacing not extended after a send");
            }
        }
        outcome
    }

    async fn send_once(&self, c: &Claimed, prepared: Prepared) -> Outcome {
        let (image, text) = match (prepared, &c.content) {
            (Prepared::Decided(outcome), _) => return outcome,
            (Prepared::Single, Some(content)) => return self.send_single(c, content).await,
            (Prepared::Campaign { image, text }, None) => (image, text),
            (Prepared::Single, None) | (Prepared::Campaign { .. }, Some(_)) => {
                return Outcome::Failed("internal: a send prepared for another kind".into())
            }
        };
        let token = match self.token(c.session_id).await {
            Ok(Some(t)) => t,
            Ok(None) => return Outcome::Failed("the campaign's session no longer exists".into()),
            Err(e) => return Outcome::Retry(format!("database: {e}"), Duration::from_secs(1)),
        };
        // Image sends wait for a slot before their data URL is copied into a request.
        let _image_slot = match &image {
            Some(_) => match self.image_sends.acquire().await {
                Ok(permit) => Some(permit),
                Err(_) => return Outcome::Retry("shutting down".into(), Duration::from_secs(1)),
            },
            None => None,
        };
        let data_url = match &image {
            Some(sha256) => match self.media.data_url(sha256).await {
                Ok(Some(url)) => Some(url),
                Ok(None) => {
                    return Outcome::Failed(format!(
                        "the campaign's image ({sha256}) is no longer stored"
                    ))
                }
                Err(e) => return Outcome::Retry(format!("database: {e}"), Duration::from_secs(1)),
            },
            None => None,
        };
        let content = match data_url {
            Some(data_url) => MessageContent::Image {
                data_url: data_url.to_string(),
                caption: text,
            },
            None => MessageContent::Text {
                body: text.unwrap_or_default(),
            },
        };
        let outbound = OutboundMessage {
            phone: c.phone.clone(),
            message_id: c.message_id.clone(),
            content,
        };
        self.classify(c, self.gateway.send(&token, &outbound).await)
    }

    /// A single send: its message is on its queue row; an image is loaded like a campaign's.
    async fn send_single(&self, c: &Claimed, content: &SingleContent) -> Outcome {
        let token = match self.token(c.session_id).await {
            Ok(Some(token)) => token,
            Ok(None) => return Outcome::Failed("the message's session no longer exists".into()),
            Err(e) => return Outcome::Retry(format!("database: {e}"), Duration::from_secs(1)),
        };
        let (_image_slot, image) = match content.image() {
            None => (None, None),
            Some(sha256) => {
                let Ok(permit) = self.image_sends.acquire().await else {
                    return Outcome::Retry("shutting down".into(), Duration::from_secs(1));
                };
                match self.media.data_url(sha256).await {
                    Ok(Some(url)) => (Some(permit), Some(url)),
                    Ok(None) => {
                        return Outcome::Failed(format!(
                            "the message's image ({sha256}) is no longer stored"
                        ))
                    }
                    Err(e) => {
                        return Outcome::Retry(format!("database: {e}"), Duration::from_secs(1))
                    }
                }
            }
        };
        let outbound = OutboundMessage {
            phone: c.phone.clone(),
            message_id: c.message_id.clone(),
            content: content.to_gateway(image.as_deref()),
        };
        self.classify(c, self.gateway.send(&token, &outbound).await)
    }

    fn classify<T>(&self, c: &Claimed, result: Result<T, GatewayError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Sent(Utc::now()),
            Err(GatewayError::Permanent { message }) => Outcome::Failed(message),
            Err(GatewayError::Transient {
                message,
                retry_after,
            }) => {
                if c.attempts >= self.config.max_attempts {
                    Outcome::Failed(format!("{message} (after {} attempts)", c.attempts))
                } else {
                    Outcome::Retry(message, retry_after.unwrap_or_else(|| backoff(c.attempts)))
                }
            }
        }
    }

    /// Step 3: outcomes and queue changes in one transaction.
    async fn record(&self, sends: Vec<(Claimed, Outcome)>) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut batch = OutcomeBatch::default();
        let mut campaigns: Vec<Uuid> = Vec::new();
        let (mut sent, mut failed) = (0u64, 0u64);
        for (c, outcome) in sends {
            if c.is_campaign() {
                campaigns.push(c.campaign_id);
            }
            let command = match outcome {
                Outcome::Sent(at) => {
                    sent += 1;
                    DeliveryCommand::RecordSent {
                        message_id: c.message_id.clone(),
                        at,
                    }
                }
                Outcome::Failed(reason) => {
                    failed += 1;
                    DeliveryCommand::RecordFailed { reason, at: now }
                }
                Outcome::Retry(reason, after) => {
                    batch.retry_c.push(c.campaign_id);
                    batch.retry_p.push(c.phone);
                    batch.retry_after.push(after.as_secs_f64());
                    batch.retry_error.push(reason);
                    continue;
                }
            };
            batch.commands.push((c.delivery_id(), command));
            batch.done_c.push(c.campaign_id);
            batch.done_p.push(c.phone);
        }
        // Losing a race to a younger transaction (a receipt for the same recipient) is passing:
        // do the same work again in a fresh transaction rather than leave the leases to expire.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.write_outcomes(&batch).await {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.is_retryable() => {
                    tracing::debug!(attempt, error = %e, "outcome batch raced a younger writer; again");
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        metrics::counter!("herald_dispatch_sent_total").increment(sent);
        metrics::counter!("herald_dispatch_failed_total").increment(failed);
        metrics::counter!("herald_dispatch_retried_total").increment(batch.retry_c.len() as u64);

        campaigns.sort();
        campaigns.dedup();
        self.complete_finished(&campaigns).await
    }

    /// The transaction of step 3.
    async fn write_outcomes(&self, batch: &OutcomeBatch) -> Result<(), store::StoreError> {
        let mut tx = self.pool.begin().await?;
        store::plan_as_key_lookups(&mut tx).await?;
        let outcomes =
            store::execute_batch::<Delivery>(&mut tx, batch.commands.clone(), &()).await?;
        for o in outcomes {
            if let Err(e) = o {
                tracing::warn!(error = %e, "outcome not recorded");
            }
        }
        delete_rows(&mut tx, &batch.done_c, &batch.done_p).await?;
        if !batch.retry_c.is_empty() {
            sqlx::query(
                "UPDATE dispatch_queue q SET state = 'ready', lease_until = NULL, in_doubt = false,
                        not_before = now() + make_interval(secs => r.after), last_error = r.error
                   FROM UNNEST($1::uuid[], $2::text[], $3::float8[], $4::text[]) AS r(c, p, after, error)
                  WHERE q.campaign_id = r.c AND q.phone = r.p",
            )
            .bind(&batch.retry_c)
            .bind(&batch.retry_p)
            .bind(&batch.retry_after)
            .bind(&batch.retry_error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Step 4: a campaign whose queue is empty has every recipient final.
    async fn complete_finished(&self, campaigns: &[Uuid]) -> anyhow::Result<()> {
        let finished: Vec<Uuid> = sqlx::query_scalar(
            "SELECT c FROM UNNEST($1::uuid[]) AS c
              WHERE NOT EXISTS (SELECT 1 FROM dispatch_queue q WHERE q.campaign_id = c)",
        )
        .bind(campaigns)
        .fetch_all(&self.pool)
        .await?;
        if finished.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        let commands = finished
            .iter()
            .map(|id| (id.to_string(), CampaignCommand::Complete { at: now }))
            .collect();
        for (id, outcome) in finished
            .iter()
            .zip(store::execute_batch::<Campaign>(&mut tx, commands, &()).await?)
        {
            match outcome {
                Ok(events) if !events.is_empty() => {
                    tracing::info!(campaign = %id, "campaign completed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(campaign = %id, error = %e, "campaign not completed"),
            }
        }
        // after the events: the first write of this transaction must be the append (see
        // StoreError::OutOfOrder)
        sqlx::query("DELETE FROM campaign_holds WHERE campaign_id = ANY($1)")
            .bind(&finished)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The campaign's compiled message; compile failures are cached (they are permanent),
    /// database errors are not (they are passing).
    async fn message(
        &self,
        campaign_id: Uuid,
    ) -> Result<Arc<Result<CompiledMessage, String>>, String> {
        if let Some(entry) = self.messages.lock().await.get(&campaign_id) {
            return Ok(entry.clone());
        }
        let loaded = match store::load::<Campaign>(&self.pool, &campaign_id.to_string()).await {
            Ok(Some((campaign, _))) => compile(campaign.message),
            Ok(None) => Err("the campaign does not exist".to_string()),
            Err(e) => return Err(format!("database: {e}")),
        };
        let entry = Arc::new(loaded);
        let mut cache = self.messages.lock().await;
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(campaign_id, entry.clone());
        Ok(entry)
    }

    /// The session's gateway token, cached briefly (a deleted session stops sending within 30 s).
    async fn token(&self, session_id: Uuid) -> Result<Option<String>, sqlx::Error> {
        let now = tokio::time::Instant::now();
        if let Some((token, at)) = self.tokens.lock().await.get(&session_id) {
            if now.duration_since(*at) < Duration::from_secs(30) {
                return Ok(token.clone());
            }
        }
        let token: Option<String> = sqlx::query_scalar(
            "SELECT gateway_token FROM session_credentials WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        self.tokens
            .lock()
            .await
            .insert(session_id, (token.clone(), now));
        Ok(token)
    }
}

fn claimed_from(r: &sqlx::postgres::PgRow) -> anyhow::Result<Claimed> {
    let vars: sqlx::types::Json<serde_json::Map<String, serde_json::Value>> = r.try_get("vars")?;
    let content: Option<sqlx::types::Json<serde_json::Value>> = r.try_get("content")?;
    let content = match content {
        // a row Herald wrote itself; one it cannot read is sent as nothing and fails below
        Some(c) => Some(serde_json::from_value(c.0).unwrap_or(SingleContent::Unreadable)),
        None => None,
    };
    Ok(Claimed {
        campaign_id: r.try_get("campaign_id")?,
        phone: r.try_get("phone")?,
        tenant_id: r.try_get("tenant_id")?,
        session_id: r.try_get("session_id")?,
        message_id: r.try_get("message_id")?,
        vars: vars.0,
        attempts: r.try_get("attempts")?,
        in_doubt: r.try_get("in_doubt")?,
        waiting_quota: r.try_get("waiting_quota")?,
        content,
        pacing: Pacing {
            min_interval_ms: r.try_get("pace_min_ms")?,
            max_interval_ms: r.try_get("pace_max_ms")?,
        },
    })
}

impl Dispatcher {
    /// Quota (decision 7): each tenant's first-time recipients are granted from its current
    /// window in one upsert; the rest go back to the queue flagged `waiting_quota`, due when the
    /// window turns (or, for an expired subscription, when the operator renews it), together with
    /// every other due first-time recipient of their campaigns, so they are not claimed again and
    /// again. Returns the rows to send, and the unlimited tenants' counts to record.
    async fn apply_quota(
        &self,
        tx: &mut PgConnection,
        claimed: Vec<Claimed>,
    ) -> anyhow::Result<(Vec<Claimed>, Vec<(Uuid, i64)>)> {
        let mut wanted: HashMap<Uuid, i64> = HashMap::new();
        for c in claimed.iter().filter(|c| c.needs_quota()) {
            *wanted.entry(c.tenant_id).or_default() += 1;
        }
        let mut unlimited = Vec::new();
        let mut waiting_granted: Vec<(Uuid, String)> = Vec::new();
        if wanted.is_empty() {
            return Ok((claimed, unlimited));
        }
        let now = Utc::now();
        let (window_start, window_end) = self.config.quota_window.around(now);
        let tenants: Vec<Uuid> = wanted.keys().copied().collect();
        let plans: HashMap<Uuid, quota::TenantPlan> = quota::plans(&mut *tx, &tenants)
            .await?
            .into_iter()
            .collect();
        // tenant -> (granted count, when the refused ones are due again)
        let mut grants: HashMap<Uuid, (i64, Option<chrono::DateTime<Utc>>)> = HashMap::new();
        for (tenant, n) in &wanted {
            let plan = plans.get(tenant).cloned().unwrap_or(quota::TenantPlan {
                plan: Plan::Basic,
                expires_at: None,
            });
            if plan.expired(now) {
                grants.insert(*tenant, (0, None));
                continue;
            }
            match plan.plan.limits().messages_per_window {
                None => {
                    unlimited.push((*tenant, *n));
                    grants.insert(*tenant, (*n, Some(window_end)));
                }
                Some(limit) => {
                    let granted = quota::grant(&mut *tx, *tenant, window_start, *n, limit).await?;
                    grants.insert(*tenant, (granted, Some(window_end)));
                }
            }
        }
        let mut keep = Vec::with_capacity(claimed.len());
        // due again at: (campaign, phone) per time; None = when the plan is renewed
        let mut refused: HashMap<Option<chrono::DateTime<Utc>>, QueueKeys> = HashMap::new();
        for c in claimed {
            if !c.needs_quota() {
                keep.push(c);
                continue;
            }
            let entry = grants.entry(c.tenant_id).or_insert((0, None));
            if entry.0 > 0 {
                entry.0 -= 1;
                if c.waiting_quota {
                    waiting_granted.push((c.campaign_id, c.phone.clone()));
                }
                keep.push(c);
            } else {
                let (cs, ps) = refused.entry(entry.1).or_default();
                cs.push(c.campaign_id);
                ps.push(c.phone);
            }
        }
        for (due, (campaigns, phones)) in refused {
            // 'infinity' is also where pause parks rows; a hold tells them apart
            let due_sql = due
                .map(|d| d.to_rfc3339())
                .unwrap_or_else(|| "infinity".into());
            sqlx::query(
                "UPDATE dispatch_queue q
                    SET state = 'ready', attempts = q.attempts - 1, lease_until = NULL,
                        waiting_quota = true, not_before = $3::timestamptz
                   FROM UNNEST($1::uuid[], $2::text[]) AS r(c, p)
                  WHERE q.campaign_id = r.c AND q.phone = r.p",
            )
            .bind(&campaigns)
            .bind(&phones)
            .bind(&due_sql)
            .execute(&mut *tx)
            .await?;
            let mut distinct = campaigns;
            distinct.sort();
            distinct.dedup();
            let parked = sqlx::query(
                "UPDATE dispatch_queue SET waiting_quota = true, not_before = $2::timestamptz
                  WHERE campaign_id = ANY($1) AND state = 'ready' AND attempts = 0
                    AND content IS NULL AND not_before <= now()",
            )
            .bind(&distinct)
            .bind(&due_sql)
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                campaigns = distinct.len(),
                parked = parked.rows_affected(),
                due = %due_sql,
                "recipients wait for quota"
            );
        }
        if !waiting_granted.is_empty() {
            let (cs, ps): (Vec<Uuid>, Vec<String>) = waiting_granted.into_iter().unzip();
            sqlx::query(
                "UPDATE dispatch_queue q SET waiting_quota = false
                   FROM UNNEST($1::uuid[], $2::text[]) AS r(c, p)
                  WHERE q.campaign_id = r.c AND q.phone = r.p",
            )
            .bind(&cs)
            .bind(&ps)
            .execute(&mut *tx)
            .await?;
        }
        Ok((keep, unlimited))
    }
}

/// Marks each paced session busy while its send is in flight (until the lease ends, in case this
/// worker dies) and draws the interval that will follow the send, in the claim's transaction
/// (the session's row is locked by the claim).
async fn reserve_pacing(
    tx: &mut PgConnection,
    claimed: &[Claimed],
    lease: Duration,
) -> sqlx::Result<()> {
    let mut sessions = Vec::new();
    let mut intervals = Vec::new();
    for c in claimed.iter().filter(|c| c.pacing.is_paced()) {
        let (min, max) = (c.pacing.min_interval_ms, c.pacing.max_interval_ms);
        let ms = if max > min {
            min + (rand::random::<u32>() % ((max - min) as u32 + 1)) as i32
        } else {
            max
        };
        sessions.push(c.session_id);
        intervals.push(ms);
    }
    if sessions.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE session_pacing p
            SET next_at = clock_timestamp() + make_interval(secs => $3), last_interval_ms = r.ms
           FROM UNNEST($1::uuid[], $2::int[]) AS r(s, ms)
          WHERE p.session_id = r.s",
    )
    .bind(&sessions)
    .bind(&intervals)
    .bind(lease.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn compile(message: Option<MessageSpec>) -> Result<CompiledMessage, String> {
    let message = message.ok_or("the campaign has no message")?;
    match message.kind {
        TemplateKind::Text => {
            let body = message.body.ok_or("the campaign's template has no body")?;
            let compiled = body.compile().map_err(|e| e.to_string())?;
            Ok(CompiledMessage {
                body: Some(compiled),
                caption: None,
                image: None,
            })
        }
        TemplateKind::Image => {
            let image = message
                .image
                .ok_or("the campaign's template has no processed image")?;
            let caption = message
                .caption
                .map(|c| c.compile().map_err(|e| e.to_string()))
                .transpose()?;
            Ok(CompiledMessage {
                body: None,
                caption,
                image: Some(image.sha256),
            })
        }
    }
}

/// Exponential backoff with jitter for retryable gateway errors: about 1 s, 2 s, 4 s, ... ≤ 5 min.
pub fn backoff(attempt: i32) -> Duration {
    let base = 1000u64.saturating_mul(1u64 << attempt.clamp(0, 8).saturating_sub(1).max(0) as u32);
    let base = base.min(300_000);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

/// Records the message id of each claimed recipient in `message_index` (webhook receipts are
/// matched there), in one statement for the batch. A resend reuses the id: nothing to add.
async fn index_messages(conn: &mut sqlx::PgConnection, claimed: &[Claimed]) -> sqlx::Result<()> {
    if claimed.is_empty() {
        return Ok(());
    }
    let campaigns: Vec<Uuid> = claimed.iter().map(|c| c.campaign_id).collect();
    let phones: Vec<&str> = claimed.iter().map(|c| c.phone.as_str()).collect();
    sqlx::query(
        "INSERT INTO message_index (message_id, delivery_id, tenant_id, session_id)
         SELECT q.message_id, q.campaign_id::text || ':' || q.phone, q.tenant_id, q.session_id
           FROM dispatch_queue q JOIN UNNEST($1::uuid[], $2::text[]) AS k(c, p)
             ON q.campaign_id = k.c AND q.phone = k.p
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&campaigns)
    .bind(&phones)
    .execute(&mut *conn)
    .await?;
    Ok(())
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
