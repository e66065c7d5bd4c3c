//! Audiences: a campaign's `audience: {"tag": ...}` resolved to the tenant's contacts with that tag
//! WHEN THE CAMPAIGN STARTS (docs/decisions/0020):
//! - sent now: at creation, by the API, before the campaign is written;
//! - scheduled once: the audience and the explicit recipients wait in `campaign_audiences`; the
//!   ticker resolves them in the transaction that starts the campaign ([`start_deferred`]);
//! - recurring: each occurrence resolves the audience again (`recurring_campaigns.audience`).
//!
//! Contacts are read from the `contacts` read model (its GIN index on `tags` serves the lookup).
//! A contact's `name` and fields become template variables; an explicit recipient's own `vars`
//! win over them. Contacts with only a lid (no phone) cannot be sent to and are counted, not sent.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_domain::delivery::Vars;
use herald_domain::phone::Phone;
use herald_domain::store;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::write::{queue, Queued, Recipient};
use crate::Error;

/// Who a campaign goes to, besides its explicit recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// A normalised tag (trimmed, lowercase).
    pub tag: String,
}

/// An audience resolved against the contacts, merged with the explicit recipients.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Explicit recipients first (in their order), then the audience's other contacts by phone.
    pub recipients: Vec<Recipient>,
    /// Tagged contacts with a phone.
    pub contacts: usize,
    /// Tagged contacts with only a lid: left out.
    pub without_phone: usize,
}

/// The tenant's contacts with the audience's tag, unioned with `explicit` (duplicates dropped).
/// For a phone in both, the contact's variables are the base and the explicit `vars` win.
pub async fn resolve(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    audience: &Audience,
    explicit: Vec<Recipient>,
) -> Result<Resolved, Error> {
    let rows = sqlx::query(
        "SELECT phone, name, fields::text AS fields FROM contacts
          WHERE tenant_id = $1 AND tags @> ARRAY[$2::text] ORDER BY key",
    )
    .bind(tenant_id)
    .bind(&audience.tag)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Resolved {
        recipients: explicit,
        ..Resolved::default()
    };
    let position: HashMap<Phone, usize> = out
        .recipients
        .iter()
        .enumerate()
        .map(|(i, r)| (r.phone.clone(), i))
        .collect();
    for row in rows {
        let Some(phone) = row.try_get::<Option<String>, _>("phone")? else {
            out.without_phone += 1;
            continue;
        };
        let Ok(phone) = Phone::from_normalized(&phone) else {
            out.without_phone += 1;
            continue;
        };
        out.contacts += 1;
        let mut vars: Vars = match serde_json::from_str(row.try_get("fields")?)? {
            serde_json::Value::Object(fields) => fields,
            _ => Vars::new(),
        };
        if let Some(name) = row.try_get::<Option<String>, _>("name")? {
            vars.insert("name".into(), serde_json::Value::String(name));
        }
        match position.get(&phone) {
            Some(&i) => {
                let explicit = std::mem::take(&mut out.recipients[i].vars);
                vars.extend(explicit);
                out.recipients[i].vars = vars;
            }
            None => out.recipients.push(Recipient { phone, vars }),
        }
    }
    Ok(out)
}

/// Keeps a scheduled campaign's audience (and explicit recipients) until it starts.
pub async fn defer(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    tenant_id: Uuid,
    session_id: Uuid,
    audience: &Audience,
    explicit: &[Recipient],
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO campaign_audiences (campaign_id, tenant_id, session_id, audience, recipients)
         VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)",
    )
    .bind(campaign_id)
    .bind(tenant_id)
    .bind(session_id)
    .bind(serde_json::to_string(audience)?)
    .bind(serde_json::to_string(explicit)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Keeps a recurring campaign's audience, resolved again at each occurrence.
pub async fn keep_for_recurrence(
    conn: &mut PgConnection,
    campaign_id: Uuid,
    audience: &Audience,
) -> Result<(), Error> {
    sqlx::query("UPDATE recurring_campaigns SET audience = $2::jsonb WHERE campaign_id = $1")
        .bind(campaign_id)
        .bind(serde_json::to_string(audience)?)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Reads a stored audience column.
pub fn parse_stored(text: Option<&str>) -> Result<Option<Audience>, Error> {
    Ok(text.map(serde_json::from_str).transpose()?)
}

/// Called by the ticker inside the transaction that started the `due` campaigns (`started`: those
/// that did start; a campaign cancelled before its time just loses its waiting audience): resolves the
/// audiences that waited for this moment, queues their recipients (due now), and records the
/// final count. A campaign whose audience turned out empty (and that had no explicit recipient)
/// completes at once with no recipient.
pub async fn start_deferred(
    conn: &mut PgConnection,
    due: &[Uuid],
    started: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if due.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query(
        "DELETE FROM campaign_audiences WHERE campaign_id = ANY($1)
         RETURNING campaign_id, tenant_id, session_id, audience::text AS audience,
                   recipients::text AS recipients",
    )
    .bind(due)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let campaign_id: Uuid = row.try_get("campaign_id")?;
        if !started.contains(&campaign_id) {
            continue;
        }
        let tenant_id: Uuid = row.try_get("tenant_id")?;
        let audience: Audience = serde_json::from_str(row.try_get("audience")?)?;
        let explicit: Vec<Recipient> = serde_json::from_str(row.try_get("recipients")?)?;
        let resolved = resolve(conn, tenant_id, &audience, explicit).await?;
        let total = resolved.recipients.len() as u64;
        let mut commands = vec![(
            campaign_id.to_string(),
            CampaignCommand::ResolveAudience {
                total_recipients: total,
                without_phone: resolved.without_phone as u64,
                at: now,
            },
        )];
        if total == 0 {
            commands.push((
                campaign_id.to_string(),
                CampaignCommand::Complete { at: now },
            ));
        }
        for outcome in store::execute_batch::<Campaign>(conn, commands, &()).await? {
            outcome?;
        }
        let session_id: Uuid = row.try_get("session_id")?;
        let (pacing, pace_from_session) =
            crate::write::campaign_pace(conn, campaign_id, session_id).await?;
        queue(
            conn,
            Queued {
                campaign_id,
                tenant_id,
                session_id,
                recipients: resolved.recipients,
                at: now,
                due: now,
                pacing,
                pace_from_session,
            },
        )
        .await?;
        tracing::info!(
            campaign = %campaign_id,
            tag = %audience.tag,
            recipients = total,
            without_phone = resolved.without_phone,
            "audience resolved at start"
        );
    }
    Ok(())
}
