//! The `outbound_webhooks` projector: turns committed events into rows of the delivery queue,
//! one per event and subscribed endpoint of its tenant (docs/decisions/0062, 0076).
//!
//! It maps events exactly as the notifier does ([`NotificationMapper`]: the same kinds, data
//! and tenants as SSE), and inserts the rows in the transaction that moves its checkpoint, so
//! each event is queued once, durably, or not at all; an event that cannot be mapped is parked
//! like any projector's. Like the notifier it is no read model: never rebuilt (that would
//! re-deliver history; `replay` is how an endpoint asks for the past). Disabled endpoints are
//! not queued for.

use std::collections::HashSet;
use std::sync::Arc;

use herald_projections::notifier::NotificationMapper;
use herald_projections::notify::Kind;
use herald_projections::{Projector, StoredEvent};
use sqlx::PgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::endpoints::wants;
use crate::queue::{self, Message};

pub const NAME: &str = "outbound_webhooks";

pub struct OutboundProjector {
    mapper: NotificationMapper,
    /// Woken after a batch that queued something committed (the worker of this process).
    queued: Arc<Notify>,
    staged: std::sync::atomic::AtomicBool,
}

impl OutboundProjector {
    pub fn new(queued: Arc<Notify>) -> Self {
        OutboundProjector {
            mapper: NotificationMapper::default(),
            queued,
            staged: Default::default(),
        }
    }
}

/// The tenant's enabled endpoints and what each subscribed to.
pub(crate) async fn endpoints_of(
    conn: &mut PgConnection,
    tenants: &[Uuid],
    only: Option<Uuid>,
) -> anyhow::Result<Vec<(Uuid, Uuid, Vec<String>)>> {
    Ok(sqlx::query_as(
        "SELECT id, tenant_id, events FROM webhook_endpoints
          WHERE enabled AND tenant_id = ANY($1) AND ($2::uuid IS NULL OR id = $2)",
    )
    .bind(tenants)
    .bind(only)
    .fetch_all(&mut *conn)
    .await?)
}

/// Maps `events` and queues their messages for the endpoints that want them (all the tenants'
/// endpoints, or only `only`); how many rows were queued.
pub(crate) async fn queue_events(
    mapper: &NotificationMapper,
    conn: &mut PgConnection,
    events: &[StoredEvent],
    only: Option<Uuid>,
) -> anyhow::Result<u64> {
    let staged = mapper.map(conn, events).await?;
    let notifications: Vec<_> = staged
        .notifications
        .into_iter()
        .filter(|n| n.kind != Kind::CampaignProgress)
        .collect();
    if notifications.is_empty() {
        return Ok(0);
    }
    let tenants: Vec<Uuid> = notifications
        .iter()
        .map(|n| n.tenant_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let endpoints = endpoints_of(conn, &tenants, only).await?;
    if endpoints.is_empty() {
        return Ok(0);
    }
    let messages: Vec<(Uuid, Message)> = notifications
        .iter()
        .map(|n| (n.tenant_id, Message::of(n)))
        .collect();
    let mut rows = Vec::new();
    for (tenant, message) in &messages {
        for (endpoint, owner, events) in &endpoints {
            if owner == tenant && wants(events, &message.event_type) {
                rows.push((*endpoint, *tenant, message));
            }
        }
    }
    queue::enqueue(conn, &rows).await
}

#[async_trait::async_trait]
impl Projector for OutboundProjector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(NotificationMapper::AGGREGATE_TYPES)
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        let queued = queue_events(&self.mapper, conn, events, None).await?;
        if queued > 0 {
            self.staged
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn committed(&self) {
        if self
            .staged
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.queued.notify_one();
        }
    }
}
