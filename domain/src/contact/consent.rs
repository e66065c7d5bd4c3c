//! A contact opting out of campaigns and back in (docs/safe-sending.md).
//!
//! Opting out when already opted out appends nothing (so a second "STOP" sends no second
//! confirmation); a phone that is no contact becomes one, created with the source that fits
//! (`inbox` for a keyword or the Cloud API, `import` for an import, `api` otherwise). Opting in
//! a phone that never opted out appends nothing either.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use uuid::Uuid;

use super::{Contact, ContactEvent, ContactKey, ContactSource};
use crate::opt_out::OptOutSource;
use crate::DomainError;

impl Contact {
    pub(super) async fn opt_out(
        &mut self,
        tenant_id: Uuid,
        key: ContactKey,
        source: OptOutSource,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        if self.tenant_id.is_some_and(|t| t != tenant_id) {
            return Err(DomainError::NotFound);
        }
        if key.phone().is_none() {
            return Err(DomainError::invalid(
                "phone",
                "only a phone number can opt out",
            ));
        }
        if !self.exists {
            let created_by = match source {
                OptOutSource::Keyword | OptOutSource::CloudApi => ContactSource::Inbox,
                OptOutSource::Import => ContactSource::Import,
                OptOutSource::Manual => ContactSource::Api,
            };
            let event = ContactEvent::ContactCreated {
                tenant_id,
                key: key.as_str().to_string(),
                name: None,
                tags: vec![],
                fields: Default::default(),
                source: created_by,
                at,
            };
            sink.write(event, self).await;
            // an opt-out that outlived a deleted contact keeps its time and source
            if let Some((source, at)) = self.opted_out {
                sink.write(ContactEvent::ContactOptedOut { source, at }, self)
                    .await;
            }
        }
        if self.opted_out.is_none() {
            sink.write(ContactEvent::ContactOptedOut { source, at }, self)
                .await;
        }
        Ok(())
    }

    pub(super) async fn opt_in(
        &mut self,
        tenant_id: Uuid,
        source: OptOutSource,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        if self.tenant_id.is_some_and(|t| t != tenant_id) {
            return Err(DomainError::NotFound);
        }
        if self.opted_out.is_some() {
            sink.write(ContactEvent::ContactOptedIn { source, at }, self)
                .await;
        } else if !self.exists {
            return Err(DomainError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ContactCommand, Fields, TagMode, Upsert};
    use super::*;
    use crate::phone::Phone;
    use cqrs_es::test::TestFramework;

    type ContactTest = TestFramework<Contact>;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).expect("a valid timestamp")
    }

    fn owner() -> Uuid {
        Uuid::from_u128(1)
    }

    fn key() -> ContactKey {
        ContactKey::Phone(Phone::from_normalized("6281234567890").expect("digits"))
    }

    fn created(source: ContactSource, t: i64) -> ContactEvent {
        ContactEvent::ContactCreated {
            tenant_id: owner(),
            key: "6281234567890".into(),
            name: None,
            tags: vec![],
            fields: Fields::new(),
            source,
            at: at(t),
        }
    }

    fn opt_out(source: OptOutSource, t: i64) -> ContactCommand {
        ContactCommand::OptOut {
            tenant_id: owner(),
            key: key(),
            source,
            at: at(t),
        }
    }

    fn opted_out(source: OptOutSource, t: i64) -> ContactEvent {
        ContactEvent::ContactOptedOut { source, at: at(t) }
    }

    #[test]
    fn a_stranger_who_writes_stop_becomes_an_opted_out_contact() {
        ContactTest::with(())
            .given_no_previous_events()
            .when(opt_out(OptOutSource::Keyword, 0))
            .then_expect_events(vec![
                created(ContactSource::Inbox, 0),
                opted_out(OptOutSource::Keyword, 0),
            ]);
    }

    #[test]
    fn a_second_stop_appends_nothing() {
        ContactTest::with(())
            .given(vec![
                created(ContactSource::Api, 0),
                opted_out(OptOutSource::Manual, 1),
            ])
            .when(opt_out(OptOutSource::Keyword, 2))
            .then_expect_events(vec![]);
    }

    #[test]
    fn start_opts_back_in_once_and_a_stranger_cannot_opt_in() {
        let opt_in = |t| ContactCommand::OptIn {
            tenant_id: owner(),
            source: OptOutSource::Keyword,
            at: at(t),
        };
        ContactTest::with(())
            .given(vec![
                created(ContactSource::Inbox, 0),
                opted_out(OptOutSource::Keyword, 0),
            ])
            .when(opt_in(5))
            .then_expect_events(vec![ContactEvent::ContactOptedIn {
                source: OptOutSource::Keyword,
                at: at(5),
            }]);
        ContactTest::with(())
            .given(vec![created(ContactSource::Api, 0)])
            .when(opt_in(5))
            .then_expect_events(vec![]);
        ContactTest::with(())
            .given_no_previous_events()
            .when(opt_in(5))
            .then_expect_error(DomainError::NotFound);
    }

    #[test]
    fn an_opt_out_outlives_a_deleted_contact() {
        ContactTest::with(())
            .given(vec![
                created(ContactSource::Api, 0),
                opted_out(OptOutSource::Manual, 1),
                ContactEvent::ContactDeleted { at: at(2) },
            ])
            .when(ContactCommand::Upsert(Upsert {
                tenant_id: owner(),
                key: key(),
                name: None,
                tags: None,
                tag_mode: TagMode::Replace,
                fields: None,
                source: ContactSource::Api,
                at: at(3),
            }))
            .then_expect_events(vec![
                created(ContactSource::Api, 3),
                opted_out(OptOutSource::Manual, 1),
            ]);
        // and a deleted contact's opt-out comes back with a new stop, not a second one
        ContactTest::with(())
            .given(vec![
                created(ContactSource::Api, 0),
                opted_out(OptOutSource::Manual, 1),
                ContactEvent::ContactDeleted { at: at(2) },
            ])
            .when(opt_out(OptOutSource::Keyword, 3))
            .then_expect_events(vec![
                created(ContactSource::Inbox, 3),
                opted_out(OptOutSource::Manual, 1),
            ]);
    }

    #[test]
    fn another_tenants_contact_is_not_found() {
        ContactTest::with(())
            .given(vec![created(ContactSource::Api, 0)])
            .when(ContactCommand::OptOut {
                tenant_id: Uuid::from_u128(2),
                key: key(),
                source: OptOutSource::Manual,
                at: at(1),
            })
            .then_expect_error(DomainError::NotFound);
    }
}
