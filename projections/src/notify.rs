//! Real-time notifications (docs/decisions/0017): what Herald tells live subscribers, and the two
//! ways it travels.
//!
//! - In-process (the single-node default): one `tokio::sync::broadcast` channel per tenant with
//!   subscribers. Sending never waits; a subscriber that falls behind loses the oldest
//!   notifications and is told how many ([`Received::Lagged`]).
//! - NATS (`NATS_URL` set): each notification is published on
//!   `herald.<tenant_id>.<kind>.<key>`; subscribers take `herald.<tenant_id>.>`, so a notification
//!   published by whichever instance runs the notifier reaches the SSE clients of every instance.
//!   Publishing goes through a bounded queue drained by one task: the projector never waits for
//!   NATS, and when NATS is gone the client reconnects by itself while the queue fills and then
//!   drops (counted in `herald_notifications_dropped_total`).
//!
//! The payload is JSON `{"id", "kind", "tenant_id", "at", "data"}` (docs/events.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use uuid::Uuid;

/// The kinds of notification, as they appear in `kind`, SSE `event:` lines and NATS subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "campaign.progress")]
    CampaignProgress,
    #[serde(rename = "campaign.status")]
    CampaignStatus,
    #[serde(rename = "delivery.status")]
    DeliveryStatus,
    #[serde(rename = "message.received")]
    MessageReceived,
    #[serde(rename = "session.status")]
    SessionStatus,
    #[serde(rename = "contact.opted_out")]
    ContactOptedOut,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::CampaignProgress,
        Kind::CampaignStatus,
        Kind::DeliveryStatus,
        Kind::MessageReceived,
        Kind::SessionStatus,
        Kind::ContactOptedOut,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::CampaignProgress => "campaign.progress",
            Kind::CampaignStatus => "campaign.status",
            Kind::DeliveryStatus => "delivery.status",
            Kind::MessageReceived => "message.received",
            Kind::SessionStatus => "session.status",
            Kind::ContactOptedOut => "contact.opted_out",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One notification for one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable for notifications derived from one stored event (its global position), so a
    /// subscriber can drop the duplicates that at-least-once delivery may bring.
    pub id: String,
    pub kind: Kind,
    pub tenant_id: Uuid,
    pub at: DateTime<Utc>,
    pub data: serde_json::Value,
    /// The last NATS subject token(s) after the kind: the campaign or session id. Not part of
    /// the payload.
    #[serde(skip)]
    pub key: String,
}

impl Notification {
    /// `herald.<tenant_id>.<kind>.<key>`. Ids are UUIDs, so no token holds `.`, `*` or `>`.
    pub fn subject(&self) -> String {
        if self.key.is_empty() {
            format!("herald.{}.{}", self.tenant_id, self.kind.as_str())
        } else {
            format!(
                "herald.{}.{}.{}",
                self.tenant_id,
                self.kind.as_str(),
                self.key
            )
        }
    }
}

/// The wildcard subject of everything one tenant is told.
pub fn tenant_subject(tenant_id: Uuid) -> String {
    format!("herald.{tenant_id}.>")
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Received {
    Notification(Arc<Notification>),
    /// This subscriber fell behind and `n` notifications were dropped for it.
    Lagged(u64),
}

/// Notifications a subscriber of one tenant receives, until the publisher shuts down.
pub type Subscription = BoxStream<'static, Received>;

/// How many notifications a slow in-process subscriber may fall behind before it loses some.
const LOCAL_CAPACITY: usize = 4_096;
/// Notifications waiting to be published to NATS before new ones are dropped.
const NATS_QUEUE: usize = 32_768;

/// The publisher and subscription point, shared by the notifier (publishes) and the SSE
/// endpoint (subscribes). Cheap to clone.
#[derive(Clone)]
pub struct Notifications {
    backend: Arc<Backend>,
    /// Subscriptions end when this turns true (Herald stopping), so open SSE streams close.
    shutdown: watch::Receiver<bool>,
}

enum Backend {
    Local(LocalHub),
    Nats {
        client: async_nats::Client,
        queue: mpsc::Sender<Notification>,
    },
}

impl Notifications {
    /// The in-process broadcast (one node).
    pub fn local(shutdown: watch::Receiver<bool>) -> Self {
        Notifications {
            backend: Arc::new(Backend::Local(LocalHub::default())),
            shutdown,
        }
    }

    /// NATS at `url`. Returns at once even when NATS is down: the client keeps trying to
    /// connect (and reconnects for ever after a loss) in the background.
    pub async fn nats(url: &str, shutdown: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let options = async_nats::ConnectOptions::new()
            .name("herald")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting")
                    }
                    other => tracing::warn!(event = %other, "NATS"),
                }
            });
        // the URL may carry credentials: never put it in an error or a log line
        let client = async_nats::connect_with_options(url, options)
            .await
            .map_err(|e| anyhow::anyhow!("NATS_URL cannot be used: {}", e.kind()))?;
        let (queue, rx) = mpsc::channel(NATS_QUEUE);
        tokio::spawn(publish_to_nats(client.clone(), rx));
        Ok(Notifications {
            backend: Arc::new(Backend::Nats { client, queue }),
            shutdown,
        })
    }

    /// Which backend this is (`local` or `nats`), for logs and docs.
    pub fn backend_name(&self) -> &'static str {
        match *self.backend {
            Backend::Local(_) => "local",
            Backend::Nats { .. } => "nats",
        }
    }

    /// Whether NATS is connected right now: `None` for the in-process backend (nothing to be
    /// connected to). The client reconnects by itself; this turns true again when it has.
    pub fn connected(&self) -> Option<bool> {
        match &*self.backend {
            Backend::Local(_) => None,
            Backend::Nats { client, .. } => Some(matches!(
                client.connection_state(),
                async_nats::connection::State::Connected
            )),
        }
    }

    /// Hands notifications on without waiting: never blocks the caller, drops (and counts)
    /// what a full queue cannot take.
    pub fn publish(&self, batch: Vec<Notification>) {
        match &*self.backend {
            Backend::Local(hub) => {
                for n in batch {
                    hub.send(n);
                }
            }
            Backend::Nats { queue, .. } => {
                let mut dropped = 0u64;
                for n in batch {
                    if queue.try_send(n).is_err() {
                        dropped += 1;
                    }
                }
                if dropped > 0 {
                    metrics::counter!("herald_notifications_dropped_total").increment(dropped);
                    tracing::warn!(dropped, "NATS publish queue full; notifications dropped");
                }
            }
        }
    }

    /// Everything published for `tenant_id` from now on (nothing of any other tenant).
    pub async fn subscribe(&self, tenant_id: Uuid) -> anyhow::Result<Subscription> {
        let mut shutdown = self.shutdown.clone();
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        let stream = match &*self.backend {
            Backend::Local(hub) => {
                let rx = hub.subscribe(tenant_id);
                futures::stream::unfold(rx, |mut rx| async move {
                    match rx.recv().await {
                        Ok(n) => Some((Received::Notification(n), rx)),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            Some((Received::Lagged(n), rx))
                        }
                        Err(broadcast::error::RecvError::Closed) => None,
                    }
                })
                .boxed()
            }
            Backend::Nats { client, .. } => {
                let sub = client
                    .subscribe(tenant_subject(tenant_id))
                    .await
                    .map_err(|e| anyhow::anyhow!("NATS subscribe failed: {e}"))?;
                // send the SUB now rather than with the next write, so the stream is live as
                // soon as the caller answers (best effort: NATS may be away)
                let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
                sub.filter_map(move |msg| async move {
                        match serde_json::from_slice::<Notification>(&msg.payload) {
                            // the subject already scopes the tenant; the payload must agree
                            Ok(n) if n.tenant_id == tenant_id => {
                                Some(Received::Notification(Arc::new(n)))
                            }
                            Ok(_) => None,
                            Err(e) => {
                                tracing::warn!(subject = %msg.subject, error = %e, "unreadable notification on NATS");
                                None
                            }
                        }
                    })
                    .boxed()
            }
        };
        Ok(stream.take_until(Box::pin(stopped)).boxed())
    }
}

/// Drains the queue into NATS. `publish` only waits when the client's own buffer is full
/// (NATS slow or gone); meanwhile the queue absorbs bursts and then drops.
async fn publish_to_nats(client: async_nats::Client, mut rx: mpsc::Receiver<Notification>) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        let count = batch.len() as u64;
        for n in batch.drain(..) {
            let payload = match serde_json::to_vec(&n) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "notification does not serialize");
                    continue;
                }
            };
            if let Err(e) = client.publish(n.subject(), payload.into()).await {
                metrics::counter!("herald_notifications_dropped_total").increment(1);
                tracing::warn!(error = %e, "NATS publish failed");
            }
        }
        metrics::counter!("herald_notifications_published_total", "backend" => "nats")
            .increment(count);
    }
}

/// Per-tenant broadcast channels, created when a tenant's first subscriber arrives and dropped
/// when a send finds nobody listening.
#[derive(Default)]
struct LocalHub {
    tenants: Mutex<HashMap<Uuid, broadcast::Sender<Arc<Notification>>>>,
}

impl LocalHub {
    fn send(&self, n: Notification) {
        let Ok(mut tenants) = self.tenants.lock() else {
            return;
        };
        let tenant = n.tenant_id;
        if let Some(tx) = tenants.get(&tenant) {
            if tx.send(Arc::new(n)).is_err() {
                // every subscriber of this tenant has gone
                tenants.remove(&tenant);
            }
        }
    }

    fn subscribe(&self, tenant_id: Uuid) -> broadcast::Receiver<Arc<Notification>> {
        let mut tenants = match self.tenants.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        tenants
            .entry(tenant_id)
            .or_insert_with(|| broadcast::channel(LOCAL_CAPACITY).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(tenant: Uuid, i: u64) -> Notification {
        Notification {
            id: i.to_string(),
            kind: Kind::DeliveryStatus,
            tenant_id: tenant,
            at: Utc::now(),
            data: serde_json::json!({"i": i}),
            key: "c".into(),
        }
    }

    #[test]
    fn kinds_round_trip_and_subjects_scope_the_tenant() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).expect("kind"),
                serde_json::json!(k.as_str())
            );
        }
        assert_eq!(Kind::parse("campaign"), None);
        let t = Uuid::new_v4();
        let n = note(t, 1);
        assert_eq!(n.subject(), format!("herald.{t}.delivery.status.c"));
        assert!(tenant_subject(t).starts_with(&format!("herald.{t}.")));
        let json = serde_json::to_value(&n).expect("json");
        assert!(json.get("key").is_none(), "the subject key is not payload");
        assert_eq!(json["kind"], "delivery.status");
    }

    #[tokio::test]
    async fn local_subscribers_see_only_their_tenant() {
        let (_stop, stop_rx) = watch::channel(false);
        let hub = Notifications::local(stop_rx);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut sa = hub.subscribe(a).await.expect("subscribe");
        let mut sb = hub.subscribe(b).await.expect("subscribe");
        hub.publish(vec![note(a, 1), note(b, 2), note(a, 3)]);
        for want in ["1", "3"] {
            match sa.next().await {
                Some(Received::Notification(n)) => assert_eq!(n.id, want),
                other => panic!("{other:?}"),
            }
        }
        match sb.next().await {
            Some(Received::Notification(n)) => {
                assert_eq!(n.id, "2");
                assert_eq!(n.tenant_id, b);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_local_subscriber_is_told_it_lagged_and_the_sender_never_waits() {
        let (_stop, stop_rx) = watch::channel(false);
        let hub = Notifications::local(stop_rx);
        let t = Uuid::new_v4();
        let mut slow = hub.subscribe(t).await.expect("subscribe");
        let total = LOCAL_CAPACITY as u64 + 100;
        // publishing far more than the subscriber can hold returns at once
        hub.publish((0..total).map(|i| note(t, i)).collect());
        match slow.next().await {
            Some(Received::Lagged(n)) => assert_eq!(n, 100),
            other => panic!("expected a lag notice, got {other:?}"),
        }
        match slow.next().await {
            Some(Received::Notification(n)) => assert_eq!(n.id, "100"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn publishing_without_subscribers_keeps_nothing() {
        let (_stop, stop_rx) = watch::channel(false);
        let hub = Notifications::local(stop_rx);
        let t = Uuid::new_v4();
        drop(hub.subscribe(t).await.expect("subscribe"));
        hub.publish(vec![note(t, 1)]);
        let Backend::Local(local) = &*hub.backend else {
            panic!("local backend")
        };
        assert!(local.tenants.lock().expect("lock").is_empty());
    }
}
