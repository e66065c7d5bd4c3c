//! `Delivery`: one recipient of one campaign, id `<campaign_id>:<phone>`. Two to five small events.
//!
//! Status only moves forward: queued → sending → sent → delivered → read, or → failed / skipped.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::phone::Phone;
use crate::DomainError;

/// Per-recipient template variables.
pub type Vars = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    #[default]
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
    Skipped,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 7] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sending,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Read,
        DeliveryStatus::Failed,
        DeliveryStatus::Skipped,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A final recipient needs nothing more from Herald (receipts may still move sent onwards).
    pub fn is_final(&self) -> bool {
        !matches!(self, DeliveryStatus::Queued | DeliveryStatus::Sending)
    }
}

/// The aggregate id of a campaign's recipient.
pub fn delivery_id(campaign_id: Uuid, phone: &Phone) -> String {
    format!("{campaign_id}:{phone}")
}

/// The WhatsApp message id Herald assigns to a delivery before calling the gateway: deterministic
/// (a retry or an in-doubt resend reuses it, so the gateway and the receipts can de-duplicate),
/// 32 uppercase hex characters.
pub fn message_id_for(campaign_id: Uuid, phone: &Phone) -> String {
    let digest = Sha256::digest(delivery_id(campaign_id, phone).as_bytes());
    hex::encode_upper(&digest[..16])
}

#[derive(Debug, Clone)]
pub enum DeliveryCommand {
    Queue {
        tenant_id: Uuid,
        campaign_id: Uuid,
        phone: Phone,
        vars: Vars,
        at: DateTime<Utc>,
    },
    /// The dispatch worker leased this recipient and is about to call the gateway.
    Dispatch {
        message_id: String,
        attempt: u32,
        in_doubt: bool,
        at: DateTime<Utc>,
    },
    RecordSent {
        message_id: String,
        at: DateTime<Utc>,
    },
    RecordFailed {
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeliveryEvent {
    DeliveryQueued {
        tenant_id: Uuid,
        campaign_id: Uuid,
        phone: Phone,
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        vars: Vars,
        at: DateTime<Utc>,
    },
    DeliveryDispatched {
        message_id: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        in_doubt: bool,
        at: DateTime<Utc>,
    },
    DeliverySent {
        message_id: String,
        at: DateTime<Utc>,
    },
    DeliveryFailed {
        reason: String,
        attempts: u32,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for DeliveryEvent {
    fn event_type(&self) -> String {
        match self {
            DeliveryEvent::DeliveryQueued { .. } => "DeliveryQueued",
            DeliveryEvent::DeliveryDispatched { .. } => "DeliveryDispatched",
            DeliveryEvent::DeliverySent { .. } => "DeliverySent",
            DeliveryEvent::DeliveryFailed { .. } => "DeliveryFailed",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delivery {
    pub tenant_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub phone: Option<Phone>,
    pub status: DeliveryStatus,
    pub message_id: Option<String>,
    pub attempts: u32,
}

impl Aggregate for Delivery {
    const TYPE: &'static str = "Delivery";
    type Command = DeliveryCommand;
    type Event = DeliveryEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: DeliveryCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            DeliveryCommand::Queue {
                tenant_id,
                campaign_id,
                phone,
                vars,
                at,
            } => {
                if self.tenant_id.is_some() {
                    return Err(DomainError::AlreadyExists);
                }
                let event = DeliveryEvent::DeliveryQueued {
                    tenant_id,
                    campaign_id,
                    phone,
                    vars,
                    at,
                };
                sink.write(event, self).await;
            }
            DeliveryCommand::Dispatch {
                message_id,
                attempt,
                in_doubt,
                at,
            } => {
                self.require_queued()?;
                if self.status.is_final() {
                    return Err(DomainError::Conflict(format!(
                        "recipient is already {}",
                        self.status.as_str()
                    )));
                }
                let event = DeliveryEvent::DeliveryDispatched {
                    message_id,
                    attempt,
                    in_doubt,
                    at,
                };
                sink.write(event, self).await;
            }
            DeliveryCommand::RecordSent { message_id, at } => {
                self.require_queued()?;
                // an outcome for a recipient already final is a duplicate: nothing to record
                if !self.status.is_final() {
                    sink.write(DeliveryEvent::DeliverySent { message_id, at }, self)
                        .await;
                }
            }
            DeliveryCommand::RecordFailed { reason, at } => {
                self.require_queued()?;
                if !self.status.is_final() {
                    let event = DeliveryEvent::DeliveryFailed {
                        reason,
                        attempts: self.attempts,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: DeliveryEvent) {
        match event {
            DeliveryEvent::DeliveryQueued {
                tenant_id,
                campaign_id,
                phone,
                ..
            } => {
                self.tenant_id = Some(tenant_id);
                self.campaign_id = Some(campaign_id);
                self.phone = Some(phone);
                self.status = DeliveryStatus::Queued;
            }
            DeliveryEvent::DeliveryDispatched {
                message_id,
                attempt,
                ..
            } => {
                self.status = DeliveryStatus::Sending;
                self.message_id = Some(message_id);
                self.attempts = attempt;
            }
            DeliveryEvent::DeliverySent { message_id, .. } => {
                self.status = DeliveryStatus::Sent;
                self.message_id = Some(message_id);
            }
            DeliveryEvent::DeliveryFailed { .. } => self.status = DeliveryStatus::Failed,
        }
    }
}

impl Delivery {
    fn require_queued(&self) -> Result<(), DomainError> {
        if self.tenant_id.is_none() {
            return Err(DomainError::NotFound);
        }
        Ok(())
    }
}
