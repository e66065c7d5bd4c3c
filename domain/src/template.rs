//! `Template`: a reusable message a campaign sends, with `{{ variables }}`.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::template_body::TemplateBody;
use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    Text,
    Image,
}

impl TemplateKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TemplateKind::Text => "text",
            TemplateKind::Image => "image",
        }
    }
}

/// Only `active` templates can start a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TemplateStatus {
    #[default]
    Active,
    Inactive,
    Archived,
}

impl TemplateStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            TemplateStatus::Active => "active",
            TemplateStatus::Inactive => "inactive",
            TemplateStatus::Archived => "archived",
        }
    }
}

#[derive(Debug, Clone)]
pub enum TemplateCommand {
    Create {
        tenant_id: Uuid,
        name: String,
        kind: TemplateKind,
        body: Option<TemplateBody>,
        caption: Option<TemplateBody>,
        image_url: Option<String>,
        at: DateTime<Utc>,
    },
    Update {
        tenant_id: Uuid,
        name: Option<String>,
        body: Option<TemplateBody>,
        caption: Option<TemplateBody>,
        status: Option<TemplateStatus>,
        at: DateTime<Utc>,
    },
    Delete {
        tenant_id: Uuid,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TemplateEvent {
    TemplateCreated {
        tenant_id: Uuid,
        name: String,
        kind: TemplateKind,
        body: Option<TemplateBody>,
        caption: Option<TemplateBody>,
        image_url: Option<String>,
        at: DateTime<Utc>,
    },
    TemplateUpdated {
        name: Option<String>,
        body: Option<TemplateBody>,
        caption: Option<TemplateBody>,
        status: Option<TemplateStatus>,
        at: DateTime<Utc>,
    },
    TemplateDeleted {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for TemplateEvent {
    fn event_type(&self) -> String {
        match self {
            TemplateEvent::TemplateCreated { .. } => "TemplateCreated",
            TemplateEvent::TemplateUpdated { .. } => "TemplateUpdated",
            TemplateEvent::TemplateDeleted { .. } => "TemplateDeleted",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Template {
    pub tenant_id: Option<Uuid>,
    pub name: String,
    pub kind: Option<TemplateKind>,
    pub body: Option<TemplateBody>,
    pub caption: Option<TemplateBody>,
    pub image_url: Option<String>,
    pub status: TemplateStatus,
    pub deleted: bool,
}

/// Names are shown in lists and must be short and not blank.
pub fn validate_name(name: &str) -> Result<String, DomainError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(DomainError::invalid("name", "must not be empty"));
    }
    if trimmed.chars().count() > 200 {
        return Err(DomainError::invalid(
            "name",
            "must be at most 200 characters",
        ));
    }
    Ok(trimmed.to_string())
}

impl Template {
    /// True when `tenant_id` owns this live template. Another tenant's template is "not found".
    pub fn visible_to(&self, tenant_id: Uuid) -> bool {
        self.tenant_id == Some(tenant_id) && !self.deleted
    }
}

impl Aggregate for Template {
    const TYPE: &'static str = "Template";
    type Command = TemplateCommand;
    type Event = TemplateEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TemplateCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            TemplateCommand::Create {
                tenant_id,
                name,
                kind,
                body,
                caption,
                image_url,
                at,
            } => {
                if self.tenant_id.is_some() {
                    return Err(DomainError::AlreadyExists);
                }
                let name = validate_name(&name)?;
                match kind {
                    TemplateKind::Text if body.is_none() => {
                        return Err(DomainError::invalid("body", "text templates need a body"))
                    }
                    TemplateKind::Image if image_url.is_none() => {
                        return Err(DomainError::invalid(
                            "image_url",
                            "image templates need an image",
                        ))
                    }
                    _ => {}
                }
                let event = TemplateEvent::TemplateCreated {
                    tenant_id,
                    name,
                    kind,
                    body,
                    caption,
                    image_url,
                    at,
                };
                sink.write(event, self).await;
            }
            TemplateCommand::Update {
                tenant_id,
                name,
                body,
                caption,
                status,
                at,
            } => {
                if !self.visible_to(tenant_id) {
                    return Err(DomainError::NotFound);
                }
                let name = name.map(|n| validate_name(&n)).transpose()?;
                if body.is_some() && self.kind == Some(TemplateKind::Image) {
                    return Err(DomainError::invalid(
                        "body",
                        "image templates have a caption, not a body",
                    ));
                }
                if name.is_none() && body.is_none() && caption.is_none() && status.is_none() {
                    return Ok(());
                }
                let event = TemplateEvent::TemplateUpdated {
                    name,
                    body,
                    caption,
                    status,
                    at,
                };
                sink.write(event, self).await;
            }
            TemplateCommand::Delete { tenant_id, at } => {
                if !self.visible_to(tenant_id) {
                    return Err(DomainError::NotFound);
                }
                sink.write(TemplateEvent::TemplateDeleted { at }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: TemplateEvent) {
        match event {
            TemplateEvent::TemplateCreated {
                tenant_id,
                name,
                kind,
                body,
                caption,
                image_url,
                ..
            } => {
                self.tenant_id = Some(tenant_id);
                self.name = name;
                self.kind = Some(kind);
                self.body = body;
                self.caption = caption;
                self.image_url = image_url;
                self.status = TemplateStatus::Active;
            }
            TemplateEvent::TemplateUpdated {
                name,
                body,
                caption,
                status,
                ..
            } => {
                if let Some(n) = name {
                    self.name = n;
                }
                if let Some(b) = body {
                    self.body = Some(b);
                }
                if let Some(c) = caption {
                    self.caption = Some(c);
                }
                if let Some(s) = status {
                    self.status = s;
                }
            }
            TemplateEvent::TemplateDeleted { .. } => self.deleted = true,
        }
    }
}
