//! When a campaign is sent (`send_at` read in `timezone`) and how it recurs (`recurrence`).
//!
//! Pure: no I/O and no clock. The current time is always passed in, so every rule here is
//! tested with fixed instants (docs/scheduling.md, docs/decisions/0006).
//!
//! Decisions, and why
//! - **Zones** are IANA names (chrono-tz, matched case-insensitively, reported in canonical
//!   spelling) or fixed offsets `±HH:MM` (also `±HHMM`, `±HH` and `Z`). A fixed offset never
//!   changes, so a marketer who types `+07:00` gets exactly that all year; an IANA name follows
//!   the zone's DST rules.
//! - **DST gap** (a local time that does not exist, e.g. 02:30 on the spring-forward night in
//!   New York): the *first valid instant after the gap* (03:00 EDT). The clock jumped over the
//!   wanted time, so the campaign goes out as soon as the clock has passed it, never an hour
//!   late and never rejected for a time that exists every other day of the year (Vixie cron
//!   does the same for its jobs).
//! - **DST overlap** (a local time that happens twice, e.g. 01:30 on the fall-back night):
//!   the *earlier* instant, and only that one: Herald promises not to send twice.
//! - **Past times**: a time up to [`PAST_SLACK_SECONDS`] (60 s) before `now` is accepted, because
//!   a form filled in at 09:00 for "09:00" reaches the server a few seconds later, and clocks
//!   differ a little; such a time is simply due at once. Earlier than that is an error.
//! - **Recurrence**: standard 5-field cron, parsed here (see [`Recurrence`] for why not a crate),
//!   never more often than every [`MIN_RECURRENCE_MINUTES`] minutes.
//!
//! Where each lives: zones and DST resolution in `schedule/zone.rs`, the `send_at` formats in
//! `schedule/send_at.rs`, send windows (days and hours when sending is allowed) in
//! `schedule/window.rs`, the cron language and its search in `schedule/cron.rs`; the limits,
//! [`ScheduleError`] and the small text helpers they share stay here.

mod cron;
mod send_at;
mod window;
mod zone;

pub use cron::{parse_recurrence, Recurrence};
pub use send_at::{parse_send_at, SendAt};
pub use window::{SendWindow, WindowError};
pub use zone::Zone;

use chrono::{DateTime, SecondsFormat, Utc};

/// Longest `send_at` or `recurrence` accepted. Every real input is far shorter; the cap keeps
/// error messages (which echo the input) and parsing work small whatever a client sends.
pub const MAX_INPUT_LEN: usize = 100;

/// Longest `timezone` accepted (the longest IANA name is about 30 characters).
pub const MAX_ZONE_LEN: usize = 64;

/// How far before `now` a `send_at` may lie and still be accepted (then it is due at once):
/// covers the time between a user picking "09:00" and the request arriving, and clock skew.
pub const PAST_SLACK_SECONDS: i64 = 60;

/// The hour a date given alone (`2026-11-22`) means: 09:00 local, as docs/scheduling.md says, a
/// business-hours default rather than midnight, when nobody reads WhatsApp.
pub const DATE_ALONE_HOUR: u32 = 9;

/// The shortest interval between two firings of a recurrence. Bulk campaigns every minute
/// get a WhatsApp number banned (docs/decisions/0010), and a campaign run takes longer than a
/// minute to send anyway, so runs would pile up; five minutes is still generous.
pub const MIN_RECURRENCE_MINUTES: u32 = 5;

/// Why a `send_at`, `timezone` or `recurrence` was refused. Each names the request field it
/// concerns ([`ScheduleError::field`]) so the API can answer 422 with the field named, and
/// its message says what to write instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("send_at is empty; leave it out or use \"now\" to send at once")]
    SendAtEmpty,
    #[error("send_at is too long (at most {} characters)", MAX_INPUT_LEN)]
    SendAtTooLong,
    #[error(
        "send_at {input:?} is not a time Herald understands; use now, YYYY-MM-DD HH:MM[:SS], \
         YYYY-MM-DDTHH:MM[:SS], an RFC 3339 timestamp such as 2026-11-22T09:00:00+07:00, \
         DD/MM/YYYY HH:MM, a date alone (YYYY-MM-DD, 09:00 that day) or a time alone (HH:MM)"
    )]
    SendAtUnrecognised { input: String },
    #[error("send_at {input:?} is not a real date and time: {reason}")]
    SendAtInvalid { input: String, reason: String },
    #[error(
        "send_at {input:?} is in the past ({}); pick a later time or use now",
        .at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    SendAtInPast { input: String, at: DateTime<Utc> },
    #[error(
        "timezone is required unless send_at is now or carries an offset \
         (an IANA name such as Asia/Jakarta, or an offset such as +07:00)"
    )]
    TimezoneRequired,
    #[error(
        "timezone is required with recurrence: the schedule is read in it \
         (an IANA name such as Asia/Jakarta, or an offset such as +07:00)"
    )]
    TimezoneRequiredForRecurrence,
    #[error(
        "timezone {input:?} is not a known IANA time zone (such as Asia/Jakarta) \
         or UTC offset (such as +07:00)"
    )]
    UnknownTimezone { input: String },
    #[error("recurrence {input:?} is not a valid 5-field cron schedule: {reason}")]
    RecurrenceInvalid { input: String, reason: String },
    #[error(
        "recurrence {input:?} fires every {minutes} minute(s); the minimum is {} minutes, \
         because bulk sends that often get WhatsApp numbers banned",
        MIN_RECURRENCE_MINUTES
    )]
    RecurrenceTooFrequent { input: String, minutes: u32 },
    #[error("recurrence {input:?} never fires: no such day exists (e.g. 30 February)")]
    RecurrenceNeverFires { input: String },
}

impl ScheduleError {
    /// The request field at fault: `"send_at"`, `"timezone"` or `"recurrence"`.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::SendAtEmpty
            | ScheduleError::SendAtTooLong
            | ScheduleError::SendAtUnrecognised { .. }
            | ScheduleError::SendAtInvalid { .. }
            | ScheduleError::SendAtInPast { .. } => "send_at",
            ScheduleError::TimezoneRequired
            | ScheduleError::TimezoneRequiredForRecurrence
            | ScheduleError::UnknownTimezone { .. } => "timezone",
            ScheduleError::RecurrenceInvalid { .. }
            | ScheduleError::RecurrenceTooFrequent { .. }
            | ScheduleError::RecurrenceNeverFires { .. } => "recurrence",
        }
    }
}

/// At most `max` characters of `s`, for echoing user input in messages (never splits a char).
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `s` as a number if it is `min..=max` ASCII digits (at most 9, so it cannot overflow).
fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Helpers shared by the unit tests of the submodules.
#[cfg(test)]
mod test_support {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use chrono_tz::Tz;
    use proptest::prelude::*;

    pub(super) fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    pub(super) fn at(send_at: &str, tz: Option<&str>, now: DateTime<Utc>) -> DateTime<Utc> {
        match parse_send_at(Some(send_at), tz, now) {
            Ok(SendAt::At(at)) => at,
            other => panic!("{send_at:?} in {tz:?}: {other:?}"),
        }
    }

    pub(super) fn err(
        send_at: Option<&str>,
        tz: Option<&str>,
        now: DateTime<Utc>,
    ) -> ScheduleError {
        match parse_send_at(send_at, tz, now) {
            Err(e) => e,
            Ok(ok) => panic!("{send_at:?} in {tz:?} should fail, got {ok:?}"),
        }
    }

    pub(super) fn zone(s: &str) -> Zone {
        Zone::parse(s).unwrap()
    }

    pub(super) fn rec(cron: &str, tz: &str) -> Recurrence {
        Recurrence::parse(cron, zone(tz)).unwrap_or_else(|e| panic!("{cron}: {e}"))
    }

    pub(super) fn rec_err(cron: &str) -> ScheduleError {
        Recurrence::parse(cron, Zone::Named(Tz::UTC)).expect_err(cron)
    }

    pub(super) const JAKARTA: Option<&str> = Some("Asia/Jakarta");

    pub(super) const ZONES: &[&str] = &[
        "UTC",
        "Asia/Jakarta",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Sao_Paulo",
        "Pacific/Apia",
        "Asia/Kathmandu",
        "+05:45",
        "-03:30",
    ];

    pub(super) const CRONS: &[&str] = &[
        "0 9 * * MON",
        "*/5 * * * *",
        "*/15 * * * *",
        "30 2 * * *",
        "30 1 * * *",
        "0 0 1 * *",
        "0 9 1 * MON",
        "15 2,3 * 3,10,11 SUN",
        "0 9 29 2 *",
        "0,30 0-3 * * *",
        "45 23 31 12 *",
    ];

    pub(super) fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 2020-01-01 .. 2040-01-01, to the second.
        (1_577_836_800i64..2_208_988_800i64).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }
}
