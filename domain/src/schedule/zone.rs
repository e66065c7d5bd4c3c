//! Time zones: IANA names and fixed offsets, and how a local wall time becomes an instant
//! across DST gaps and overlaps (see the parent module for the decisions).

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Duration, FixedOffset, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{clip, digits, ScheduleError, MAX_ZONE_LEN};

/// Real DST gaps are an hour or less; whole skipped days (Samoa, 2011) are 24 hours. The gap
/// search gives up after this many minutes, which no zone comes near.
const MAX_GAP_MINUTES: i64 = 26 * 60;

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
pub(super) fn parse_offset(s: &str) -> Option<FixedOffset> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::test_support::*;

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
}
