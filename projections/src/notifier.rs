//! The `notifier` projector: turns committed events into real-time notifications (docs/decisions/0017,
//! docs/events.md).
//!
//! It runs like every projector (commit-safe order, its own checkpoint, one instance across all
//! processes) but owns no table: `apply` maps a batch to notifications and stages them, and
//! they are handed to [`Notifications`] only once the batch's checkpoint has committed. So a
//! notification always describes a stored event, and a batch that fails is published again when
//! it is retried: at least once, with stable ids for de-duplication.
//!
//! - `Campaign` events → `campaign.status`; `Delivery` events → `delivery.status` (except
//!   `DeliveryQueued`: the campaign's progress says how many are queued); `Session` events →
//!   `session.status` (never a QR code or a token: no event holds one); `ContactOptedOut` →
//!   `contact.opted_out` (the contact's stream id names its tenant).
//! - Both campaign and delivery events mark the campaign for `campaign.progress`: the
//!   [`ProgressTracker`] reads the counts from the `campaigns` read model at most every
//!   [`PROGRESS_INTERVAL`] per campaign (latest counts win) and keeps a campaign marked until the
//!   read model has applied every event that marked it, so the final counts are always sent.
//! - Delivery and session events after the first do not carry the tenant: it is the tenant of
//!   the stream's first event (`CampaignCreated`, `SessionLinked`), found in the same batch, in a
//!   small cache, or in the event store by primary key. A single send's deliveries
//!   (`<message id>:<phone>`, no campaign) are owned by the tenant its `single_messages` row
//!   names (written with its `DeliveryQueued`), so a restarted notifier finds them too.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use cqrs_es::Aggregate;
use herald_domain::campaign::{Campaign, CampaignEvent};
use herald_domain::contact::{Contact, ContactEvent};
use herald_domain::conversation::{ChatMessage, Conversation, ConversationEvent};
use herald_domain::delivery::{message_id_for, Delivery, DeliveryEvent};
use herald_domain::opt_out::OptOutSource;
use herald_domain::phone::Phone;
use herald_domain::session::{Session, SessionEvent};
use serde_json::json;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::notify::{Kind, Notification, Notifications};
use crate::runtime::{Projector, StoredEvent};

pub const NAME: &str = "notifier";

/// At most this often per campaign: `campaign.progress` (four a second).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Owner caches are cleared when they grow past this (a cache miss is one indexed query).
const OWNER_CACHE_MAX: usize = 100_000;

/// One stored event, parsed, with the stream it belongs to.
enum Parsed {
    Campaign(Uuid, CampaignEvent),
    Delivery {
        campaign_id: Uuid,
        phone: String,
        event: DeliveryEvent,
    },
    Session(Uuid, SessionEvent),
    /// An incoming chat message (`MessageReceived`); it names its own tenant.
    Message {
        tenant_id: Uuid,
        session_id: Uuid,
        chat: String,
        is_group: bool,
        message: ChatMessage,
    },
    /// A contact opted out of campaigns (`ContactOptedOut`).
    OptedOut {
        tenant_id: Uuid,
        phone: String,
        source: OptOutSource,
        at: chrono::DateTime<Utc>,
    },
}

/// Parses the events the notifier publishes; everything else is `None`. A new aggregate whose
/// events should reach subscribers is one arm here and one in [`to_notification`].
fn parse(e: &StoredEvent) -> anyhow::Result<Option<Parsed>> {
    Ok(Some(match e.aggregate_type.as_str() {
        Campaign::TYPE => Parsed::Campaign(e.aggregate_id.parse()?, e.parse()?),
        Delivery::TYPE => {
            let (campaign, phone) = e
                .aggregate_id
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("bad delivery id {}", e.aggregate_id))?;
            Parsed::Delivery {
                campaign_id: campaign.parse()?,
                phone: phone.to_string(),
                event: e.parse()?,
            }
        }
        Session::TYPE => Parsed::Session(e.aggregate_id.parse()?, e.parse()?),
        // only incoming messages are announced: outgoing ones were written by the tenant itself
        Conversation::TYPE => match e.parse()? {
            ConversationEvent::MessageReceived {
                tenant_id,
                session_id,
                chat,
                is_group,
                message,
            } => Parsed::Message {
                tenant_id,
                session_id,
                chat,
                is_group,
                message,
            },
            _ => return Ok(None),
        },
        Contact::TYPE => match e.parse()? {
            ContactEvent::ContactOptedOut { source, at } => {
                let (tenant, phone) = e
                    .aggregate_id
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("bad contact id {}", e.aggregate_id))?;
                Parsed::OptedOut {
                    tenant_id: tenant.parse()?,
                    phone: phone.to_string(),
                    source,
                    at,
                }
            }
            _ => return Ok(None),
        },
        _ => return Ok(None),
    }))
}

/// The notification of one event of a known tenant (`None`: nothing to tell).
fn to_notification(e: &StoredEvent, parsed: &Parsed, tenant_id: Uuid) -> Option<Notification> {
    let (kind, key, at, data) = match parsed {
        Parsed::Campaign(id, event) => {
            let (status, at, extra) = match event {
                CampaignEvent::CampaignCreated {
                    name,
                    total_recipients,
                    scheduled_at,
                    parent_id,
                    at,
                    ..
                } => (
                    "scheduled",
                    *at,
                    json!({"name": name, "total_recipients": total_recipients,
                           "scheduled_at": scheduled_at, "parent_id": parent_id}),
                ),
                CampaignEvent::CampaignStarted { at } => ("running", *at, json!({})),
                // the circuit breaker's reason (docs/safe-sending.md); a user's pause has none
                CampaignEvent::CampaignPaused { at, reason } => match reason {
                    Some(reason) => ("paused", *at, json!({"pause_reason": reason})),
                    None => ("paused", *at, json!({})),
                },
                CampaignEvent::CampaignResumed { at } => ("running", *at, json!({})),
                CampaignEvent::CampaignCompleted { at } => ("completed", *at, json!({})),
                CampaignEvent::CampaignCancelled { at } => ("cancelled", *at, json!({})),
                // not a status change; the progress notification shows the new total
                CampaignEvent::CampaignAudienceResolved { .. } => return None,
                // not a status change either
                CampaignEvent::CampaignRenamed { .. } => return None,
            };
            let mut data = json!({"campaign_id": id, "status": status});
            merge(&mut data, extra);
            (Kind::CampaignStatus, id.to_string(), at, data)
        }
        Parsed::Delivery {
            campaign_id,
            phone,
            event,
        } => {
            let (status, at, message_id, extra) = match event {
                DeliveryEvent::DeliveryQueued { .. } => return None,
                DeliveryEvent::DeliveryDispatched {
                    message_id,
                    attempt,
                    at,
                    ..
                } => (
                    "sending",
                    *at,
                    Some(message_id.clone()),
                    json!({"attempt": attempt}),
                ),
                DeliveryEvent::DeliverySent { message_id, at } => {
                    ("sent", *at, Some(message_id.clone()), json!({}))
                }
                DeliveryEvent::DeliveryFailed {
                    reason,
                    attempts,
                    at,
                } => (
                    "failed",
                    *at,
                    None,
                    json!({"error": reason, "attempts": attempts}),
                ),
                DeliveryEvent::DeliverySkipped { reason, at } => {
                    ("skipped", *at, None, json!({"error": reason}))
                }
                DeliveryEvent::DeliveryDelivered { at } => ("delivered", *at, None, json!({})),
                DeliveryEvent::DeliveryRead { at } => ("read", *at, None, json!({})),
            };
            // receipts do not repeat the id; it is the deterministic one Herald sent with
            let message_id = message_id.or_else(|| {
                Phone::from_normalized(phone)
                    .ok()
                    .map(|p| message_id_for(*campaign_id, &p))
            });
            let mut data = json!({"campaign_id": campaign_id, "phone": phone, "status": status,
                                  "message_id": message_id});
            merge(&mut data, extra);
            (Kind::DeliveryStatus, campaign_id.to_string(), at, data)
        }
        Parsed::Session(id, event) => {
            let (status, at, extra) = match event {
                SessionEvent::SessionLinked {
                    name, status, at, ..
                } => (status.as_str(), *at, json!({"name": name})),
                SessionEvent::SessionStatusChanged { status, at } => {
                    (status.as_str(), *at, json!({}))
                }
                SessionEvent::SessionDeleted { at } => ("deleted", *at, json!({})),
            };
            let mut data = json!({"session_id": id, "status": status});
            merge(&mut data, extra);
            (Kind::SessionStatus, id.to_string(), at, data)
        }
        Parsed::Message {
            session_id,
            chat,
            is_group,
            message,
            ..
        } => (
            Kind::MessageReceived,
            session_id.to_string(),
            message.at,
            json!({"session_id": session_id, "chat": chat, "is_group": is_group,
                   "message_id": message.message_id, "sender": message.sender,
                   "sender_name": message.sender_name, "text": message.text,
                   "type": message.kind, "timestamp": message.at}),
        ),
        Parsed::OptedOut {
            phone, source, at, ..
        } => (
            Kind::ContactOptedOut,
            phone.clone(),
            *at,
            json!({"phone": phone, "source": source.as_str(), "opted_out_at": at}),
        ),
    };
    Some(Notification {
        id: e.global_position.to_string(),
        kind,
        tenant_id,
        at,
        data,
        key,
    })
}

fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

/// Which tenant owns a campaign or a session (owners never change).
#[derive(Default)]
struct Owners {
    campaigns: HashMap<Uuid, Uuid>,
    sessions: HashMap<Uuid, Uuid>,
}

/// What a batch produced, published when its checkpoint commits.
#[derive(Default)]
pub struct Staged {
    /// One per published event, in the batch's order.
    pub notifications: Vec<Notification>,
    /// Campaigns whose progress changed.
    progress: Vec<Uuid>,
    /// The batch's last event: the read model has every change once it is this far.
    upto: (i64, i64),
}

/// Maps batches of committed events to the notifications they mean, learning which tenant owns
/// each stream as it goes. The notifier publishes what it maps; other projectors that tell the
/// outside world (outbound webhooks) map the same events the same way through it.
#[derive(Default)]
pub struct NotificationMapper {
    owners: Mutex<Owners>,
}

pub struct Notifier {
    out: Notifications,
    progress: Arc<ProgressTracker>,
    mapper: NotificationMapper,
    staged: Mutex<Staged>,
}

impl Notifier {
    pub fn new(out: Notifications, progress: Arc<ProgressTracker>) -> Self {
        Notifier {
            out,
            progress,
            mapper: NotificationMapper::default(),
            staged: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The tenant in the first event of each stream (`CampaignCreated`, `SessionLinked`).
async fn load_owners(
    conn: &mut PgConnection,
    aggregate_type: &str,
    first_event: &str,
    ids: &[Uuid],
) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let rows = sqlx::query(
        "SELECT DISTINCT ON (aggregate_id) aggregate_id, payload -> $2 ->> 'tenant_id' AS tenant
           FROM events WHERE aggregate_type = $1 AND aggregate_id = ANY($3)
          ORDER BY aggregate_id, sequence",
    )
    .bind(aggregate_type)
    .bind(first_event)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut owners = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get("aggregate_id")?;
        let tenant: Option<String> = r.try_get("tenant")?;
        if let (Ok(id), Some(Ok(tenant))) = (id.parse(), tenant.map(|t| t.parse())) {
            owners.push((id, tenant));
        }
    }
    Ok(owners)
}

/// The tenants of single sends (`POST /api/v1/messages`): their message id stands where a
/// campaign's would, and `single_messages` is written with their `DeliveryQueued`.
async fn single_send_owners(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_as("SELECT id, tenant_id FROM single_messages WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?,
    )
}

#[async_trait::async_trait]
impl Projector for Notifier {
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
        let staged = self.mapper.map(conn, events).await?;
        // replaces whatever a failed attempt left behind
        *lock(&self.staged) = staged;
        Ok(())
    }

    fn committed(&self) {
        let staged = std::mem::take(&mut *lock(&self.staged));
        self.progress.mark(&staged.progress, staged.upto);
        self.out.publish(staged.notifications);
    }
}

impl NotificationMapper {
    /// The aggregates whose events become notifications.
    pub const AGGREGATE_TYPES: &'static [&'static str] = &[
        Campaign::TYPE,
        Delivery::TYPE,
        Session::TYPE,
        Conversation::TYPE,
        Contact::TYPE,
    ];

    /// The notifications of `events` (of [`Self::AGGREGATE_TYPES`]; others are skipped), with
    /// owners looked up on `conn` when the batch does not name them.
    pub async fn map(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<Staged> {
        // 1. parse, and learn owners from the streams' first events in this batch
        let mut parsed = Vec::with_capacity(events.len());
        let (mut missing_campaigns, mut missing_sessions) = (HashSet::new(), HashSet::new());
        {
            let mut owners = lock(&self.owners);
            if owners.campaigns.len() > OWNER_CACHE_MAX {
                owners.campaigns.clear();
            }
            if owners.sessions.len() > OWNER_CACHE_MAX {
                owners.sessions.clear();
            }
            for e in events {
                let Some(p) = parse(e)? else { continue };
                match &p {
                    Parsed::Campaign(id, CampaignEvent::CampaignCreated { tenant_id, .. }) => {
                        owners.campaigns.insert(*id, *tenant_id);
                    }
                    Parsed::Delivery {
                        event: DeliveryEvent::DeliveryQueued { tenant_id, .. },
                        campaign_id,
                        ..
                    } => {
                        owners.campaigns.insert(*campaign_id, *tenant_id);
                    }
                    Parsed::Session(id, SessionEvent::SessionLinked { tenant_id, .. }) => {
                        owners.sessions.insert(*id, *tenant_id);
                    }
                    _ => {}
                }
                parsed.push((e, p));
            }
            for (_, p) in &parsed {
                match p {
                    Parsed::Campaign(id, _)
                    | Parsed::Delivery {
                        campaign_id: id, ..
                    } => {
                        if !owners.campaigns.contains_key(id) {
                            missing_campaigns.insert(*id);
                        }
                    }
                    Parsed::Session(id, _) => {
                        if !owners.sessions.contains_key(id) {
                            missing_sessions.insert(*id);
                        }
                    }
                    Parsed::Message { .. } | Parsed::OptedOut { .. } => {}
                }
            }
        }
        // 2. the other owners from the event store (the first event was committed before)
        let missing_campaigns: Vec<Uuid> = missing_campaigns.into_iter().collect();
        let missing_sessions: Vec<Uuid> = missing_sessions.into_iter().collect();
        let mut found_campaigns =
            load_owners(conn, Campaign::TYPE, "CampaignCreated", &missing_campaigns).await?;
        let not_campaigns: Vec<Uuid> = missing_campaigns
            .iter()
            .filter(|id| !found_campaigns.iter().any(|(c, _)| c == *id))
            .copied()
            .collect();
        found_campaigns.extend(single_send_owners(conn, &not_campaigns).await?);
        let found_sessions =
            load_owners(conn, Session::TYPE, "SessionLinked", &missing_sessions).await?;

        // 3. map
        let mut staged = Staged::default();
        let mut marked = HashSet::new();
        {
            let mut owners = lock(&self.owners);
            owners.campaigns.extend(found_campaigns);
            owners.sessions.extend(found_sessions);
            for (e, p) in &parsed {
                let tenant = match p {
                    Parsed::Campaign(id, _)
                    | Parsed::Delivery {
                        campaign_id: id, ..
                    } => owners.campaigns.get(id),
                    Parsed::Session(id, _) => owners.sessions.get(id),
                    Parsed::Message { tenant_id, .. } | Parsed::OptedOut { tenant_id, .. } => {
                        Some(tenant_id)
                    }
                };
                let Some(&tenant) = tenant else {
                    tracing::warn!(aggregate = %e.aggregate_id, "no owner found; not notified");
                    continue;
                };
                if let Parsed::Campaign(id, _)
                | Parsed::Delivery {
                    campaign_id: id, ..
                } = p
                {
                    if marked.insert(*id) {
                        staged.progress.push(*id);
                    }
                }
                staged.notifications.extend(to_notification(e, p, tenant));
            }
        }
        if let Some(last) = events.last() {
            staged.upto = (last.tx_id, last.global_position);
        }
        Ok(staged)
    }
}

/// Campaigns whose progress changed and not yet been sent with final counts.
#[derive(Default)]
pub struct ProgressTracker {
    dirty: Mutex<HashMap<Uuid, (i64, i64)>>,
    wake: Notify,
}

impl ProgressTracker {
    fn mark(&self, campaigns: &[Uuid], upto: (i64, i64)) {
        if campaigns.is_empty() {
            return;
        }
        let mut dirty = lock(&self.dirty);
        for id in campaigns {
            dirty.insert(*id, upto);
        }
        drop(dirty);
        self.wake.notify_one();
    }

    /// Sends `campaign.progress` for marked campaigns until `shutdown`, each at most once per
    /// `interval`, with the counts of the `campaigns` read model.
    pub fn spawn(
        self: &Arc<Self>,
        pool: PgPool,
        out: Notifications,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut last_sent: HashMap<Uuid, serde_json::Value> = HashMap::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let idle = lock(&this.dirty).is_empty();
                if idle {
                    tokio::select! {
                        _ = this.wake.notified() => {}
                        _ = shutdown.changed() => return,
                    }
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                if let Err(e) = this.emit(&pool, &out, &mut last_sent).await {
                    tracing::warn!(error = %format!("{e:#}"), "campaign progress not sent; retrying");
                }
            }
        })
    }

    async fn emit(
        &self,
        pool: &PgPool,
        out: &Notifications,
        last_sent: &mut HashMap<Uuid, serde_json::Value>,
    ) -> anyhow::Result<()> {
        let snapshot: Vec<(Uuid, (i64, i64))> =
            lock(&self.dirty).iter().map(|(k, v)| (*k, *v)).collect();
        if snapshot.is_empty() {
            return Ok(());
        }
        // the checkpoint first: rows read after it include at least what it says
        let applied: Option<(i64, i64)> = sqlx::query_as(
            "SELECT tx_id, global_position FROM projector_checkpoints WHERE name = $1",
        )
        .bind(crate::campaigns::NAME)
        .fetch_optional(pool)
        .await?;
        let ids: Vec<Uuid> = snapshot.iter().map(|(id, _)| *id).collect();
        let rows = sqlx::query(
            // recipients waiting for a send window or a daily cap are only in the queue
            // (docs/safe-sending.md): counted there, on partial indexes
            "SELECT id, tenant_id, status, total_recipients, count_queued, count_sending, count_sent,
                    count_delivered, count_read, count_failed, count_skipped, count_waiting_quota,
                    (SELECT count(*) FROM dispatch_queue q
                      WHERE q.campaign_id = c.id AND q.waiting_window) AS waiting_window,
                    (SELECT count(*) FROM dispatch_queue q
                      WHERE q.campaign_id = c.id AND q.waiting_cap) AS waiting_cap
               FROM campaigns c WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(pool)
        .await?;
        let mut batch = Vec::new();
        let now = Utc::now();
        for r in rows {
            let id: Uuid = r.try_get("id")?;
            let data = json!({
                "campaign_id": id,
                "status": r.try_get::<String, _>("status")?,
                "total_recipients": r.try_get::<i64, _>("total_recipients")?,
                "counts": {
                    "queued": r.try_get::<i64, _>("count_queued")?,
                    "sending": r.try_get::<i64, _>("count_sending")?,
                    "sent": r.try_get::<i64, _>("count_sent")?,
                    "delivered": r.try_get::<i64, _>("count_delivered")?,
                    "read": r.try_get::<i64, _>("count_read")?,
                    "failed": r.try_get::<i64, _>("count_failed")?,
                    "skipped": r.try_get::<i64, _>("count_skipped")?,
                    "waiting_quota": r.try_get::<i64, _>("count_waiting_quota")?,
                    "waiting_window": r.try_get::<i64, _>("waiting_window")?,
                    "waiting_cap": r.try_get::<i64, _>("waiting_cap")?,
                },
            });
            if last_sent.get(&id) == Some(&data) {
                continue;
            }
            batch.push(Notification {
                id: format!("{id}@{}", now.timestamp_micros()),
                kind: Kind::CampaignProgress,
                tenant_id: r.try_get("tenant_id")?,
                at: now,
                data: data.clone(),
                key: id.to_string(),
            });
            last_sent.insert(id, data);
        }
        out.publish(batch);
        // done with a campaign once the read model has applied every event that marked it
        let mut dirty = lock(&self.dirty);
        for (id, upto) in snapshot {
            if applied.is_some_and(|a| a >= upto) && dirty.get(&id) == Some(&upto) {
                dirty.remove(&id);
                last_sent.remove(&id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_domain::session::SessionStatus;

    fn stored(aggregate_type: &str, id: &str, event: serde_json::Value) -> StoredEvent {
        let event_type = event
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default();
        StoredEvent {
            tx_id: 1,
            global_position: 42,
            aggregate_type: aggregate_type.into(),
            aggregate_id: id.into(),
            sequence: 2,
            event_type,
            payload: event.to_string(),
            recorded_at: Utc::now(),
        }
    }

    fn notify(e: &StoredEvent, tenant: Uuid) -> Option<Notification> {
        let p = parse(e).expect("parses").expect("published kind");
        to_notification(e, &p, tenant)
    }

    #[test]
    fn a_receipt_becomes_delivery_status_with_its_message_id() {
        let (campaign, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        let phone = "6281234567890";
        let at = "2026-11-21T10:00:00Z";
        let e = stored(
            "Delivery",
            &format!("{campaign}:{phone}"),
            json!({"DeliveryRead": {"at": at}}),
        );
        let n = notify(&e, tenant).expect("notified");
        assert_eq!(n.kind, Kind::DeliveryStatus);
        assert_eq!(n.tenant_id, tenant);
        assert_eq!(n.id, "42");
        assert_eq!(
            n.subject(),
            format!("herald.{tenant}.delivery.status.{campaign}")
        );
        assert_eq!(n.data["status"], "read");
        assert_eq!(n.data["phone"], phone);
        let expected = message_id_for(campaign, &Phone::from_normalized(phone).expect("phone"));
        assert_eq!(n.data["message_id"], expected);
        assert_eq!(n.at.to_rfc3339(), "2026-11-21T10:00:00+00:00");
    }

    #[test]
    fn a_failure_carries_its_reason_and_queued_is_not_published() {
        let campaign = Uuid::new_v4();
        let id = format!("{campaign}:6281234567890");
        let failed = stored(
            "Delivery",
            &id,
            json!({"DeliveryFailed": {"reason": "number not on WhatsApp", "attempts": 1,
                                       "at": "2026-11-21T10:00:00Z"}}),
        );
        let n = notify(&failed, Uuid::new_v4()).expect("notified");
        assert_eq!(n.data["status"], "failed");
        assert_eq!(n.data["error"], "number not on WhatsApp");
        let queued = stored(
            "Delivery",
            &id,
            json!({"DeliveryQueued": {"tenant_id": Uuid::new_v4(), "campaign_id": campaign,
                                       "phone": "6281234567890", "at": "2026-11-21T10:00:00Z"}}),
        );
        assert!(notify(&queued, Uuid::new_v4()).is_none());
    }

    #[test]
    fn campaign_and_session_events_become_status_notifications() {
        let (campaign, session, tenant) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let paused = stored(
            "Campaign",
            &campaign.to_string(),
            json!({"CampaignPaused": {"at": "2026-11-21T10:00:00Z"}}),
        );
        let n = notify(&paused, tenant).expect("notified");
        assert_eq!(n.kind, Kind::CampaignStatus);
        assert_eq!(n.data, json!({"campaign_id": campaign, "status": "paused"}));
        let tripped = stored(
            "Campaign",
            &campaign.to_string(),
            json!({"CampaignPaused": {"at": "2026-11-21T10:00:00Z", "reason": "failure_spike"}}),
        );
        let n = notify(&tripped, tenant).expect("notified");
        assert_eq!(
            n.data,
            json!({"campaign_id": campaign, "status": "paused", "pause_reason": "failure_spike"})
        );

        let changed = SessionEvent::SessionStatusChanged {
            status: SessionStatus::QrPending,
            at: Utc::now(),
        };
        let e = stored(
            "Session",
            &session.to_string(),
            serde_json::to_value(&changed).expect("json"),
        );
        let n = notify(&e, tenant).expect("notified");
        assert_eq!(n.kind, Kind::SessionStatus);
        assert_eq!(
            n.data,
            json!({"session_id": session, "status": "qr_pending"})
        );
        assert_eq!(
            n.subject(),
            format!("herald.{tenant}.session.status.{session}")
        );
    }

    #[test]
    fn an_opt_out_becomes_contact_opted_out_for_the_tenant_its_stream_names() {
        let tenant = Uuid::new_v4();
        let id = format!("{tenant}:6281234567890");
        let e = stored(
            "Contact",
            &id,
            json!({"ContactOptedOut": {"source": "keyword", "at": "2026-12-04T10:00:00Z"}}),
        );
        let Some(Parsed::OptedOut { tenant_id, .. }) = parse(&e).expect("parses") else {
            panic!("an opt-out is published");
        };
        assert_eq!(tenant_id, tenant);
        let n = notify(&e, tenant).expect("notified");
        assert_eq!(n.kind, Kind::ContactOptedOut);
        assert_eq!(
            n.data,
            json!({"phone": "6281234567890", "source": "keyword",
                   "opted_out_at": "2026-12-04T10:00:00Z"})
        );
        assert_eq!(
            n.subject(),
            format!("herald.{tenant}.contact.opted_out.6281234567890")
        );
        // other contact events are not announced
        let renamed = stored(
            "Contact",
            &id,
            json!({"ContactFavorited": {"favorite": true, "at": "2026-12-04T10:00:00Z"}}),
        );
        assert!(parse(&renamed).expect("parses").is_none());
    }

    #[test]
    fn other_aggregates_are_not_published() {
        let e = stored(
            "Template",
            &Uuid::new_v4().to_string(),
            json!({"TemplateCreated": {}}),
        );
        assert!(parse(&e).expect("skipped, not parsed").is_none());
    }
}
