//! Releases compared: the calls of a window split by a dimension — the release
//! (`service.version`), the prompt version, the model, the feature or any span or resource
//! attribute — with, per value, the failure rate, each pattern's rate, the users' signal rates,
//! the cost per call and the latency p95; rates that differ significantly are marked, so "2.15
//! doubled the refusals" is one command.
//!
//! The test: a two-sided two-proportion z-test (pooled variance) of each value against every
//! other value pooled, run only when both sides have at least [`MIN_CALLS`] calls and the
//! pooled rate expects at least [`MIN_EXPECTED`] events and non-events on each side (the normal
//! approximation's usual condition). A difference is marked when its p-value stays under
//! [`ALPHA`] after a Bonferroni correction over every test the table ran: with 40 rates
//! compared, one of them would pass an uncorrected 5 % test by chance alone.

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::Row;
use flywheel_schemas::queries::nanos;
use flywheel_schemas::store::StoreQuery;
use flywheel_schemas::{Store, StoreError, queries};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Fewest calls on each side of a test.
pub const MIN_CALLS: u64 = 30;
/// Fewest expected events (and non-events) on each side of a test.
pub const MIN_EXPECTED: f64 = 5.0;
/// Family-wise error rate of the marked differences.
pub const ALPHA: f64 = 0.05;
/// Values shown; the rest are pooled as `(other)`.
pub const MAX_VALUES: usize = 8;

/// What the calls are split by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum By {
    /// The resource's `service.version`.
    Release,
    /// The prompt template's version (`llm_calls.prompt_template_version`, read at ingest from
    /// whichever attribute the producer's convention carries it in).
    Prompt,
    /// The model that answered (the response model, else the requested one).
    Model,
    Feature,
    /// A span attribute, else the resource attribute of that name.
    Attribute(String),
}

impl By {
    pub fn parse(s: &str) -> By {
        match s {
            "service.version" | "release" | "version" => By::Release,
            "prompt" | "prompt.version" => By::Prompt,
            "model" => By::Model,
            "feature" => By::Feature,
            other => By::Attribute(other.to_string()),
        }
    }

    pub fn name(&self) -> String {
        match self {
            By::Release => "service.version".into(),
            By::Prompt => "prompt version".into(),
            By::Model => "model".into(),
            By::Feature => "feature".into(),
            By::Attribute(a) => a.clone(),
        }
    }

    /// The span attribute the key is read from, for the dimensions not on `llm_calls`.
    fn attribute(&self) -> Option<&str> {
        match self {
            By::Release => Some("service.version"),
            By::Attribute(a) => Some(a),
            _ => None,
        }
    }
}

/// One value of the dimension.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Group {
    /// The value; `(none)` for calls without one, `(other)` for the values past [`MAX_VALUES`].
    pub value: String,
    pub calls: u64,
    pub traces: u64,
    pub failing_calls: u64,
    pub cost_usd: f64,
    pub latency_p95_ms: f64,
    /// Failing calls per pattern id.
    pub patterns: BTreeMap<String, u64>,
    /// Traces with at least one signal of each kind.
    pub signals: BTreeMap<String, u64>,
}

/// One rate of one value against the rest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Test {
    /// `failure rate`, `pattern <id>` or `signal <kind>`.
    pub metric: String,
    pub value: String,
    pub rate: f64,
    pub rest_rate: f64,
    /// Two-sided p-value; `None` when the samples are too small to test.
    pub p_value: Option<f64>,
    /// Under [`ALPHA`] after the Bonferroni correction.
    pub significant: bool,
}

/// The comparison of one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub project: String,
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    pub groups: Vec<Group>,
    /// Pattern id → label, for the patterns with members in the window.
    pub patterns: BTreeMap<String, String>,
    pub tests: Vec<Test>,
    /// How many tests ran (the Bonferroni divisor).
    pub tests_run: usize,
    pub method: String,
}

#[derive(Row, Deserialize)]
struct Totals {
    key: String,
    calls: u64,
    traces: u64,
    cost: f64,
    p95: f64,
}

#[derive(Row, Deserialize)]
struct PairCount {
    key: String,
    what: String,
    n: u64,
}

/// Compares the calls of `project` in `[since, until)` split by `by`.
pub async fn compare(
    store: &Store,
    project: &str,
    by: &By,
    since: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<Comparison, StoreError> {
    let (from, to) = (nanos(since), nanos(until));
    let window = "project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) AND start_time < fromUnixTimestamp64Nano(?)";
    // One row per call with its key: the calls' own columns, or the attribute from its span.
    let calls = match by.attribute() {
        None => {
            let expr = match by {
                By::Prompt => "prompt_template_version",
                By::Model => "if(response_model != '', response_model, request_model)",
                _ => "feature",
            };
            format!("SELECT trace_id, span_id, {expr} AS key, cost_usd, duration_ns FROM llm_calls FINAL WHERE {window}")
        }
        Some(_) => format!(
            "SELECT c.trace_id AS trace_id, c.span_id AS span_id, s.key AS key, c.cost_usd AS cost_usd, c.duration_ns AS duration_ns \
             FROM (SELECT trace_id, span_id, cost_usd, duration_ns FROM llm_calls FINAL WHERE {window}) AS c \
             LEFT JOIN (SELECT trace_id, span_id, any(if(attributes[?] != '', attributes[?], resource_attributes[?])) AS key \
                        FROM spans WHERE {window} GROUP BY trace_id, span_id) AS s \
             ON s.trace_id = c.trace_id AND s.span_id = c.span_id"
        ),
    };
    // The binds of `calls`, in order.
    let bind_calls = |q| bind_window(q, project, by.attribute(), from, to);

    let totals: Vec<Totals> = bind_calls(store.query(&format!(
        "SELECT key, count() AS calls, uniqExact(trace_id) AS traces, sum(ifNull(cost_usd, 0)) AS cost, \
         quantileExact(0.95)(duration_ns) / 1e6 AS p95 FROM ({calls}) GROUP BY key ORDER BY calls DESC, key"
    )))
    .fetch_all()
    .await?;
    let failing: Vec<PairCount> = bind_calls(store.query(&format!(
        "SELECT c.key AS key, 'failing' AS what, count() AS n FROM ({calls}) AS c \
         INNER JOIN (SELECT trace_id, span_id FROM failures FINAL WHERE project_id = ?) AS f \
         ON f.trace_id = c.trace_id AND f.span_id = c.span_id GROUP BY key"
    )))
    .bind(project)
    .fetch_all()
    .await?;
    let patterns: Vec<PairCount> = bind_calls(store.query(&format!(
        "SELECT c.key AS key, m.pattern_id AS what, count() AS n FROM ({calls}) AS c \
         INNER JOIN (SELECT DISTINCT pattern_id, trace_id, span_id FROM pattern_members WHERE project_id = ? \
                     AND (pattern_id, run_id) IN (SELECT pattern_id, argMax(run_id, updated_at) FROM patterns WHERE project_id = ? GROUP BY pattern_id)) AS m \
         ON m.trace_id = c.trace_id AND m.span_id = c.span_id GROUP BY key, what"
    )))
    .bind(project)
    .bind(project)
    .fetch_all()
    .await?;
    let signals: Vec<PairCount> = bind_calls(store.query(&format!(
        "SELECT c.key AS key, s.kind AS what, uniqExact(c.trace_id) AS n FROM (SELECT DISTINCT trace_id, key FROM ({calls})) AS c \
         INNER JOIN (SELECT DISTINCT trace_id, toString(kind) AS kind FROM signals FINAL WHERE project_id = ? AND trace_id != '') AS s \
         ON s.trace_id = c.trace_id GROUP BY key, what"
    )))
    .bind(project)
    .fetch_all()
    .await?;

    let mut groups: Vec<Group> = totals
        .into_iter()
        .map(|t| Group {
            value: if t.key.is_empty() { "(none)".into() } else { t.key },
            calls: t.calls,
            traces: t.traces,
            cost_usd: t.cost,
            latency_p95_ms: if t.p95.is_finite() { t.p95 } else { 0.0 },
            ..Group::default()
        })
        .collect();
    let value_of = |key: &str| if key.is_empty() { "(none)".to_string() } else { key.to_string() };
    for c in failing {
        if let Some(g) = groups.iter_mut().find(|g| g.value == value_of(&c.key)) {
            g.failing_calls = c.n;
        }
    }
    for c in patterns {
        if let Some(g) = groups.iter_mut().find(|g| g.value == value_of(&c.key)) {
            g.patterns.insert(c.what, c.n);
        }
    }
    for c in signals {
        if let Some(g) = groups.iter_mut().find(|g| g.value == value_of(&c.key)) {
            g.signals.insert(c.what, c.n);
        }
    }
    let groups = pool_tail(groups);

    let ids: BTreeSet<&String> = groups.iter().flat_map(|g| g.patterns.keys()).collect();
    let labels: BTreeMap<String, String> = queries::current_patterns(store, project)
        .await?
        .into_iter()
        .filter(|p| ids.contains(&p.pattern_id))
        .map(|p| (p.pattern_id, p.label))
        .collect();
    let (tests, tests_run) = tests(&groups);
    Ok(Comparison {
        project: project.to_string(),
        by: by.name(),
        since,
        until,
        groups,
        patterns: labels,
        tests,
        tests_run,
        method: format!(
            "two-sided two-proportion z-test of each value against the other values pooled; marked when p < {ALPHA} after a Bonferroni \
             correction over the tests run; a test needs {MIN_CALLS} calls (traces for signals) on each side and {MIN_EXPECTED} expected events"
        ),
    })
}

/// Binds the parameters of the per-call subquery of [`compare`], in order.
fn bind_window<'s>(q: StoreQuery<'s>, project: &str, attribute: Option<&str>, from: i64, to: i64) -> StoreQuery<'s> {
    let q = q.bind(project).bind(from).bind(to);
    match attribute {
        Some(attr) => q.bind(attr).bind(attr).bind(attr).bind(project).bind(from).bind(to),
        None => q,
    }
}

/// The values past [`MAX_VALUES`] pooled into `(other)`.
fn pool_tail(mut groups: Vec<Group>) -> Vec<Group> {
    if groups.len() <= MAX_VALUES {
        return groups;
    }
    let tail = groups.split_off(MAX_VALUES - 1);
    let mut other = Group { value: "(other)".into(), ..Group::default() };
    for g in tail {
        other.calls += g.calls;
        other.traces += g.traces;
        other.failing_calls += g.failing_calls;
        other.cost_usd += g.cost_usd;
        // A p95 cannot be pooled from p95s: the largest is an upper bound.
        other.latency_p95_ms = other.latency_p95_ms.max(g.latency_p95_ms);
        for (k, n) in g.patterns {
            *other.patterns.entry(k).or_default() += n;
        }
        for (k, n) in g.signals {
            *other.signals.entry(k).or_default() += n;
        }
    }
    groups.push(other);
    groups
}

/// A rate the table tests.
enum Metric {
    /// Failing calls of all calls.
    Failures,
    /// Failing calls of one pattern, of all calls.
    Pattern(String),
    /// Traces with a signal of one kind, of all traces.
    Signal(String),
}

impl Metric {
    fn count(&self, g: &Group) -> u64 {
        match self {
            Metric::Failures => g.failing_calls,
            Metric::Pattern(id) => g.patterns.get(id).copied().unwrap_or(0),
            Metric::Signal(kind) => g.signals.get(kind).copied().unwrap_or(0),
        }
    }

    fn name(&self) -> String {
        match self {
            Metric::Failures => "failure rate".into(),
            Metric::Pattern(id) => format!("pattern {id}"),
            Metric::Signal(kind) => format!("signal {kind}"),
        }
    }
}

/// Every rate of every value against the rest, and how many tests ran.
fn tests(groups: &[Group]) -> (Vec<Test>, usize) {
    if groups.len() < 2 {
        return (vec![], 0);
    }
    let mut out = Vec::new();
    let total = |f: &dyn Fn(&Group) -> u64| groups.iter().map(f).sum::<u64>();
    let (calls, traces) = (total(&|g| g.calls), total(&|g| g.traces));
    let mut metrics = vec![Metric::Failures];
    metrics.extend(groups.iter().flat_map(|g| g.patterns.keys().cloned()).collect::<BTreeSet<_>>().into_iter().map(Metric::Pattern));
    metrics.extend(groups.iter().flat_map(|g| g.signals.keys().cloned()).collect::<BTreeSet<_>>().into_iter().map(Metric::Signal));
    for m in &metrics {
        let count = |g: &Group| m.count(g);
        let metric = m.name();
        let events = total(&count);
        for g in groups {
            let (n, rest_n) = if matches!(m, Metric::Signal(_)) { (g.traces, traces - g.traces) } else { (g.calls, calls - g.calls) };
            let x = count(g);
            let rest_x = events - x;
            let rate = x as f64 / n.max(1) as f64;
            let rest_rate = rest_x as f64 / rest_n.max(1) as f64;
            out.push(Test {
                metric: metric.clone(),
                value: g.value.clone(),
                rate,
                rest_rate,
                p_value: two_proportion(x, n, rest_x, rest_n),
                significant: false,
            });
        }
    }
    // With two values, "A against the rest" and "B against the rest" are one hypothesis.
    let run = out.iter().filter(|t| t.p_value.is_some()).count() / if groups.len() == 2 { 2 } else { 1 };
    for t in &mut out {
        t.significant = t.p_value.is_some_and(|p| p < ALPHA / run.max(1) as f64);
    }
    (out, run)
}

/// Two-sided p-value of the difference of two proportions (pooled z-test); `None` when a side
/// has fewer than [`MIN_CALLS`] trials or the pooled rate expects fewer than [`MIN_EXPECTED`]
/// events or non-events on a side.
pub fn two_proportion(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<f64> {
    if n1 < MIN_CALLS || n2 < MIN_CALLS {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let enough = |n: f64| n * pooled >= MIN_EXPECTED && n * (1.0 - pooled) >= MIN_EXPECTED;
    if !enough(n1f) || !enough(n2f) {
        return None;
    }
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    let z = (x1 as f64 / n1f - x2 as f64 / n2f) / se;
    // P(|Z| > |z|) = erfc(|z| / √2).
    Some(libm::erfc(z.abs() / std::f64::consts::SQRT_2))
}

impl Comparison {
    /// Values with at least [`MIN_CALLS`] calls, `(none)` left out: what a comparison compares.
    pub fn comparable_values(&self) -> usize {
        self.groups.iter().filter(|g| g.value != "(none)" && g.calls >= MIN_CALLS).count()
    }

    /// The marked differences as sentences, each rate that is *higher* for a value than for
    /// the others (with two values, each difference once): "2.15.0: answers cut off … 8.1 %
    /// against 0.0 % (p < 0.0001)".
    pub fn differences(&self) -> Vec<String> {
        self.tests
            .iter()
            .filter(|t| t.significant && t.rate > t.rest_rate)
            .map(|t| {
                let what = match t.metric.strip_prefix("pattern ") {
                    Some(id) => format!("pattern “{}”", self.patterns.get(id).map_or(id, String::as_str)),
                    None => t.metric.strip_prefix("signal ").map_or_else(|| t.metric.clone(), |k| format!("`{k}` rate (of traces)")),
                };
                let p = t.p_value.map_or_else(String::new, |p| if p < 1e-4 { "p < 0.0001".into() } else { format!("p = {p:.4}") });
                format!("{}: {what} {} against {} elsewhere ({p})", t.value, pct(t.rate), pct(t.rest_rate))
            })
            .collect()
    }

    /// The table a reviewer reads: one column per value, a row per rate; a significant
    /// difference carries ▲ or ▼ (against the other values) and its p-value.
    pub fn render(&self) -> String {
        let mut out = format!("project {}: calls by {}, {} to {}\n", self.project, self.by, self.since.date(), self.until.date());
        if self.groups.is_empty() {
            out.push_str("no calls in this window\n");
            return out;
        }
        let width = 22usize;
        let mut header = format!("{:<44}", "");
        for g in &self.groups {
            header.push_str(&format!("{:>width$}", clip(&g.value, width - 2)));
        }
        out.push_str(header.trim_end());
        out.push('\n');
        let row = |name: &str, cells: Vec<String>| -> String {
            let mut line = format!("{:<44}", clip(name, 43));
            for c in cells {
                line.push_str(&format!("{c:>width$}"));
            }
            format!("{}\n", line.trim_end())
        };
        out.push_str(&row("calls", self.groups.iter().map(|g| g.calls.to_string()).collect()));
        let rated = |metric: &str| -> Vec<String> {
            self.groups
                .iter()
                .map(|g| {
                    let t = self.tests.iter().find(|t| t.metric == metric && t.value == g.value);
                    match t {
                        Some(t) if t.significant => format!(
                            "{} {} p={}",
                            pct(t.rate),
                            if t.rate > t.rest_rate { "▲" } else { "▼" },
                            t.p_value.map_or_else(String::new, |p| if p < 1e-4 { "<1e-4".into() } else { format!("{p:.4}") })
                        ),
                        Some(t) => pct(t.rate),
                        None => "—".into(),
                    }
                })
                .collect()
        };
        out.push_str(&row("failure rate", rated("failure rate")));
        // Patterns with a marked difference first, then by size.
        let mut ids: Vec<&String> = self.patterns.keys().collect();
        let size = |id: &String| self.groups.iter().map(|g| g.patterns.get(id).copied().unwrap_or(0)).sum::<u64>();
        let marked = |metric: String| self.tests.iter().any(|t| t.metric == metric && t.significant);
        ids.sort_by_key(|id| (!marked(format!("pattern {id}")), std::cmp::Reverse(size(id)), (*id).clone()));
        for id in ids.iter().take(12) {
            let label = self.patterns.get(*id).map_or(id.as_str(), String::as_str);
            out.push_str(&row(&format!("  {label}"), rated(&format!("pattern {id}"))));
        }
        let kinds: BTreeSet<&str> = self.tests.iter().filter_map(|t| t.metric.strip_prefix("signal ")).collect();
        for kind in kinds {
            out.push_str(&row(&format!("{kind} (of traces)"), rated(&format!("signal {kind}"))));
        }
        out.push_str(&row("cost per call", self.groups.iter().map(|g| format!("${:.4}", g.cost_usd / g.calls.max(1) as f64)).collect()));
        out.push_str(&row("latency p95", self.groups.iter().map(|g| format!("{:.0} ms", g.latency_p95_ms)).collect()));
        // With two values a difference shows in both columns: count it once.
        let marked = self.tests.iter().filter(|t| t.significant).count() / if self.groups.len() == 2 { 2 } else { 1 };
        out.push_str(&format!(
            "\n{marked} significant difference(s) of {} tests ({}). ▲/▼: this value against the others.\n",
            self.tests_run, self.method
        ));
        out
    }
}

fn pct(r: f64) -> String {
    format!("{:.1}%", r * 100.0)
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n.saturating_sub(1)).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_proportion_test_matches_the_textbook_and_refuses_small_samples() {
        // 60/400 vs 30/400: pooled 0.1125, z = 3.357, two-sided p = 0.00079.
        let p = two_proportion(60, 400, 30, 400).unwrap();
        assert!((p - 0.000789).abs() < 0.00001, "{p}");
        // The same rates: no evidence.
        assert!(two_proportion(40, 400, 40, 400).unwrap() > 0.99);
        // Too few calls, or too few expected events.
        assert_eq!(two_proportion(5, 20, 30, 400), None);
        assert_eq!(two_proportion(1, 400, 2, 400), None);
    }

    fn group(value: &str, calls: u64, failing: u64, pattern: u64) -> Group {
        Group {
            value: value.into(),
            calls,
            traces: calls,
            failing_calls: failing,
            patterns: [("pat_a".to_string(), pattern)].into(),
            ..Group::default()
        }
    }

    #[test]
    fn a_rate_that_doubled_is_marked_and_noise_is_not() {
        let groups = vec![group("2.14.0", 1000, 100, 10), group("2.15.0", 1000, 108, 60)];
        let (tests, run) = tests(&groups);
        assert_eq!(run, 2, "two rates, each one hypothesis with two values");
        let find = |metric: &str, value: &str| tests.iter().find(|t| t.metric == metric && t.value == value).unwrap();
        assert!(find("pattern pat_a", "2.15.0").significant);
        assert!(find("pattern pat_a", "2.15.0").rate > find("pattern pat_a", "2.15.0").rest_rate);
        assert!(!find("failure rate", "2.15.0").significant, "10 % vs 10.8 % is noise");
    }

    #[test]
    fn values_past_the_limit_are_pooled() {
        let groups: Vec<Group> = (0..12).map(|i| group(&format!("v{i}"), 100, 10, 1)).collect();
        let pooled = pool_tail(groups);
        assert_eq!(pooled.len(), MAX_VALUES);
        assert_eq!(pooled.last().unwrap().value, "(other)");
        assert_eq!(pooled.last().unwrap().calls, 500);
        assert_eq!(By::parse("service.version"), By::Release);
        assert_eq!(By::parse("deployment.environment.name"), By::Attribute("deployment.environment.name".into()));
    }
}
