//! `Campaign`: a bulk send's lifecycle only. Its recipients are separate `Delivery` aggregates, so
//! this stream stays a handful of events however large the audience.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::template_body::TemplateBody;
use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    #[default]
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
    Failed,
}

impl CampaignStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Cancelled => "cancelled",
            CampaignStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => CampaignStatus::Scheduled,
            "running" => CampaignStatus::Running,
            "paused" => CampaignStatus::Paused,
            "completed" => CampaignStatus::Completed,
            "cancelled" => CampaignStatus::Cancelled,
            "failed" => CampaignStatus::Failed,
            _ => return None,
        })
    }
}

/// What every recipient of a campaign receives, frozen when the campaign is created so that
/// editing the template later does not change a campaign in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageSpec {
    pub kind: crate::template::TemplateKind,
    pub body: Option<TemplateBody>,
    pub caption: Option<TemplateBody>,
    pub image_url: Option<String>,
}

#[derive(Debug, Clone)]
pub enum CampaignCommand {
    Create {
        tenant_id: Uuid,
        name: String,
        template_id: Uuid,
        session_id: Uuid,
        message: MessageSpec,
        total_recipients: u64,
        at: DateTime<Utc>,
    },
    Complete {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CampaignEvent {
    CampaignCreated {
        tenant_id: Uuid,
        name: String,
        template_id: Uuid,
        session_id: Uuid,
        message: MessageSpec,
        total_recipients: u64,
        at: DateTime<Utc>,
    },
    CampaignStarted {
        at: DateTime<Utc>,
    },
    CampaignCompleted {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for CampaignEvent {
    fn event_type(&self) -> String {
        match self {
            CampaignEvent::CampaignCreated { .. } => "CampaignCreated",
            CampaignEvent::CampaignStarted { .. } => "CampaignStarted",
            CampaignEvent::CampaignCompleted { .. } => "CampaignCompleted",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Campaign {
    pub tenant_id: Option<Uuid>,
    pub name: String,
    pub session_id: Option<Uuid>,
    pub message: Option<MessageSpec>,
    pub total_recipients: u64,
    pub status: CampaignStatus,
}

impl Campaign {
    pub fn visible_to(&self, tenant_id: Uuid) -> bool {
        self.tenant_id == Some(tenant_id)
    }
}

impl Aggregate for Campaign {
    const TYPE: &'static str = "Campaign";
    type Command = CampaignCommand;
    type Event = CampaignEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CampaignCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            CampaignCommand::Create {
                tenant_id,
                name,
                template_id,
                session_id,
                message,
                total_recipients,
                at,
            } => {
                if self.tenant_id.is_some() {
                    return Err(DomainError::AlreadyExists);
                }
                let name = crate::template::validate_name(&name)?;
                if total_recipients == 0 {
                    return Err(DomainError::invalid(
                        "recipients",
                        "the campaign has no valid recipient",
                    ));
                }
                let created = CampaignEvent::CampaignCreated {
                    tenant_id,
                    name,
                    template_id,
                    session_id,
                    message,
                    total_recipients,
                    at,
                };
                sink.write(created, self).await;
                sink.write(CampaignEvent::CampaignStarted { at }, self)
                    .await;
            }
            CampaignCommand::Complete { at } => match self.status {
                CampaignStatus::Running | CampaignStatus::Paused => {
                    sink.write(CampaignEvent::CampaignCompleted { at }, self)
                        .await;
                }
                // completing twice (two workers finishing the last recipients) is not an error
                CampaignStatus::Completed | CampaignStatus::Cancelled => {}
                CampaignStatus::Scheduled | CampaignStatus::Failed => {
                    return Err(DomainError::Conflict(format!(
                        "a {} campaign cannot complete",
                        self.status.as_str()
                    )))
                }
            },
        }
        Ok(())
    }

    fn apply(&mut self, event: CampaignEvent) {
        match event {
            CampaignEvent::CampaignCreated {
                tenant_id,
                name,
                session_id,
                message,
                total_recipients,
                ..
            } => {
                self.tenant_id = Some(tenant_id);
                self.name = name;
                self.session_id = Some(session_id);
                self.message = Some(message);
                self.total_recipients = total_recipients;
                self.status = CampaignStatus::Scheduled;
            }
            CampaignEvent::CampaignStarted { .. } => self.status = CampaignStatus::Running,
            CampaignEvent::CampaignCompleted { .. } => self.status = CampaignStatus::Completed,
        }
    }
}
