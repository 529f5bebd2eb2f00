//! When a subscription is due: a fixed interval with ±5% jitter, or a cron expression.
use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The shortest poll interval; shorter ones are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The relative jitter applied to intervals (±5%), so that many repositories do not poll in lockstep.
pub const JITTER: f64 = 0.05;

/// A schedule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The interval text is not a duration.
    #[error("invalid interval `{0}`: expected a duration like 30s, 5m or 1h")]
    Interval(String),
    /// The cron expression is malformed or never fires.
    #[error("invalid cron schedule `{expr}`: {reason}")]
    Cron {
        /// The expression as given.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// When to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `interval` (at least [`MIN_INTERVAL`]), each time shifted by up to ±5%.
    Interval(Duration),
    /// At the times of a cron expression (UTC).
    Cron(Cron),
}

impl Schedule {
    /// Every `interval`, raised to [`MIN_INTERVAL`] if shorter.
    pub fn interval(interval: Duration) -> Self {
        Schedule::Interval(interval.max(MIN_INTERVAL))
    }

    /// Parse a humantime interval (`30s`, `5m`, `1h30m`), raised to [`MIN_INTERVAL`] if shorter.
    pub fn parse_interval(text: &str) -> Result<Self, Error> {
        humantime::parse_duration(text.trim())
            .map(Schedule::interval)
            .map_err(|_| Error::Interval(text.to_owned()))
    }

    /// Parse a 5-field (crontab: minute hour day-of-month month day-of-week) or 6-field (seconds first)
    /// cron expression, or a macro like `@hourly`.
    pub fn cron(expr: &str) -> Result<Self, Error> {
        Cron::parse(expr).map(Schedule::Cron)
    }

    /// The next due time after `now` (wall clock), with `jitter` in [-1, 1] scaling the ±5% of intervals.
    /// `None` when there is none: a cron expression without future times, or an interval (user input, so
    /// possibly `100000000y`) that reaches past the calendar.
    pub fn next_after(&self, now: DateTime<Utc>, jitter: f64) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval(interval) => {
                let secs = interval.as_secs_f64() * (1.0 + JITTER * jitter.clamp(-1.0, 1.0));
                let step = Duration::try_from_secs_f64(secs).ok()?;
                now.checked_add_signed(chrono::TimeDelta::from_std(step).ok()?)
            }
            Schedule::Cron(cron) => cron.schedule.after(&now).next(),
        }
    }
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Cron {
    source: String,
    // Shared: the parsed form is large and never changes.
    schedule: std::sync::Arc<cron::Schedule>,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Cron {}

impl Cron {
    /// The expression as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn parse(expr: &str) -> Result<Self, Error> {
        let fail = |reason: String| Error::Cron {
            expr: expr.to_owned(),
            reason,
        };
        let trimmed = expr.trim();
        let normalized = if trimmed.starts_with('@') {
            trimmed.to_owned()
        } else {
            let mut fields: Vec<String> = trimmed.split_whitespace().map(str::to_owned).collect();
            match fields.len() {
                5 => fields.insert(0, "0".to_owned()),
                6 => {}
                n => {
                    return Err(fail(format!(
                        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got {n}"
                    )));
                }
            }
            let dow = fields.pop().unwrap_or_default();
            fields.push(day_of_week(&dow).map_err(fail)?);
            fields.join(" ")
        };
        let schedule = cron::Schedule::from_str(&normalized).map_err(|e| fail(explain(&e.to_string())))?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err(fail("it never fires".to_owned()));
        }
        Ok(Cron {
            source: trimmed.to_owned(),
            schedule: std::sync::Arc::new(schedule),
        })
    }
}

/// The explanation in a `cron` crate error. The crate draws the expression with a caret under the fault and,
/// for some faults, a last line saying what is wrong; the caret alone would point into our normalised form
/// (seconds added, weekdays renumbered), not the user's text, so it is replaced by a general hint.
fn explain(text: &str) -> String {
    let last = text.lines().last().unwrap_or_default().trim();
    if last.chars().any(char::is_alphanumeric) {
        last.to_owned()
    } else {
        "a field is malformed or out of range".to_owned()
    }
}

/// Translate a crontab day-of-week field (0–7, 0 and 7 = Sunday, or SUN–SAT; lists, ranges, steps) into
/// the `cron` crate's numbering (1–7, 1 = Sunday).
fn day_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: usize = step.parse().map_err(|_| format!("bad step in day-of-week `{item}`"))?;
                if step == 0 {
                    return Err(format!("zero step in day-of-week `{item}`"));
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (first, last) = match range.split_once('-') {
            _ if range == "*" => (0, 6),
            Some((a, b)) => (day(a)?, day(b)?),
            None if step > 1 => (day(range)?, 6),
            None => (day(range)?, day(range)?),
        };
        if first > last {
            return Err(format!("day-of-week range `{range}` runs backwards"));
        }
        for d in (first..=last).step_by(step) {
            days[d % 7] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".to_owned());
    }
    let list: Vec<String> = (0..7).filter(|d| days[*d]).map(|d| (d + 1).to_string()).collect();
    Ok(list.join(","))
}

/// One crontab day: 0–7 or a three-letter name.
fn day(text: &str) -> Result<usize, String> {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i);
    }
    match text.parse::<usize>() {
        Ok(n) if n <= 7 => Ok(n),
        _ => Err(format!("`{text}` is not a day of the week (0-7 or SUN-SAT)")),
    }
}

/// A uniformly distributed number in [-1, 1], different on every call (not cryptographic).
pub fn random_jitter() -> f64 {
    static SEED: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let bits = SEED
        .get_or_init(RandomState::new)
        .hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
    unit * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn intervals_have_a_floor_and_bounded_jitter() {
        assert_eq!(
            Schedule::interval(Duration::from_secs(1)),
            Schedule::Interval(MIN_INTERVAL)
        );
        let every = Schedule::parse_interval("100s").unwrap();
        let now = at(2024, 1, 1, 0, 0);
        for jitter in [-1.0, 0.0, 1.0, random_jitter()] {
            let next = every.next_after(now, jitter).unwrap();
            let secs = (next - now).num_milliseconds() as f64 / 1000.0;
            assert!((95.0..=105.0).contains(&secs), "{secs}");
        }
        assert!(Schedule::parse_interval("soon").is_err());
    }

    #[test]
    fn jitter_spreads_over_its_whole_range() {
        let draws: Vec<f64> = (0..1000).map(|_| random_jitter()).collect();
        assert!(draws.iter().all(|j| (-1.0..=1.0).contains(j)));
        let (min, max) = draws
            .iter()
            .fold((1.0f64, -1.0f64), |(lo, hi), j| (lo.min(*j), hi.max(*j)));
        assert!(min < -0.9 && max > 0.9, "draws span [{min}, {max}]");
    }

    #[test]
    fn an_interval_past_the_calendar_never_fires_rather_than_panicking() {
        let forever = Schedule::parse_interval("100000000y").unwrap();
        assert_eq!(forever.next_after(at(2024, 1, 1, 0, 0), 1.0), None);
        let huge = Schedule::interval(Duration::MAX);
        assert_eq!(huge.next_after(at(2024, 1, 1, 0, 0), 1.0), None);
    }

    #[test]
    fn five_field_cron_uses_crontab_weekdays() {
        // 2024-01-01 is a Monday. "1-5" in crontab means Monday to Friday.
        let weekdays = Schedule::cron("30 9 * * 1-5").unwrap();
        let next = weekdays.next_after(at(2024, 1, 6, 12, 0), 0.0).unwrap(); // Saturday noon
        assert_eq!(
            (next.day(), next.hour(), next.minute()),
            (8, 9, 30),
            "next Monday 09:30"
        );
        let sunday = Schedule::cron("0 0 * * 0").unwrap();
        assert_eq!(sunday.next_after(at(2024, 1, 1, 0, 0), 0.0).unwrap().day(), 7);
        let seven = Schedule::cron("0 0 * * 7").unwrap();
        assert_eq!(seven.next_after(at(2024, 1, 1, 0, 0), 0.0).unwrap().day(), 7);
        let names = Schedule::cron("0 0 * * SAT,SUN").unwrap();
        assert_eq!(names.next_after(at(2024, 1, 1, 0, 0), 0.0).unwrap().day(), 6);
        let every_5 = Schedule::cron("*/5 * * * *").unwrap();
        assert_eq!(every_5.next_after(at(2024, 1, 1, 0, 1), 0.0).unwrap().minute(), 5);
    }

    #[test]
    fn six_field_cron_has_seconds_first() {
        let s = Schedule::cron("15 * * * * *").unwrap();
        assert_eq!(s.next_after(at(2024, 1, 1, 0, 0), 0.0).unwrap().second(), 15);
        assert!(Schedule::cron("@hourly").is_ok());
    }

    #[test]
    fn bad_cron_is_explained() {
        for (expr, needle) in [
            ("* * *", "expected 5 fields"),
            ("61 * * * *", "invalid cron schedule"),
            ("0 0 * * 9", "not a day of the week"),
            ("0 0 * * 5-1", "backwards"),
            ("*/99999999999 * * * *", "malformed or out of range"),
            ("@reboot", "malformed or out of range"),
            ("0 0 30 2 *", "never fires"),
        ] {
            let err = Schedule::cron(expr).unwrap_err().to_string();
            assert!(err.contains(needle), "{expr}: {err}");
        }
    }

    #[test]
    fn day_of_week_translation() {
        assert_eq!(day_of_week("0").unwrap(), "1");
        assert_eq!(day_of_week("1-5").unwrap(), "2,3,4,5,6");
        assert_eq!(day_of_week("5-7").unwrap(), "1,6,7");
        assert_eq!(day_of_week("*/2").unwrap(), "1,3,5,7");
        assert_eq!(day_of_week("0-7").unwrap(), "*");
    }
}
