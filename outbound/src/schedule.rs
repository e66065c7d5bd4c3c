//! When a failed delivery is tried again (docs/webhooks-out.md, API.md "Outbound webhooks").
//!
//! After the first attempt fails: about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, each with up to
//! 10 % jitter either way so endpoints that failed together are not retried together; after the
//! last retry fails the delivery is `failed`. A `Retry-After` the receiver sends (seconds or an
//! HTTP date) is the next delay instead, kept between 1 s and [`MAX_RETRY_AFTER`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// The delays before retries 1..=7.
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The delay before the next attempt after `attempts` have failed; `None` when none is left.
pub fn next_delay(
    schedule: &[Duration],
    attempts: u32,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let planned = *schedule.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
    if let Some(asked) = retry_after {
        return Some(asked.clamp(Duration::from_secs(1), MAX_RETRY_AFTER));
    }
    Some(jitter(planned))
}

fn jitter(d: Duration) -> Duration {
    let factor = rand::thread_rng().gen_range(0.9..=1.1);
    d.mul_f64(factor)
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (what is left until it).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_has_seven_retries_with_bounded_jitter() {
        for (i, planned) in RETRY_SCHEDULE.iter().enumerate() {
            let d = next_delay(&RETRY_SCHEDULE, i as u32 + 1, None).expect("a retry left");
            assert!(
                d >= planned.mul_f64(0.9) && d <= planned.mul_f64(1.1),
                "{i}: {d:?}"
            );
        }
        assert_eq!(next_delay(&RETRY_SCHEDULE, 8, None), None);
        assert_eq!(next_delay(&RETRY_SCHEDULE, 0, None), None);
    }

    #[test]
    fn retry_after_replaces_the_planned_delay_within_bounds() {
        let asked = Some(Duration::from_secs(120));
        assert_eq!(next_delay(&RETRY_SCHEDULE, 1, asked), asked);
        assert_eq!(
            next_delay(&RETRY_SCHEDULE, 1, Some(Duration::ZERO)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            next_delay(&RETRY_SCHEDULE, 1, Some(Duration::from_secs(1 << 40))),
            Some(MAX_RETRY_AFTER)
        );
        // no attempts left: Retry-After does not add one
        assert_eq!(next_delay(&RETRY_SCHEDULE, 8, asked), None);
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after(" 30 ", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 10:02:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
