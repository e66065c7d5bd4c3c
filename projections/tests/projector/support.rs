//! Shared pieces of the projector runtime tests: a recording projector, raw event inserts, a
//! background runner, and polling helpers.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_projections::runtime::{self, Projector, RunnerConfig, StoredEvent, Wakeup};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Name (checkpoint row and advisory lock key) of the recording projector.
pub const SEEN: &str = "test_seen";

/// Generous bound for positive assertions: the xmin guard is cluster-wide, so transactions of
/// other tests (other databases, other crates) can hold a projector back for a while.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Short poll interval so that tests never wait on the fallback poll for long.
pub fn config(batch_size: i64) -> RunnerConfig {
    RunnerConfig {
        batch_size,
        poll_interval: Duration::from_millis(20),
        ..RunnerConfig::default()
    }
}

/// The table the recording projector writes: a primary key on (aggregate_id, sequence), so a
/// second committed apply of one event cannot go unnoticed.
pub async fn create_seen_table(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE seen (
            aggregate_id    text   NOT NULL,
            sequence        bigint NOT NULL,
            tx_id           bigint NOT NULL,
            global_position bigint NOT NULL,
            applied_order   bigserial,
            PRIMARY KEY (aggregate_id, sequence))",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// A projector that records every event it applies into `seen`.
#[derive(Default)]
pub struct Recorder {
    /// Events in batches whose `apply` returned Ok.
    pub applied: AtomicUsize,
    /// Events that were already in `seen` (committed by an earlier batch) when applied again.
    pub duplicates: Mutex<Vec<(String, i64)>>,
    /// `apply` fails (after recording the earlier events of its batch) when it reaches this
    /// aggregate, while `failures_left` is positive.
    pub fail_on: Option<String>,
    pub failures_left: AtomicUsize,
    /// How many times `apply` failed on purpose.
    pub failed: AtomicUsize,
    /// Fail the way a busy database does (a serialization failure, SQLSTATE 40001) rather
    /// than the way a bad event does.
    pub transient: bool,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    pub fn failing_on(aggregate_id: &str, times: usize) -> Arc<Self> {
        Arc::new(Recorder {
            fail_on: Some(aggregate_id.to_string()),
            failures_left: AtomicUsize::new(times),
            ..Recorder::default()
        })
    }

    /// Fails with a serialization failure (a transient error) `times` times.
    pub fn transiently_failing_on(aggregate_id: &str, times: usize) -> Arc<Self> {
        Arc::new(Recorder {
            fail_on: Some(aggregate_id.to_string()),
            failures_left: AtomicUsize::new(times),
            transient: true,
            ..Recorder::default()
        })
    }

    /// Stops the planned failures: the cause is removed.
    pub fn heal(&self) {
        self.failures_left.store(0, Ordering::SeqCst);
    }

    pub fn applied(&self) -> usize {
        self.applied.load(Ordering::SeqCst)
    }

    pub fn duplicates(&self) -> Vec<(String, i64)> {
        self.duplicates.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Projector for Recorder {
    fn name(&self) -> &'static str {
        SEEN
    }
    fn tables(&self) -> &'static [&'static str] {
        &["seen"]
    }
    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for e in events {
            if self.fail_on.as_deref() == Some(e.aggregate_id.as_str())
                && self
                    .failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                self.failed.fetch_add(1, Ordering::SeqCst);
                if self.transient {
                    sqlx::query(
                        "DO $$ BEGIN RAISE EXCEPTION 'planned serialization failure'
                                 USING ERRCODE = 'serialization_failure'; END $$",
                    )
                    .execute(&mut *conn)
                    .await?;
                }
                anyhow::bail!("planned failure on {}", e.aggregate_id);
            }
            let inserted = sqlx::query(
                "INSERT INTO seen (aggregate_id, sequence, tx_id, global_position)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&e.aggregate_id)
            .bind(e.sequence)
            .bind(e.tx_id)
            .bind(e.global_position)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                self.duplicates
                    .lock()
                    .unwrap()
                    .push((e.aggregate_id.clone(), e.sequence));
                anyhow::bail!("{} #{} applied twice", e.aggregate_id, e.sequence);
            }
        }
        self.applied.fetch_add(events.len(), Ordering::SeqCst);
        Ok(())
    }
}

/// A raw insert the way postgres-es writes (the store's defaults fill in the global order).
/// Returns the row's `(tx_id, global_position)`.
pub async fn insert_event(
    conn: &mut PgConnection,
    aggregate_id: &str,
    sequence: i64,
) -> anyhow::Result<(i64, i64)> {
    let row = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Test', $1, $2, 'Tested', '1', json_build_object('n', $2), '{}'::json)
         RETURNING tx_id::text::bigint AS tx, global_position",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get("tx")?, row.try_get("global_position")?))
}

/// Inserts and commits one event per id (sequence 1), each in its own transaction.
pub async fn insert_committed(pool: &PgPool, ids: &[String]) -> anyhow::Result<Vec<(i64, i64)>> {
    let mut conn = pool.acquire().await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(insert_event(&mut conn, id, 1).await?);
    }
    Ok(out)
}

pub fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:03}")).collect()
}

/// `(aggregate_id, sequence)` of every committed event, in the projectors' order.
pub async fn stored_events(pool: &PgPool) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT aggregate_id, sequence FROM events ORDER BY tx_id, global_position")
            .fetch_all(pool)
            .await?,
    )
}

/// `(aggregate_id, sequence)` of every event the recorder committed, in the order it applied them.
pub async fn seen(pool: &PgPool) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT aggregate_id, sequence FROM seen ORDER BY applied_order")
            .fetch_all(pool)
            .await?,
    )
}

pub async fn seen_count(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM seen")
        .fetch_one(pool)
        .await?)
}

/// `(global_position, retries, error)` of the events projector `name` parked, oldest first.
pub async fn parked(pool: &PgPool, name: &str) -> anyhow::Result<Vec<(i64, i32, String)>> {
    Ok(sqlx::query_as(
        "SELECT global_position, retries, error FROM parked_events WHERE projector = $1
          ORDER BY tx_id, global_position",
    )
    .bind(name)
    .fetch_all(pool)
    .await?)
}

/// The stored checkpoint of projector `name`.
pub async fn checkpoint(pool: &PgPool, name: &str) -> anyhow::Result<Option<(i64, i64)>> {
    Ok(
        sqlx::query_as("SELECT tx_id, global_position FROM projector_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?,
    )
}

/// `(tx_id, global_position)` of the last event in the projectors' order.
pub async fn last_position(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM events
          ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await?)
}

/// A second pool on the same database: what another Herald process would have.
pub async fn another_instance(pool: &PgPool) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(5)
        .connect_with((*pool.connect_options()).clone())
        .await?)
}

/// Polls `check` until it holds or `PATIENCE` passes; returns whether it held.
pub async fn eventually<F, Fut>(mut check: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the recorder has committed exactly `n` events (fails the test after `PATIENCE`).
pub async fn wait_seen(pool: &PgPool, n: i64) -> anyhow::Result<()> {
    let reached = eventually(|| async { Ok(seen_count(pool).await? >= n) }).await?;
    anyhow::ensure!(
        reached,
        "the projector applied {} of {n} events within {PATIENCE:?}",
        seen_count(pool).await?
    );
    Ok(())
}

/// One projector running in the background the way `herald serve` runs it.
pub struct Runner {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Runner {
    pub fn start(pool: &PgPool, projector: Arc<dyn Projector>, config: RunnerConfig) -> Runner {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let wakeup = Wakeup::new();
        wakeup.spawn_watcher(pool.clone(), shutdown_rx.clone());
        let task = tokio::spawn(runtime::run(
            pool.clone(),
            projector,
            wakeup,
            config,
            shutdown_rx,
        ));
        Runner { shutdown, task }
    }

    /// Asks the runner to stop and waits until it has returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.send(true)?;
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .map_err(|_| anyhow::anyhow!("the runner did not stop within 5 s"))??;
        Ok(())
    }
}
