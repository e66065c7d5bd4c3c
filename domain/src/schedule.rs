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
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime,
    SecondsFormat, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// The Gregorian calendar (dates and weekdays alike) repeats every 400 years, which is
/// 146 097 days: a day pattern that matches no day in that span never matches.
const GREGORIAN_CYCLE_DAYS: i64 = 146_097;

/// Real DST gaps are an hour or less; whole skipped days (Samoa, 2011) are 24 hours. The gap
/// search gives up after this many minutes, which no zone comes near.
const MAX_GAP_MINUTES: i64 = 26 * 60;

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

// ---------------------------------------------------------------------------------------------
// Zones
// ---------------------------------------------------------------------------------------------

/// A time zone as users give it: an IANA name (`Asia/Jakarta`) or a fixed offset (`+07:00`).
///
/// Parsing accepts IANA names in any letter case (`asia/jakarta`), and offsets written
/// `±HH:MM`, `±HHMM`, `±HH` or `Z` (UTC), up to ±18:00. [`Zone::name`] (also `Display` and
/// serde) gives the canonical form: the IANA spelling, or `±HH:MM` (`Z` becomes `+00:00`),
/// which parses back to an equal zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    Named(Tz),
    Fixed(FixedOffset),
}

impl Zone {
    /// Reads a zone as a user wrote it; surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Zone, ScheduleError> {
        let t = s.trim();
        let unknown = || ScheduleError::UnknownTimezone {
            input: clip(t, MAX_ZONE_LEN),
        };
        if t.is_empty() || t.len() > MAX_ZONE_LEN {
            return Err(unknown());
        }
        if t.starts_with(['+', '-']) || t.eq_ignore_ascii_case("z") {
            return parse_offset(t).map(Zone::Fixed).ok_or_else(unknown);
        }
        if let Ok(tz) = t.parse::<Tz>() {
            return Ok(Zone::Named(tz));
        }
        // chrono-tz's own case-insensitive lookup needs its build-time code generator; a
        // scan of the ~600 names on a rare misspelt-case input costs nothing in comparison.
        chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(t))
            .map(|tz| Zone::Named(*tz))
            .ok_or_else(unknown)
    }

    /// The canonical spelling: `Asia/Jakarta` or `+07:00`.
    pub fn name(&self) -> String {
        match self {
            Zone::Named(tz) => tz.name().to_owned(),
            Zone::Fixed(offset) => {
                let secs = offset.local_minus_utc();
                let sign = if secs < 0 { '-' } else { '+' };
                let abs = secs.unsigned_abs();
                format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
            }
        }
    }

    /// The wall-clock time in this zone at `instant`.
    pub fn to_local(&self, instant: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Named(tz) => instant.with_timezone(tz).naive_local(),
            Zone::Fixed(offset) => instant.with_timezone(offset).naive_local(),
        }
    }

    /// The instant a wall-clock time in this zone stands for. A time in a DST gap resolves to
    /// the first valid instant after the gap; a time in a DST overlap to the earlier of its two
    /// instants (see the module docs for why). `None` only at the edges of chrono's range.
    ///
    /// This mapping never decreases as `local` increases, which is what makes
    /// [`Recurrence::next_after`] monotonic.
    pub fn resolve_local(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            Zone::Fixed(offset) => offset
                .from_local_datetime(&local)
                .earliest()
                .map(|at| at.with_timezone(&Utc)),
            Zone::Named(tz) => match tz.from_local_datetime(&local) {
                LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
                LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
                LocalResult::None => first_instant_after_gap(tz, local),
            },
        }
    }
}

/// `local` lies in a gap of `tz`: find the first wall-clock time after it that exists (the end
/// of the gap) and return its instant. Gaps start and end on whole minutes in every modern
/// rule, so minutes are stepped first; the final seconds loop only matters for odd historical
/// (local mean time) transitions.
fn first_instant_after_gap(tz: &Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let floor = local.with_second(0)?.with_nanosecond(0)?;
    for k in 1..=MAX_GAP_MINUTES {
        let candidate = floor.checked_add_signed(Duration::minutes(k))?;
        if let Some(mut at) = tz.from_local_datetime(&candidate).earliest() {
            let mut end = candidate;
            for _ in 0..59 {
                let Some(prev) = end.checked_sub_signed(Duration::seconds(1)) else {
                    break;
                };
                match tz.from_local_datetime(&prev).earliest() {
                    Some(p) if prev > local => {
                        end = prev;
                        at = p;
                    }
                    _ => break,
                }
            }
            return Some(at.with_timezone(&Utc));
        }
    }
    None
}

/// `Z`, `±HH:MM`, `±HHMM` or `±HH`, at most 18 hours either way.
fn parse_offset(s: &str) -> Option<FixedOffset> {
    if s.eq_ignore_ascii_case("z") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    // ASCII only, so the byte slices below fall on character boundaries.
    if !rest.is_ascii() {
        return None;
    }
    let (h, m) = match rest.len() {
        2 => (digits(rest, 2, 2)?, 0),
        4 => (digits(&rest[..2], 2, 2)?, digits(&rest[2..], 2, 2)?),
        5 if rest.as_bytes()[2] == b':' => (digits(&rest[..2], 2, 2)?, digits(&rest[3..], 2, 2)?),
        _ => return None,
    };
    if m > 59 || h * 60 + m > 18 * 60 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60) as i32)
}

/// `s` as a number if it is `min..=max` ASCII digits (at most 9, so it cannot overflow).
fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for Zone {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Zone::parse(s)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Zone::parse(&s).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// send_at
// ---------------------------------------------------------------------------------------------

/// When to send, as resolved: now, or a UTC instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAt {
    Now,
    At(DateTime<Utc>),
}

impl SendAt {
    /// The instant to start: `now` for [`SendAt::Now`]. An `At` may be up to
    /// [`PAST_SLACK_SECONDS`] before `now`; it is then simply due.
    pub fn instant(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            SendAt::Now => now,
            SendAt::At(at) => at,
        }
    }
}

/// What the user wrote, before any zone is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Written {
    /// Carries its own offset (RFC 3339): needs no zone.
    Absolute(DateTime<FixedOffset>),
    LocalDateTime(NaiveDateTime),
    LocalDate(NaiveDate),
    LocalTime(NaiveTime),
}

/// Parses `send_at` as docs/scheduling.md lists, read in `timezone`, relative to `now`.
///
/// Accepted (surrounding whitespace ignored; `T`, `Z` and `now` in any case):
/// - absent or `now`: [`SendAt::Now`];
/// - `YYYY-MM-DD HH:MM[:SS]` and `YYYY-MM-DDTHH:MM[:SS]` (seconds may carry a fraction);
/// - the same followed by an offset, `Z` or `±HH:MM` (RFC 3339): the instant it names. If a
///   `timezone` is given as well, the offset in `send_at` wins, since it is the more specific
///   statement about this one instant (the zone still matters for `recurrence`);
/// - `DD/MM/YYYY HH:MM[:SS]` (the day first, as written in Indonesia and most of the world);
/// - a date alone, `YYYY-MM-DD` or `DD/MM/YYYY`: 09:00 local that day;
/// - a time alone, `HH:MM[:SS]`: today in the zone, or tomorrow if that is already past.
///
/// Refused: an empty string, more than [`MAX_INPUT_LEN`] characters, anything else, dates and
/// times that do not exist (`2026-02-30`, `25:00`), a wall-clock time without a timezone, an
/// unknown timezone (checked whenever one is given, even with `now`, because it is stored
/// with the campaign), and a time more than [`PAST_SLACK_SECONDS`] before `now`.
/// DST gaps and overlaps resolve as [`Zone::resolve_local`] says. Never panics.
pub fn parse_send_at(
    send_at: Option<&str>,
    timezone: Option<&str>,
    now: DateTime<Utc>,
) -> Result<SendAt, ScheduleError> {
    let written = match send_at.map(str::trim) {
        None => None,
        Some("") => return Err(ScheduleError::SendAtEmpty),
        Some(s) if s.len() > MAX_INPUT_LEN => return Err(ScheduleError::SendAtTooLong),
        Some(s) if s.eq_ignore_ascii_case("now") => None,
        Some(s) => Some((s, read_send_at(s)?)),
    };
    let zone = match timezone.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => Some(Zone::parse(t)?),
        None => None,
    };
    let Some((input, written)) = written else {
        return Ok(SendAt::Now);
    };
    let earliest_allowed = now
        .checked_sub_signed(Duration::seconds(PAST_SLACK_SECONDS))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let out_of_range = || ScheduleError::SendAtInvalid {
        input: input.to_owned(),
        reason: "it is outside the supported range of dates".to_owned(),
    };
    let need_zone = || zone.ok_or(ScheduleError::TimezoneRequired);
    let at = match written {
        Written::Absolute(at) => at.with_timezone(&Utc),
        Written::LocalDateTime(dt) => need_zone()?.resolve_local(dt).ok_or_else(out_of_range)?,
        Written::LocalDate(date) => {
            let nine = NaiveTime::from_hms_opt(DATE_ALONE_HOUR, 0, 0).ok_or_else(out_of_range)?;
            need_zone()?
                .resolve_local(date.and_time(nine))
                .ok_or_else(out_of_range)?
        }
        Written::LocalTime(time) => {
            let zone = need_zone()?;
            let today = zone.to_local(now).date();
            let at = zone
                .resolve_local(today.and_time(time))
                .ok_or_else(out_of_range)?;
            if at >= earliest_allowed {
                at
            } else {
                let tomorrow = today.succ_opt().ok_or_else(out_of_range)?;
                zone.resolve_local(tomorrow.and_time(time))
                    .ok_or_else(out_of_range)?
            }
        }
    };
    if at < earliest_allowed {
        return Err(ScheduleError::SendAtInPast {
            input: input.to_owned(),
            at,
        });
    }
    Ok(SendAt::At(at))
}

/// The shape of `send_at` (trimmed, non-empty, at most [`MAX_INPUT_LEN`] bytes, not `now`).
/// Shape errors are [`ScheduleError::SendAtUnrecognised`]; well-shaped values that name no
/// real date or time are [`ScheduleError::SendAtInvalid`].
fn read_send_at(s: &str) -> Result<Written, ScheduleError> {
    let unrecognised = || ScheduleError::SendAtUnrecognised {
        input: s.to_owned(),
    };
    // Only ASCII forms exist; checking first also makes every byte slice below safe.
    if !s.is_ascii() {
        return Err(unrecognised());
    }
    if s.contains('/') {
        let (date, time) = match s.split_once(' ') {
            Some((d, t)) => (d, Some(t.trim())),
            None => (s, None),
        };
        let date = read_dmy(date, s)?;
        return Ok(match time {
            Some(t) => Written::LocalDateTime(date.and_time(read_time(t, s)?)),
            None => Written::LocalDate(date),
        });
    }
    if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        let date = read_ymd(&s[..10], s)?;
        let rest = &s[10..];
        if rest.is_empty() {
            return Ok(Written::LocalDate(date));
        }
        if !matches!(rest.as_bytes()[0], b'T' | b't' | b' ') {
            return Err(unrecognised());
        }
        let rest = &rest[1..];
        let (time, offset) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
            (t, Some("Z"))
        } else if let Some(i) = rest.rfind(['+', '-']) {
            (&rest[..i], Some(&rest[i..]))
        } else {
            (rest, None)
        };
        let local = date.and_time(read_time(time.trim_end(), s)?);
        return match offset {
            None => Ok(Written::LocalDateTime(local)),
            Some(o) => {
                let offset = parse_offset(o).ok_or_else(|| ScheduleError::SendAtInvalid {
                    input: s.to_owned(),
                    reason: format!("{o:?} is not a UTC offset (use Z or ±HH:MM up to ±18:00)"),
                })?;
                offset
                    .from_local_datetime(&local)
                    .earliest()
                    .map(Written::Absolute)
                    .ok_or_else(|| ScheduleError::SendAtInvalid {
                        input: s.to_owned(),
                        reason: "it is outside the supported range of dates".to_owned(),
                    })
            }
        };
    }
    read_time(s, s).map(Written::LocalTime)
}

/// `YYYY-MM-DD` (exactly ten characters).
fn read_ymd(d: &str, input: &str) -> Result<NaiveDate, ScheduleError> {
    let b = d.as_bytes();
    let parts = if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        digits(&d[..4], 4, 4)
            .zip(digits(&d[5..7], 2, 2))
            .zip(digits(&d[8..], 2, 2))
    } else {
        None
    };
    let ((y, m), day) = parts.ok_or_else(|| ScheduleError::SendAtUnrecognised {
        input: input.to_owned(),
    })?;
    make_date(y, m, day, input)
}

/// `DD/MM/YYYY` (day and month may have one digit).
fn read_dmy(d: &str, input: &str) -> Result<NaiveDate, ScheduleError> {
    let mut it = d.split('/');
    let parts = match (it.next(), it.next(), it.next(), it.next()) {
        (Some(day), Some(m), Some(y), None) => {
            digits(day, 1, 2).zip(digits(m, 1, 2)).zip(digits(y, 4, 4))
        }
        _ => None,
    };
    let ((day, m), y) = parts.ok_or_else(|| ScheduleError::SendAtUnrecognised {
        input: input.to_owned(),
    })?;
    make_date(y, m, day, input)
}

fn make_date(y: u32, m: u32, d: u32, input: &str) -> Result<NaiveDate, ScheduleError> {
    // y has at most four digits, so the cast cannot wrap.
    NaiveDate::from_ymd_opt(y as i32, m, d).ok_or_else(|| ScheduleError::SendAtInvalid {
        input: input.to_owned(),
        reason: format!("there is no date {y:04}-{m:02}-{d:02}"),
    })
}

/// `H:MM`, `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fraction` (up to nine fraction digits).
fn read_time(t: &str, input: &str) -> Result<NaiveTime, ScheduleError> {
    let unrecognised = || ScheduleError::SendAtUnrecognised {
        input: input.to_owned(),
    };
    let mut it = t.split(':');
    let (h, m, s) = match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(m), s, None) => (h, m, s),
        _ => return Err(unrecognised()),
    };
    let h = digits(h, 1, 2).ok_or_else(unrecognised)?;
    let m = digits(m, 2, 2).ok_or_else(unrecognised)?;
    let (sec, nano) = match s {
        None => (0, 0),
        Some(s) => {
            let (whole, frac) = match s.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (s, None),
            };
            let whole = digits(whole, 2, 2).ok_or_else(unrecognised)?;
            let nano = match frac {
                None => 0,
                Some(f) => {
                    let n = digits(f, 1, 9).ok_or_else(unrecognised)?;
                    // f has 1..=9 digits, so the exponent is 0..=8.
                    n * 10u32.pow(9 - f.len() as u32)
                }
            };
            (whole, nano)
        }
    };
    NaiveTime::from_hms_nano_opt(h, m, sec, nano).ok_or_else(|| ScheduleError::SendAtInvalid {
        input: input.to_owned(),
        reason: format!(
            "{h:02}:{m:02}:{sec:02} is not a time of day (hours 00-23, minutes and seconds 00-59)"
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Recurrence
// ---------------------------------------------------------------------------------------------

/// A standard 5-field cron schedule (`minute hour day-of-month month day-of-week`) read in a
/// zone: `0 9 * * MON` in `Asia/Jakarta` is every Monday at 09:00 WIB.
///
/// Syntax, as Vixie cron: `*`, numbers, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (from `a`
/// to the field's end), comma lists, and three-letter names (`JAN`-`DEC`, `SUN`-`SAT`, any
/// case, also in ranges). Day of week is 0-7, both 0 and 7 meaning Sunday. When both
/// day-of-month and day-of-week are restricted a day matches if *either* does (`0 9 1 * MON`
/// fires on the 1st and on every Monday); when either field starts with `*`, both must match.
///
/// Refused, each with a message saying what to write instead: 6- and 7-field forms (seconds,
/// years: docs/scheduling.md promises 5-field cron, and nobody schedules a campaign to the second);
/// extensions (`L`, `W`, `#`, `?`, `@daily`) so that the accepted language stays the documented
/// one; schedules that fire more often than every [`MIN_RECURRENCE_MINUTES`] minutes on the
/// wall clock (checked as if every day matched; a DST jump can still shorten one interval a
/// year); and schedules that can never fire (`0 9 30 2 *`).
///
/// Why parsed here rather than by a crate: `croner` 3 (what tokio-cron-scheduler, Herald's
/// ticker, uses) answers "next after" an instant in a fall-back hour's second pass with an
/// instant *before* it (`*/15 * * * *` in America/New_York after 2026-11-01 01:10 EST gives
/// 01:15 EDT, 05:15Z < 06:10Z), so a scheduler asking for the occurrence after its last firing
/// would replay that hour: a double send. It also accepts 6/7 fields and the extensions above,
/// spends ~0.2 s searching on an impossible pattern per call, and does not expose the field
/// sets the interval check needs. The `cron` crate computes in one fixed offset. A strict
/// 5-field parser is small, and the search below (days, then the listed hours and minutes,
/// each candidate resolved in local time) is fast and exactly specified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RecurrenceRepr", into = "RecurrenceRepr")]
pub struct Recurrence {
    /// The five fields as written, joined by single spaces.
    cron: String,
    zone: Zone,
    spec: CronSpec,
}

/// The serde form: `{"cron": "0 9 * * MON", "timezone": "Asia/Jakarta"}`.
#[derive(Serialize, Deserialize)]
struct RecurrenceRepr {
    cron: String,
    timezone: Zone,
}

impl TryFrom<RecurrenceRepr> for Recurrence {
    type Error = ScheduleError;
    fn try_from(r: RecurrenceRepr) -> Result<Self, Self::Error> {
        Recurrence::parse(&r.cron, r.timezone)
    }
}

impl From<Recurrence> for RecurrenceRepr {
    fn from(r: Recurrence) -> Self {
        RecurrenceRepr {
            cron: r.cron,
            timezone: r.zone,
        }
    }
}

/// Parses a campaign's `recurrence` read in its `timezone`, as the API receives them. A zone
/// is required: defaulting to UTC would move a Jakarta marketer's 09:00 to 16:00.
pub fn parse_recurrence(
    recurrence: &str,
    timezone: Option<&str>,
) -> Result<Recurrence, ScheduleError> {
    let zone = match timezone.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => Zone::parse(t)?,
        None => return Err(ScheduleError::TimezoneRequiredForRecurrence),
    };
    Recurrence::parse(recurrence, zone)
}

impl Recurrence {
    /// Parses a 5-field cron schedule (see the type's docs for the language).
    pub fn parse(cron: &str, zone: Zone) -> Result<Recurrence, ScheduleError> {
        let trimmed = cron.trim();
        let invalid = |reason: String| ScheduleError::RecurrenceInvalid {
            input: clip(trimmed, MAX_INPUT_LEN),
            reason,
        };
        if trimmed.is_empty() {
            return Err(invalid("it is empty".to_owned()));
        }
        if trimmed.len() > MAX_INPUT_LEN {
            return Err(invalid(format!(
                "it is longer than {MAX_INPUT_LEN} characters"
            )));
        }
        if trimmed.starts_with('@') {
            return Err(invalid(
                "nicknames such as @daily are not supported; write the five fields, \
                 e.g. 0 9 * * * for every day at 09:00"
                    .to_owned(),
            ));
        }
        let fields: Vec<&str> = trimmed.split_ascii_whitespace().collect();
        match fields.len() {
            5 => {}
            n @ (6 | 7) => {
                return Err(invalid(format!(
                    "it has {n} fields; Herald takes standard 5-field cron \
                     (minute hour day-of-month month day-of-week) without seconds or years"
                )))
            }
            n => {
                return Err(invalid(format!(
                    "it has {n} field(s); expected 5: minute hour day-of-month month day-of-week"
                )))
            }
        }
        let spec = CronSpec::parse(&fields).map_err(invalid)?;
        let cron = fields.join(" ");
        if !spec.fires_ever() {
            return Err(ScheduleError::RecurrenceNeverFires { input: cron });
        }
        let minutes = spec.min_interval_minutes();
        if minutes < MIN_RECURRENCE_MINUTES {
            return Err(ScheduleError::RecurrenceTooFrequent {
                input: cron,
                minutes,
            });
        }
        Ok(Recurrence { cron, zone, spec })
    }

    /// The schedule as written (fields joined by single spaces).
    pub fn cron(&self) -> &str {
        &self.cron
    }

    /// The zone the schedule is read in.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The first occurrence strictly after `after`.
    ///
    /// Computed in local time each time, so DST is right: `0 9 * * MON` in Europe/Berlin is
    /// 08:00Z in winter and 07:00Z in summer. Candidates are the pattern's wall-clock times,
    /// each resolved by [`Zone::resolve_local`]: one in a DST gap fires at the end of the gap
    /// (several in the same gap fire once, together), one in an overlap fires at its earlier
    /// instant only, so the repeated hour is never replayed. The result is always later than
    /// `after` and never decreases as `after` increases. `None` only if the pattern would not
    /// fire within 400 years (impossible after [`Recurrence::parse`]) or at chrono's limits.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Every candidate at or before `after`'s own wall-clock time resolves at or before
        // `after` (resolution never decreases), so the search starts at the next whole minute.
        let local = self.zone.to_local(after);
        let start = local
            .with_second(0)?
            .with_nanosecond(0)?
            .checked_add_signed(Duration::minutes(1))?;
        let limit = start
            .date()
            .checked_add_signed(Duration::days(GREGORIAN_CYCLE_DAYS + 366))
            .unwrap_or(NaiveDate::MAX);
        let mut date = start.date();
        let mut from_minute = start.hour() * 60 + start.minute();
        while date <= limit {
            if !self.spec.month_matches(date.month()) {
                date = first_of_next_month(date)?;
                from_minute = 0;
                continue;
            }
            if self.spec.day_matches(date) {
                for minute_of_day in self.spec.times_from(from_minute) {
                    let time = NaiveTime::from_hms_opt(minute_of_day / 60, minute_of_day % 60, 0)?;
                    if let Some(at) = self.zone.resolve_local(date.and_time(time)) {
                        if at > after {
                            return Some(at);
                        }
                    }
                }
            }
            date = date.succ_opt()?;
            from_minute = 0;
        }
        None
    }
}

impl fmt::Display for Recurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.cron, self.zone)
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

/// The parsed fields as bit sets (bit `v` set when value `v` matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CronSpec {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    /// Bits 0 (Sunday) to 6 (Saturday); a 7 written by the user is folded into 0.
    weekdays: u64,
    /// Day-of-month / day-of-week written starting with `*` (Vixie cron's DOM_STAR/DOW_STAR):
    /// then both must match; otherwise either may.
    dom_star: bool,
    dow_star: bool,
}

struct FieldDef {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, ... (empty when the field has none).
    names: &'static [&'static str],
}

const MINUTE: FieldDef = FieldDef {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldDef = FieldDef {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldDef = FieldDef {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldDef = FieldDef {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DAY_OF_WEEK: FieldDef = FieldDef {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

impl CronSpec {
    fn parse(fields: &[&str]) -> Result<CronSpec, String> {
        let [minute, hour, dom, month, dow] = fields else {
            return Err("expected 5 fields".to_owned());
        };
        let mut weekdays = parse_field(dow, &DAY_OF_WEEK)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(CronSpec {
            minutes: parse_field(minute, &MINUTE)?,
            hours: parse_field(hour, &HOUR)?,
            days: parse_field(dom, &DAY_OF_MONTH)?,
            months: parse_field(month, &MONTH)?,
            weekdays,
            dom_star: dom.starts_with('*'),
            dow_star: dow.starts_with('*'),
        })
    }

    fn month_matches(&self, month: u32) -> bool {
        self.months & (1 << month) != 0
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if !self.month_matches(date.month()) {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The matching minutes of a day (`hour * 60 + minute`) from `from` on, in order.
    fn times_from(&self, from: u32) -> impl Iterator<Item = u32> + '_ {
        (0..24u32)
            .filter(move |h| self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60u32)
                    .filter(move |m| self.minutes & (1 << m) != 0)
                    .map(move |m| h * 60 + m)
            })
            .filter(move |t| *t >= from)
    }

    /// Whether some day matches. The calendar repeats every 400 years, so one cycle decides.
    fn fires_ever(&self) -> bool {
        let Some(mut date) = NaiveDate::from_ymd_opt(2000, 1, 1) else {
            return false;
        };
        for _ in 0..GREGORIAN_CYCLE_DAYS {
            if self.day_matches(date) {
                return true;
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => return false,
            }
        }
        false
    }

    /// The shortest wall-clock gap, in minutes, between two consecutive firings, assuming
    /// consecutive days may both match (conservative across midnight).
    fn min_interval_minutes(&self) -> u32 {
        let times: Vec<u32> = self.times_from(0).collect();
        let (Some(first), Some(last)) = (times.first(), times.last()) else {
            return u32::MAX;
        };
        let across_midnight = 24 * 60 - last + first;
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(across_midnight, u32::min)
    }
}

/// One field: a comma list of `*`, `v`, `a-b`, each optionally `/step`.
fn parse_field(text: &str, def: &FieldDef) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!(
                "the {} field {text:?} has an empty list item",
                def.name
            ));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let span = def.max - def.min + 1;
                let step = digits(s, 1, 2)
                    .filter(|n| (1..=span).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "the {} step in {item:?} must be a number from 1 to {span}",
                            def.name
                        )
                    })?;
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (def.min, def.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (field_value(a, def)?, field_value(b, def)?)
        } else {
            let v = field_value(range, def)?;
            // `a/n` runs from a to the end of the field, as in most crons.
            (v, if step.is_some() { def.max } else { v })
        };
        if lo > hi {
            return Err(format!(
                "the {} range {range:?} runs backwards; list the values instead (e.g. 5,6,0)",
                def.name
            ));
        }
        for v in (lo..=hi).step_by(step.unwrap_or(1) as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

fn field_value(s: &str, def: &FieldDef) -> Result<u32, String> {
    if let Some(v) = digits(s, 1, 2) {
        return if (def.min..=def.max).contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "{v} is out of range for {} ({}-{})",
                def.name, def.min, def.max
            ))
        };
    }
    if let Some(i) = def.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(def.min + i as u32);
    }
    let hint = if def.names.is_empty() {
        format!("a number {}-{}", def.min, def.max)
    } else {
        format!(
            "a number {}-{} or a name {}-{}",
            def.min,
            def.max,
            def.names[0],
            def.names[def.names.len() - 1]
        )
    };
    Err(format!(
        "{:?} is not a valid {} value (expected {hint})",
        clip(s, 20),
        def.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn at(send_at: &str, tz: Option<&str>, now: DateTime<Utc>) -> DateTime<Utc> {
        match parse_send_at(Some(send_at), tz, now) {
            Ok(SendAt::At(at)) => at,
            other => panic!("{send_at:?} in {tz:?}: {other:?}"),
        }
    }

    fn err(send_at: Option<&str>, tz: Option<&str>, now: DateTime<Utc>) -> ScheduleError {
        match parse_send_at(send_at, tz, now) {
            Err(e) => e,
            Ok(ok) => panic!("{send_at:?} in {tz:?} should fail, got {ok:?}"),
        }
    }

    fn zone(s: &str) -> Zone {
        Zone::parse(s).unwrap()
    }

    fn rec(cron: &str, tz: &str) -> Recurrence {
        Recurrence::parse(cron, zone(tz)).unwrap_or_else(|e| panic!("{cron}: {e}"))
    }

    fn rec_err(cron: &str) -> ScheduleError {
        Recurrence::parse(cron, Zone::Named(Tz::UTC)).expect_err(cron)
    }

    const JAKARTA: Option<&str> = Some("Asia/Jakarta");

    // ---- zones ----

    #[test]
    fn zones_parse_names_and_offsets() {
        assert_eq!(zone("Asia/Jakarta"), Zone::Named(Tz::Asia__Jakarta));
        assert_eq!(zone(" asia/JAKARTA ").name(), "Asia/Jakarta");
        assert_eq!(zone("UTC"), Zone::Named(Tz::UTC));
        let seven = Zone::Fixed(FixedOffset::east_opt(7 * 3600).unwrap());
        for s in ["+07:00", "+0700", "+07"] {
            assert_eq!(zone(s), seven, "{s}");
        }
        assert_eq!(seven.name(), "+07:00");
        assert_eq!(zone("-03:30").name(), "-03:30");
        assert_eq!(zone("Z").name(), "+00:00");
        assert_eq!(zone("z"), zone("+00:00"));
        assert_eq!(zone("+05:45").to_string(), "+05:45");
        for bad in [
            "Mars/Base",
            "",
            "  ",
            "+7",
            "+07:60",
            "+19:00",
            "07:00",
            "+07:00:00",
            "UTC+7",
            "WIB",
            "Asia/Jakarta/",
            "+٠٧:٠٠",
        ] {
            let e = Zone::parse(bad).expect_err(bad);
            assert_eq!(e.field(), "timezone", "{bad}");
        }
        let long = "A".repeat(500);
        match Zone::parse(&long) {
            Err(ScheduleError::UnknownTimezone { input }) => assert_eq!(input.len(), MAX_ZONE_LEN),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zone_serde_is_its_name() {
        let z = zone("asia/jakarta");
        assert_eq!(serde_json::to_string(&z).unwrap(), "\"Asia/Jakarta\"");
        assert_eq!(
            serde_json::from_str::<Zone>("\"+07:00\"").unwrap(),
            zone("+07:00")
        );
        assert!(serde_json::from_str::<Zone>("\"Mars/Base\"").is_err());
        assert_eq!(
            "Europe/Berlin".parse::<Zone>().unwrap(),
            Zone::Named(Tz::Europe__Berlin)
        );
    }

    #[test]
    fn dst_gap_resolves_to_end_of_gap_and_overlap_to_earlier() {
        let ny = zone("America/New_York");
        let local = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z).
        assert_eq!(
            ny.resolve_local(local("2026-03-08 02:30:00")),
            Some(utc(2026, 3, 8, 7, 0, 0))
        );
        assert_eq!(
            ny.resolve_local(local("2026-03-08 02:00:00")),
            Some(utc(2026, 3, 8, 7, 0, 0))
        );
        assert_eq!(
            ny.resolve_local(local("2026-03-08 01:59:59")),
            Some(utc(2026, 3, 8, 6, 59, 59))
        );
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens at 05:30Z and 06:30Z.
        assert_eq!(
            ny.resolve_local(local("2026-11-01 01:30:00")),
            Some(utc(2026, 11, 1, 5, 30, 0))
        );
        // Lord Howe Island moves by half an hour: 02:00 +10:30 becomes 02:30 +11:00.
        let lh = zone("Australia/Lord_Howe");
        let end = Tz::Australia__Lord_Howe
            .with_ymd_and_hms(2026, 10, 4, 2, 30, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(end, utc(2026, 10, 3, 15, 30, 0));
        assert_eq!(lh.resolve_local(local("2026-10-04 02:15:00")), Some(end));
    }

    // ---- send_at ----

    #[test]
    fn every_send_at_form_in_jakarta() {
        let now = utc(2026, 11, 1, 0, 0, 0);
        let nine_wib = utc(2026, 11, 22, 2, 0, 0);
        for s in [
            "2026-11-22 09:00",
            "2026-11-22 09:00:00",
            "2026-11-22T09:00",
            "2026-11-22T09:00:00",
            "2026-11-22t09:00:00",
            "  2026-11-22 9:00  ",
            "22/11/2026 09:00",
            "22/11/2026 9:00:00",
            "2026-11-22",
            "22/11/2026",
        ] {
            assert_eq!(at(s, JAKARTA, now), nine_wib, "{s}");
        }
        assert_eq!(
            at("2026-11-22 09:00:30", JAKARTA, now),
            utc(2026, 11, 22, 2, 0, 30)
        );
        let half = at("2026-11-22T09:00:00.5", JAKARTA, now);
        assert_eq!(half, nine_wib + Duration::milliseconds(500));
        // The same wall time in a fixed offset is the same instant.
        assert_eq!(at("2026-11-22 09:00", Some("+07:00"), now), nine_wib);
        assert_eq!(
            at("2026-11-22 09:00", Some("-03:30"), now),
            utc(2026, 11, 22, 12, 30, 0)
        );
        assert_eq!(
            at("2026-11-22 09:00", Some("Z"), now),
            utc(2026, 11, 22, 9, 0, 0)
        );
    }

    #[test]
    fn rfc3339_needs_no_zone_and_its_offset_wins() {
        let now = utc(2026, 11, 1, 0, 0, 0);
        let nine_wib = utc(2026, 11, 22, 2, 0, 0);
        for s in [
            "2026-11-22T09:00:00+07:00",
            "2026-11-22T09:00+07:00",
            "2026-11-22 09:00:00+0700",
            "2026-11-22T02:00:00Z",
            "2026-11-22t02:00:00z",
            "2026-11-21T23:00:00-03:00",
            "2026-11-22T09:00:00.000+07:00",
        ] {
            assert_eq!(at(s, None, now), nine_wib, "{s}");
            // A timezone given as well is validated but does not move the instant.
            assert_eq!(at(s, Some("America/New_York"), now), nine_wib, "{s}");
        }
        assert_eq!(
            err(Some("2026-11-22T09:00:00+07:00"), Some("Mars/Base"), now).field(),
            "timezone"
        );
    }

    #[test]
    fn now_and_absent() {
        let now = utc(2026, 11, 1, 0, 0, 0);
        for s in [None, Some("now"), Some(" NOW "), Some("Now")] {
            assert_eq!(parse_send_at(s, None, now), Ok(SendAt::Now), "{s:?}");
            assert_eq!(parse_send_at(s, JAKARTA, now), Ok(SendAt::Now), "{s:?}");
        }
        // An empty timezone counts as absent.
        assert_eq!(parse_send_at(Some("now"), Some(" "), now), Ok(SendAt::Now));
        assert_eq!(err(Some("now"), Some("Mars/Base"), now).field(), "timezone");
        assert_eq!(SendAt::Now.instant(now), now);
        assert_eq!(
            SendAt::At(utc(2027, 1, 1, 0, 0, 0)).instant(now),
            utc(2027, 1, 1, 0, 0, 0)
        );
    }

    #[test]
    fn time_alone_is_today_or_tomorrow() {
        // 08:00 WIB on Sunday 22 November.
        let now = utc(2026, 11, 22, 1, 0, 0);
        assert_eq!(at("09:00", JAKARTA, now), utc(2026, 11, 22, 2, 0, 0));
        assert_eq!(at("9:00", JAKARTA, now), utc(2026, 11, 22, 2, 0, 0));
        assert_eq!(at("07:30", JAKARTA, now), utc(2026, 11, 23, 0, 30, 0));
        assert_eq!(at("23:59:59", JAKARTA, now), utc(2026, 11, 22, 16, 59, 59));
        // "Today" is the zone's today: 23:00Z on the 21st is already the 22nd in Jakarta.
        let late = utc(2026, 11, 21, 23, 0, 0);
        assert_eq!(at("09:00", JAKARTA, late), utc(2026, 11, 22, 2, 0, 0));
        // Within the slack it is still today (due at once), beyond it tomorrow.
        assert_eq!(
            at("09:00", JAKARTA, utc(2026, 11, 22, 2, 0, 30)),
            utc(2026, 11, 22, 2, 0, 0)
        );
        assert_eq!(
            at("09:00", JAKARTA, utc(2026, 11, 22, 2, 2, 0)),
            utc(2026, 11, 23, 2, 0, 0)
        );
        // Tomorrow in New York is resolved with tomorrow's offset (DST ends on 1 November).
        let ny_now = utc(2026, 10, 31, 16, 0, 0); // 12:00 EDT on the 31st
        assert_eq!(
            at("09:00", Some("America/New_York"), ny_now),
            utc(2026, 11, 1, 14, 0, 0)
        );
    }

    #[test]
    fn date_alone_is_nine_local() {
        let now = utc(2026, 1, 1, 0, 0, 0);
        assert_eq!(
            at("2026-11-22", Some("Europe/Berlin"), now),
            utc(2026, 11, 22, 8, 0, 0)
        );
        assert_eq!(
            at("2026-07-01", Some("Europe/Berlin"), now),
            utc(2026, 7, 1, 7, 0, 0)
        );
        // Today's date after 09:00 local is in the past.
        let afternoon = utc(2026, 11, 22, 7, 0, 0); // 14:00 WIB
        let e = err(Some("2026-11-22"), JAKARTA, afternoon);
        assert!(matches!(e, ScheduleError::SendAtInPast { .. }), "{e:?}");
    }

    #[test]
    fn naive_time_without_zone_is_a_timezone_error() {
        let now = utc(2026, 11, 1, 0, 0, 0);
        for s in [
            "2026-11-22 09:00",
            "2026-11-22",
            "09:00",
            "22/11/2026 09:00",
        ] {
            for tz in [None, Some(""), Some("  ")] {
                let e = err(Some(s), tz, now);
                assert_eq!(e, ScheduleError::TimezoneRequired, "{s}");
                assert_eq!(e.field(), "timezone");
                assert!(e
                    .to_string()
                    .contains("required unless send_at is now or carries an offset"));
            }
        }
    }

    #[test]
    fn unknown_zone_is_a_timezone_error() {
        let now = utc(2026, 11, 1, 0, 0, 0);
        let e = err(Some("2026-11-22 09:00"), Some("Mars/Base"), now);
        assert_eq!(
            e,
            ScheduleError::UnknownTimezone {
                input: "Mars/Base".into()
            }
        );
        assert_eq!(e.field(), "timezone");
        assert!(e.to_string().contains("Mars/Base"), "{e}");
    }

    #[test]
    fn past_is_a_send_at_error_with_slack() {
        let now = utc(2026, 11, 22, 2, 0, 0); // 09:00 WIB
        let e = err(Some("2020-01-01 09:00"), JAKARTA, now);
        assert_eq!(e.field(), "send_at");
        assert!(e.to_string().contains("is in the past"), "{e}");
        assert!(e.to_string().contains("2020-01-01T02:00:00Z"), "{e}");
        assert_eq!(
            at("2026-11-22 08:59:01", JAKARTA, now),
            utc(2026, 11, 22, 1, 59, 1)
        );
        assert_eq!(
            at("2026-11-22T01:59:00Z", None, now),
            utc(2026, 11, 22, 1, 59, 0)
        );
        let e = err(Some("2026-11-22 08:58:59"), JAKARTA, now);
        assert!(matches!(e, ScheduleError::SendAtInPast { .. }), "{e:?}");
        let e = err(Some("2026-11-22T01:58:59Z"), None, now);
        assert!(matches!(e, ScheduleError::SendAtInPast { .. }), "{e:?}");
    }

    #[test]
    fn gibberish_and_impossible_dates_are_send_at_errors() {
        let now = utc(2026, 1, 1, 0, 0, 0);
        let unrecognised = [
            "tomorrow",
            "next tuesday",
            "2026-11-22X09:00",
            "2026/11/22 09:00",
            "22-11-2026 09:00",
            "2026-11-2209:00",
            "2026-1-22 09:00",
            "09",
            "9am",
            "09:0",
            "09:00:0",
            "09:00:00.",
            "09:00:00.1234567890",
            "22/11/26 09:00",
            "22/11/2026T09:00",
            "22/11/2026 09:00+07:00",
            "1/2/3/2026",
            "２０２６-11-22 09:00",
            "2026-11-22 09:00 UTC",
            "-",
            ":",
            "/",
        ];
        for s in unrecognised {
            let e = err(Some(s), JAKARTA, now);
            assert!(
                matches!(e, ScheduleError::SendAtUnrecognised { .. }),
                "{s}: {e:?}"
            );
            assert_eq!(e.field(), "send_at");
            assert!(e.to_string().contains("YYYY-MM-DD HH:MM"), "{e}");
        }
        let invalid = [
            "2026-02-30 09:00",
            "2026-02-29",
            "31/04/2026 09:00",
            "2026-13-01 09:00",
            "2026-00-10 09:00",
            "25:00",
            "2026-11-22 24:00",
            "2026-11-22 23:60",
            "2026-11-22 23:59:60",
            "2026-11-22T09:00:00+25:00",
            "2026-11-22T09:00:00+07:99",
            "2026-11-22T09:00:00+7",
            "2026-11-22T09:00:00+",
        ];
        for s in invalid {
            let e = err(Some(s), JAKARTA, now);
            assert!(
                matches!(e, ScheduleError::SendAtInvalid { .. }),
                "{s}: {e:?}"
            );
            assert_eq!(e.field(), "send_at");
        }
        assert!(err(Some("2026-02-30 09:00"), JAKARTA, now)
            .to_string()
            .contains("2026-02-30"));
        assert_eq!(err(Some(""), JAKARTA, now), ScheduleError::SendAtEmpty);
        assert_eq!(err(Some("   "), JAKARTA, now), ScheduleError::SendAtEmpty);
        let long = format!("2026-11-22 09:00{}", "0".repeat(200));
        assert_eq!(err(Some(&long), JAKARTA, now), ScheduleError::SendAtTooLong);
        // Shape errors come before a missing zone is reported.
        assert_eq!(err(Some("gibberish"), None, now).field(), "send_at");
    }

    #[test]
    fn dst_in_send_at() {
        let now = utc(2026, 1, 1, 0, 0, 0);
        let ny = Some("America/New_York");
        // Gap: 02:30 does not exist on 8 March; the first instant after the gap is 03:00 EDT.
        assert_eq!(at("2026-03-08 02:30", ny, now), utc(2026, 3, 8, 7, 0, 0));
        // Overlap: 01:30 happens twice on 1 November; the earlier (EDT) instant is used.
        assert_eq!(at("2026-11-01 01:30", ny, now), utc(2026, 11, 1, 5, 30, 0));
        // Either side of the changes, the ordinary offsets.
        assert_eq!(at("2026-03-07 09:00", ny, now), utc(2026, 3, 7, 14, 0, 0));
        assert_eq!(at("2026-03-09 09:00", ny, now), utc(2026, 3, 9, 13, 0, 0));
    }

    #[test]
    fn errors_name_their_fields() {
        let cases: Vec<(ScheduleError, &str)> = vec![
            (ScheduleError::SendAtEmpty, "send_at"),
            (ScheduleError::SendAtTooLong, "send_at"),
            (ScheduleError::TimezoneRequired, "timezone"),
            (ScheduleError::TimezoneRequiredForRecurrence, "timezone"),
            (rec_err("* * * * *"), "recurrence"),
            (rec_err("0 0 30 2 *"), "recurrence"),
            (rec_err("nope"), "recurrence"),
        ];
        for (e, field) in cases {
            assert_eq!(e.field(), field, "{e:?}");
            assert!(!e.to_string().is_empty());
        }
    }

    // ---- recurrence ----

    #[test]
    fn monday_nine_in_berlin_stays_nine_across_dst() {
        let r = rec("0 9 * * MON", "Europe/Berlin");
        // Clocks go forward on Sunday 29 March 2026.
        let mon23 = r.next_after(utc(2026, 3, 20, 12, 0, 0)).unwrap();
        assert_eq!(mon23, utc(2026, 3, 23, 8, 0, 0)); // 09:00 CET
        let mon30 = r.next_after(mon23).unwrap();
        assert_eq!(mon30, utc(2026, 3, 30, 7, 0, 0)); // 09:00 CEST
                                                      // And back on Sunday 25 October 2026.
        let mon19 = r.next_after(utc(2026, 10, 18, 0, 0, 0)).unwrap();
        assert_eq!(mon19, utc(2026, 10, 19, 7, 0, 0));
        assert_eq!(r.next_after(mon19), Some(utc(2026, 10, 26, 8, 0, 0)));
    }

    #[test]
    fn monday_nine_in_jakarta_after_a_sunday() {
        let r = rec("0 9 * * MON", "Asia/Jakarta");
        let sunday = utc(2026, 11, 22, 5, 0, 0); // Sunday 12:00 WIB
        assert_eq!(
            Zone::Named(Tz::Asia__Jakarta).to_local(sunday).weekday(),
            chrono::Weekday::Sun
        );
        assert_eq!(r.next_after(sunday), Some(utc(2026, 11, 23, 2, 0, 0)));
        // Strictly after: at the occurrence itself, the next Monday.
        assert_eq!(
            r.next_after(utc(2026, 11, 23, 2, 0, 0)),
            Some(utc(2026, 11, 30, 2, 0, 0))
        );
        assert_eq!(
            r.next_after(utc(2026, 11, 23, 1, 59, 59)),
            Some(utc(2026, 11, 23, 2, 0, 0))
        );
        assert_eq!(r.cron(), "0 9 * * MON");
        assert_eq!(r.zone(), zone("Asia/Jakarta"));
        assert_eq!(r.to_string(), "0 9 * * MON (Asia/Jakarta)");
    }

    #[test]
    fn recurrence_in_gap_fires_once_at_end_of_gap() {
        let r = rec("30 2 * * *", "America/New_York");
        let first = r.next_after(utc(2026, 3, 7, 12, 0, 0)).unwrap();
        assert_eq!(first, utc(2026, 3, 8, 7, 0, 0)); // 03:00 EDT
        assert_eq!(r.next_after(first), Some(utc(2026, 3, 9, 6, 30, 0))); // 02:30 EDT
                                                                          // Several wall times in one gap fire once, together.
        let r = rec("*/15 2 * * *", "America/New_York");
        let first = r.next_after(utc(2026, 3, 8, 6, 0, 0)).unwrap();
        assert_eq!(first, utc(2026, 3, 8, 7, 0, 0));
        assert_eq!(r.next_after(first), Some(utc(2026, 3, 9, 6, 0, 0)));
    }

    #[test]
    fn recurrence_in_overlap_never_replays_the_hour() {
        let r = rec("30 1 * * *", "America/New_York");
        let first = r.next_after(utc(2026, 10, 31, 12, 0, 0)).unwrap();
        assert_eq!(first, utc(2026, 11, 1, 5, 30, 0)); // 01:30 EDT
        assert_eq!(r.next_after(first), Some(utc(2026, 11, 2, 6, 30, 0))); // 01:30 EST, next day
        let r = rec("*/15 * * * *", "America/New_York");
        // In the second pass (01:10 EST = 06:10Z) the next firing is 02:00 EST, never earlier.
        assert_eq!(
            r.next_after(utc(2026, 11, 1, 6, 10, 0)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );
        assert_eq!(
            r.next_after(utc(2026, 11, 1, 5, 40, 0)),
            Some(utc(2026, 11, 1, 5, 45, 0))
        );
        assert_eq!(
            r.next_after(utc(2026, 11, 1, 5, 45, 0)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );
    }

    #[test]
    fn cron_syntax() {
        let mon_fri = rec("0 9 * * mon-fri", "UTC");
        assert_eq!(
            mon_fri.next_after(utc(2026, 11, 20, 10, 0, 0)),
            Some(utc(2026, 11, 23, 9, 0, 0))
        );
        let every_15 = rec("*/15 * * * *", "UTC");
        assert_eq!(
            every_15.next_after(utc(2026, 1, 1, 0, 14, 59)),
            Some(utc(2026, 1, 1, 0, 15, 0))
        );
        let lists = rec("5,35 8-18/5 * jan,JUL *", "UTC");
        assert_eq!(
            lists.next_after(utc(2026, 1, 1, 8, 5, 0)),
            Some(utc(2026, 1, 1, 8, 35, 0))
        );
        assert_eq!(
            lists.next_after(utc(2026, 1, 1, 8, 35, 0)),
            Some(utc(2026, 1, 1, 13, 5, 0))
        );
        assert_eq!(
            lists.next_after(utc(2026, 1, 31, 18, 35, 0)),
            Some(utc(2026, 7, 1, 8, 5, 0))
        );
        // `a/n` runs to the end of the field: 50 and 55 past.
        let tail = rec("50/5 10 * * *", "UTC");
        assert_eq!(
            tail.next_after(utc(2026, 1, 1, 10, 50, 0)),
            Some(utc(2026, 1, 1, 10, 55, 0))
        );
        // 7 and 0 are both Sunday; 2026-11-22 is a Sunday.
        for cron in ["0 9 * * 7", "0 9 * * 0", "0 9 * * SUN", "0 9 * * 6-7"] {
            let r = rec(cron, "UTC");
            let next = r.next_after(utc(2026, 11, 21, 10, 0, 0)).unwrap();
            assert_eq!(next, utc(2026, 11, 22, 9, 0, 0), "{cron}");
        }
        // Whitespace is normalised.
        assert_eq!(rec("  0   9 *\t* MON ", "UTC").cron(), "0 9 * * MON");
    }

    #[test]
    fn day_of_month_and_day_of_week_follow_vixie() {
        // Both restricted: either matches. 1 Dec 2026 is a Tuesday; Mondays are 30 Nov, 7 Dec.
        let r = rec("0 9 1 * MON", "UTC");
        let a = r.next_after(utc(2026, 11, 29, 0, 0, 0)).unwrap();
        assert_eq!(a, utc(2026, 11, 30, 9, 0, 0));
        let b = r.next_after(a).unwrap();
        assert_eq!(b, utc(2026, 12, 1, 9, 0, 0));
        assert_eq!(r.next_after(b), Some(utc(2026, 12, 7, 9, 0, 0)));
        // Day-of-week `*`: only the day of month.
        let r = rec("0 9 13 * *", "UTC");
        assert_eq!(
            r.next_after(utc(2026, 11, 1, 0, 0, 0)),
            Some(utc(2026, 11, 13, 9, 0, 0))
        );
        // A field starting with `*` makes it AND: odd days that are Mondays.
        let r = rec("0 9 */2 * MON", "UTC");
        assert_eq!(
            r.next_after(utc(2026, 11, 1, 0, 0, 0)),
            Some(utc(2026, 11, 9, 9, 0, 0))
        );
        // 29 February waits for a leap year.
        let r = rec("0 9 29 2 *", "UTC");
        assert_eq!(
            r.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2028, 2, 29, 9, 0, 0))
        );
    }

    #[test]
    fn cron_rejections() {
        let cases: &[(&str, &str)] = &[
            ("0 0 9 * * MON", "seconds"),
            ("0 0 9 * * MON 2026", "seconds"),
            ("0 9 * *", "expected 5"),
            ("", "empty"),
            ("@daily", "@daily"),
            ("60 9 * * *", "out of range"),
            ("0 24 * * *", "out of range"),
            ("0 9 0 * *", "out of range"),
            ("0 9 * 13 *", "out of range"),
            ("0 9 * * 8", "out of range"),
            ("0 9 * * FUNDAY", "not a valid day-of-week"),
            ("0 9 * JAN-FOO *", "not a valid month"),
            ("0 9 * * JAN", "not a valid day-of-week"),
            ("0 MON * * *", "not a valid hour"),
            ("0 17-9 * * *", "backwards"),
            ("*/0 9 * * *", "step"),
            ("*/61 9 * * *", "step"),
            ("0 9 1,,2 * *", "empty list item"),
            ("0 9 L * *", "day-of-month"),
            ("0 9 * * MON#2", "day-of-week"),
            ("0 9 ? * MON", "day-of-month"),
            ("0 9 15W * *", "day-of-month"),
            ("0 9 * * +MON", "day-of-week"),
            ("-1 9 * * *", "minute"),
            ("0 9 * * *,", "empty list item"),
        ];
        for (cron, needle) in cases {
            let e = rec_err(cron);
            assert!(
                matches!(e, ScheduleError::RecurrenceInvalid { .. }),
                "{cron}: {e:?}"
            );
            assert!(e.to_string().contains(needle), "{cron}: {e}");
        }
        let long = format!("0 9 * * {}", "1,".repeat(100));
        assert!(rec_err(&long).to_string().contains("longer than"));
    }

    #[test]
    fn too_frequent_and_never_firing_schedules() {
        for (cron, minutes) in [
            ("* * * * *", 1),
            ("*/4 * * * *", 4),
            ("0,2 9 * * *", 2),
            ("0,58 9,10 * * *", 2),
        ] {
            assert_eq!(
                rec_err(cron),
                ScheduleError::RecurrenceTooFrequent {
                    input: cron.into(),
                    minutes
                },
                "{cron}"
            );
        }
        assert!(rec_err("* 9 * * *")
            .to_string()
            .contains("minimum is 5 minutes"));
        // Across midnight counts too.
        assert!(matches!(
            rec_err("0,58 0,23 * * *"),
            ScheduleError::RecurrenceTooFrequent { minutes: 2, .. }
        ));
        rec("*/5 * * * *", "UTC");
        rec("0,5 9 * * *", "UTC");
        for cron in ["0 9 30 2 *", "0 9 31 4,6,9,11 *", "0 9 30-31 FEB *"] {
            assert_eq!(
                rec_err(cron),
                ScheduleError::RecurrenceNeverFires { input: cron.into() }
            );
        }
        // But 31 February OR Mondays fires (both restricted: either matches).
        rec("0 9 31 2 MON", "UTC");
    }

    #[test]
    fn parse_recurrence_needs_a_zone() {
        assert_eq!(
            parse_recurrence("0 9 * * MON", None),
            Err(ScheduleError::TimezoneRequiredForRecurrence)
        );
        assert_eq!(
            parse_recurrence("0 9 * * MON", Some(" "))
                .unwrap_err()
                .field(),
            "timezone"
        );
        assert_eq!(
            parse_recurrence("0 9 * * MON", Some("Mars/Base"))
                .unwrap_err()
                .field(),
            "timezone"
        );
        let r = parse_recurrence("0 9 * * MON", Some("+07:00")).unwrap();
        assert_eq!(
            r.next_after(utc(2026, 11, 22, 5, 0, 0)),
            Some(utc(2026, 11, 23, 2, 0, 0))
        );
    }

    #[test]
    fn recurrence_serde() {
        let r = rec("0 9 * * MON", "Asia/Jakarta");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"cron": "0 9 * * MON", "timezone": "Asia/Jakarta"})
        );
        let back: Recurrence = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let bad = serde_json::json!({"cron": "* * * * *", "timezone": "Asia/Jakarta"});
        let e = serde_json::from_value::<Recurrence>(bad).unwrap_err();
        assert!(e.to_string().contains("minimum"), "{e}");
        let bad_zone = serde_json::json!({"cron": "0 9 * * MON", "timezone": "Mars/Base"});
        assert!(serde_json::from_value::<Recurrence>(bad_zone).is_err());
    }

    #[test]
    fn impossible_search_terminates() {
        // The search bound holds even for a schedule that fires once in decades:
        // 29 February on a Sunday (AND because day-of-week starts with `*`).
        let r = rec("0 9 29 2 */7", "UTC");
        let next = r.next_after(utc(2033, 1, 1, 0, 0, 0)).unwrap();
        assert_eq!(next, utc(2060, 2, 29, 9, 0, 0));
        assert_eq!(next.weekday(), chrono::Weekday::Sun);
    }

    // ---- properties ----

    const ZONES: &[&str] = &[
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

    const CRONS: &[&str] = &[
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

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 2020-01-01 .. 2040-01-01, to the second.
        (1_577_836_800i64..2_208_988_800i64).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    /// Whether `local` is a wall time the schedule names (whole minutes only).
    fn names(r: &Recurrence, local: NaiveDateTime) -> bool {
        local.second() == 0
            && local.nanosecond() == 0
            && r.spec.day_matches(local.date())
            && r.spec
                .times_from(0)
                .any(|t| t == local.hour() * 60 + local.minute())
    }

    proptest! {
        #[test]
        fn send_at_never_panics(
            s in "\\PC{0,120}",
            tz in prop::option::of("\\PC{0,80}"),
            now in instant(),
        ) {
            let _ = parse_send_at(Some(&s), tz.as_deref(), now);
            let _ = Zone::parse(&s);
        }

        #[test]
        fn send_at_never_panics_on_near_misses(
            s in "[0-9 :/.TtZz+-]{0,40}",
            tz in prop::sample::select(vec!["Asia/Jakarta", "America/New_York", "+07:00", "-12:00", "Z"]),
            now in instant(),
        ) {
            if let Ok(SendAt::At(at)) = parse_send_at(Some(&s), Some(tz), now) {
                prop_assert!(at >= now - Duration::seconds(PAST_SLACK_SECONDS));
            }
        }

        #[test]
        fn fixed_offset_wall_time_round_trips(
            offset_minutes in -12 * 60i32..=14 * 60,
            days_ahead in 1i64..(3 * 366),
            hour in 0u32..24,
            minute in 0u32..60,
            now in instant(),
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
            let zone = Zone::Fixed(offset);
            let date = now.with_timezone(&offset).date_naive() + Duration::days(days_ahead);
            let written = format!("{} {hour:02}:{minute:02}", date.format("%Y-%m-%d"));
            let got = parse_send_at(Some(&written), Some(&zone.name()), now);
            let Ok(SendAt::At(at)) = got else { return Err(TestCaseError::fail(format!("{got:?}"))) };
            prop_assert_eq!(at.with_timezone(&offset).format("%Y-%m-%d %H:%M").to_string(), written);
        }

        #[test]
        fn jakarta_wall_time_round_trips(
            days_ahead in 1i64..(3 * 366),
            hour in 0u32..24,
            minute in 0u32..60,
            now in instant(),
        ) {
            let date = now.with_timezone(&Tz::Asia__Jakarta).date_naive() + Duration::days(days_ahead);
            let written = format!("{} {hour:02}:{minute:02}", date.format("%d/%m/%Y"));
            let at = parse_send_at(Some(&written), JAKARTA, now).unwrap().instant(now);
            prop_assert_eq!(
                at.with_timezone(&Tz::Asia__Jakarta).format("%d/%m/%Y %H:%M").to_string(),
                written
            );
        }

        #[test]
        fn recurrence_parse_never_panics(
            s in "\\PC{0,120}",
            fields in prop::collection::vec("([0-9*/,-]{1,7}|MON|jan|SUN-SAT|[A-Z#?LW]{1,3})", 0..8),
        ) {
            let _ = Recurrence::parse(&s, Zone::Named(Tz::UTC));
            if let Ok(r) = Recurrence::parse(&fields.join(" "), Zone::Named(Tz::Europe__Berlin)) {
                let t = utc(2026, 3, 28, 23, 0, 0);
                let next = r.next_after(t);
                prop_assert!(next.is_some_and(|n| n > t));
            }
        }

        #[test]
        fn next_after_is_later_and_monotonic(
            cron in prop::sample::select(CRONS),
            tz in prop::sample::select(ZONES),
            t1 in instant(),
            delta in 0i64..(400 * 24 * 3600),
        ) {
            let r = rec(cron, tz);
            let t2 = t1 + Duration::seconds(delta);
            let n1 = r.next_after(t1).unwrap();
            let n2 = r.next_after(t2).unwrap();
            prop_assert!(n1 > t1);
            prop_assert!(n2 > t2);
            prop_assert!(n1 <= n2, "{cron} in {tz}: next_after({t1}) = {n1} > next_after({t2}) = {n2}");
            // Its wall time is one the schedule names, unless the clock jumped just before it.
            let local = r.zone.to_local(n1);
            let jumped = r.zone.to_local(n1 - Duration::seconds(1)) + Duration::seconds(1) != local;
            prop_assert!(names(&r, local) || jumped, "{cron} in {tz}: {n1} is {local}");
        }

        #[test]
        fn next_after_misses_nothing(
            cron in prop::sample::select(vec!["*/5 * * * *", "*/15 * * * *", "30 2 * * *", "30 1 * * *", "0,30 0-3 * * *"]),
            tz in prop::sample::select(ZONES),
            t in instant(),
        ) {
            // Brute force: no whole UTC minute between t and the answer is the (earlier)
            // instant of a wall time the schedule names.
            let r = rec(cron, tz);
            let n = r.next_after(t).unwrap();
            let mut u = DateTime::from_timestamp(t.timestamp() - t.timestamp().rem_euclid(60) + 60, 0).unwrap();
            while u < n {
                let local = r.zone.to_local(u);
                prop_assert!(
                    !(names(&r, local) && r.zone.resolve_local(local) == Some(u)),
                    "{cron} in {tz}: next_after({t}) = {n} skipped {u} ({local})"
                );
                u += Duration::minutes(1);
            }
        }
    }

    #[test]
    fn next_after_around_every_transition() {
        // Walk each schedule through two years of DST changes in several zones, firing after
        // firing: always strictly later, never the same instant twice.
        for tz in ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"] {
            for cron in ["*/15 * * * *", "30 2 * * *", "30 1 * * *", "0 9 * * MON"] {
                let r = rec(cron, tz);
                let mut t = utc(2026, 1, 1, 0, 0, 0);
                let end = utc(2028, 1, 1, 0, 0, 0);
                while t < end {
                    let n = r.next_after(t).unwrap();
                    assert!(n > t, "{cron} in {tz}: {n} after {t}");
                    t = n;
                }
            }
        }
    }
}
