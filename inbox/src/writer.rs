//! Group commit for the webhook inbox: many concurrent webhook posts, few transactions.
//!
//! A gateway posts receipts by the thousand per second, each from its own connection. Storing each
//! post in its own transaction costs a WAL flush per post, which caps a 2-core machine well below
//! the receipt target (docs/design.md, Targets: ≥ 5,000/s, p99 ≤ 50 ms). Instead each request hands its row to
//! this writer and waits for the answer; a few writer tasks take whatever rows are waiting (up to
//! [`MAX_BATCH`]) and store them with ONE multi-row `INSERT ... ON CONFLICT DO NOTHING`. A post is
//! still acknowledged only after its row is committed, so nothing acknowledged can be lost, and a
//! lone post waits for nobody: a writer that finds one row stores one row.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

/// Most rows one insert stores.
pub const MAX_BATCH: usize = 256;
/// How long a writer waits for more posts before storing a small batch.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// A batch this large is stored at once, without lingering.
const LINGER_ENOUGH: usize = 64;
/// Rows waiting for a writer before new posts wait for room (backpressure, bounded memory).
const QUEUE: usize = 4 * MAX_BATCH;

/// One webhook post to store.
#[derive(Debug)]
pub struct InboxRow {
    pub source: &'static str,
    pub session_id: Uuid,
    pub tenant_id: Uuid,
    pub body_sha256: Vec<u8>,
    pub content_type: String,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
    /// The event object's JSON text; `None` when it is the body itself (a JSON post), which is
    /// then stored once.
    pub event: Option<String>,
    pub event_type: String,
}

/// Whether the post was new or a duplicate of one already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
}

type Job = (InboxRow, oneshot::Sender<Result<Stored, String>>);

#[derive(Clone)]
pub struct InboxWriter {
    tx: mpsc::Sender<Job>,
}

impl InboxWriter {
    /// Starts `writers` writer tasks on `pool`; they end when the last `InboxWriter` is dropped.
    pub fn spawn(pool: PgPool, writers: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_loop(pool.clone(), rx.clone()));
        }
        InboxWriter { tx }
    }

    /// Stores the row (committed when this returns `Ok`).
    pub async fn store(&self, row: InboxRow) -> anyhow::Result<Stored> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send((row, done))
            .await
            .map_err(|_| anyhow::anyhow!("the webhook inbox writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the webhook inbox writer has stopped"))?
            .map_err(|e| anyhow::anyhow!("storing the webhook failed: {e}"))
    }
}

async fn write_loop(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut batch: Vec<Job> = Vec::new();
        {
            // One writer collects at a time; the others are inserting meanwhile.
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
            // Under load, more posts are a moment away: wait a little for them, so that one
            // insert and one commit serve many posts. A lone post waits at most LINGER.
            if batch.len() < MAX_BATCH {
                let _ = tokio::time::timeout(LINGER, async {
                    while batch.len() < MAX_BATCH {
                        let room = MAX_BATCH - batch.len();
                        if rx.recv_many(&mut batch, room).await == 0 {
                            break;
                        }
                        if batch.len() >= LINGER_ENOUGH {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        let rows: Vec<&InboxRow> = batch.iter().map(|(row, _)| row).collect();
        let outcome = insert(&pool, &rows).await;
        match outcome {
            Ok(stored) => {
                for ((_, done), stored) in batch.into_iter().zip(stored) {
                    let _ = done.send(Ok(stored));
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(error = %message, rows = batch.len(), "storing webhook posts failed");
                for (_, done) in batch {
                    let _ = done.send(Err(message.clone()));
                }
            }
        }
    }
}

/// One insert for the batch; says for each row whether it was new. Two identical posts in one
/// batch: the first is new, the second a duplicate (as if they had come one after the other).
async fn insert(pool: &PgPool, rows: &[&InboxRow]) -> Result<Vec<Stored>, sqlx::Error> {
    let mut source = Vec::with_capacity(rows.len());
    let mut session = Vec::with_capacity(rows.len());
    let mut tenant = Vec::with_capacity(rows.len());
    let mut sha = Vec::with_capacity(rows.len());
    let mut content_type = Vec::with_capacity(rows.len());
    let mut headers = Vec::with_capacity(rows.len());
    let mut body = Vec::with_capacity(rows.len());
    let mut event = Vec::with_capacity(rows.len());
    let mut event_type = Vec::with_capacity(rows.len());
    for r in rows {
        source.push(r.source);
        session.push(r.session_id);
        tenant.push(r.tenant_id);
        sha.push(r.body_sha256.as_slice());
        content_type.push(r.content_type.as_str());
        headers.push(r.headers.to_string());
        body.push(r.body.as_slice());
        event.push(r.event.as_deref());
        event_type.push(r.event_type.as_str());
    }
    // WITH ORDINALITY keeps the posts' order, so ids (and processing) follow arrival.
    let inserted: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "INSERT INTO webhook_inbox (source, session_id, tenant_id, body_sha256, content_type, headers,
                                    body, event, event_type)
         SELECT s, si, t, h, ct, hd::jsonb, b, e::json, et
           FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::bytea[], $5::text[], $6::text[],
                       $7::bytea[], $8::text[], $9::text[])
                WITH ORDINALITY AS x(s, si, t, h, ct, hd, b, e, et, n)
          ORDER BY n
         ON CONFLICT (session_id, body_sha256) DO NOTHING
         RETURNING session_id, body_sha256",
    )
    .bind(&source)
    .bind(&session)
    .bind(&tenant)
    .bind(&sha)
    .bind(&content_type)
    .bind(&headers)
    .bind(&body)
    .bind(&event)
    .bind(&event_type)
    .fetch_all(pool)
    .await?;
    let mut fresh: std::collections::HashSet<(Uuid, Vec<u8>)> = inserted.into_iter().collect();
    Ok(rows
        .iter()
        .map(|r| {
            if fresh.remove(&(r.session_id, r.body_sha256.clone())) {
                Stored::New
            } else {
                Stored::Duplicate
            }
        })
        .collect())
}
