//! The `send_at` formats: what a user may write, read in a zone, relative to `now`.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

use super::zone::parse_offset;
use super::{digits, ScheduleError, Zone, DATE_ALONE_HOUR, MAX_INPUT_LEN, PAST_SLACK_SECONDS};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::test_support::*;
    use chrono_tz::Tz;
    use proptest::prelude::*;

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
    }
}
