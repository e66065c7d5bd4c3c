//! Campaigns: creation, progress, and each recipient's status (JSON pages and a CSV export).

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use futures::StreamExt;
use herald_domain::campaign::{Campaign, CampaignStatus};
use herald_domain::delivery::DeliveryStatus;
use herald_projections::campaigns::{self as read, CampaignRow, DeliveryRow};
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::reply::Created;
use super::{parse_id, parse_limit, parse_time_cursor, ListOf};
use crate::auth::caller;
use crate::error::{json_body, ApiError};
use crate::intake::{self, CampaignDraft, RecipientInput, Rejected};
use crate::state::AppState;

/// Room for 1,000,000 recipients with a few variables each.
const CREATE_BODY_LIMIT: usize = 128 * 1024 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    name: String,
    template_id: String,
    session_id: String,
    /// Phones (`"+62 812-3456-7890"`, `"0812..."`, `"62812..."`) or `{"phone", "vars": {...}}`.
    recipients: Option<Vec<RecipientInput>>,
    /// `{"tag": "vip"}`: the tenant's contacts with that tag, resolved when the campaign starts
    /// (at creation for `now`, at its time for a scheduled one, at each occurrence for a recurring
    /// one), together with `recipients` (duplicates dropped; a recipient's `vars` win over the
    /// contact's name and fields).
    #[salvo(schema(value_type = Object))]
    audience: Option<serde_json::Value>,
    /// `now` (default), `YYYY-MM-DD HH:MM[:SS]`, `YYYY-MM-DDTHH:MM[:SS]`, RFC 3339 with an offset,
    /// `DD/MM/YYYY HH:MM`, a date alone (09:00 that day) or a time alone (`HH:MM`, today or
    /// tomorrow), read in `timezone`.
    send_at: Option<String>,
    /// IANA name (`Asia/Jakarta`) or offset (`+07:00`); required unless `send_at` is `now` or
    /// carries its own offset.
    timezone: Option<String>,
    /// A 5-field cron (`0 9 * * MON`) read in `timezone` (required): each occurrence starts a run
    /// with the same template (as it is then) and audience, listed with `?parent_id=`.
    recurrence: Option<String>,
    /// Overrides the session's pacing for this campaign (and its runs): `{"min_interval_ms",
    /// "max_interval_ms"}`, 0/0 for none.
    pacing: Option<super::sessions::PacingBody>,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignCreatedView {
    id: Uuid,
    name: String,
    status: String,
    scheduled_at: DateTime<Utc>,
    total_recipients: u64,
    /// Entries that are not valid phones (at most 1,000 listed; `rejected_count` counts all).
    rejected: Vec<Rejected>,
    rejected_count: usize,
    /// With an `audience`: its tag, and (when it was resolved at creation) how many contacts it
    /// gave and how many tagged contacts were left out for having no phone (lid only).
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<intake::AudienceSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct Counts {
    queued: i64,
    sending: i64,
    sent: i64,
    delivered: i64,
    read: i64,
    failed: i64,
    skipped: i64,
    waiting_quota: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignView {
    id: Uuid,
    name: String,
    /// `scheduled`, `running`, `paused`, `completed`, `cancelled` or `failed`.
    status: String,
    template_id: Uuid,
    session_id: Uuid,
    total_recipients: i64,
    counts: Counts,
    scheduled_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    /// The recurring campaign this is a run of.
    parent_id: Option<Uuid>,
    /// For a recurring campaign: its cron and time zone. Its runs are listed with `?parent_id=`.
    recurrence: Option<RecurrenceView>,
    /// The campaign's own pacing; `null`: its session's.
    pacing: Option<super::sessions::PacingView>,
}

#[derive(Serialize, ToSchema)]
pub struct RecurrenceView {
    cron: String,
    timezone: String,
}

impl From<CampaignRow> for CampaignView {
    fn from(r: CampaignRow) -> Self {
        CampaignView {
            id: r.id,
            name: r.name,
            status: r.status,
            template_id: r.template_id,
            session_id: r.session_id,
            total_recipients: r.total_recipients,
            counts: Counts {
                queued: r.count_queued,
                sending: r.count_sending,
                sent: r.count_sent,
                delivered: r.count_delivered,
                read: r.count_read,
                failed: r.count_failed,
                skipped: r.count_skipped,
                waiting_quota: r.count_waiting_quota,
            },
            scheduled_at: r.scheduled_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            created_at: r.created_at,
            parent_id: r.parent_id,
            recurrence: r.recurrence.map(|cron| RecurrenceView {
                cron,
                timezone: r.recurrence_timezone.unwrap_or_default(),
            }),
            pacing: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RecipientView {
    phone: String,
    /// `queued`, `sending`, `sent`, `delivered`, `read`, `failed` or `skipped`; only moves forward.
    status: String,
    message_id: Option<String>,
    error: Option<String>,
    attempts: i32,
    queued_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
}

impl From<DeliveryRow> for RecipientView {
    fn from(r: DeliveryRow) -> Self {
        RecipientView {
            phone: r.phone,
            status: r.status,
            message_id: r.message_id,
            error: r.error,
            attempts: r.attempts,
            queued_at: r.queued_at,
            sent_at: r.sent_at,
            delivered_at: r.delivered_at,
            read_at: r.read_at,
            failed_at: r.failed_at,
        }
    }
}

/// Creates a campaign that starts now or at `send_at` (then `status` is `scheduled`). Invalid
/// phones are listed in `rejected`, not fatal; duplicates are dropped.
#[endpoint(tags("campaigns"), request_body = CreateCampaign, status_codes(201, 400, 401, 403, 409, 413, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn create(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<CampaignCreatedView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: CreateCampaign = json_body(req, CREATE_BODY_LIMIT).await?;
    let template_id = body
        .template_id
        .parse()
        .map_err(|_| ApiError::validation("template_id", "is not a UUID"))?;
    let session_id = body
        .session_id
        .parse()
        .map_err(|_| ApiError::validation("session_id", "is not a UUID"))?;
    let audience = body.audience.map(intake::parse_audience).transpose()?;
    let scheduled_at = match herald_domain::schedule::parse_send_at(
        body.send_at.as_deref(),
        body.timezone.as_deref(),
        chrono::Utc::now(),
    )
    .map_err(|e| ApiError::validation(e.field(), e.to_string()))?
    {
        herald_domain::schedule::SendAt::Now => None,
        herald_domain::schedule::SendAt::At(t) => Some(t),
    };
    let recurrence = body
        .recurrence
        .as_deref()
        .map(|cron| herald_domain::schedule::parse_recurrence(cron, body.timezone.as_deref()))
        .transpose()
        .map_err(|e| ApiError::validation(e.field(), e.to_string()))?;
    let pacing = body.pacing.map(|p| p.parse("pacing")).transpose()?;
    crate::plans::require_active(&state, caller.tenant_id).await?;
    let entries = match (body.recipients, &audience) {
        (Some(entries), _) => entries,
        (None, Some(_)) => Vec::new(),
        (None, None) => {
            return Err(ApiError::validation(
                "recipients",
                "is required (or give an audience)",
            ))
        }
    };
    let accepted = intake::accept(
        &state.pool,
        caller.tenant_id,
        CampaignDraft {
            name: body.name,
            template_id,
            session_id,
            recipients: entries,
            scheduled_at,
            recurrence,
            audience,
            pacing,
        },
    )
    .await?;
    state
        .wait_projected(read::NAME, Campaign::TYPE, &accepted.id.to_string())
        .await?;
    Ok(Created(CampaignCreatedView {
        id: accepted.id,
        name: accepted.name,
        status: if accepted.scheduled {
            CampaignStatus::Scheduled
        } else {
            CampaignStatus::Running
        }
        .as_str()
        .into(),
        scheduled_at: accepted.scheduled_at,
        total_recipients: accepted.total_recipients,
        rejected: accepted.rejected,
        rejected_count: accepted.rejected_count,
        audience: accepted.audience,
    }))
}

/// This tenant's campaigns, newest first, optionally by `status`, or the runs of a recurring
/// campaign with `parent_id`.
#[endpoint(tags("campaigns"), status_codes(200, 400, 401, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn list(
    status: QueryParam<String, false>,
    parent_id: QueryParam<String, false>,
    limit: QueryParam<String, false>,
    cursor: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<CampaignView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let status = match status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            CampaignStatus::parse(s)
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_query", format!("unknown campaign status {s:?}"))
                })?
                .as_str(),
        ),
    };
    let limit = parse_limit(limit.as_deref())?;
    let cursor = parse_time_cursor(cursor.as_deref())?;
    let parent_id = match parent_id.as_deref() {
        None | Some("") => None,
        Some(p) => Some(
            p.parse()
                .map_err(|_| ApiError::bad_request("invalid_query", "parent_id is not a UUID"))?,
        ),
    };
    let page = read::list(
        &state.pool,
        caller.tenant_id,
        status,
        parent_id,
        limit,
        cursor,
    )
    .await?;
    let items = live_counts(&state, page.items.into_iter().map(Into::into).collect()).await?;
    Ok(Json(ListOf {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// What the read model cannot know: recipients waiting for quota right now (queue rows), and the
/// campaign's own pacing.
async fn live_counts(
    state: &AppState,
    mut views: Vec<CampaignView>,
) -> Result<Vec<CampaignView>, ApiError> {
    let ids: Vec<Uuid> = views.iter().map(|v| v.id).collect();
    let waiting = herald_scheduler::quota::waiting_counts(&state.pool, &ids).await?;
    let pacing: Vec<(Uuid, i32, i32)> = sqlx::query_as(
        "SELECT campaign_id, min_interval_ms, max_interval_ms FROM campaign_pacing
          WHERE campaign_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&state.pool)
    .await?;
    for v in &mut views {
        v.counts.waiting_quota = waiting.get(&v.id).copied().unwrap_or(0);
        v.pacing = pacing
            .iter()
            .find(|(id, _, _)| *id == v.id)
            .map(|(_, min, max)| super::sessions::PacingView {
                min_interval_ms: *min,
                max_interval_ms: *max,
            });
    }
    Ok(views)
}

async fn one_view(state: &AppState, row: CampaignRow) -> Result<CampaignView, ApiError> {
    live_counts(state, vec![row.into()])
        .await?
        .pop()
        .ok_or(ApiError::NotFound)
}

async fn owned_campaign(
    state: &AppState,
    tenant_id: Uuid,
    raw_id: String,
) -> Result<CampaignRow, ApiError> {
    let id = parse_id(&raw_id)?;
    read::get(&state.pool, tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// A campaign with its progress counts. It is `completed` once every recipient is final.
#[endpoint(tags("campaigns"), status_codes(200, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn get(id: PathParam<String>, depot: &mut Depot) -> Result<Json<CampaignView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let row = owned_campaign(&state, caller.tenant_id, id.into_inner()).await?;
    Ok(Json(one_view(&state, row).await?))
}

fn parse_delivery_status(raw: Option<&str>) -> Result<Option<&'static str>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(s) => DeliveryStatus::parse(s)
            .map(|st| Some(st.as_str()))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("unknown recipient status {s:?}"))
            }),
    }
}

/// A page of the campaign's recipients, ordered by phone, optionally by `status`.
#[endpoint(tags("campaigns"), status_codes(200, 400, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn recipients(
    id: PathParam<String>,
    status: QueryParam<String, false>,
    limit: QueryParam<String, false>,
    cursor: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<RecipientView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let campaign = owned_campaign(&state, caller.tenant_id, id.into_inner()).await?;
    let status = parse_delivery_status(status.as_deref())?;
    let limit = parse_limit(limit.as_deref())?;
    let after = parse_phone_cursor(cursor.as_deref())?;
    let page = read::recipients(
        &state.pool,
        caller.tenant_id,
        campaign.id,
        status,
        limit,
        after,
    )
    .await?;
    Ok(Json(ListOf {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Keeps spreadsheet programs from running a cell as a formula (gateway errors are outside text).
fn csv_cell(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    }
}

fn csv_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn csv_rows(rows: &[DeliveryRow], header: bool) -> Result<Vec<u8>, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 96));
    let fail = |e: csv::Error| ApiError::Unexpected(e.into());
    if header {
        w.write_record([
            "phone",
            "status",
            "message_id",
            "error",
            "attempts",
            "queued_at",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
        ])
        .map_err(fail)?;
    }
    for r in rows {
        w.write_record([
            r.phone.clone(),
            r.status.clone(),
            r.message_id.clone().unwrap_or_default(),
            csv_cell(r.error.as_deref().unwrap_or_default()),
            r.attempts.to_string(),
            csv_time(Some(r.queued_at)),
            csv_time(r.sent_at),
            csv_time(r.delivered_at),
            csv_time(r.read_at),
            csv_time(r.failed_at),
        ])
        .map_err(fail)?;
    }
    w.into_inner()
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))
}

/// `?cursor=` of the recipients: the last phone of a page, E.164 digits. Anything else (text with
/// NUL, which PostgreSQL cannot bind, or any other text) was never given out.
fn parse_phone_cursor(raw: Option<&str>) -> Result<Option<&str>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(c) if c.len() <= 20 && c.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(c)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_cursor",
            "cursor is not one Herald gave out",
        )),
    }
}

/// Every recipient as CSV, streamed page by page (constant memory, any campaign size).
#[endpoint(tags("campaigns"), status_codes(200, 400, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn recipients_csv(
    id: PathParam<String>,
    status: QueryParam<String, false>,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<(), ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let campaign = owned_campaign(&state, caller.tenant_id, id.into_inner()).await?;
    let status = parse_delivery_status(status.as_deref())?;
    let tenant_id = caller.tenant_id;
    let pool = state.pool.clone();
    // state: (cursor, first page?, done?)
    let pages = futures::stream::unfold(
        (None::<String>, true, false),
        move |(after, first, done)| {
            let pool = pool.clone();
            async move {
                if done {
                    return None;
                }
                let page = read::recipients(
                    &pool,
                    tenant_id,
                    campaign.id,
                    status,
                    5_000,
                    after.as_deref(),
                )
                .await;
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "CSV export failed mid-stream");
                        return Some((
                            Err(std::io::Error::other("export failed")),
                            (None, false, true),
                        ));
                    }
                };
                let bytes = csv_rows(&page.items, first)
                    .map_err(|_| std::io::Error::other("export failed"));
                let finished = page.next_cursor.is_none();
                Some((bytes, (page.next_cursor, false, finished)))
            }
        },
    )
    .map(|r| r.map(salvo::http::body::BytesFrame::from));
    res.add_header("content-type", "text/csv; charset=utf-8", true)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    res.add_header(
        "content-disposition",
        format!(
            "attachment; filename=\"campaign-{}-recipients.csv\"",
            campaign.id
        ),
        true,
    )
    .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    res.stream(pages);
    Ok(())
}

enum Control {
    Pause,
    Resume,
    Cancel,
}

async fn control(
    depot: &mut Depot,
    raw_id: String,
    action: Control,
) -> Result<Json<CampaignView>, ApiError> {
    use herald_campaigns::control;
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&raw_id)?;
    match action {
        Control::Pause => control::pause(&state.pool, caller.tenant_id, id).await?,
        Control::Resume => {
            crate::plans::require_active(&state, caller.tenant_id).await?;
            control::resume(&state.pool, caller.tenant_id, id).await?
        }
        Control::Cancel => {
            control::cancel(&state.pool, caller.tenant_id, id).await?;
        }
    }
    // cancel writes the campaign's event, then every skipped recipient's
    state.wait_projected_everything(read::NAME).await?;
    let row = owned_campaign(&state, caller.tenant_id, raw_id).await?;
    Ok(Json(one_view(&state, row).await?))
}

/// Pauses a running campaign: nothing more is sent until it is resumed (sends already on their
/// way finish). Pausing a paused campaign changes nothing.
#[endpoint(tags("campaigns"), status_codes(200, 401, 404, 409), security(["bearer" = []], ["api_key" = []]))]
pub async fn pause(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<CampaignView>, ApiError> {
    control(depot, id.into_inner(), Control::Pause).await
}

/// Resumes a paused campaign where it stopped; nobody already sent is sent again.
#[endpoint(tags("campaigns"), status_codes(200, 401, 403, 404, 409), security(["bearer" = []], ["api_key" = []]))]
pub async fn resume(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<CampaignView>, ApiError> {
    control(depot, id.into_inner(), Control::Resume).await
}

/// Cancels a campaign: every recipient not yet sent becomes `skipped`. Sends already on their
/// way to the gateway finish and are recorded.
#[endpoint(tags("campaigns"), status_codes(200, 401, 404, 409), security(["bearer" = []], ["api_key" = []]))]
pub async fn cancel(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<CampaignView>, ApiError> {
    control(depot, id.into_inner(), Control::Cancel).await
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct OccurrenceView {
    occurrence_at: DateTime<Utc>,
    /// `fired` (a run started), `missed` (Herald was down past the grace period) or `failed`
    /// (e.g. the template was no longer active).
    status: String,
    run_id: Option<Uuid>,
    reason: Option<String>,
}

/// Every occurrence of a recurring campaign so far, newest first: fired, missed or failed.
#[endpoint(tags("campaigns"), status_codes(200, 400, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn occurrences(
    id: PathParam<String>,
    limit: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<OccurrenceView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let campaign = owned_campaign(&state, caller.tenant_id, id.into_inner()).await?;
    let limit = parse_limit(limit.as_deref())?;
    let items: Vec<OccurrenceView> = sqlx::query_as(
        "SELECT occurrence_at, status, run_id, reason FROM campaign_occurrences
          WHERE campaign_id = $1 ORDER BY occurrence_at DESC LIMIT $2",
    )
    .bind(campaign.id)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(ListOf {
        items,
        next_cursor: None,
    }))
}
