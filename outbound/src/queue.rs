//! The durable delivery queue in Postgres (`webhook_deliveries`) and its attempt log
//! (`webhook_attempts`).
//!
//! A row is one message owed to one endpoint. Workers lease rows by moving `next_attempt_at`
//! past the lease in the statement that takes them, so a worker that dies (even `kill -9`)
//! leaves every row it held due again when its lease ends: nothing is lost, a message in flight
//! may be sent twice (receivers de-duplicate by `webhook-id`). Rows are taken per endpoint, a
//! few endpoints at a time in random order, so a busy or slow endpoint cannot hold up others.

use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_projections::notify::Notification;
use herald_projections::{time_cursor, Page};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::endpoints::EndpointError;

/// One message: the `webhook-id` and the body exactly as it is signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
}

impl Message {
    /// The message of a notification; its id follows from the stored event, so a retry or a
    /// replay of the same event carries the same `webhook-id`.
    pub fn of(n: &Notification) -> Self {
        Self::new(
            format!("msg_{}", n.id),
            n.kind.as_str(),
            n.at,
            n.data.clone(),
        )
    }

    /// A sample (`POST .../test`), of type `webhook.test`.
    pub fn test(endpoint_id: Uuid) -> Self {
        Self::new(
            format!("msg_test_{}", Uuid::new_v4().simple()),
            "webhook.test",
            Utc::now(),
            json!({"endpoint_id": endpoint_id,
                   "message": "a test event from Herald; no action needed"}),
        )
    }

    fn new(event_id: String, event_type: &str, at: DateTime<Utc>, data: serde_json::Value) -> Self {
        let payload = json!({"type": event_type, "timestamp": at, "data": data}).to_string();
        Message {
            event_id,
            event_type: event_type.to_string(),
            payload,
        }
    }
}

/// Queues `messages` (endpoint, tenant, message) in the caller's transaction.
pub async fn enqueue(
    conn: &mut PgConnection,
    messages: &[(Uuid, Uuid, &Message)],
) -> anyhow::Result<u64> {
    if messages.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(messages.len());
    let (mut endpoints, mut tenants) = (Vec::new(), Vec::new());
    let (mut event_ids, mut types, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    for (endpoint, tenant, m) in messages {
        ids.push(Uuid::new_v4());
        endpoints.push(*endpoint);
        tenants.push(*tenant);
        event_ids.push(m.event_id.as_str());
        types.push(m.event_type.as_str());
        payloads.push(m.payload.as_str());
    }
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[])",
    )
    .bind(&ids)
    .bind(&endpoints)
    .bind(&tenants)
    .bind(&event_ids)
    .bind(&types)
    .bind(&payloads)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// A leased row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// Leases due rows: up to `per_endpoint` of each of up to `endpoints` enabled endpoints not in
/// `busy`, for `lease`.
pub async fn claim(
    pool: &PgPool,
    busy: &[Uuid],
    endpoints: i64,
    per_endpoint: i64,
    lease: Duration,
) -> anyhow::Result<Vec<Claimed>> {
    Ok(sqlx::query_as(
        "WITH picked AS (
             SELECT e.id FROM webhook_endpoints e
              WHERE e.enabled AND NOT (e.id = ANY($1))
                AND EXISTS (SELECT 1 FROM webhook_deliveries d
                             WHERE d.endpoint_id = e.id AND d.status = 'pending'
                               AND d.next_attempt_at <= now())
              ORDER BY random() LIMIT $2
         ), due AS (
             SELECT d.id FROM picked p CROSS JOIN LATERAL (
                 SELECT id FROM webhook_deliveries d
                  WHERE d.endpoint_id = p.id AND d.status = 'pending' AND d.next_attempt_at <= now()
                  ORDER BY d.next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) d
         )
         UPDATE webhook_deliveries w SET next_attempt_at = now() + make_interval(secs => $4)
           FROM due WHERE w.id = due.id
         RETURNING w.id, w.endpoint_id, w.event_id, w.event_type, w.payload, w.attempts",
    )
    .bind(busy)
    .bind(endpoints)
    .bind(per_endpoint)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it did not count as delivered (`None`: delivered).
    pub error: Option<String>,
    /// When to try again (`None`: no further attempt).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The receiver answered 410 Gone: the endpoint is disabled.
    pub gone: bool,
}

/// Writes attempts' results to their rows and the log, in one transaction (the worker groups
/// whatever finished meanwhile, so a commit carries many attempts).
pub async fn record(pool: &PgPool, results: &[(Claimed, AttemptResult)]) -> anyhow::Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    let n = results.len();
    let (mut ids, mut statuses, mut attempts, mut nexts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut log_ids, mut endpoints, mut event_ids, mut types, mut codes, mut errors) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut gone = Vec::new();
    for (c, r) in results {
        ids.push(c.id);
        statuses.push(match (&r.error, r.next_attempt_at) {
            (None, _) => "delivered",
            (Some(_), Some(_)) => "pending",
            (Some(_), None) => "failed",
        });
        attempts.push(c.attempts + 1);
        nexts.push(r.next_attempt_at);
        log_ids.push(Uuid::new_v4());
        endpoints.push(c.endpoint_id);
        event_ids.push(c.event_id.as_str());
        types.push(c.event_type.as_str());
        codes.push(r.status_code.map(i32::from));
        errors.push(r.error.as_deref());
        if r.gone {
            gone.push(c.endpoint_id);
        }
    }
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE webhook_deliveries d SET status = u.status, attempts = u.attempt,
                next_attempt_at = coalesce(u.next, d.next_attempt_at),
                finished_at = CASE WHEN u.status = 'pending' THEN NULL ELSE now() END
           FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[])
                AS u (id, status, attempt, next)
          WHERE d.id = u.id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&attempts)
    .bind(&nexts)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, event_id, event_type, attempt,
                                       status_code, error, next_attempt_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                              $6::int[], $7::int[], $8::text[], $9::timestamptz[])",
    )
    .bind(&log_ids)
    .bind(&ids)
    .bind(&endpoints)
    .bind(&event_ids)
    .bind(&types)
    .bind(&attempts)
    .bind(&codes)
    .bind(&errors)
    .bind(&nexts)
    .execute(&mut *tx)
    .await?;
    if !gone.is_empty() {
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = false, updated_at = now(),
                    disabled_reason = 'the endpoint answered 410 Gone'
              WHERE id = ANY($1)",
        )
        .bind(&gone)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One attempt in the delivery log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    pub id: Uuid,
    pub event_id: String,
    pub event_type: String,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// An endpoint's attempts, newest first.
pub async fn attempts(
    pool: &PgPool,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    limit: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<Page<Attempt>, EndpointError> {
    crate::endpoints::get(pool, tenant_id, endpoint_id).await?;
    let (at, id) = after.unzip();
    let rows: Vec<Attempt> = sqlx::query_as(
        "SELECT id, event_id, event_type, attempt, status_code, error, at, next_attempt_at
           FROM webhook_attempts
          WHERE endpoint_id = $1 AND ($2::timestamptz IS NULL OR (at, id) < ($2, $3))
          ORDER BY at DESC, id DESC LIMIT $4",
    )
    .bind(endpoint_id)
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |a| time_cursor(a.at, a.id)))
}

/// Queues a sample message for an endpoint of the tenant (whatever its filter); its id.
pub async fn send_test(
    pool: &PgPool,
    tenant_id: Uuid,
    endpoint_id: Uuid,
) -> Result<String, EndpointError> {
    crate::endpoints::get(pool, tenant_id, endpoint_id).await?;
    let message = Message::test(endpoint_id);
    let mut conn = pool.acquire().await?;
    enqueue(&mut conn, &[(endpoint_id, tenant_id, &message)]).await?;
    Ok(message.event_id)
}
