//! Recurrence: the strict 5-field cron language and the search for its next firing in a zone.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::{clip, digits, ScheduleError, Zone, MAX_INPUT_LEN, MIN_RECURRENCE_MINUTES};

/// The Gregorian calendar (dates and weekdays alike) repeats every 400 years, which is
/// 146 097 days: a day pattern that matches no day in that span never matches.
const GREGORIAN_CYCLE_DAYS: i64 = 146_097;

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
    use crate::schedule::test_support::*;
    use chrono::NaiveDateTime;
    use chrono_tz::Tz;
    use proptest::prelude::*;

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
