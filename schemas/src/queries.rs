//! Typed queries shared by the analyzer and the TUI: the signals of a call, a trace or a
//! session, and signal rates per feature, model or day. Aggregation runs in ClickHouse; only
//! the results travel.

use std::collections::BTreeMap;

use clickhouse::Row;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::rows::{LlmCallRow, LogRecordRow, PatternMemberRow, PatternNameRow, PatternRow, PatternTriageRow, SignalRow, TRIAGE_STATES};
use crate::store::{Store, StoreQuery};

/// A time as the nanoseconds `fromUnixTimestamp64Nano(?)` takes, clamped to what an `i64`
/// holds (1970 to 2262) instead of wrapping. Every query that binds a time uses this one.
pub fn nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos().clamp(0, i64::MAX as i128) as i64
}

/// Every signal about a trace (linked to it, or to one of its spans), oldest first.
pub async fn signals_for_trace(store: &Store, project: &str, trace_id: &str) -> Result<Vec<SignalRow>, StoreError> {
    store
        .query("SELECT ?fields FROM signals FINAL WHERE project_id = ? AND trace_id = ? ORDER BY timestamp")
        .bind(project)
        .bind(trace_id)
        .fetch_all()
        .await
}

/// Every signal about one model call: on its span, or on its trace without a span.
pub async fn signals_for_call(store: &Store, project: &str, trace_id: &str, span_id: &str) -> Result<Vec<SignalRow>, StoreError> {
    store
        .query(
            "SELECT ?fields FROM signals FINAL WHERE project_id = ? AND trace_id = ? AND (span_id = ? OR span_id = '') ORDER BY timestamp",
        )
        .bind(project)
        .bind(trace_id)
        .bind(span_id)
        .fetch_all()
        .await
}

/// Every signal of a session: sent on the session itself or on one of its traces.
pub async fn signals_for_session(store: &Store, project: &str, session_id: &str) -> Result<Vec<SignalRow>, StoreError> {
    store
        .query("SELECT ?fields FROM signals FINAL WHERE project_id = ? AND session_id = ? ORDER BY timestamp")
        .bind(project)
        .bind(session_id)
        .fetch_all()
        .await
}

/// How signal rates are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Feature,
    Model,
    Day,
}

impl Grouping {
    fn expression(self) -> &'static str {
        match self {
            Grouping::Feature => "feature",
            Grouping::Model => "response_model",
            Grouping::Day => "toString(toDate(start_time))",
        }
    }
}

/// Traces of a group, and how many of them received each kind of signal.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRates {
    pub key: String,
    pub traces: u64,
    pub with_signal: BTreeMap<String, u64>,
}

impl SignalRates {
    /// Share of the group's traces that received `kind` (0 when the group is empty).
    pub fn rate(&self, kind: &str) -> f64 {
        if self.traces == 0 { 0.0 } else { *self.with_signal.get(kind).unwrap_or(&0) as f64 / self.traces as f64 }
    }
}

#[derive(Row, Deserialize)]
struct Count {
    key: String,
    n: u64,
}

#[derive(Row, Deserialize)]
struct KindCount {
    key: String,
    kind: String,
    n: u64,
}

/// Signal rates of the traces with a model call in `[since, until)`, grouped by feature,
/// model or day. A trace counts once per kind however many signals of that kind it got.
pub async fn signal_rates(
    store: &Store,
    project: &str,
    since: OffsetDateTime,
    until: OffsetDateTime,
    by: Grouping,
) -> Result<Vec<SignalRates>, StoreError> {
    let calls = format!(
        "SELECT trace_id, argMin({}, start_time) AS key FROM llm_calls FINAL \
         WHERE project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) AND start_time < fromUnixTimestamp64Nano(?) GROUP BY trace_id",
        by.expression()
    );
    let totals: Vec<Count> = store
        .query(&format!("SELECT key, count() AS n FROM ({calls}) GROUP BY key ORDER BY key"))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .fetch_all()
        .await?;
    let kinds: Vec<KindCount> = store
        .query(&format!(
            "SELECT c.key AS key, s.kind AS kind, uniqExact(c.trace_id) AS n FROM ({calls}) AS c \
             INNER JOIN (SELECT DISTINCT trace_id, kind FROM signals FINAL WHERE project_id = ? AND trace_id != '') AS s ON s.trace_id = c.trace_id \
             GROUP BY key, kind"
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(project)
        .fetch_all()
        .await?;
    let mut out: Vec<SignalRates> =
        totals.into_iter().map(|t| SignalRates { key: t.key, traces: t.n, with_signal: BTreeMap::new() }).collect();
    for k in kinds {
        if let Some(group) = out.iter_mut().find(|g| g.key == k.key) {
            group.with_signal.insert(k.kind, k.n);
        }
    }
    Ok(out)
}

/// The current state of every pattern of a project, with the latest triage decision applied
/// (`status`), regressed ones first, then most impactful first. Resolved patterns are included: a trend of `resolved`
/// means the last run found no member.
pub async fn current_patterns(store: &Store, project: &str) -> Result<Vec<PatternRow>, StoreError> {
    Ok(current_patterns_and_triage(store, project).await?.0)
}

/// [`current_patterns`], with the triage decisions it applied (their notes and authors), read once.
pub async fn current_patterns_and_triage(
    store: &Store,
    project: &str,
) -> Result<(Vec<PatternRow>, BTreeMap<String, PatternTriageRow>), StoreError> {
    let mut patterns: Vec<PatternRow> = store
        .query("SELECT ?fields FROM patterns FINAL WHERE project_id = ? ORDER BY users * severity DESC, size DESC, pattern_id")
        .bind(project)
        .fetch_all()
        .await?;
    let triage = triage_states(store, project).await?;
    for p in &mut patterns {
        if let Some(t) = triage.get(&p.pattern_id) {
            p.status = t.status.clone();
        }
    }
    // A fixed failure that came back comes first (stable: impact order within).
    patterns.sort_by_key(|p| !(p.is_regressed() && p.size > 0));
    Ok((patterns, triage))
}

/// The latest triage decision per pattern id.
pub async fn triage_states(store: &Store, project: &str) -> Result<BTreeMap<String, PatternTriageRow>, StoreError> {
    let rows: Vec<PatternTriageRow> =
        store.query("SELECT ?fields FROM pattern_triage FINAL WHERE project_id = ?").bind(project).fetch_all().await?;
    Ok(rows.into_iter().map(|r| (r.pattern_id.clone(), r)).collect())
}

/// The names an LLM gave to the project's patterns, by pattern id.
pub async fn pattern_names(store: &Store, project: &str) -> Result<BTreeMap<String, PatternNameRow>, StoreError> {
    let rows: Vec<PatternNameRow> =
        store.query("SELECT ?fields FROM pattern_names FINAL WHERE project_id = ?").bind(project).fetch_all().await?;
    Ok(rows.into_iter().map(|r| (r.pattern_id.clone(), r)).collect())
}

/// Records a triage decision; `status` must be one of [`TRIAGE_STATES`].
pub async fn set_triage(store: &Store, project: &str, pattern_id: &str, status: &str, note: &str, by: &str) -> Result<(), StoreError> {
    if !TRIAGE_STATES.contains(&status) {
        return Err(StoreError::Config(format!("unknown triage state `{status}`: use one of {}", TRIAGE_STATES.join(", "))));
    }
    let row = PatternTriageRow {
        project_id: project.into(),
        pattern_id: pattern_id.into(),
        status: status.into(),
        note: note.into(),
        updated_by: by.into(),
        updated_at: OffsetDateTime::now_utc(),
    };
    store.insert("pattern_triage", &[row]).await
}

/// The release each of these traces ran, counted: the resource's `service.version` (the OTel
/// resource convention), most traces first; traces without one are left out. Bounded to the
/// first 1,000 traces given.
pub async fn releases_of(store: &Store, project: &str, trace_ids: &[String]) -> Result<Vec<(String, u64)>, StoreError> {
    let ids: Vec<&String> = trace_ids.iter().take(1000).collect();
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let rows: Vec<Count> = store
        .query(
            "SELECT key, count() AS n FROM (SELECT trace_id, any(resource_attributes['service.version']) AS key FROM spans \
             WHERE project_id = ? AND trace_id IN ? AND resource_attributes['service.version'] != '' GROUP BY trace_id) \
             GROUP BY key ORDER BY n DESC, key",
        )
        .bind(project)
        .bind(ids)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(|c| (c.key, c.n)).collect())
}

/// The storage join of model calls and their GenAI log events (the collector's `rejoin`): the
/// spans of a project by `(trace_id, span_id)`.
pub type SpanKey = (String, String);

/// `SELECT ?fields FROM <from> WHERE` one project's rows of these spans `AND <and>`: trace ids
/// first, which the tables' keys and indexes find, then the pairs.
fn of_spans<'a>(store: &'a Store, from: &str, and: &str, project: &str, spans: &[SpanKey]) -> StoreQuery<'a> {
    let traces: Vec<&String> = spans.iter().map(|(t, _)| t).collect();
    store
        .query(&format!("SELECT ?fields FROM {from} WHERE project_id = ? AND trace_id IN ? AND (trace_id, span_id) IN ? AND {and}"))
        .bind(project)
        .bind(traces)
        .bind(spans)
}

/// The current `llm_calls` rows of these spans, started within `[lo, hi]` (the bound prunes
/// day partitions; the trace id index finds the rows).
pub async fn calls_of_spans(
    store: &Store,
    project: &str,
    spans: &[SpanKey],
    lo: OffsetDateTime,
    hi: OffsetDateTime,
) -> Result<Vec<LlmCallRow>, StoreError> {
    if spans.is_empty() {
        return Ok(vec![]);
    }
    let and = "start_time >= fromUnixTimestamp64Nano(?) AND start_time <= fromUnixTimestamp64Nano(?)";
    of_spans(store, "llm_calls FINAL", and, project, spans).bind(nanos(lo)).bind(nanos(hi)).fetch_all().await
}

/// A model call's place in its trace: the storage merge of a call recorded twice (a wrapper
/// span and the span it wraps, sent to two collectors) reads only this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Row, Deserialize)]
pub struct CallLink {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
}

/// Every model call of these traces started within `[lo, hi]`, as links (current rows only:
/// a call deleted by the merge is not read).
pub async fn call_links_of_traces(
    store: &Store,
    project: &str,
    traces: &[String],
    lo: OffsetDateTime,
    hi: OffsetDateTime,
) -> Result<Vec<CallLink>, StoreError> {
    if traces.is_empty() {
        return Ok(vec![]);
    }
    store
        .query(
            "SELECT DISTINCT trace_id, span_id, parent_span_id FROM llm_calls WHERE project_id = ? AND trace_id IN ? \
             AND start_time >= fromUnixTimestamp64Nano(?) AND start_time <= fromUnixTimestamp64Nano(?)",
        )
        .bind(project)
        .bind(traces)
        .bind(nanos(lo))
        .bind(nanos(hi))
        .fetch_all()
        .await
}

/// Deletes the `llm_calls` rows of these spans (a lightweight delete: rare, one statement for
/// all of them). On a cluster (`migrate --cluster`: `llm_calls` a Distributed front), on its
/// local tables on every node.
pub async fn delete_calls(store: &Store, project: &str, spans: &[SpanKey]) -> Result<(), StoreError> {
    if spans.is_empty() {
        return Ok(());
    }
    let (engine, engine_full): (String, String) = store
        .query("SELECT engine, engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'llm_calls'")
        .fetch_one()
        .await?;
    let table = match distributed_cluster(&engine, &engine_full) {
        Some(cluster) => format!("llm_calls_local ON CLUSTER `{cluster}`"),
        None => "llm_calls".to_string(),
    };
    let traces: Vec<&String> = spans.iter().map(|(t, _)| t).collect();
    store
        .query(&format!("DELETE FROM {table} WHERE project_id = ? AND trace_id IN ? AND (trace_id, span_id) IN ?"))
        .bind(project)
        .bind(traces)
        .bind(spans)
        .execute()
        .await
}

/// The cluster of a `Distributed(cluster, database, table, …)` engine.
fn distributed_cluster(engine: &str, engine_full: &str) -> Option<String> {
    if engine != "Distributed" {
        return None;
    }
    let args = engine_full.split_once('(')?.1;
    let cluster = args.split(',').next()?.trim().trim_matches(['`', '\'', '"']);
    (!cluster.is_empty()).then(|| cluster.to_string())
}

/// The log records named `events` of these spans, in the order they arrived: by the time they
/// were stored, then their place in their request (the head of `record_id`). `log_records` is
/// ordered by project, trace and span: the key finds them.
pub async fn log_events_of_spans(
    store: &Store,
    project: &str,
    spans: &[SpanKey],
    events: &[&str],
) -> Result<Vec<LogRecordRow>, StoreError> {
    if spans.is_empty() {
        return Ok(vec![]);
    }
    let and = "event_name IN ? ORDER BY ingested_at, record_id";
    of_spans(store, "log_records FINAL", and, project, spans).bind(events).fetch_all().await
}

/// The members of a pattern found by its latest run, nearest to its centre first.
pub async fn pattern_members(store: &Store, project: &str, pattern_id: &str) -> Result<Vec<PatternMemberRow>, StoreError> {
    store
        .query(
            "SELECT ?fields FROM pattern_members FINAL WHERE project_id = ? AND pattern_id = ? \
             AND run_id = (SELECT argMax(run_id, updated_at) FROM patterns WHERE project_id = ? AND pattern_id = ?) \
             ORDER BY distance, trace_id, span_id",
        )
        .bind(project)
        .bind(pattern_id)
        .bind(project)
        .bind(pattern_id)
        .fetch_all()
        .await
}

/// Projects with LLM calls, most calls first.
pub async fn projects(store: &Store) -> Result<Vec<String>, StoreError> {
    let rows: Vec<Count> =
        store.query("SELECT project_id AS key, count() AS n FROM llm_calls GROUP BY project_id ORDER BY n DESC, key").fetch_all().await?;
    Ok(rows.into_iter().map(|r| r.key).collect())
}

/// The project to work on: the one named, if it has calls; else the only one with calls.
/// A name nothing was ever stored under (a typo) is refused with the projects that exist,
/// rather than answered with an empty analysis or report.
pub async fn resolve_project(store: &Store, named: Option<&str>) -> Result<String, StoreError> {
    let all = projects(store).await?;
    const NO_DATA: &str = "no project has LLM calls yet: start the collector (`flywheel serve`) and send traces, or try `flywheel demo`";
    match (named, all.as_slice()) {
        (Some(p), _) if all.iter().any(|a| a == p) => Ok(p.to_string()),
        (Some(p), []) => Err(StoreError::Project(format!("project `{p}` has no LLM calls: {NO_DATA}"))),
        (Some(p), known) => Err(StoreError::Project(format!("project `{p}` has no LLM calls; projects with calls: {}", known.join(", ")))),
        (None, [one]) => Ok(one.clone()),
        (None, []) => Err(StoreError::Project(NO_DATA.into())),
        (None, many) => {
            Err(StoreError::Project(format!("several projects have LLM calls ({}): choose one with --project", many.join(", "))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_of_a_distributed_front() {
        assert_eq!(
            distributed_cluster("Distributed", "Distributed(`prod`, `flywheel`, llm_calls_local, cityHash64(a))"),
            Some("prod".into())
        );
        assert_eq!(distributed_cluster("Distributed", "Distributed('prod', 'flywheel', 'llm_calls_local')"), Some("prod".into()));
        assert_eq!(distributed_cluster("ReplacingMergeTree", "ReplacingMergeTree(ingested_at) ORDER BY x"), None);
    }
}
