//! `POST /api/v1/webhook-endpoints/{id}/replay`: queues again, for one endpoint, every event of
//! its tenant it subscribes to since a time, read from the event store (the source of truth,
//! docs/decisions/0062), with the same `webhook-id`s as the first time.
//!
//! It reads up to the `outbound_webhooks` projector's checkpoint: what lies beyond is queued by
//! the projector itself. The store is read in pages in the projectors' order and each page is
//! queued in its own transaction. The store has no tenant column, so a replay reads every
//! tenant's events of the period (each page once) and keeps the endpoint's: [`MAX_AGE`] bounds
//! how far back a replay reaches.

use chrono::{DateTime, Utc};
use herald_projections::notifier::NotificationMapper;
use herald_projections::StoredEvent;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::endpoints::{self, EndpointError};
use crate::projector::{queue_events, NAME};

/// The furthest back a replay reaches.
pub const MAX_AGE: chrono::Duration = chrono::Duration::days(30);
/// Events read per page.
const PAGE: i64 = 2_000;

/// Queues the endpoint's events recorded at or after `since`; how many messages were queued.
pub async fn replay(
    pool: &PgPool,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    since: DateTime<Utc>,
) -> Result<u64, EndpointError> {
    let endpoint = endpoints::get(pool, tenant_id, endpoint_id).await?;
    if !endpoint.enabled {
        return Err(EndpointError::Disabled);
    }
    let now = Utc::now();
    if since > now {
        return Err(EndpointError::Invalid {
            field: "since",
            message: "must not be in the future".into(),
        });
    }
    if since < now - MAX_AGE {
        return Err(EndpointError::Invalid {
            field: "since",
            message: format!("must be within the last {} days", MAX_AGE.num_days()),
        });
    }
    let upto: Option<(i64, i64)> =
        sqlx::query_as("SELECT tx_id, global_position FROM projector_checkpoints WHERE name = $1")
            .bind(NAME)
            .fetch_optional(pool)
            .await?;
    let Some(upto) = upto else { return Ok(0) };
    let mapper = NotificationMapper::default();
    let mut after = (0i64, 0i64);
    let mut queued = 0;
    loop {
        let events = page(pool, after, upto, since).await?;
        let Some(last) = events.last() else { break };
        after = last.position();
        let mut tx = pool.begin().await?;
        queued += queue_events(&mapper, &mut tx, &events, Some(endpoint_id)).await?;
        tx.commit().await?;
        if (events.len() as i64) < PAGE {
            break;
        }
    }
    Ok(queued)
}

async fn page(
    pool: &PgPool,
    after: (i64, i64),
    upto: (i64, i64),
    since: DateTime<Utc>,
) -> anyhow::Result<Vec<StoredEvent>> {
    let rows = sqlx::query(
        "SELECT tx_id::text::bigint AS tx, global_position, aggregate_type, aggregate_id, sequence,
                event_type, payload::text AS payload, recorded_at
           FROM events
          WHERE (tx_id, global_position) > ($1::text::xid8, $2)
            AND (tx_id, global_position) <= ($3::text::xid8, $4)
            AND aggregate_type = ANY($5) AND recorded_at >= $6
          ORDER BY tx_id, global_position LIMIT $7",
    )
    .bind(after.0)
    .bind(after.1)
    .bind(upto.0)
    .bind(upto.1)
    .bind(NotificationMapper::AGGREGATE_TYPES)
    .bind(since)
    .bind(PAGE)
    .fetch_all(pool)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        events.push(StoredEvent {
            tx_id: r.try_get("tx")?,
            global_position: r.try_get("global_position")?,
            aggregate_type: r.try_get("aggregate_type")?,
            aggregate_id: r.try_get("aggregate_id")?,
            sequence: r.try_get("sequence")?,
            event_type: r.try_get("event_type")?,
            payload: r.try_get("payload")?,
            recorded_at: r.try_get("recorded_at")?,
        });
    }
    Ok(events)
}
