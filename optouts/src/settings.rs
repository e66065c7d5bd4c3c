//! A tenant's stop and start keywords and confirmation text (`opt_out_settings`; no row: the
//! defaults of `herald_domain::opt_out`).

use std::collections::HashMap;

use herald_domain::opt_out::OptOutSettings;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// The tenant's settings (the defaults when it never set any).
pub async fn load(pool: &PgPool, tenant_id: Uuid) -> sqlx::Result<OptOutSettings> {
    let mut conn = pool.acquire().await?;
    Ok(load_many(&mut conn, &[tenant_id])
        .await?
        .remove(&tenant_id)
        .unwrap_or_default())
}

/// The settings of every tenant given that has set some (one query); the others use the defaults.
pub async fn load_many(
    conn: &mut PgConnection,
    tenants: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, OptOutSettings>> {
    let rows = sqlx::query(
        "SELECT tenant_id, stop_keywords, start_keywords, confirmation_text
           FROM opt_out_settings WHERE tenant_id = ANY($1)",
    )
    .bind(tenants)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        out.insert(
            r.try_get("tenant_id")?,
            OptOutSettings {
                stop_keywords: r.try_get("stop_keywords")?,
                start_keywords: r.try_get("start_keywords")?,
                confirmation_text: r.try_get("confirmation_text")?,
            },
        );
    }
    Ok(out)
}

/// Stores settings that were validated (`OptOutSettings::validated`).
pub async fn save(pool: &PgPool, tenant_id: Uuid, settings: &OptOutSettings) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO opt_out_settings (tenant_id, stop_keywords, start_keywords, confirmation_text)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id) DO UPDATE SET stop_keywords = EXCLUDED.stop_keywords,
            start_keywords = EXCLUDED.start_keywords,
            confirmation_text = EXCLUDED.confirmation_text, updated_at = now()",
    )
    .bind(tenant_id)
    .bind(&settings.stop_keywords)
    .bind(&settings.start_keywords)
    .bind(&settings.confirmation_text)
    .execute(pool)
    .await?;
    Ok(())
}
