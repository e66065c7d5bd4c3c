//! What `herald projections ...` does: list the projectors, rebuild a read model, list the
//! parked events and retry them (docs/running.md, docs/decisions/0035). The binary only parses
//! its arguments and prints what these return.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::notifier::{Notifier, ProgressTracker};
use crate::notify::Notifications;
use crate::runtime::{self, Projector};

/// One projector as the command line shows it.
pub struct ProjectorInfo {
    pub projector: Arc<dyn Projector>,
    /// Whether `rebuild` may replay it (read models only: the notifier would replay history to
    /// live subscribers).
    pub rebuildable: bool,
}

/// Every projector Herald runs: the read models of [`crate::all`] and the notifier. The
/// notifier given here publishes to no one: it is used only to retry its parked events when no
/// Herald instance runs it (nobody could be subscribed then).
pub fn every() -> Vec<ProjectorInfo> {
    let mut out: Vec<ProjectorInfo> = crate::all()
        .into_iter()
        .map(|projector| ProjectorInfo {
            projector,
            rebuildable: true,
        })
        .collect();
    let (_, shutdown) = tokio::sync::watch::channel(false);
    out.push(ProjectorInfo {
        projector: Arc::new(Notifier::new(
            Notifications::local(shutdown),
            Arc::new(ProgressTracker::default()),
        )),
        rebuildable: false,
    });
    out
}

/// The lines of `herald projections list`: each projector, and what it builds.
pub fn list() -> Vec<String> {
    every()
        .iter()
        .map(|p| {
            let name = p.projector.name();
            if p.rebuildable {
                format!("{name}\ttables: {}", p.projector.tables().join(", "))
            } else {
                format!("{name}\treal-time notifications (not rebuildable)")
            }
        })
        .collect()
}

fn find(name: &str) -> anyhow::Result<ProjectorInfo> {
    let names: Vec<&str> = every().iter().map(|p| p.projector.name()).collect();
    every()
        .into_iter()
        .find(|p| p.projector.name() == name)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown projector {name:?}; the projectors are {}",
                names.join(", ")
            )
        })
}

/// What `rebuild` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebuilt {
    /// Replayed here: this many events.
    Replayed(usize),
    /// Reset; a running Herald holds the projector and replays it.
    HandedOver,
}

/// Truncates a read model and replays the event store into it. A failure of the replay is an
/// error (the read model is then partly rebuilt, and a running Herald would go on from there).
pub async fn rebuild(pool: &PgPool, name: &str) -> anyhow::Result<Rebuilt> {
    let info = find(name)?;
    anyhow::ensure!(
        info.rebuildable,
        "{name} is not a read model and cannot be rebuilt (it would replay history to live subscribers)"
    );
    let projector = info.projector.as_ref();
    runtime::reset(pool, projector).await?;
    match runtime::lock(pool, name).await? {
        None => Ok(Rebuilt::HandedOver),
        Some(conn) => {
            let n = runtime::catch_up_locked(conn, projector)
                .await
                .map_err(|e| e.context(format!("replaying {name} failed")))?;
            Ok(Rebuilt::Replayed(n))
        }
    }
}

/// One parked event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ParkedEvent {
    pub projector: String,
    pub tx_id: i64,
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub error: String,
    pub parked_at: DateTime<Utc>,
    pub retries: i32,
    pub retried_at: Option<DateTime<Utc>>,
    pub retry_requested_at: Option<DateTime<Utc>>,
}

/// The parked events (of one projector, or all), oldest first.
pub async fn parked(pool: &PgPool, projector: Option<&str>) -> anyhow::Result<Vec<ParkedEvent>> {
    if let Some(name) = projector {
        find(name)?;
    }
    Ok(sqlx::query_as(
        "SELECT projector, tx_id, global_position, aggregate_type, aggregate_id, sequence,
                event_type, error, parked_at, retries, retried_at, retry_requested_at
           FROM parked_events WHERE $1::text IS NULL OR projector = $1
          ORDER BY tx_id, global_position, projector",
    )
    .bind(projector)
    .fetch_all(pool)
    .await?)
}

/// `parked` as `herald projections parked` prints it: one block per event.
pub fn format_parked(events: &[ParkedEvent]) -> String {
    let mut out = String::new();
    for e in events {
        let _ = writeln!(
            out,
            "{} position {}: {} {} #{} {}\n  parked at {}, retried {} time(s){}\n  error: {}",
            e.projector,
            e.global_position,
            e.aggregate_type,
            e.aggregate_id,
            e.sequence,
            e.event_type,
            e.parked_at.to_rfc3339(),
            e.retries,
            if e.retry_requested_at.is_some() {
                ", a retry is pending"
            } else {
                ""
            },
            e.error
        );
    }
    out
}

/// Which parked events `retry` takes.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    /// By `global_position`.
    Positions(Vec<i64>),
}

/// What became of one event `retry` took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    Applied,
    /// Failed again: still parked, with its retries and the new error.
    Failed {
        retries: i32,
        error: String,
    },
    /// The instance that runs the projector has not tried it yet.
    Pending,
}

/// How long `retry` waits for a running Herald to apply the events it asked for.
pub const RETRY_WAIT: Duration = Duration::from_secs(30);

/// Applies parked events again: marks them, then applies them here when no Herald instance runs
/// their projector, or waits (up to `wait`) for the instance that does (it looks every second).
/// An event that applies is no longer parked; one that fails again stays, its retries counted.
pub async fn retry(
    pool: &PgPool,
    projector: Option<&str>,
    selection: &Selection,
    wait: Duration,
) -> anyhow::Result<Vec<(String, i64, RetryOutcome)>> {
    if let Some(name) = projector {
        find(name)?;
    }
    let positions = match selection {
        Selection::All => None,
        Selection::Positions(p) => Some(p.clone()),
    };
    let marked: Vec<(String, i64)> = sqlx::query_as(
        "UPDATE parked_events SET retry_requested_at = now()
          WHERE ($1::text IS NULL OR projector = $1)
            AND ($2::bigint[] IS NULL OR global_position = ANY($2))
          RETURNING projector, global_position",
    )
    .bind(projector)
    .bind(positions)
    .fetch_all(pool)
    .await?;
    let names: BTreeSet<&str> = marked.iter().map(|(p, _)| p.as_str()).collect();
    let projectors: Vec<ProjectorInfo> = every()
        .into_iter()
        .filter(|p| names.contains(p.projector.name()))
        .collect();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // a projector no instance holds (none runs, or the one that ran it has just stopped)
        // is retried here; a running instance retries its own within a second
        for info in &projectors {
            if let Some(mut conn) = runtime::lock(pool, info.projector.name()).await? {
                let done = runtime::park::apply_requested(&mut conn, info.projector.as_ref()).await;
                drop(conn);
                done?;
            }
        }
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM parked_events p JOIN UNNEST($1::text[], $2::bigint[]) AS m(n, g)
                ON p.projector = m.n AND p.global_position = m.g
             WHERE p.retry_requested_at IS NOT NULL",
        )
        .bind(marked.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>())
        .bind(marked.iter().map(|(_, g)| *g).collect::<Vec<_>>())
        .fetch_one(pool)
        .await?;
        if pending == 0 || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let still = parked(pool, None).await?;
    Ok(marked
        .into_iter()
        .map(|(name, position)| {
            let outcome = match still
                .iter()
                .find(|e| e.projector == name && e.global_position == position)
            {
                None => RetryOutcome::Applied,
                Some(e) if e.retry_requested_at.is_some() => RetryOutcome::Pending,
                Some(e) => RetryOutcome::Failed {
                    retries: e.retries,
                    error: e.error.clone(),
                },
            };
            (name, position, outcome)
        })
        .collect())
}

/// `retry`'s answer as printed: one line per event.
pub fn format_retried(outcomes: &[(String, i64, RetryOutcome)]) -> String {
    let mut out = String::new();
    if outcomes.is_empty() {
        out.push_str("no parked event matched\n");
    }
    for (name, position, outcome) in outcomes {
        let _ = match outcome {
            RetryOutcome::Applied => writeln!(out, "{name} position {position}: applied"),
            RetryOutcome::Failed { retries, error } => writeln!(
                out,
                "{name} position {position}: failed again (retried {retries} time(s)): {error}"
            ),
            RetryOutcome::Pending => writeln!(
                out,
                "{name} position {position}: not tried yet by the running Herald; see `herald projections parked`"
            ),
        };
    }
    out
}
