//! "typing…" before paced sends (docs/safe-sending.md, "Number safety"): a number with
//! `safety.typing` shows the chat as composing (`Gateway::set_typing`) before each paced campaign
//! send, for about the time a person takes to type the text (3 characters a second, 1–8 s),
//! never longer than the pacing interval drawn for the send; the interval that follows the send is
//! shortened by that time, so typing happens inside the pace, not on top of it.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use super::{Claimed, Dispatcher};

/// Characters a person types per second.
const CHARS_PER_SECOND: u64 = 3;
const MIN_TYPING: Duration = Duration::from_secs(1);
const MAX_TYPING: Duration = Duration::from_secs(8);

/// Marks the paced campaign recipients whose number types first, in one query for the batch.
pub(super) async fn mark(conn: &mut PgConnection, claimed: &mut [Claimed]) -> sqlx::Result<()> {
    let mut sessions: Vec<Uuid> = claimed
        .iter()
        .filter(|c| c.is_campaign() && c.pacing.is_paced())
        .map(|c| c.session_id)
        .collect();
    if sessions.is_empty() {
        return Ok(());
    }
    sessions.sort();
    sessions.dedup();
    let typing: Vec<Uuid> = sqlx::query_scalar(
        "SELECT session_id FROM session_safety WHERE session_id = ANY($1) AND typing",
    )
    .bind(&sessions)
    .fetch_all(&mut *conn)
    .await?;
    for c in claimed.iter_mut() {
        c.typing = c.is_campaign() && c.pacing.is_paced() && typing.contains(&c.session_id);
    }
    Ok(())
}

/// How long "typing…" shows before `text` is sent, within a pacing interval of `interval_ms`.
pub fn typing_time(text: &str, interval_ms: i32) -> Duration {
    let chars = text.chars().count() as u64;
    let natural =
        Duration::from_millis(chars * 1000 / CHARS_PER_SECOND).clamp(MIN_TYPING, MAX_TYPING);
    natural.min(Duration::from_millis(
        u64::try_from(interval_ms).unwrap_or(0),
    ))
}

impl Dispatcher {
    /// Shows "typing…" for `c` and waits it out; returns the time spent. Typing is a courtesy: a
    /// gateway that refuses it never stops the send.
    pub(super) async fn show_typing(&self, c: &Claimed, text: &str) -> Duration {
        let wait = typing_time(text, c.interval_ms);
        if wait.is_zero() {
            return wait;
        }
        // "typing…" is WuzAPI's (a Cloud API number has no presence to show)
        let Ok(Some(session)) = self.token(c.session_id).await else {
            return Duration::ZERO;
        };
        if session.cloud {
            return Duration::ZERO;
        }
        if let Err(e) = self
            .gateway
            .set_typing(&session.token, &c.phone, true)
            .await
        {
            tracing::debug!(error = %e, "typing not shown");
            return Duration::ZERO;
        }
        tokio::time::sleep(wait).await;
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_grows_with_the_text_from_one_to_eight_seconds_inside_the_interval() {
        assert_eq!(typing_time("Hi", 10_000), Duration::from_secs(1));
        assert_eq!(typing_time(&"a".repeat(12), 10_000), Duration::from_secs(4));
        assert_eq!(
            typing_time(&"a".repeat(300), 10_000),
            Duration::from_secs(8)
        );
        assert_eq!(
            typing_time(&"a".repeat(300), 2_500),
            Duration::from_millis(2_500)
        );
        assert_eq!(typing_time("Hi", 0), Duration::ZERO);
    }
}
