//! `Campaign`: a bulk send's lifecycle only. Its recipients are separate `Delivery` aggregates, so
//! this stream stays a handful of events however large the audience.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schedule::Recurrence;
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
    /// Image campaigns: the template's processed image, by hash (absent in older events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::template::ImageRef>,
}

// `Create` is much larger than the other commands; commands live for one call, so boxing its
// fields would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum CampaignCommand {
    Create {
        tenant_id: Uuid,
        name: String,
        template_id: Uuid,
        session_id: Uuid,
        message: MessageSpec,
        total_recipients: u64,
        /// `None`: start now. Otherwise the campaign waits, scheduled, until the ticker starts it.
        scheduled_at: Option<DateTime<Utc>>,
        /// The recurring campaign this is one run of.
        parent_id: Option<Uuid>,
        /// A recurring campaign: it sends nothing itself; each occurrence starts a run.
        recurrence: Option<Recurrence>,
        at: DateTime<Utc>,
    },
    /// The scheduler's ticker: the scheduled time has come.
    Start {
        at: DateTime<Utc>,
    },
    Complete {
        at: DateTime<Utc>,
    },
    Pause {
        tenant_id: Uuid,
        at: DateTime<Utc>,
    },
    Resume {
        tenant_id: Uuid,
        at: DateTime<Utc>,
    },
    /// `PATCH /campaigns/{id}`: a new name, for a campaign not finished yet.
    Rename {
        tenant_id: Uuid,
        name: String,
        at: DateTime<Utc>,
    },
    /// The circuit breaker (docs/safe-sending.md): the campaign's number stopped sending, so a
    /// running campaign pauses with `reason` (`session_disconnected`, `failure_spike`,
    /// `spam_rate_limit`, `gateway_auth`). Issued by Herald itself, never by a tenant; any other
    /// status records nothing.
    Trip {
        reason: String,
        at: DateTime<Utc>,
    },
    Cancel {
        tenant_id: Uuid,
        at: DateTime<Utc>,
    },
    /// A scheduled campaign's audience was resolved when it started: its recipients now number
    /// `total_recipients` (explicit ones included); `without_phone` tagged contacts had only a
    /// lid and were left out.
    ResolveAudience {
        total_recipients: u64,
        without_phone: u64,
        at: DateTime<Utc>,
    },
}

// `CampaignCreated` happens once per campaign; the small lifecycle events do not pay for its size
// in any collection that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CampaignEvent {
    CampaignCreated {
        tenant_id: Uuid,
        name: String,
        template_id: Uuid,
        session_id: Uuid,
        message: MessageSpec,
        total_recipients: u64,
        /// When it is due; `None` for a campaign sent at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheduled_at: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recurrence: Option<Recurrence>,
        at: DateTime<Utc>,
    },
    CampaignStarted {
        at: DateTime<Utc>,
    },
    CampaignCompleted {
        at: DateTime<Utc>,
    },
    CampaignPaused {
        at: DateTime<Utc>,
        /// Set when the circuit breaker paused it; `None`: a user did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    CampaignResumed {
        at: DateTime<Utc>,
    },
    CampaignCancelled {
        at: DateTime<Utc>,
    },
    CampaignRenamed {
        name: String,
        at: DateTime<Utc>,
    },
    CampaignAudienceResolved {
        total_recipients: u64,
        #[serde(default)]
        without_phone: u64,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for CampaignEvent {
    fn event_type(&self) -> String {
        match self {
            CampaignEvent::CampaignCreated { .. } => "CampaignCreated",
            CampaignEvent::CampaignStarted { .. } => "CampaignStarted",
            CampaignEvent::CampaignCompleted { .. } => "CampaignCompleted",
            CampaignEvent::CampaignPaused { .. } => "CampaignPaused",
            CampaignEvent::CampaignResumed { .. } => "CampaignResumed",
            CampaignEvent::CampaignCancelled { .. } => "CampaignCancelled",
            CampaignEvent::CampaignRenamed { .. } => "CampaignRenamed",
            CampaignEvent::CampaignAudienceResolved { .. } => "CampaignAudienceResolved",
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
    pub recurrence: Option<Recurrence>,
}

impl Campaign {
    pub fn visible_to(&self, tenant_id: Uuid) -> bool {
        self.tenant_id == Some(tenant_id)
    }

    fn require_owner(&self, tenant_id: Uuid) -> Result<(), DomainError> {
        if self.visible_to(tenant_id) {
            Ok(())
        } else {
            Err(DomainError::NotFound)
        }
    }
}

fn cannot(action: &str, status: CampaignStatus) -> DomainError {
    DomainError::Conflict(format!("a {} campaign cannot {action}", status.as_str()))
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
                scheduled_at,
                parent_id,
                recurrence,
                at,
            } => {
                if self.tenant_id.is_some() {
                    return Err(DomainError::AlreadyExists);
                }
                let name = crate::template::validate_name(&name)?;
                // a scheduled campaign with an audience gets its recipients when it starts
                if total_recipients == 0 && scheduled_at.is_none() {
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
                    scheduled_at,
                    parent_id,
                    recurrence: recurrence.clone(),
                    at,
                };
                sink.write(created, self).await;
                // a recurring campaign never runs itself: its occurrences do
                if scheduled_at.is_none() && recurrence.is_none() {
                    sink.write(CampaignEvent::CampaignStarted { at }, self)
                        .await;
                }
            }
            CampaignCommand::Start { at } => match self.status {
                CampaignStatus::Scheduled if self.tenant_id.is_some() => {
                    sink.write(CampaignEvent::CampaignStarted { at }, self)
                        .await;
                }
                // started already, or cancelled before its time: nothing to do
                _ if self.tenant_id.is_some() => {}
                _ => return Err(DomainError::NotFound),
            },
            CampaignCommand::Complete { .. } if self.tenant_id.is_none() => {
                return Err(DomainError::NotFound)
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
            CampaignCommand::Pause { tenant_id, at } => {
                self.require_owner(tenant_id)?;
                match self.status {
                    CampaignStatus::Running => {
                        sink.write(CampaignEvent::CampaignPaused { at, reason: None }, self)
                            .await
                    }
                    CampaignStatus::Paused => {}
                    other => return Err(cannot("pause", other)),
                }
            }
            CampaignCommand::Rename {
                tenant_id,
                name,
                at,
            } => {
                self.require_owner(tenant_id)?;
                let name = crate::template::validate_name(&name)?;
                match self.status {
                    _ if name == self.name => {}
                    CampaignStatus::Scheduled
                    | CampaignStatus::Running
                    | CampaignStatus::Paused => {
                        sink.write(CampaignEvent::CampaignRenamed { name, at }, self)
                            .await
                    }
                    other => return Err(cannot("be renamed", other)),
                }
            }
            CampaignCommand::Trip { reason, at } => match self.status {
                CampaignStatus::Running => {
                    let paused = CampaignEvent::CampaignPaused {
                        at,
                        reason: Some(reason),
                    };
                    sink.write(paused, self).await
                }
                _ if self.tenant_id.is_none() => return Err(DomainError::NotFound),
                // paused already (by a user or an earlier trip), finished, or not started
                _ => {}
            },
            CampaignCommand::Resume { tenant_id, at } => {
                self.require_owner(tenant_id)?;
                match self.status {
                    CampaignStatus::Paused => {
                        sink.write(CampaignEvent::CampaignResumed { at }, self)
                            .await
                    }
                    CampaignStatus::Running => {}
                    other => return Err(cannot("resume", other)),
                }
            }
            CampaignCommand::ResolveAudience {
                total_recipients,
                without_phone,
                at,
            } => match self.status {
                CampaignStatus::Running | CampaignStatus::Paused => {
                    let event = CampaignEvent::CampaignAudienceResolved {
                        total_recipients,
                        without_phone,
                        at,
                    };
                    sink.write(event, self).await;
                }
                _ if self.tenant_id.is_none() => return Err(DomainError::NotFound),
                other => return Err(cannot("resolve its audience", other)),
            },
            CampaignCommand::Cancel { tenant_id, at } => {
                self.require_owner(tenant_id)?;
                match self.status {
                    CampaignStatus::Scheduled
                    | CampaignStatus::Running
                    | CampaignStatus::Paused => {
                        sink.write(CampaignEvent::CampaignCancelled { at }, self)
                            .await
                    }
                    CampaignStatus::Cancelled => {}
                    other => return Err(cannot("cancel", other)),
                }
            }
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
                recurrence,
                ..
            } => {
                self.recurrence = recurrence;
                self.tenant_id = Some(tenant_id);
                self.name = name;
                self.session_id = Some(session_id);
                self.message = Some(message);
                self.total_recipients = total_recipients;
                self.status = CampaignStatus::Scheduled;
            }
            CampaignEvent::CampaignStarted { .. } => self.status = CampaignStatus::Running,
            CampaignEvent::CampaignCompleted { .. } => self.status = CampaignStatus::Completed,
            CampaignEvent::CampaignPaused { .. } => self.status = CampaignStatus::Paused,
            CampaignEvent::CampaignResumed { .. } => self.status = CampaignStatus::Running,
            CampaignEvent::CampaignCancelled { .. } => self.status = CampaignStatus::Cancelled,
            CampaignEvent::CampaignRenamed { name, .. } => self.name = name,
            CampaignEvent::CampaignAudienceResolved {
                total_recipients, ..
            } => self.total_recipients = total_recipients,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::TemplateKind;
    use cqrs_es::test::TestFramework;

    type CampaignTest = TestFramework<Campaign>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).expect("a valid timestamp")
    }

    fn later() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_229_200, 0).expect("a valid timestamp")
    }

    fn message() -> MessageSpec {
        MessageSpec {
            kind: TemplateKind::Text,
            body: Some(TemplateBody::parse("Hi {{ name }}").expect("a valid body")),
            caption: None,
            image_url: None,
            image: None,
        }
    }

    fn create(name: &str, total_recipients: u64) -> CampaignCommand {
        CampaignCommand::Create {
            tenant_id: Uuid::from_u128(1),
            name: name.to_string(),
            template_id: Uuid::from_u128(10),
            session_id: Uuid::from_u128(20),
            message: message(),
            total_recipients,
            scheduled_at: None,
            parent_id: None,
            recurrence: None,
            at: at(),
        }
    }

    fn created() -> CampaignEvent {
        CampaignEvent::CampaignCreated {
            tenant_id: Uuid::from_u128(1),
            name: "Launch".to_string(),
            template_id: Uuid::from_u128(10),
            session_id: Uuid::from_u128(20),
            message: message(),
            total_recipients: 3,
            scheduled_at: None,
            parent_id: None,
            recurrence: None,
            at: at(),
        }
    }

    fn running() -> Vec<CampaignEvent> {
        vec![created(), CampaignEvent::CampaignStarted { at: at() }]
    }

    fn complete() -> CampaignCommand {
        CampaignCommand::Complete { at: later() }
    }

    #[test]
    fn creating_a_campaign_creates_and_starts_it() {
        CampaignTest::with(())
            .given_no_previous_events()
            .when(create(" Launch ", 3))
            .then_expect_events(running());
    }

    #[test]
    fn a_campaign_without_recipients_is_rejected() {
        CampaignTest::with(())
            .given_no_previous_events()
            .when(create("Launch", 0))
            .then_expect_error(DomainError::invalid(
                "recipients",
                "the campaign has no valid recipient",
            ));
    }

    #[test]
    fn a_blank_name_is_rejected() {
        CampaignTest::with(())
            .given_no_previous_events()
            .when(create(" ", 3))
            .then_expect_error(DomainError::invalid("name", "must not be empty"));
    }

    #[test]
    fn creating_twice_is_already_exists() {
        CampaignTest::with(())
            .given(running())
            .when(create("Launch", 3))
            .then_expect_error(DomainError::AlreadyExists);
    }

    #[test]
    fn a_running_campaign_completes() {
        CampaignTest::with(())
            .given(running())
            .when(complete())
            .then_expect_events(vec![CampaignEvent::CampaignCompleted { at: later() }]);
    }

    #[test]
    fn completing_twice_records_nothing_more() {
        CampaignTest::with(())
            .given(running())
            .and(vec![CampaignEvent::CampaignCompleted { at: later() }])
            .when(complete())
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_campaign_that_never_started_cannot_complete() {
        CampaignTest::with(())
            .given(vec![created()])
            .when(complete())
            .then_expect_error(DomainError::Conflict(
                "a scheduled campaign cannot complete".to_string(),
            ));
    }

    #[test]
    fn a_campaign_that_was_never_created_cannot_complete() {
        let result = CampaignTest::with(())
            .given_no_previous_events()
            .when(complete())
            .inspect_result();
        assert_eq!(result, Err(DomainError::NotFound));
    }

    #[test]
    fn events_fold_into_the_lifecycle() {
        let mut campaign = Campaign::default();
        campaign.apply(created());
        assert_eq!(campaign.status, CampaignStatus::Scheduled);
        assert_eq!(campaign.total_recipients, 3);
        assert_eq!(campaign.session_id, Some(Uuid::from_u128(20)));
        assert_eq!(campaign.message, Some(message()));
        campaign.apply(CampaignEvent::CampaignStarted { at: at() });
        assert_eq!(campaign.status, CampaignStatus::Running);
        campaign.apply(CampaignEvent::CampaignCompleted { at: later() });
        assert_eq!(campaign.status, CampaignStatus::Completed);
        assert!(campaign.visible_to(Uuid::from_u128(1)));
        assert!(!campaign.visible_to(Uuid::from_u128(2)));
    }

    #[test]
    fn statuses_parse_what_they_print() {
        for status in [
            CampaignStatus::Scheduled,
            CampaignStatus::Running,
            CampaignStatus::Paused,
            CampaignStatus::Completed,
            CampaignStatus::Cancelled,
            CampaignStatus::Failed,
        ] {
            assert_eq!(CampaignStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_value(status).expect("serializable");
            assert_eq!(json, serde_json::Value::from(status.as_str()));
        }
        assert_eq!(CampaignStatus::parse("Running"), None);
    }

    #[test]
    fn events_survive_a_json_round_trip() {
        for event in running() {
            let json = serde_json::to_string(&event).expect("serializable");
            let back: CampaignEvent = serde_json::from_str(&json).expect("deserializable");
            assert_eq!(back, event);
        }
    }

    fn owner() -> Uuid {
        Uuid::from_u128(1)
    }

    #[test]
    fn given_a_running_campaign_when_the_breaker_trips_then_it_pauses_with_the_reason_once() {
        let tripped = CampaignEvent::CampaignPaused {
            at: later(),
            reason: Some("session_disconnected".into()),
        };
        CampaignTest::with(())
            .given(running())
            .when(CampaignCommand::Trip {
                reason: "session_disconnected".into(),
                at: later(),
            })
            .then_expect_events(vec![tripped.clone()]);
        // a second trip, or a trip of a campaign a user paused, records nothing
        let mut paused = running();
        paused.push(tripped);
        CampaignTest::with(())
            .given(paused)
            .when(CampaignCommand::Trip {
                reason: "failure_spike".into(),
                at: later(),
            })
            .then_expect_events(vec![]);
        // and a user's resume is what continues it
        let json = serde_json::json!({"CampaignPaused": {"at": "2026-11-21T10:00:00Z"}});
        let old: CampaignEvent = serde_json::from_value(json).expect("an old pause reads");
        assert!(matches!(
            old,
            CampaignEvent::CampaignPaused { reason: None, .. }
        ));
    }

    #[test]
    fn given_a_running_campaign_when_renamed_then_the_name_changes_and_a_finished_one_refuses() {
        CampaignTest::with(())
            .given(running())
            .when(CampaignCommand::Rename {
                tenant_id: owner(),
                name: "  Spring sale  ".into(),
                at: later(),
            })
            .then_expect_events(vec![CampaignEvent::CampaignRenamed {
                name: "Spring sale".into(),
                at: later(),
            }]);
        let mut done = running();
        done.push(CampaignEvent::CampaignCompleted { at: later() });
        CampaignTest::with(())
            .given(done)
            .when(CampaignCommand::Rename {
                tenant_id: owner(),
                name: "late".into(),
                at: later(),
            })
            .then_expect_error(DomainError::Conflict(
                "a completed campaign cannot be renamed".into(),
            ));
        CampaignTest::with(())
            .given(running())
            .when(CampaignCommand::Rename {
                tenant_id: Uuid::from_u128(99),
                name: "theirs".into(),
                at: later(),
            })
            .then_expect_error(DomainError::NotFound);
    }

    #[test]
    fn a_running_campaign_pauses_resumes_and_pausing_twice_records_nothing() {
        CampaignTest::with(())
            .given(running())
            .when(CampaignCommand::Pause {
                tenant_id: owner(),
                at: later(),
            })
            .then_expect_events(vec![CampaignEvent::CampaignPaused {
                at: later(),
                reason: None,
            }]);
        let mut paused = running();
        paused.push(CampaignEvent::CampaignPaused {
            at: later(),
            reason: None,
        });
        CampaignTest::with(())
            .given(paused.clone())
            .when(CampaignCommand::Pause {
                tenant_id: owner(),
                at: later(),
            })
            .then_expect_events(vec![]);
        CampaignTest::with(())
            .given(paused)
            .when(CampaignCommand::Resume {
                tenant_id: owner(),
                at: later(),
            })
            .then_expect_events(vec![CampaignEvent::CampaignResumed { at: later() }]);
    }

    #[test]
    fn another_tenant_cannot_control_a_campaign() {
        for command in [
            CampaignCommand::Pause {
                tenant_id: Uuid::from_u128(2),
                at: later(),
            },
            CampaignCommand::Resume {
                tenant_id: Uuid::from_u128(2),
                at: later(),
            },
            CampaignCommand::Cancel {
                tenant_id: Uuid::from_u128(2),
                at: later(),
            },
        ] {
            CampaignTest::with(())
                .given(running())
                .when(command)
                .then_expect_error(DomainError::NotFound);
        }
    }

    #[test]
    fn cancel_is_final_and_idempotent() {
        CampaignTest::with(())
            .given(running())
            .when(CampaignCommand::Cancel {
                tenant_id: owner(),
                at: later(),
            })
            .then_expect_events(vec![CampaignEvent::CampaignCancelled { at: later() }]);
        let mut cancelled = running();
        cancelled.push(CampaignEvent::CampaignCancelled { at: later() });
        CampaignTest::with(())
            .given(cancelled.clone())
            .when(CampaignCommand::Cancel {
                tenant_id: owner(),
                at: later(),
            })
            .then_expect_events(vec![]);
        CampaignTest::with(())
            .given(cancelled.clone())
            .when(CampaignCommand::Resume {
                tenant_id: owner(),
                at: later(),
            })
            .then_expect_error(DomainError::Conflict(
                "a cancelled campaign cannot resume".into(),
            ));
        // the last in-flight send finishing does not turn it into "completed"
        CampaignTest::with(())
            .given(cancelled)
            .when(complete())
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_completed_campaign_cannot_be_paused_or_cancelled() {
        let mut completed = running();
        completed.push(CampaignEvent::CampaignCompleted { at: later() });
        CampaignTest::with(())
            .given(completed.clone())
            .when(CampaignCommand::Pause {
                tenant_id: owner(),
                at: later(),
            })
            .then_expect_error(DomainError::Conflict(
                "a completed campaign cannot pause".into(),
            ));
        CampaignTest::with(())
            .given(completed)
            .when(CampaignCommand::Cancel {
                tenant_id: owner(),
                at: later(),
            })
            .then_expect_error(DomainError::Conflict(
                "a completed campaign cannot cancel".into(),
            ));
    }

    #[test]
    fn a_scheduled_campaign_waits_for_the_ticker() {
        let due = later();
        let mut command = create("Later", 3);
        if let CampaignCommand::Create { scheduled_at, .. } = &mut command {
            *scheduled_at = Some(due);
        }
        let mut expected = created();
        if let CampaignEvent::CampaignCreated {
            scheduled_at, name, ..
        } = &mut expected
        {
            *scheduled_at = Some(due);
            *name = "Later".into();
        }
        CampaignTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_events(vec![expected.clone()]);
        CampaignTest::with(())
            .given(vec![expected.clone()])
            .when(CampaignCommand::Start { at: due })
            .then_expect_events(vec![CampaignEvent::CampaignStarted { at: due }]);
        // a second firing (another instance) or a firing after cancel changes nothing
        CampaignTest::with(())
            .given(vec![
                expected.clone(),
                CampaignEvent::CampaignStarted { at: due },
            ])
            .when(CampaignCommand::Start { at: due })
            .then_expect_events(vec![]);
        CampaignTest::with(())
            .given(vec![
                expected,
                CampaignEvent::CampaignCancelled { at: at() },
            ])
            .when(CampaignCommand::Start { at: due })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_started_campaign_records_its_resolved_audience() {
        let mut expected = created();
        if let CampaignEvent::CampaignCreated {
            scheduled_at,
            total_recipients,
            ..
        } = &mut expected
        {
            *scheduled_at = Some(later());
            *total_recipients = 0;
        }
        let mut command = create("Launch", 0);
        if let CampaignCommand::Create { scheduled_at, .. } = &mut command {
            *scheduled_at = Some(later());
        }
        // zero recipients so far is fine for a scheduled campaign: its audience comes at start
        CampaignTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_events(vec![expected.clone()]);
        let resolve = CampaignCommand::ResolveAudience {
            total_recipients: 7,
            without_phone: 1,
            at: later(),
        };
        CampaignTest::with(())
            .given(vec![expected.clone()])
            .when(resolve.clone())
            .then_expect_error(DomainError::Conflict(
                "a scheduled campaign cannot resolve its audience".into(),
            ));
        CampaignTest::with(())
            .given(vec![
                expected,
                CampaignEvent::CampaignStarted { at: later() },
            ])
            .when(resolve)
            .then_expect_events(vec![CampaignEvent::CampaignAudienceResolved {
                total_recipients: 7,
                without_phone: 1,
                at: later(),
            }]);
    }
}
