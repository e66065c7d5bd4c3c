//! The webhook inbox (docs/decisions/0055): [`writer`] stores gateway posts as they arrive, in
//! group commits, and the processor in this module turns stored posts into commands. Neither
//! needs a request to run; the HTTP crate only hands the writer what its endpoints receive.
//!
//! The endpoint (herald-api's `routes::webhooks`) only stores a post and answers; this worker does the rest,
//! so a slow or failing step never makes the gateway wait or lose a post. `webhook_inbox` is a log
//! the processor reads in commit order, like a projector reads `events`; a post's row is written
//! once and never updated (docs/decisions/0033-webhook-inbox-log.md):
//!
//! 1. In one transaction: lock the log's cursor (`webhook_inbox_cursor`; one process at a time
//!    reads the log, any process can), read the next posts after it, find the deliveries of every
//!    receipt's message ids in `message_index` (one query), apply every receipt through the
//!    `Delivery` batch executor (one load and one insert for the batch), record each post's
//!    outcome in `webhook_inbox_outcomes`, and move the cursor past the batch.
//! 2. If the batch fails, it is rolled back and split in halves down to the rows that fail alone
//!    ([`parking`], docs/decisions/0036), so one bad row cannot hold the others back; a row that
//!    still fails moves to `webhook_inbox_retries` with its error and is tried again later with
//!    exponential backoff (1 s doubling, at most 15 min). After
//!    [`InboxConfig::park_after_attempts`] failures of its own it is parked: kept and listed, no
//!    longer retried until an operator asks. Nothing is dropped.
//! 3. Receipts for message ids not (yet) in `message_index` wait in `webhook_inbox_retries` for
//!    [`InboxConfig::unmatched_grace`] (a gateway that chose its own id may be recorded after its
//!    receipt), then are kept in `unmatched_receipts` and the row is done. Retries that are due
//!    are taken with `FOR UPDATE SKIP LOCKED`, by any process.
//!
//! Session events (`Connected`, `Disconnected`, `LoggedOut`, `QR`, ...) move the session's status
//! and keep its latest QR code ([`session_events`]). `Message` events and the Cloud API's
//! notifications (`meta:messages` rows) build conversations and move deliveries (see
//! [`conversations`]). Other event types (presence, history sync, ...) are done with the note
//! `ignored: <type>`; their rows stay, so a later feature can replay them (a row in
//! `webhook_inbox_retries` is processed again: docs/webhooks.md).

mod conversations;
pub mod credentials;
mod parking;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conversations::StatusUpdate;
pub use conversations::META_MESSAGES;
use herald_domain::conversation::{Conversation, ConversationCommand};
use herald_domain::delivery::{Delivery, DeliveryCommand};
use herald_domain::store::{self, Known, KnownAggregates, StoreError};
use herald_gateway::meta::MessagesValue;
use herald_gateway::webhook::{self, InboundMessage, Receipt};
use sqlx::{PgPool, Row};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

mod session_events;
pub use parking::{format_parked_posts, parked_posts, retry_parked, ParkedPost};
pub use session_events::store_qr;

/// How the processor behaves; defaults suit production.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// Rows claimed per transaction.
    pub batch_size: i64,
    /// Fallback poll when no notification arrives.
    pub poll_interval: Duration,
    /// How long a receipt for unknown message ids is retried before it is kept as unmatched.
    /// Herald indexes its own ids before calling the gateway, so only a foreign id (sent from
    /// the phone, before linking) or a gateway-chosen id can be unknown; five minutes covers a
    /// dispatch lease and its retries with room to spare.
    pub unmatched_grace: Duration,
    /// Processed rows older than this are deleted (their dedup window is over by then).
    pub retention: Duration,
    /// Under a steady stream of posts, the shortest time from the start of one round to the
    /// start of the next (a full batch goes on at once). Each batch costs about ten statements and
    /// a commit whatever its size, and so does every projector batch that follows from it; a post
    /// after a quiet moment is processed at once.
    pub min_round_interval: Duration,
    /// `Delivery` aggregates the processor keeps between batches (0: none). A recipient's second
    /// receipt (its `Read` after its `Delivered`, a duplicate) then needs no load of its events:
    /// about 300 bytes each.
    pub known_deliveries: usize,
    /// A post that failed on its own this many times (1 s, 2 s, 4 s, ... apart: about 4 minutes
    /// for 8) is parked: no more automatic retries until an operator asks
    /// (`herald projections retry --inbox`). Transient failures never park a post.
    pub park_after_attempts: i32,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            batch_size: 500,
            poll_interval: Duration::from_millis(100),
            unmatched_grace: Duration::from_secs(5 * 60),
            retention: Duration::from_secs(7 * 24 * 3600),
            min_round_interval: Duration::from_millis(25),
            known_deliveries: 50_000,
            park_after_attempts: 8,
        }
    }
}

/// Backoff before the `attempts`-th retry of a failed row: 1 s, 2 s, 4 s, ... at most 15 min.
fn failure_backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 11) - 1;
    Duration::from_secs((1u64 << exp).min(15 * 60))
}

/// Backoff while waiting for unknown message ids: 1 s doubling, at most 60 s.
fn unmatched_backoff(attempts: i32) -> Duration {
    failure_backoff(attempts).min(Duration::from_secs(60))
}

/// Starts the processor; it stops when `shutdown` turns true.
pub fn spawn(
    pool: PgPool,
    config: InboxConfig,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let wake = Arc::new(Notify::new());
    // woken when posts are stored, by this process or another (no NOTIFY: docs/decisions/0029)
    let waker = wake.clone();
    herald_projections::runtime::spawn_sequence_watcher(
        pool.clone(),
        "webhook_inbox",
        "id",
        move || waker.notify_one(),
        shutdown.clone(),
    );
    tokio::spawn(run(pool, config, wake, shutdown))
}

/// How often the processor looks for retries that have come due.
const RETRY_CHECK_EVERY: Duration = Duration::from_millis(250);

async fn run(
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

/// Where a batch comes from (docs/decisions/0033).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The next posts of the log, after the processor's cursor, in commit order.
    Log,
    /// Rows in `webhook_inbox_retries` whose next attempt is due.
    Retries,
}

/// Processes at most one batch from `source` (and, if it failed, its parts down to the rows
/// that fail alone).
/// Returns how many rows it handled; 0 when nothing was there. An `Err` means the database could
/// not be used.
async fn process(
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
async fn process_range(
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

/// Why a batch did not commit.
struct BatchFailure {
    /// The rows it had claimed (`None`: it failed before claiming any).
    ids: Option<Vec<i64>>,
    error: anyhow::Error,
    retryable: bool,
}

impl BatchFailure {
    fn before_claim(error: impl Into<anyhow::Error>) -> Self {
        BatchFailure {
            ids: None,
            error: error.into(),
            retryable: false,
        }
    }
}

/// One claimed row, parsed.
struct Claimed {
    id: i64,
    session_id: Uuid,
    tenant_id: Option<Uuid>,
    received_at: DateTime<Utc>,
    attempts: i32,
    action: Action,
}

enum Action {
    Receipt(Receipt),
    /// A session event: status change and, for `QR`, the code (see [`session_events`]).
    Session(webhook::session::SessionUpdate),
    /// A chat message (WuzAPI `Message`).
    Message(InboundMessage),
    /// A Cloud API `messages` change: statuses and/or messages.
    Meta(MessagesValue),
    /// Nothing to do; the note says why.
    Done(String),
}

/// What became of a row in this batch.
enum Disposition {
    Processed(String),
    /// Unknown message ids, still within the grace period: try again after the delay.
    Wait(String, Duration),
}

/// Which rows of the source a batch takes.
#[derive(Debug, Clone, Copy)]
enum Claim<'a> {
    /// Up to a batch: the log's next rows, or the retries due, oldest first.
    Batch,
    /// These rows of a failed batch (splitting it): from the log, the rows up to the last of
    /// them, only if it is still there after the cursor; from the retries, those of them still
    /// due.
    Range(&'a [i64]),
}

/// The columns a batch reads of each post: the event as text (a JSON post's body is its event).
const POST_COLUMNS: &str = "w.id, w.session_id, w.tenant_id, w.event_type, w.received_at,
    CASE WHEN w.session_id IS NOT NULL
         THEN COALESCE(w.event::text, convert_from(w.body, 'UTF8')) END AS event";

/// Processes one batch in one transaction. Returns how many rows it took.
async fn process_batch(
    pool: &PgPool,
    config: &InboxConfig,
    source: Source,
    claim: Claim<'_>,
    known: &mut KnownAggregates<Delivery>,
) -> Result<usize, BatchFailure> {
    let mut tx = pool.begin().await.map_err(BatchFailure::before_claim)?;
    store::plan_as_key_lookups(&mut tx)
        .await
        .map_err(BatchFailure::before_claim)?;
    // the log: behind the cursor's lock, so one process at a time reads it, in commit order
    let mut log_end = None;
    let rows = match source {
        Source::Log => {
            let Some(cursor) = lock_cursor(&mut tx)
                .await
                .map_err(BatchFailure::before_claim)?
            else {
                return Ok(0);
            };
            // one row alone: the rows up to it (those before it in the failed batch are done
            // already, or were stored without a session, which the log only steps over)
            let upto = match claim {
                Claim::Range(ids) => ids.last().copied(),
                Claim::Batch => None,
            };
            let rows = sqlx::query(&format!(
                "SELECT w.tx_id::text::bigint AS tx, 0 AS attempts, {POST_COLUMNS}
                   FROM webhook_inbox w
                  WHERE w.tx_id < pg_snapshot_xmin(pg_current_snapshot())
                    AND (w.tx_id, w.id) > ($1::text::xid8, $2)
                    AND ($4::bigint IS NULL
                         OR (w.tx_id, w.id) <= (SELECT tx_id, id FROM webhook_inbox WHERE id = $4))
                  ORDER BY w.tx_id, w.id
                  LIMIT $3"
            ))
            .bind(cursor.0)
            .bind(cursor.1)
            .bind(config.batch_size)
            .bind(upto)
            .fetch_all(&mut *tx)
            .await
            .map_err(BatchFailure::before_claim)?;
            if let (Some(id), Some(last)) = (upto, rows.last()) {
                let last: i64 = last.try_get("id").map_err(BatchFailure::before_claim)?;
                if last != id {
                    return Ok(0);
                }
            }
            if let Some(last) = rows.last() {
                log_end = Some((
                    last.try_get::<i64, _>("tx")
                        .map_err(BatchFailure::before_claim)?,
                    last.try_get::<i64, _>("id")
                        .map_err(BatchFailure::before_claim)?,
                ));
            }
            rows
        }
        Source::Retries => sqlx::query(&format!(
            "SELECT r.attempts, {POST_COLUMNS}
               FROM webhook_inbox_retries r JOIN webhook_inbox w ON w.id = r.inbox_id
              WHERE r.next_attempt_at <= now() AND r.parked_at IS NULL
                AND ($2::bigint[] IS NULL OR r.inbox_id = ANY($2))
              ORDER BY r.next_attempt_at, r.inbox_id
              LIMIT $1
              FOR UPDATE OF r SKIP LOCKED"
        ))
        .bind(match claim {
            Claim::Batch => config.batch_size,
            Claim::Range(ids) => ids.len() as i64,
        })
        .bind(match claim {
            Claim::Range(ids) => Some(ids),
            Claim::Batch => None,
        })
        .fetch_all(&mut *tx)
        .await
        .map_err(BatchFailure::before_claim)?,
    };
    if rows.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get("id").map_err(BatchFailure::before_claim)?;
        ids.push(id);
    }
    let fail = |ids: &Vec<i64>, error: anyhow::Error| {
        let retryable = error
            .downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_retryable);
        BatchFailure {
            ids: Some(ids.clone()),
            error,
            retryable,
        }
    };
    let mut claimed = Vec::with_capacity(rows.len());
    let mut sessionless = Vec::new();
    for row in rows {
        let parsed = (|| -> anyhow::Result<Option<Claimed>> {
            // a post stored without a session (a Cloud API notification for a number no session
            // stands for) got its outcome when it was stored
            let Some(session_id) = row.try_get::<Option<Uuid>, _>("session_id")? else {
                return Ok(None);
            };
            let event: String = row.try_get("event")?;
            let event_type: String = row.try_get("event_type")?;
            Ok(Some(Claimed {
                id: row.try_get("id")?,
                session_id,
                tenant_id: row.try_get("tenant_id")?,
                received_at: row.try_get("received_at")?,
                attempts: row.try_get("attempts")?,
                action: classify(&event_type, &event),
            }))
        })();
        match parsed.map_err(|e| fail(&ids, e))? {
            Some(c) => claimed.push(c),
            None => sessionless.push(
                row.try_get::<i64, _>("id")
                    .map_err(|e| fail(&ids, e.into()))?,
            ),
        }
    }
    if source == Source::Retries && !sessionless.is_empty() {
        // replayed, but there is nothing to do: its outcome stays as it was stored
        sqlx::query("DELETE FROM webhook_inbox_retries WHERE inbox_id = ANY($1)")
            .bind(&sessionless)
            .execute(&mut *tx)
            .await
            .map_err(|e| fail(&ids, e.into()))?;
    }
    let deliveries = if claimed.is_empty() {
        HashMap::new()
    } else {
        let (dispositions, deliveries) = apply(&mut tx, config, &claimed, known)
            .await
            .map_err(|e| fail(&ids, e))?;
        finish(&mut tx, source, &dispositions)
            .await
            .map_err(|e| fail(&ids, e.into()))?;
        deliveries
    };
    if let Some(end) = log_end {
        move_cursor(&mut tx, end)
            .await
            .map_err(|e| fail(&ids, e.into()))?;
    }
    tx.commit().await.map_err(|e| fail(&ids, e.into()))?;
    // only now are the batch's deliveries as it left them for everyone
    known.remember(deliveries);
    Ok(ids.len())
}

/// Locks the log cursor for this transaction; `None` when another process holds it (it is
/// reading the log right now, so there is nothing for this one to do).
async fn lock_cursor(tx: &mut sqlx::PgConnection) -> sqlx::Result<Option<(i64, i64)>> {
    sqlx::query_as(
        "SELECT tx_id::text::bigint, id FROM webhook_inbox_cursor
          WHERE name = 'processor' FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await
}

async fn move_cursor(tx: &mut sqlx::PgConnection, to: (i64, i64)) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhook_inbox_cursor SET tx_id = $1::text::xid8, id = $2, updated_at = now()
          WHERE name = 'processor'",
    )
    .bind(to.0)
    .bind(to.1)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What a stored event asks for. The endpoint validated its shape already; a receipt that
/// still cannot be understood is done (retrying cannot fix it), with the reason as its note.
fn classify(event_type: &str, event: &str) -> Action {
    if webhook::session::is_session_event(event_type) {
        return session_events::classify(event_type, event);
    }
    if event_type == "Message" {
        return conversations::classify_message(event);
    }
    if event_type.starts_with("meta:") {
        return conversations::classify_meta(event_type, event);
    }
    if event_type != "ReadReceipt" {
        return Action::Done(format!("ignored: {event_type}"));
    }
    let value = match herald_gateway::webhook::parse_event(event.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Action::Done(format!("malformed ReadReceipt: {e}")),
    };
    match webhook::parse_receipt(&value) {
        Ok(Some(receipt)) => Action::Receipt(receipt),
        Ok(None) => {
            let state = value
                .get("state")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown");
            Action::Done(format!("ignored: ReadReceipt {state}"))
        }
        Err(e) => Action::Done(format!("malformed ReadReceipt: {e}")),
    }
}

/// Applies every message and status of the batch and says what became of each row.
async fn apply(
    tx: &mut sqlx::PgConnection,
    config: &InboxConfig,
    claimed: &[Claimed],
    known: &KnownAggregates<Delivery>,
) -> anyhow::Result<(HashMap<i64, Disposition>, HashMap<String, (Delivery, i64)>)> {
    let mut dispositions = HashMap::with_capacity(claimed.len());
    session_events::apply(&mut *tx, claimed, &mut dispositions).await?;
    // 0. chat messages first, so a status in the same batch finds its message
    let mut chat_commands = conversations::message_commands(&mut *tx, claimed).await?;
    // 1. every (message id, session) with a status, matched in one query per index
    let mut updates = Vec::with_capacity(claimed.len());
    let mut keys_id: Vec<&str> = Vec::new();
    let mut keys_session: Vec<Uuid> = Vec::new();
    for c in claimed {
        if let Action::Done(note) = &c.action {
            dispositions.insert(c.id, Disposition::Processed(note.clone()));
        }
        updates.push(conversations::status_updates(&c.action));
    }
    for (c, row_updates) in claimed.iter().zip(&updates) {
        for (id, _, _) in row_updates {
            keys_id.push(id);
            keys_session.push(c.session_id);
        }
    }
    let matched: HashMap<(String, Uuid), String> = if keys_id.is_empty() {
        HashMap::new()
    } else {
        sqlx::query(
            "SELECT m.message_id, m.session_id, m.delivery_id
               FROM message_index m JOIN UNNEST($1::text[], $2::uuid[]) AS k(id, s)
                 ON m.message_id = k.id AND m.session_id = k.s",
        )
        .bind(&keys_id)
        .bind(&keys_session)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| -> anyhow::Result<_> {
            Ok((
                (r.try_get("message_id")?, r.try_get("session_id")?),
                r.try_get("delivery_id")?,
            ))
        })
        .collect::<anyhow::Result<_>>()?
    };
    // ids Herald did not send: messages of a chat (sent from the phone), kept on the conversation
    let (mut chat_ids, mut chat_sessions) = (Vec::new(), Vec::new());
    for (id, session) in keys_id.iter().zip(&keys_session) {
        if !matched.contains_key(&(id.to_string(), *session)) {
            chat_ids.push(*id);
            chat_sessions.push(*session);
        }
    }
    let in_chats = conversations::find_chat_messages(&mut *tx, &chat_ids, &chat_sessions).await?;

    // 2. the commands, and what is left unmatched
    let now = Utc::now();
    let mut commands = Vec::new();
    let mut unmatched_rows: Vec<(i64, Uuid, String, &'static str, DateTime<Utc>)> = Vec::new();
    for (c, row_updates) in claimed.iter().zip(updates) {
        if matches!(c.action, Action::Done(_) | Action::Session(_)) {
            continue;
        }
        let messages_note = conversations::messages_note(&c.action);
        if row_updates.is_empty() {
            let note = messages_note.unwrap_or_else(|| "nothing to apply".to_string());
            dispositions.insert(c.id, Disposition::Processed(note));
            continue;
        }
        let mut applied = 0usize;
        let mut missing = Vec::new();
        let mut kinds: Vec<&'static str> = Vec::new();
        for (id, update, timestamp) in row_updates {
            let at = timestamp.unwrap_or(c.received_at);
            if !kinds.contains(&update.as_str()) {
                kinds.push(update.as_str());
            }
            let key = (id.clone(), c.session_id);
            if let Some(delivery) = matched.get(&key) {
                let command = match update {
                    StatusUpdate::Delivered => DeliveryCommand::MarkDelivered { at },
                    StatusUpdate::Read => DeliveryCommand::MarkRead { at },
                    StatusUpdate::Sent => DeliveryCommand::RecordSent { message_id: id, at },
                    StatusUpdate::Failed(reason) => DeliveryCommand::MarkUndelivered { reason, at },
                };
                commands.push((delivery.clone(), command));
                applied += 1;
            } else if let Some(conversation) = in_chats.get(&key) {
                let command = ConversationCommand::RecordStatus {
                    message_id: id,
                    status: update.chat_status(),
                    at,
                };
                chat_commands.push((conversation.to_string(), command));
                applied += 1;
            } else {
                missing.push((id, update.as_str(), at));
            }
        }
        let state = kinds.join("/");
        let prefix = messages_note.map(|n| format!("{n}; ")).unwrap_or_default();
        let disposition = if missing.is_empty() {
            Disposition::Processed(format!("{prefix}{state} receipt for {applied} message(s)"))
        } else {
            let age = (now - c.received_at).to_std().unwrap_or_default();
            if age < config.unmatched_grace {
                // applied ones are applied again next time: receipts are idempotent
                let delay = unmatched_backoff(c.attempts + 1);
                Disposition::Wait(
                    format!(
                        "waiting for {} message id(s) Herald does not know yet",
                        missing.len()
                    ),
                    delay,
                )
            } else {
                let n = missing.len();
                for (id, kind, at) in missing {
                    unmatched_rows.push((c.id, c.session_id, id, kind, at));
                }
                Disposition::Processed(format!(
                    "{prefix}{state} receipt for {applied} message(s); {n} unknown id(s) kept as unmatched"
                ))
            }
        };
        dispositions.insert(c.id, disposition);
    }

    // 3. one batch through the Delivery aggregate; a delivery a recent batch left as it is needs
    // no load for a receipt (delivered and read times are only ever set once, by receipts)
    let mut deliveries = HashMap::new();
    if !commands.is_empty() {
        let n = commands.len();
        let known = Known {
            aggregates: known,
            trusted: |command: &DeliveryCommand| {
                matches!(
                    command,
                    DeliveryCommand::MarkDelivered { .. } | DeliveryCommand::MarkRead { .. }
                )
            },
        };
        let result =
            store::execute_batch_known::<Delivery>(&mut *tx, commands, &(), Some(known)).await?;
        deliveries = result.states;
        metrics::counter!("herald_webhook_deliveries_reused_total").increment(result.reused as u64);
        let mut events = 0usize;
        for outcome in result.outcomes {
            match outcome {
                Ok(new) => events += new.len(),
                Err(e) => tracing::warn!(error = %e, "receipt not applied"),
            }
        }
        metrics::counter!("herald_webhook_receipts_total").increment(n as u64);
        metrics::counter!("herald_webhook_receipt_events_total").increment(events as u64);
    }
    // 4. chats: messages, then statuses of their messages, in one batch. After the deliveries:
    // only the inbox writes conversations, so this second append rarely meets a younger writer
    // (`StoreError::OutOfOrder`, retried by the caller)
    if !chat_commands.is_empty() {
        let outcomes = store::execute_batch::<Conversation>(&mut *tx, chat_commands, &()).await?;
        for outcome in outcomes {
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "chat message not recorded");
            }
        }
    }

    if !unmatched_rows.is_empty() {
        metrics::counter!("herald_webhook_receipts_unmatched_total")
            .increment(unmatched_rows.len() as u64);
        let mut inbox = Vec::new();
        let mut sessions = Vec::new();
        let mut ids = Vec::new();
        let mut states = Vec::new();
        let mut ats = Vec::new();
        for (i, s, id, state, at) in unmatched_rows {
            inbox.push(i);
            sessions.push(s);
            ids.push(id);
            states.push(state);
            ats.push(at);
        }
        sqlx::query(
            "INSERT INTO unmatched_receipts (inbox_id, session_id, message_id, state, at)
             SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&inbox)
        .bind(&sessions)
        .bind(&ids)
        .bind(&states)
        .bind(&ats)
        .execute(&mut *tx)
        .await?;
    }
    Ok((dispositions, deliveries))
}

/// Records what became of the batch's rows: an outcome for each row done, a retry for each row
/// to try again; a few statements for the whole batch.
async fn finish(
    tx: &mut sqlx::PgConnection,
    source: Source,
    dispositions: &HashMap<i64, Disposition>,
) -> sqlx::Result<()> {
    let (mut done_ids, mut done_notes) = (Vec::new(), Vec::new());
    let (mut wait_ids, mut wait_notes, mut wait_after) = (Vec::new(), Vec::new(), Vec::new());
    for (id, d) in dispositions {
        match d {
            Disposition::Processed(note) => {
                done_ids.push(*id);
                done_notes.push(note.as_str());
            }
            Disposition::Wait(note, after) => {
                wait_ids.push(*id);
                wait_notes.push(note.as_str());
                wait_after.push(after.as_secs_f64());
            }
        }
    }
    if !done_ids.is_empty() {
        sqlx::query(
            "INSERT INTO webhook_inbox_outcomes (inbox_id, note)
             SELECT * FROM UNNEST($1::bigint[], $2::text[])
             ON CONFLICT (inbox_id) DO UPDATE SET note = EXCLUDED.note, processed_at = now()",
        )
        .bind(&done_ids)
        .bind(&done_notes)
        .execute(&mut *tx)
        .await?;
        if source == Source::Retries {
            sqlx::query("DELETE FROM webhook_inbox_retries WHERE inbox_id = ANY($1)")
                .bind(&done_ids)
                .execute(&mut *tx)
                .await?;
        }
        metrics::counter!("herald_webhook_inbox_processed_total").increment(done_ids.len() as u64);
    }
    if !wait_ids.is_empty() {
        sqlx::query(
            "INSERT INTO webhook_inbox_retries AS r (inbox_id, attempts, last_error, next_attempt_at)
             SELECT id, 1, note, now() + make_interval(secs => after)
               FROM UNNEST($1::bigint[], $2::text[], $3::float8[]) AS u(id, note, after)
             ON CONFLICT (inbox_id) DO UPDATE SET attempts = r.attempts + 1,
                    last_error = EXCLUDED.last_error, next_attempt_at = EXCLUDED.next_attempt_at",
        )
        .bind(&wait_ids)
        .bind(&wait_notes)
        .bind(&wait_after)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// A row that failed on its own: count the attempt, keep the error, try again after a backoff.
/// A row of the log becomes a retry, and the cursor moves past it, so the rows after it go on.
/// After [`InboxConfig::park_after_attempts`] attempts whose failure was the post's own (not a
/// transient one), the row is parked: kept, visible, and tried again only when an operator asks.
async fn record_failure(
    pool: &PgPool,
    config: &InboxConfig,
    source: Source,
    id: i64,
    error: &anyhow::Error,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    if source == Source::Log {
        let Some(cursor) = lock_cursor(&mut tx).await? else {
            return Ok(());
        };
        let position: Option<(i64, i64)> =
            sqlx::query_as("SELECT tx_id::text::bigint, id FROM webhook_inbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        // only the log's next row (the one that failed) is skipped: never one still unread
        // before it (rows without a session are only stepped over)
        let Some(position) = position.filter(|p| *p > cursor) else {
            return Ok(());
        };
        let unread_before: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_inbox
                             WHERE (tx_id, id) > ($1::text::xid8, $2)
                               AND (tx_id, id) < ($3::text::xid8, $4)
                               AND session_id IS NOT NULL)",
        )
        .bind(cursor.0)
        .bind(cursor.1)
        .bind(position.0)
        .bind(position.1)
        .fetch_one(&mut *tx)
        .await?;
        if unread_before {
            return Ok(());
        }
        move_cursor(&mut tx, position).await?;
    }
    let attempts: i32 = sqlx::query_scalar(
        "INSERT INTO webhook_inbox_retries AS r (inbox_id, attempts, last_error)
         VALUES ($1, 1, $2)
         ON CONFLICT (inbox_id) DO UPDATE SET attempts = r.attempts + 1, last_error = EXCLUDED.last_error
         RETURNING attempts",
    )
    .bind(id)
    .bind(format!("{error:#}"))
    .fetch_one(&mut *tx)
    .await?;
    let park = attempts >= config.park_after_attempts
        && !herald_domain::failure::is_transient(error.as_ref());
    let after = failure_backoff(attempts);
    sqlx::query(
        "UPDATE webhook_inbox_retries
            SET next_attempt_at = CASE WHEN $3 THEN 'infinity' ELSE now() + make_interval(secs => $2) END,
                parked_at = CASE WHEN $3 THEN now() END
          WHERE inbox_id = $1",
    )
    .bind(id)
    .bind(after.as_secs_f64())
    .bind(park)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("herald_webhook_inbox_failures_total").increment(1);
    if park {
        metrics::counter!("herald_webhook_inbox_parked_total").increment(1);
        tracing::error!(inbox_id = id, attempts, error = %format!("{error:#}"),
            "webhook post parked: it keeps failing on its own (`herald projections parked`)");
    } else {
        tracing::warn!(inbox_id = id, attempts, retry_in = ?after, error = %format!("{error:#}"), "webhook processing failed; will retry");
    }
    Ok(())
}

/// Deletes processed rows older than `retention` (and their outcomes), a bounded chunk at a time:
/// among the oldest rows, those the log has passed and no retry waits for.
async fn prune(pool: &PgPool, retention: Duration) -> sqlx::Result<()> {
    let deleted = sqlx::query(
        "WITH oldest AS (
             SELECT id, tx_id, received_at FROM webhook_inbox ORDER BY id LIMIT 10000),
         doomed AS (
             SELECT o.id FROM oldest o, webhook_inbox_cursor c
              WHERE c.name = 'processor' AND (o.tx_id, o.id) <= (c.tx_id, c.id)
                AND o.received_at < now() - make_interval(secs => $1)
                AND NOT EXISTS (SELECT 1 FROM webhook_inbox_retries r WHERE r.inbox_id = o.id)),
         outcomes AS (
             DELETE FROM webhook_inbox_outcomes x USING doomed WHERE x.inbox_id = doomed.id)
         DELETE FROM webhook_inbox w USING doomed WHERE w.id = doomed.id",
    )
    .bind(retention.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected();
    if deleted > 0 {
        tracing::info!(deleted, "pruned processed webhook inbox rows");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoffs_grow_and_are_capped() {
        assert_eq!(failure_backoff(1), Duration::from_secs(1));
        assert_eq!(failure_backoff(2), Duration::from_secs(2));
        assert_eq!(failure_backoff(5), Duration::from_secs(16));
        assert_eq!(failure_backoff(50), Duration::from_secs(15 * 60));
        assert_eq!(failure_backoff(0), Duration::from_secs(1));
        assert_eq!(unmatched_backoff(10), Duration::from_secs(60));
    }

    #[test]
    fn only_delivered_and_read_receipts_are_acted_on() {
        assert!(
            matches!(classify("ChatPresence", "{}"), Action::Done(n) if n == "ignored: ChatPresence")
        );
        let own = r#"{"type":"ReadReceipt","state":"ReadSelf","event":{"MessageIDs":["A"]}}"#;
        assert!(
            matches!(classify("ReadReceipt", own), Action::Done(n) if n == "ignored: ReadReceipt ReadSelf")
        );
        let bad = r#"{"type":"ReadReceipt","state":"Read","event":{}}"#;
        assert!(
            matches!(classify("ReadReceipt", bad), Action::Done(n) if n.starts_with("malformed"))
        );
        let good = r#"{"type":"ReadReceipt","state":"Read","event":{"MessageIDs":["A"]}}"#;
        assert!(
            matches!(classify("ReadReceipt", good), Action::Receipt(r) if r.message_ids == ["A"])
        );
    }
}
