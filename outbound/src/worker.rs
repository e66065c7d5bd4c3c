//! The delivery worker: leases due rows from the queue and posts them, signed, to their
//! endpoints (docs/webhooks-out.md).
//!
//! - Rows are leased a batch per endpoint ([`OutboundConfig::batch`]); a batch is posted with at
//!   most [`OutboundConfig::per_endpoint`] requests at once, and at most
//!   [`OutboundConfig::endpoints`] endpoints are served at once: the worker's whole concurrency
//!   is bounded, and an endpoint that is slow holds only its own slot. The loop takes new rows
//!   whenever a batch ends, the projector queues something, or every [`OutboundConfig::poll`].
//! - Before every attempt the URL is checked again under the SSRF rules (its host may resolve
//!   elsewhere now) and the request goes to exactly the vetted addresses, following no redirect,
//!   within [`OutboundConfig::timeout`].
//! - A 2xx is delivered; 410 disables the endpoint; anything else, a timeout or a network error
//!   is retried on the schedule ([`crate::schedule`]), `Retry-After` honoured. Every attempt is
//!   logged.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::address::{self, UrlError};
use crate::queue::{self, AttemptResult, Claimed};
use crate::schedule;
use crate::signing::{signature_header, SigningSecret};
use crate::OutboundConfig;

/// Runs the worker until `shutdown` turns true; `queued` wakes it when rows were queued.
pub fn spawn(
    pool: PgPool,
    config: OutboundConfig,
    queued: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = Arc::new(config);
        let mut busy: HashSet<Uuid> = HashSet::new();
        let mut batches: JoinSet<Uuid> = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Some(done) = batches.try_join_next() {
                if let Ok(endpoint) = done {
                    busy.remove(&endpoint);
                }
            }
            let free = config.endpoints.saturating_sub(busy.len());
            if free > 0 {
                let busy_ids: Vec<Uuid> = busy.iter().copied().collect();
                match queue::claim(&pool, &busy_ids, free as i64, config.batch, config.lease())
                    .await
                {
                    Ok(rows) => {
                        let mut by_endpoint: HashMap<Uuid, Vec<Claimed>> = HashMap::new();
                        for row in rows {
                            by_endpoint.entry(row.endpoint_id).or_default().push(row);
                        }
                        for (endpoint, rows) in by_endpoint {
                            busy.insert(endpoint);
                            let (pool, config) = (pool.clone(), config.clone());
                            batches.spawn(async move {
                                deliver_batch(&pool, &config, endpoint, rows).await;
                                endpoint
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot take webhook deliveries now")
                    }
                }
            }
            tokio::select! {
                _ = queued.notified() => {}
                Some(done) = batches.join_next(), if !batches.is_empty() => {
                    if let Ok(endpoint) = done {
                        busy.remove(&endpoint);
                    }
                }
                _ = tokio::time::sleep(config.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        // attempts in flight may finish; what does not is retried when its lease ends
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while batches.join_next().await.is_some() {}
        })
        .await;
        batches.abort_all();
    })
}

/// Where and with what an endpoint's messages are posted.
struct Target {
    url: String,
    /// The current secret, then the previous one while it still signs.
    secrets: Vec<SigningSecret>,
}

async fn target(pool: &PgPool, endpoint: Uuid) -> anyhow::Result<Option<Target>> {
    let row: Option<(String, bool, String, Option<String>)> = sqlx::query_as(
        "SELECT url, enabled, secret,
                CASE WHEN previous_secret_expires_at > now() THEN previous_secret END
           FROM webhook_endpoints WHERE id = $1",
    )
    .bind(endpoint)
    .fetch_optional(pool)
    .await?;
    let Some((url, enabled, secret, previous)) = row else {
        return Ok(None);
    };
    if !enabled {
        return Ok(None);
    }
    let secrets: Vec<SigningSecret> = [Some(secret), previous]
        .into_iter()
        .flatten()
        .filter_map(|s| SigningSecret::parse(&s))
        .collect();
    if secrets.is_empty() {
        anyhow::bail!("endpoint {endpoint} has no usable signing secret");
    }
    Ok(Some(Target { url, secrets }))
}

async fn deliver_batch(pool: &PgPool, config: &OutboundConfig, endpoint: Uuid, rows: Vec<Claimed>) {
    let target = match target(pool, endpoint).await {
        Ok(Some(t)) => t,
        // deleted (its rows went with it) or disabled (they wait, leased, until it is enabled)
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(%endpoint, error = %format!("{e:#}"), "cannot deliver webhooks now");
            return;
        }
    };
    let client: Mutex<Option<(Vec<SocketAddr>, reqwest::Client)>> = Mutex::new(None);
    let gone = AtomicBool::new(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(Claimed, AttemptResult)>();
    let (target, client, gone) = (&target, &client, &gone);
    // the senders go with the stream when it ends (`join!` drops a finished future), and with
    // them the recorder's loop. The stream is awaited in a block of its own: without it the
    // closure's borrows make the batch's future too general for `JoinSet::spawn`.
    let attempts =
        futures::stream::iter(rows).for_each_concurrent(config.per_endpoint, move |row| {
            let done_tx = done_tx.clone();
            async move {
                // after a 410 the rest waits, leased, until the endpoint is enabled again
                if gone.load(Ordering::Relaxed) {
                    return;
                }
                let result = attempt(config, target, client, &row).await;
                if result.gone {
                    gone.store(true, Ordering::Relaxed);
                }
                metrics::counter!("herald_webhook_attempts_total",
                "outcome" => match (&result.error, result.next_attempt_at) {
                    (None, _) => "delivered",
                    (Some(_), Some(_)) => "retry",
                    (Some(_), None) => "failed",
                })
                .increment(1);
                let _ = done_tx.send((row, result));
            }
        });
    #[allow(clippy::redundant_async_block)]
    let attempts = async move { attempts.await };
    // records whatever finished meanwhile, in one transaction, while the attempts go on
    let recorder = async {
        while let Some(first) = done_rx.recv().await {
            let mut results = vec![first];
            while let Ok(more) = done_rx.try_recv() {
                results.push(more);
            }
            if let Err(e) = queue::record(pool, &results).await {
                // their leases end and the rows are tried again: at least once
                tracing::warn!(%endpoint, error = %format!("{e:#}"), "webhook attempts not recorded");
            }
        }
    };
    tokio::join!(attempts, recorder);
}

/// One attempt of one row.
async fn attempt(
    config: &OutboundConfig,
    target: &Target,
    client: &Mutex<Option<(Vec<SocketAddr>, reqwest::Client)>>,
    row: &Claimed,
) -> AttemptResult {
    let attempt = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
    let failed = |status_code: Option<u16>, error: String, retry_after: Option<Duration>| {
        let next = schedule::next_delay(&config.retry_schedule, attempt, retry_after)
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| Utc::now() + d);
        AttemptResult {
            status_code,
            error: Some(error),
            next_attempt_at: next,
            gone: false,
        }
    };
    let url = match address::parse(&target.url) {
        Ok(url) => url,
        Err(e) => return failed(None, format!("refused: {e}"), None),
    };
    let addrs = match address::vet(&url, config.allow_private).await {
        Ok(addrs) => addrs,
        Err(UrlError::Refused(m)) => return failed(None, format!("refused: {m}"), None),
        Err(UrlError::Unresolved(m)) => return failed(None, m, None),
    };
    let http = {
        let mut cached = client.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some((vetted, http)) if *vetted == addrs => http.clone(),
            _ => match address::pinned_client(addrs.clone(), config.timeout) {
                Ok(http) => {
                    *cached = Some((addrs, http.clone()));
                    http
                }
                Err(e) => return failed(None, format!("cannot build the HTTP client: {e}"), None),
            },
        }
    };
    let timestamp = Utc::now().timestamp();
    let secrets: Vec<&SigningSecret> = target.secrets.iter().collect();
    let signature = signature_header(&secrets, &row.event_id, timestamp, row.payload.as_bytes());
    let sent = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &row.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(row.payload.clone())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            let code = status.as_u16();
            if status.is_success() {
                return AttemptResult {
                    status_code: Some(code),
                    error: None,
                    next_attempt_at: None,
                    gone: false,
                };
            }
            if code == 410 {
                return AttemptResult {
                    status_code: Some(code),
                    error: Some("HTTP 410 Gone: the endpoint is disabled".into()),
                    next_attempt_at: None,
                    gone: true,
                };
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| schedule::parse_retry_after(v, Utc::now()));
            let what = if status.is_redirection() {
                format!("HTTP {code} (redirects are not followed)")
            } else {
                format!("HTTP {code}")
            };
            failed(Some(code), what, retry_after)
        }
        Err(e) if e.is_timeout() => failed(
            None,
            format!("no answer within {} s", config.timeout.as_secs()),
            None,
        ),
        Err(e) => failed(None, format!("network error: {}", e.without_url()), None),
    }
}
