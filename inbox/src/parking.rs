//! A failed inbox batch is split down to the posts that fail on their own
//! (docs/decisions/0036-inbox-posts-are-split-and-parked.md): the rest is applied at once, and
//! each failing post becomes a retry (`webhook_inbox_retries`), parked after
//! [`InboxConfig::park_after_attempts`] attempts of its own. Parked posts are listed and retried
//! by `herald projections parked` / `retry --inbox`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use herald_domain::delivery::Delivery;
use herald_domain::store::KnownAggregates;
use herald_projections::maintenance::Selection;
use sqlx::PgPool;
use uuid::Uuid;

use super::{process_range, record_failure, InboxConfig, Source};

/// How a range of the failed batch is to be handled (as the projectors split theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Known to fail: split it without trying it whole.
    Failing,
    /// The left half of a split: try it whole.
    Left,
    /// The right half: known to fail when its left half went through whole, else try it.
    Right,
}

/// Splits the failed batch `ids` (in its order) in halves until the posts that fail alone are
/// found; records those as failures and processes every other one. A batch of 500 with one bad
/// post takes about 9 transactions, with no pause between them. An `Err` means the database
/// could not be used (nothing more was recorded; the next round starts where this one stopped).
pub(super) async fn isolate(
    pool: &PgPool,
    config: &InboxConfig,
    source: Source,
    ids: &[i64],
    known: &mut KnownAggregates<Delivery>,
) -> anyhow::Result<()> {
    let mut todo = vec![(0, ids.len(), Mode::Failing)];
    let mut left_applied = false;
    while let Some((lo, hi, mode)) = todo.pop() {
        let known_failing = match mode {
            Mode::Failing => true,
            Mode::Right => left_applied,
            Mode::Left => false,
        };
        left_applied = false;
        let mut error = None;
        if !known_failing || hi - lo == 1 {
            match process_range(pool, config, source, &ids[lo..hi], known).await {
                Ok(()) => {
                    left_applied = mode == Mode::Left;
                    continue;
                }
                // failed before it could read a row: the database is away
                Err(f) if f.ids.is_none() => return Err(f.error),
                Err(f) => error = Some(f.error),
            }
        }
        if hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            todo.push((mid, hi, Mode::Right));
            todo.push((lo, mid, Mode::Left));
            continue;
        }
        if let Some(error) = error {
            record_failure(pool, config, source, ids[lo], &error).await?;
        }
    }
    Ok(())
}

/// One parked webhook post.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ParkedPost {
    pub id: i64,
    pub source: String,
    pub session_id: Option<Uuid>,
    pub event_type: String,
    pub received_at: DateTime<Utc>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub parked_at: DateTime<Utc>,
}

/// The parked webhook posts, oldest first.
pub async fn parked_posts(pool: &PgPool) -> anyhow::Result<Vec<ParkedPost>> {
    Ok(sqlx::query_as(
        "SELECT w.id, w.source, w.session_id, w.event_type, w.received_at, r.attempts,
                r.last_error, r.parked_at
           FROM webhook_inbox_retries r JOIN webhook_inbox w ON w.id = r.inbox_id
          WHERE r.parked_at IS NOT NULL
          ORDER BY r.parked_at, w.id",
    )
    .fetch_all(pool)
    .await?)
}

/// `parked_posts` as `herald projections parked` prints them: one block per post.
pub fn format_parked_posts(posts: &[ParkedPost]) -> String {
    let mut out = String::new();
    for p in posts {
        let session = p.session_id.map(|s| s.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "inbox post {}: {} {} of session {session}, received {}\n  parked at {} after {} attempt(s)\n  error: {}",
            p.id,
            p.source,
            p.event_type,
            p.received_at.to_rfc3339(),
            p.parked_at.to_rfc3339(),
            p.attempts,
            p.last_error.as_deref().unwrap_or("")
        );
    }
    out
}

/// Makes parked posts due again (all, or by inbox id); the processor takes them within a
/// quarter of a second. One that fails again is parked again at once, its attempts counted.
/// Returns how many were made due.
pub async fn retry_parked(pool: &PgPool, selection: &Selection) -> anyhow::Result<u64> {
    let ids = match selection {
        Selection::All => None,
        Selection::Positions(ids) => Some(ids.clone()),
    };
    Ok(sqlx::query(
        "UPDATE webhook_inbox_retries SET parked_at = NULL, next_attempt_at = now()
          WHERE parked_at IS NOT NULL AND ($1::bigint[] IS NULL OR inbox_id = ANY($1))",
    )
    .bind(ids)
    .execute(pool)
    .await?
    .rows_affected())
}
