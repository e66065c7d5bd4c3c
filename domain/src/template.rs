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

/// The processed image of an image template: a JPEG stored once in the `media` table under its
/// SHA-256, referenced here by hash so events stay small (never the image itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Lowercase hex SHA-256 of the processed JPEG: its key in `media`.
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    /// Size of the processed JPEG in bytes.
    pub bytes: u64,
    /// The URL it was fetched from; `None` when it came as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
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
        /// Image templates: the processed image (required for them, refused for text).
        image: Option<ImageRef>,
        at: DateTime<Utc>,
    },
    Update {
        tenant_id: Uuid,
        name: Option<String>,
        body: Option<TemplateBody>,
        caption: Option<TemplateBody>,
        status: Option<TemplateStatus>,
        /// A new processed image (image templates only).
        image: Option<ImageRef>,
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
        /// Added with image templates; absent in older events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<ImageRef>,
        at: DateTime<Utc>,
    },
    TemplateUpdated {
        name: Option<String>,
        body: Option<TemplateBody>,
        caption: Option<TemplateBody>,
        status: Option<TemplateStatus>,
        /// A re-processed image (its `source_url` replaces the template's `image_url`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<ImageRef>,
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
    pub image: Option<ImageRef>,
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
                image,
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
                    TemplateKind::Text if image.is_some() || caption.is_some() => {
                        return Err(DomainError::invalid(
                            "image_url",
                            "text templates take a body only (no image or caption)",
                        ))
                    }
                    TemplateKind::Image if image.is_none() => {
                        return Err(DomainError::invalid(
                            "image_url",
                            "image templates need an image",
                        ))
                    }
                    TemplateKind::Image if body.is_some() => {
                        return Err(DomainError::invalid(
                            "body",
                            "image templates have a caption, not a body",
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
                    image,
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
                image,
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
                if self.kind == Some(TemplateKind::Text) {
                    if image.is_some() {
                        return Err(DomainError::invalid(
                            "image_url",
                            "text templates have no image",
                        ));
                    }
                    if caption.is_some() {
                        return Err(DomainError::invalid(
                            "caption",
                            "text templates have a body, not a caption",
                        ));
                    }
                }
                if name.is_none()
                    && body.is_none()
                    && caption.is_none()
                    && status.is_none()
                    && image.is_none()
                {
                    return Ok(());
                }
                let event = TemplateEvent::TemplateUpdated {
                    name,
                    body,
                    caption,
                    status,
                    image,
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
                image,
                ..
            } => {
                self.tenant_id = Some(tenant_id);
                self.name = name;
                self.kind = Some(kind);
                self.body = body;
                self.caption = caption;
                self.image_url = image_url;
                self.image = image;
                self.status = TemplateStatus::Active;
            }
            TemplateEvent::TemplateUpdated {
                name,
                body,
                caption,
                status,
                image,
                ..
            } => {
                if let Some(i) = image {
                    self.image_url = i.source_url.clone();
                    self.image = Some(i);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type TemplateTest = TestFramework<Template>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).expect("a valid timestamp")
    }

    fn promo_image() -> ImageRef {
        ImageRef {
            sha256: "ab".repeat(32),
            width: 800,
            height: 600,
            bytes: 51_200,
            source_url: Some("https://example.com/promo.png".to_string()),
        }
    }

    fn owner() -> Uuid {
        Uuid::from_u128(1)
    }

    fn body(source: &str) -> TemplateBody {
        TemplateBody::parse(source).expect("a valid body")
    }

    fn create_text(name: &str) -> TemplateCommand {
        TemplateCommand::Create {
            tenant_id: owner(),
            name: name.to_string(),
            kind: TemplateKind::Text,
            body: Some(body("Hello {{ name }}")),
            caption: None,
            image_url: None,
            image: None,
            at: at(),
        }
    }

    fn text_created() -> TemplateEvent {
        TemplateEvent::TemplateCreated {
            tenant_id: owner(),
            name: "Welcome".to_string(),
            kind: TemplateKind::Text,
            body: Some(body("Hello {{ name }}")),
            caption: None,
            image_url: None,
            image: None,
            at: at(),
        }
    }

    fn image_created() -> TemplateEvent {
        TemplateEvent::TemplateCreated {
            tenant_id: owner(),
            name: "Promo".to_string(),
            kind: TemplateKind::Image,
            body: None,
            caption: Some(body("Look, {{ name }}")),
            image_url: Some("https://example.com/promo.png".to_string()),
            image: Some(promo_image()),
            at: at(),
        }
    }

    fn rename(tenant_id: Uuid, name: &str) -> TemplateCommand {
        TemplateCommand::Update {
            tenant_id,
            name: Some(name.to_string()),
            body: None,
            caption: None,
            status: None,
            image: None,
            at: at(),
        }
    }

    #[test]
    fn creating_a_text_template_records_it_with_a_trimmed_name() {
        TemplateTest::with(())
            .given_no_previous_events()
            .when(create_text("  Welcome  "))
            .then_expect_events(vec![text_created()]);
    }

    #[test]
    fn creating_an_image_template_needs_no_body() {
        TemplateTest::with(())
            .given_no_previous_events()
            .when(TemplateCommand::Create {
                tenant_id: owner(),
                name: "Promo".to_string(),
                kind: TemplateKind::Image,
                body: None,
                caption: Some(body("Look, {{ name }}")),
                image_url: Some("https://example.com/promo.png".to_string()),
                image: Some(promo_image()),
                at: at(),
            })
            .then_expect_events(vec![image_created()]);
    }

    #[test]
    fn a_text_template_needs_a_body() {
        TemplateTest::with(())
            .given_no_previous_events()
            .when(TemplateCommand::Create {
                tenant_id: owner(),
                name: "Welcome".to_string(),
                kind: TemplateKind::Text,
                body: None,
                caption: None,
                image_url: None,
                image: None,
                at: at(),
            })
            .then_expect_error(DomainError::invalid("body", "text templates need a body"));
    }

    #[test]
    fn an_image_template_needs_an_image() {
        TemplateTest::with(())
            .given_no_previous_events()
            .when(TemplateCommand::Create {
                tenant_id: owner(),
                name: "Promo".to_string(),
                kind: TemplateKind::Image,
                body: None,
                caption: Some(body("Look")),
                image_url: None,
                image: None,
                at: at(),
            })
            .then_expect_error(DomainError::invalid(
                "image_url",
                "image templates need an image",
            ));
    }

    #[test]
    fn a_blank_name_is_rejected() {
        for name in ["", "   ", "\t\n"] {
            TemplateTest::with(())
                .given_no_previous_events()
                .when(create_text(name))
                .then_expect_error(DomainError::invalid("name", "must not be empty"));
        }
    }

    #[test]
    fn a_name_over_200_characters_is_rejected() {
        assert!(validate_name(&"é".repeat(200)).is_ok());
        TemplateTest::with(())
            .given_no_previous_events()
            .when(create_text(&"é".repeat(201)))
            .then_expect_error(DomainError::invalid(
                "name",
                "must be at most 200 characters",
            ));
    }

    #[test]
    fn creating_twice_is_already_exists() {
        TemplateTest::with(())
            .given(vec![text_created()])
            .when(create_text("Welcome"))
            .then_expect_error(DomainError::AlreadyExists);
    }

    #[test]
    fn the_owner_can_update_a_template() {
        TemplateTest::with(())
            .given(vec![text_created()])
            .when(TemplateCommand::Update {
                tenant_id: owner(),
                name: Some(" Hello ".to_string()),
                body: Some(body("Hi {{ name }}")),
                caption: None,
                status: Some(TemplateStatus::Inactive),
                image: None,
                at: at(),
            })
            .then_expect_events(vec![TemplateEvent::TemplateUpdated {
                name: Some("Hello".to_string()),
                body: Some(body("Hi {{ name }}")),
                caption: None,
                status: Some(TemplateStatus::Inactive),
                image: None,
                at: at(),
            }]);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        TemplateTest::with(())
            .given(vec![text_created()])
            .when(TemplateCommand::Update {
                tenant_id: owner(),
                name: None,
                body: None,
                caption: None,
                status: None,
                image: None,
                at: at(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_update_with_a_blank_name_is_rejected() {
        TemplateTest::with(())
            .given(vec![text_created()])
            .when(rename(owner(), "  "))
            .then_expect_error(DomainError::invalid("name", "must not be empty"));
    }

    #[test]
    fn an_image_template_gets_no_body() {
        TemplateTest::with(())
            .given(vec![image_created()])
            .when(TemplateCommand::Update {
                tenant_id: owner(),
                name: None,
                body: Some(body("Hi")),
                caption: None,
                status: None,
                image: None,
                at: at(),
            })
            .then_expect_error(DomainError::invalid(
                "body",
                "image templates have a caption, not a body",
            ));
    }

    #[test]
    fn a_new_image_replaces_the_old_one_and_its_source() {
        let replacement = ImageRef {
            sha256: "cd".repeat(32),
            width: 1600,
            height: 900,
            bytes: 90_000,
            source_url: None,
        };
        let update = TemplateCommand::Update {
            tenant_id: owner(),
            name: None,
            body: None,
            caption: None,
            status: None,
            image: Some(replacement.clone()),
            at: at(),
        };
        TemplateTest::with(())
            .given(vec![image_created()])
            .when(update)
            .then_expect_events(vec![TemplateEvent::TemplateUpdated {
                name: None,
                body: None,
                caption: None,
                status: None,
                image: Some(replacement.clone()),
                at: at(),
            }]);
        let mut template = Template::default();
        template.apply(image_created());
        template.apply(TemplateEvent::TemplateUpdated {
            name: None,
            body: None,
            caption: None,
            status: None,
            image: Some(replacement.clone()),
            at: at(),
        });
        assert_eq!(template.image, Some(replacement));
        assert_eq!(template.image_url, None, "the base64 image has no URL");
    }

    #[test]
    fn a_text_template_gets_no_image_and_no_caption() {
        let with =
            |image: Option<ImageRef>, caption: Option<TemplateBody>| TemplateCommand::Update {
                tenant_id: owner(),
                name: None,
                body: None,
                caption,
                status: None,
                image,
                at: at(),
            };
        TemplateTest::with(())
            .given(vec![text_created()])
            .when(with(Some(promo_image()), None))
            .then_expect_error(DomainError::invalid(
                "image_url",
                "text templates have no image",
            ));
        TemplateTest::with(())
            .given(vec![text_created()])
            .when(with(None, Some(body("Hi"))))
            .then_expect_error(DomainError::invalid(
                "caption",
                "text templates have a body, not a caption",
            ));
    }

    #[test]
    fn events_written_before_images_still_read() {
        let old = r#"{"TemplateCreated":{"tenant_id":"00000000-0000-0000-0000-000000000001","name":"Welcome","kind":"text","body":"Hello {{ name }}","caption":null,"image_url":null,"at":"2026-01-01T00:00:00Z"}}"#;
        let event: TemplateEvent = serde_json::from_str(old).expect("an old event reads");
        assert_eq!(event, text_created());
    }

    #[test]
    fn another_tenants_template_is_not_found() {
        let stranger = Uuid::from_u128(2);
        TemplateTest::with(())
            .given(vec![text_created()])
            .when(rename(stranger, "Mine now"))
            .then_expect_error(DomainError::NotFound);
        TemplateTest::with(())
            .given(vec![text_created()])
            .when(TemplateCommand::Delete {
                tenant_id: stranger,
                at: at(),
            })
            .then_expect_error(DomainError::NotFound);
    }

    #[test]
    fn a_template_that_was_never_created_is_not_found() {
        TemplateTest::with(())
            .given_no_previous_events()
            .when(rename(owner(), "Ghost"))
            .then_expect_error(DomainError::NotFound);
    }

    #[test]
    fn the_owner_can_delete_a_template() {
        TemplateTest::with(())
            .given(vec![text_created()])
            .when(TemplateCommand::Delete {
                tenant_id: owner(),
                at: at(),
            })
            .then_expect_events(vec![TemplateEvent::TemplateDeleted { at: at() }]);
    }

    #[test]
    fn a_deleted_template_is_not_found() {
        let deleted = vec![text_created(), TemplateEvent::TemplateDeleted { at: at() }];
        TemplateTest::with(())
            .given(deleted.clone())
            .when(rename(owner(), "Back"))
            .then_expect_error(DomainError::NotFound);
        TemplateTest::with(())
            .given(deleted)
            .when(TemplateCommand::Delete {
                tenant_id: owner(),
                at: at(),
            })
            .then_expect_error(DomainError::NotFound);
    }

    #[test]
    fn events_fold_into_the_current_template() {
        let mut template = Template::default();
        template.apply(text_created());
        template.apply(TemplateEvent::TemplateUpdated {
            name: Some("Renamed".to_string()),
            body: None,
            caption: None,
            status: Some(TemplateStatus::Archived),
            image: None,
            at: at(),
        });
        assert_eq!(template.name, "Renamed");
        assert_eq!(template.body, Some(body("Hello {{ name }}")));
        assert_eq!(template.status, TemplateStatus::Archived);
        assert!(template.visible_to(owner()));
        assert!(!template.visible_to(Uuid::from_u128(2)));
        template.apply(TemplateEvent::TemplateDeleted { at: at() });
        assert!(!template.visible_to(owner()));
    }

    #[test]
    fn events_survive_a_json_round_trip() {
        for event in [text_created(), image_created()] {
            let json = serde_json::to_string(&event).expect("serializable");
            let back: TemplateEvent = serde_json::from_str(&json).expect("deserializable");
            assert_eq!(back, event);
        }
        assert_eq!(text_created().event_type(), "TemplateCreated");
        assert_eq!(text_created().event_version(), "1");
    }
}
