//! Accepting a campaign: phone normalisation, validation against the store, and the batch write
//! of docs/decisions/0052.
//!
//! `CampaignCreated`, every recipient's `DeliveryQueued` and every `dispatch_queue` row go into the
//! store in ONE transaction with multi-row inserts, so a 100,000-recipient campaign is accepted in
//! about a second and is either wholly there or not at all. herald-api turns the request into a
//! [`CampaignDraft`] and [`Accepted`] into its answer; [`IntakeError`] says what was refused.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use herald_domain::delivery::Vars;
use herald_domain::phone::{Phone, PhoneError};
use herald_domain::schedule::Recurrence;
use herald_domain::session::Session;
use herald_domain::store;
use serde::Serialize;
use sqlx::{Acquire, PgPool};
use uuid::Uuid;

use crate::audience::{self, Audience};
use crate::write::{self, NewCampaign, Recipient};

/// Most recipients one request may carry; more is refused as too large.
pub const MAX_RECIPIENTS: usize = 1_000_000;
/// Rejected entries listed in the answer (all are counted).
const MAX_REJECTED_LISTED: usize = 1_000;

/// One entry of a campaign's recipients: a phone, or a phone with its variables (`name` is a
/// shortcut for `vars.name`), or anything else (reported in `rejected`, not fatal).
#[derive(Debug)]
pub enum RecipientEntry {
    Phone(String),
    Detailed {
        phone: String,
        name: Option<String>,
        vars: Vars,
    },
    /// Something that is neither; its JSON is reported.
    Other(serde_json::Value),
}

/// An entry left out, and why.
#[derive(Debug, Serialize)]
pub struct Rejected {
    /// The entry as given (a phone, or the JSON of the entry).
    pub input: String,
    pub reason: String,
}

/// A campaign accepted and stored.
pub struct Accepted {
    pub id: Uuid,
    pub name: String,
    pub total_recipients: u64,
    pub rejected: Vec<Rejected>,
    pub rejected_count: usize,
    pub scheduled_at: DateTime<Utc>,
    /// Waiting for its time (else running).
    pub scheduled: bool,
    pub audience: Option<AudienceSummary>,
}

/// What became of a campaign's audience.
#[derive(Debug)]
pub struct AudienceSummary {
    pub tag: String,
    /// `true` when the audience was resolved now (a campaign sent now); `false` when it will be
    /// resolved when the campaign (or each occurrence) starts.
    pub resolved: bool,
    /// Tagged contacts with a phone (when resolved).
    pub contacts: Option<usize>,
    /// Tagged contacts left out because they have only a lid, no phone (when resolved).
    pub without_phone: Option<usize>,
}

/// What accepting a campaign refuses, or fails with.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// More than [`MAX_RECIPIENTS`] entries.
    #[error("{0}")]
    TooManyRecipients(String),
    /// A field is not acceptable; `details` adds what the caller needs to fix it.
    #[error("{field}: {message}")]
    Invalid {
        field: String,
        message: String,
        details: Option<serde_json::Value>,
    },
    /// The tenant does not exist.
    #[error("no such tenant")]
    NoTenant,
    #[error(transparent)]
    Campaign(#[from] crate::Error),
}

impl IntakeError {
    fn invalid(field: &str, message: impl Into<String>) -> IntakeError {
        IntakeError::Invalid {
            field: field.to_string(),
            message: message.into(),
            details: None,
        }
    }
}

impl From<sqlx::Error> for IntakeError {
    fn from(e: sqlx::Error) -> Self {
        IntakeError::Campaign(e.into())
    }
}

impl From<herald_domain::store::StoreError> for IntakeError {
    fn from(e: herald_domain::store::StoreError) -> Self {
        IntakeError::Campaign(e.into())
    }
}

impl From<herald_domain::DomainError> for IntakeError {
    fn from(e: herald_domain::DomainError) -> Self {
        IntakeError::Campaign(e.into())
    }
}

/// A campaign as the caller asks for it.
pub struct CampaignDraft {
    pub name: String,
    pub template_id: Uuid,
    pub session_id: Uuid,
    pub recipients: Vec<RecipientEntry>,
    /// `None`: send now.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Repeat at each occurrence of this schedule instead of sending once.
    pub recurrence: Option<Recurrence>,
    /// Contacts with a tag, in addition to `recipients`.
    pub audience: Option<Audience>,
    /// Overrides the session's pacing.
    pub pacing: Option<herald_scheduler::pacing::Pacing>,
}

pub fn phone_reason(e: &PhoneError) -> String {
    match e {
        PhoneError::Empty => "phone number is empty".into(),
        PhoneError::TooLong => "phone number is too long".into(),
        PhoneError::Invalid => "not a valid phone number".into(),
        PhoneError::UnknownRegion(r) => format!("the tenant's default region {r} is unknown"),
    }
}

/// Normalises and de-duplicates recipients (first occurrence wins); returns the valid ones and the
/// rejected ones.
pub fn normalise(
    inputs: Vec<RecipientEntry>,
    region: &str,
) -> (Vec<(Phone, Vars)>, Vec<Rejected>, usize) {
    let mut seen: HashSet<Phone> = HashSet::with_capacity(inputs.len());
    let mut valid = Vec::with_capacity(inputs.len());
    let mut rejected = Vec::new();
    let mut rejected_count = 0;
    let mut reject = |input: String, reason: String, rejected: &mut Vec<Rejected>| {
        rejected_count += 1;
        if rejected.len() < MAX_REJECTED_LISTED {
            rejected.push(Rejected { input, reason });
        }
    };
    for input in inputs {
        let (raw, mut vars) = match input {
            RecipientEntry::Phone(p) => (p, Vars::new()),
            RecipientEntry::Detailed {
                phone,
                name,
                mut vars,
            } => {
                if let Some(name) = name {
                    vars.entry("name")
                        .or_insert(serde_json::Value::String(name));
                }
                (phone, vars)
            }
            RecipientEntry::Other(v) => {
                let text: String = v.to_string().chars().take(200).collect();
                reject(
                    text,
                    "expected a phone number or {\"phone\", \"vars\"}".into(),
                    &mut rejected,
                );
                continue;
            }
        };
        match Phone::parse(&raw, region) {
            Ok(phone) => {
                if seen.insert(phone.clone()) {
                    vars.remove("phone");
                    valid.push((phone, vars));
                }
            }
            Err(e) => {
                let text: String = raw.chars().take(200).collect();
                reject(text, phone_reason(&e), &mut rejected)
            }
        }
    }
    (valid, rejected, rejected_count)
}

/// Validates a campaign against the store and writes it, all recipients included, in one
/// transaction (see [`write`]).
pub async fn accept(
    pool: &PgPool,
    tenant_id: Uuid,
    draft: CampaignDraft,
) -> Result<Accepted, IntakeError> {
    if draft.recipients.len() > MAX_RECIPIENTS {
        return Err(IntakeError::TooManyRecipients(format!(
            "a campaign takes at most {MAX_RECIPIENTS} recipients per request"
        )));
    }
    let name = herald_domain::template::validate_name(&draft.name)?;
    let mut conn = pool.acquire().await?;
    // The template and session are read from the store itself, not the read models, so a campaign
    // can use a template created a millisecond ago.
    let message = write::message_from_template(&mut conn, tenant_id, draft.template_id)
        .await?
        .map_err(|reason| IntakeError::invalid("template_id", reason))?;
    match store::load::<Session>(pool, &draft.session_id.to_string()).await? {
        Some((s, _)) if s.visible_to(tenant_id) => {}
        _ => return Err(IntakeError::invalid("session_id", "no such session")),
    }
    let region: String = sqlx::query_scalar("SELECT default_region FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_optional(pool)
        .await?
        .ok_or(IntakeError::NoTenant)?;
    let (valid, rejected, rejected_count) = normalise(draft.recipients, &region);
    let mut valid: Vec<Recipient> = valid
        .into_iter()
        .map(|(phone, vars)| Recipient { phone, vars })
        .collect();
    // the audience: resolved now for a campaign sent now; otherwise kept until it starts
    let mut summary = None;
    let mut deferred = None;
    if let Some(audience) = draft.audience {
        if draft.scheduled_at.is_none() && draft.recurrence.is_none() {
            let resolved = audience::resolve(&mut conn, tenant_id, &audience, valid).await?;
            if resolved.recipients.is_empty() {
                return Err(IntakeError::Invalid {
                    field: "audience".into(),
                    message: format!(
                        "no contact with a phone has the tag {:?}, and no recipient is valid",
                        audience.tag
                    ),
                    details: Some(serde_json::json!({
                        "without_phone": resolved.without_phone,
                        "rejected": rejected,
                    })),
                });
            }
            summary = Some(AudienceSummary {
                tag: audience.tag,
                resolved: true,
                contacts: Some(resolved.contacts),
                without_phone: Some(resolved.without_phone),
            });
            valid = resolved.recipients;
        } else {
            summary = Some(AudienceSummary {
                tag: audience.tag.clone(),
                resolved: false,
                contacts: None,
                without_phone: None,
            });
            deferred = Some(audience);
        }
    }
    if valid.is_empty() && deferred.is_none() {
        return Err(IntakeError::Invalid {
            field: "recipients".into(),
            message: "no valid recipient".into(),
            details: Some(serde_json::json!({ "rejected": rejected })),
        });
    }
    let now = Utc::now();
    // a recurring campaign's first run is its first occurrence at or after send_at (or now)
    let scheduled_at =
        match &draft.recurrence {
            Some(r) => {
                let from = draft.scheduled_at.unwrap_or(now) - chrono::Duration::seconds(1);
                Some(r.next_after(from).ok_or_else(|| {
                    IntakeError::invalid("recurrence", "the schedule never fires")
                })?)
            }
            None => draft.scheduled_at,
        };
    let id = Uuid::new_v4();
    // a scheduled one-off campaign with an audience gets all its recipients when it starts
    let (recipients, waiting) = match (&deferred, &draft.recurrence) {
        (Some(_), None) => (Vec::new(), valid),
        _ => (valid, Vec::new()),
    };
    let total = recipients.len() as u64;
    let mut tx = conn.begin().await?;
    write::write(
        &mut tx,
        NewCampaign {
            id,
            tenant_id,
            name: name.clone(),
            template_id: draft.template_id,
            session_id: draft.session_id,
            message,
            recipients,
            scheduled_at,
            parent_id: None,
            recurrence: draft.recurrence.clone(),
            pacing: draft.pacing,
            at: now,
        },
    )
    .await?;
    if let Some(audience) = &deferred {
        if draft.recurrence.is_some() {
            audience::keep_for_recurrence(&mut tx, id, audience).await?;
        } else {
            audience::defer(&mut tx, id, tenant_id, draft.session_id, audience, &waiting).await?;
        }
    }
    tx.commit().await?;
    tracing::info!(campaign = %id, recipients = total, rejected = rejected_count, "campaign accepted");
    Ok(Accepted {
        id,
        name,
        total_recipients: total,
        rejected,
        rejected_count,
        scheduled_at: scheduled_at.unwrap_or(now),
        scheduled: scheduled_at.is_some(),
        audience: summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_and_bad_phones_reported() {
        let inputs = vec![
            RecipientEntry::Phone("+62 812-3456-7890".into()),
            RecipientEntry::Phone("081234567890".into()),
            RecipientEntry::Detailed {
                phone: "6281200001111".into(),
                name: Some("Sari".into()),
                vars: Vars::new(),
            },
            RecipientEntry::Phone("not a phone".into()),
            RecipientEntry::Other(serde_json::json!(42)),
        ];
        let (valid, rejected, count) = normalise(inputs, "ID");
        let phones: Vec<&str> = valid.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(phones, vec!["6281234567890", "6281200001111"]);
        assert_eq!(valid[1].1.get("name"), Some(&serde_json::json!("Sari")));
        assert_eq!(count, 2);
        assert_eq!(rejected[0].input, "not a phone");
        assert_eq!(rejected[1].input, "42");
    }
}
