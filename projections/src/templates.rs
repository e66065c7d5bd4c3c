//! Read model of templates: `templates` table and its tenant-scoped queries.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use herald_domain::template::{ImageRef, Template, TemplateEvent};
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
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[Template::TYPE])
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
                    image,
                    at,
                } => {
                    let image = ImageColumns::from(image.as_ref());
                    sqlx::query(
                        "INSERT INTO templates (id, tenant_id, name, kind, body, caption, image_url, status, created_at, updated_at,
                                                image_sha256, image_width, image_height, image_bytes)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(tenant_id)
                    .bind(name)
                    .bind(kind.as_str())
                    .bind(body.map(String::from))
                    .bind(caption.map(String::from))
                    .bind(image_url)
                    .bind(at)
                    .bind(image.sha256)
                    .bind(image.width)
                    .bind(image.height)
                    .bind(image.bytes)
                    .execute(&mut *conn)
                    .await?;
                }
                TemplateEvent::TemplateUpdated {
                    name,
                    body,
                    caption,
                    status,
                    image,
                    at,
                } => {
                    let replaced = image.is_some();
                    let source_url = image.as_ref().and_then(|i| i.source_url.clone());
                    let image = ImageColumns::from(image.as_ref());
                    sqlx::query(
                        "UPDATE templates SET name = COALESCE($2, name), body = COALESCE($3, body),
                                caption = COALESCE($4, caption), status = COALESCE($5, status), updated_at = $6,
                                image_url = CASE WHEN $7 THEN $8 ELSE image_url END,
                                image_sha256 = COALESCE($9, image_sha256), image_width = COALESCE($10, image_width),
                                image_height = COALESCE($11, image_height), image_bytes = COALESCE($12, image_bytes)
                          WHERE id = $1",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(body.map(String::from))
                    .bind(caption.map(String::from))
                    .bind(status.map(|s| s.as_str()))
                    .bind(at)
                    .bind(replaced)
                    .bind(source_url)
                    .bind(image.sha256)
                    .bind(image.width)
                    .bind(image.height)
                    .bind(image.bytes)
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

/// An image reference as the read model's nullable columns.
struct ImageColumns {
    sha256: Option<String>,
    width: Option<i32>,
    height: Option<i32>,
    bytes: Option<i64>,
}

impl From<Option<&ImageRef>> for ImageColumns {
    fn from(image: Option<&ImageRef>) -> Self {
        ImageColumns {
            sha256: image.map(|i| i.sha256.clone()),
            width: image.map(|i| i32::try_from(i.width).unwrap_or(i32::MAX)),
            height: image.map(|i| i32::try_from(i.height).unwrap_or(i32::MAX)),
            bytes: image.map(|i| i64::try_from(i.bytes).unwrap_or(i64::MAX)),
        }
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
    pub image_sha256: Option<String>,
    pub image_width: Option<i32>,
    pub image_height: Option<i32>,
    pub image_bytes: Option<i64>,
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
