//! Session events in the inbox (`Connected`, `Disconnected`, `LoggedOut`, `QR`, `QRTimeout`,
//! `ConnectFailure`): each moves the session's status through the `Session` aggregate, and a
//! `QR` keeps its image in `session_qr` (never in an event: events are published, and a QR code
//! lets whoever scans it take over the number).
//!
//! Order (docs/decisions/0015): a change is timed by the event's own `Timestamp` when it has one
//! and by when Herald received the post otherwise; the aggregate ignores a change older than the
//! one it last applied, and a `QR` for a connected number (posted before the scan, delivered
//! after `Connected`) changes nothing. Duplicates are harmless: the
//! inbox stores a retried body once, and a repeated status records nothing. The stored QR only
//! moves forward in receive time too.
//!
//! A `LoggedOut` or `Disconnected` that changed the status also halts the number for the circuit
//! breaker (`session_halts`); a `Connected` lifts that (docs/safe-sending.md).

use std::collections::HashMap;

use herald_domain::session::{Session, SessionCommand, SessionStatus};
use herald_domain::store;
use herald_domain::DomainError;
use herald_gateway::webhook::session::{self as events, SessionSignal};
use sqlx::PgConnection;

use super::{Action, Claimed, Disposition};

/// What a stored session event asks for. A post that cannot be understood is done (retrying
/// cannot fix it), with the reason as its note.
pub(super) fn classify(event_type: &str, event: &str) -> Action {
    let value = match herald_gateway::webhook::parse_event(event.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Action::Done(format!("malformed {event_type}: {e}")),
    };
    match events::parse_session_event(&value) {
        Ok(Some(update)) => Action::Session(update),
        Ok(None) => Action::Done(format!("ignored: {event_type} without a code")),
        Err(e) => Action::Done(format!("malformed {event_type}: {e}")),
    }
}

/// The status a signal means.
pub(super) fn status_of(signal: &SessionSignal) -> SessionStatus {
    match signal {
        SessionSignal::Connected => SessionStatus::Connected,
        SessionSignal::Disconnected | SessionSignal::QrTimeout => SessionStatus::Disconnected,
        SessionSignal::LoggedOut => SessionStatus::LoggedOut,
        SessionSignal::Qr(_) => SessionStatus::QrPending,
    }
}

/// Applies the batch's session events, oldest first, and records what became of each row.
pub(super) async fn apply(
    tx: &mut PgConnection,
    claimed: &[Claimed],
    dispositions: &mut HashMap<i64, Disposition>,
) -> anyhow::Result<()> {
    let mut ours: Vec<&Claimed> = claimed
        .iter()
        .filter(|c| matches!(c.action, Action::Session(_)))
        .collect();
    if ours.is_empty() {
        return Ok(());
    }
    ours.sort_by_key(|c| (c.received_at, c.id));
    let mut commands = Vec::with_capacity(ours.len());
    for c in &ours {
        let Action::Session(update) = &c.action else {
            continue;
        };
        let at = update.timestamp.unwrap_or(c.received_at);
        let command = match &update.signal {
            SessionSignal::Qr(_) => SessionCommand::QrShown { at },
            signal => SessionCommand::ChangeStatus {
                status: status_of(signal),
                at,
            },
        };
        commands.push((c.session_id.to_string(), command));
    }
    let outcomes = store::execute_batch::<Session>(&mut *tx, commands, &()).await?;
    // A QR code is kept only while the session waits for one: a code delivered after the
    // `Connected` that followed it is stale, and keeping it would only keep a secret around.
    let qr_sessions: Vec<String> = ours
        .iter()
        .filter(
            |c| matches!(&c.action, Action::Session(u) if matches!(u.signal, SessionSignal::Qr(_))),
        )
        .map(|c| c.session_id.to_string())
        .collect();
    let waiting_for_qr: std::collections::HashSet<String> = if qr_sessions.is_empty() {
        Default::default()
    } else {
        store::load_many::<Session>(&mut *tx, &qr_sessions)
            .await?
            .into_iter()
            .filter(|(_, (session, _))| session.status == SessionStatus::QrPending)
            .map(|(id, _)| id)
            .collect()
    };
    let mut changed = 0u64;
    for (c, outcome) in ours.iter().zip(outcomes) {
        let Action::Session(update) = &c.action else {
            continue;
        };
        let status = status_of(&update.signal).as_str();
        let note = match outcome {
            Ok(new) => {
                let waiting = waiting_for_qr.contains(&c.session_id.to_string());
                keep_qr(&mut *tx, c, &update.signal, waiting).await?;
                if !new.is_empty() {
                    halt_or_clear(&mut *tx, c.session_id, &update.signal).await?;
                }
                if new.is_empty() {
                    format!(
                        "session {status}: unchanged (same status, older than the last change, or a QR code for a connected number)"
                    )
                } else {
                    changed += 1;
                    format!("session {status}")
                }
            }
            // the session was deleted after the gateway posted: nothing to update
            Err(DomainError::NotFound) => "ignored: the session no longer exists".to_string(),
            Err(e) => format!("session event not applied: {e}"),
        };
        dispositions.insert(c.id, Disposition::Processed(note));
    }
    metrics::counter!("herald_webhook_session_events_total").increment(ours.len() as u64);
    metrics::counter!("herald_session_status_changes_total").increment(changed);
    Ok(())
}

/// The circuit breaker's signal (docs/safe-sending.md): a number that logged out or disconnected
/// is recorded in `session_halts`, where the dispatcher's claim finds it and pauses the number's
/// running campaigns; connecting again removes it (the campaigns stay paused until resumed).
/// Only a change that was applied counts: a stale or repeated event records nothing.
async fn halt_or_clear(
    conn: &mut PgConnection,
    session_id: uuid::Uuid,
    signal: &SessionSignal,
) -> sqlx::Result<()> {
    match signal {
        SessionSignal::LoggedOut | SessionSignal::Disconnected => {
            sqlx::query(
                "INSERT INTO session_halts (session_id, reason) VALUES ($1, 'session_disconnected')
                 ON CONFLICT (session_id) DO UPDATE SET since = now()",
            )
            .bind(session_id)
            .execute(conn)
            .await?;
        }
        SessionSignal::Connected => {
            sqlx::query("DELETE FROM session_halts WHERE session_id = $1")
                .bind(session_id)
                .execute(conn)
                .await?;
        }
        SessionSignal::Qr(_) | SessionSignal::QrTimeout => {}
    }
    Ok(())
}

/// A QR code is stored when the session waits for one and it is newer than the one kept;
/// anything that ends pairing (connected, logged out, timed out, disconnected) forgets the codes
/// received before it.
async fn keep_qr(
    conn: &mut PgConnection,
    claimed: &Claimed,
    signal: &SessionSignal,
    waiting_for_qr: bool,
) -> sqlx::Result<()> {
    match signal {
        SessionSignal::Qr(image) if waiting_for_qr => {
            store_qr(conn, claimed.session_id, image, claimed.received_at).await
        }
        SessionSignal::Qr(_) => Ok(()),
        _ => sqlx::query("DELETE FROM session_qr WHERE session_id = $1 AND received_at <= $2")
            .bind(claimed.session_id)
            .bind(claimed.received_at)
            .execute(conn)
            .await
            .map(|_| ()),
    }
}

/// Keeps `image` as the session's QR code unless a newer one is stored already.
pub async fn store_qr(
    conn: &mut PgConnection,
    session_id: uuid::Uuid,
    image: &str,
    received_at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO session_qr (session_id, qr_code, received_at) VALUES ($1, $2, $3)
         ON CONFLICT (session_id) DO UPDATE
            SET qr_code = EXCLUDED.qr_code, received_at = EXCLUDED.received_at
          WHERE session_qr.received_at <= EXCLUDED.received_at",
    )
    .bind(session_id)
    .bind(image)
    .bind(received_at)
    .execute(conn)
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_events_are_classified_by_their_meaning() {
        let qr =
            r#"{"type":"QR","event":"code","qrCodeBase64":"data:image/png;base64,iVBORw0KGgo="}"#;
        assert!(
            matches!(classify("QR", qr), Action::Session(u) if status_of(&u.signal) == SessionStatus::QrPending)
        );
        let bad = r#"{"type":"QR","event":"code","qrCodeBase64":"javascript:x"}"#;
        assert!(matches!(classify("QR", bad), Action::Done(n) if n.starts_with("malformed QR")));
        let success = r#"{"type":"QR","event":"success"}"#;
        assert!(matches!(classify("QR", success), Action::Done(n) if n.starts_with("ignored")));
        let out = r#"{"type":"LoggedOut","event":{"Reason":401}}"#;
        assert!(
            matches!(classify("LoggedOut", out), Action::Session(u) if status_of(&u.signal) == SessionStatus::LoggedOut)
        );
        assert!(
            matches!(classify("Connected", "{"), Action::Done(n) if n.starts_with("malformed"))
        );
    }
}
