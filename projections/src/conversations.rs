//! Chats and their messages: the `chats` and `chat_messages` tables, from `Conversation` events.
//!
//! - A message row per recorded message (the aggregate already dropped duplicates; the insert
//!   ignores a replayed one too). Its chat's `last_*` columns follow the newest message by
//!   WhatsApp's timestamp, so a late, older message never replaces the preview, and
//!   `last_activity` only moves forward.
//! - `unread_count` rises by one per `MessageReceived` and drops to 0 on `ConversationRead`.
//! - The chat's name is the peer's profile name from incoming direct messages; an empty or
//!   missing name never replaces a known one, and group chats keep none (group subjects are not
//!   in message events).

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use herald_domain::conversation::{ChatMessage, Conversation, ConversationEvent, Direction};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::runtime::{Projector, StoredEvent};
use crate::Page;

pub struct ConversationsProjector;

pub const NAME: &str = "conversations";

#[async_trait::async_trait]
impl Projector for ConversationsProjector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn tables(&self) -> &'static [&'static str] {
        &["chats", "chat_messages"]
    }
    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for e in events
            .iter()
            .filter(|e| e.aggregate_type == Conversation::TYPE)
        {
            let chat_id: Uuid = e.aggregate_id.parse()?;
            match e.parse::<ConversationEvent>()? {
                ConversationEvent::MessageReceived {
                    tenant_id,
                    session_id,
                    chat,
                    is_group,
                    message,
                } => {
                    let new = NewMessage {
                        chat_id,
                        tenant_id,
                        session_id,
                        jid: &chat,
                        is_group,
                        direction: Direction::Incoming,
                        message: &message,
                    };
                    record(conn, new).await?;
                }
                ConversationEvent::MessageSent {
                    tenant_id,
                    session_id,
                    chat,
                    is_group,
                    message,
                } => {
                    let new = NewMessage {
                        chat_id,
                        tenant_id,
                        session_id,
                        jid: &chat,
                        is_group,
                        direction: Direction::Outgoing,
                        message: &message,
                    };
                    record(conn, new).await?;
                }
                ConversationEvent::MessageStatusChanged {
                    message_id,
                    status,
                    at,
                } => {
                    sqlx::query(
                        "UPDATE chat_messages SET status = $3, status_at = $4
                          WHERE chat_id = $1 AND message_id = $2",
                    )
                    .bind(chat_id)
                    .bind(message_id)
                    .bind(status.as_str())
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                }
                ConversationEvent::ConversationRead { .. } => {
                    sqlx::query("UPDATE chats SET unread_count = 0 WHERE id = $1")
                        .bind(chat_id)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

struct NewMessage<'a> {
    chat_id: Uuid,
    tenant_id: Uuid,
    session_id: Uuid,
    jid: &'a str,
    is_group: bool,
    direction: Direction,
    message: &'a ChatMessage,
}

async fn record(conn: &mut PgConnection, m: NewMessage<'_>) -> anyhow::Result<()> {
    let incoming = m.direction == Direction::Incoming;
    let status = if incoming { "received" } else { "sent" };
    let inserted = sqlx::query(
        "INSERT INTO chat_messages (chat_id, message_id, tenant_id, direction, sender, sender_name,
                                    text, type, sent_at, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
    )
    .bind(m.chat_id)
    .bind(&m.message.message_id)
    .bind(m.tenant_id)
    .bind(m.direction.as_str())
    .bind(&m.message.sender)
    .bind(&m.message.sender_name)
    .bind(&m.message.text)
    .bind(&m.message.kind)
    .bind(m.message.at)
    .bind(status)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(());
    }
    // the peer's name: only from what the peer sent in a direct chat
    let name = (incoming && !m.is_group)
        .then(|| m.message.sender_name.clone())
        .flatten();
    sqlx::query(
        "INSERT INTO chats (id, tenant_id, session_id, jid, name, is_group, last_message_id,
                            last_message_direction, last_message_sender, last_message_text,
                            last_message_type, last_activity, unread_count, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $12)
         ON CONFLICT (id) DO UPDATE SET
           name = COALESCE(EXCLUDED.name, chats.name),
           unread_count = chats.unread_count + EXCLUDED.unread_count,
           last_activity = GREATEST(chats.last_activity, EXCLUDED.last_activity),
           (last_message_id, last_message_direction, last_message_sender, last_message_text,
            last_message_type) =
             (SELECT CASE WHEN newer THEN EXCLUDED.last_message_id ELSE chats.last_message_id END,
                     CASE WHEN newer THEN EXCLUDED.last_message_direction ELSE chats.last_message_direction END,
                     CASE WHEN newer THEN EXCLUDED.last_message_sender ELSE chats.last_message_sender END,
                     CASE WHEN newer THEN EXCLUDED.last_message_text ELSE chats.last_message_text END,
                     CASE WHEN newer THEN EXCLUDED.last_message_type ELSE chats.last_message_type END
                FROM (SELECT (EXCLUDED.last_activity, EXCLUDED.last_message_id)
                             >= (chats.last_activity, chats.last_message_id) AS newer) AS n)",
    )
    .bind(m.chat_id)
    .bind(m.tenant_id)
    .bind(m.session_id)
    .bind(m.jid)
    .bind(name)
    .bind(m.is_group)
    .bind(&m.message.message_id)
    .bind(m.direction.as_str())
    .bind(&m.message.sender)
    .bind(&m.message.text)
    .bind(&m.message.kind)
    .bind(m.message.at)
    .bind(i32::from(incoming))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChatRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub session_id: Uuid,
    pub jid: String,
    pub name: Option<String>,
    pub is_group: bool,
    pub last_message_id: String,
    pub last_message_direction: String,
    pub last_message_sender: String,
    pub last_message_text: Option<String>,
    pub last_message_type: String,
    pub last_activity: DateTime<Utc>,
    pub unread_count: i32,
    pub created_at: DateTime<Utc>,
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> sqlx::Result<Option<ChatRow>> {
    sqlx::query_as("SELECT * FROM chats WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A tenant's chats (optionally one session's), newest activity first. The cursor is the last
/// row's `(last_activity, id)`; a chat that gets a new message meanwhile moves to the front.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    session_id: Option<Uuid>,
    limit: i64,
    cursor: Option<(DateTime<Utc>, Uuid)>,
) -> sqlx::Result<Page<ChatRow>> {
    let (at, id) = cursor.unzip();
    let rows: Vec<ChatRow> = sqlx::query_as(
        "SELECT * FROM chats WHERE tenant_id = $1
            AND ($2::uuid IS NULL OR session_id = $2)
            AND ($3::timestamptz IS NULL OR (last_activity, id) < ($3, $4))
          ORDER BY last_activity DESC, id DESC LIMIT $5",
    )
    .bind(tenant_id)
    .bind(session_id)
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| {
        crate::time_cursor(r.last_activity, r.id)
    }))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChatMessageRow {
    pub message_id: String,
    pub direction: String,
    pub sender: String,
    pub sender_name: Option<String>,
    pub text: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub sent_at: DateTime<Utc>,
    pub status: String,
    pub status_at: Option<DateTime<Utc>>,
}

/// Cursor of a message page: `<unix micros of sent_at>_<message id>`.
pub fn message_cursor(at: DateTime<Utc>, message_id: &str) -> String {
    format!("{}_{message_id}", at.timestamp_micros())
}

/// Parses [`message_cursor`]; `None` for anything else.
pub fn parse_message_cursor(cursor: &str) -> Option<(DateTime<Utc>, String)> {
    let (micros, id) = cursor.split_once('_')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    (!id.is_empty()).then(|| (at, id.to_string()))
}

/// A chat's messages, newest first, strictly before `before` (a [`message_cursor`]). The caller
/// has checked the chat belongs to the tenant; the tenant filter stays anyway.
pub async fn messages(
    pool: &PgPool,
    tenant_id: Uuid,
    chat_id: Uuid,
    limit: i64,
    before: Option<(DateTime<Utc>, String)>,
) -> sqlx::Result<Page<ChatMessageRow>> {
    let (at, id) = before.unzip();
    let rows: Vec<ChatMessageRow> = sqlx::query_as(
        "SELECT message_id, direction, sender, sender_name, text, type, sent_at, status, status_at
           FROM chat_messages WHERE chat_id = $1 AND tenant_id = $2
            AND ($3::timestamptz IS NULL OR (sent_at, message_id) < ($3, $4))
          ORDER BY sent_at DESC, message_id DESC LIMIT $5",
    )
    .bind(chat_id)
    .bind(tenant_id)
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| {
        message_cursor(r.sent_at, &r.message_id)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_cursors_round_trip_with_any_id() {
        let at = DateTime::from_timestamp_micros(1_755_158_184_123_456).expect("valid");
        for id in ["3F22EDC72EE0C9FE9720", "wamid.HBgN_NTUx=", "a_b_c"] {
            assert_eq!(
                parse_message_cursor(&message_cursor(at, id)),
                Some((at, id.to_string()))
            );
        }
        assert_eq!(parse_message_cursor("nonsense"), None);
        assert_eq!(parse_message_cursor("12_"), None);
        assert_eq!(parse_message_cursor("x_1"), None);
    }
}
