//! `Session`: one linked WhatsApp number of a tenant, behind a gateway user.
//!
//! The gateway token is a secret and never enters an event (events are kept forever and are
//! published); it lives in the `session_credentials` table.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    #[default]
    Disconnected,
    QrPending,
    Connected,
    LoggedOut,
}

impl SessionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionStatus::Disconnected => "disconnected",
            SessionStatus::QrPending => "qr_pending",
            SessionStatus::Connected => "connected",
            SessionStatus::LoggedOut => "logged_out",
        }
    }
}

#[derive(Debug, Clone)]
pub enum SessionCommand {
    Link {
        tenant_id: Uuid,
        name: String,
        status: SessionStatus,
        at: DateTime<Utc>,
    },
    ChangeStatus {
        status: SessionStatus,
        at: DateTime<Utc>,
    },
    Delete {
        tenant_id: Uuid,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    SessionLinked {
        tenant_id: Uuid,
        name: String,
        status: SessionStatus,
        at: DateTime<Utc>,
    },
    SessionStatusChanged {
        status: SessionStatus,
        at: DateTime<Utc>,
    },
    SessionDeleted {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            SessionEvent::SessionLinked { .. } => "SessionLinked",
            SessionEvent::SessionStatusChanged { .. } => "SessionStatusChanged",
            SessionEvent::SessionDeleted { .. } => "SessionDeleted",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Session {
    pub tenant_id: Option<Uuid>,
    pub name: String,
    pub status: SessionStatus,
    pub deleted: bool,
}

impl Session {
    pub fn visible_to(&self, tenant_id: Uuid) -> bool {
        self.tenant_id == Some(tenant_id) && !self.deleted
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = "Session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SessionCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            SessionCommand::Link {
                tenant_id,
                name,
                status,
                at,
            } => {
                if self.tenant_id.is_some() {
                    return Err(DomainError::AlreadyExists);
                }
                let name = crate::template::validate_name(&name)?;
                let event = SessionEvent::SessionLinked {
                    tenant_id,
                    name,
                    status,
                    at,
                };
                sink.write(event, self).await;
            }
            SessionCommand::ChangeStatus { status, at } => {
                if self.tenant_id.is_none() || self.deleted {
                    return Err(DomainError::NotFound);
                }
                if status != self.status {
                    let event = SessionEvent::SessionStatusChanged { status, at };
                    sink.write(event, self).await;
                }
            }
            SessionCommand::Delete { tenant_id, at } => {
                if !self.visible_to(tenant_id) {
                    return Err(DomainError::NotFound);
                }
                sink.write(SessionEvent::SessionDeleted { at }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::SessionLinked {
                tenant_id,
                name,
                status,
                ..
            } => {
                self.tenant_id = Some(tenant_id);
                self.name = name;
                self.status = status;
            }
            SessionEvent::SessionStatusChanged { status, .. } => self.status = status,
            SessionEvent::SessionDeleted { .. } => self.deleted = true,
        }
    }
}
