//! The period a report reviews (`--week 2026-W47`: Monday 00:00 UTC to the next Monday;
//! `--since 7d`: the last 7 days up to now) and the previous period of the same length that
//! its numbers are compared with.

use time::{Date, Duration, OffsetDateTime, Time, Weekday};

use super::ReportError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `2026-W47`, or `last 7d`.
    pub label: String,
    /// A name for files: `2026-W47`, or `2026-11-18` (the end date) for `--since`.
    pub slug: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl Period {
    pub fn len(&self) -> Duration {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The period of the same length just before.
    pub fn previous(&self) -> Period {
        let start = self.start - self.len();
        Period { label: "previous period".into(), slug: String::new(), start, end: self.start }
    }

    /// `--week YYYY-Www` (ISO 8601 week, UTC).
    pub fn week(spec: &str) -> Result<Period, ReportError> {
        let bad = || ReportError::Options(format!("`{spec}` is not an ISO week: write it like 2026-W47"));
        let (year, week) = spec.split_once(['W', 'w']).ok_or_else(bad)?;
        let year: i32 = year.trim_end_matches('-').parse().map_err(|_| bad())?;
        let week: u8 = week.parse().map_err(|_| bad())?;
        let monday = Date::from_iso_week_date(year, week, Weekday::Monday).map_err(|_| bad())?;
        let start = monday.with_time(Time::MIDNIGHT).assume_utc();
        Ok(Period { label: format!("{year}-W{week:02}"), slug: format!("{year}-W{week:02}"), start, end: start + Duration::weeks(1) })
    }

    /// `--since 7d` (also `36h`, `2w`), ending at `now`.
    pub fn since(spec: &str, now: OffsetDateTime) -> Result<Period, ReportError> {
        let len = parse_duration(spec)?;
        Ok(Period { label: format!("last {spec}"), slug: now.date().to_string(), start: now - len, end: now })
    }

    /// The ISO week containing `t`.
    pub fn week_of(t: OffsetDateTime) -> Period {
        let (year, week, _) = t.date().to_iso_week_date();
        Period::week(&format!("{year}-W{week:02}")).expect("a date's own ISO week exists")
    }
}

/// `--since`, read as every command reads it ([`flywheel_schemas::lookback`]).
pub fn parse_duration(spec: &str) -> Result<Duration, ReportError> {
    flywheel_schemas::lookback::parse(spec).map_err(ReportError::Options)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn iso_weeks() {
        let p = Period::week("2026-W47").unwrap();
        assert_eq!(p.start, datetime!(2026-11-16 0:00 UTC));
        assert_eq!(p.end, datetime!(2026-11-23 0:00 UTC));
        assert_eq!(p.previous().start, datetime!(2026-11-09 0:00 UTC));
        // Week 1 of 2026 starts in 2025.
        assert_eq!(Period::week("2026-W01").unwrap().start, datetime!(2025-12-29 0:00 UTC));
        assert!(Period::week("2026-W54").is_err());
        assert!(Period::week("47").is_err());
        assert_eq!(Period::week_of(datetime!(2026-11-18 13:00 UTC)).label, "2026-W47");
    }

    #[test]
    fn since() {
        let now = datetime!(2026-11-18 12:00 UTC);
        let p = Period::since("7d", now).unwrap();
        assert_eq!(p.start, datetime!(2026-11-11 12:00 UTC));
        assert_eq!(p.previous().start, datetime!(2026-11-04 12:00 UTC));
        assert!(Period::since("7x", now).is_err());
        assert!(Period::since("0d", now).is_err());
        assert_eq!(parse_duration("36h").unwrap(), Duration::hours(36));
    }
}
