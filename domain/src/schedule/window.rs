//! Send windows: the days of the week and the hours, in a time zone, when a campaign may send
//! (docs/safe-sending.md, "Send windows").
//!
//! Decisions
//! - The hours are wall-clock times in the window's zone, so "09:00–18:00 Asia/Jakarta" is
//!   09:00–18:00 there on every day, across DST changes of zones that have them. An opening in a
//!   DST gap (02:30 on a spring-forward night) opens at the first instant after the gap, like a
//!   `send_at` there ([`Zone::resolve_local`]); a window that lies wholly in a gap does not open
//!   that day.
//! - Overnight windows are allowed: `start` later than `end` (`22:00`–`06:00`) runs from `start`
//!   on a listed day to `end` the next morning. The day named is the day the window opens.
//! - `start` equal to `end` is refused (empty or all day is ambiguous); a whole day is
//!   `00:00`–`24:00` (`24:00` is accepted as an end only; an end of `00:00` is midnight too,
//!   so `23:00`–`00:00` is the last hour of each listed day).
//! - In a fall-back overlap (an hour that happens twice), an opening is the earlier pass, and a
//!   window that closed in the first pass does not reopen in the second: [`SendWindow::next_opening`]
//!   waits for the next listed day (one more hour of sending at night is what a window prevents).
//!   A recipient that happens to be claimed in the second pass is sent, since the wall clock is
//!   inside the window then.
//! - A window without a zone is read in the zone its user passes (the campaign's, or UTC).

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Zone;

/// How many days ahead [`SendWindow::next_opening`] looks: a week, and a week more for a window
/// that one DST gap swallowed.
const LOOKAHEAD_DAYS: i64 = 15;

/// Why a send window was refused; each names its field (`days`, `start`, `end`, `timezone`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WindowError {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> WindowError {
    WindowError {
        field,
        message: message.into(),
    }
}

/// The days of the week and the hours when sending is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after local midnight.
    start: u32,
    /// Minutes after local midnight, 1..=1440; less than `start` for an overnight window.
    end: u32,
    zone: Option<Zone>,
}

/// The API's shape of a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Vec<String>,
    start: String,
    end: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl SendWindow {
    /// Reads a window as the API takes it: `days` (`mon`…`sun`, any case, at least one),
    /// `start` and `end` as `HH:MM`, an optional IANA zone or offset.
    pub fn parse(
        days: &[String],
        start: &str,
        end: &str,
        timezone: Option<&str>,
    ) -> Result<SendWindow, WindowError> {
        let mut set = [false; 7];
        if days.is_empty() {
            return Err(refuse("days", "name at least one day (mon, tue, ... sun)"));
        }
        for d in days {
            let lower = d.trim().to_ascii_lowercase();
            let i = DAY_NAMES.iter().position(|n| *n == lower).ok_or_else(|| {
                refuse(
                    "days",
                    format!(
                        "{:?} is not a day; use mon, tue, wed, thu, fri, sat or sun",
                        super::clip(d, 16)
                    ),
                )
            })?;
            set[i] = true;
        }
        let start_min = parse_hhmm(start, false)
            .ok_or_else(|| refuse("start", "must be a time of day as HH:MM (00:00 to 23:59)"))?;
        let end_min = parse_hhmm(end, true)
            .ok_or_else(|| refuse("end", "must be a time of day as HH:MM (00:00 to 24:00)"))?;
        if start_min == end_min {
            return Err(refuse(
                "end",
                "must differ from start (for a whole day use 00:00 to 24:00)",
            ));
        }
        let zone = match timezone {
            Some(t) => Some(Zone::parse(t).map_err(|e| refuse("timezone", e.to_string()))?),
            None => None,
        };
        Ok(SendWindow {
            days: set,
            start: start_min,
            end: end_min,
            zone,
        })
    }

    /// The window's own zone, if it names one.
    pub fn zone(&self) -> Option<Zone> {
        self.zone
    }

    /// The zone the window is read in: its own, else `fallback`.
    pub fn zone_or(&self, fallback: Zone) -> Zone {
        self.zone.unwrap_or(fallback)
    }

    /// Whether the window starts one day and ends the next (`22:00`–`06:00`).
    pub fn is_overnight(&self) -> bool {
        self.end < self.start
    }

    fn listed(&self, day: Weekday) -> bool {
        self.days[day.num_days_from_monday() as usize]
    }

    /// Whether sending is allowed at `at` (the window read in its zone, else `fallback`).
    pub fn is_open(&self, at: DateTime<Utc>, fallback: Zone) -> bool {
        let local = self.zone_or(fallback).to_local(at);
        let minute = local.hour() * 60 + local.minute();
        let today = self.listed(local.weekday());
        if self.is_overnight() {
            let yesterday = self.listed(local.weekday().pred());
            (today && minute >= self.start) || (yesterday && minute < self.end)
        } else {
            today && minute >= self.start && minute < self.end
        }
    }

    /// `at` itself when the window is open then, else the first instant after it when it opens.
    /// `None` only at the edges of chrono's range, or for a window every opening of which falls
    /// in DST gaps for two weeks (no real zone does that).
    pub fn next_opening(&self, at: DateTime<Utc>, fallback: Zone) -> Option<DateTime<Utc>> {
        if self.is_open(at, fallback) {
            return Some(at);
        }
        let zone = self.zone_or(fallback);
        let today = zone.to_local(at).date();
        let opens = NaiveTime::from_num_seconds_from_midnight_opt(self.start * 60, 0)?;
        (-1..=LOOKAHEAD_DAYS)
            .filter_map(|k| today.checked_add_signed(Duration::days(k)))
            .filter(|d: &NaiveDate| self.listed(d.weekday()))
            .filter_map(|d| zone.resolve_local(d.and_time(opens)))
            .filter(|t| *t > at && self.is_open(*t, fallback))
            .min()
    }

    /// The API's JSON form (`{"days", "start", "end", "timezone"?}`), as stored.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.raw()).unwrap_or(serde_json::Value::Null)
    }

    fn raw(&self) -> RawWindow {
        RawWindow {
            days: DAY_NAMES
                .iter()
                .zip(self.days)
                .filter(|(_, on)| *on)
                .map(|(n, _)| n.to_string())
                .collect(),
            start: format_hhmm(self.start),
            end: format_hhmm(self.end),
            timezone: self.zone.map(|z| z.name()),
        }
    }
}

impl fmt::Display for SendWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.raw();
        write!(f, "{} {}-{}", raw.days.join(","), raw.start, raw.end)?;
        if let Some(z) = raw.timezone {
            write!(f, " {z}")?;
        }
        Ok(())
    }
}

impl Serialize for SendWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(s)
    }
}

impl<'de> Deserialize<'de> for SendWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawWindow::deserialize(d)?;
        SendWindow::parse(&raw.days, &raw.start, &raw.end, raw.timezone.as_deref())
            .map_err(serde::de::Error::custom)
    }
}

/// `HH:MM` as minutes after midnight; `24:00` only when `end`.
fn parse_hhmm(s: &str, end: bool) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let h = super::digits(h, 1, 2)?;
    let m = super::digits(m, 2, 2)?;
    let minutes = h * 60 + m;
    match (h, m) {
        (24, 0) if end => Some(1440),
        _ if h < 24 && m < 60 => Some(minutes),
        _ => None,
    }
}

fn format_hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn window(days: &[&str], start: &str, end: &str, tz: Option<&str>) -> SendWindow {
        let days: Vec<String> = days.iter().map(|d| d.to_string()).collect();
        SendWindow::parse(&days, start, end, tz).unwrap_or_else(|e| panic!("{e}"))
    }

    fn utc_zone() -> Zone {
        Zone::parse("UTC").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn given_office_hours_when_asked_at_night_then_it_opens_next_morning() {
        let w = window(
            &["mon", "tue", "wed", "thu", "fri"],
            "09:00",
            "18:00",
            Some("Asia/Jakarta"),
        );
        // Tuesday 2026-12-01 20:00 in Jakarta (13:00 UTC)
        let at = utc("2026-12-01T13:00:00Z");
        assert!(!w.is_open(at, utc_zone()));
        assert_eq!(
            w.next_opening(at, utc_zone()),
            Some(utc("2026-12-02T02:00:00Z"))
        );
        // inside: the same instant
        let inside = utc("2026-12-02T03:00:00Z");
        assert!(w.is_open(inside, utc_zone()));
        assert_eq!(w.next_opening(inside, utc_zone()), Some(inside));
    }

    #[test]
    fn given_a_weekday_window_when_asked_on_friday_evening_then_it_opens_monday() {
        let w = window(&["mon", "tue", "wed", "thu", "fri"], "09:00", "18:00", None);
        // Friday 2026-12-04 18:00 UTC: the end is exclusive
        let at = utc("2026-12-04T18:00:00Z");
        assert!(!w.is_open(at, utc_zone()));
        assert_eq!(
            w.next_opening(at, utc_zone()),
            Some(utc("2026-12-07T09:00:00Z"))
        );
    }

    #[test]
    fn given_an_overnight_window_then_it_runs_into_the_next_morning_of_a_listed_day() {
        let w = window(&["fri"], "22:00", "06:00", None);
        // Saturday 05:59 is still Friday's window; Saturday 22:00 is not (Saturday not listed)
        assert!(w.is_open(utc("2026-12-05T05:59:00Z"), utc_zone()));
        assert!(!w.is_open(utc("2026-12-05T06:00:00Z"), utc_zone()));
        assert!(!w.is_open(utc("2026-12-05T22:30:00Z"), utc_zone()));
        assert!(!w.is_open(utc("2026-12-04T21:59:00Z"), utc_zone()));
        assert!(w.is_open(utc("2026-12-04T22:00:00Z"), utc_zone()));
        assert_eq!(
            w.next_opening(utc("2026-12-05T06:00:00Z"), utc_zone()),
            Some(utc("2026-12-11T22:00:00Z"))
        );
    }

    #[test]
    fn given_new_york_office_hours_then_they_stay_local_across_the_spring_change() {
        let w = window(
            &["sat", "sun", "mon"],
            "09:00",
            "17:00",
            Some("America/New_York"),
        );
        // Saturday 2026-03-07 09:00 EST is 14:00 UTC; Monday 2026-03-09 09:00 EDT is 13:00 UTC
        assert_eq!(
            w.next_opening(utc("2026-03-07T05:00:00Z"), utc_zone()),
            Some(utc("2026-03-07T14:00:00Z"))
        );
        assert_eq!(
            w.next_opening(utc("2026-03-08T23:00:00Z"), utc_zone()),
            Some(utc("2026-03-09T13:00:00Z"))
        );
    }

    #[test]
    fn given_an_opening_in_the_dst_gap_then_it_opens_when_the_gap_ends() {
        // 2026-03-08 02:30 does not exist in New York: the clock goes from 02:00 EST to 03:00 EDT
        let w = window(&["sun"], "02:30", "05:00", Some("America/New_York"));
        assert_eq!(
            w.next_opening(utc("2026-03-08T05:00:00Z"), utc_zone()),
            Some(utc("2026-03-08T07:00:00Z"))
        );
    }

    #[test]
    fn given_a_window_inside_the_dst_gap_then_that_day_is_skipped() {
        let w = window(&["sun"], "02:00", "02:30", Some("America/New_York"));
        let next = w.next_opening(utc("2026-03-08T05:00:00Z"), utc_zone());
        // the next Sunday, 02:00 EDT
        assert_eq!(next, Some(utc("2026-03-15T06:00:00Z")));
    }

    #[test]
    fn given_bad_windows_then_each_names_its_field() {
        let days = vec!["mon".to_string()];
        let err = |d: &[String], s: &str, e: &str, z: Option<&str>| {
            SendWindow::parse(d, s, e, z).err().map(|e| e.field)
        };
        assert_eq!(err(&[], "09:00", "10:00", None), Some("days"));
        assert_eq!(
            err(&["monday".into()], "09:00", "10:00", None),
            Some("days")
        );
        assert_eq!(err(&days, "9am", "10:00", None), Some("start"));
        assert_eq!(err(&days, "24:00", "10:00", None), Some("start"));
        assert_eq!(err(&days, "09:00", "25:00", None), Some("end"));
        assert_eq!(err(&days, "09:00", "09:00", None), Some("end"));
        assert_eq!(
            err(&days, "09:00", "10:00", Some("Mars/Base")),
            Some("timezone")
        );
        assert_eq!(err(&days, "00:00", "24:00", None), None);
    }

    #[test]
    fn given_a_window_then_its_json_reads_back_equal() {
        let w = window(&["sun", "MON"], "22:00", "06:00", Some("europe/berlin"));
        let json = w.to_json();
        assert_eq!(
            json,
            serde_json::json!({"days": ["mon", "sun"], "start": "22:00", "end": "06:00",
                               "timezone": "Europe/Berlin"})
        );
        let back: SendWindow = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, w);
    }

    fn any_window() -> impl Strategy<Value = SendWindow> {
        (
            proptest::array::uniform7(any::<bool>()),
            0u32..1440,
            1u32..=1440,
            prop::sample::select(vec![
                "America/New_York",
                "Europe/Berlin",
                "Australia/Lord_Howe",
                "Asia/Jakarta",
                "+05:30",
            ]),
        )
            .prop_filter("a window needs a day and a length", |(d, s, e, _)| {
                d.iter().any(|x| *x) && s != e
            })
            .prop_map(|(days, start, end, zone)| SendWindow {
                days,
                start,
                end,
                zone: Zone::parse(zone).ok(),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Around the 2026 DST changes (March and October/November, and April for Lord Howe):
        /// the next opening is never earlier than asked, the window is open then, and it was
        /// closed at every minute before it.
        #[test]
        fn next_opening_is_the_first_open_minute(
            w in any_window(),
            offset_min in 0i64..(60 * 24 * 60),
            base in prop::sample::select(vec![
                "2026-03-01T00:00:00Z", "2026-03-22T00:00:00Z", "2026-10-20T00:00:00Z",
            ]),
        ) {
            let at = utc(base) + Duration::minutes(offset_min);
            let next = w.next_opening(at, utc_zone());
            prop_assert!(next.is_some(), "{w} never opens after {at}");
            let next = next.unwrap_or(at);
            prop_assert!(next >= at);
            prop_assert!(w.is_open(next, utc_zone()), "{w} closed at its opening {next}");
            let zone = w.zone_or(utc_zone());
            let mut t = at;
            while t + Duration::minutes(1) <= next {
                // the second pass of a repeated (fall-back) hour is not an opening (module docs)
                let repeated = zone.to_local(t) - zone.to_local(t - Duration::hours(2))
                    != Duration::hours(2);
                prop_assert!(repeated || !w.is_open(t, utc_zone()), "{w} open at {t}, before {next}");
                t += Duration::minutes(1);
                if t - at > Duration::days(8) { break; }
            }
        }
    }
}
