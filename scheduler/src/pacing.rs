//! Pacing per linked number (docs/decisions/0010): a random interval between
//! `min_interval_ms` and `max_interval_ms` between two sends of one session, 0/0 for none.
//!
//! The session's next allowed send time lives in `session_pacing`; the dispatcher's claim locks
//! that row and moves it on in the claim's transaction, so the pace holds across instances.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

/// The longest interval accepted (one hour).
pub const MAX_INTERVAL_MS: i64 = 3_600_000;

/// Conservative default for a WuzAPI number: bulk sends get numbers banned.
pub const DEFAULT: Pacing = Pacing {
    min_interval_ms: 3_000,
    max_interval_ms: 8_000,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pacing {
    pub min_interval_ms: i32,
    pub max_interval_ms: i32,
}

/// The request shape: numbers checked before they become a [`Pacing`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacingInput {
    pub min_interval_ms: Option<serde_json::Value>,
    pub max_interval_ms: Option<serde_json::Value>,
}

/// Why a pacing is not valid: (field, message).
pub type PacingError = (String, String);

impl Pacing {
    pub const NONE: Pacing = Pacing {
        min_interval_ms: 0,
        max_interval_ms: 0,
    };

    pub fn is_paced(&self) -> bool {
        self.max_interval_ms > 0
    }

    /// Checks a request's `pacing` object; `prefix` names it in errors (`pacing`).
    pub fn from_input(prefix: &str, input: &PacingInput) -> Result<Pacing, PacingError> {
        let field = |name: &str, v: &Option<serde_json::Value>| -> Result<i32, PacingError> {
            let path = format!("{prefix}.{name}");
            let v = v
                .as_ref()
                .ok_or_else(|| (path.clone(), "is required".to_string()))?;
            let n = v.as_i64().ok_or_else(|| {
                (
                    path.clone(),
                    "must be a whole number of milliseconds".to_string(),
                )
            })?;
            if n < 0 {
                return Err((path, "must not be negative".into()));
            }
            if n > MAX_INTERVAL_MS {
                return Err((
                    path,
                    format!("must be at most {MAX_INTERVAL_MS} (one hour)"),
                ));
            }
            Ok(n as i32)
        };
        let min = field("min_interval_ms", &input.min_interval_ms)?;
        let max = field("max_interval_ms", &input.max_interval_ms)?;
        if min > max {
            return Err((
                format!("{prefix}.min_interval_ms"),
                "must not be greater than max_interval_ms".into(),
            ));
        }
        Ok(Pacing {
            min_interval_ms: min,
            max_interval_ms: max,
        })
    }
}

/// Sets a session's pacing (a new session's, or a change): queued recipients that follow the
/// session's pacing take the new one at once.
pub async fn set_session(
    conn: &mut PgConnection,
    session_id: Uuid,
    tenant_id: Uuid,
    pacing: Pacing,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO session_pacing (session_id, tenant_id, min_interval_ms, max_interval_ms)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (session_id) DO UPDATE
            SET min_interval_ms = $3, max_interval_ms = $4, updated_at = now(),
                -- the new pace applies from now: a slot reserved at the old pace ends no later
                -- than the new maximum
                next_at = LEAST(session_pacing.next_at,
                                now() + make_interval(secs => $4 / 1000.0))",
    )
    .bind(session_id)
    .bind(tenant_id)
    .bind(pacing.min_interval_ms)
    .bind(pacing.max_interval_ms)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE dispatch_queue SET pace_min_ms = $2, pace_max_ms = $3
          WHERE session_id = $1 AND pace_from_session",
    )
    .bind(session_id)
    .bind(pacing.min_interval_ms)
    .bind(pacing.max_interval_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A session's pacing; `None` for a session linked before pacing existed (unpaced).
pub async fn of_session(conn: &mut PgConnection, session_id: Uuid) -> sqlx::Result<Option<Pacing>> {
    let row: Option<(i32, i32)> = sqlx::query_as(
        "SELECT min_interval_ms, max_interval_ms FROM session_pacing WHERE session_id = $1",
    )
    .bind(session_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(min, max)| Pacing {
        min_interval_ms: min,
        max_interval_ms: max,
    }))
}

/// Pacing of several sessions at once (for lists).
pub async fn of_sessions(
    pool: &sqlx::PgPool,
    sessions: &[Uuid],
) -> sqlx::Result<std::collections::HashMap<Uuid, Pacing>> {
    let rows: Vec<(Uuid, i32, i32)> = sqlx::query_as(
        "SELECT session_id, min_interval_ms, max_interval_ms FROM session_pacing
          WHERE session_id = ANY($1)",
    )
    .bind(sessions)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, min, max)| {
            (
                id,
                Pacing {
                    min_interval_ms: min,
                    max_interval_ms: max,
                },
            )
        })
        .collect())
}

/// A campaign's own pacing, if it overrides its session's.
pub async fn of_campaign(
    conn: &mut PgConnection,
    campaign_id: Uuid,
) -> sqlx::Result<Option<Pacing>> {
    let row: Option<(i32, i32)> = sqlx::query_as(
        "SELECT min_interval_ms, max_interval_ms FROM campaign_pacing WHERE campaign_id = $1",
    )
    .bind(campaign_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(min, max)| Pacing {
        min_interval_ms: min,
        max_interval_ms: max,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(min: serde_json::Value, max: serde_json::Value) -> PacingInput {
        PacingInput {
            min_interval_ms: Some(min),
            max_interval_ms: Some(max),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let ok = Pacing::from_input("pacing", &input(json!(300), json!(600)));
        assert_eq!(
            ok,
            Ok(Pacing {
                min_interval_ms: 300,
                max_interval_ms: 600
            })
        );
        assert_eq!(
            Pacing::from_input("pacing", &input(json!(0), json!(0))),
            Ok(Pacing::NONE)
        );
        let field = |a, b| Pacing::from_input("pacing", &input(a, b)).unwrap_err().0;
        assert_eq!(field(json!(700), json!(600)), "pacing.min_interval_ms");
        assert_eq!(field(json!(-1), json!(600)), "pacing.min_interval_ms");
        assert_eq!(field(json!(1), json!(3_600_001)), "pacing.max_interval_ms");
        assert_eq!(field(json!(1.5), json!(2)), "pacing.min_interval_ms");
        assert_eq!(field(json!(1), json!("2")), "pacing.max_interval_ms");
    }
}
