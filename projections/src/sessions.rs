//! Read model of linked numbers: `sessions` table and its tenant-scoped queries.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use herald_domain::session::{Session, SessionEvent};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::runtime::{Projector, StoredEvent};
use crate::Page;

pub struct SessionsProjector;

pub const NAME: &str = "sessions";

#[async_trait::async_trait]
impl Projector for SessionsProjector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn tables(&self) -> &'static [&'static str] {
        &["sessions"]
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[Session::TYPE])
    }
    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for e in events.iter().filter(|e| e.aggregate_type == Session::TYPE) {
            let id: Uuid = e.aggregate_id.parse()?;
            match e.parse::<SessionEvent>()? {
                SessionEvent::SessionLinked {
                    tenant_id,
                    name,
                    status,
                    at,
                } => {
                    sqlx::query(
                        "INSERT INTO sessions (id, tenant_id, name, status, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(tenant_id)
                    .bind(name)
                    .bind(status.as_str())
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                }
                SessionEvent::SessionStatusChanged { status, at } => {
                    sqlx::query("UPDATE sessions SET status = $2, updated_at = $3 WHERE id = $1")
                        .bind(id)
                        .bind(status.as_str())
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                }
                SessionEvent::SessionDeleted { .. } => {
                    sqlx::query("DELETE FROM sessions WHERE id = $1")
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub status: String,
    /// The Cloud API phone number id (from `session_credentials`), when the session has one.
    pub meta_phone_number_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as(
        "SELECT s.*, c.meta_phone_number_id FROM sessions s
           LEFT JOIN session_credentials c ON c.session_id = s.id
          WHERE s.tenant_id = $1 AND s.id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    limit: i64,
    cursor: Option<(DateTime<Utc>, Uuid)>,
) -> sqlx::Result<Page<SessionRow>> {
    let (at, id) = cursor.unzip();
    let rows: Vec<SessionRow> = sqlx::query_as(
        "SELECT s.*, c.meta_phone_number_id FROM sessions s
           LEFT JOIN session_credentials c ON c.session_id = s.id
          WHERE s.tenant_id = $1
            AND ($2::timestamptz IS NULL OR (s.created_at, s.id) < ($2, $3))
          ORDER BY s.created_at DESC, s.id DESC LIMIT $4",
    )
    .bind(tenant_id)
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| {
        crate::time_cursor(r.created_at, r.id)
    }))
}
