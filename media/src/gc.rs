//! Media lifetime (decision 0024): a `media` row is deleted once nothing that can still send refers
//! to it and it has not been used for a grace period.
//!
//! Referring to an image, for this purpose:
//! - a template (the `templates` read model, any status: an inactive one can be turned on again);
//! - a single image send still in `dispatch_queue` (queued, waiting for its pace, leased, retrying);
//! - a campaign that can still dispatch: `scheduled`, `running` or `paused` in the read model,
//!   or held for its schedule or a pause (`campaign_holds`), or with rows left in
//!   `dispatch_queue`, or an active recurring campaign; its image is read from its own
//!   `CampaignCreated` event (the event store is the truth; the read models only add
//!   candidates).
//!
//! "Used" (`media.last_used_at`) is renewed when the image is stored or stored again
//! ([`crate::store`]: a template created or changed, a single send accepted) and when a campaign
//! or a recurring run is created with it ([`crate::touch`], in the campaign's transaction). A
//! request stores its image BEFORE it writes what refers to it, and read models trail the events
//! by moments, so the grace period (24 h by default) is what makes the gap safe: a row used a
//! moment ago is never a candidate. A campaign created from an old template while that template is
//! being deleted touches the row in its own transaction: the collector's DELETE then waits for that
//! transaction, re-checks the row, and finds it used; if the collector won, the touch finds no row
//! and the campaign is refused (nothing is sent without its image).

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

/// How often and how conservatively the collector runs.
#[derive(Debug, Clone, Copy)]
pub struct GcConfig {
    /// Time between runs (`HERALD_MEDIA_GC_INTERVAL_SECS`, default an hour).
    pub every: Duration,
    /// How long an unreferenced image is kept after its last use (`HERALD_MEDIA_GRACE_SECS`,
    /// default 24 hours).
    pub grace: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            every: Duration::from_secs(3_600),
            grace: Duration::from_secs(24 * 3_600),
        }
    }
}

/// Candidates looked at per run; the rest wait for the next run.
const BATCH: i64 = 500;

/// Deletes the images no template, queued single send or campaign that can still dispatch refers
/// to and that were last used more than `grace` ago. Returns their hashes.
pub async fn collect(pool: &PgPool, grace: Duration) -> sqlx::Result<Vec<String>> {
    // Cheap first: the rows past the grace period (an index range; usually none).
    let candidates: Vec<String> = sqlx::query_scalar(
        "SELECT sha256 FROM media WHERE last_used_at < now() - make_interval(secs => $1)
          ORDER BY last_used_at LIMIT $2",
    )
    .bind(grace.as_secs_f64())
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // The grace condition is repeated in the DELETE: a row touched since the SELECT (or while the
    // DELETE waited for its lock) is re-checked on its newest version and kept.
    let deleted: Vec<String> = sqlx::query_scalar(
        "WITH live_campaigns AS (
             SELECT id FROM campaigns WHERE status IN ('scheduled', 'running', 'paused')
             UNION SELECT campaign_id FROM campaign_holds WHERE reason <> 'cancelled'
             UNION SELECT campaign_id FROM recurring_campaigns WHERE active
             UNION SELECT DISTINCT campaign_id FROM dispatch_queue WHERE content IS NULL
         ), live AS (
             SELECT image_sha256 AS sha256 FROM templates WHERE image_sha256 = ANY($1)
             UNION
             SELECT content->>'media' FROM dispatch_queue
              WHERE content IS NOT NULL AND content->>'type' = 'image'
                AND content->>'media' = ANY($1)
             UNION
             SELECT e.payload::jsonb #>> '{CampaignCreated,message,image,sha256}'
               FROM live_campaigns c
               JOIN events e ON e.aggregate_type = 'Campaign' AND e.aggregate_id = c.id::text
                            AND e.event_type = 'CampaignCreated'
         )
         DELETE FROM media m
          WHERE m.sha256 = ANY($1)
            AND m.last_used_at < now() - make_interval(secs => $2)
            AND NOT EXISTS (SELECT 1 FROM live l WHERE l.sha256 = m.sha256)
         RETURNING m.sha256",
    )
    .bind(&candidates)
    .bind(grace.as_secs_f64())
    .fetch_all(pool)
    .await?;
    // The candidates kept are in use: their grace starts again, so the next run looks at the
    // next-oldest images instead of the same in-use ones (which would stop collection for good
    // once BATCH images past their grace are in use).
    sqlx::query(
        "UPDATE media SET last_used_at = now()
          WHERE sha256 = ANY($1) AND last_used_at < now() - make_interval(secs => $2)",
    )
    .bind(&candidates)
    .bind(grace.as_secs_f64())
    .execute(pool)
    .await?;
    if !deleted.is_empty() {
        metrics::counter!("herald_media_collected_total").increment(deleted.len() as u64);
        tracing::info!(
            deleted = deleted.len(),
            kept = candidates.len() - deleted.len(),
            "unused images deleted"
        );
    }
    Ok(deleted)
}

/// Runs [`collect`] every `config.every` until `shutdown` turns true. Every worker process runs
/// it; concurrent runs are harmless (each row is deleted once, under its row lock).
pub fn spawn(
    pool: PgPool,
    config: GcConfig,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = config.every.max(Duration::from_millis(100));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() || pool.is_closed() {
                return;
            }
            if let Err(e) = collect(&pool, config.grace).await {
                tracing::warn!(error = %e, "collecting unused images failed; the next run retries");
            }
        }
    })
}
