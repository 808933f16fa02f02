//! Agency readiness: whether production evidence says a feature may be given more autonomy —
//! from **suggest** (people rewrite a lot), to **draft** (light edits), to **act** (accepted
//! as is, and that holds over time).
//!
//! Per feature and week (weeks counted back from the window's end), over its traces: the share
//! its users copied (acceptance), the rewritten share of its edited answers (mean and p90), the
//! shares regenerated or retried, flagged negatively (thumbs-down, a rating at or below 40 % of
//! its scale), escalated to a person, and failing (the latest analysis' failures). The level is
//! decided on the last `recent_weeks` weeks against stated limits ([`Thresholds`]); `act` also
//! needs each of those weeks to pass on its own (stable) and no open high-severity pattern of
//! the feature. A feature with fewer than `min_traces` traces in those weeks is reported as
//! such, not guessed. Every rate carries a 95 % Wilson interval, and each trend compares the
//! earliest week with enough traffic to the recent weeks with the two-proportion test of
//! [`crate::compare`].

use std::collections::BTreeMap;

use clickhouse::Row;
use flywheel_schemas::queries::{self, nanos};
use flywheel_schemas::{Store, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::compare::two_proportion;
use crate::error::AnalyzerError;

/// How much autonomy the evidence supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Too little traffic to say.
    NotEnoughData,
    Suggest,
    Draft,
    Act,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::NotEnoughData => "not enough data",
            Level::Suggest => "suggest",
            Level::Draft => "draft",
            Level::Act => "act",
        }
    }
}

/// The most a level allows of each rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    pub max_negative: f64,
    pub max_regenerate: f64,
    pub max_failure: f64,
    pub max_escalation: f64,
    /// The p90 of the rewritten share of edited answers (checked with at least 10 edits).
    pub max_edit_p90: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_negative: 0.10, max_regenerate: 0.15, max_failure: 0.15, max_escalation: 0.10, max_edit_p90: 0.40 }
    }
}

/// Limits as a configuration file gives them: each one given replaces the level's default.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LimitsFile {
    max_negative: Option<f64>,
    max_regenerate: Option<f64>,
    max_failure: Option<f64>,
    max_escalation: Option<f64>,
    max_edit_p90: Option<f64>,
}

impl LimitsFile {
    fn over(self, base: Limits) -> Limits {
        Limits {
            max_negative: self.max_negative.unwrap_or(base.max_negative),
            max_regenerate: self.max_regenerate.unwrap_or(base.max_regenerate),
            max_failure: self.max_failure.unwrap_or(base.max_failure),
            max_escalation: self.max_escalation.unwrap_or(base.max_escalation),
            max_edit_p90: self.max_edit_p90.unwrap_or(base.max_edit_p90),
        }
    }
}

/// The `[readiness]` section of the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    /// Fewest traces in the recent weeks for a level.
    pub min_traces: u64,
    /// The weeks a level is decided on (the most recent ones).
    pub recent_weeks: u32,
    pub draft: Limits,
    pub act: Limits,
    /// A pattern at or above this severity, open (new, acknowledged or regressed), blocks `act`.
    pub blocking_severity: f32,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            min_traces: 200,
            recent_weeks: 2,
            draft: Limits::default(),
            act: Limits { max_negative: 0.02, max_regenerate: 0.05, max_failure: 0.05, max_escalation: 0.02, max_edit_p90: 0.10 },
            blocking_severity: 0.7,
        }
    }
}

impl Thresholds {
    /// The `[readiness]` section of a configuration file (other sections are ignored).
    pub fn parse(text: &str, origin: &str) -> Result<Thresholds, AnalyzerError> {
        #[derive(Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Section {
            min_traces: Option<u64>,
            recent_weeks: Option<u32>,
            draft: LimitsFile,
            act: LimitsFile,
            blocking_severity: Option<f32>,
        }
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            readiness: Section,
        }
        let file: File = toml::from_str(text).map_err(|e| AnalyzerError::Config(format!("{origin}: [readiness]: {e}")))?;
        let (s, d) = (file.readiness, Thresholds::default());
        let t = Thresholds {
            min_traces: s.min_traces.unwrap_or(d.min_traces),
            recent_weeks: s.recent_weeks.unwrap_or(d.recent_weeks),
            draft: s.draft.over(d.draft),
            act: s.act.over(d.act),
            blocking_severity: s.blocking_severity.unwrap_or(d.blocking_severity),
        };
        if t.recent_weeks == 0 {
            return Err(AnalyzerError::Config(format!("{origin}: [readiness] recent_weeks must be at least 1")));
        }
        Ok(t)
    }
}

/// One feature's traffic in one week.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct Week {
    pub feature: String,
    /// 0: the last 7 days before the window's end; 1: the 7 days before them; …
    pub week: u32,
    pub traces: u64,
    pub copied: u64,
    pub edited: u64,
    pub edit_mean: f64,
    pub edit_p90: f64,
    pub regenerated: u64,
    pub negative: u64,
    pub escalated: u64,
    pub failed: u64,
}

/// A share with its 95 % Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub events: u64,
    pub of: u64,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Rate {
    pub fn of(events: u64, of: u64) -> Rate {
        let (n, p) = (of as f64, if of == 0 { 0.0 } else { events as f64 / of as f64 });
        if of == 0 {
            return Rate { events, of, value: 0.0, low: 0.0, high: 1.0 };
        }
        let z = 1.959_964f64;
        let denominator = 1.0 + z * z / n;
        let centre = (p + z * z / (2.0 * n)) / denominator;
        let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
        Rate { events, of, value: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0) }
    }
}

/// A measure's movement from the earliest week with enough traffic to the recent weeks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub measure: String,
    pub from: f64,
    pub to: f64,
    pub weeks: u32,
    /// `up`, `down` or `flat` (not significant at 0.05, or too few traces).
    pub direction: String,
    pub p_value: Option<f64>,
}

/// One feature's readiness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub feature: String,
    pub level: Level,
    /// Traces in the recent weeks (what the level is decided on).
    pub traces: u64,
    pub acceptance: Rate,
    pub regenerate: Rate,
    pub negative: Rate,
    pub escalation: Rate,
    pub failure: Rate,
    pub edits: u64,
    pub edit_mean: Option<f64>,
    pub edit_p90: Option<f64>,
    pub trends: Vec<Trend>,
    /// What holds it at its level and what would move it: one sentence each.
    pub reasons: Vec<String>,
    /// Oldest first.
    pub weeks: Vec<Week>,
}

/// Sums of several weeks.
fn total(weeks: &[&Week]) -> Week {
    let mut t = Week::default();
    let mut edit_weight = 0.0;
    for w in weeks {
        t.traces += w.traces;
        t.copied += w.copied;
        t.edited += w.edited;
        t.regenerated += w.regenerated;
        t.negative += w.negative;
        t.escalated += w.escalated;
        t.failed += w.failed;
        t.edit_mean += w.edit_mean * w.edited as f64;
        edit_weight += w.edited as f64;
        // The p90 of several weeks is at most their largest p90: an upper bound that cannot
        // hide a bad week.
        t.edit_p90 = t.edit_p90.max(w.edit_p90);
    }
    t.edit_mean = if edit_weight > 0.0 { t.edit_mean / edit_weight } else { 0.0 };
    t
}

/// The rates of `w` that break `limits`, as phrases ("negative signals 12.0 % > 10 %").
fn breaches(w: &Week, limits: &Limits) -> Vec<String> {
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let rate = |n: u64| if w.traces == 0 { 0.0 } else { n as f64 / w.traces as f64 };
    let mut out = Vec::new();
    for (what, value, max) in [
        ("negative signals", rate(w.negative), limits.max_negative),
        ("regenerations and retries", rate(w.regenerated), limits.max_regenerate),
        ("failures", rate(w.failed), limits.max_failure),
        ("escalations", rate(w.escalated), limits.max_escalation),
    ] {
        if value > max {
            out.push(format!("{what} {} > {}", pct(value), pct(max)));
        }
    }
    if w.edited >= 10 && w.edit_p90 > limits.max_edit_p90 {
        out.push(format!("edit ratio p90 {:.2} > {:.2}", w.edit_p90, limits.max_edit_p90));
    }
    out
}

fn trend(measure: &str, weeks: &[Week], recent: &Week, events: fn(&Week) -> u64, recent_weeks: u32) -> Option<Trend> {
    let first = weeks.iter().find(|w| w.traces >= 30 && w.week >= recent_weeks)?;
    let (from, to) = (events(first) as f64 / first.traces as f64, events(recent) as f64 / recent.traces.max(1) as f64);
    let p_value = two_proportion(events(recent), recent.traces, events(first), first.traces);
    let direction = match p_value {
        Some(p) if p < 0.05 && to > from => "up",
        Some(p) if p < 0.05 && to < from => "down",
        _ => "flat",
    };
    Some(Trend { measure: measure.into(), from, to, weeks: first.week + 1, direction: direction.into(), p_value })
}

/// The weekly figures of every feature of the project, `weeks` weeks back from `end`.
pub async fn weekly(store: &Store, project: &str, end: OffsetDateTime, weeks: u32) -> Result<Vec<Week>, StoreError> {
    let start = end - time::Duration::weeks(weeks.into());
    store
        .query(
            "SELECT c.feature AS feature, c.week AS week, count() AS traces, countIf(s.copied = 1) AS copied, \
                countIf(s.edited = 1) AS edited, ifNotFinite(avgIf(s.edit_ratio, s.edited = 1), 0) AS edit_mean, \
                ifNotFinite(quantileExactIf(0.9)(s.edit_ratio, s.edited = 1), 0) AS edit_p90, countIf(s.regenerated = 1) AS regenerated, \
                countIf(s.negative = 1) AS negative, countIf(s.escalated = 1) AS escalated, countIf(f.trace_id != '') AS failed \
             FROM (SELECT trace_id, argMin(feature, start_time) AS feature, \
                   toUInt32(intDiv(? - toUnixTimestamp64Nano(min(start_time)), 604800000000000)) AS week FROM llm_calls FINAL \
                   WHERE project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) AND start_time < fromUnixTimestamp64Nano(?) \
                   GROUP BY trace_id) AS c \
             LEFT JOIN (SELECT trace_id, max(kind = 'copy') AS copied, max(kind = 'edit') AS edited, \
                   maxIf(ifNull(edit_ratio, 0), kind = 'edit') AS edit_ratio, max(kind IN ('regenerate', 'retry')) AS regenerated, \
                   max(kind = 'thumbs_down' OR (kind = 'rating' AND ifNull(value, 5) <= 0.4 * ifNull(scale, 5))) AS negative, \
                   max(kind = 'escalate') AS escalated FROM signals FINAL \
                   WHERE project_id = ? AND trace_id != '' AND timestamp >= fromUnixTimestamp64Nano(?) GROUP BY trace_id) AS s \
                   ON s.trace_id = c.trace_id \
             LEFT JOIN (SELECT DISTINCT trace_id FROM failures FINAL WHERE project_id = ? AND call_time >= fromUnixTimestamp64Nano(?)) AS f \
                   ON f.trace_id = c.trace_id \
             GROUP BY feature, week ORDER BY feature, week DESC",
        )
        .bind(nanos(end))
        .bind(project)
        .bind(nanos(start))
        .bind(nanos(end))
        .bind(project)
        .bind(nanos(start))
        .bind(project)
        .bind(nanos(start))
        .fetch_all()
        .await
}

/// Every feature's readiness over the `weeks` weeks before `end` (or only `feature`'s).
pub async fn assess(
    store: &Store,
    project: &str,
    end: OffsetDateTime,
    weeks: u32,
    feature: Option<&str>,
    t: &Thresholds,
) -> Result<Vec<Readiness>, StoreError> {
    let rows = weekly(store, project, end, weeks).await?;
    let patterns = queries::current_patterns(store, project).await?;
    let mut by_feature: BTreeMap<String, Vec<Week>> = BTreeMap::new();
    for w in rows.into_iter().filter(|w| feature.is_none_or(|f| f == w.feature)) {
        by_feature.entry(w.feature.clone()).or_default().push(w);
    }
    let mut out = Vec::new();
    for (name, weeks) in by_feature {
        let recent = total(&weeks.iter().filter(|w| w.week < t.recent_weeks).collect::<Vec<_>>());
        let blocking: Vec<&str> = patterns
            .iter()
            .filter(|p| {
                p.size > 0
                    && p.severity >= t.blocking_severity
                    && matches!(p.status.as_str(), "new" | "acknowledged" | "regressed")
                    && p.facets.get("feature").is_some_and(|f| *f == name)
            })
            .map(|p| p.label.as_str())
            .collect();
        let mut reasons = Vec::new();
        let level = if recent.traces < t.min_traces {
            reasons.push(format!(
                "too little traffic: {} traces in the last {} week(s), {} needed to say",
                recent.traces, t.recent_weeks, t.min_traces
            ));
            Level::NotEnoughData
        } else {
            let draft = breaches(&recent, &t.draft);
            let act = breaches(&recent, &t.act);
            let unstable: Vec<String> = weeks
                .iter()
                .filter(|w| w.week < t.recent_weeks && w.traces >= 30)
                .filter(|w| !breaches(w, &t.act).is_empty())
                .map(|w| format!("week -{}", w.week + 1))
                .collect();
            if !draft.is_empty() {
                reasons.push(format!("held at `suggest` by {}", draft.join(", ")));
                Level::Suggest
            } else if !act.is_empty() || !unstable.is_empty() || !blocking.is_empty() {
                if !act.is_empty() {
                    reasons.push(format!("held at `draft` by {}", act.join(", ")));
                } else if !unstable.is_empty() {
                    reasons.push(format!("not yet stable for `act`: {} missed its limits", unstable.join(", ")));
                }
                if !blocking.is_empty() {
                    reasons.push(format!(
                        "{} open high-severity pattern(s) block `act`: {}",
                        blocking.len(),
                        blocking.iter().take(3).map(|l| format!("“{l}”")).collect::<Vec<_>>().join(", ")
                    ));
                }
                Level::Draft
            } else {
                reasons.push("within every `act` limit in each recent week, no open high-severity pattern".into());
                Level::Act
            }
        };
        if recent.edited < 10 {
            reasons.push(format!("{} edits in the recent weeks: the edit ratio is not judged (send `edit` signals)", recent.edited));
        }
        let mut oldest_first = weeks.clone();
        oldest_first.sort_by_key(|w| std::cmp::Reverse(w.week));
        let trends: Vec<Trend> = [
            ("negative", (|w: &Week| w.negative) as fn(&Week) -> u64),
            ("regenerate", |w: &Week| w.regenerated),
            ("failure", |w: &Week| w.failed),
            ("acceptance", |w: &Week| w.copied),
            ("escalation", |w: &Week| w.escalated),
        ]
        .into_iter()
        .filter_map(|(m, f)| trend(m, &oldest_first, &recent, f, t.recent_weeks))
        .collect();
        for tr in trends.iter().filter(|t| t.direction != "flat") {
            let verb = if tr.direction == "up" { "rose" } else { "fell" };
            reasons.push(format!(
                "{} rate {verb} from {:.1} % to {:.1} % over {} weeks",
                tr.measure,
                tr.from * 100.0,
                tr.to * 100.0,
                tr.weeks
            ));
        }
        out.push(Readiness {
            feature: name,
            level,
            traces: recent.traces,
            acceptance: Rate::of(recent.copied, recent.traces),
            regenerate: Rate::of(recent.regenerated, recent.traces),
            negative: Rate::of(recent.negative, recent.traces),
            escalation: Rate::of(recent.escalated, recent.traces),
            failure: Rate::of(recent.failed, recent.traces),
            edits: recent.edited,
            edit_mean: (recent.edited > 0).then_some(recent.edit_mean),
            edit_p90: (recent.edited > 0).then_some(recent.edit_p90),
            trends,
            reasons,
            weeks: oldest_first,
        });
    }
    Ok(out)
}

/// The readiness table as text, with each feature's reasons under it.
pub fn render(all: &[Readiness]) -> String {
    let pct = |r: &Rate| format!("{:.1}%", r.value * 100.0);
    let mut out = format!(
        "{:<24} {:<15} {:>7} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7}\n",
        "FEATURE", "LEVEL", "TRACES", "ACCEPT", "EDIT p90", "REGEN", "NEG", "ESCAL", "FAIL"
    );
    for r in all {
        let feature = if r.feature.is_empty() { "(no feature)" } else { r.feature.as_str() };
        let p90 = r.edit_p90.filter(|_| r.edits >= 10).map_or("–".to_string(), |p| format!("{p:.2}"));
        out.push_str(&format!(
            "{:<24} {:<15} {:>7} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7}\n",
            feature,
            r.level.as_str(),
            r.traces,
            pct(&r.acceptance),
            p90,
            pct(&r.regenerate),
            pct(&r.negative),
            pct(&r.escalation),
            pct(&r.failure)
        ));
        for reason in &r.reasons {
            out.push_str(&format!("    {reason}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_hold_the_rate_and_widen_with_less_data() {
        let r = Rate::of(10, 100);
        assert!(r.low < 0.1 && 0.1 < r.high);
        assert!((r.low - 0.0552).abs() < 0.001 && (r.high - 0.1744).abs() < 0.001, "{r:?}");
        let small = Rate::of(1, 10);
        assert!(small.high - small.low > r.high - r.low);
        assert_eq!(Rate::of(0, 0).high, 1.0);
    }

    #[test]
    fn limits_name_what_breaks_them() {
        let w = Week { traces: 100, negative: 12, regenerated: 3, edited: 20, edit_p90: 0.5, ..Default::default() };
        let b = breaches(&w, &Limits::default());
        assert_eq!(b, vec!["negative signals 12.0 % > 10.0 %".to_string(), "edit ratio p90 0.50 > 0.40".to_string()]);
        // Too few edits: the edit ratio is not judged.
        let few = Week { edited: 3, ..w };
        assert_eq!(breaches(&few, &Limits::default()).len(), 1);
    }

    #[test]
    fn the_section_reads_with_defaults() {
        let t = Thresholds::parse("[readiness]\nmin_traces = 50\n[readiness.act]\nmax_negative = 0.01\n", "test").unwrap();
        // A limit not given keeps its level's default (act's, not draft's).
        assert_eq!((t.min_traces, t.act.max_negative, t.act.max_failure, t.draft.max_failure), (50, 0.01, 0.05, 0.15));
        assert_eq!(Thresholds::parse("", "test").unwrap(), Thresholds::default());
        assert!(Thresholds::parse("[readiness]\nrecent_weeks = 0\n", "test").is_err());
    }
}
