//! The WhatsApp Cloud API's customer-service window, known from Herald's own chats: a free-form
//! message (text, image) may go to a phone only when that phone wrote to the number in the last
//! 24 hours; templates may always go. Outside it the recipient fails with
//! `outside_customer_service_window` and Meta is not called (docs/cloud-api.md).

use herald_domain::conversation::conversation_id;
use herald_gateway::MessageContent;
use sqlx::PgPool;
use uuid::Uuid;

/// The reason a recipient outside the window fails with (API: `error`).
pub(super) const OUTSIDE: &str = "outside_customer_service_window";

/// Whether `content` needs the window (free-form messages do; templates do not).
pub(super) fn needs_window(content: &MessageContent) -> bool {
    !matches!(content, MessageContent::Template { .. })
}

/// Whether `phone` wrote to the session's number in the last 24 hours (its chat has an incoming
/// message that recent).
pub(super) async fn is_open(pool: &PgPool, session_id: Uuid, phone: &str) -> sqlx::Result<bool> {
    let digits = phone.trim_start_matches('+');
    let chat = conversation_id(session_id, &format!("{digits}@s.whatsapp.net"));
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM chat_messages
                         WHERE chat_id = $1 AND direction = 'incoming'
                           AND sent_at > now() - interval '24 hours')",
    )
    .bind(chat)
    .fetch_one(pool)
    .await
}
