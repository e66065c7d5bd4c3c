//! Read model of templates: `templates` table and its tenant-scoped queries.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use herald_domain::template::{Template, TemplateEvent};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::runtime::{Projector, StoredEvent};
use crate::Page;

pub struct TemplatesProjector;

pub const NAME: &str = "templates";

#[async_trait::async_trait]
impl Projector for TemplatesProjector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn tables(&self) -> &'static [&'static str] {
        &["templates"]
    }
    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for e in events.iter().filter(|e| e.aggregate_type == Template::TYPE) {
            let id: Uuid = e.aggregate_id.parse()?;
            match e.parse::<TemplateEvent>()? {
                TemplateEvent::TemplateCreated {
                    tenant_id,
                    name,
                    kind,
                    body,
                    caption,
                    image_url,
                    at,
                } => {
                    sqlx::query(
                        "INSERT INTO templates (id, tenant_id, name, kind, body, caption, image_url, status, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $8) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(tenant_id)
                    .bind(name)
                    .bind(kind.as_str())
                    .bind(body.map(String::from))
                    .bind(caption.map(String::from))
                    .bind(image_url)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                }
                TemplateEvent::TemplateUpdated {
                    name,
                    body,
                    caption,
                    status,
                    at,
                } => {
                    sqlx::query(
                        "UPDATE templates SET name = COALESCE($2, name), body = COALESCE($3, body),
                                caption = COALESCE($4, caption), status = COALESCE($5, status), updated_at = $6
                          WHERE id = $1",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(body.map(String::from))
                    .bind(caption.map(String::from))
                    .bind(status.map(|s| s.as_str()))
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                }
                TemplateEvent::TemplateDeleted { .. } => {
                    sqlx::query("DELETE FROM templates WHERE id = $1")
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
pub struct TemplateRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub kind: String,
    pub body: Option<String>,
    pub caption: Option<String>,
    pub image_url: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> sqlx::Result<Option<TemplateRow>> {
    sqlx::query_as("SELECT * FROM templates WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Newest first; the cursor is the last item's `(created_at, id)`.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    limit: i64,
    cursor: Option<(DateTime<Utc>, Uuid)>,
) -> sqlx::Result<Page<TemplateRow>> {
    let (at, id) = cursor.unzip();
    let rows: Vec<TemplateRow> = sqlx::query_as(
        "SELECT * FROM templates WHERE tenant_id = $1
            AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
          ORDER BY created_at DESC, id DESC LIMIT $4",
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
