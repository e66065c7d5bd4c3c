//! Chat messages and provider statuses in the inbox processor (docs/decisions/0012, docs/decisions/0027).
//!
//! - WuzAPI `Message` events and the Cloud API's `messages[]` become `Conversation` commands
//!   (one batch through the executor); the aggregate drops duplicates by message id.
//! - Each recorded message id goes into `chat_message_index` (session, message id →
//!   conversation) in the same transaction, so a receipt for a message Herald did not send (sent
//!   from the owner's phone) finds its chat on the write side, even in the same batch.
//! - The Cloud API's `statuses[]` are status updates like WuzAPI receipts, plus `sent` and
//!   `failed` (with its reason).

use chrono::{DateTime, Utc};
use herald_domain::conversation::{
    conversation_id, ChatMessage, ConversationCommand, Direction, MessageStatus,
};
use herald_gateway::meta::{self, StatusKind};
use herald_gateway::webhook::{self, InboundMessage, ReceiptState};
use sqlx::Row;
use std::collections::HashMap;
use uuid::Uuid;

use super::{Action, Claimed};

/// A status reported for one message id: a WuzAPI receipt or a Cloud API status.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StatusUpdate {
    Sent,
    Delivered,
    Read,
    Failed(String),
}

impl StatusUpdate {
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            StatusUpdate::Sent => "Sent",
            StatusUpdate::Delivered => "Delivered",
            StatusUpdate::Read => "Read",
            StatusUpdate::Failed(_) => "Failed",
        }
    }

    pub(super) fn chat_status(&self) -> MessageStatus {
        match self {
            StatusUpdate::Sent => MessageStatus::Sent,
            StatusUpdate::Delivered => MessageStatus::Delivered,
            StatusUpdate::Read => MessageStatus::Read,
            StatusUpdate::Failed(_) => MessageStatus::Failed,
        }
    }
}

impl From<ReceiptState> for StatusUpdate {
    fn from(state: ReceiptState) -> Self {
        match state {
            ReceiptState::Delivered => StatusUpdate::Delivered,
            ReceiptState::Read => StatusUpdate::Read,
        }
    }
}

/// Every status a row reports: `(message id, update, time if the event gave one)`.
pub(super) fn status_updates(
    action: &Action,
) -> Vec<(String, StatusUpdate, Option<DateTime<Utc>>)> {
    match action {
        Action::Receipt(r) => r
            .message_ids
            .iter()
            .map(|id| (id.clone(), StatusUpdate::from(r.state), r.timestamp))
            .collect(),
        Action::Meta(value) => value
            .statuses
            .iter()
            .map(|s| {
                let update = match &s.kind {
                    StatusKind::Sent => StatusUpdate::Sent,
                    StatusKind::Delivered => StatusUpdate::Delivered,
                    StatusKind::Read => StatusUpdate::Read,
                    StatusKind::Failed(reason) => StatusUpdate::Failed(reason.clone()),
                };
                (s.message_id.clone(), update, s.timestamp)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The chat messages a row carries.
fn inbound_messages(action: &Action) -> &[InboundMessage] {
    match action {
        Action::Message(m) => std::slice::from_ref(m),
        Action::Meta(value) => &value.messages,
        _ => &[],
    }
}

/// A stored WuzAPI `Message` event.
pub(super) fn classify_message(event: &str) -> Action {
    let value = match herald_gateway::webhook::parse_event(event.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Action::Done(format!("malformed Message: {e}")),
    };
    match webhook::parse_message(&value) {
        Ok(Some(message)) => Action::Message(message),
        Ok(None) => Action::Done("ignored: protocol message".into()),
        Err(e) => Action::Done(format!("malformed Message: {e}")),
    }
}

/// A stored Cloud API change (`event_type` `meta:<field>`).
pub(super) fn classify_meta(event_type: &str, event: &str) -> Action {
    if event_type != META_MESSAGES && event_type != META_USER_PREFERENCES {
        return Action::Done(format!("ignored: {event_type}"));
    }
    let value = match herald_gateway::webhook::parse_event(event.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Action::Done(format!("malformed {event_type}: {e}")),
    };
    if event_type == META_USER_PREFERENCES {
        // marketing stops and resumes: opt-outs (see `opt_outs`)
        let preferences = meta::preferences::parse_marketing_preferences(&value);
        if preferences.is_empty() {
            return Action::Done(format!(
                "ignored: {event_type} without a marketing stop or resume"
            ));
        }
        return Action::Meta(meta::MessagesValue {
            preferences,
            ..Default::default()
        });
    }
    match meta::parse_messages_value(&value) {
        Ok(value) if value.statuses.is_empty() && value.messages.is_empty() => Action::Done(
            format!("ignored: {event_type} without statuses or messages"),
        ),
        Ok(value) => Action::Meta(value),
        Err(e) => Action::Done(format!("malformed {event_type}: {e}")),
    }
}

/// The `event_type` of a Cloud API `messages` change in the inbox.
pub const META_MESSAGES: &str = "meta:messages";
/// The `event_type` of a Cloud API `user_preferences` change (marketing stops).
pub const META_USER_PREFERENCES: &str = "meta:user_preferences";

/// What a row's messages amount to, for its note (`None`: it has none).
pub(super) fn messages_note(action: &Action) -> Option<String> {
    let messages = inbound_messages(action);
    if messages.is_empty() {
        return None;
    }
    let outgoing = messages.iter().filter(|m| m.from_me).count();
    Some(match (messages.len(), outgoing) {
        (1, 1) => "outgoing message recorded".to_string(),
        (1, 0) => "incoming message recorded".to_string(),
        (n, o) => format!("{n} message(s) recorded ({o} outgoing)"),
    })
}

/// Indexes the batch's messages and returns their `Conversation` commands. Rows whose session
/// has no tenant (never for stored rows with messages) are skipped.
pub(super) async fn message_commands(
    tx: &mut sqlx::PgConnection,
    claimed: &[Claimed],
) -> anyhow::Result<Vec<(String, ConversationCommand)>> {
    let mut commands = Vec::new();
    let (mut sessions, mut ids, mut conversations) = (Vec::new(), Vec::new(), Vec::new());
    for c in claimed {
        let Some(tenant_id) = c.tenant_id else {
            continue;
        };
        for m in inbound_messages(&c.action) {
            let conversation = conversation_id(c.session_id, &m.chat);
            sessions.push(c.session_id);
            ids.push(m.id.clone());
            conversations.push(conversation);
            let direction = if m.from_me {
                Direction::Outgoing
            } else {
                Direction::Incoming
            };
            commands.push((
                conversation.to_string(),
                ConversationCommand::RecordMessage {
                    tenant_id,
                    session_id: c.session_id,
                    chat: m.chat.clone(),
                    is_group: m.is_group,
                    direction,
                    message: ChatMessage {
                        message_id: m.id.clone(),
                        sender: m.sender.clone(),
                        sender_name: m.push_name.clone(),
                        text: m.text.clone(),
                        kind: m.kind.clone(),
                        at: m.timestamp.unwrap_or(c.received_at),
                    },
                },
            ));
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO chat_message_index (session_id, message_id, conversation_id)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[]) ON CONFLICT DO NOTHING",
        )
        .bind(&sessions)
        .bind(&ids)
        .bind(&conversations)
        .execute(&mut *tx)
        .await?;
    }
    Ok(commands)
}

/// The conversations holding `(message id, session)` pairs, one query.
pub(super) async fn find_chat_messages(
    tx: &mut sqlx::PgConnection,
    ids: &[&str],
    sessions: &[Uuid],
) -> anyhow::Result<HashMap<(String, Uuid), Uuid>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    sqlx::query(
        "SELECT i.message_id, i.session_id, i.conversation_id
           FROM chat_message_index i JOIN UNNEST($1::text[], $2::uuid[]) AS k(id, s)
             ON i.message_id = k.id AND i.session_id = k.s",
    )
    .bind(ids)
    .bind(sessions)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| -> anyhow::Result<_> {
        Ok((
            (r.try_get("message_id")?, r.try_get("session_id")?),
            r.try_get("conversation_id")?,
        ))
    })
    .collect()
}
