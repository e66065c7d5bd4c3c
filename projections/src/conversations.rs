//! Chats and their messages: the `chats` and `chat_messages` tables, from `Conversation` events,
//! plus Herald's own sends (docs/decisions/0027).
//!
//! - A message row per recorded message (the aggregate already dropped duplicates; the insert
//!   ignores a replayed one too). Its chat's `last_*` columns follow the newest message by
//!   WhatsApp's timestamp, so a late, older message never replaces the preview, and
//!   `last_activity` only moves forward.
//! - `unread_count` rises by one per `MessageReceived` and drops to 0 on `ConversationRead`.
//! - The chat's name is the peer's profile name from incoming direct messages; an empty or
//!   missing name never replaces a known one, and group chats keep none (group subjects are not
//!   in message events).
//! - Herald's sends: a single send is a `MessageSent { by_herald }` of its chat (`queued`). A
//!   campaign's `DeliverySent` adds an outgoing line only to a chat that already exists (one join
//!   per batch: no chat is ever created for a recipient). A chat created later (the recipient
//!   replies) gets the campaign sends of the last [`BACKFILL_DAYS`] days to its peer from its
//!   number, at most [`BACKFILL_MAX`], before the reply. A campaign line's text is the template
//!   rendered again with the delivery's vars (read from the event store for those few lines
//!   only). Delivery statuses move Herald's lines forward (sent, delivered, read, failed).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use herald_domain::campaign::{Campaign, CampaignEvent, MessageSpec};
use herald_domain::conversation::{
    ChatMessage, Conversation, ConversationEvent, Direction, MessageStatus, HERALD_SENDER,
};
use herald_domain::delivery::{message_id_for, Delivery, DeliveryEvent, Vars};
use herald_domain::phone::Phone;
use herald_domain::template::TemplateKind;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::runtime::{Projector, StoredEvent};
use crate::Page;

pub struct ConversationsProjector;

pub const NAME: &str = "conversations";

/// A new chat shows Herald's campaign sends to its peer from this far back ...
pub const BACKFILL_DAYS: i64 = 7;
/// ... at most this many (the newest).
pub const BACKFILL_MAX: usize = 20;
/// Campaigns of the number looked at for a new chat (the newest; each costs one primary-key
/// probe of the event store).
const BACKFILL_CAMPAIGNS: i64 = 100;

/// The event-store position of an event: `(tx_id, global_position)`.
type Position = (i64, i64);

#[async_trait::async_trait]
impl Projector for ConversationsProjector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn tables(&self) -> &'static [&'static str] {
        &["chats", "chat_messages", "chat_campaigns"]
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[Delivery::TYPE, Campaign::TYPE, Conversation::TYPE])
    }
    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        // Delivery events are applied in runs, one statement per run; a run ends before every
        // event that may create a chat or a campaign, so the store's order holds.
        let mut run: Vec<&StoredEvent> = Vec::new();
        for e in events {
            match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                (
                    Delivery::TYPE,
                    "DeliverySent" | "DeliveryDelivered" | "DeliveryRead" | "DeliveryFailed",
                ) => run.push(e),
                (Campaign::TYPE, "CampaignCreated") => {
                    apply_deliveries(conn, &run).await?;
                    run.clear();
                    apply_campaign(conn, e).await?;
                }
                (Conversation::TYPE, _) => {
                    apply_deliveries(conn, &run).await?;
                    run.clear();
                    apply_conversation(conn, e).await?;
                }
                _ => {}
            }
        }
        apply_deliveries(conn, &run).await
    }
}

async fn apply_conversation(conn: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
    let chat_id: Uuid = e.aggregate_id.parse()?;
    let (tenant_id, session_id, chat, is_group, message, direction, status) =
        match e.parse::<ConversationEvent>()? {
            ConversationEvent::MessageReceived {
                tenant_id,
                session_id,
                chat,
                is_group,
                message,
            } => (
                tenant_id,
                session_id,
                chat,
                is_group,
                message,
                Direction::Incoming,
                MessageStatus::Received,
            ),
            ConversationEvent::MessageSent {
                tenant_id,
                session_id,
                chat,
                is_group,
                message,
                by_herald,
            } => {
                let status = if by_herald {
                    MessageStatus::Queued
                } else {
                    MessageStatus::Sent
                };
                let direction = Direction::Outgoing;
                (
                    tenant_id, session_id, chat, is_group, message, direction, status,
                )
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
                return Ok(());
            }
            ConversationEvent::ConversationRead { .. } => {
                sqlx::query("UPDATE chats SET unread_count = 0 WHERE id = $1")
                    .bind(chat_id)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
        };
    let new = NewMessage {
        chat_id,
        tenant_id,
        session_id,
        jid: &chat,
        is_group,
        direction,
        message: &message,
        status,
        status_at: None,
    };
    let created = record(conn, new).await?;
    // a new direct chat with a phone number: what Herald sent that peer lately comes first
    let phone = chat
        .strip_suffix("@s.whatsapp.net")
        .and_then(|p| Phone::from_normalized(p).ok());
    if let (true, false, Some(phone)) = (created, is_group, phone) {
        let chat = NewChat {
            chat_id,
            tenant_id,
            session_id,
            jid: &chat,
        };
        backfill(
            conn,
            chat,
            &phone,
            (e.tx_id, e.global_position),
            e.recorded_at,
        )
        .await?;
    }
    Ok(())
}

async fn apply_campaign(conn: &mut PgConnection, e: &StoredEvent) -> anyhow::Result<()> {
    let CampaignEvent::CampaignCreated {
        tenant_id,
        name,
        session_id,
        message,
        scheduled_at,
        at,
        ..
    } = e.parse::<CampaignEvent>()?
    else {
        return Ok(());
    };
    let id: Uuid = e.aggregate_id.parse()?;
    sqlx::query(
        "INSERT INTO chat_campaigns (campaign_id, tenant_id, session_id, name, message, starts_at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(session_id)
    .bind(name)
    .bind(serde_json::to_string(&message)?)
    .bind(scheduled_at.unwrap_or(at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What a run of delivery events does to one recipient: its furthest status (forward only, in
/// the run's order) and whether it was sent in the run.
struct Change {
    status: Option<(MessageStatus, DateTime<Utc>)>,
    sent: bool,
}

/// A run of `DeliverySent` / receipts / failures, in ONE statement: the recipients that have a
/// chat (campaigns' by `chat_campaigns`, single sends' by `single_messages`) get their line's
/// status moved forward, and the campaign recipients sent in this run are returned. Only those
/// few (people with a chat) cost more: their lines are rendered and recorded one by one.
async fn apply_deliveries(conn: &mut PgConnection, run: &[&StoredEvent]) -> anyhow::Result<()> {
    let Some(last) = run.last() else {
        return Ok(());
    };
    let upto = (last.tx_id, last.global_position);
    let mut order: Vec<(Uuid, String)> = Vec::new();
    let mut changes: HashMap<(Uuid, String), Change> = HashMap::new();
    for e in run {
        let (source, phone) = split_delivery_id(&e.aggregate_id)?;
        let (status, at, sent) = match e.parse::<DeliveryEvent>()? {
            DeliveryEvent::DeliverySent { at, .. } => (MessageStatus::Sent, at, true),
            DeliveryEvent::DeliveryDelivered { at } => (MessageStatus::Delivered, at, false),
            DeliveryEvent::DeliveryRead { at } => (MessageStatus::Read, at, false),
            DeliveryEvent::DeliveryFailed { at, .. } => (MessageStatus::Failed, at, false),
            _ => continue,
        };
        let key = (source, phone);
        let change = changes.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Change {
                status: None,
                sent: false,
            }
        });
        change.sent |= sent;
        if change.status.is_none_or(|(s, _)| s.advances_to(status)) {
            change.status = Some((status, at));
        }
    }
    let n = order.len();
    let (mut sources, mut phones, mut ids, mut statuses, mut ats, mut sent) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for key in &order {
        let change = &changes[key];
        let Ok(phone) = Phone::from_normalized(&key.1) else {
            continue;
        };
        let Some((status, at)) = change.status else {
            continue;
        };
        sources.push(key.0);
        ids.push(message_id_for(key.0, &phone));
        phones.push(key.1.clone());
        statuses.push(status.as_str());
        ats.push(at);
        sent.push(change.sent);
    }
    let mut distinct = sources.clone();
    distinct.sort();
    distinct.dedup();
    let sent_to_chats = sqlx::query(
        "WITH u AS (
            SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                                 $6::bool[]) AS u(source, phone, message_id, status, at, sent)
         ), s AS (
            SELECT campaign_id AS id, tenant_id, session_id, true AS campaign
              FROM chat_campaigns WHERE campaign_id = ANY($7)
            UNION ALL
            SELECT id, tenant_id, session_id, false FROM single_messages WHERE id = ANY($7)
         ), hit AS (
            SELECT u.*, s.campaign, c.id AS chat_id
              FROM u JOIN s ON s.id = u.source
              JOIN chats c ON c.session_id = s.session_id AND c.tenant_id = s.tenant_id
                          AND c.jid = u.phone || '@s.whatsapp.net'
         ), moved AS (
            UPDATE chat_messages m SET status = h.status, status_at = h.at
              FROM hit h
             WHERE m.chat_id = h.chat_id AND m.message_id = h.message_id
               AND m.direction = 'outgoing'
               AND CASE WHEN h.status = 'failed' THEN m.status IN ('queued', 'sent')
                        ELSE (CASE h.status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 3
                                            WHEN 'read' THEN 4 ELSE 0 END)
                           > (CASE m.status WHEN 'queued' THEN 0 WHEN 'sent' THEN 1
                                            WHEN 'failed' THEN 2 WHEN 'delivered' THEN 3
                                            WHEN 'read' THEN 4 ELSE 9 END)
                   END
            RETURNING 1
         )
         SELECT source, phone, chat_id, c.tenant_id, c.session_id, c.jid
           FROM hit JOIN chats c ON c.id = hit.chat_id
          WHERE hit.sent AND hit.campaign",
    )
    .bind(&sources)
    .bind(&phones)
    .bind(&ids)
    .bind(&statuses)
    .bind(&ats)
    .bind(&sent)
    .bind(&distinct)
    .fetch_all(&mut *conn)
    .await?;
    // the recipients sent in this run who have a chat: their lines read in one go
    let mut wanted = Vec::with_capacity(sent_to_chats.len());
    let mut chats = Vec::with_capacity(sent_to_chats.len());
    for r in sent_to_chats {
        let phone: String = r.try_get("phone")?;
        let Ok(phone) = Phone::from_normalized(&phone) else {
            continue;
        };
        wanted.push((r.try_get::<Uuid, _>("source")?, phone));
        chats.push((
            r.try_get::<Uuid, _>("chat_id")?,
            r.try_get::<Uuid, _>("tenant_id")?,
            r.try_get::<Uuid, _>("session_id")?,
            r.try_get::<String, _>("jid")?,
        ));
    }
    for (i, line) in campaign_lines(conn, &wanted, upto).await? {
        let (chat_id, tenant_id, session_id, jid) = &chats[i];
        let chat = NewChat {
            chat_id: *chat_id,
            tenant_id: *tenant_id,
            session_id: *session_id,
            jid,
        };
        record_line(conn, &chat, &line).await?;
    }
    Ok(())
}

/// Splits a delivery id `<campaign or message id>:<phone>`.
fn split_delivery_id(id: &str) -> anyhow::Result<(Uuid, String)> {
    let (source, phone) = id
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("bad delivery id {id}"))?;
    Ok((source.parse()?, phone.to_string()))
}

/// The chat a line goes into.
struct NewChat<'a> {
    chat_id: Uuid,
    tenant_id: Uuid,
    session_id: Uuid,
    jid: &'a str,
}

/// One campaign send as its chat line shows it.
struct SendLine {
    message: ChatMessage,
    status: MessageStatus,
    status_at: Option<DateTime<Utc>>,
}

async fn record_line(
    conn: &mut PgConnection,
    chat: &NewChat<'_>,
    line: &SendLine,
) -> anyhow::Result<()> {
    let new = NewMessage {
        chat_id: chat.chat_id,
        tenant_id: chat.tenant_id,
        session_id: chat.session_id,
        jid: chat.jid,
        is_group: false,
        direction: Direction::Outgoing,
        message: &line.message,
        status: line.status,
        status_at: line.status_at,
    };
    record(conn, new).await?;
    Ok(())
}

/// A chat was just created: Herald's campaign sends to its peer from its number, sent in the
/// [`BACKFILL_DAYS`] before `now` and stored before `upto`, the newest [`BACKFILL_MAX`], become
/// its first outgoing lines. Bounded: at most [`BACKFILL_CAMPAIGNS`] primary-key probes.
async fn backfill(
    conn: &mut PgConnection,
    chat: NewChat<'_>,
    phone: &Phone,
    upto: Position,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let since = now - Duration::days(BACKFILL_DAYS);
    // a campaign that started a while before the window may still have been sending in it
    let campaigns: Vec<Uuid> = sqlx::query_scalar(
        "SELECT campaign_id FROM chat_campaigns
          WHERE session_id = $1 AND tenant_id = $2 AND starts_at <= $3 AND starts_at >= $4
          ORDER BY starts_at DESC LIMIT $5",
    )
    .bind(chat.session_id)
    .bind(chat.tenant_id)
    .bind(now)
    .bind(since - Duration::days(30))
    .bind(BACKFILL_CAMPAIGNS)
    .fetch_all(&mut *conn)
    .await?;
    if campaigns.is_empty() {
        return Ok(());
    }
    let wanted: Vec<(Uuid, Phone)> = campaigns.into_iter().map(|c| (c, phone.clone())).collect();
    let mut lines: Vec<SendLine> = campaign_lines(conn, &wanted, upto)
        .await?
        .into_iter()
        .map(|(_, line)| line)
        .filter(|l| l.message.at >= since && l.message.at <= now)
        .collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.message.at));
    lines.truncate(BACKFILL_MAX);
    for line in &lines {
        record_line(conn, &chat, line).await?;
    }
    Ok(())
}

/// The chat lines of campaign sends `(campaign, phone)`, as of the store position `upto`: only
/// deliveries sent by then, with their status by then. Reads each delivery's few events by
/// primary key, and renders the campaign's message with the delivery's vars. Each line comes with
/// the index in `wanted` of the send it shows (sends not made by then have none).
async fn campaign_lines(
    conn: &mut PgConnection,
    wanted: &[(Uuid, Phone)],
    upto: Position,
) -> anyhow::Result<Vec<(usize, SendLine)>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = wanted.iter().map(|(c, p)| format!("{c}:{p}")).collect();
    let rows = sqlx::query(
        "SELECT aggregate_id, payload::text AS payload FROM events
          WHERE aggregate_type = $1 AND aggregate_id = ANY($2)
            AND (tx_id, global_position) <= ($3::text::xid8, $4)
          ORDER BY aggregate_id, sequence",
    )
    .bind(Delivery::TYPE)
    .bind(&ids)
    .bind(upto.0)
    .bind(upto.1)
    .fetch_all(&mut *conn)
    .await?;
    // fold each delivery: its vars, its send and its furthest status
    #[derive(Default)]
    struct Folded {
        vars: Vars,
        sent: Option<(String, DateTime<Utc>)>,
        status: Option<(MessageStatus, DateTime<Utc>)>,
    }
    let mut folded: HashMap<String, Folded> = HashMap::new();
    for r in rows {
        let id: String = r.try_get("aggregate_id")?;
        let payload: String = r.try_get("payload")?;
        let f = folded.entry(id).or_default();
        let (status, at) = match serde_json::from_str::<DeliveryEvent>(&payload)? {
            DeliveryEvent::DeliveryQueued { vars, .. } => {
                f.vars = vars;
                continue;
            }
            DeliveryEvent::DeliverySent { message_id, at } => {
                f.sent = Some((message_id, at));
                (MessageStatus::Sent, at)
            }
            DeliveryEvent::DeliveryDelivered { at } => (MessageStatus::Delivered, at),
            DeliveryEvent::DeliveryRead { at } => (MessageStatus::Read, at),
            DeliveryEvent::DeliveryFailed { at, .. } => (MessageStatus::Failed, at),
            DeliveryEvent::DeliveryDispatched { .. } | DeliveryEvent::DeliverySkipped { .. } => {
                continue
            }
        };
        if f.status.is_none_or(|(s, _)| s.advances_to(status)) {
            f.status = Some((status, at));
        }
    }
    let campaigns: Vec<Uuid> = wanted.iter().map(|(c, _)| *c).collect();
    let specs: HashMap<Uuid, (String, MessageSpec)> = sqlx::query(
        "SELECT campaign_id, name, message::text AS message FROM chat_campaigns
          WHERE campaign_id = ANY($1)",
    )
    .bind(&campaigns)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| -> anyhow::Result<_> {
        let message: String = r.try_get("message")?;
        Ok((
            r.try_get("campaign_id")?,
            (r.try_get("name")?, serde_json::from_str(&message)?),
        ))
    })
    .collect::<anyhow::Result<_>>()?;
    let mut lines = Vec::new();
    for (i, ((campaign, phone), id)) in wanted.iter().zip(&ids).enumerate() {
        let Some(f) = folded.get(id) else { continue };
        let (Some((message_id, at)), Some((name, spec))) = (&f.sent, specs.get(campaign)) else {
            continue;
        };
        let (kind, text) = render(spec, phone, &f.vars);
        let status = f.status.map(|(s, _)| s).unwrap_or(MessageStatus::Sent);
        let status_at = f.status.map(|(_, at)| at);
        lines.push((
            i,
            SendLine {
                message: ChatMessage {
                    message_id: message_id.clone(),
                    sender: HERALD_SENDER.to_string(),
                    sender_name: Some(name.clone()),
                    text,
                    kind: kind.to_string(),
                    at: *at,
                },
                status,
                status_at,
            },
        ));
    }
    Ok(lines)
}

/// A campaign's message for one recipient, as sent: the body (text) or the caption (image),
/// rendered again with the delivery's vars. A body that no longer renders (it did at send time,
/// so only after a change of the template language) shows no text.
fn render(spec: &MessageSpec, phone: &Phone, vars: &Vars) -> (&'static str, Option<String>) {
    let (kind, template) = match spec.kind {
        TemplateKind::Text => ("text", spec.body.as_ref()),
        TemplateKind::Image => ("image", spec.caption.as_ref()),
    };
    let text = template
        .and_then(|t| t.compile().ok())
        .and_then(|t| t.render(phone.as_str(), None, vars).ok())
        .filter(|t| !t.trim().is_empty());
    (kind, text)
}

struct NewMessage<'a> {
    chat_id: Uuid,
    tenant_id: Uuid,
    session_id: Uuid,
    jid: &'a str,
    is_group: bool,
    direction: Direction,
    message: &'a ChatMessage,
    status: MessageStatus,
    status_at: Option<DateTime<Utc>>,
}

/// Records a message and moves its chat; returns whether the chat was created by it.
async fn record(conn: &mut PgConnection, m: NewMessage<'_>) -> anyhow::Result<bool> {
    let incoming = m.direction == Direction::Incoming;
    let inserted = sqlx::query(
        "INSERT INTO chat_messages (chat_id, message_id, tenant_id, direction, sender, sender_name,
                                    text, type, sent_at, status, status_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
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
    .bind(m.status.as_str())
    .bind(m.status_at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    // the peer's name: only from what the peer sent in a direct chat
    let name = (incoming && !m.is_group)
        .then(|| m.message.sender_name.clone())
        .flatten();
    let created: bool = sqlx::query_scalar(
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
                             >= (chats.last_activity, chats.last_message_id) AS newer) AS n)
         RETURNING (xmax = 0) AS created",
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
    .fetch_one(&mut *conn)
    .await?;
    Ok(created)
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
    let at = crate::cursor_instant(micros)?;
    // a message id is text the gateway gave; PostgreSQL's text cannot hold NUL
    (!id.is_empty() && !id.contains('\0')).then(|| (at, id.to_string()))
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
        assert_eq!(parse_message_cursor("-8000000000000000000_ABC"), None);
        assert_eq!(parse_message_cursor("1_AB\0C"), None);
    }
}
