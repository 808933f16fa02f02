//! A pattern's lifecycle across runs. A pattern the team fixed (triaged `fixed`) or that a run
//! resolved (it found no member) and that has failures again *after* the fix is reopened as
//! `regressed`: the team's decision no longer holds, and the pattern comes first everywhere
//! until the team decides again. "After" is read from the failures' own times — failures
//! newer than the fix (or, for a resolved pattern, newer than its last failure before it went
//! away) — so re-reading old failures with a wider window never reopens anything. A pattern
//! triaged `wont_fix` is never reopened: the team already said it accepts it.

use flywheel_schemas::rows::{PatternRow, PatternTriageRow};
use time::OffsetDateTime;

/// Where a pattern stands after this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    /// When it was last fixed; the epoch when never.
    pub fixed_at: OffsetDateTime,
    /// The first failure after that fix; the epoch when it has not come back.
    pub regressed_at: OffsetDateTime,
    /// This run found it back: reopen it.
    pub reopened: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { fixed_at: OffsetDateTime::UNIX_EPOCH, regressed_at: OffsetDateTime::UNIX_EPOCH, reopened: false }
    }
}

/// Follows a pattern continued by this run: `previous` is its row before the run, `triage`
/// the team's latest decision, `member_times` the call times of this run's members.
pub fn follow(previous: Option<&PatternRow>, triage: Option<&PatternTriageRow>, member_times: &[OffsetDateTime]) -> Lifecycle {
    let Some(prev) = previous else { return Lifecycle::default() };
    let status = triage.map_or("new", |t| t.status.as_str());
    let carried = Lifecycle { fixed_at: prev.fixed_at, regressed_at: prev.regressed_at, reopened: false };
    if status == "wont_fix" {
        return carried;
    }
    let team_fix = (status == "fixed").then(|| triage.map(|t| t.updated_at)).flatten();
    let resolved = prev.trend == "resolved";
    // What counts as "after the fix".
    let since = if resolved { Some(prev.last_seen) } else { team_fix };
    let Some(since) = since else { return carried };
    let fixed_at = team_fix.unwrap_or(prev.updated_at);
    match member_times.iter().filter(|t| **t > since).min() {
        Some(&back) => Lifecycle { fixed_at, regressed_at: back, reopened: true },
        None => Lifecycle { fixed_at, regressed_at: OffsetDateTime::UNIX_EPOCH, reopened: false },
    }
}

/// The note written with the reopening triage decision.
pub fn note(life: &Lifecycle, release: &str) -> String {
    let day = |t: OffsetDateTime| t.date().to_string();
    let release = if release.is_empty() { String::new() } else { format!(" in release {release}") };
    format!("came back {}{release}; fixed {}", day(life.regressed_at), day(life.fixed_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn at(days: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap() + Duration::days(days)
    }

    fn row(trend: &str, last_seen: i64, updated: i64) -> PatternRow {
        PatternRow { trend: trend.into(), last_seen: at(last_seen), updated_at: at(updated), ..PatternRow::default() }
    }

    fn triage(status: &str, day: i64) -> PatternTriageRow {
        PatternTriageRow {
            project_id: "p".into(),
            pattern_id: "x".into(),
            status: status.into(),
            note: String::new(),
            updated_by: "t".into(),
            updated_at: at(day),
        }
    }

    #[test]
    fn a_fixed_pattern_with_failures_after_the_fix_is_reopened() {
        let prev = row("stable", 9, 10);
        let life = follow(Some(&prev), Some(&triage("fixed", 10)), &[at(8), at(12), at(11)]);
        assert_eq!(life, Lifecycle { fixed_at: at(10), regressed_at: at(11), reopened: true });
    }

    #[test]
    fn failures_from_before_the_fix_do_not_reopen_it() {
        let prev = row("stable", 9, 10);
        let life = follow(Some(&prev), Some(&triage("fixed", 10)), &[at(7), at(9)]);
        assert_eq!(life, Lifecycle { fixed_at: at(10), regressed_at: OffsetDateTime::UNIX_EPOCH, reopened: false });
    }

    #[test]
    fn a_resolved_pattern_is_reopened_by_failures_newer_than_its_last_one() {
        // Resolved by the run of day 15; its last failure was on day 9.
        let prev = row("resolved", 9, 15);
        let back = follow(Some(&prev), None, &[at(20)]);
        assert_eq!(back, Lifecycle { fixed_at: at(15), regressed_at: at(20), reopened: true });
        // A wider window re-reading the old failures is not a regression.
        let reread = follow(Some(&prev), None, &[at(5), at(9)]);
        assert!(!reread.reopened);
        // The team's fix date is the one reported.
        let fixed = follow(Some(&prev), Some(&triage("fixed", 12)), &[at(20)]);
        assert_eq!(fixed.fixed_at, at(12));
    }

    #[test]
    fn a_regression_is_carried_until_the_team_decides_and_wont_fix_is_never_reopened() {
        let regressed = PatternRow { fixed_at: at(10), regressed_at: at(11), ..row("growing", 13, 13) };
        let next = follow(Some(&regressed), Some(&triage("regressed", 13)), &[at(14)]);
        assert_eq!(next, Lifecycle { fixed_at: at(10), regressed_at: at(11), reopened: false });
        let acknowledged = follow(Some(&regressed), Some(&triage("acknowledged", 14)), &[at(15)]);
        assert!(!acknowledged.reopened && acknowledged.regressed_at == at(11));
        // Fixed again: a new cycle.
        let refixed = follow(Some(&regressed), Some(&triage("fixed", 16)), &[at(15)]);
        assert_eq!(refixed, Lifecycle { fixed_at: at(16), regressed_at: OffsetDateTime::UNIX_EPOCH, reopened: false });
        let accepted = follow(Some(&row("resolved", 9, 15)), Some(&triage("wont_fix", 12)), &[at(20)]);
        assert!(!accepted.reopened);
        assert_eq!(follow(None, None, &[at(1)]), Lifecycle::default());
    }

    #[test]
    fn the_note_says_when_and_where_it_came_back() {
        let life = Lifecycle { fixed_at: at(10), regressed_at: at(11), reopened: true };
        assert_eq!(note(&life, "2.15.0"), format!("came back {} in release 2.15.0; fixed {}", at(11).date(), at(10).date()));
        assert!(!note(&life, "").contains("release"));
    }
}
