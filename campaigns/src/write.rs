//! Writing a campaign: the batch path of docs/decisions/0052, shared by the API (a campaign a user
//! creates) and the ticker (each run of a recurring campaign).
//!
//! `CampaignCreated` (and `CampaignStarted` when it starts now), every recipient's
//! `DeliveryQueued` and every `dispatch_queue` row go in with multi-row inserts inside the
//! caller's transaction, so a 100,000-recipient campaign is accepted in about a second and is
//! either wholly there or not at all.

use chrono::{DateTime, Utc};
use herald_domain::campaign::{Campaign, CampaignCommand, MessageSpec};
use herald_domain::delivery::{delivery_id, message_id_for, Delivery, DeliveryCommand, Vars};
use herald_domain::phone::Phone;
use herald_domain::schedule::Recurrence;
use herald_domain::store::{self, StoreError};
use herald_domain::template::{Template, TemplateStatus};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

/// Rows per queue insert.
const CHUNK: usize = 5_000;

use crate::Error;

/// One recipient of an audience, as stored for recurring runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recipient {
    pub phone: Phone,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: Vars,
}

pub struct NewCampaign {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub template_id: Uuid,
    pub session_id: Uuid,
    pub message: MessageSpec,
    pub recipients: Vec<Recipient>,
    /// `None`: send now.
    pub scheduled_at: Option<DateTime<Utc>>,
    pub parent_id: Option<Uuid>,
    /// With a recurrence, `scheduled_at` is the first occurrence and nothing is queued now.
    pub recurrence: Option<Recurrence>,
    /// Overrides the session's pacing; `None`: the session's (a recurring run: its parent's).
    pub pacing: Option<herald_scheduler::pacing::Pacing>,
    pub at: DateTime<Utc>,
}

/// What a campaign sends, from the template as it is now. The template must be the tenant's and
/// active; the error says why not, for the field `template_id`.
pub async fn message_from_template(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    template_id: Uuid,
) -> Result<Result<MessageSpec, String>, StoreError> {
    let loaded = store::load_many::<Template>(conn, &[template_id.to_string()]).await?;
    let Some((template, _)) = loaded.into_values().next() else {
        return Ok(Err("no such template".into()));
    };
    if !template.visible_to(tenant_id) {
        return Ok(Err("no such template".into()));
    }
    if template.status != TemplateStatus::Active {
        return Ok(Err(format!(
            "the template is {}; only active templates can start a campaign",
            template.status.as_str()
        )));
    }
    let Some(kind) = template.kind else {
        return Ok(Err("the template has no type".into()));
    };
    if let Some(image) = &template.image {
        // a read only (nothing written before the campaign's append); `write` touches the row
        if !herald_media::is_stored(&mut *conn, &image.sha256).await? {
            return Ok(Err(IMAGE_GONE.into()));
        }
    }
    Ok(Ok(MessageSpec {
        kind,
        body: template.body,
        caption: template.caption,
        image_url: template.image_url,
        image: template.image,
    }))
}

/// Why a campaign cannot use its template's image.
const IMAGE_GONE: &str = "the template's image is no longer stored; give the template its image again (PATCH image_url or image_base64)";

/// Writes the campaign in the caller's transaction.
pub async fn write(conn: &mut PgConnection, c: NewCampaign) -> Result<(), Error> {
    let total = c.recipients.len() as u64;
    let image = c.message.image.as_ref().map(|i| i.sha256.clone());
    store::append_new::<Campaign>(
        conn,
        vec![(
            c.id.to_string(),
            CampaignCommand::Create {
                tenant_id: c.tenant_id,
                name: c.name.clone(),
                template_id: c.template_id,
                session_id: c.session_id,
                message: c.message,
                total_recipients: total,
                scheduled_at: c.scheduled_at,
                parent_id: c.parent_id,
                recurrence: c.recurrence.clone(),
                at: c.at,
            },
        )],
        &(),
    )
    .await?
    .map_err(|(_, e)| e)?;
    // the image is in use from now on (decision 0024); the row stays locked until commit, so the
    // media collector cannot delete it under this campaign
    if let Some(sha256) = &image {
        if !herald_media::touch(&mut *conn, sha256).await? {
            return Err(herald_domain::DomainError::invalid("template_id", IMAGE_GONE).into());
        }
    }

    // pacing: the campaign's own, else (a run) its parent's, else its session's
    let own = match (c.pacing, c.parent_id) {
        (Some(p), _) => Some(p),
        (None, Some(parent)) => herald_scheduler::pacing::of_campaign(conn, parent).await?,
        (None, None) => None,
    };
    if let Some(p) = own {
        sqlx::query(
            "INSERT INTO campaign_pacing (campaign_id, min_interval_ms, max_interval_ms)
             VALUES ($1, $2, $3)",
        )
        .bind(c.id)
        .bind(p.min_interval_ms)
        .bind(p.max_interval_ms)
        .execute(&mut *conn)
        .await?;
        // the claim paces through the session's row: make sure there is one (an unpaced one)
        sqlx::query(
            "INSERT INTO session_pacing (session_id, tenant_id, min_interval_ms, max_interval_ms)
             VALUES ($1, $2, 0, 0) ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(c.session_id)
        .bind(c.tenant_id)
        .execute(&mut *conn)
        .await?;
    }
    let pacing = match own {
        Some(p) => p,
        None => herald_scheduler::pacing::of_session(conn, c.session_id)
            .await?
            .unwrap_or(herald_scheduler::pacing::Pacing::NONE),
    };

    if let Some(recurrence) = c.recurrence {
        let next_at = c.scheduled_at.unwrap_or(c.at);
        sqlx::query(
            "INSERT INTO recurring_campaigns
                 (campaign_id, tenant_id, name, template_id, session_id, recipients, recurrence, next_at)
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)",
        )
        .bind(c.id)
        .bind(c.tenant_id)
        .bind(&c.name)
        .bind(c.template_id)
        .bind(c.session_id)
        .bind(serde_json::to_string(&c.recipients)?)
        .bind(serde_json::to_string(&recurrence)?)
        .bind(next_at)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }

    queue(
        conn,
        Queued {
            campaign_id: c.id,
            tenant_id: c.tenant_id,
            session_id: c.session_id,
            recipients: c.recipients,
            at: c.at,
            due: c.scheduled_at.unwrap_or(c.at),
            pacing,
            pace_from_session: own.is_none(),
        },
    )
    .await?;
    if let Some(due) = c.scheduled_at {
        // nothing is claimed before the ticker starts the campaign
        sqlx::query(
            "INSERT INTO campaign_holds (campaign_id, reason, release_at) VALUES ($1, 'scheduled', $2)",
        )
        .bind(c.id)
        .bind(due)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Recipients to append to a campaign: each one's `DeliveryQueued` and dispatch-queue row.
pub(crate) struct Queued {
    pub(crate) campaign_id: Uuid,
    pub(crate) tenant_id: Uuid,
    pub(crate) session_id: Uuid,
    pub(crate) recipients: Vec<Recipient>,
    pub(crate) at: DateTime<Utc>,
    /// When the queue rows become claimable.
    pub(crate) due: DateTime<Utc>,
    /// The pace of these rows, and whether it is the session's (a session change reaches them).
    pub(crate) pacing: herald_scheduler::pacing::Pacing,
    pub(crate) pace_from_session: bool,
}

/// The pace of a campaign's rows: its own (`campaign_pacing`), else its session's.
pub(crate) async fn campaign_pace(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    session_id: Uuid,
) -> Result<(herald_scheduler::pacing::Pacing, bool), Error> {
    if let Some(own) = herald_scheduler::pacing::of_campaign(conn, campaign_id).await? {
        return Ok((own, false));
    }
    let session = herald_scheduler::pacing::of_session(conn, session_id)
        .await?
        .unwrap_or(herald_scheduler::pacing::Pacing::NONE);
    Ok((session, true))
}

/// Appends the recipients' first events (fresh streams: `append_new`) and their queue rows, in
/// the caller's transaction. Also used when a scheduled campaign's audience is resolved at start.
pub(crate) async fn queue(conn: &mut PgConnection, q: Queued) -> Result<(), Error> {
    let mut phones = Vec::with_capacity(q.recipients.len());
    let mut message_ids = Vec::with_capacity(q.recipients.len());
    let mut vars_json = Vec::with_capacity(q.recipients.len());
    let mut commands = Vec::with_capacity(q.recipients.len());
    for r in q.recipients {
        message_ids.push(message_id_for(q.campaign_id, &r.phone));
        vars_json.push(serde_json::Value::Object(r.vars.clone()).to_string());
        phones.push(r.phone.as_str().to_string());
        commands.push((
            delivery_id(q.campaign_id, &r.phone),
            DeliveryCommand::Queue {
                tenant_id: q.tenant_id,
                campaign_id: q.campaign_id,
                phone: r.phone,
                vars: r.vars,
                at: q.at,
            },
        ));
    }
    store::append_new::<Delivery>(conn, commands, &())
        .await?
        .map_err(|(_, e)| e)?;
    for ((p, m), v) in phones
        .chunks(CHUNK)
        .zip(message_ids.chunks(CHUNK))
        .zip(vars_json.chunks(CHUNK))
    {
        sqlx::query(
            "INSERT INTO dispatch_queue (campaign_id, phone, tenant_id, session_id, message_id, vars, not_before,
                                         pace_min_ms, pace_max_ms, pace_from_session)
             SELECT $1, p, $2, $3, m, v::jsonb, $7, $8, $9, $10
               FROM UNNEST($4::text[], $5::text[], $6::text[]) AS u(p, m, v)",
        )
        .bind(q.campaign_id)
        .bind(q.tenant_id)
        .bind(q.session_id)
        .bind(p)
        .bind(m)
        .bind(v)
        .bind(q.due)
        .bind(q.pacing.min_interval_ms)
        .bind(q.pacing.max_interval_ms)
        .bind(q.pace_from_session)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
