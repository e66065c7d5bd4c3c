//! The event-store layer: cqrs-es over Herald's `events` table, plus the batch paths.
//!
//! Single commands go through [`cqrs`], a `CqrsFramework` on `PersistedEventStore::new_event_store`
//! (never the snapshot or aggregate stores: in cqrs-es 0.5 they apply each new event twice).
//! Hot paths (a campaign's 100k `DeliveryQueued`, a batch of dispatch outcomes) go through
//! [`append_new`] and [`execute_batch`], which write exactly the rows postgres-es writes and reads
//! back (`aggregate_type`, `aggregate_id`, `sequence` from 1, `event_type`, `event_version`, JSON
//! `payload`, `{}` metadata) in multi-row `UNNEST` inserts inside the caller's transaction.

use std::collections::{HashMap, HashSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent};
use postgres_es::PostgresEventRepository;
use sqlx::{PgConnection, PgPool, Row};

/// The framework Herald runs single commands through. No inline queries: read models are built
/// by durable projectors (see the `projections` crate).
pub type HeraldCqrs<A> = CqrsFramework<A, PersistedEventStore<PostgresEventRepository, A>>;

/// A cqrs-es framework for aggregate `A` on the shared pool.
pub fn cqrs<A: Aggregate>(pool: PgPool, services: A::Services) -> HeraldCqrs<A> {
    let store = PersistedEventStore::new_event_store(PostgresEventRepository::new(pool));
    CqrsFramework::new(store, vec![], services)
}

/// Rows per INSERT statement: large enough to amortise round trips, small enough to keep
/// parameter arrays and memory modest.
const INSERT_CHUNK: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event (de)serialization error: {0}")]
    Serde(#[from] serde_json::Error),
    #[error("concurrent writers kept conflicting on {0} aggregates")]
    Conflict(usize),
    /// This transaction is older than one whose event it read: appending now would place its
    /// events BEFORE that one in the projectors' `(tx_id, global_position)` order. Nothing was
    /// written; retry the whole unit of work in a new transaction.
    #[error(
        "an older transaction tried to append after a younger one; retry in a new transaction"
    )]
    OutOfOrder,
}

impl StoreError {
    /// Passing conditions that a fresh transaction resolves.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::OutOfOrder | StoreError::Conflict(_))
    }
}

impl StoreError {
    fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505"))
    }
}

/// One event ready to be inserted.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
}

impl NewEvent {
    pub fn of<A: Aggregate>(
        aggregate_id: impl Into<String>,
        sequence: i64,
        event: &A::Event,
    ) -> Result<Self, serde_json::Error> {
        Ok(NewEvent {
            aggregate_type: A::TYPE,
            aggregate_id: aggregate_id.into(),
            sequence,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_string(event)?,
        })
    }
}

/// Plans the rest of the current transaction as key lookups (docs/decisions/0031).
///
/// Herald's write-side batches (claims, receipt and outcome batches, projector batches) look up
/// at most a few hundred rows by key in tables that grow from nothing to millions of rows within
/// minutes. The planner judges those tables by statistics taken when they were far smaller, and
/// then picks sequential scans and hash joins that read the whole table for a 200-key batch
/// (measured in the receipt benchmark: 43 full scans of `events` to load 200 deliveries, hash
/// joins over all of `message_index`). Switching those plan shapes off for the transaction makes
/// the planner use the indexes every one of these statements has; it still uses a scan where no
/// index fits, so nothing fails, and once statistics are current it would have chosen the same.
pub async fn plan_as_key_lookups(conn: &mut PgConnection) -> sqlx::Result<()> {
    // set_config(.., true) is SET LOCAL: it ends with the transaction
    sqlx::query(
        "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
                set_config('enable_mergejoin', 'off', true)",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts events with multi-row inserts. A duplicate (aggregate, sequence) fails with 23505.
pub async fn insert_events(conn: &mut PgConnection, events: &[NewEvent]) -> Result<(), StoreError> {
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut types = Vec::with_capacity(chunk.len());
        let mut ids = Vec::with_capacity(chunk.len());
        let mut seqs = Vec::with_capacity(chunk.len());
        let mut event_types = Vec::with_capacity(chunk.len());
        let mut versions = Vec::with_capacity(chunk.len());
        let mut payloads = Vec::with_capacity(chunk.len());
        for e in chunk {
            types.push(e.aggregate_type);
            ids.push(e.aggregate_id.as_str());
            seqs.push(e.sequence);
            event_types.push(e.event_type.as_str());
            versions.push(e.event_version.as_str());
            payloads.push(e.payload.as_str());
        }
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT t, i, s, et, v, p::json, '{}'::json
               FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[])
                 AS u(t, i, s, et, v, p)",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&seqs)
        .bind(&event_types)
        .bind(&versions)
        .bind(&payloads)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Runs each command through the handle of a NEW aggregate (no prior events: the caller guarantees
/// fresh ids, e.g. a new campaign's deliveries) and inserts all resulting events.
pub async fn append_new<A>(
    conn: &mut PgConnection,
    commands: Vec<(String, A::Command)>,
    services: &A::Services,
) -> Result<Result<usize, (String, A::Error)>, StoreError>
where
    A: Aggregate,
{
    let mut rows = Vec::with_capacity(commands.len());
    for (id, command) in commands {
        let mut aggregate = A::default();
        let events = match run_handle(&mut aggregate, command, services).await {
            Ok(events) => events,
            Err(e) => return Ok(Err((id, e))),
        };
        for (i, event) in events.iter().enumerate() {
            rows.push(NewEvent::of::<A>(id.clone(), i as i64 + 1, event)?);
        }
    }
    insert_events(conn, &rows).await?;
    Ok(Ok(rows.len()))
}

async fn run_handle<A: Aggregate>(
    aggregate: &mut A,
    command: A::Command,
    services: &A::Services,
) -> Result<Vec<A::Event>, A::Error> {
    let sink = EventSink::<A>::default();
    aggregate.handle(command, services, &sink).await?;
    Ok(sink.collect().await)
}

/// The current state and version of many aggregates, loaded with one query.
pub async fn load_many<A: Aggregate>(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<HashMap<String, (A, i64)>, StoreError> {
    Ok(load_many_with_newest_tx::<A>(conn, ids).await?.0)
}

/// [`load_many`], plus the newest `tx_id` among the loaded events.
async fn load_many_with_newest_tx<A: Aggregate>(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<(HashMap<String, (A, i64)>, i64), StoreError> {
    let rows = sqlx::query(
        "SELECT aggregate_id, sequence, payload::text AS payload, tx_id::text::bigint AS tx FROM events
          WHERE aggregate_type = $1 AND aggregate_id = ANY($2) ORDER BY aggregate_id, sequence",
    )
    .bind(A::TYPE)
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<String, (A, i64)> = HashMap::with_capacity(ids.len());
    let mut newest_tx = 0i64;
    for row in rows {
        newest_tx = newest_tx.max(row.try_get("tx")?);
        let id: String = row.try_get("aggregate_id")?;
        let sequence: i64 = row.try_get("sequence")?;
        let payload: String = row.try_get("payload")?;
        let event: A::Event = serde_json::from_str(&payload)?;
        let entry = out.entry(id).or_insert_with(|| (A::default(), 0));
        entry.0.apply(event);
        entry.1 = sequence;
    }
    Ok((out, newest_tx))
}

/// Refuses to append when this transaction already has an id older than an event it read
/// (see [`StoreError::OutOfOrder`]). A transaction that has written nothing yet gets its id at the
/// insert, after every committed event it could have read, so the common case costs one query.
async fn ensure_appends_in_order(
    conn: &mut PgConnection,
    newest_read_tx: i64,
) -> Result<(), StoreError> {
    let own: Option<i64> =
        sqlx::query_scalar("SELECT pg_current_xact_id_if_assigned()::text::bigint")
            .fetch_one(&mut *conn)
            .await?;
    match own {
        Some(own) if own < newest_read_tx => Err(StoreError::OutOfOrder),
        _ => Ok(()),
    }
}

/// Loads one aggregate; `None` when it has no events.
pub async fn load<A: Aggregate>(pool: &PgPool, id: &str) -> Result<Option<(A, i64)>, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut map = load_many::<A>(&mut conn, &[id.to_string()]).await?;
    Ok(map.remove(id))
}

/// What a command of a batch produced.
pub type BatchOutcome<A> = Result<Vec<<A as Aggregate>::Event>, <A as Aggregate>::Error>;

/// Aggregates a single writer keeps from one batch to the next, so that its next batch need not
/// load again what its last batches loaded or wrote (see [`execute_batch_known`]).
///
/// A copy may be stale: another writer may have appended since. It is used only for commands the
/// writer declares safe ([`Known::trusted`]), those whose decision to write nothing cannot change
/// with events other writers append; a command that does write from a stale copy meets the
/// newer event's sequence number (23505) and its aggregate is loaded again, as in any conflict.
///
/// Two generations bound its size: states go into the young one; when that is full, it becomes
/// the old one and the old one is dropped.
pub struct KnownAggregates<A> {
    young: HashMap<String, (A, i64)>,
    old: HashMap<String, (A, i64)>,
    capacity: usize,
}

impl<A: Clone> KnownAggregates<A> {
    /// Keeps at most `capacity` aggregates, the newest `capacity / 2` at least (0 or 1: none).
    pub fn new(capacity: usize) -> Self {
        KnownAggregates {
            young: HashMap::new(),
            old: HashMap::new(),
            capacity: capacity / 2,
        }
    }

    fn get(&self, id: &str) -> Option<&(A, i64)> {
        self.young.get(id).or_else(|| self.old.get(id))
    }

    /// Keeps states that are COMMITTED (call it after the transaction that wrote or read them
    /// committed; a rolled-back batch's states must be forgotten instead). Aggregates without
    /// events are not kept: one may be created by another writer at any moment.
    pub fn remember(&mut self, states: impl IntoIterator<Item = (String, (A, i64))>) {
        if self.capacity == 0 {
            return;
        }
        for (id, state) in states {
            if state.1 == 0 {
                continue;
            }
            if self.young.len() >= self.capacity && !self.young.contains_key(&id) {
                self.old = std::mem::take(&mut self.young);
            }
            self.old.remove(&id);
            self.young.insert(id, state);
        }
    }

    /// How many aggregates it holds.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Known aggregates and the commands that may be run on them (see [`KnownAggregates`]).
pub struct Known<'a, A: Aggregate> {
    pub aggregates: &'a KnownAggregates<A>,
    /// Whether a command may be handled by a possibly stale copy: true only when, whatever
    /// other writers append, a copy that makes it write nothing is right to.
    pub trusted: fn(&A::Command) -> bool,
}

/// What [`execute_batch_known`] did: one outcome per command, and the state and version of every
/// aggregate of the batch after it (uncommitted until the caller commits).
pub struct BatchResult<A: Aggregate> {
    pub outcomes: Vec<BatchOutcome<A>>,
    pub states: HashMap<String, (A, i64)>,
    /// Aggregates taken from the known ones instead of loaded.
    pub reused: usize,
}

/// The batch executor (docs/decisions/0052): loads every aggregate of the batch in one query, runs
/// each command through the aggregate's own `handle` (several commands for one aggregate apply in
/// order), and inserts all new events in one statement, inside the caller's transaction. When a
/// concurrent writer got there first (23505), only the aggregates whose version moved are reloaded
/// and handled again. Returns one outcome per command, in order.
pub async fn execute_batch<A>(
    conn: &mut PgConnection,
    commands: Vec<(String, A::Command)>,
    services: &A::Services,
) -> Result<Vec<BatchOutcome<A>>, StoreError>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    Ok(execute_batch_known::<A>(conn, commands, services, None)
        .await?
        .outcomes)
}

/// [`execute_batch`], taking what it can from `known` instead of loading it, and returning every
/// aggregate's state after the batch, for the caller to remember once it has committed.
pub async fn execute_batch_known<A>(
    conn: &mut PgConnection,
    commands: Vec<(String, A::Command)>,
    services: &A::Services,
    known: Option<Known<'_, A>>,
) -> Result<BatchResult<A>, StoreError>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    let mut ids: Vec<String> = commands.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    // a known copy serves an aggregate only when every command of the batch for it is trusted
    let mut loaded: HashMap<String, (A, i64)> = HashMap::with_capacity(ids.len());
    if let Some(known) = &known {
        let untrusted: HashSet<&str> = commands
            .iter()
            .filter(|(_, command)| !(known.trusted)(command))
            .map(|(id, _)| id.as_str())
            .collect();
        for id in &ids {
            if untrusted.contains(id.as_str()) {
                continue;
            }
            if let Some(state) = known.aggregates.get(id) {
                loaded.insert(id.clone(), state.clone());
            }
        }
    }
    let reused = loaded.len();
    let to_load: Vec<String> = ids
        .iter()
        .filter(|id| !loaded.contains_key(*id))
        .cloned()
        .collect();
    // Known copies were committed before this transaction began, so they cannot be younger
    // than it (see `ensure_appends_in_order`): only what is loaded now counts.
    let mut newest_tx = 0;
    if !to_load.is_empty() {
        let (fresh, tx) = load_many_with_newest_tx::<A>(conn, &to_load).await?;
        loaded.extend(fresh);
        newest_tx = tx;
    }
    let mut dirty: HashSet<String> = HashSet::new();
    for attempt in 0..5 {
        if !dirty.is_empty() {
            let reload: Vec<String> = dirty.iter().cloned().collect();
            let (mut fresh, tx) = load_many_with_newest_tx::<A>(conn, &reload).await?;
            newest_tx = newest_tx.max(tx);
            for id in &reload {
                match fresh.remove(id) {
                    Some(state) => loaded.insert(id.clone(), state),
                    None => loaded.remove(id),
                };
            }
        }
        let base_versions: HashMap<String, i64> = ids
            .iter()
            .map(|id| (id.clone(), loaded.get(id).map(|(_, v)| *v).unwrap_or(0)))
            .collect();
        let mut working: HashMap<String, (A, i64)> = HashMap::with_capacity(ids.len());
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut rows = Vec::new();
        for (id, command) in commands.iter().cloned() {
            let entry = match working.entry(id.clone()) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let state = match loaded.get(&id) {
                        Some((a, version)) => (a.clone(), *version),
                        None => (A::default(), 0),
                    };
                    v.insert(state)
                }
            };
            match run_handle(&mut entry.0, command, services).await {
                Ok(events) => {
                    for event in &events {
                        entry.1 += 1;
                        rows.push(NewEvent::of::<A>(id.clone(), entry.1, event)?);
                    }
                    outcomes.push(Ok(events));
                }
                Err(e) => outcomes.push(Err(e)),
            }
        }
        // one global insert order, so concurrent batches cannot wait on each other in a cycle
        rows.sort_unstable_by(|a, b| {
            (&a.aggregate_id, a.sequence).cmp(&(&b.aggregate_id, b.sequence))
        });
        ensure_appends_in_order(conn, newest_tx).await?;
        sqlx::query("SAVEPOINT herald_batch")
            .execute(&mut *conn)
            .await?;
        match insert_events(conn, &rows).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT herald_batch")
                    .execute(&mut *conn)
                    .await?;
                return Ok(BatchResult {
                    outcomes,
                    states: working,
                    reused,
                });
            }
            Err(e) if e.is_unique_violation() => {
                sqlx::query("ROLLBACK TO SAVEPOINT herald_batch")
                    .execute(&mut *conn)
                    .await?;
                let current = current_versions(conn, A::TYPE, &ids).await?;
                dirty = ids
                    .iter()
                    .filter(|id| current.get(*id).copied().unwrap_or(0) != base_versions[*id])
                    .cloned()
                    .collect();
                tracing::debug!(attempt, conflicts = dirty.len(), "batch conflict, retrying");
                if dirty.is_empty() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict(dirty.len()))
}

async fn current_versions(
    conn: &mut PgConnection,
    aggregate_type: &str,
    ids: &[String],
) -> Result<HashMap<String, i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT aggregate_id, max(sequence) AS version FROM events
          WHERE aggregate_type = $1 AND aggregate_id = ANY($2) GROUP BY aggregate_id",
    )
    .bind(aggregate_type)
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        out.insert(row.try_get("aggregate_id")?, row.try_get("version")?);
    }
    Ok(out)
}

/// Where an aggregate's latest event sits in the global order: `(tx_id, global_position)`.
/// The API waits for a projector to pass it before answering (read-your-writes).
pub async fn latest_position(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<(i64, i64)>, StoreError> {
    let row = sqlx::query(
        "SELECT tx_id::text::bigint AS tx, global_position FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(r) => Ok(Some((r.try_get("tx")?, r.try_get("global_position")?))),
        None => Ok(None),
    }
}
