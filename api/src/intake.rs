//! A campaign request's shapes (what the OpenAPI document shows) and their translation into
//! herald-campaigns' intake, which validates and writes the campaign without a request
//! (docs/decisions/0067).

use chrono::{DateTime, Utc};
use herald_campaigns::audience::Audience;
use herald_campaigns::intake::{self, RecipientEntry};
use herald_domain::delivery::Vars;
use herald_domain::schedule::Recurrence;
use salvo::oapi::ToSchema;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;

pub use herald_campaigns::intake::{phone_reason, MAX_RECIPIENTS};

/// One entry of `recipients`: a phone, or `{"phone", "vars"}` (`name` is accepted as a shortcut for
/// `vars.name`). Anything else is reported in `rejected`, not fatal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RecipientInput {
    Phone(String),
    Detailed(DetailedRecipient),
    #[salvo(schema(value_type = Object))]
    Other(serde_json::Value),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetailedRecipient {
    phone: String,
    name: Option<String>,
    #[serde(default)]
    #[salvo(schema(value_type = Object))]
    vars: Vars,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rejected {
    /// The entry as given (a phone, or the JSON of the entry).
    pub input: String,
    pub reason: String,
}

/// [`herald_campaigns::intake::Accepted`] in the answer's shapes.
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

/// What became of a campaign's audience, in the creation answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AudienceSummary {
    pub tag: String,
    /// `true` when the audience was resolved now (a campaign sent now); `false` when it will be
    /// resolved when the campaign (or each occurrence) starts.
    pub resolved: bool,
    /// Tagged contacts with a phone (when resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacts: Option<usize>,
    /// Tagged contacts left out because they have only a lid, no phone (when resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_phone: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AudienceInput {
    tag: String,
}

/// `audience` as given: `{"tag": "..."}`, the tag normalised like contacts' tags.
pub fn parse_audience(value: serde_json::Value) -> Result<Audience, ApiError> {
    let input: AudienceInput = serde_json::from_value(value).map_err(|e| {
        ApiError::validation("audience", format!("expected {{\"tag\": \"...\"}}: {e}"))
    })?;
    let tag = herald_domain::contact::normalise_tag(&input.tag)
        .map_err(|e| ApiError::validation("audience.tag", e.to_string()))?;
    Ok(Audience { tag })
}

pub struct CampaignDraft {
    pub name: String,
    pub template_id: Uuid,
    pub session_id: Uuid,
    pub recipients: Vec<RecipientInput>,
    /// `None`: send now.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Repeat at each occurrence of this schedule instead of sending once.
    pub recurrence: Option<Recurrence>,
    /// Contacts with a tag, in addition to `recipients`.
    pub audience: Option<Audience>,
    /// Overrides the session's pacing.
    pub pacing: Option<herald_scheduler::pacing::Pacing>,
}

impl From<RecipientInput> for RecipientEntry {
    fn from(input: RecipientInput) -> Self {
        match input {
            RecipientInput::Phone(p) => RecipientEntry::Phone(p),
            RecipientInput::Detailed(d) => RecipientEntry::Detailed {
                phone: d.phone,
                name: d.name,
                vars: d.vars,
            },
            RecipientInput::Other(v) => RecipientEntry::Other(v),
        }
    }
}

/// Validates a campaign against the store and writes it, all recipients included, in one
/// transaction (herald-campaigns' `intake::accept`).
pub async fn accept(
    pool: &PgPool,
    tenant_id: Uuid,
    draft: CampaignDraft,
) -> Result<Accepted, ApiError> {
    let accepted = intake::accept(
        pool,
        tenant_id,
        intake::CampaignDraft {
            name: draft.name,
            template_id: draft.template_id,
            session_id: draft.session_id,
            recipients: draft.recipients.into_iter().map(Into::into).collect(),
            scheduled_at: draft.scheduled_at,
            recurrence: draft.recurrence,
            audience: draft.audience,
            pacing: draft.pacing,
        },
    )
    .await?;
    Ok(Accepted {
        id: accepted.id,
        name: accepted.name,
        total_recipients: accepted.total_recipients,
        rejected: accepted
            .rejected
            .into_iter()
            .map(|r| Rejected {
                input: r.input,
                reason: r.reason,
            })
            .collect(),
        rejected_count: accepted.rejected_count,
        scheduled_at: accepted.scheduled_at,
        scheduled: accepted.scheduled,
        audience: accepted.audience.map(|a| AudienceSummary {
            tag: a.tag,
            resolved: a.resolved,
            contacts: a.contacts,
            without_phone: a.without_phone,
        }),
    })
}
