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

/// Parses [`time_cursor`]; `None` for anything else, also for an instant PostgreSQL cannot
/// compare with (see [`cursor_instant`]).
pub fn parse_time_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = cursor.split_once('_')?;
    Some((cursor_instant(micros)?, id.parse().ok()?))
}

/// Unix microseconds of a cursor as an instant of the years 1 to 9999. chrono reaches far wider
/// than PostgreSQL's `timestamptz` (4713 BC to 294276 AD), and a wider instant bound to a query
/// is a database error, not an empty page; no row Herald writes lies outside these years.
pub fn cursor_instant(micros: &str) -> Option<DateTime<Utc>> {
    const FIRST: i64 = -62_135_596_800_000_000; // 0001-01-01T00:00:00Z
    const LAST: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
    let micros: i64 = micros.parse().ok()?;
    if !(FIRST..=LAST).contains(&micros) {
        return None;
    }
    DateTime::from_timestamp_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_cursors_round_trip_and_refuse_instants_postgres_cannot_hold() {
        let at = DateTime::parse_from_rfc3339("2026-12-04T03:04:05.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = Uuid::new_v4();
        assert_eq!(parse_time_cursor(&time_cursor(at, id)), Some((at, id)));
        let id = id.simple();
        for micros in [
            "-8000000000000000000",
            "9223372036854775807",
            "-9223372036854775808",
            "99999999999999999999",
            "-62135596800000001",
            "253402300800000000",
            "",
            "+-1",
        ] {
            assert_eq!(
                parse_time_cursor(&format!("{micros}_{id}")),
                None,
                "{micros}"
            );
        }
        assert!(parse_time_cursor(&format!("-62135596800000000_{id}")).is_some());
        assert!(parse_time_cursor(&format!("253402300799999999_{id}")).is_some());
        assert_eq!(parse_time_cursor("1_not-a-uuid"), None);
    }
}
