//! The alert rules of a tick: the window's recent part against the rest of it (the baseline).
//!
//! Each rule proposes candidates with their figures; a candidate that compares two rates must
//! have at least `min_count` events in the recent part and pass the two-proportion test of
//! [`crate::compare::two_proportion`] at `alpha / m`, where `m` is the number of such tests
//! the tick ran (Bonferroni): watching fifty features and five signal kinds must not page once
//! a day by chance. A new pattern or a regression is an event, not a rate: it needs its
//! minimum of users or failures only.
//!
//! An alert's id is a hash of what it is about and, for rates, the UTC day of the tick: a rate
//! that stays high alerts at most once a day, a new pattern once, a regression once per return.

use std::collections::BTreeMap;

use clickhouse::Row;
use flywheel_schemas::alert::{Alert, AlertKind};
use flywheel_schemas::queries::{self, Grouping, nanos};
use flywheel_schemas::rows::PatternRow;
use flywheel_schemas::{Store, StoreError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::Thresholds;
use crate::compare::two_proportion;

/// The two parts of a tick's window.
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    /// Start of the window (and of the baseline).
    pub start: OffsetDateTime,
    /// Start of the recent part (end of the baseline).
    pub recent: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// An alert before the significance correction: its p-value, when it is a rate comparison.
struct Candidate {
    alert: Alert,
    p_value: Option<f64>,
}

fn alert_id(project: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(project.as_bytes());
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    format!("alert_{}", &hex::encode(h.finalize())[..20])
}

fn pct(rate: f64) -> String {
    format!("{:.1} %", rate * 100.0)
}

fn p_text(p: f64) -> String {
    if p < 1e-4 { "p < 0.0001".into() } else { format!("p = {p:.4}") }
}

#[derive(Row, Deserialize)]
struct MemberCounts {
    pattern_id: String,
    recent: u64,
    baseline: u64,
}

/// Per feature: calls, latency and cost in each part, and how many calls passed the
/// baseline's p95 of each.
#[derive(Row, Deserialize, Debug)]
struct FeatureStats {
    feature: String,
    n_recent: u64,
    n_baseline: u64,
    p95_baseline_ms: f64,
    p95_recent_ms: f64,
    slow_recent: u64,
    slow_baseline: u64,
    costed_recent: u64,
    costed_baseline: u64,
    cost_recent: f64,
    cost_baseline: f64,
    costly_recent: u64,
    costly_baseline: u64,
}

async fn feature_stats(store: &Store, project: &str, p: Periods) -> Result<Vec<FeatureStats>, StoreError> {
    // The baseline's p95 per feature, then every call of the window against it.
    store
        .query(
            "SELECT c.feature AS feature, \
                countIf(c.start_time >= r) AS n_recent, countIf(c.start_time < r) AS n_baseline, \
                any(b.p95_ms) AS p95_baseline_ms, \
                quantileExactIf(0.95)(c.duration_ns / 1e6, c.start_time >= r) AS p95_recent_ms, \
                countIf(c.start_time >= r AND c.duration_ns / 1e6 > b.p95_ms) AS slow_recent, \
                countIf(c.start_time < r AND c.duration_ns / 1e6 > b.p95_ms) AS slow_baseline, \
                countIf(c.start_time >= r AND isNotNull(c.cost_usd)) AS costed_recent, \
                countIf(c.start_time < r AND isNotNull(c.cost_usd)) AS costed_baseline, \
                sumIf(ifNull(c.cost_usd, 0), c.start_time >= r) AS cost_recent, \
                sumIf(ifNull(c.cost_usd, 0), c.start_time < r) AS cost_baseline, \
                countIf(c.start_time >= r AND ifNull(c.cost_usd, 0) > b.cost_p95) AS costly_recent, \
                countIf(c.start_time < r AND ifNull(c.cost_usd, 0) > b.cost_p95) AS costly_baseline \
             FROM (SELECT feature, start_time, duration_ns, cost_usd, fromUnixTimestamp64Nano(?) AS r FROM llm_calls \
                   WHERE project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) AND start_time < fromUnixTimestamp64Nano(?)) AS c \
             INNER JOIN (SELECT feature, quantileExact(0.95)(duration_ns / 1e6) AS p95_ms, \
                   quantileExactIf(0.95)(assumeNotNull(cost_usd), isNotNull(cost_usd)) AS cost_p95 FROM llm_calls \
                   WHERE project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) AND start_time < fromUnixTimestamp64Nano(?) \
                   GROUP BY feature) AS b ON b.feature = c.feature \
             GROUP BY feature ORDER BY feature",
        )
        .bind(nanos(p.recent))
        .bind(project)
        .bind(nanos(p.start))
        .bind(nanos(p.end))
        .bind(project)
        .bind(nanos(p.start))
        .bind(nanos(p.recent))
        .fetch_all()
        .await
}

/// The alerts of a tick over `patterns` (the tick's analysis, triage applied), in `periods`.
pub async fn alerts(
    store: &Store,
    project: &str,
    patterns: &[PatternRow],
    periods: Periods,
    t: &Thresholds,
    now: OffsetDateTime,
) -> Result<Vec<Alert>, StoreError> {
    let day = now.date().to_string();
    let alert = |kind: AlertKind, id_parts: &[&str], title: String, text: String| Alert {
        id: alert_id(project, &[&[kind.as_str()], id_parts].concat()),
        kind,
        project: project.to_string(),
        title,
        text,
        pattern_id: None,
        feature: None,
        metrics: BTreeMap::new(),
        command: String::new(),
        detected_at: now,
    };
    let mut out: Vec<Candidate> = Vec::new();
    // Where a feature's rates stand against the others, over the same window.
    let compare = format!("flywheel compare --by feature --since {}h", (periods.end - periods.start).whole_hours().max(1));

    let members: Vec<MemberCounts> = store
        .query(
            "SELECT pattern_id, countIf(call_time >= fromUnixTimestamp64Nano(?)) AS recent, \
             countIf(call_time < fromUnixTimestamp64Nano(?)) AS baseline FROM pattern_members FINAL \
             WHERE project_id = ? AND run_id IN ? GROUP BY pattern_id",
        )
        .bind(nanos(periods.recent))
        .bind(nanos(periods.recent))
        .bind(project)
        .bind(patterns.iter().map(|p| p.run_id.as_str()).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>())
        .fetch_all()
        .await?;
    let members: BTreeMap<String, (u64, u64)> = members.into_iter().map(|m| (m.pattern_id, (m.recent, m.baseline))).collect();
    let features = feature_stats(store, project, periods).await?;
    let (calls_recent, calls_baseline) = features.iter().fold((0, 0), |(r, b), f| (r + f.n_recent, b + f.n_baseline));

    for p in patterns.iter().filter(|p| p.size > 0 && !matches!(p.status.as_str(), "wont_fix")) {
        let (recent, baseline) = members.get(&p.pattern_id).copied().unwrap_or((0, 0));
        let command = format!("flywheel tui --pattern {}", p.pattern_id);
        let with = |mut a: Alert, metrics: &[(&str, f64)]| {
            a.pattern_id = Some(p.pattern_id.clone());
            a.command = command.clone();
            a.metrics = metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            a
        };
        if let Some(back) = p.regression().filter(|_| p.is_regressed()) {
            let when = nanos(back).to_string();
            let a = alert(
                AlertKind::PatternRegressed,
                &[&p.pattern_id, &when],
                format!("Regressed: “{}” is failing again after its fix", p.label),
                format!("{} failures from {} users since it came back ({}).", p.size, p.users, p.lifecycle()),
            );
            out.push(Candidate { alert: with(a, &[("count", p.size as f64), ("users", p.users as f64)]), p_value: None });
            continue;
        }
        // New: nothing of it in the baseline, and already reaching enough people.
        if baseline == 0 && recent > 0 && p.users >= t.new_pattern_min_users {
            let a = alert(
                AlertKind::NewPattern,
                &[&p.pattern_id],
                format!("New failure pattern: “{}”", p.label),
                format!("{} failures, {} users, {} sessions, first seen {}.", p.size, p.users, p.sessions, p.first_seen.date()),
            );
            out.push(Candidate { alert: with(a, &[("count", p.size as f64), ("users", p.users as f64)]), p_value: None });
            continue;
        }
        let (rate_recent, rate_baseline) = (recent as f64 / calls_recent.max(1) as f64, baseline as f64 / calls_baseline.max(1) as f64);
        if baseline > 0 && recent >= t.min_count && rate_recent >= t.growth_factor * rate_baseline {
            let p_value = two_proportion(recent, calls_recent, baseline, calls_baseline);
            let a = alert(
                AlertKind::PatternGrowing,
                &[&p.pattern_id, &day],
                format!("Growing: “{}” went from {} to {} of calls", p.label, pct(rate_baseline), pct(rate_recent)),
                format!(
                    "{recent} failures in {calls_recent} recent calls against {baseline} in {calls_baseline} before ({}×).",
                    fmt_ratio(rate_recent, rate_baseline)
                ),
            );
            let m = [("observed", rate_recent), ("baseline", rate_baseline), ("count", recent as f64), ("calls", calls_recent as f64)];
            out.push(Candidate { alert: with(a, &m), p_value: Some(p_value.unwrap_or(1.0)) });
        }
    }

    // Signal rates per feature, up or down.
    let (recent, baseline) = tokio::try_join!(
        queries::signal_rates(store, project, periods.recent, periods.end, Grouping::Feature),
        queries::signal_rates(store, project, periods.start, periods.recent, Grouping::Feature),
    )?;
    for r in &recent {
        let Some(b) = baseline.iter().find(|b| b.key == r.key) else { continue };
        for kind in &t.signal_kinds {
            let (x1, x2) = (*r.with_signal.get(kind).unwrap_or(&0), *b.with_signal.get(kind).unwrap_or(&0));
            let (r1, r2) = (r.rate(kind), b.rate(kind));
            let up = x1 >= t.min_count && r1 >= t.signal_factor * r2;
            let down = x2 >= t.min_count && r2 > 0.0 && r1 * t.signal_factor <= r2;
            if !(up || down) {
                continue;
            }
            let direction = if up { "up" } else { "down" };
            let feature = if r.key.is_empty() { "(no feature)" } else { r.key.as_str() };
            let a = alert(
                AlertKind::SignalRate,
                &[&r.key, kind, direction, &day],
                format!("`{kind}` {direction} in {feature}: {} of traces, against {} before", pct(r1), pct(r2)),
                format!("{x1} of {} recent traces against {x2} of {} before.", r.traces, b.traces),
            );
            out.push(of_feature(a, &r.key, &compare, [r1, r2], "traces", (x1, r.traces), (x2, b.traces)));
        }
    }

    // Cost per call and latency p95 per feature, against the feature's own norm.
    for f in &features {
        let feature = if f.feature.is_empty() { "(no feature)" } else { f.feature.as_str() };
        if f.slow_recent >= t.min_count && f.p95_baseline_ms > 0.0 && f.p95_recent_ms >= t.latency_factor * f.p95_baseline_ms {
            let a = alert(
                AlertKind::Latency,
                &[&f.feature, &day],
                format!("Slower: {feature} latency p95 {:.0} ms, against {:.0} ms before", f.p95_recent_ms, f.p95_baseline_ms),
                format!(
                    "{} of {} recent calls took longer than the baseline's p95, against {} of {} before.",
                    f.slow_recent, f.n_recent, f.slow_baseline, f.n_baseline
                ),
            );
            let observed = [f.p95_recent_ms, f.p95_baseline_ms];
            out.push(of_feature(a, &f.feature, &compare, observed, "calls", (f.slow_recent, f.n_recent), (f.slow_baseline, f.n_baseline)));
        }
        let (mean_recent, mean_baseline) =
            (f.cost_recent / f.costed_recent.max(1) as f64, f.cost_baseline / f.costed_baseline.max(1) as f64);
        if f.costly_recent >= t.min_count && mean_baseline > 0.0 && mean_recent >= t.cost_factor * mean_baseline {
            let a = alert(
                AlertKind::Cost,
                &[&f.feature, &day],
                format!("Costlier: {feature} costs ${mean_recent:.4} per call, against ${mean_baseline:.4} before"),
                format!(
                    "{} of {} recent calls cost more than the baseline's p95, against {} of {} before.",
                    f.costly_recent, f.costed_recent, f.costly_baseline, f.costed_baseline
                ),
            );
            let (recent, before) = ((f.costly_recent, f.costed_recent), (f.costly_baseline, f.costed_baseline));
            out.push(of_feature(a, &f.feature, &compare, [mean_recent, mean_baseline], "calls", recent, before));
        }
    }
    Ok(significant(out, t.alpha))
}

/// A feature's rate alert: its feature and command, its figures (`observed`, `baseline`, the
/// recent events as `count` and their total under `of`), and the test of (events, total) in the
/// recent part against the baseline's.
fn of_feature(
    mut alert: Alert,
    feature: &str,
    command: &str,
    [observed, baseline]: [f64; 2],
    of: &str,
    recent: (u64, u64),
    before: (u64, u64),
) -> Candidate {
    alert.feature = Some(feature.to_string());
    alert.command = command.to_string();
    alert.metrics = BTreeMap::from([
        ("observed".into(), observed),
        ("baseline".into(), baseline),
        ("count".into(), recent.0 as f64),
        (of.into(), recent.1 as f64),
    ]);
    Candidate { alert, p_value: Some(two_proportion(recent.0, recent.1, before.0, before.1).unwrap_or(1.0)) }
}

fn fmt_ratio(now: f64, before: f64) -> String {
    if before > 0.0 { format!("{:.1}", now / before) } else { "∞".into() }
}

/// The candidates that are events, and the rate comparisons that pass `alpha / m` (their
/// p-value added to the text and the metrics).
fn significant(candidates: Vec<Candidate>, alpha: f64) -> Vec<Alert> {
    let tests = candidates.iter().filter(|c| c.p_value.is_some()).count().max(1);
    let level = alpha / tests as f64;
    candidates
        .into_iter()
        .filter_map(|mut c| match c.p_value {
            None => Some(c.alert),
            Some(p) if p < level => {
                c.alert.text.push_str(&format!(
                    " Two-proportion z-test: {} (threshold {level:.2e}: α = {alpha} over {tests} test(s) this tick).",
                    p_text(p)
                ));
                c.alert.metrics.insert("p_value".into(), p);
                Some(c.alert)
            }
            Some(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(p_value: Option<f64>) -> Candidate {
        let alert = Alert {
            id: alert_id("app", &["x"]),
            kind: AlertKind::SignalRate,
            project: "app".into(),
            title: String::new(),
            text: String::new(),
            pattern_id: None,
            feature: None,
            metrics: BTreeMap::new(),
            command: String::new(),
            detected_at: OffsetDateTime::UNIX_EPOCH,
        };
        Candidate { alert, p_value }
    }

    #[test]
    fn events_pass_and_rates_must_survive_the_correction_for_the_tests_run() {
        // Three tests at α = 0.01: each needs p < 0.0033.
        let kept = significant(vec![candidate(None), candidate(Some(0.004)), candidate(Some(0.001)), candidate(Some(0.5))], 0.01);
        assert_eq!(kept.len(), 2);
        assert!(kept[0].metrics.is_empty());
        assert_eq!(kept[1].metrics["p_value"], 0.001);
        assert!(kept[1].text.contains("over 3 test(s)"), "{}", kept[1].text);
    }

    #[test]
    fn an_event_has_one_id_and_different_events_different_ones() {
        assert_eq!(alert_id("app", &["new_pattern", "pat_1"]), alert_id("app", &["new_pattern", "pat_1"]));
        assert_ne!(alert_id("app", &["new_pattern", "pat_1"]), alert_id("other", &["new_pattern", "pat_1"]));
        // Parts are separated: ("ab", "c") is not ("a", "bc").
        assert_ne!(alert_id("app", &["ab", "c"]), alert_id("app", &["a", "bc"]));
    }
}
