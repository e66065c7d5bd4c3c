//! `Session`: one linked WhatsApp number of a tenant, behind a gateway user.
//!
//! The gateway token is a secret and never enters an event (events are kept forever and are
//! published); it lives in the `session_credentials` table. So does nothing else secret or
//! bulky: the latest pairing QR code is kept in `session_qr`, never in these events.
//!
//! Status changes come from the gateway's webhooks (delivered at least once and in any order)
//! and from Herald's own calls (connect, logout). Each carries the time it describes; a change
//! older than the last one applied is stale and records nothing, and a change to the status the
//! session already has records nothing either (docs/decisions/0015).

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
    /// The session was seen in `status` at `at` (a webhook's time, or Herald's own call).
    ChangeStatus {
        status: SessionStatus,
        at: DateTime<Utc>,
    },
    /// The gateway posted a pairing QR code at `at`: `qr_pending`, unless the number is
    /// connected. WuzAPI shows codes only for an unpaired number, so a code arriving while the
    /// session is connected was posted before the scan and delivered late; a real unpairing
    /// comes with its own `LoggedOut` (or is seen by Herald's own gateway calls).
    QrShown {
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
    /// When the current status was observed: later observations older than this are stale.
    pub status_at: Option<DateTime<Utc>>,
    pub deleted: bool,
}

impl Session {
    pub fn visible_to(&self, tenant_id: Uuid) -> bool {
        self.tenant_id == Some(tenant_id) && !self.deleted
    }

    /// The event observing `status` at `at` records: none when it is stale (older than the
    /// current status) or changes nothing.
    fn status_change(
        &self,
        status: SessionStatus,
        at: DateTime<Utc>,
    ) -> Result<Option<SessionEvent>, DomainError> {
        if self.tenant_id.is_none() || self.deleted {
            return Err(DomainError::NotFound);
        }
        let stale = self.status_at.is_some_and(|last| at < last);
        Ok((!stale && status != self.status)
            .then_some(SessionEvent::SessionStatusChanged { status, at }))
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
            SessionCommand::QrShown { at } => {
                // a late code for a connected number changes nothing
                if self.status != SessionStatus::Connected || self.deleted {
                    if let Some(event) = self.status_change(SessionStatus::QrPending, at)? {
                        sink.write(event, self).await;
                    }
                }
            }
            SessionCommand::ChangeStatus { status, at } => {
                if let Some(event) = self.status_change(status, at)? {
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
                at,
            } => {
                self.tenant_id = Some(tenant_id);
                self.name = name;
                self.status = status;
                self.status_at = Some(at);
            }
            SessionEvent::SessionStatusChanged { status, at } => {
                self.status = status;
                self.status_at = Some(at);
            }
            SessionEvent::SessionDeleted { .. } => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type SessionTest = TestFramework<Session>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).expect("a valid timestamp")
    }

    fn owner() -> Uuid {
        Uuid::from_u128(1)
    }

    fn link(name: &str) -> SessionCommand {
        SessionCommand::Link {
            tenant_id: owner(),
            name: name.to_string(),
            status: SessionStatus::QrPending,
            at: at(),
        }
    }

    fn linked() -> SessionEvent {
        SessionEvent::SessionLinked {
            tenant_id: owner(),
            name: "Sales".to_string(),
            status: SessionStatus::QrPending,
            at: at(),
        }
    }

    fn change(status: SessionStatus) -> SessionCommand {
        SessionCommand::ChangeStatus { status, at: at() }
    }

    #[test]
    fn linking_records_the_session_with_a_trimmed_name() {
        SessionTest::with(())
            .given_no_previous_events()
            .when(link(" Sales "))
            .then_expect_events(vec![linked()]);
    }

    #[test]
    fn linking_twice_is_already_exists() {
        SessionTest::with(())
            .given(vec![linked()])
            .when(link("Sales"))
            .then_expect_error(DomainError::AlreadyExists);
    }

    #[test]
    fn a_blank_name_is_rejected() {
        SessionTest::with(())
            .given_no_previous_events()
            .when(link("  "))
            .then_expect_error(DomainError::invalid("name", "must not be empty"));
    }

    #[test]
    fn a_new_status_is_recorded() {
        SessionTest::with(())
            .given(vec![linked()])
            .when(change(SessionStatus::Connected))
            .then_expect_events(vec![SessionEvent::SessionStatusChanged {
                status: SessionStatus::Connected,
                at: at(),
            }]);
    }

    #[test]
    fn an_unchanged_status_records_nothing() {
        SessionTest::with(())
            .given(vec![linked()])
            .when(change(SessionStatus::QrPending))
            .then_expect_events(vec![]);
        SessionTest::with(())
            .given(vec![
                linked(),
                SessionEvent::SessionStatusChanged {
                    status: SessionStatus::Connected,
                    at: at(),
                },
            ])
            .when(change(SessionStatus::Connected))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_status_older_than_the_current_one_is_stale() {
        let later = at() + chrono::Duration::seconds(10);
        let connected_later = SessionEvent::SessionStatusChanged {
            status: SessionStatus::Connected,
            at: later,
        };
        // a QR webhook that arrives after the Connected one it preceded changes nothing
        SessionTest::with(())
            .given(vec![linked(), connected_later.clone()])
            .when(SessionCommand::ChangeStatus {
                status: SessionStatus::QrPending,
                at: later - chrono::Duration::seconds(1),
            })
            .then_expect_events(vec![]);
        // the same time is not older: applied
        SessionTest::with(())
            .given(vec![linked(), connected_later])
            .when(SessionCommand::ChangeStatus {
                status: SessionStatus::LoggedOut,
                at: later,
            })
            .then_expect_events(vec![SessionEvent::SessionStatusChanged {
                status: SessionStatus::LoggedOut,
                at: later,
            }]);
        // nor is a status older than the link itself
        SessionTest::with(())
            .given(vec![linked()])
            .when(SessionCommand::ChangeStatus {
                status: SessionStatus::Connected,
                at: at() - chrono::Duration::seconds(1),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_qr_code_for_a_connected_number_was_delivered_late() {
        let connected = SessionEvent::SessionStatusChanged {
            status: SessionStatus::Connected,
            at: at(),
        };
        let later = at() + chrono::Duration::seconds(5);
        SessionTest::with(())
            .given(vec![linked(), connected])
            .when(SessionCommand::QrShown { at: later })
            .then_expect_events(vec![]);
        let logged_out = SessionEvent::SessionStatusChanged {
            status: SessionStatus::LoggedOut,
            at: at(),
        };
        SessionTest::with(())
            .given(vec![linked(), logged_out])
            .when(SessionCommand::QrShown { at: later })
            .then_expect_events(vec![SessionEvent::SessionStatusChanged {
                status: SessionStatus::QrPending,
                at: later,
            }]);
        SessionTest::with(())
            .given_no_previous_events()
            .when(SessionCommand::QrShown { at: later })
            .then_expect_error(DomainError::NotFound);
    }

    #[test]
    fn status_of_an_unknown_or_deleted_session_is_not_found() {
        SessionTest::with(())
            .given_no_previous_events()
            .when(change(SessionStatus::Connected))
            .then_expect_error(DomainError::NotFound);
        SessionTest::with(())
            .given(vec![linked(), SessionEvent::SessionDeleted { at: at() }])
            .when(change(SessionStatus::Connected))
            .then_expect_error(DomainError::NotFound);
    }

    #[test]
    fn the_owner_can_delete_a_session() {
        SessionTest::with(())
            .given(vec![linked()])
            .when(SessionCommand::Delete {
                tenant_id: owner(),
                at: at(),
            })
            .then_expect_events(vec![SessionEvent::SessionDeleted { at: at() }]);
    }

    #[test]
    fn deleting_another_tenants_or_a_deleted_session_is_not_found() {
        SessionTest::with(())
            .given(vec![linked()])
            .when(SessionCommand::Delete {
                tenant_id: Uuid::from_u128(2),
                at: at(),
            })
            .then_expect_error(DomainError::NotFound);
        SessionTest::with(())
            .given(vec![linked(), SessionEvent::SessionDeleted { at: at() }])
            .when(SessionCommand::Delete {
                tenant_id: owner(),
                at: at(),
            })
            .then_expect_error(DomainError::NotFound);
        SessionTest::with(())
            .given_no_previous_events()
            .when(SessionCommand::Delete {
                tenant_id: owner(),
                at: at(),
            })
            .then_expect_error(DomainError::NotFound);
    }

    #[test]
    fn events_fold_into_the_current_session() {
        let mut session = Session::default();
        session.apply(linked());
        session.apply(SessionEvent::SessionStatusChanged {
            status: SessionStatus::LoggedOut,
            at: at(),
        });
        assert_eq!(session.name, "Sales");
        assert_eq!(session.status, SessionStatus::LoggedOut);
        assert!(session.visible_to(owner()));
        assert!(!session.visible_to(Uuid::from_u128(2)));
        session.apply(SessionEvent::SessionDeleted { at: at() });
        assert!(!session.visible_to(owner()));
    }

    #[test]
    fn statuses_are_snake_case_on_the_wire() {
        for status in [
            SessionStatus::Disconnected,
            SessionStatus::QrPending,
            SessionStatus::Connected,
            SessionStatus::LoggedOut,
        ] {
            let json = serde_json::to_value(status).expect("serializable");
            assert_eq!(json, serde_json::Value::from(status.as_str()));
        }
    }
}
