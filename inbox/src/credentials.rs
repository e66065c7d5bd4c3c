//! The webhook endpoint's view of a session's credentials (its tenant and HMAC key), cached.
//!
//! A gateway posts receipts by the thousand per second for one session, and each post needs the
//! session's tenant and key before anything else. A session's credentials are written once when it
//! is linked and never change (a number linked again is a new session with a new key); they only
//! disappear when the session is deleted. So the endpoint keeps them in memory for a short while
//! instead of reading `session_credentials` on every post:
//!
//! - an entry lives [`TTL`]; a deleted session is forgotten at once by the instance that deleted
//!   it, and by the others within [`TTL`] (until then their posts are still verified with the old
//!   key and stored; the processor finds no session and ignores them, as for any late post);
//! - only sessions that exist are cached, so unknown ids cannot grow the map, and the map is
//!   emptied when it reaches [`MAX_ENTRIES`] (a bound, not an eviction policy: it refills at once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{PgPool, Row};
use uuid::Uuid;

/// How long a session's credentials are used without reading them again.
pub const TTL: Duration = Duration::from_secs(10);
/// Most sessions kept at once.
const MAX_ENTRIES: usize = 100_000;

/// What the webhook endpoint needs to know about a session.
#[derive(Debug)]
pub struct WebhookCredentials {
    pub tenant_id: Uuid,
    /// `None` for sessions linked before Herald set keys: their posts are accepted unsigned.
    pub hmac_key: Option<String>,
}

#[derive(Default)]
pub struct CredentialCache {
    entries: Mutex<HashMap<Uuid, (Instant, Arc<WebhookCredentials>)>>,
}

impl CredentialCache {
    /// The session's credentials, from memory when read less than [`TTL`] ago; `None` when
    /// Herald has no such session.
    pub async fn get(
        &self,
        pool: &PgPool,
        session_id: Uuid,
    ) -> Result<Option<Arc<WebhookCredentials>>, sqlx::Error> {
        if let Some(found) = self.cached(session_id) {
            return Ok(Some(found));
        }
        let Some(row) = sqlx::query(
            "SELECT tenant_id, hmac_key FROM session_credentials WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_optional(pool)
        .await?
        else {
            return Ok(None);
        };
        let credentials = Arc::new(WebhookCredentials {
            tenant_id: row.try_get("tenant_id")?,
            hmac_key: row.try_get("hmac_key")?,
        });
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(session_id, (Instant::now(), credentials.clone()));
        Ok(Some(credentials))
    }

    /// Drops the session's entry (its credentials were deleted).
    pub fn forget(&self, session_id: Uuid) {
        self.lock().remove(&session_id);
    }

    fn cached(&self, session_id: Uuid) -> Option<Arc<WebhookCredentials>> {
        let entries = self.lock();
        entries
            .get(&session_id)
            .filter(|(read_at, _)| read_at.elapsed() < TTL)
            .map(|(_, credentials)| credentials.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, Arc<WebhookCredentials>)>> {
        // a panic while holding this lock cannot leave the map half-updated: use it as it is
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
