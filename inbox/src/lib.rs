//! The webhook inbox (docs/decisions/0055): [`writer`] stores gateway posts as they arrive, in
//! group commits, and the processor (started here, its steps in the modules below) turns stored
//! posts into commands. Neither
//! needs a request to run; the HTTP crate only hands the writer what its endpoints receive.
//!
//! The endpoint (herald-api's `routes::webhooks`) only stores a post and answers; this worker does the rest,
//! so a slow or failing step never makes the gateway wait or lose a post. `webhook_inbox` is a log
//! the processor reads in commit order, like a projector reads `events`; a post's row is written
//! once and never updated (docs/decisions/0033-webhook-inbox-log.md):
//!
//! 1. In one transaction ([`claim`] takes the batch, [`parse`] reads each post, [`apply`] runs
//!    it, [`record`] writes what became of it): lock the log's cursor (`webhook_inbox_cursor`; one process at a time
//!    reads the log, any process can), read the next posts after it, find the deliveries of every
//!    receipt's message ids in `message_index` (one query), apply every receipt through the
//!    `Delivery` batch executor (one load and one insert for the batch), record each post's
//!    outcome in `webhook_inbox_outcomes`, and move the cursor past the batch.
//! 2. If the batch fails, it is rolled back and split in halves down to the rows that fail alone
//!    ([`round`], [`parking`], docs/decisions/0036), so one bad row cannot hold the others back; a row that
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

pub mod credentials;
pub mod writer;

mod apply;
mod claim;
mod conversations;
mod cursor;
mod parking;
mod parse;
mod record;
mod round;
mod session_events;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{watch, Notify};

use cursor::Source;
use parse::{Action, Claimed};
use record::{record_failure, Disposition};
use round::process_range;

pub use conversations::META_MESSAGES;
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
    tokio::spawn(round::run(pool, config, wake, shutdown))
}
