//! `Conversation`: one chat of one linked number (session + chat JID), docs/decisions/0051.
//!
//! Its id is [`conversation_id`], a UUID derived from the session and the chat, so the inbox
//! processor, the projector and the API all name the same chat without a lookup, and a rebuild
//! gives every chat the same id again.
//!
//! Rules:
//! - a message is recorded once per message id: a duplicate webhook records nothing;
//! - incoming messages count as unread until the chat is marked read; outgoing ones (sent from
//!   the owner's phone, `IsFromMe`, or by Herald: a single send) never do;
//! - a message's status only moves forward (sent < delivered < read; failed only before
//!   delivered), and a status for a message the chat does not hold records nothing;
//! - marking a chat read with nothing unread records nothing.
//!
//! Events carry `tenant_id` and `session_id` where a notifier needs them (`MessageReceived`
//! becomes `message.received` without any lookup).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::DomainError;

/// The `sender` of Herald's own sends in chats (single sends and campaign sends): the linked
/// number's own JID is not known to Herald.
pub const HERALD_SENDER: &str = "herald";

/// The id of the chat `chat` (a normalised JID) of session `session_id`: the first 16 bytes of
/// SHA-256 over both, as a version-8 (custom) UUID.
pub fn conversation_id(session_id: Uuid, chat: &str) -> Uuid {
    let digest = Sha256::digest(format!("herald-conversation:{session_id}:{chat}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// Where a message stands. Incoming messages are `received`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Received,
    /// Herald's own send, accepted and not yet taken by the gateway.
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl MessageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageStatus::Received => "received",
            MessageStatus::Queued => "queued",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
        }
    }

    /// Whether `next` moves a message at `self` forward.
    pub fn advances_to(self, next: MessageStatus) -> bool {
        match (self, next) {
            (MessageStatus::Received, _) => false,
            (_, MessageStatus::Received) => false,
            (MessageStatus::Failed, MessageStatus::Delivered | MessageStatus::Read) => true,
            (MessageStatus::Failed, _) => false,
            (MessageStatus::Queued | MessageStatus::Sent, MessageStatus::Failed) => true,
            (_, MessageStatus::Failed) => false,
            (current, next) => next > current,
        }
    }
}

/// One message of a chat, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub message_id: String,
    /// Who wrote it (a JID: the participant in a group; may be an `@lid` privacy id).
    pub sender: String,
    /// The sender's profile name, when WhatsApp gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `text`, `image`, `video`, `audio`, `document`, `sticker`, `location`, `contact`, ...
    pub kind: String,
    /// When it was sent, as WhatsApp says (else when Herald received it).
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum ConversationCommand {
    /// A message seen in a webhook (either direction).
    RecordMessage {
        tenant_id: Uuid,
        session_id: Uuid,
        chat: String,
        is_group: bool,
        direction: Direction,
        message: ChatMessage,
    },
    /// Herald sends a message to the chat's peer (`POST /api/v1/messages`): an outgoing line,
    /// `queued` until the delivery's own statuses move it (docs/decisions/0027).
    RecordHeraldSend {
        tenant_id: Uuid,
        session_id: Uuid,
        chat: String,
        message: ChatMessage,
    },
    /// A receipt or provider status for one of the chat's messages.
    RecordStatus {
        message_id: String,
        status: MessageStatus,
        at: DateTime<Utc>,
    },
    /// An agent read the chat (`POST /chats/{id}/read`).
    MarkRead { tenant_id: Uuid, at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConversationEvent {
    /// Someone wrote to the linked number (becomes `message.received`).
    MessageReceived {
        tenant_id: Uuid,
        session_id: Uuid,
        chat: String,
        is_group: bool,
        message: ChatMessage,
    },
    /// The linked number wrote (from the owner's phone or another device of it), or Herald sent
    /// a single message through it (`by_herald`).
    MessageSent {
        tenant_id: Uuid,
        session_id: Uuid,
        chat: String,
        is_group: bool,
        message: ChatMessage,
        /// Sent by Herald (a single send): its status follows the `Delivery` whose message id
        /// it carries, starting at `queued`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_herald: bool,
    },
    MessageStatusChanged {
        message_id: String,
        status: MessageStatus,
        at: DateTime<Utc>,
    },
    /// Everything received so far is read.
    ConversationRead { at: DateTime<Utc> },
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        match self {
            ConversationEvent::MessageReceived { .. } => "MessageReceived",
            ConversationEvent::MessageSent { .. } => "MessageSent",
            ConversationEvent::MessageStatusChanged { .. } => "MessageStatusChanged",
            ConversationEvent::ConversationRead { .. } => "ConversationRead",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// What the aggregate keeps: enough to dedupe messages, order statuses and count unread.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Conversation {
    pub tenant_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    /// Status of every message id recorded.
    pub messages: HashMap<String, MessageStatus>,
    /// Incoming messages since the last read marker.
    pub unread: u32,
}

impl Aggregate for Conversation {
    const TYPE: &'static str = "Conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ConversationCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            ConversationCommand::RecordMessage {
                tenant_id,
                session_id,
                chat,
                is_group,
                direction,
                message,
            } => {
                if self.tenant_id.is_some_and(|t| t != tenant_id) {
                    return Err(DomainError::NotFound);
                }
                if self.messages.contains_key(&message.message_id) {
                    return Ok(());
                }
                let event = match direction {
                    Direction::Incoming => ConversationEvent::MessageReceived {
                        tenant_id,
                        session_id,
                        chat,
                        is_group,
                        message,
                    },
                    Direction::Outgoing => ConversationEvent::MessageSent {
                        tenant_id,
                        session_id,
                        chat,
                        is_group,
                        message,
                        by_herald: false,
                    },
                };
                sink.write(event, self).await;
            }
            ConversationCommand::RecordHeraldSend {
                tenant_id,
                session_id,
                chat,
                message,
            } => {
                if self.tenant_id.is_some_and(|t| t != tenant_id) {
                    return Err(DomainError::NotFound);
                }
                if self.messages.contains_key(&message.message_id) {
                    return Ok(());
                }
                let event = ConversationEvent::MessageSent {
                    tenant_id,
                    session_id,
                    chat,
                    is_group: false,
                    message,
                    by_herald: true,
                };
                sink.write(event, self).await;
            }
            ConversationCommand::RecordStatus {
                message_id,
                status,
                at,
            } => {
                let Some(current) = self.messages.get(&message_id) else {
                    return Ok(());
                };
                if current.advances_to(status) {
                    let event = ConversationEvent::MessageStatusChanged {
                        message_id,
                        status,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
            ConversationCommand::MarkRead { tenant_id, at } => {
                if self.tenant_id != Some(tenant_id) {
                    return Err(DomainError::NotFound);
                }
                if self.unread > 0 {
                    sink.write(ConversationEvent::ConversationRead { at }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ConversationEvent) {
        match event {
            ConversationEvent::MessageReceived {
                tenant_id,
                session_id,
                message,
                ..
            } => {
                self.tenant_id = Some(tenant_id);
                self.session_id = Some(session_id);
                self.messages
                    .insert(message.message_id, MessageStatus::Received);
                self.unread = self.unread.saturating_add(1);
            }
            ConversationEvent::MessageSent {
                tenant_id,
                session_id,
                message,
                by_herald,
                ..
            } => {
                self.tenant_id = Some(tenant_id);
                self.session_id = Some(session_id);
                let status = if by_herald {
                    MessageStatus::Queued
                } else {
                    MessageStatus::Sent
                };
                self.messages.insert(message.message_id, status);
            }
            ConversationEvent::MessageStatusChanged {
                message_id, status, ..
            } => {
                self.messages.insert(message_id, status);
            }
            ConversationEvent::ConversationRead { .. } => self.unread = 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type ConversationTest = TestFramework<Conversation>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).expect("a valid timestamp")
    }

    fn tenant() -> Uuid {
        Uuid::from_u128(1)
    }

    fn session() -> Uuid {
        Uuid::from_u128(2)
    }

    fn message(id: &str) -> ChatMessage {
        ChatMessage {
            message_id: id.to_string(),
            sender: "6281@s.whatsapp.net".into(),
            sender_name: Some("Ayu".into()),
            text: Some("halo".into()),
            kind: "text".into(),
            at: at(),
        }
    }

    fn record(id: &str, direction: Direction) -> ConversationCommand {
        ConversationCommand::RecordMessage {
            tenant_id: tenant(),
            session_id: session(),
            chat: "6281@s.whatsapp.net".into(),
            is_group: false,
            direction,
            message: message(id),
        }
    }

    fn received(id: &str) -> ConversationEvent {
        ConversationEvent::MessageReceived {
            tenant_id: tenant(),
            session_id: session(),
            chat: "6281@s.whatsapp.net".into(),
            is_group: false,
            message: message(id),
        }
    }

    fn sent(id: &str) -> ConversationEvent {
        ConversationEvent::MessageSent {
            tenant_id: tenant(),
            session_id: session(),
            chat: "6281@s.whatsapp.net".into(),
            is_group: false,
            message: message(id),
            by_herald: false,
        }
    }

    fn status(id: &str, status: MessageStatus) -> ConversationCommand {
        ConversationCommand::RecordStatus {
            message_id: id.into(),
            status,
            at: at(),
        }
    }

    #[test]
    fn ids_are_stable_per_session_and_chat() {
        let a = conversation_id(session(), "6281@s.whatsapp.net");
        assert_eq!(a, conversation_id(session(), "6281@s.whatsapp.net"));
        assert_ne!(a, conversation_id(session(), "6282@s.whatsapp.net"));
        assert_ne!(
            a,
            conversation_id(Uuid::from_u128(3), "6281@s.whatsapp.net")
        );
    }

    #[test]
    fn a_message_is_recorded_once_by_direction() {
        ConversationTest::with(())
            .given_no_previous_events()
            .when(record("A", Direction::Incoming))
            .then_expect_events(vec![received("A")]);
        ConversationTest::with(())
            .given(vec![received("A")])
            .when(record("A", Direction::Incoming))
            .then_expect_events(vec![]);
        ConversationTest::with(())
            .given(vec![received("A")])
            .when(record("B", Direction::Outgoing))
            .then_expect_events(vec![sent("B")]);
    }

    #[test]
    fn statuses_move_forward_only_and_only_for_known_messages() {
        ConversationTest::with(())
            .given(vec![sent("B")])
            .when(status("B", MessageStatus::Read))
            .then_expect_events(vec![ConversationEvent::MessageStatusChanged {
                message_id: "B".into(),
                status: MessageStatus::Read,
                at: at(),
            }]);
        let read = ConversationEvent::MessageStatusChanged {
            message_id: "B".into(),
            status: MessageStatus::Read,
            at: at(),
        };
        ConversationTest::with(())
            .given(vec![sent("B"), read])
            .when(status("B", MessageStatus::Delivered))
            .then_expect_events(vec![]);
        ConversationTest::with(())
            .given(vec![sent("B")])
            .when(status("X", MessageStatus::Read))
            .then_expect_events(vec![]);
        // receipts never apply to incoming messages
        ConversationTest::with(())
            .given(vec![received("A")])
            .when(status("A", MessageStatus::Read))
            .then_expect_events(vec![]);
    }

    #[test]
    fn herald_sends_are_outgoing_queued_lines_recorded_once() {
        let send = ConversationCommand::RecordHeraldSend {
            tenant_id: tenant(),
            session_id: session(),
            chat: "6281@s.whatsapp.net".into(),
            message: message("H1"),
        };
        let event = ConversationEvent::MessageSent {
            tenant_id: tenant(),
            session_id: session(),
            chat: "6281@s.whatsapp.net".into(),
            is_group: false,
            message: message("H1"),
            by_herald: true,
        };
        ConversationTest::with(())
            .given_no_previous_events()
            .when(send.clone())
            .then_expect_events(vec![event.clone()]);
        ConversationTest::with(())
            .given(vec![event.clone()])
            .when(send)
            .then_expect_events(vec![]);
        // nothing unread: marking it read records nothing
        ConversationTest::with(())
            .given(vec![event])
            .when(ConversationCommand::MarkRead {
                tenant_id: tenant(),
                at: at(),
            })
            .then_expect_events(vec![]);
        // events written before the flag existed read as the phone's own messages
        let old: ConversationEvent = serde_json::from_value(serde_json::json!({"MessageSent": {
            "tenant_id": tenant(), "session_id": session(), "chat": "6281@s.whatsapp.net",
            "is_group": false, "message": message("P1")}}))
        .expect("an older MessageSent parses");
        assert_eq!(old, sent("P1"));
    }

    #[test]
    fn status_order() {
        use MessageStatus::*;
        assert!(Queued.advances_to(Sent) && Queued.advances_to(Failed));
        assert!(!Sent.advances_to(Queued) && !Read.advances_to(Queued));
        assert!(Sent.advances_to(Delivered) && Delivered.advances_to(Read));
        assert!(!Read.advances_to(Delivered) && !Delivered.advances_to(Failed));
        assert!(Sent.advances_to(Failed) && Failed.advances_to(Read));
        assert!(!Sent.advances_to(Sent));
    }

    #[test]
    fn read_marker_only_when_something_is_unread_and_for_the_owner() {
        ConversationTest::with(())
            .given(vec![received("A")])
            .when(ConversationCommand::MarkRead {
                tenant_id: tenant(),
                at: at(),
            })
            .then_expect_events(vec![ConversationEvent::ConversationRead { at: at() }]);
        ConversationTest::with(())
            .given(vec![
                received("A"),
                ConversationEvent::ConversationRead { at: at() },
            ])
            .when(ConversationCommand::MarkRead {
                tenant_id: tenant(),
                at: at(),
            })
            .then_expect_events(vec![]);
        ConversationTest::with(())
            .given(vec![sent("B")])
            .when(ConversationCommand::MarkRead {
                tenant_id: tenant(),
                at: at(),
            })
            .then_expect_events(vec![]);
        ConversationTest::with(())
            .given(vec![received("A")])
            .when(ConversationCommand::MarkRead {
                tenant_id: Uuid::from_u128(9),
                at: at(),
            })
            .then_expect_error(DomainError::NotFound);
        ConversationTest::with(())
            .given_no_previous_events()
            .when(ConversationCommand::MarkRead {
                tenant_id: tenant(),
                at: at(),
            })
            .then_expect_error(DomainError::NotFound);
    }
}
