//! The frequency cap (docs/safe-sending.md): at most `messages` campaign messages per contact
//! within `hours`, a tenant setting (`frequency_caps`; no row: no cap). The dispatcher counts and
//! enforces it at claim time (`dispatch/screen.rs`).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use herald_domain::DomainError;

/// The most hours a cap may span (30 days).
pub const MAX_HOURS: i32 = 720;
/// The most messages a cap may allow.
pub const MAX_MESSAGES: i32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequencyCap {
    pub messages: i32,
    pub hours: i32,
}

impl FrequencyCap {
    pub fn validated(self) -> Result<FrequencyCap, DomainError> {
        if !(1..=MAX_MESSAGES).contains(&self.messages) {
            return Err(DomainError::invalid(
                "frequency_cap.messages",
                &format!("must be between 1 and {MAX_MESSAGES}"),
            ));
        }
        if !(1..=MAX_HOURS).contains(&self.hours) {
            return Err(DomainError::invalid(
                "frequency_cap.hours",
                &format!("must be between 1 and {MAX_HOURS}"),
            ));
        }
        Ok(self)
    }
}

/// The tenant's cap, if it set one.
pub async fn load(pool: &PgPool, tenant_id: Uuid) -> sqlx::Result<Option<FrequencyCap>> {
    let row: Option<(i32, i32)> =
        sqlx::query_as("SELECT messages, hours FROM frequency_caps WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(messages, hours)| FrequencyCap { messages, hours }))
}

/// Sets (a validated cap) or removes (`None`) the tenant's cap. Removing it forgets the counts.
pub async fn save(pool: &PgPool, tenant_id: Uuid, cap: Option<FrequencyCap>) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    match cap {
        Some(cap) => {
            sqlx::query(
                "INSERT INTO frequency_caps (tenant_id, messages, hours) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id) DO UPDATE SET messages = EXCLUDED.messages,
                    hours = EXCLUDED.hours, updated_at = now()",
            )
            .bind(tenant_id)
            .bind(cap.messages)
            .bind(cap.hours)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM frequency_caps WHERE tenant_id = $1")
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM frequency_counts WHERE tenant_id = $1")
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_needs_at_least_one_message_and_one_hour() {
        let ok = FrequencyCap {
            messages: 2,
            hours: 24,
        };
        assert_eq!(ok.validated(), Ok(ok));
        for (messages, hours) in [(0, 24), (2, 0), (2, MAX_HOURS + 1), (-1, 5)] {
            assert!(FrequencyCap { messages, hours }.validated().is_err());
        }
    }
}
