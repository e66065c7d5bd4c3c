//! Chats (conversations) of the tenant's linked numbers, built from webhooks and from Herald's own
//! sends (docs/decisions/0027): the chat list, a chat's messages, and marking a chat read.
//!
//! Paging: the chat list is newest activity first with `?cursor=` (a chat that gets a message
//! meanwhile moves to the front); messages are newest first with `?before=`, the `next_cursor`
//! of the previous page (`<unix micros>_<message id>`: the position of the page's oldest message).

use chrono::{DateTime, Utc};
use herald_domain::conversation::{Conversation, ConversationCommand};
use herald_projections::conversations::{self as read, ChatMessageRow, ChatRow};
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use super::{parse_id, parse_limit, parse_time_cursor, ListOf};
use crate::auth::caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The newest message of a chat (by WhatsApp's timestamp).
#[derive(Serialize, ToSchema)]
pub struct LastMessage {
    id: String,
    /// `incoming` or `outgoing`.
    direction: String,
    sender: String,
    text: Option<String>,
    /// `text`, `image`, `video`, `audio`, `document`, `sticker`, `location`, `contact`, ...
    #[serde(rename = "type")]
    kind: String,
    timestamp: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatView {
    id: Uuid,
    session_id: Uuid,
    /// The chat's WhatsApp id: `<phone>@s.whatsapp.net`, `<id>@lid` (a privacy id, not a phone)
    /// or `<id>@g.us` for a group.
    jid: String,
    /// The peer's profile name (direct chats), when WhatsApp gave one.
    name: Option<String>,
    is_group: bool,
    last_message: LastMessage,
    last_activity: DateTime<Utc>,
    /// Incoming messages since the chat was last marked read.
    unread_count: i32,
}

fn chat_view(row: ChatRow) -> ChatView {
    ChatView {
        id: row.id,
        session_id: row.session_id,
        jid: row.jid,
        name: row.name,
        is_group: row.is_group,
        last_message: LastMessage {
            id: row.last_message_id,
            direction: row.last_message_direction,
            sender: row.last_message_sender,
            text: row.last_message_text,
            kind: row.last_message_type,
            timestamp: row.last_activity,
        },
        last_activity: row.last_activity,
        unread_count: row.unread_count,
    }
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    /// WhatsApp's message id.
    id: String,
    /// `incoming` or `outgoing` (sent from the linked number's phone, or by Herald).
    direction: String,
    /// Who wrote it (in a group: the participant), a JID; may be an `@lid` privacy id. Herald's
    /// own sends: `herald`.
    sender: String,
    /// The sender's profile name; for a campaign's send, the campaign's name.
    sender_name: Option<String>,
    /// Text or media caption.
    text: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    /// When it was sent, by WhatsApp's clock.
    timestamp: DateTime<Utc>,
    /// `received` (incoming), or for outgoing messages `queued` (Herald's, not yet taken by the
    /// gateway), `sent`, `delivered`, `read`, `failed`.
    status: String,
    status_at: Option<DateTime<Utc>>,
}

fn message_view(row: ChatMessageRow) -> MessageView {
    MessageView {
        id: row.message_id,
        direction: row.direction,
        sender: row.sender,
        sender_name: row.sender_name,
        text: row.text,
        kind: row.kind,
        timestamp: row.sent_at,
        status: row.status,
        status_at: row.status_at,
    }
}

/// This tenant's chats, newest activity first; `session_id` narrows to one linked number.
#[endpoint(tags("chats"), status_codes(200, 400, 401), security(["bearer" = []], ["api_key" = []]))]
pub async fn list(
    session_id: QueryParam<String, false>,
    limit: QueryParam<String, false>,
    cursor: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<ChatView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let session_id = match session_id.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<Uuid>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                "session_id must be a session's id (a UUID)",
            )
        })?),
    };
    let limit = parse_limit(limit.as_deref())?;
    let cursor = parse_time_cursor(cursor.as_deref())?;
    let page = read::list(&state.pool, caller.tenant_id, session_id, limit, cursor).await?;
    Ok(Json(ListOf {
        items: page.items.into_iter().map(chat_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One chat.
#[endpoint(tags("chats"), status_codes(200, 401, 404), security(["bearer" = []], ["api_key" = []]))]
pub async fn get(id: PathParam<String>, depot: &mut Depot) -> Result<Json<ChatView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let row = read::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(chat_view(row)))
}

/// A chat's messages, newest first. `before` is the `next_cursor` of the previous page.
#[endpoint(tags("chats"), status_codes(200, 400, 401, 404), security(["bearer" = []], ["api_key" = []]))]
pub async fn messages(
    id: PathParam<String>,
    before: QueryParam<String, false>,
    limit: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<MessageView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let limit = parse_limit(limit.as_deref())?;
    let before = match before.as_deref() {
        None | Some("") => None,
        Some(c) => Some(read::parse_message_cursor(c).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_cursor",
                "before is not a cursor Herald gave out (next_cursor of a page)",
            )
        })?),
    };
    read::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let page = read::messages(&state.pool, caller.tenant_id, id, limit, before).await?;
    Ok(Json(ListOf {
        items: page.items.into_iter().map(message_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Marks everything received in the chat as read: `unread_count` becomes 0.
#[endpoint(tags("chats"), status_codes(200, 401, 404, 409), security(["bearer" = []], ["api_key" = []]))]
pub async fn mark_read(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<ChatView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let conversations = herald_domain::store::cqrs::<Conversation>(state.pool.clone(), ());
    conversations
        .execute(
            &id.to_string(),
            ConversationCommand::MarkRead {
                tenant_id: caller.tenant_id,
                at: Utc::now(),
            },
        )
        .await?;
    state
        .wait_projected(
            read::NAME,
            <Conversation as cqrs_es::Aggregate>::TYPE,
            &id.to_string(),
        )
        .await?;
    let row = read::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(chat_view(row)))
}
