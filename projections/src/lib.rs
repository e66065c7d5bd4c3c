//! Herald's read side: the projector runtime and the read models with their queries.
//!
//! Layout
//! - [`runtime`]: tailing the event store in commit-safe order, checkpoints, advisory locks,
//!   rebuilds, and waiting for a projector to catch up (read-your-writes in the API).
//! - [`templates`], [`sessions`], [`campaigns`], [`contacts`], [`conversations`]: one projector
//!   and its queries each. Every query takes the caller's tenant: another tenant's row is simply
//!   not found.
//! - [`maintenance`]: what `herald projections ...` does (list, rebuild, parked, retry).
//! - [`notify`], [`notifier`]: real-time notifications derived from committed events (not a read
//!   model: it is not in [`all`], so a rebuild never replays history to live subscribers).
pub mod campaigns;
pub mod contacts;
pub mod conversations;
pub mod maintenance;
pub mod notifier;
pub mod notify;
pub mod runtime;
pub mod sessions;
pub mod templates;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use runtime::{Projector, RunnerConfig, StoredEvent, Wakeup};

/// Every projector Herald runs, by name.
pub fn all() -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(templates::TemplatesProjector),
        Arc::new(sessions::SessionsProjector),
        Arc::new(campaigns::CampaignProgressProjector),
        Arc::new(contacts::ContactsProjector),
        Arc::new(conversations::ConversationsProjector),
    ]
}

/// One page of a list and the cursor of the next (`None` at the end).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `rows` was fetched with `limit + 1` to learn whether another page exists.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more { rows.last().map(cursor) } else { None };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// Cursor of a newest-first list: `<unix micros>_<uuid>`.
pub fn time_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}_{}", at.timestamp_micros(), id.simple())
}

/// Parses [`time_cursor`]; `None` for anything else.
pub fn parse_time_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = cursor.split_once('_')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, id.parse().ok()?))
}
