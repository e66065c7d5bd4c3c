//! `Delivery`: one recipient of one campaign, id `<campaign_id>:<phone>`. Two to seven small events.
//!
//! Status only moves forward: queued → sending → sent → delivered → read, or → failed / skipped.
//!
//! Receipts (`MarkDelivered`, `MarkRead`) come from the gateway's webhooks, at least once and in
//! any order, so their rules are what makes the final state independent of arrival order
//! (docs/decisions/0008-receipt-ordering.md):
//! - each of `delivered_at` and `read_at` is recorded once, by the first receipt of its kind;
//!   a duplicate records nothing;
//! - status is the furthest point reached: a late Delivered after Read records its time but the
//!   status stays `read`; Read without Delivered makes the status `read` and leaves
//!   `delivered_at` empty until (if ever) the Delivered receipt arrives;
//! - a receipt may beat the send's outcome (status `sending`): the later `DeliverySent` still
//!   records `sent_at` but never moves the status back;
//! - a receipt is the gateway's proof that the message arrived, so it also moves a `failed` or
//!   `skipped` recipient (the send call failed or timed out, yet WhatsApp delivered it) to
//!   `delivered` / `read`. The recorded error stays for the record.

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
    /// Not sent on purpose (the campaign was cancelled before this recipient's turn).
    Skip {
        reason: String,
        at: DateTime<Utc>,
    },
    /// The gateway's Delivered receipt: the message reached the recipient's phone at `at`.
    MarkDelivered {
        at: DateTime<Utc>,
    },
    /// The gateway's Read receipt: the recipient opened the message at `at`.
    MarkRead {
        at: DateTime<Utc>,
    },
    /// The provider reported, after accepting it, that the message could not be delivered (the
    /// Cloud API's `failed` status). Fails a `sending` or `sent` recipient; a delivered or read
    /// one stays as it is (a receipt is proof it arrived).
    MarkUndelivered {
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
    DeliverySkipped {
        reason: String,
        at: DateTime<Utc>,
    },
    DeliveryDelivered {
        at: DateTime<Utc>,
    },
    DeliveryRead {
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
            DeliveryEvent::DeliverySkipped { .. } => "DeliverySkipped",
            DeliveryEvent::DeliveryDelivered { .. } => "DeliveryDelivered",
            DeliveryEvent::DeliveryRead { .. } => "DeliveryRead",
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
    /// Whether `DeliverySent` was recorded (a receipt can come first; see the module doc).
    #[serde(default)]
    pub sent: bool,
    #[serde(default)]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub read_at: Option<DateTime<Utc>>,
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
                // Recorded once. A receipt may have come first (status delivered or read): the
                // send time is still worth recording, and applying it never moves the status
                // back. After failed or skipped it is a stale duplicate.
                let stale = matches!(
                    self.status,
                    DeliveryStatus::Failed | DeliveryStatus::Skipped
                );
                if !self.sent && !stale {
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
            DeliveryCommand::Skip { reason, at } => {
                self.require_queued()?;
                if !self.status.is_final() {
                    sink.write(DeliveryEvent::DeliverySkipped { reason, at }, self)
                        .await;
                }
            }
            DeliveryCommand::MarkDelivered { at } => {
                self.require_queued()?;
                if self.delivered_at.is_none() {
                    sink.write(DeliveryEvent::DeliveryDelivered { at }, self)
                        .await;
                }
            }
            DeliveryCommand::MarkRead { at } => {
                self.require_queued()?;
                if self.read_at.is_none() {
                    sink.write(DeliveryEvent::DeliveryRead { at }, self).await;
                }
            }
            DeliveryCommand::MarkUndelivered { reason, at } => {
                self.require_queued()?;
                if matches!(self.status, DeliveryStatus::Sending | DeliveryStatus::Sent) {
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
                if !self.status.is_final() {
                    self.status = DeliveryStatus::Sending;
                }
                self.message_id = Some(message_id);
                self.attempts = attempt;
            }
            DeliveryEvent::DeliverySent { message_id, .. } => {
                // never back from delivered or read when the receipt came first
                if !self.status.is_final() {
                    self.status = DeliveryStatus::Sent;
                }
                self.sent = true;
                self.message_id = Some(message_id);
            }
            DeliveryEvent::DeliveryFailed { .. } => self.status = DeliveryStatus::Failed,
            DeliveryEvent::DeliverySkipped { .. } => self.status = DeliveryStatus::Skipped,
            DeliveryEvent::DeliveryDelivered { at } => {
                self.delivered_at.get_or_insert(at);
                if self.status != DeliveryStatus::Read {
                    self.status = DeliveryStatus::Delivered;
                }
            }
            DeliveryEvent::DeliveryRead { at } => {
                self.read_at.get_or_insert(at);
                self.status = DeliveryStatus::Read;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type DeliveryTest = TestFramework<Delivery>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).expect("a valid timestamp")
    }

    fn phone() -> Phone {
        Phone::parse("6281234567890", "ID").expect("a valid Indonesian number")
    }

    fn other_phone() -> Phone {
        Phone::parse("6281298765432", "ID").expect("a valid Indonesian number")
    }

    fn campaign() -> Uuid {
        Uuid::from_u128(7)
    }

    fn message_id() -> String {
        message_id_for(campaign(), &phone())
    }

    fn vars() -> Vars {
        let mut vars = Vars::new();
        vars.insert("name".to_string(), serde_json::Value::from("Ayu"));
        vars
    }

    fn queue() -> DeliveryCommand {
        DeliveryCommand::Queue {
            tenant_id: Uuid::from_u128(1),
            campaign_id: campaign(),
            phone: phone(),
            vars: vars(),
            at: at(),
        }
    }

    fn queued() -> DeliveryEvent {
        DeliveryEvent::DeliveryQueued {
            tenant_id: Uuid::from_u128(1),
            campaign_id: campaign(),
            phone: phone(),
            vars: vars(),
            at: at(),
        }
    }

    fn dispatch(attempt: u32) -> DeliveryCommand {
        DeliveryCommand::Dispatch {
            message_id: message_id(),
            attempt,
            in_doubt: false,
            at: at(),
        }
    }

    fn dispatched(attempt: u32) -> DeliveryEvent {
        DeliveryEvent::DeliveryDispatched {
            message_id: message_id(),
            attempt,
            in_doubt: false,
            at: at(),
        }
    }

    fn record_sent() -> DeliveryCommand {
        DeliveryCommand::RecordSent {
            message_id: message_id(),
            at: at(),
        }
    }

    fn sent() -> DeliveryEvent {
        DeliveryEvent::DeliverySent {
            message_id: message_id(),
            at: at(),
        }
    }

    fn record_failed() -> DeliveryCommand {
        DeliveryCommand::RecordFailed {
            reason: "number is not on WhatsApp".to_string(),
            at: at(),
        }
    }

    #[test]
    fn queueing_records_the_recipient() {
        DeliveryTest::with(())
            .given_no_previous_events()
            .when(queue())
            .then_expect_events(vec![queued()]);
    }

    #[test]
    fn queueing_twice_is_already_exists() {
        DeliveryTest::with(())
            .given(vec![queued()])
            .when(queue())
            .then_expect_error(DomainError::AlreadyExists);
    }

    #[test]
    fn dispatching_a_queued_recipient_makes_it_sending() {
        DeliveryTest::with(())
            .given(vec![queued()])
            .when(dispatch(1))
            .then_expect_events(vec![dispatched(1)]);
        let mut delivery = Delivery::default();
        delivery.apply(queued());
        delivery.apply(dispatched(1));
        assert_eq!(delivery.status, DeliveryStatus::Sending);
        assert_eq!(delivery.message_id, Some(message_id()));
        assert_eq!(delivery.attempts, 1);
    }

    #[test]
    fn a_sending_recipient_can_be_dispatched_again() {
        // a retry, or an in-doubt resend after a lease expired: same message id, next attempt
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1)])
            .when(DeliveryCommand::Dispatch {
                message_id: message_id(),
                attempt: 2,
                in_doubt: true,
                at: at(),
            })
            .then_expect_events(vec![DeliveryEvent::DeliveryDispatched {
                message_id: message_id(),
                attempt: 2,
                in_doubt: true,
                at: at(),
            }]);
    }

    #[test]
    fn sent_after_dispatch_is_recorded() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1)])
            .when(record_sent())
            .then_expect_events(vec![sent()]);
    }

    #[test]
    fn sent_twice_is_recorded_once() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent()])
            .when(record_sent())
            .then_expect_events(vec![]);
    }

    #[test]
    fn failed_after_dispatch_is_recorded_with_the_attempts() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), dispatched(3)])
            .when(record_failed())
            .then_expect_events(vec![DeliveryEvent::DeliveryFailed {
                reason: "number is not on WhatsApp".to_string(),
                attempts: 3,
                at: at(),
            }]);
    }

    #[test]
    fn failed_after_sent_records_nothing() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent()])
            .when(record_failed())
            .then_expect_events(vec![]);
    }

    #[test]
    fn sent_after_failed_records_nothing() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1)])
            .and(vec![DeliveryEvent::DeliveryFailed {
                reason: "boom".to_string(),
                attempts: 1,
                at: at(),
            }])
            .when(record_sent())
            .then_expect_events(vec![]);
    }

    #[test]
    fn dispatch_after_sent_is_a_conflict() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent()])
            .when(dispatch(2))
            .then_expect_error(DomainError::Conflict(
                "recipient is already sent".to_string(),
            ));
    }

    #[test]
    fn dispatch_after_failed_is_a_conflict() {
        DeliveryTest::with(())
            .given(vec![
                queued(),
                DeliveryEvent::DeliveryFailed {
                    reason: "boom".to_string(),
                    attempts: 0,
                    at: at(),
                },
            ])
            .when(dispatch(1))
            .then_expect_error(DomainError::Conflict(
                "recipient is already failed".to_string(),
            ));
    }

    #[test]
    fn commands_on_a_recipient_never_queued_are_not_found() {
        for command in [dispatch(1), record_sent(), record_failed()] {
            DeliveryTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(DomainError::NotFound);
        }
    }

    #[test]
    fn the_delivery_id_is_campaign_and_phone() {
        assert_eq!(
            delivery_id(campaign(), &phone()),
            "00000000-0000-0000-0000-000000000007:6281234567890"
        );
    }

    #[test]
    fn message_ids_are_deterministic_32_uppercase_hex_characters() {
        let id = message_id_for(campaign(), &phone());
        assert_eq!(id, message_id_for(campaign(), &phone()));
        assert_eq!(id.len(), 32);
        assert!(
            id.chars().all(|c| matches!(c, '0'..='9' | 'A'..='F')),
            "{id}"
        );
    }

    #[test]
    fn message_ids_differ_per_phone_and_per_campaign() {
        let id = message_id_for(campaign(), &phone());
        assert_ne!(id, message_id_for(campaign(), &other_phone()));
        assert_ne!(id, message_id_for(Uuid::from_u128(8), &phone()));
    }

    #[test]
    fn statuses_parse_what_they_print() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("unknown"), None);
        assert!(!DeliveryStatus::Queued.is_final());
        assert!(!DeliveryStatus::Sending.is_final());
        assert!(DeliveryStatus::Sent.is_final());
        assert!(DeliveryStatus::Failed.is_final());
    }

    #[test]
    fn empty_vars_and_a_false_in_doubt_are_left_out_of_the_payload() {
        let without_vars = DeliveryEvent::DeliveryQueued {
            tenant_id: Uuid::from_u128(1),
            campaign_id: campaign(),
            phone: phone(),
            vars: Vars::new(),
            at: at(),
        };
        let json = serde_json::to_value(&without_vars).expect("serializable");
        assert!(json["DeliveryQueued"].get("vars").is_none(), "{json}");
        assert_eq!(json["DeliveryQueued"]["phone"], "6281234567890");
        let json = serde_json::to_value(dispatched(1)).expect("serializable");
        assert!(
            json["DeliveryDispatched"].get("in_doubt").is_none(),
            "{json}"
        );
        for event in [
            without_vars,
            queued(),
            dispatched(1),
            sent(),
            DeliveryEvent::DeliveryDelivered { at: at() },
            DeliveryEvent::DeliveryRead { at: at() },
        ] {
            let text = serde_json::to_string(&event).expect("serializable");
            let back: DeliveryEvent = serde_json::from_str(&text).expect("deserializable");
            assert_eq!(back, event);
        }
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        at() + chrono::Duration::seconds(seconds)
    }

    fn delivered(seconds: i64) -> DeliveryEvent {
        DeliveryEvent::DeliveryDelivered { at: t(seconds) }
    }

    fn read(seconds: i64) -> DeliveryEvent {
        DeliveryEvent::DeliveryRead { at: t(seconds) }
    }

    fn mark_delivered(seconds: i64) -> DeliveryCommand {
        DeliveryCommand::MarkDelivered { at: t(seconds) }
    }

    fn mark_read(seconds: i64) -> DeliveryCommand {
        DeliveryCommand::MarkRead { at: t(seconds) }
    }

    fn state(events: &[DeliveryEvent]) -> Delivery {
        let mut delivery = Delivery::default();
        for event in events {
            delivery.apply(event.clone());
        }
        delivery
    }

    #[test]
    fn a_delivered_receipt_after_sent_is_recorded() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent()])
            .when(mark_delivered(5))
            .then_expect_events(vec![delivered(5)]);
        let d = state(&[queued(), dispatched(1), sent(), delivered(5)]);
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!(d.delivered_at, Some(t(5)));
    }

    #[test]
    fn a_read_receipt_after_delivered_is_recorded() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent(), delivered(5)])
            .when(mark_read(9))
            .then_expect_events(vec![read(9)]);
        let d = state(&[queued(), dispatched(1), sent(), delivered(5), read(9)]);
        assert_eq!(d.status, DeliveryStatus::Read);
        assert_eq!((d.delivered_at, d.read_at), (Some(t(5)), Some(t(9))));
    }

    #[test]
    fn duplicate_receipts_record_nothing() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent(), delivered(5)])
            .when(mark_delivered(5))
            .then_expect_events(vec![]);
        // a duplicate with another time does not move the first one either
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent(), delivered(5)])
            .when(mark_delivered(7))
            .then_expect_events(vec![]);
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent(), delivered(5), read(9)])
            .when(mark_read(9))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_late_delivered_after_delivered_and_read_changes_nothing() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent(), delivered(5), read(9)])
            .when(mark_delivered(5))
            .then_expect_events(vec![]);
    }

    #[test]
    fn read_without_delivered_is_read_and_the_late_delivered_only_fills_its_time() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent()])
            .when(mark_read(9))
            .then_expect_events(vec![read(9)]);
        let d = state(&[queued(), dispatched(1), sent(), read(9)]);
        assert_eq!(d.status, DeliveryStatus::Read);
        assert_eq!((d.delivered_at, d.read_at), (None, Some(t(9))));
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent(), read(9)])
            .when(mark_delivered(5))
            .then_expect_events(vec![delivered(5)]);
        let d = state(&[queued(), dispatched(1), sent(), read(9), delivered(5)]);
        assert_eq!(d.status, DeliveryStatus::Read, "never back from read");
        assert_eq!((d.delivered_at, d.read_at), (Some(t(5)), Some(t(9))));
    }

    #[test]
    fn a_receipt_that_beats_the_outcome_keeps_its_status_when_sent_is_recorded() {
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1)])
            .when(mark_delivered(5))
            .then_expect_events(vec![delivered(5)]);
        // the outcome still records the send time, once
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), delivered(5), read(9)])
            .when(record_sent())
            .then_expect_events(vec![sent()]);
        let d = state(&[queued(), dispatched(1), delivered(5), read(9), sent()]);
        assert_eq!(d.status, DeliveryStatus::Read);
        assert!(d.sent);
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), delivered(5), sent()])
            .when(record_sent())
            .then_expect_events(vec![]);
        // a failed outcome after a receipt is wrong: the message arrived
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), delivered(5)])
            .when(record_failed())
            .then_expect_events(vec![]);
        // and a retry of a delivered recipient is refused, so it is never sent twice
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), delivered(5)])
            .when(dispatch(2))
            .then_expect_error(DomainError::Conflict(
                "recipient is already delivered".to_string(),
            ));
    }

    #[test]
    fn a_receipt_moves_a_failed_or_skipped_recipient_because_the_message_arrived() {
        let failed = DeliveryEvent::DeliveryFailed {
            reason: "gateway timed out (after 5 attempts)".to_string(),
            attempts: 5,
            at: at(),
        };
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(5), failed.clone()])
            .when(mark_delivered(5))
            .then_expect_events(vec![delivered(5)]);
        let d = state(&[queued(), dispatched(5), failed, delivered(5)]);
        assert_eq!(d.status, DeliveryStatus::Delivered);
        let skipped = DeliveryEvent::DeliverySkipped {
            reason: "campaign cancelled".to_string(),
            at: at(),
        };
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), skipped.clone()])
            .when(mark_read(9))
            .then_expect_events(vec![read(9)]);
        let d = state(&[queued(), dispatched(1), skipped, read(9)]);
        assert_eq!(d.status, DeliveryStatus::Read);
    }

    #[test]
    fn receipts_for_a_recipient_never_queued_are_not_found() {
        for command in [mark_delivered(1), mark_read(1)] {
            DeliveryTest::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(DomainError::NotFound);
        }
    }

    /// Every order of the outcome, both receipts and their duplicates ends in the same state.
    #[tokio::test]
    async fn any_order_of_receipts_and_outcome_ends_in_the_same_state() {
        let commands = [
            record_sent(),
            mark_delivered(5),
            mark_read(9),
            mark_delivered(5),
            mark_read(9),
        ];
        let mut orders: Vec<Vec<usize>> = vec![vec![]];
        for _ in 0..commands.len() {
            let mut longer = Vec::new();
            for order in &orders {
                for i in (0..commands.len()).filter(|i| !order.contains(i)) {
                    let mut next = order.clone();
                    next.push(i);
                    longer.push(next);
                }
            }
            orders = longer;
        }
        assert_eq!(orders.len(), 120);
        for order in orders {
            let mut delivery = state(&[queued(), dispatched(1)]);
            let mut events = 0;
            for i in &order {
                let sink = EventSink::<Delivery>::default();
                delivery
                    .handle(commands[*i].clone(), &(), &sink)
                    .await
                    .expect("receipts and outcomes are accepted");
                for event in sink.collect().await {
                    delivery.apply(event);
                    events += 1;
                }
            }
            assert_eq!(delivery.status, DeliveryStatus::Read, "{order:?}");
            assert!(delivery.sent, "{order:?}");
            assert_eq!(delivery.delivered_at, Some(t(5)), "{order:?}");
            assert_eq!(delivery.read_at, Some(t(9)), "{order:?}");
            assert_eq!(events, 3, "each fact recorded once: {order:?}");
        }
    }

    #[test]
    fn a_queued_or_retrying_recipient_can_be_skipped_but_a_sent_one_cannot() {
        let skip = || DeliveryCommand::Skip {
            reason: "campaign cancelled".into(),
            at: at(),
        };
        let skipped = DeliveryEvent::DeliverySkipped {
            reason: "campaign cancelled".into(),
            at: at(),
        };
        DeliveryTest::with(())
            .given(vec![queued()])
            .when(skip())
            .then_expect_events(vec![skipped.clone()]);
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1)])
            .when(skip())
            .then_expect_events(vec![skipped.clone()]);
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent()])
            .when(skip())
            .then_expect_events(vec![]);
        DeliveryTest::with(())
            .given(vec![queued(), skipped])
            .when(record_sent())
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_provider_failure_fails_a_sent_recipient_but_never_a_delivered_one() {
        let undelivered = || DeliveryCommand::MarkUndelivered {
            reason: "131026 Message undeliverable".into(),
            at: at(),
        };
        let failed = DeliveryEvent::DeliveryFailed {
            reason: "131026 Message undeliverable".into(),
            attempts: 1,
            at: at(),
        };
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent()])
            .when(undelivered())
            .then_expect_events(vec![failed.clone()]);
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1)])
            .when(undelivered())
            .then_expect_events(vec![failed.clone()]);
        DeliveryTest::with(())
            .given(vec![queued(), dispatched(1), sent(), failed])
            .when(undelivered())
            .then_expect_events(vec![]);
        DeliveryTest::with(())
            .given(vec![
                queued(),
                dispatched(1),
                sent(),
                DeliveryEvent::DeliveryDelivered { at: at() },
            ])
            .when(undelivered())
            .then_expect_events(vec![]);
    }
}
