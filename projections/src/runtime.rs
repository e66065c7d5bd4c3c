//! The projector runtime (docs/decisions/0001).
//!
//! - Reads events in `(tx_id, global_position)` order, only from transactions older than the oldest
//!   running one (`tx_id < pg_snapshot_xmin(pg_current_snapshot())`): identity order is not commit
//!   order, and this guard is what makes a late-committing insert impossible to skip.
//! - Applies a batch and moves its checkpoint in ONE transaction: effectively once.
//! - A batch that fails on its own (not for a transient reason) is split down to the event that
//!   fails, which is parked with its error; every other event is applied ([`park`],
//!   docs/decisions/0035-poison-events-are-parked.md).
//! - One instance per projector across all processes: a session advisory lock held on the very
//!   connection that does the work (if that connection dies, so does the lock and the work).
//! - Wakes when the events' identity sequence moves (a watcher reads it every 10 ms, see
//!   [`spawn_sequence_watcher`]), polls as a fallback.

pub(crate) mod park;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::watch;

/// One row of the event store as projectors see it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub tx_id: i64,
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    /// The JSON text of the event, parsed only by projectors interested in it.
    pub payload: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

impl StoredEvent {
    /// `(tx_id, global_position)`: where the event stands in the projectors' order.
    pub fn position(&self) -> (i64, i64) {
        (self.tx_id, self.global_position)
    }

    pub fn parse<E: serde::de::DeserializeOwned>(&self) -> anyhow::Result<E> {
        serde_json::from_str(&self.payload).with_context(|| {
            format!(
                "event {} #{} of {} {} does not parse",
                self.event_type, self.sequence, self.aggregate_type, self.aggregate_id
            )
        })
    }
}

/// A read-model builder. `apply` runs inside the transaction that also moves the checkpoint.
#[async_trait::async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Stable name: the checkpoint row and the advisory lock are keyed by it.
    fn name(&self) -> &'static str;
    /// Tables this projector owns; a rebuild truncates them.
    fn tables(&self) -> &'static [&'static str];
    /// The aggregate types whose events this projector applies (`None`: every event). Only
    /// these are read and handed to [`Projector::apply`]; the checkpoint still moves past the
    /// others. Under a receipt load nearly every event is a `Delivery` event, and half of the
    /// projectors have no use for one: reading and decoding each of them six times was the
    /// projectors' largest cost.
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        None
    }
    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()>;
    /// Called once the batch `apply` saw has committed with its checkpoint (not after a failed
    /// or rolled-back batch): the place for side effects such as notifications.
    fn committed(&self) {}
}

/// How a runner behaves; defaults suit production.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub batch_size: i64,
    /// Fallback poll when no notification arrives (and for rows held back by the xmin guard).
    pub poll_interval: Duration,
    /// Under a steady stream of events, the shortest time from the start of one batch to the
    /// start of the next (a full batch goes on at once). Each batch costs a read, a transaction
    /// and a checkpoint write whatever its size; chasing every few events cost the projectors
    /// more than the events themselves. A write after a quiet moment is applied at once.
    pub min_step_interval: Duration,
    /// The same, after a batch with nothing for this projector (events of types it does not
    /// apply, such as receipts for the sessions projector): such a batch only moves the
    /// checkpoint, and a few of them a second keep it as current as a reader needs.
    pub min_skip_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batch_size: 2_000,
            poll_interval: Duration::from_millis(100),
            min_step_interval: Duration::from_millis(25),
            min_skip_interval: Duration::from_millis(100),
        }
    }
}

/// Wakes projectors in this process when events are written (fed by a sequence watcher).
#[derive(Clone)]
pub struct Wakeup {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self::new()
    }
}

impl Wakeup {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(0);
        Wakeup { tx: Arc::new(tx) }
    }
    pub fn wake(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Wakes this process's projectors when events are written, by any process, until shutdown
    /// (see [`spawn_sequence_watcher`]).
    pub fn spawn_watcher(&self, pool: PgPool, shutdown: watch::Receiver<bool>) {
        let this = self.clone();
        spawn_sequence_watcher(
            pool,
            "events",
            "global_position",
            move || this.wake(),
            shutdown,
        );
    }
}

/// How often a sequence watcher looks at its sequence.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(10);
/// How long after the sequence moved the watcher keeps waking: rows become readable when their
/// transaction commits (and, for projectors, when every older transaction has finished), which
/// can be a little after the insert that moved the sequence.
pub const WATCH_SETTLE: Duration = Duration::from_millis(300);

/// Calls `wake` whenever rows were inserted into `table` (its identity column `column` moved),
/// by this process or any other on the same database, and on every tick for [`WATCH_SETTLE`]
/// afterwards; stops at shutdown.
///
/// This replaces `LISTEN`/`NOTIFY` (docs/decisions/0029): a transaction that sends `NOTIFY`
/// holds a database-wide lock from before its commit until after its commit is flushed, so every
/// notifying writer commits one after the other. Reading a sequence's last value locks nothing
/// and takes microseconds; one watcher per process and table polls it every [`WATCH_INTERVAL`].
pub fn spawn_sequence_watcher(
    pool: PgPool,
    table: &'static str,
    column: &'static str,
    wake: impl Fn() + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut last: Option<i64> = None;
        let mut moved_at: Option<tokio::time::Instant> = None;
        let mut ticks = tokio::time::interval(WATCH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            let value: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence($1, $2)::regclass)",
            )
            .bind(table)
            .bind(column)
            .fetch_one(&pool)
            .await;
            match value {
                Ok(value) => {
                    if failing {
                        tracing::info!(table, "sequence watcher reading again");
                        failing = false;
                    }
                    if value != last {
                        // the first reading wakes too: rows may have arrived before the watcher
                        last = value;
                        moved_at = Some(tokio::time::Instant::now());
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(table, error = %e, "sequence watcher cannot read; polling meanwhile");
                        failing = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
            }
            if moved_at.is_some_and(|at| at.elapsed() <= WATCH_SETTLE) {
                wake();
            }
        }
    });
}

/// How often a caught-up projector looks whether a rebuild reset its checkpoint.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// Stable 64-bit key for a projector's advisory lock (FNV-1a of its name).
fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("herald-projector:{name}").bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h as i64
}

async fn ensure_checkpoint(conn: &mut PgConnection, name: &str) -> anyhow::Result<(i64, i64)> {
    sqlx::query("INSERT INTO projector_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let row =
        sqlx::query("SELECT tx_id, global_position FROM projector_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// The checkpoint as stored (a rebuild may have reset it under a running instance).
async fn stored_checkpoint(
    conn: &mut PgConnection,
    name: &str,
) -> anyhow::Result<Option<(i64, i64)>> {
    let row =
        sqlx::query("SELECT tx_id, global_position FROM projector_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// A batch of events after a checkpoint, oldest first, committed rows only.
pub struct Batch {
    /// The events of the batch the projector applies (of its aggregate types).
    pub events: Vec<StoredEvent>,
    /// `(tx_id, global_position)` of the batch's last event, applied or not (`None`: nothing new).
    pub last: Option<(i64, i64)>,
    /// How many events the batch spans, applied or not.
    pub scanned: usize,
}

/// Reads the next batch after `checkpoint`: at most `limit` events in the projectors' order, of
/// which only those of `types` (all when `None`) come back whole.
pub async fn read_batch(
    conn: &mut PgConnection,
    checkpoint: (i64, i64),
    limit: i64,
    types: Option<&[&str]>,
) -> anyhow::Result<Batch> {
    // Every event of the range comes back, but one of another type only as its position (where
    // the checkpoint moves to): no payload, no names.
    let rows = sqlx::query(
        "SELECT tx_id::text::bigint AS tx, global_position, wanted,
                CASE WHEN wanted THEN aggregate_type END AS aggregate_type,
                CASE WHEN wanted THEN aggregate_id END AS aggregate_id,
                CASE WHEN wanted THEN sequence END AS sequence,
                CASE WHEN wanted THEN event_type END AS event_type,
                CASE WHEN wanted THEN payload::text END AS payload,
                CASE WHEN wanted THEN recorded_at END AS recorded_at
           FROM (SELECT *, ($4::text[] IS NULL OR aggregate_type = ANY($4)) AS wanted
                   FROM events
                  WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
                    AND (tx_id, global_position) > ($1::text::xid8, $2)
                  ORDER BY tx_id, global_position
                  LIMIT $3) AS e
          ORDER BY tx_id, global_position",
    )
    .bind(checkpoint.0)
    .bind(checkpoint.1)
    .bind(limit)
    .bind(types)
    .fetch_all(&mut *conn)
    .await?;
    let mut batch = Batch {
        events: Vec::new(),
        last: None,
        scanned: rows.len(),
    };
    for r in rows {
        let position = (r.try_get("tx")?, r.try_get("global_position")?);
        batch.last = Some(position);
        if !r.try_get::<bool, _>("wanted")? {
            continue;
        }
        batch.events.push(StoredEvent {
            tx_id: position.0,
            global_position: position.1,
            aggregate_type: r.try_get("aggregate_type")?,
            aggregate_id: r.try_get("aggregate_id")?,
            sequence: r.try_get("sequence")?,
            event_type: r.try_get("event_type")?,
            payload: r.try_get("payload")?,
            recorded_at: r.try_get("recorded_at")?,
        });
    }
    Ok(batch)
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stepped {
    /// Events the checkpoint moved past, applied or not (0: caught up).
    scanned: usize,
    /// Of those, the events handed to the projector.
    applied: usize,
}

impl Stepped {
    /// Nothing new (or a checkpoint reset by a rebuild, taken over).
    const NONE: Stepped = Stepped {
        scanned: 0,
        applied: 0,
    };
}

/// Moves the checkpoint from `from` to `to`; false when the stored one is no longer `from` (a
/// rebuild reset it, or someone who should not hold our lock moved it).
async fn move_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    from: (i64, i64),
    to: (i64, i64),
) -> sqlx::Result<bool> {
    let moved = sqlx::query(
        "UPDATE projector_checkpoints SET tx_id = $2, global_position = $3, updated_at = now()
          WHERE name = $1 AND tx_id = $4 AND global_position = $5",
    )
    .bind(name)
    .bind(to.0)
    .bind(to.1)
    .bind(from.0)
    .bind(from.1)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// Applies at most one batch.
///
/// Runs on a connection whose commits do not wait for their WAL flush (see [`lock`]): a read
/// model is derived data, so if the server crashes before a commit reaches the disk, the batch
/// and its checkpoint are lost together and simply applied again. Under load that wait, once per
/// batch per projector, was the projectors' largest cost. Events themselves are always written
/// with synchronous commit.
async fn step(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    checkpoint: &mut (i64, i64),
    batch_size: i64,
) -> anyhow::Result<Stepped> {
    let batch = read_batch(conn, *checkpoint, batch_size, projector.aggregate_types()).await?;
    let Some(next) = batch.last else {
        return Ok(Stepped::NONE);
    };
    let events = batch.events;
    let stepped = Stepped {
        scanned: batch.scanned,
        applied: events.len(),
    };
    if events.is_empty() {
        // Nothing to apply, only the checkpoint to move: one statement, no transaction. Under a
        // receipt load most projectors see nothing else, and a transaction around this update
        // was three more round trips for each of them, every batch.
        if !move_checkpoint(conn, projector.name(), *checkpoint, next).await? {
            *checkpoint = ensure_checkpoint(conn, projector.name()).await?;
            return Ok(Stepped::NONE);
        }
        *checkpoint = next;
        return Ok(stepped);
    }
    match apply_chunk(conn, projector, checkpoint, &events, next).await {
        Ok(Chunk::Applied) => Ok(stepped),
        Ok(Chunk::Reset) => Ok(Stepped::NONE),
        Err(e) if herald_domain::failure::is_transient(&*e) => Err(e),
        Err(e) => match park::isolate(conn, projector, checkpoint, &events, next, e).await? {
            Chunk::Applied => Ok(stepped),
            Chunk::Reset => Ok(Stepped::NONE),
        },
    }
}

/// What became of a chunk of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Applied (or parked) with the checkpoint moved to its end.
    Applied,
    /// The stored checkpoint was reset by a rebuild: `checkpoint` holds the stored one now.
    Reset,
}

/// Applies `events` and moves the checkpoint from `checkpoint` to `to`, in one transaction.
async fn apply_chunk(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    checkpoint: &mut (i64, i64),
    events: &[StoredEvent],
    to: (i64, i64),
) -> anyhow::Result<Chunk> {
    let mut tx = conn.begin().await?;
    // A batch reads and writes rows by key; see the function's note.
    herald_domain::store::plan_as_key_lookups(&mut tx).await?;
    projector.apply(&mut tx, events).await?;
    if !move_checkpoint(&mut tx, projector.name(), *checkpoint, to).await? {
        // reset by a rebuild: start over from it
        tx.rollback().await?;
        *checkpoint = ensure_checkpoint(conn, projector.name()).await?;
        return Ok(Chunk::Reset);
    }
    tx.commit().await?;
    *checkpoint = to;
    projector.committed();
    metrics::counter!("herald_projector_events_total", "projector" => projector.name())
        .increment(events.len() as u64);
    Ok(Chunk::Applied)
}

/// The projector's session lock, and the connection that holds it. That connection is detached
/// from the pool: the lock lives exactly as long as it, so a runner that stops or fails releases
/// the lock by dropping it, instead of handing a still-locked connection back to the pool (where
/// no other instance could take the projector over until this process closed its pool).
///
/// The connection's commits do not wait for their WAL flush (see [`step`]).
pub(crate) async fn lock(pool: &PgPool, name: &str) -> anyhow::Result<Option<PgConnection>> {
    let mut conn = pool.acquire().await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(name))
        .fetch_one(&mut *conn)
        .await?;
    if !got {
        return Ok(None);
    }
    let mut conn = conn.detach();
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    Ok(Some(conn))
}

/// Runs a projector until `shutdown` turns true. Waits its turn while another instance holds it.
pub async fn run(
    pool: PgPool,
    projector: Arc<dyn Projector>,
    wakeup: Wakeup,
    config: RunnerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wake = wakeup.subscribe();
    let name = projector.name();
    'outer: while !*shutdown.borrow() {
        let mut conn = match lock(&pool, name).await {
            Ok(Some(conn)) => conn,
            Ok(None) => {
                // another process runs this projector; check again later (takes over if it dies)
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    _ = shutdown.changed() => break,
                }
            }
            Err(e) => {
                tracing::warn!(projector = name, error = %e, "cannot reach the database");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => break,
                }
            }
        };
        tracing::info!(projector = name, "projector running");
        let mut checkpoint = match ensure_checkpoint(&mut conn, name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(projector = name, error = %e, "cannot read checkpoint");
                drop(conn);
                continue;
            }
        };
        park::refresh_gauge(&mut conn, name).await;
        let mut failures = 0u32;
        let mut rechecked = tokio::time::Instant::now();
        let mut retries_checked = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break 'outer;
            }
            // parked events an operator asked to retry (`herald projections retry`)
            if retries_checked.elapsed() >= RECHECK_EVERY {
                retries_checked = tokio::time::Instant::now();
                if let Err(e) = park::apply_requested(&mut conn, projector.as_ref()).await {
                    tracing::warn!(projector = name, error = %format!("{e:#}"), "cannot retry parked events now");
                }
            }
            let started = tokio::time::Instant::now();
            match step(
                &mut conn,
                projector.as_ref(),
                &mut checkpoint,
                config.batch_size,
            )
            .await
            {
                Ok(Stepped { scanned: 0, .. }) => {
                    failures = 0;
                    // A rebuild may have reset the checkpoint while there was nothing new to
                    // apply; without this the replay would wait for the next event written (a
                    // quiet system stays empty). Once a second: under load, projectors are
                    // caught up a hundred times a second, and that read each time was waste.
                    if rechecked.elapsed() >= RECHECK_EVERY {
                        rechecked = tokio::time::Instant::now();
                        match stored_checkpoint(&mut conn, name).await {
                            Ok(Some(stored)) if stored != checkpoint => {
                                checkpoint = stored;
                                continue;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(projector = name, error = %e, "cannot read checkpoint");
                                drop(conn);
                                continue 'outer;
                            }
                        }
                    }
                    tokio::select! {
                        _ = wake.changed() => {}
                        _ = tokio::time::sleep(config.poll_interval) => {}
                        _ = shutdown.changed() => break 'outer,
                    }
                }
                Ok(Stepped { scanned, applied }) => {
                    failures = 0;
                    // a steady stream: let the next batch gather more (see `min_step_interval`)
                    if (scanned as i64) < config.batch_size {
                        let pause = if applied == 0 {
                            config.min_skip_interval
                        } else {
                            config.min_step_interval
                        };
                        tokio::select! {
                            _ = tokio::time::sleep_until(started + pause) => {}
                            _ = shutdown.changed() => break 'outer,
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    // transient (see `herald_domain::failure`): nothing is parked, the batch is tried again
                    tracing::error!(projector = name, error = %format!("{e:#}"), failures, "projector batch failed; retrying");
                    let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                    tokio::time::sleep(backoff).await;
                    if failures >= 3 {
                        // drop the connection (and with it the lock): a broken one must not linger
                        drop(conn);
                        continue 'outer;
                    }
                }
            }
        }
    }
}

/// Applies everything currently visible, on the caller's task (used by `rebuild` and tests).
pub async fn catch_up(pool: &PgPool, projector: &dyn Projector) -> anyhow::Result<usize> {
    let conn = lock(pool, projector.name())
        .await?
        .context("the projector is running in another process")?;
    catch_up_locked(conn, projector).await
}

/// [`catch_up`] on the connection that holds the projector's lock; releases it at the end.
pub(crate) async fn catch_up_locked(
    mut conn: PgConnection,
    projector: &dyn Projector,
) -> anyhow::Result<usize> {
    let mut checkpoint = ensure_checkpoint(&mut conn, projector.name()).await?;
    let mut total = 0;
    loop {
        let stepped = step(&mut conn, projector, &mut checkpoint, 2_000).await?;
        if stepped.scanned == 0 {
            break;
        }
        total += stepped.scanned;
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key(projector.name()))
        .execute(&mut conn)
        .await?;
    Ok(total)
}

/// Truncates the projector's tables and resets its checkpoint, in one transaction. A running
/// instance notices the reset checkpoint and replays from the start.
pub async fn reset(pool: &PgPool, projector: &dyn Projector) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for table in projector.tables() {
        sqlx::query(&format!("TRUNCATE {table}"))
            .execute(&mut *tx)
            .await?;
    }
    // the replay parks again whatever still fails
    sqlx::query("DELETE FROM parked_events WHERE projector = $1")
        .bind(projector.name())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO projector_checkpoints (name, tx_id, global_position) VALUES ($1, 0, 0)
         ON CONFLICT (name) DO UPDATE SET tx_id = 0, global_position = 0, updated_at = now()",
    )
    .bind(projector.name())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Waits until projector `name` has applied the event at `position`, or `timeout` passes.
/// Returns whether it caught up. Used by the API for read-your-writes.
pub async fn wait_for(
    pool: &PgPool,
    name: &str,
    position: (i64, i64),
    timeout: Duration,
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        let row =
            sqlx::query("SELECT tx_id, global_position FROM projector_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
        if let Some(row) = row {
            let at: (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            if at >= position {
                return Ok(true);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}
