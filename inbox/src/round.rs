//! The processor's loop: a round reads the log after its cursor and, every
//! [`RETRY_CHECK_EVERY`], the retries that are due; a batch that fails is retried when its error
//! is retryable, then handed to [`crate::parking`] to find the posts that fail alone. When the
//! database itself cannot be used the loop backs off and nothing moves.

use std::sync::Arc;
use std::time::Duration;

use herald_domain::delivery::Delivery;
use herald_domain::store::KnownAggregates;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};

use crate::claim::{process_batch, BatchFailure, Claim};
use crate::cursor::Source;
use crate::record::prune;
use crate::{parking, InboxConfig};

/// How often the processor looks for retries that have come due.
pub(crate) const RETRY_CHECK_EVERY: Duration = Duration::from_millis(250);

pub(crate) async fn run(
    pool: PgPool,
    config: InboxConfig,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    let mut last_prune = tokio::time::Instant::now();
    let mut last_retry_check: Option<tokio::time::Instant> = None;
    let mut known = KnownAggregates::<Delivery>::new(config.known_deliveries);
    while !*shutdown.borrow() {
        let started = tokio::time::Instant::now();
        let retries_due = last_retry_check.is_none_or(|at| at.elapsed() >= RETRY_CHECK_EVERY);
        let round = async {
            let mut n = process(&pool, &config, Source::Log, &mut known).await?;
            if retries_due {
                last_retry_check = Some(tokio::time::Instant::now());
                n += process(&pool, &config, Source::Retries, &mut known).await?;
            }
            anyhow::Ok(n)
        };
        match round.await {
            Ok(0) => {
                failures = 0;
                if last_prune.elapsed() > Duration::from_secs(600) {
                    last_prune = tokio::time::Instant::now();
                    if let Err(e) = prune(&pool, config.retention).await {
                        tracing::warn!(error = %e, "webhook inbox prune failed");
                    }
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(config.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(n) => {
                failures = 0;
                // a steady stream: let the next batch gather more (see `min_round_interval`)
                if (n as i64) < config.batch_size {
                    tokio::select! {
                        _ = tokio::time::sleep_until(started + config.min_round_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
            Err(e) => {
                // the database itself is unreachable: nothing moved, try again shortly
                failures += 1;
                tracing::error!(error = %format!("{e:#}"), failures, "webhook inbox processing failed");
                let backoff = Duration::from_millis(200 * 2u64.pow(failures.min(5)));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// Processes at most one batch from `source` (and, if it failed, its parts down to the rows
/// that fail alone).
/// Returns how many rows it handled; 0 when nothing was there. An `Err` means the database could
/// not be used.
pub(crate) async fn process(
    pool: &PgPool,
    config: &InboxConfig,
    source: Source,
    known: &mut KnownAggregates<Delivery>,
) -> anyhow::Result<usize> {
    let mut failure = None;
    // a retryable store error (a concurrent writer, or an older transaction) clears on retry
    for _ in 0..3 {
        match process_batch(pool, config, source, Claim::Batch, known).await {
            Ok(n) => return Ok(n),
            Err(f) if f.retryable => failure = Some(f),
            Err(f) => {
                failure = Some(f);
                break;
            }
        }
    }
    let Some(failure) = failure else {
        return Ok(0);
    };
    let Some(ids) = failure.ids else {
        return Err(failure.error);
    };
    tracing::warn!(rows = ids.len(), error = %format!("{:#}", failure.error), "webhook batch failed; splitting it to find the posts that fail");
    parking::isolate(pool, config, source, &ids, known).await?;
    Ok(ids.len())
}

/// Processes the rows `ids` (a part of a failed batch, in its order) in one transaction,
/// retrying a retryable store error (a concurrent writer, an older transaction) twice.
pub(crate) async fn process_range(
    pool: &PgPool,
    config: &InboxConfig,
    source: Source,
    ids: &[i64],
    known: &mut KnownAggregates<Delivery>,
) -> Result<(), BatchFailure> {
    let mut last = None;
    for _ in 0..3 {
        match process_batch(pool, config, source, Claim::Range(ids), known).await {
            Ok(_) => return Ok(()),
            Err(f) => {
                let retryable = f.retryable;
                last = Some(f);
                if !retryable {
                    break;
                }
            }
        }
    }
    match last {
        Some(f) => Err(f),
        None => Ok(()),
    }
}
