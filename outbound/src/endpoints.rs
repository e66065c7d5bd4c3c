//! A tenant's webhook endpoints: where events are pushed, which ones, and the signing secrets.
//!
//! Every function takes the caller's tenant: another tenant's endpoint is simply not found. The
//! secret leaves this module only from [`create`] and [`rotate_secret`] (to be shown once); a
//! rotation keeps the previous secret signing beside the new one for [`ROTATION_OVERLAP`].

use chrono::{DateTime, Utc};
use herald_projections::notify::Kind;
use herald_projections::{time_cursor, Page};
use sqlx::PgPool;
use uuid::Uuid;

use crate::address::{self, UrlError};
use crate::signing::SigningSecret;

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);
/// Endpoints one tenant may have.
pub const MAX_ENDPOINTS: i64 = 50;
/// Longest description.
const MAX_DESCRIPTION: usize = 500;
/// Subscribes to every event type.
pub const ALL_EVENTS: &str = "*";

/// What a tenant may subscribe to: every real-time kind but `campaign.progress` (a running total,
/// not an event), and `contact.opted_out`.
pub fn event_types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = Kind::ALL
        .iter()
        .filter(|k| **k != Kind::CampaignProgress)
        .map(Kind::as_str)
        .collect();
    if !types.contains(&"contact.opted_out") {
        types.push("contact.opted_out");
    }
    types.sort_unstable();
    types
}

/// One endpoint as its tenant sees it (never the secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why Herald disabled it (the receiver answered 410); `None` when enabled or disabled by
    /// the tenant.
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new endpoint.
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// What a `PATCH` may change; `None` leaves a field as it is.
#[derive(Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// Turning an endpoint back on also clears why Herald disabled it.
    pub enabled: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("not found")]
    NotFound,
    /// A field that cannot be used, and why.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("a tenant may have at most {MAX_ENDPOINTS} webhook endpoints")]
    TooMany,
    /// The endpoint is disabled; what it is asked to do needs it enabled.
    #[error("the endpoint is disabled; enable it first")]
    Disabled,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for EndpointError {
    fn from(e: sqlx::Error) -> Self {
        EndpointError::Unexpected(e.into())
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> EndpointError {
    EndpointError::Invalid {
        field,
        message: message.into(),
    }
}

/// The URL as it will be stored, once its form and every address it resolves to pass.
pub async fn checked_url(raw: &str, allow_private: bool) -> Result<String, EndpointError> {
    if raw.contains('\0') {
        return Err(invalid("url", "contains U+0000 (NUL)"));
    }
    let url = address::parse(raw).map_err(|e| invalid("url", e.to_string()))?;
    address::vet(&url, allow_private)
        .await
        .map_err(|e| match e {
            UrlError::Refused(m) | UrlError::Unresolved(m) => invalid("url", m),
        })?;
    Ok(url.to_string())
}

/// The subscribed types, sorted and without repeats; `["*"]` alone for everything.
pub fn checked_events(events: &[String]) -> Result<Vec<String>, EndpointError> {
    if events.is_empty() {
        return Err(invalid("events", "name at least one event type, or \"*\""));
    }
    let known = event_types();
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for e in events {
        if e == ALL_EVENTS {
            return Ok(vec![ALL_EVENTS.to_string()]);
        }
        if !known.contains(&e.as_str()) {
            return Err(EndpointError::Invalid {
                field: "events",
                message: format!(
                    "unknown event type {:?}; known: {}, or \"*\"",
                    e.chars().take(100).collect::<String>(),
                    known.join(", ")
                ),
            });
        }
        out.push(e.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn checked_description(d: Option<String>) -> Result<Option<String>, EndpointError> {
    let Some(d) = d.map(|d| d.trim().to_string()).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    if d.contains('\0') {
        return Err(invalid("description", "contains U+0000 (NUL)"));
    }
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(Some(d))
}

const COLUMNS: &str =
    "id, url, events, description, enabled, disabled_reason, created_at, updated_at";

/// Registers an endpoint; its secret, to show once.
pub async fn create(
    pool: &PgPool,
    tenant_id: Uuid,
    new: NewEndpoint,
    allow_private: bool,
) -> Result<(Endpoint, SigningSecret), EndpointError> {
    let events = checked_events(&new.events)?;
    let description = checked_description(new.description)?;
    let url = checked_url(&new.url, allow_private).await?;
    let secret = SigningSecret::generate();
    let mut tx = pool.begin().await?;
    // one creation at a time per tenant, so the limit holds under concurrent requests
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&mut *tx)
            .await?;
    if count >= MAX_ENDPOINTS {
        return Err(EndpointError::TooMany);
    }
    let endpoint: Endpoint = sqlx::query_as(&format!(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, events, description, secret)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(tenant_id)
    .bind(&url)
    .bind(&events)
    .bind(&description)
    .bind(secret.expose())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((endpoint, secret))
}

/// One endpoint of the tenant.
pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Endpoint, EndpointError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?
    .ok_or(EndpointError::NotFound)
}

/// The tenant's endpoints, newest first.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    limit: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<Page<Endpoint>, EndpointError> {
    let (at, id) = after.unzip();
    let rows: Vec<Endpoint> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints
          WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
          ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(tenant_id)
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |e| {
        time_cursor(e.created_at, e.id)
    }))
}

/// Changes what `change` names.
pub async fn update(
    pool: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
    change: EndpointChange,
    allow_private: bool,
) -> Result<Endpoint, EndpointError> {
    let events = change.events.as_deref().map(checked_events).transpose()?;
    let description = change.description.map(checked_description).transpose()?;
    let url = match &change.url {
        Some(raw) => Some(checked_url(raw, allow_private).await?),
        None => None,
    };
    sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET
                url = coalesce($3, url),
                events = coalesce($4, events),
                description = CASE WHEN $5 THEN $6 ELSE description END,
                enabled = coalesce($7, enabled),
                disabled_reason = CASE WHEN $7 THEN NULL ELSE disabled_reason END,
                updated_at = now()
          WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(tenant_id)
    .bind(url)
    .bind(events)
    .bind(description.is_some())
    .bind(description.flatten())
    .bind(change.enabled)
    .fetch_optional(pool)
    .await?
    .ok_or(EndpointError::NotFound)
}

/// Deletes an endpoint with its queue and log.
pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<(), EndpointError> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant_id)
        .execute(pool)
        .await?
        .rows_affected();
    if done == 0 {
        return Err(EndpointError::NotFound);
    }
    Ok(())
}

/// A new secret; the current one keeps signing beside it for [`ROTATION_OVERLAP`] (a secret
/// rotated out earlier stops at once).
pub async fn rotate_secret(
    pool: &PgPool,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<(Endpoint, SigningSecret), EndpointError> {
    let secret = SigningSecret::generate();
    let endpoint = sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET previous_secret = secret,
                previous_secret_expires_at = now() + make_interval(secs => $3),
                secret = $4, updated_at = now()
          WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(tenant_id)
    .bind(ROTATION_OVERLAP.num_seconds() as f64)
    .bind(secret.expose())
    .fetch_optional(pool)
    .await?
    .ok_or(EndpointError::NotFound)?;
    Ok((endpoint, secret))
}

/// Whether an endpoint subscribed to `event_type`.
pub fn wants(events: &[String], event_type: &str) -> bool {
    events.iter().any(|e| e == ALL_EVENTS || e == event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn event_filters_are_known_types_or_everything() {
        assert_eq!(
            checked_events(&strings(&[
                "session.status",
                "delivery.status",
                "delivery.status"
            ]))
            .expect("valid"),
            strings(&["delivery.status", "session.status"])
        );
        assert_eq!(
            checked_events(&strings(&["delivery.status", "*"])).expect("valid"),
            strings(&["*"])
        );
        assert!(checked_events(&[]).is_err());
        assert!(checked_events(&strings(&["campaign.progress"])).is_err());
        assert!(checked_events(&strings(&["delivery.*"])).is_err());
        assert!(event_types().contains(&"contact.opted_out"));
        assert!(wants(&strings(&["*"]), "message.received"));
        assert!(wants(&strings(&["delivery.status"]), "delivery.status"));
        assert!(!wants(&strings(&["delivery.status"]), "session.status"));
    }
}
