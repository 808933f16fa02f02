//! The numbers of a weekly review, gathered from ClickHouse (aggregation runs there; only the
//! results and a few example calls travel). Rendering lives in `markdown.rs` and `html.rs`.

use std::collections::BTreeMap;

use clickhouse::Row;
use flywheel_schemas::failure::{Contrast, FailureDetails, Lane};
use flywheel_schemas::queries::{self, Grouping, SignalRates, nanos};
use flywheel_schemas::rows::{FailureRow, PatternRow, PatternTriageRow};
use flywheel_schemas::{Store, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

use super::period::Period;
use crate::export::case::{excerpt, mask, rfc3339};
use crate::export::{self, Representation};

/// Calls a previous period needs before changes against it mean anything (2 calls against
/// 2,000 make a −39 pts "improvement").
pub const MIN_BASELINE_CALLS: u64 = 20;

/// Patterns at least this severe get examples in the report whatever their rank.
pub const HIGH_SEVERITY: f32 = 0.7;

/// Examples shown of the failures that fit no pattern.
const UNCLUSTERED_EXAMPLES: usize = 3;

/// Signal kinds that say something went wrong, shown first in rate tables.
pub const NEGATIVE_SIGNALS: &[&str] = &["thumbs_down", "regenerate", "edit", "retry", "abandon", "escalate", "feature_disabled"];

#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub project: String,
    pub period: Period,
    pub generated_at: OffsetDateTime,
    pub current: Headline,
    pub previous: Headline,
    /// One point per day of the previous and the current period.
    pub daily: Vec<Day>,
    /// Current patterns seen in the current or previous period (or resolved), by impact.
    pub patterns: Vec<PatternView>,
    /// Signal rates and failure rates per feature, current period.
    pub features: Vec<FeatureRates>,
    /// Signal kinds seen in either period, negative ones first.
    pub signal_kinds: Vec<String>,
    /// Failing calls of the period that no current pattern holds.
    pub unclustered: Unclustered,
    /// The period's releases compared, when it holds two or more with enough calls.
    pub releases: Option<crate::compare::Comparison>,
    /// Each feature's agency readiness over the 8 weeks before the period's end (default
    /// limits), features with enough traffic first.
    pub readiness: Vec<crate::readiness::Readiness>,
    /// Questions asked again and again whose answers disagreed in the period: one per
    /// question, the most asked first (the evidence of `inconsistent` failures).
    pub inconsistencies: Vec<Contrast>,
}

/// The period's failures outside every pattern: one-offs, or causes too small to group yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unclustered {
    pub failing_calls: u64,
    /// Reason → failing calls carrying it, most frequent first.
    pub reasons: Vec<(String, u64)>,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headline {
    pub calls: u64,
    pub traces: u64,
    pub users: u64,
    pub failing_calls: u64,
    pub cost_usd: f64,
    /// Kind → share of traces that got it.
    pub signal_rates: BTreeMap<String, f64>,
}

impl Headline {
    /// Whether the period has any call: a period without data is not a period at 0 %.
    pub fn has_data(&self) -> bool {
        self.calls > 0
    }

    /// Whether the period has enough calls to compare another one with.
    pub fn comparable(&self) -> bool {
        self.calls >= MIN_BASELINE_CALLS
    }

    pub fn failure_rate(&self) -> f64 {
        if self.calls == 0 { 0.0 } else { self.failing_calls as f64 / self.calls as f64 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub date: String,
    pub current: bool,
    pub calls: u64,
    pub failing_calls: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRates {
    pub feature: String,
    pub calls: u64,
    pub failing_calls: u64,
    pub rates: SignalRates,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatternView {
    pub pattern: PatternRow,
    /// Users of the pattern / users with a call in the current period.
    pub share_of_users: f64,
    pub spread: Spread,
    pub decision: Decision,
    /// The latest triage decision: state, who made it, the note.
    pub triage: Option<PatternTriageRow>,
    /// 2–3 diverse members (the top patterns and every high-severity one).
    pub examples: Vec<Example>,
}

impl PatternView {
    /// Members now against the previous period's: `+3 (3 → 6)`, `new (4)`, `= (5)`.
    pub fn change(&self) -> String {
        let (now, before) = (self.pattern.size, self.pattern.previous_size);
        match (before, now) {
            (0, n) => format!("new ({n})"),
            (b, n) if b == n => format!("= ({n})"),
            (b, n) if n > b => format!("+{} ({b} → {n})", n - b),
            (b, n) => format!("−{} ({b} → {n})", b - n),
        }
    }

    /// `fixed by ana — raised the quota`, or the bare state when nobody triaged it.
    pub fn triage_line(&self) -> String {
        match &self.triage {
            Some(t) => {
                let mut line = t.status.replace('_', " ");
                if !t.updated_by.is_empty() {
                    line.push_str(&format!(" by {}", t.updated_by));
                }
                if !t.note.trim().is_empty() {
                    line.push_str(&format!(" — {}", t.note.trim()));
                }
                line
            }
            None => format!("{} (not triaged)", if self.pattern.status.is_empty() { "new" } else { &self.pattern.status }),
        }
    }
}

/// Where a pattern's members are: the basis of the one-off vs systemic call.
#[derive(Debug, Clone, Default, PartialEq, Row, Deserialize)]
pub struct Spread {
    pub pattern_id: String,
    pub members: u64,
    pub users: u64,
    pub sessions: u64,
    pub days: u64,
    pub features: Vec<(String, u64)>,
    pub models: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Few users, one place, one moment: fix the instance.
    OneOff(String),
    /// Across users and days (and features): fix at the prompt/model/system level, keep evals.
    Systemic(String),
    /// Recurring but narrow: a targeted fix, and watch it.
    Watch(String),
}

impl Decision {
    pub fn name(&self) -> &'static str {
        match self {
            Decision::OneOff(_) => "one-off",
            Decision::Systemic(_) => "systemic",
            Decision::Watch(_) => "watch",
        }
    }

    pub fn why(&self) -> &str {
        match self {
            Decision::OneOff(w) | Decision::Systemic(w) | Decision::Watch(w) => w,
        }
    }

    /// What to do about the cause, after the spread's verdict.
    pub fn add_advice(&mut self, advice: &str) {
        let (Decision::OneOff(w) | Decision::Systemic(w) | Decision::Watch(w)) = self;
        if !advice.is_empty() {
            w.push_str(". ");
            w.push_str(advice);
        }
    }

    /// One-off vs systemic from the spread across users, sessions, features and days; what to
    /// fix depends on the lane (infrastructure is fixed in configuration, not in a prompt).
    pub fn from_spread(s: &Spread, lane: Lane) -> Decision {
        let features = s.features.len();
        let plural = |n: u64, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        let facts = format!(
            "{}, {}, {} over {}",
            plural(s.users, "user"),
            plural(s.sessions, "session"),
            plural(features as u64, "feature"),
            plural(s.days, "day")
        );
        let operations = lane == Lane::Operations;
        if s.users <= 1 || s.sessions <= 1 || (s.days <= 1 && s.users <= 2) {
            Decision::OneOff(if operations {
                format!("{facts}: a passing incident; check it did not recur")
            } else {
                format!("{facts}: fix the instance; an eval case guards against a relapse")
            })
        } else if s.users >= 3 && s.days >= 2 && (features >= 2 || s.users >= 5) {
            Decision::Systemic(if operations {
                format!("{facts}: a capacity or dependency problem, fixed in configuration (limits, retries, timeouts, fallbacks)")
            } else {
                format!("{facts}: fix at the prompt, model or tool level and keep its eval cases in CI")
            })
        } else {
            Decision::Watch(format!("{facts}: recurring but narrow; a targeted fix, then watch the trend"))
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The command that opens it in the terminal UI: `flywheel tui --trace <id>`.
    pub open: String,
    pub trace_id: String,
    pub span_id: String,
    pub time: String,
    pub feature: String,
    pub model: String,
    pub reasons: Vec<String>,
    /// Lines kept (code stays code), personal data masked, cut to a few lines.
    pub request: String,
    pub output: String,
    pub expected: Option<String>,
}

impl Example {
    /// Whether a text is code or otherwise laid out in lines (shown as a code block).
    pub fn is_code(text: &str) -> bool {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        text.contains("```")
            || (lines.len() >= 2
                && lines
                    .iter()
                    .filter(|l| l.starts_with("    ") || l.starts_with('\t') || l.trim_end().ends_with(['{', '}', ';', ')']))
                    .count()
                    * 3
                    >= lines.len())
    }
}

/// `text` for an example: personal data masked, each line's spaces kept, at most `max_lines`
/// lines and `max` characters, with an ellipsis when cut. Prose on one line is collapsed like
/// an excerpt.
pub fn lines_excerpt(text: &str, max: usize, max_lines: usize) -> String {
    let text = text.trim_matches('\n').trim_end();
    if !Example::is_code(text) {
        return excerpt(text, max);
    }
    let masked = mask(text);
    let mut out = String::new();
    let mut cut = false;
    for (i, line) in masked.lines().enumerate() {
        if i == max_lines || out.chars().count() + line.chars().count() > max {
            cut = true;
            break;
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line.trim_end());
    }
    if cut {
        out.push_str("\n…");
    }
    out
}

#[derive(Row, Deserialize)]
struct CallTotals {
    calls: u64,
    traces: u64,
    users: u64,
    cost: f64,
}

#[derive(Row, Deserialize)]
struct Count {
    key: String,
    n: u64,
}

async fn headline(store: &Store, project: &str, p: &Period) -> Result<Headline, StoreError> {
    let t: CallTotals = store
        .query(
            "SELECT count() AS calls, uniqExact(trace_id) AS traces, uniqExactIf(user_id, user_id != '') AS users, \
             toFloat64(sum(ifNull(cost_usd, 0))) AS cost FROM llm_calls FINAL \
             WHERE project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) AND start_time < fromUnixTimestamp64Nano(?)",
        )
        .bind(project)
        .bind(nanos(p.start))
        .bind(nanos(p.end))
        .fetch_one()
        .await?;
    let failing: u64 = store
        .query(
            "SELECT count() FROM failures FINAL WHERE project_id = ? AND call_time >= fromUnixTimestamp64Nano(?) AND call_time < fromUnixTimestamp64Nano(?)",
        )
        .bind(project)
        .bind(nanos(p.start))
        .bind(nanos(p.end))
        .fetch_one()
        .await?;
    let groups = queries::signal_rates(store, project, p.start, p.end, Grouping::Feature).await?;
    let traces: u64 = groups.iter().map(|g| g.traces).sum();
    let mut with: BTreeMap<String, u64> = BTreeMap::new();
    for g in &groups {
        for (k, n) in &g.with_signal {
            *with.entry(k.clone()).or_default() += n;
        }
    }
    let signal_rates = with.into_iter().map(|(k, n)| (k, if traces == 0 { 0.0 } else { n as f64 / traces as f64 })).collect();
    Ok(Headline { calls: t.calls, traces: t.traces, users: t.users, failing_calls: failing, cost_usd: t.cost, signal_rates })
}

async fn per_day(
    store: &Store,
    project: &str,
    table: &str,
    time: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<Count>, StoreError> {
    store
        .query(&format!(
            "SELECT toString(toDate({time})) AS key, count() AS n FROM {table} FINAL \
             WHERE project_id = ? AND {time} >= fromUnixTimestamp64Nano(?) AND {time} < fromUnixTimestamp64Nano(?) GROUP BY key ORDER BY key"
        ))
        .bind(project)
        .bind(nanos(from))
        .bind(nanos(to))
        .fetch_all()
        .await
}

async fn per_feature(store: &Store, project: &str, table: &str, time: &str, p: &Period) -> Result<BTreeMap<String, u64>, StoreError> {
    let rows: Vec<Count> = store
        .query(&format!(
            "SELECT toString(feature) AS key, count() AS n FROM {table} FINAL \
             WHERE project_id = ? AND {time} >= fromUnixTimestamp64Nano(?) AND {time} < fromUnixTimestamp64Nano(?) GROUP BY key"
        ))
        .bind(project)
        .bind(nanos(p.start))
        .bind(nanos(p.end))
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(|r| (r.key, r.n)).collect())
}

/// Spread of every pattern's current members (latest run), from their failures rows. Days are
/// 24-hour periods counted back from `end` (the review's end), not calendar dates: a 7-day
/// review starting at noon touches 8 dates, and "over 8 days" would misreport it.
async fn spreads(store: &Store, project: &str, end: OffsetDateTime) -> Result<BTreeMap<String, Spread>, StoreError> {
    let rows: Vec<Spread> = store
        .query(
            "SELECT m.pattern_id AS pattern_id, count() AS members, uniqExactIf(f.user_id, f.user_id != '') AS users, \
             uniqExactIf(f.session_id, f.session_id != '') AS sessions, \
             uniqExact(intDiv(toUnixTimestamp64Nano(fromUnixTimestamp64Nano(?)) - toUnixTimestamp64Nano(f.call_time), 86400000000000)) AS days, \
             arraySort(x -> -x.2, arrayMap(k -> (toString(k), toUInt64(countEqual(groupArray(f.feature), k))), groupUniqArray(f.feature))) AS features, \
             arraySort(x -> -x.2, arrayMap(k -> (toString(k), toUInt64(countEqual(groupArray(f.model), k))), groupUniqArray(f.model))) AS models \
             FROM (SELECT pattern_id, trace_id, span_id FROM pattern_members FINAL WHERE project_id = ? \
                   AND (pattern_id, run_id) IN (SELECT pattern_id, argMax(run_id, updated_at) FROM patterns WHERE project_id = ? GROUP BY pattern_id)) AS m \
             INNER JOIN (SELECT trace_id, span_id, user_id, session_id, feature, model, call_time FROM failures FINAL WHERE project_id = ?) AS f \
             ON f.trace_id = m.trace_id AND f.span_id = m.span_id \
             GROUP BY m.pattern_id",
        )
        .bind(nanos(end))
        .bind(project)
        .bind(project)
        .bind(project)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(|s| (s.pattern_id.clone(), s)).collect())
}

/// Gathers the review of `period` for `project`; `top` patterns get examples.
pub async fn gather(store: &Store, project: &str, period: &Period, top: usize) -> Result<Review, StoreError> {
    let previous = period.previous();
    let current = headline(store, project, period).await?;
    let before = headline(store, project, &previous).await?;

    let calls = per_day(store, project, "llm_calls", "start_time", previous.start, period.end).await?;
    let fails: BTreeMap<String, u64> =
        per_day(store, project, "failures", "call_time", previous.start, period.end).await?.into_iter().map(|c| (c.key, c.n)).collect();
    let mut daily = Vec::new();
    let mut day = previous.start.date();
    while day.with_time(time::Time::MIDNIGHT).assume_utc() < period.end {
        let key = day.to_string();
        let n = calls.iter().find(|c| c.key == key).map(|c| c.n).unwrap_or(0);
        let current_day = day >= period.start.date();
        daily.push(Day { date: key.clone(), current: current_day, calls: n, failing_calls: fails.get(&key).copied().unwrap_or(0) });
        day = day.next_day().expect("dates in range");
    }

    let spreads = spreads(store, project, period.end).await?;
    let triage = queries::triage_states(store, project).await?;
    let mut patterns = Vec::new();
    for p in queries::current_patterns(store, project).await? {
        let recent = p.last_seen >= previous.start || p.trend == "resolved";
        if !recent || p.size == 0 && p.trend != "resolved" {
            continue;
        }
        let spread = spreads.get(&p.pattern_id).cloned().unwrap_or_else(|| Spread {
            pattern_id: p.pattern_id.clone(),
            members: p.size,
            users: p.users,
            sessions: p.sessions,
            days: 1,
            features: p.facets.get("feature").map(|f| vec![(f.clone(), p.size)]).unwrap_or_default(),
            models: p.facets.get("model").map(|m| vec![(m.clone(), p.size)]).unwrap_or_default(),
        });
        let share_of_users = if current.users == 0 { 0.0 } else { (p.users as f64 / current.users as f64).min(1.0) };
        let lane = Lane::of(&p);
        let mut decision = Decision::from_spread(&spread, lane);
        let signature = p.facets.get("signature").map(String::as_str).unwrap_or("");
        // No cause key: users flagged it (behaviour); an operations pattern always has one.
        if !(signature.is_empty() && lane == Lane::Operations) {
            decision.add_advice(crate::cause::advice(signature));
        }
        let triage = triage.get(&p.pattern_id).cloned();
        patterns.push(PatternView { pattern: p, share_of_users, spread, decision, triage, examples: Vec::new() });
    }
    // Active patterns by impact first (the order of current_patterns), resolved ones last.
    patterns.sort_by_key(|v| v.pattern.trend == "resolved");
    // Examples for the top behaviour patterns and for every high-severity one, operations
    // included (a rate limit at severity 0.95 deserves its examples and advice).
    let mut rank = 0;
    for view in patterns.iter_mut().filter(|v| v.pattern.trend != "resolved") {
        let behaviour = Lane::of(&view.pattern) == Lane::Behaviour;
        rank += usize::from(behaviour);
        if (behaviour && rank <= top) || view.pattern.severity >= HIGH_SEVERITY {
            view.examples = examples(store, project, &view.pattern.pattern_id).await?;
        }
    }
    let unclustered = unclustered(store, project, period).await?;
    // A window that spans two releases says what changed between them.
    let releases = crate::compare::compare(store, project, &crate::compare::By::Release, period.start, period.end).await?;
    let releases = (releases.comparable_values() >= 2).then_some(releases);
    let thresholds = crate::readiness::Thresholds::default();
    let mut readiness = crate::readiness::assess(store, project, period.end, 8, None, &thresholds).await?;
    readiness.sort_by_key(|f| f.level == crate::readiness::Level::NotEnoughData);

    let inconsistencies = inconsistencies(store, project, period).await?;
    let calls_by_feature = per_feature(store, project, "llm_calls", "start_time", period).await?;
    let fails_by_feature = per_feature(store, project, "failures", "call_time", period).await?;
    let features = queries::signal_rates(store, project, period.start, period.end, Grouping::Feature)
        .await?
        .into_iter()
        .map(|rates| FeatureRates {
            feature: rates.key.clone(),
            calls: calls_by_feature.get(&rates.key).copied().unwrap_or(0),
            failing_calls: fails_by_feature.get(&rates.key).copied().unwrap_or(0),
            rates,
        })
        .collect();

    let mut signal_kinds: Vec<String> = current.signal_rates.keys().chain(before.signal_rates.keys()).cloned().collect();
    signal_kinds.sort_by_key(|k| (NEGATIVE_SIGNALS.iter().position(|n| n == k).unwrap_or(usize::MAX), k.clone()));
    signal_kinds.dedup();

    Ok(Review {
        project: project.to_string(),
        period: period.clone(),
        generated_at: OffsetDateTime::now_utc(),
        current,
        previous: before,
        daily,
        patterns,
        features,
        signal_kinds,
        unclustered,
        releases,
        readiness,
        inconsistencies,
    })
}

/// Questions shown in the review's "Inconsistent answers" section.
const INCONSISTENCIES_SHOWN: usize = 10;

/// The period's questions answered inconsistently, from their failures' evidence: one entry
/// per question (its largest count), the most asked first.
async fn inconsistencies(store: &Store, project: &str, p: &Period) -> Result<Vec<Contrast>, StoreError> {
    let rows: Vec<String> = store
        .query(
            "SELECT details FROM failures FINAL WHERE project_id = ? AND call_time >= fromUnixTimestamp64Nano(?) \
             AND call_time < fromUnixTimestamp64Nano(?) AND has(reasons, 'inconsistent') LIMIT 10000",
        )
        .bind(project)
        .bind(nanos(p.start))
        .bind(nanos(p.end))
        .fetch_all()
        .await?;
    let mut out = Contrast::by_question(rows.iter().filter_map(|d| FailureDetails::parse(d).contrast));
    out.truncate(INCONSISTENCIES_SHOWN);
    Ok(out)
}

/// A stance as the review lists it: `**30 days** (24 answers)`, the reference in bold.
pub fn stance_line(c: &Contrast) -> String {
    c.answers
        .iter()
        .map(|s| {
            let facts = if s.facts.is_empty() { "(no fact)".to_string() } else { s.facts.join(", ") };
            let facts = if s.reference { format!("**{facts}**") } else { facts };
            format!("{facts} ({} answer{})", s.calls, if s.calls == 1 { "" } else { "s" })
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The period's failing calls that no pattern of the latest runs holds, by reason, with a few
/// examples (the most severe first).
async fn unclustered(store: &Store, project: &str, p: &Period) -> Result<Unclustered, StoreError> {
    let outside = "project_id = ? AND call_time >= fromUnixTimestamp64Nano(?) AND call_time < fromUnixTimestamp64Nano(?) \
         AND (trace_id, span_id) NOT IN (SELECT trace_id, span_id FROM pattern_members FINAL WHERE project_id = ? \
         AND (pattern_id, run_id) IN (SELECT pattern_id, argMax(run_id, updated_at) FROM patterns WHERE project_id = ? GROUP BY pattern_id))";
    // The three queries read the same failures: one place binds the window's parameters.
    let query = |select: &str, tail: &str| {
        store
            .query(&format!("{select} WHERE {outside} {tail}"))
            .bind(project)
            .bind(nanos(p.start))
            .bind(nanos(p.end))
            .bind(project)
            .bind(project)
    };
    let reasons: Vec<Count> = query(
        "SELECT toString(reason) AS key, count() AS n FROM failures FINAL ARRAY JOIN reasons AS reason",
        "GROUP BY key ORDER BY n DESC, key",
    )
    .fetch_all()
    .await?;
    let failing_calls: u64 = query("SELECT count() FROM failures FINAL", "").fetch_one().await?;
    let rows: Vec<FailureRow> =
        query("SELECT ?fields FROM failures FINAL", &format!("ORDER BY severity DESC, call_time DESC LIMIT {UNCLUSTERED_EXAMPLES}"))
            .fetch_all()
            .await?;
    let examples = rows
        .into_iter()
        .map(|f| {
            let d = FailureDetails::parse(&f.details);
            let output = if d.output.trim().is_empty() {
                if d.error.is_empty() { "(no answer)".to_string() } else { format!("(no answer; error: {})", d.error) }
            } else {
                d.output.clone()
            };
            example(&f, &d.request, &output, Some(d.edit_text).filter(|t| !t.trim().is_empty()))
        })
        .collect();
    Ok(Unclustered { failing_calls, reasons: reasons.into_iter().map(|c| (c.key, c.n)).collect(), examples })
}

/// An example of a failing call, its texts cut for a review.
fn example(f: &FailureRow, request: &str, output: &str, expected: Option<String>) -> Example {
    Example {
        open: format!("flywheel tui --project {} --trace {}", f.project_id, f.trace_id),
        trace_id: f.trace_id.clone(),
        span_id: f.span_id.clone(),
        time: {
            let t = rfc3339(f.call_time);
            format!("{} UTC", t.get(..16).unwrap_or(&t).replace('T', " "))
        },
        feature: f.feature.clone(),
        model: f.model.clone(),
        reasons: f.reasons.clone(),
        request: lines_excerpt(request, 400, 8),
        output: lines_excerpt(output, 600, 12),
        expected: expected.map(|t| lines_excerpt(&t, 400, 8)),
    }
}

/// Three diverse members of a pattern, with redacted excerpts.
async fn examples(store: &Store, project: &str, pattern_id: &str) -> Result<Vec<Example>, StoreError> {
    let (calls, picked, how) = export::representative_calls(store, project, pattern_id, 3).await?;
    tracing::debug!(pattern_id, lexical = (how == Representation::Lexical), "report examples");
    Ok(picked
        .into_iter()
        .map(|i| {
            let c = &calls[i];
            let f = &c.failure;
            let output = c.output_text();
            let output = if output.trim().is_empty() {
                Some(c.details().error)
                    .filter(|e| !e.is_empty())
                    .map(|e| format!("(no answer; error: {e})"))
                    .unwrap_or_else(|| "(no answer)".into())
            } else {
                output
            };
            example(f, &c.request_text(), &output, c.edit_text())
        })
        .collect())
}
