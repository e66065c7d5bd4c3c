//! Single sends (`POST /api/v1/messages`, docs/decisions/0011): one recipient through the same
//! dispatch path as a campaign's.
//!
//! A single send is a `Delivery` whose id is `<message id>:<phone>`: the message's own UUID stands
//! where a campaign's would (UUIDs never collide, and no campaign has that id), so queueing,
//! leases, pacing, retries, statuses and receipts (`message_index`) are the campaign path's. The
//! queue row carries the message itself (`content`), and `single_messages` says whose it is.
//! Its quota is taken when it is accepted, so the dispatcher does not count it again.
//!
//! A person sent it, so it also goes into the chat with its recipient (created if needed) as an
//! outgoing line, `queued` until the delivery's statuses move it (docs/decisions/0027).

use chrono::{DateTime, Utc};
use herald_domain::conversation::{
    conversation_id, ChatMessage, Conversation, ConversationCommand, HERALD_SENDER,
};
use herald_domain::delivery::{delivery_id, message_id_for, Delivery, DeliveryCommand, Vars};
use herald_domain::phone::Phone;
use herald_domain::store;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use herald_scheduler::pacing::Pacing;
use herald_scheduler::quota::{self, Window};
use herald_scheduler::single_content::SingleContent;

use crate::Error;

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub session_id: Uuid,
    pub phone: Phone,
    pub content: SingleContent,
    /// `Some(limit)` for a plan with a message quota.
    pub quota_limit: Option<i64>,
    pub window: Window,
    pub at: DateTime<Utc>,
}

pub enum Accepted {
    Queued {
        message_id: String,
    },
    /// Over quota: nothing was written; the window resets at this time.
    OverQuota {
        resets_at: DateTime<Utc>,
    },
}

/// Takes one message of quota and queues the message, in the caller's transaction.
pub async fn accept(conn: &mut PgConnection, m: NewMessage) -> Result<Accepted, Error> {
    let (window_start, window_end) = m.window.around(m.at);
    let message_id = message_id_for(m.id, &m.phone);
    // The chat line first: the chat's stream is read, so its append must be this transaction's
    // first write (StoreError::OutOfOrder); the delivery is new and reads nothing.
    let chat = format!("{}@s.whatsapp.net", m.phone);
    let line = ConversationCommand::RecordHeraldSend {
        tenant_id: m.tenant_id,
        session_id: m.session_id,
        chat: chat.clone(),
        message: ChatMessage {
            message_id: message_id.clone(),
            sender: HERALD_SENDER.to_string(),
            sender_name: None,
            text: m.content.chat_text(),
            kind: m.content.kind().to_string(),
            at: m.at,
        },
    };
    let conversation = conversation_id(m.session_id, &chat).to_string();
    for outcome in
        store::execute_batch::<Conversation>(conn, vec![(conversation, line)], &()).await?
    {
        outcome?;
    }
    store::append_new::<Delivery>(
        conn,
        vec![(
            delivery_id(m.id, &m.phone),
            DeliveryCommand::Queue {
                tenant_id: m.tenant_id,
                campaign_id: m.id,
                phone: m.phone.clone(),
                vars: Vars::new(),
                at: m.at,
            },
        )],
        &(),
    )
    .await?
    .map_err(|(_, e)| e)?;
    match m.quota_limit {
        Some(limit) => {
            if quota::grant(conn, m.tenant_id, window_start, 1, limit).await? < 1 {
                return Ok(Accepted::OverQuota {
                    resets_at: window_end,
                });
            }
        }
        None => {
            sqlx::query(
                "INSERT INTO quota_usage AS u (tenant_id, window_start, messages) VALUES ($1, $2, 1)
                 ON CONFLICT (tenant_id, window_start) DO UPDATE SET messages = u.messages + 1",
            )
            .bind(m.tenant_id)
            .bind(window_start)
            .execute(&mut *conn)
            .await?;
        }
    }
    let pacing = herald_scheduler::pacing::of_session(conn, m.session_id)
        .await?
        .unwrap_or(Pacing::NONE);
    sqlx::query(
        "INSERT INTO dispatch_queue (campaign_id, phone, tenant_id, session_id, message_id, content,
                                     not_before, pace_min_ms, pace_max_ms, pace_from_session)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, true)",
    )
    .bind(m.id)
    .bind(m.phone.as_str())
    .bind(m.tenant_id)
    .bind(m.session_id)
    .bind(&message_id)
    .bind(serde_json::to_string(&m.content)?)
    .bind(m.at)
    .bind(pacing.min_interval_ms)
    .bind(pacing.max_interval_ms)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO single_messages (id, tenant_id, session_id, phone, kind, message_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(m.id)
    .bind(m.tenant_id)
    .bind(m.session_id)
    .bind(m.phone.as_str())
    .bind(m.content.kind())
    .bind(&message_id)
    .bind(m.at)
    .execute(&mut *conn)
    .await?;
    Ok(Accepted::Queued { message_id })
}

/// [`accept`] in a transaction of its own, tried again (at most six times, after a short random
/// pause so that racing senders spread out) when a message of the same chat was recorded at the
/// same moment. Answers the open transaction, for the caller to add to and commit; once the
/// attempts are used up the store's conflict is the answer.
pub async fn accept_retrying(
    pool: &PgPool,
    m: NewMessage,
) -> Result<(Transaction<'static, Postgres>, Accepted), Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = pool.begin().await?;
        let message = NewMessage {
            at: Utc::now(),
            ..m.clone()
        };
        match accept(&mut tx, message).await {
            Ok(accepted) => return Ok((tx, accepted)),
            Err(Error::Store(e)) if e.is_retryable() && attempt < 6 => {
                tracing::debug!(attempt, error = %e, "single send raced a chat writer; again");
                drop(tx);
                let jitter = u64::from(Uuid::new_v4().as_bytes()[0]) % 20;
                tokio::time::sleep(std::time::Duration::from_millis(
                    5 * attempt as u64 + jitter,
                ))
                .await;
            }
            Err(e) => return Err(e),
        }
    }
}
