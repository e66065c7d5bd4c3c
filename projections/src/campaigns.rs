//! Campaign progress and per-recipient status: the `campaigns` and `deliveries` tables.
//!
//! One projector owns both because a campaign's `counts` move with its recipients' statuses and
//! must change in the same transaction. Delivery events are applied in batches: the touched rows
//! are loaded in one query, the events folded in memory, the rows upserted in one statement and
//! the per-campaign count deltas written in one more. Reading a campaign's progress is then a
//! primary-key lookup, whatever the campaign's size.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use herald_domain::campaign::{Campaign, CampaignEvent};
use herald_domain::delivery::{Delivery, DeliveryEvent, DeliveryStatus};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::runtime::{Projector, StoredEvent};
use crate::Page;

pub struct CampaignProgressProjector;

pub const NAME: &str = "campaign_progress";

#[async_trait::async_trait]
impl Projector for CampaignProgressProjector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn tables(&self) -> &'static [&'static str] {
        &["campaigns", "deliveries"]
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[Delivery::TYPE, Campaign::TYPE])
    }
    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        // Keep the store's order: flush pending delivery events before each campaign event.
        let mut pending: Vec<&StoredEvent> = Vec::new();
        for e in events {
            if e.aggregate_type == Delivery::TYPE {
                pending.push(e);
            } else if e.aggregate_type == Campaign::TYPE {
                apply_deliveries(conn, &pending).await?;
                pending.clear();
                apply_campaign(conn, e).await?;
            }
        }
        apply_deliveries(conn, &pending).await
    }
}

async fn apply_campaign(conn: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
    let id: Uuid = e.aggregate_id.parse()?;
    match e.parse::<CampaignEvent>()? {
        CampaignEvent::CampaignCreated {
            tenant_id,
            name,
            template_id,
            session_id,
            total_recipients,
            scheduled_at,
            parent_id,
            recurrence,
            at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO campaigns (id, tenant_id, name, status, template_id, session_id, total_recipients,
                                       scheduled_at, created_at, parent_id, recurrence, recurrence_timezone)
                 VALUES ($1, $2, $3, 'scheduled', $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(tenant_id)
            .bind(name)
            .bind(template_id)
            .bind(session_id)
            .bind(i64::try_from(total_recipients)?)
            .bind(scheduled_at.unwrap_or(at))
            .bind(at)
            .bind(parent_id)
            .bind(recurrence.as_ref().map(|r| r.cron().to_string()))
            .bind(recurrence.as_ref().map(|r| r.zone().name()))
            .execute(&mut *conn)
            .await?;
        }
        CampaignEvent::CampaignStarted { at } => {
            sqlx::query("UPDATE campaigns SET status = 'running', started_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        CampaignEvent::CampaignCompleted { at } => {
            // a cancelled campaign whose last in-flight sends finished stays cancelled
            sqlx::query(
                "UPDATE campaigns SET status = CASE WHEN status = 'cancelled' THEN status ELSE 'completed' END,
                        completed_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        CampaignEvent::CampaignPaused { reason, .. } => {
            sqlx::query("UPDATE campaigns SET status = 'paused', pause_reason = $2 WHERE id = $1")
                .bind(id)
                .bind(reason)
                .execute(&mut *conn)
                .await?;
        }
        CampaignEvent::CampaignRenamed { name, .. } => {
            sqlx::query("UPDATE campaigns SET name = $2 WHERE id = $1")
                .bind(id)
                .bind(name)
                .execute(&mut *conn)
                .await?;
        }
        CampaignEvent::CampaignResumed { .. } => {
            sqlx::query(
                "UPDATE campaigns SET status = 'running', pause_reason = NULL WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        CampaignEvent::CampaignAudienceResolved {
            total_recipients, ..
        } => {
            sqlx::query("UPDATE campaigns SET total_recipients = $2 WHERE id = $1")
                .bind(id)
                .bind(i64::try_from(total_recipients)?)
                .execute(&mut *conn)
                .await?;
        }
        CampaignEvent::CampaignCancelled { at } => {
            sqlx::query(
                "UPDATE campaigns SET status = 'cancelled', completed_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// A recipient row as the projector folds events into it.
#[derive(Debug, Clone)]
struct Row_ {
    tenant_id: Uuid,
    status: DeliveryStatus,
    message_id: Option<String>,
    error: Option<String>,
    attempts: i32,
    queued_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
}

/// Recipients' rows as columns, for one `UNNEST` statement.
#[derive(Default)]
struct Rows {
    c_ids: Vec<Uuid>,
    phones: Vec<String>,
    tenants: Vec<Uuid>,
    statuses: Vec<&'static str>,
    message_ids: Vec<Option<String>>,
    errors: Vec<Option<String>>,
    attempts: Vec<i32>,
    queued: Vec<DateTime<Utc>>,
    sent: Vec<Option<DateTime<Utc>>>,
    delivered: Vec<Option<DateTime<Utc>>>,
    read: Vec<Option<DateTime<Utc>>>,
    failed: Vec<Option<DateTime<Utc>>>,
}

impl Rows {
    fn push(&mut self, (campaign, phone): (Uuid, String), r: Row_) {
        self.c_ids.push(campaign);
        self.phones.push(phone);
        self.tenants.push(r.tenant_id);
        self.statuses.push(r.status.as_str());
        self.message_ids.push(r.message_id);
        self.errors.push(r.error);
        self.attempts.push(r.attempts);
        self.queued.push(r.queued_at);
        self.sent.push(r.sent_at);
        self.delivered.push(r.delivered_at);
        self.read.push(r.read_at);
        self.failed.push(r.failed_at);
    }
}

/// Splits a delivery id `<campaign_id>:<phone>`.
fn split_delivery_id(id: &str) -> anyhow::Result<(Uuid, String)> {
    let (campaign, phone) = id
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("bad delivery id {id}"))?;
    Ok((campaign.parse()?, phone.to_string()))
}

async fn apply_deliveries(conn: &mut PgConnection, events: &[&StoredEvent]) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    // 1. parse, and find which rows may already exist (everything but fresh DeliveryQueued)
    let mut parsed = Vec::with_capacity(events.len());
    let mut existing_keys: Vec<(Uuid, String)> = Vec::new();
    for e in events {
        let key = split_delivery_id(&e.aggregate_id)?;
        let event: DeliveryEvent = e.parse()?;
        if !matches!(event, DeliveryEvent::DeliveryQueued { .. }) {
            existing_keys.push(key.clone());
        }
        parsed.push((key, event));
    }
    existing_keys.sort();
    existing_keys.dedup();

    // 2. load those rows; remember each one's status before this batch
    let mut rows: HashMap<(Uuid, String), Row_> = HashMap::with_capacity(parsed.len());
    let mut before: HashMap<(Uuid, String), Option<DeliveryStatus>> = HashMap::new();
    if !existing_keys.is_empty() {
        let (campaigns, phones): (Vec<Uuid>, Vec<String>) = existing_keys.iter().cloned().unzip();
        let loaded = sqlx::query(
            "SELECT d.* FROM deliveries d
               JOIN UNNEST($1::uuid[], $2::text[]) AS k(c, p) ON d.campaign_id = k.c AND d.phone = k.p",
        )
        .bind(&campaigns)
        .bind(&phones)
        .fetch_all(&mut *conn)
        .await?;
        for r in loaded {
            let status: String = r.try_get("status")?;
            let status = DeliveryStatus::parse(&status)
                .ok_or_else(|| anyhow::anyhow!("unknown delivery status {status}"))?;
            let key = (r.try_get("campaign_id")?, r.try_get("phone")?);
            before.insert(key.clone(), Some(status));
            rows.insert(
                key,
                Row_ {
                    tenant_id: r.try_get("tenant_id")?,
                    status,
                    message_id: r.try_get("message_id")?,
                    error: r.try_get("error")?,
                    attempts: r.try_get("attempts")?,
                    queued_at: r.try_get("queued_at")?,
                    sent_at: r.try_get("sent_at")?,
                    delivered_at: r.try_get("delivered_at")?,
                    read_at: r.try_get("read_at")?,
                    failed_at: r.try_get("failed_at")?,
                },
            );
        }
    }

    // 3. fold the events
    for (key, event) in parsed {
        match event {
            DeliveryEvent::DeliveryQueued { tenant_id, at, .. } => {
                before.entry(key.clone()).or_insert(None);
                rows.entry(key).or_insert(Row_ {
                    tenant_id,
                    status: DeliveryStatus::Queued,
                    message_id: None,
                    error: None,
                    attempts: 0,
                    queued_at: at,
                    sent_at: None,
                    delivered_at: None,
                    read_at: None,
                    failed_at: None,
                });
            }
            other => {
                let Some(row) = rows.get_mut(&key) else {
                    tracing::warn!(campaign = %key.0, "delivery event for an unknown recipient");
                    continue;
                };
                match other {
                    DeliveryEvent::DeliveryQueued { .. } => {}
                    DeliveryEvent::DeliveryDispatched {
                        message_id,
                        attempt,
                        ..
                    } => {
                        if !row.status.is_final() {
                            row.status = DeliveryStatus::Sending;
                        }
                        row.message_id = Some(message_id);
                        row.attempts = i32::try_from(attempt).unwrap_or(i32::MAX);
                    }
                    DeliveryEvent::DeliverySent { message_id, at } => {
                        if !row.status.is_final() {
                            row.status = DeliveryStatus::Sent;
                        }
                        row.message_id = Some(message_id);
                        row.sent_at = Some(at);
                        row.error = None;
                    }
                    DeliveryEvent::DeliveryFailed { reason, at, .. } => {
                        // a provider may fail a sent message later (`MarkUndelivered`)
                        if !row.status.is_final() || row.status == DeliveryStatus::Sent {
                            row.status = DeliveryStatus::Failed;
                        }
                        row.error = Some(reason);
                        row.failed_at = Some(at);
                    }
                    DeliveryEvent::DeliverySkipped { reason, .. } => {
                        if !row.status.is_final() {
                            row.status = DeliveryStatus::Skipped;
                        }
                        row.error = Some(reason);
                    }
                    // Receipts: the same forward-only rules as the aggregate (see
                    // `herald_domain::delivery`): each time kept once, read never goes back,
                    // and a receipt outranks a failed or skipped send.
                    DeliveryEvent::DeliveryDelivered { at } => {
                        row.delivered_at.get_or_insert(at);
                        if row.status != DeliveryStatus::Read {
                            row.status = DeliveryStatus::Delivered;
                        }
                    }
                    DeliveryEvent::DeliveryRead { at } => {
                        row.read_at.get_or_insert(at);
                        row.status = DeliveryStatus::Read;
                    }
                }
            }
        }
    }

    // 4. count deltas per campaign
    let mut deltas: HashMap<Uuid, [i64; 7]> = HashMap::new();
    for (key, row) in &rows {
        let old = before.get(key).copied().flatten();
        if old == Some(row.status) {
            continue;
        }
        let d = deltas.entry(key.0).or_insert([0; 7]);
        if let Some(old) = old {
            d[old as usize] -= 1;
        }
        d[row.status as usize] += 1;
    }

    // 5. rows that were there already: one UPDATE (no speculative insert, no row lock before the
    //    update, as `INSERT ... ON CONFLICT DO UPDATE` takes); new rows: one INSERT. Under a
    //    receipt load every row is an update.
    let (mut updates, mut inserts) = (Rows::default(), Rows::default());
    for (key, row) in rows {
        if before.get(&key).copied().flatten().is_some() {
            updates.push(key, row);
        } else {
            inserts.push(key, row);
        }
    }
    if !updates.c_ids.is_empty() {
        sqlx::query(
            "UPDATE deliveries d SET status = u.status, message_id = u.message_id, error = u.error,
                    attempts = u.attempts, sent_at = u.sent_at, delivered_at = u.delivered_at,
                    read_at = u.read_at, failed_at = u.failed_at
               FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                           $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])
                    AS u(campaign_id, phone, status, message_id, error, attempts, sent_at,
                         delivered_at, read_at, failed_at)
              WHERE d.campaign_id = u.campaign_id AND d.phone = u.phone",
        )
        .bind(&updates.c_ids)
        .bind(&updates.phones)
        .bind(&updates.statuses)
        .bind(&updates.message_ids)
        .bind(&updates.errors)
        .bind(&updates.attempts)
        .bind(&updates.sent)
        .bind(&updates.delivered)
        .bind(&updates.read)
        .bind(&updates.failed)
        .execute(&mut *conn)
        .await?;
    }
    if !inserts.c_ids.is_empty() {
        // ON CONFLICT: a rebuild replays into rows it may meet again
        sqlx::query(
            "INSERT INTO deliveries (campaign_id, phone, tenant_id, status, message_id, error, attempts,
                                     queued_at, sent_at, delivered_at, read_at, failed_at)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                                  $7::int[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[],
                                  $11::timestamptz[], $12::timestamptz[])
             ON CONFLICT (campaign_id, phone) DO UPDATE SET
               status = EXCLUDED.status, message_id = EXCLUDED.message_id, error = EXCLUDED.error,
               attempts = EXCLUDED.attempts, sent_at = EXCLUDED.sent_at,
               delivered_at = EXCLUDED.delivered_at, read_at = EXCLUDED.read_at, failed_at = EXCLUDED.failed_at",
        )
        .bind(&inserts.c_ids)
        .bind(&inserts.phones)
        .bind(&inserts.tenants)
        .bind(&inserts.statuses)
        .bind(&inserts.message_ids)
        .bind(&inserts.errors)
        .bind(&inserts.attempts)
        .bind(&inserts.queued)
        .bind(&inserts.sent)
        .bind(&inserts.delivered)
        .bind(&inserts.read)
        .bind(&inserts.failed)
        .execute(&mut *conn)
        .await?;
    }

    // 6. campaign counts in one statement
    if !deltas.is_empty() {
        let mut ids = Vec::with_capacity(deltas.len());
        let mut cols: [Vec<i64>; 7] = Default::default();
        for (id, d) in deltas {
            ids.push(id);
            for (i, v) in d.iter().enumerate() {
                cols[i].push(*v);
            }
        }
        sqlx::query(
            "UPDATE campaigns c SET
               count_queued = count_queued + d.q, count_sending = count_sending + d.s1,
               count_sent = count_sent + d.s2, count_delivered = count_delivered + d.dl,
               count_read = count_read + d.rd, count_failed = count_failed + d.f,
               count_skipped = count_skipped + d.sk
             FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                         $6::bigint[], $7::bigint[], $8::bigint[]) AS d(id, q, s1, s2, dl, rd, f, sk)
             WHERE c.id = d.id",
        )
        .bind(&ids)
        .bind(&cols[0])
        .bind(&cols[1])
        .bind(&cols[2])
        .bind(&cols[3])
        .bind(&cols[4])
        .bind(&cols[5])
        .bind(&cols[6])
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub status: String,
    pub template_id: Uuid,
    pub session_id: Uuid,
    pub total_recipients: i64,
    pub count_queued: i64,
    pub count_sending: i64,
    pub count_sent: i64,
    pub count_delivered: i64,
    pub count_read: i64,
    pub count_failed: i64,
    pub count_skipped: i64,
    pub count_waiting_quota: i64,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub parent_id: Option<Uuid>,
    pub recurrence: Option<String>,
    pub recurrence_timezone: Option<String>,
    /// Why the circuit breaker paused it (docs/safe-sending.md); `None` when running or paused
    /// by a user.
    pub pause_reason: Option<String>,
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> sqlx::Result<Option<CampaignRow>> {
    sqlx::query_as("SELECT * FROM campaigns WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Newest first, optionally by status, or only the runs of one recurring campaign.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    status: Option<&str>,
    parent_id: Option<Uuid>,
    limit: i64,
    cursor: Option<(DateTime<Utc>, Uuid)>,
) -> sqlx::Result<Page<CampaignRow>> {
    let (at, id) = cursor.unzip();
    let rows: Vec<CampaignRow> = sqlx::query_as(
        "SELECT * FROM campaigns WHERE tenant_id = $1
            AND ($2::text IS NULL OR status = $2)
            AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
            AND ($6::uuid IS NULL OR parent_id = $6)
          ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(tenant_id)
    .bind(status)
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .bind(parent_id)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| {
        crate::time_cursor(r.created_at, r.id)
    }))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub phone: String,
    pub status: String,
    pub message_id: Option<String>,
    pub error: Option<String>,
    pub attempts: i32,
    pub queued_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
}

/// A page of a campaign's recipients ordered by phone; the cursor is the last phone. The caller
/// has already checked that the campaign belongs to the tenant; the tenant filter stays anyway.
pub async fn recipients(
    pool: &PgPool,
    tenant_id: Uuid,
    campaign_id: Uuid,
    status: Option<&str>,
    limit: i64,
    after_phone: Option<&str>,
) -> sqlx::Result<Page<DeliveryRow>> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT phone, status, message_id, error, attempts, queued_at, sent_at, delivered_at, read_at, failed_at
           FROM deliveries WHERE campaign_id = $1 AND tenant_id = $2
            AND ($3::text IS NULL OR status = $3)
            AND ($4::text IS NULL OR phone > $4)
          ORDER BY phone LIMIT $5",
    )
    .bind(campaign_id)
    .bind(tenant_id)
    .bind(status)
    .bind(after_phone)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| r.phone.clone()))
}
