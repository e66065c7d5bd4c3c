//! Applying a batch: session events, chat messages first (so a status in the same batch finds
//! its message), then every receipt matched to its delivery in `message_index` (one query) and
//! applied through the `Delivery` batch executor, statuses of chat messages Herald did not send,
//! and receipts for unknown ids kept as unmatched once their grace is over.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_domain::conversation::{Conversation, ConversationCommand};
use herald_domain::delivery::{Delivery, DeliveryCommand};
use herald_domain::store::{self, Known, KnownAggregates};
use sqlx::Row;
use uuid::Uuid;

use crate::conversations::{self, StatusUpdate};
use crate::parse::{Action, Claimed};
use crate::record::{unmatched_backoff, Disposition};
use crate::{session_events, InboxConfig};

/// Applies every message and status of the batch and says what became of each row.
pub(crate) async fn apply(
    tx: &mut sqlx::PgConnection,
    config: &InboxConfig,
    claimed: &[Claimed],
    known: &KnownAggregates<Delivery>,
) -> anyhow::Result<(HashMap<i64, Disposition>, HashMap<String, (Delivery, i64)>)> {
    let mut dispositions = HashMap::with_capacity(claimed.len());
    session_events::apply(&mut *tx, claimed, &mut dispositions).await?;
    // 0. chat messages first, so a status in the same batch finds its message
    let mut chat_commands = conversations::message_commands(&mut *tx, claimed).await?;
    // 1. every (message id, session) with a status, matched in one query per index
    let mut updates = Vec::with_capacity(claimed.len());
    let mut keys_id: Vec<&str> = Vec::new();
    let mut keys_session: Vec<Uuid> = Vec::new();
    for c in claimed {
        if let Action::Done(note) = &c.action {
            dispositions.insert(c.id, Disposition::Processed(note.clone()));
        }
        updates.push(conversations::status_updates(&c.action));
    }
    for (c, row_updates) in claimed.iter().zip(&updates) {
        for (id, _, _) in row_updates {
            keys_id.push(id);
            keys_session.push(c.session_id);
        }
    }
    let matched: HashMap<(String, Uuid), String> = if keys_id.is_empty() {
        HashMap::new()
    } else {
        sqlx::query(
            "SELECT m.message_id, m.session_id, m.delivery_id
               FROM message_index m JOIN UNNEST($1::text[], $2::uuid[]) AS k(id, s)
                 ON m.message_id = k.id AND m.session_id = k.s",
        )
        .bind(&keys_id)
        .bind(&keys_session)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| -> anyhow::Result<_> {
            Ok((
                (r.try_get("message_id")?, r.try_get("session_id")?),
                r.try_get("delivery_id")?,
            ))
        })
        .collect::<anyhow::Result<_>>()?
    };
    // ids Herald did not send: messages of a chat (sent from the phone), kept on the conversation
    let (mut chat_ids, mut chat_sessions) = (Vec::new(), Vec::new());
    for (id, session) in keys_id.iter().zip(&keys_session) {
        if !matched.contains_key(&(id.to_string(), *session)) {
            chat_ids.push(*id);
            chat_sessions.push(*session);
        }
    }
    let in_chats = conversations::find_chat_messages(&mut *tx, &chat_ids, &chat_sessions).await?;

    // 2. the commands, and what is left unmatched
    let now = Utc::now();
    let mut commands = Vec::new();
    let mut unmatched_rows: Vec<(i64, Uuid, String, &'static str, DateTime<Utc>)> = Vec::new();
    for (c, row_updates) in claimed.iter().zip(updates) {
        if matches!(c.action, Action::Done(_) | Action::Session(_)) {
            continue;
        }
        let messages_note = conversations::messages_note(&c.action);
        if row_updates.is_empty() {
            let note = messages_note.unwrap_or_else(|| "nothing to apply".to_string());
            dispositions.insert(c.id, Disposition::Processed(note));
            continue;
        }
        let mut applied = 0usize;
        let mut missing = Vec::new();
        let mut kinds: Vec<&'static str> = Vec::new();
        for (id, update, timestamp) in row_updates {
            let at = timestamp.unwrap_or(c.received_at);
            if !kinds.contains(&update.as_str()) {
                kinds.push(update.as_str());
            }
            let key = (id.clone(), c.session_id);
            if let Some(delivery) = matched.get(&key) {
                let command = match update {
                    StatusUpdate::Delivered => DeliveryCommand::MarkDelivered { at },
                    StatusUpdate::Read => DeliveryCommand::MarkRead { at },
                    StatusUpdate::Sent => DeliveryCommand::RecordSent { message_id: id, at },
                    StatusUpdate::Failed(reason) => DeliveryCommand::MarkUndelivered { reason, at },
                };
                commands.push((delivery.clone(), command));
                applied += 1;
            } else if let Some(conversation) = in_chats.get(&key) {
                let command = ConversationCommand::RecordStatus {
                    message_id: id,
                    status: update.chat_status(),
                    at,
                };
                chat_commands.push((conversation.to_string(), command));
                applied += 1;
            } else {
                missing.push((id, update.as_str(), at));
            }
        }
        let state = kinds.join("/");
        let prefix = messages_note.map(|n| format!("{n}; ")).unwrap_or_default();
        let disposition = if missing.is_empty() {
            Disposition::Processed(format!("{prefix}{state} receipt for {applied} message(s)"))
        } else {
            let age = (now - c.received_at).to_std().unwrap_or_default();
            if age < config.unmatched_grace {
                // applied ones are applied again next time: receipts are idempotent
                let delay = unmatched_backoff(c.attempts + 1);
                Disposition::Wait(
                    format!(
                        "waiting for {} message id(s) Herald does not know yet",
                        missing.len()
                    ),
                    delay,
                )
            } else {
                let n = missing.len();
                for (id, kind, at) in missing {
                    unmatched_rows.push((c.id, c.session_id, id, kind, at));
                }
                Disposition::Processed(format!(
                    "{prefix}{state} receipt for {applied} message(s); {n} unknown id(s) kept as unmatched"
                ))
            }
        };
        dispositions.insert(c.id, disposition);
    }

    // 3. one batch through the Delivery aggregate; a delivery a recent batch left as it is needs
    // no load for a receipt (delivered and read times are only ever set once, by receipts)
    let mut deliveries = HashMap::new();
    if !commands.is_empty() {
        let n = commands.len();
        let known = Known {
            aggregates: known,
            trusted: |command: &DeliveryCommand| {
                matches!(
                    command,
                    DeliveryCommand::MarkDelivered { .. } | DeliveryCommand::MarkRead { .. }
                )
            },
        };
        let result =
            store::execute_batch_known::<Delivery>(&mut *tx, commands, &(), Some(known)).await?;
        deliveries = result.states;
        metrics::counter!("herald_webhook_deliveries_reused_total").increment(result.reused as u64);
        let mut events = 0usize;
        for outcome in result.outcomes {
            match outcome {
                Ok(new) => events += new.len(),
                Err(e) => tracing::warn!(error = %e, "receipt not applied"),
            }
        }
        metrics::counter!("herald_webhook_receipts_total").increment(n as u64);
        metrics::counter!("herald_webhook_receipt_events_total").increment(events as u64);
    }
    // 4. chats: messages, then statuses of their messages, in one batch. After the deliveries:
    // only the inbox writes conversations, so this second append rarely meets a younger writer
    // (`StoreError::OutOfOrder`, retried by the caller)
    if !chat_commands.is_empty() {
        let outcomes = store::execute_batch::<Conversation>(&mut *tx, chat_commands, &()).await?;
        for outcome in outcomes {
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "chat message not recorded");
            }
        }
    }

    if !unmatched_rows.is_empty() {
        metrics::counter!("herald_webhook_receipts_unmatched_total")
            .increment(unmatched_rows.len() as u64);
        let mut inbox = Vec::new();
        let mut sessions = Vec::new();
        let mut ids = Vec::new();
        let mut states = Vec::new();
        let mut ats = Vec::new();
        for (i, s, id, state, at) in unmatched_rows {
            inbox.push(i);
            sessions.push(s);
            ids.push(id);
            states.push(state);
            ats.push(at);
        }
        sqlx::query(
            "INSERT INTO unmatched_receipts (inbox_id, session_id, message_id, state, at)
             SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&inbox)
        .bind(&sessions)
        .bind(&ids)
        .bind(&states)
        .bind(&ats)
        .execute(&mut *tx)
        .await?;
    }
    Ok((dispositions, deliveries))
}
