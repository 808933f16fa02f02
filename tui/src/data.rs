//! Queries → view models, run off the UI thread.
//!
//! Every query filters on `project_id` and a time range (the leading keys of the tables' ORDER
//! BY or their day partitions) and is bounded by a LIMIT, so that the cost of a screen does not
//! grow with the size of the tables: the benchmark (`flywheel bench tui`) holds them to this on
//! 10 million spans. Aggregation runs in ClickHouse; only results travel.
//!
//! [`Worker`] runs each [`Request`] as a task on a tokio runtime and answers on a channel; the
//! UI thread never waits on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::Sender;

use clickhouse::Row;
use flywheel_schemas::failure::FailureDetails;
use flywheel_schemas::messages::Message;
use flywheel_schemas::queries;
use flywheel_schemas::rows::SignalRow;
use flywheel_schemas::{Store, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::Exporter;
use crate::model::*;

/// Members of a pattern joined to their calls and shown in the detail view (nearest first);
/// the timeline counts every member.
pub const MEMBERS_SHOWN: usize = 200;
/// Characters of a call's input and output text fetched for a member row.
const EXCERPT_CHARS: usize = 400;
const SESSION_TURNS: usize = 200;
const SEARCH_HITS: usize = 100;
const TRACE_SPANS: usize = 5000;

/// A piece of work for the data layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `project`: `None` picks the project with the most calls in the window.
    Overview {
        project: Option<String>,
        window: Window,
    },
    /// `project`: `None` picks the project with the most patterns (else the most calls).
    Patterns {
        project: Option<String>,
    },
    Pattern {
        project: String,
        item: Box<PatternItem>,
    },
    /// `around`: when the trace happened, if known, to prune by time.
    Trace {
        project: String,
        trace_id: String,
        around: Option<OffsetDateTime>,
    },
    Session {
        project: String,
        session_id: String,
        around: Option<OffsetDateTime>,
    },
    Search {
        project: String,
        query: String,
        window: Window,
    },
    Triage {
        project: String,
        pattern_id: String,
        status: String,
        by: String,
    },
    Export {
        project: String,
        pattern_id: String,
        /// `jsonl`, `openai-evals`, `promptfoo` or `csv`.
        format: String,
        /// Export cases already exported in this format too.
        again: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Overview(Overview),
    Patterns { project: String, items: Vec<PatternItem> },
    Pattern(Box<PatternDetail>),
    Trace(Box<TraceView>),
    Session(Box<SessionView>),
    Search(SearchResults),
    Triaged { pattern_id: String, status: String },
    Exported(String),
}

#[derive(Debug)]
pub struct Response {
    pub id: u64,
    pub result: Result<Payload, String>,
}

/// Runs requests as tasks on a runtime; answers arrive on the channel given at creation.
pub struct Worker {
    handle: tokio::runtime::Handle,
    store: Store,
    exporter: Arc<dyn Exporter>,
    tx: Sender<Response>,
}

impl Worker {
    pub fn new(handle: tokio::runtime::Handle, store: Store, exporter: Arc<dyn Exporter>, tx: Sender<Response>) -> Worker {
        Worker { handle, store, exporter, tx }
    }

    pub fn submit(&self, id: u64, request: Request) {
        let tx = self.tx.clone();
        if let Request::Export { project, pattern_id, format, again } = request {
            // The exporter is synchronous (it may block on files and queries of its own).
            let exporter = self.exporter.clone();
            self.handle.spawn_blocking(move || {
                let result = exporter.export_pattern(&project, &pattern_id, &format, again).map(Payload::Exported);
                let _ = tx.send(Response { id, result });
            });
            return;
        }
        let store = self.store.clone();
        self.handle.spawn(async move {
            let started = std::time::Instant::now();
            let result = execute(&store, request).await.map_err(|e| one_line(&e.to_string()));
            tracing::debug!(id, ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "tui request");
            // The UI may have quit meanwhile: nobody to tell.
            let _ = tx.send(Response { id, result });
        });
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs one request to completion (the worker's task body; the benchmark calls it directly).
pub async fn execute(store: &Store, request: Request) -> Result<Payload, StoreError> {
    Ok(match request {
        Request::Overview { project, window } => Payload::Overview(overview(store, project, window).await?),
        Request::Patterns { project } => {
            let project = match project {
                Some(p) => p,
                None => default_project(store).await?,
            };
            let items = patterns(store, &project).await?;
            Payload::Patterns { project, items }
        }
        Request::Pattern { project, item } => Payload::Pattern(Box::new(pattern_detail(store, &project, *item).await?)),
        Request::Trace { project, trace_id, around } => Payload::Trace(Box::new(trace(store, &project, &trace_id, around).await?)),
        Request::Session { project, session_id, around } => {
            Payload::Session(Box::new(session(store, &project, &session_id, around).await?))
        }
        Request::Search { project, query, window } => Payload::Search(search(store, &project, &query, window).await?),
        Request::Triage { project, pattern_id, status, by } => {
            queries::set_triage(store, &project, &pattern_id, &status, "", &by).await?;
            Payload::Triaged { pattern_id, status }
        }
        Request::Export { .. } => return Err(StoreError::Config("export runs through the exporter, not a query".into())),
    })
}

/// A read. The event tables are partitioned by day of a time that a row's replacement shares
/// (a retried span, call, signal or failure keeps its time), so FINAL never needs to merge
/// across partitions: saying so lets the engine finalise each partition on its own, in parallel.
fn read<'a>(store: &'a Store, sql: &str) -> flywheel_schemas::store::StoreQuery<'a> {
    store.query(sql).with_setting("do_not_merge_across_partitions_select_final", "1")
}

fn nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos() as i64
}

/// `('a','b')` for an `IN`, quoting every id; an empty list matches nothing.
fn sql_list(ids: &[&str]) -> String {
    if ids.is_empty() {
        return "('')".into();
    }
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{}'", id.replace('\\', "\\\\").replace('\'', "\\'"))).collect();
    format!("({})", quoted.join(","))
}

#[derive(Row, Deserialize)]
struct Name {
    name: String,
}

/// Projects that have keys or patterns (small tables); when there are none (a collector run
/// with `--no-auth` and no analysis yet), those with calls since `since`.
async fn projects(store: &Store, since: OffsetDateTime) -> Result<Vec<String>, StoreError> {
    let rows: Vec<Name> = read(
        store,
        "SELECT name FROM (SELECT project_id AS name FROM api_keys UNION DISTINCT SELECT project_id AS name FROM patterns) \
             GROUP BY name ORDER BY name LIMIT 100",
    )
    .fetch_all()
    .await?;
    if !rows.is_empty() {
        return Ok(rows.into_iter().map(|r| r.name).collect());
    }
    let rows: Vec<Name> = read(
        store,
        "SELECT project_id AS name FROM llm_calls WHERE start_time >= fromUnixTimestamp64Nano(?) \
             GROUP BY project_id ORDER BY count() DESC, project_id LIMIT 100",
    )
    .bind(nanos(since))
    .fetch_all()
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// The project to open when none is given: the one with the most patterns, else with the most
/// calls of the last 30 days, else `default`.
pub async fn default_project(store: &Store) -> Result<String, StoreError> {
    let with_patterns: Vec<Name> =
        read(store, "SELECT project_id AS name FROM patterns GROUP BY project_id ORDER BY uniqExact(pattern_id) DESC, project_id LIMIT 1")
            .fetch_all()
            .await?;
    if let Some(p) = with_patterns.into_iter().next() {
        return Ok(p.name);
    }
    let since = OffsetDateTime::now_utc() - Window::Month.duration();
    Ok(projects(store, since).await?.into_iter().next().unwrap_or_else(|| "default".into()))
}

pub async fn patterns(store: &Store, project: &str) -> Result<Vec<PatternItem>, StoreError> {
    Ok(queries::current_patterns(store, project).await?.into_iter().map(|row| PatternItem { row }).collect())
}

#[derive(Row, Deserialize)]
struct CallBucket {
    bucket: i64,
    calls: u64,
    cost: f64,
}

#[derive(Row, Deserialize)]
struct Bucket {
    bucket: i64,
    n: u64,
}

#[derive(Row, Deserialize)]
struct KindBucket {
    bucket: i64,
    kind: String,
    n: u64,
}

pub async fn overview(store: &Store, project: Option<String>, window: Window) -> Result<Overview, StoreError> {
    let now = OffsetDateTime::now_utc();
    let since = now - window.duration();
    let projects = projects(store, since).await?;
    let project = match project {
        Some(p) => p,
        None => projects.first().cloned().unwrap_or_else(|| "default".into()),
    };
    let b = window.bucket_secs();
    let bucket_of = |col: &str| format!("toInt64(toUnixTimestamp(toStartOfInterval({col}, INTERVAL {b} SECOND)))");
    let calls_sql = format!(
        "SELECT {} AS bucket, count() AS calls, sum(ifNull(cost_usd, 0)) AS cost FROM llm_calls FINAL \
         WHERE project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) GROUP BY bucket ORDER BY bucket",
        bucket_of("start_time")
    );
    let failures_sql = format!(
        "SELECT {} AS bucket, count() AS n FROM failures FINAL \
         WHERE project_id = ? AND call_time >= fromUnixTimestamp64Nano(?) GROUP BY bucket ORDER BY bucket",
        bucket_of("call_time")
    );
    let signals_sql = format!(
        "SELECT {} AS bucket, kind, count() AS n FROM signals FINAL \
         WHERE project_id = ? AND timestamp >= fromUnixTimestamp64Nano(?) GROUP BY bucket, kind ORDER BY bucket, kind",
        bucket_of("timestamp")
    );
    let (calls, failures, signals, top_patterns) = tokio::try_join!(
        read(store, &calls_sql).bind(&project).bind(nanos(since)).fetch_all::<CallBucket>(),
        read(store, &failures_sql).bind(&project).bind(nanos(since)).fetch_all::<Bucket>(),
        read(store, &signals_sql).bind(&project).bind(nanos(since)).fetch_all::<KindBucket>(),
        patterns(store, &project),
    )?;
    let mut top_patterns = top_patterns;
    sort_patterns(&mut top_patterns, SortKey::Impact, Impact::Users, false);
    top_patterns.retain(|p| p.row.trend != "resolved");
    top_patterns.truncate(10);
    Ok(Overview {
        project,
        window: Some(window),
        series: build_series(since.unix_timestamp(), now.unix_timestamp(), b, &calls, &failures, &signals),
        top_patterns,
        projects,
    })
}

/// Lays aggregates on the window's buckets (empty buckets are zeros, so that sparklines keep
/// their time scale) and derives the rates.
fn build_series(since: i64, now: i64, b: i64, calls: &[CallBucket], failures: &[Bucket], signals: &[KindBucket]) -> Vec<Series> {
    let first = since.div_euclid(b) * b;
    let n = ((now - first) / b + 1).max(1) as usize;
    let slot = |bucket: i64| -> Option<usize> {
        let i = (bucket - first).div_euclid(b);
        (0..n as i64).contains(&i).then_some(i as usize)
    };
    let mut call_counts = vec![0.0; n];
    let mut cost = vec![0.0; n];
    for c in calls {
        if let Some(i) = slot(c.bucket) {
            call_counts[i] += c.calls as f64;
            cost[i] += c.cost;
        }
    }
    let mut failed = vec![0.0; n];
    for f in failures {
        if let Some(i) = slot(f.bucket) {
            failed[i] += f.n as f64;
        }
    }
    let mut kinds: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for s in signals {
        if let Some(i) = slot(s.bucket) {
            kinds.entry(s.kind.as_str()).or_insert_with(|| vec![0.0; n])[i] += s.n as f64;
        }
    }
    let total_calls: f64 = call_counts.iter().sum();
    let rate = |counts: &[f64]| -> Vec<f64> { counts.iter().zip(&call_counts).map(|(k, c)| if *c > 0.0 { k / c } else { 0.0 }).collect() };
    let overall = |counts: &[f64]| if total_calls > 0.0 { counts.iter().sum::<f64>() / total_calls } else { 0.0 };
    let mut series = vec![
        Series { name: "calls".into(), total: total_calls, values: call_counts.clone(), unit: Unit::Count },
        Series { name: "failure rate".into(), total: overall(&failed), values: rate(&failed), unit: Unit::Rate },
    ];
    for (kind, counts) in &kinds {
        series.push(Series { name: format!("{kind} rate"), total: overall(counts), values: rate(counts), unit: Unit::Rate });
    }
    series.push(Series { name: "cost".into(), total: cost.iter().sum(), values: cost, unit: Unit::Dollars });
    series
}

#[derive(Row, Deserialize)]
struct MemberCall {
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    model: String,
    status: String,
    error_type: String,
    finish_reasons: Vec<String>,
    input_text: String,
    output_text: String,
}

#[derive(Row, Deserialize)]
struct FailureReasons {
    trace_id: String,
    span_id: String,
    reasons: Vec<String>,
}

/// A member's row in `failures`: who, where, why, and the analyzer's excerpts (`details`).
#[derive(Row, Deserialize)]
struct MemberFailure {
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    model: String,
    reasons: Vec<String>,
    details: String,
}

/// `(toStartOfHour(start_time), trace_id) IN (…)`: the leading keys of `llm_calls` after the
/// project, so that each member costs one primary-key range instead of a time-range scan.
fn hour_trace_list(keys: &[(OffsetDateTime, &str)]) -> String {
    let tuples: Vec<String> = keys
        .iter()
        .map(|(t, trace)| {
            let hour = t.unix_timestamp().div_euclid(3600) * 3600;
            format!("(toDateTime({hour}, 'UTC'), {})", sql_list(&[trace]).trim_start_matches('(').trim_end_matches(')'))
        })
        .collect();
    format!("({})", tuples.join(","))
}

/// A pattern's header, facets, timeline and nearest members.
///
/// Members come from `queries::pattern_members`; what the table shows of each comes from its
/// `failures` row (keyed by trace id: a handful of primary-key ranges), whose `details` carry
/// the analyzer's excerpts of the request and output. Only members without them are joined to
/// `llm_calls`, by (hour, trace id) so that the calls table is read range by range.
pub async fn pattern_detail(store: &Store, project: &str, item: PatternItem) -> Result<PatternDetail, StoreError> {
    let all = queries::pattern_members(store, project, item.id()).await?;
    let mut per_day: BTreeMap<time::Date, u64> = BTreeMap::new();
    for m in &all {
        *per_day.entry(m.call_time.date()).or_default() += 1;
    }
    let timeline = per_day.into_iter().map(|(d, n)| (format!("{:02}-{:02}", u8::from(d.month()), d.day()), n)).collect();
    let shown = &all[..all.len().min(MEMBERS_SHOWN)];
    let mut failures: HashMap<(String, String), MemberFailure> = HashMap::new();
    let mut calls: HashMap<(String, String), MemberCall> = HashMap::new();
    if let (Some(lo), Some(hi)) = (shown.iter().map(|m| m.call_time).min(), shown.iter().map(|m| m.call_time).max()) {
        let (lo, hi) = (nanos(lo - time::Duration::hours(1)), nanos(hi + time::Duration::hours(1)));
        let traces: Vec<&str> = shown.iter().map(|m| m.trace_id.as_str()).collect::<HashSet<_>>().into_iter().collect();
        let rows: Vec<MemberFailure> = read(store, &format!(
                "SELECT trace_id, span_id, session_id, user_id, feature, model, reasons, details FROM failures FINAL \
                 WHERE project_id = ? AND trace_id IN {} AND call_time >= fromUnixTimestamp64Nano(?) AND call_time <= fromUnixTimestamp64Nano(?)",
                sql_list(&traces)
            ))
            .bind(project)
            .bind(lo)
            .bind(hi)
            .fetch_all()
            .await?;
        failures = rows.into_iter().map(|r| ((r.trace_id.clone(), r.span_id.clone()), r)).collect();
        let missing: Vec<(OffsetDateTime, &str)> = shown
            .iter()
            .filter(|m| {
                failures.get(&(m.trace_id.clone(), m.span_id.clone())).is_none_or(|f| FailureDetails::parse(&f.details).request.is_empty())
            })
            .map(|m| (m.call_time, m.trace_id.as_str()))
            .collect();
        if !missing.is_empty() {
            let rows: Vec<MemberCall> = read(
                store,
                &format!(
                    "SELECT trace_id, span_id, session_id, user_id, feature, \
                     if(response_model != '', response_model, request_model) AS model, status, error_type, finish_reasons, \
                     substring(input_text, 1, {EXCERPT_CHARS}) AS input_text, substring(output_text, 1, {EXCERPT_CHARS}) AS output_text \
                     FROM llm_calls FINAL WHERE project_id = ? AND (toStartOfHour(start_time), trace_id) IN {}",
                    hour_trace_list(&missing)
                ),
            )
            .bind(project)
            .fetch_all()
            .await?;
            calls = rows.into_iter().map(|r| ((r.trace_id.clone(), r.span_id.clone()), r)).collect();
        }
    }
    let members: Vec<Member> = shown
        .iter()
        .map(|m| {
            let key = (m.trace_id.clone(), m.span_id.clone());
            let f = failures.remove(&key);
            let c = calls.remove(&key);
            let d = f.as_ref().map(|f| FailureDetails::parse(&f.details)).unwrap_or_default();
            let reasons = f.as_ref().map(|f| f.reasons.clone()).unwrap_or_default();
            // The failure reasons say what the call row would: an error status, a finish reason.
            let derived_finish: Vec<String> = reasons.iter().filter_map(|r| r.strip_prefix("finish_reason:")).map(String::from).collect();
            let pick = |from_failure: Option<&String>, from_call: Option<&String>| {
                from_failure.filter(|v| !v.is_empty()).or(from_call).cloned().unwrap_or_default()
            };
            Member {
                trace_id: m.trace_id.clone(),
                span_id: m.span_id.clone(),
                call_time: m.call_time,
                distance: m.distance,
                session_id: pick(f.as_ref().map(|f| &f.session_id), c.as_ref().map(|c| &c.session_id)),
                user_id: pick(f.as_ref().map(|f| &f.user_id), c.as_ref().map(|c| &c.user_id)),
                feature: pick(f.as_ref().map(|f| &f.feature), c.as_ref().map(|c| &c.feature)),
                model: pick(f.as_ref().map(|f| &f.model), c.as_ref().map(|c| &c.model)),
                status: match &c {
                    Some(c) => c.status.clone(),
                    None if reasons.iter().any(|r| r == "error_status") => "error".into(),
                    None => String::new(),
                },
                error_type: c.as_ref().map(|c| c.error_type.clone()).unwrap_or_default(),
                finish_reasons: c.as_ref().map(|c| c.finish_reasons.clone()).unwrap_or(derived_finish),
                input_text: Some(d.request.clone())
                    .filter(|r| !r.is_empty())
                    .or_else(|| c.as_ref().map(|c| c.input_text.clone()))
                    .unwrap_or_default(),
                output_text: Some(d.output.clone())
                    .filter(|o| !o.is_empty())
                    .or_else(|| c.as_ref().map(|c| c.output_text.clone()))
                    .unwrap_or_default(),
                reasons,
            }
        })
        .collect();
    let facets = facets_of(&item, &members);
    Ok(PatternDetail { item, facets, timeline, member_count: all.len(), members })
}

/// Facet distributions over the members shown; signals from the pattern's own signal mix
/// (which covers every member).
pub fn facets_of(item: &PatternItem, members: &[Member]) -> Vec<Facet> {
    fn count<'a>(name: &str, values: impl Iterator<Item = &'a str>) -> Facet {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for v in values.filter(|v| !v.is_empty()) {
            *counts.entry(v).or_default() += 1;
        }
        let mut values: Vec<(String, u64)> = counts.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Facet { name: name.into(), values }
    }
    let mut signals: Vec<(String, u64)> = item.row.signal_mix.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (k.clone(), *n)).collect();
    signals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut facets = vec![
        count("features", members.iter().map(|m| m.feature.as_str())),
        count("models", members.iter().map(|m| m.model.as_str())),
        count("error types", members.iter().map(|m| m.error_type.as_str())),
        count("reasons", members.iter().flat_map(|m| m.reasons.iter().map(String::as_str))),
        Facet { name: "signals".into(), values: signals },
    ];
    // Before the members load (or when none joined), the analyzer's dominant values still say
    // something.
    for (facet, key) in [(0, "feature"), (1, "model"), (2, "error_type")] {
        let v = item.facet(key);
        if facets[facet].values.is_empty() && !v.is_empty() {
            facets[facet].values.push((v.to_string(), item.row.size));
        }
    }
    facets
}

#[derive(Row, Deserialize)]
struct SpanLite {
    span_id: String,
    parent_span_id: String,
    name: String,
    #[serde(with = "clickhouse::serde::time::datetime64::nanos")]
    start_time: OffsetDateTime,
    duration_ns: u64,
    status_code: String,
    status_message: String,
    attributes: BTreeMap<String, String>,
    event_names: Vec<String>,
    event_attributes: Vec<BTreeMap<String, String>>,
}

/// What an event says in a line: an exception's type and message, else its attributes.
fn event_summary(name: &str, attributes: &BTreeMap<String, String>) -> (String, String) {
    let get = |k: &str| attributes.get(k).map(String::as_str).unwrap_or("");
    let text = if name == "exception" {
        format!("{} {}", get("exception.type"), get("exception.message")).trim().to_string()
    } else {
        attributes.iter().take(4).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    };
    (name.to_string(), text)
}

/// The columns of `llm_calls` a trace or session view reads.
#[derive(Row, Deserialize)]
struct CallRow {
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    provider: String,
    request_model: String,
    response_model: String,
    #[serde(with = "clickhouse::serde::time::datetime64::nanos")]
    start_time: OffsetDateTime,
    duration_ns: u64,
    input_messages: String,
    output_messages: String,
    input_text: String,
    output_text: String,
    finish_reasons: Vec<String>,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    reasoning_tokens: u64,
    cost_usd: Option<f64>,
    status: String,
    error_type: String,
    error_message: String,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u64>,
    seed: Option<i64>,
    prompt_template_id: String,
    prompt_template_version: String,
    system_instructions_hash: String,
    tool_definitions_hash: String,
}

/// A tool definition in a line: `name — description`, whatever the producer's layout
/// (OpenAI's `{"type": "function", "function": {…}}`, or flat `{name, description}`).
fn tool_line(t: &serde_json::Value) -> Option<String> {
    let f = t.get("function").unwrap_or(t);
    let name = f.get("name").and_then(serde_json::Value::as_str)?;
    let description = f.get("description").and_then(serde_json::Value::as_str).unwrap_or("");
    let description = description.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(if description.is_empty() { name.to_string() } else { format!("{name} — {description}") })
}

/// Fills the calls' system instructions and tool definitions from `contents` (one query).
async fn attach_contents(store: &Store, project: &str, calls: &mut [&mut CallView]) -> Result<(), StoreError> {
    let hashes: Vec<String> = calls
        .iter()
        .flat_map(|c| [c.system_hash.clone(), c.tools_hash.clone()])
        .filter(|h| !h.is_empty())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if hashes.is_empty() {
        return Ok(());
    }
    #[derive(Row, Deserialize)]
    struct Content {
        hash: String,
        content: String,
    }
    let rows: Vec<Content> = read(store, "SELECT hash, content FROM contents FINAL WHERE project_id = ? AND has(?, hash)")
        .bind(project)
        .bind(&hashes)
        .fetch_all()
        .await?;
    let by_hash: HashMap<String, String> = rows.into_iter().map(|r| (r.hash, r.content)).collect();
    for c in calls.iter_mut() {
        c.system = by_hash.get(&c.system_hash).filter(|s| !s.trim().is_empty()).cloned();
        if let Some(defs) = by_hash.get(&c.tools_hash).and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()) {
            c.tools = match &defs {
                serde_json::Value::Array(items) => items.iter().filter_map(tool_line).collect(),
                other => tool_line(other).into_iter().collect(),
            };
        }
    }
    Ok(())
}

fn parse_messages(raw: &str) -> Vec<Message> {
    if raw.trim().is_empty() {
        return vec![];
    }
    // A payload the canonical model does not parse is still worth reading as text.
    serde_json::from_str(raw).unwrap_or_else(|_| vec![Message::text("raw", raw)])
}

fn call_view(r: CallRow, reasons: Vec<String>) -> CallView {
    CallView {
        input: parse_messages(&r.input_messages),
        output: parse_messages(&r.output_messages),
        model: if r.response_model.is_empty() { r.request_model } else { r.response_model },
        trace_id: r.trace_id,
        span_id: r.span_id,
        session_id: r.session_id,
        user_id: r.user_id,
        feature: r.feature,
        provider: r.provider,
        start: r.start_time,
        duration_ns: r.duration_ns,
        input_text: r.input_text,
        output_text: r.output_text,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cache_read_tokens: r.cache_read_tokens,
        reasoning_tokens: r.reasoning_tokens,
        cost_usd: r.cost_usd,
        finish_reasons: r.finish_reasons,
        status: r.status,
        error_type: r.error_type,
        error_message: r.error_message,
        reasons,
        params: [
            ("temperature", r.temperature.map(|v| v.to_string())),
            ("max_tokens", r.max_tokens.map(|v| v.to_string())),
            ("top_p", r.top_p.map(|v| v.to_string())),
            ("seed", r.seed.map(|v| v.to_string())),
            (
                "prompt",
                Some(match (r.prompt_template_id.as_str(), r.prompt_template_version.as_str()) {
                    ("", "") => String::new(),
                    (id, "") => id.to_string(),
                    ("", v) => format!("version {v}"),
                    (id, v) => format!("{id}@{v}"),
                })
                .filter(|p| !p.is_empty()),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect(),
        system: None,
        tools: Vec::new(),
        system_hash: r.system_instructions_hash,
        tools_hash: r.tool_definitions_hash,
    }
}

async fn failure_reasons(
    store: &Store,
    project: &str,
    traces: &[&str],
    lo: OffsetDateTime,
    hi: OffsetDateTime,
) -> Result<HashMap<(String, String), Vec<String>>, StoreError> {
    let rows: Vec<FailureReasons> = read(
        store,
        &format!(
            "SELECT trace_id, span_id, reasons FROM failures FINAL WHERE project_id = ? AND trace_id IN {} \
             AND call_time >= fromUnixTimestamp64Nano(?) AND call_time <= fromUnixTimestamp64Nano(?)",
            sql_list(traces)
        ),
    )
    .bind(project)
    .bind(nanos(lo))
    .bind(nanos(hi))
    .fetch_all()
    .await?;
    Ok(rows.into_iter().map(|r| ((r.trace_id, r.span_id), r.reasons)).collect())
}

pub async fn trace(store: &Store, project: &str, trace_id: &str, around: Option<OffsetDateTime>) -> Result<TraceView, StoreError> {
    // When the caller knows when the trace happened, every query is bounded to a day either side
    // (partition pruning) and they run together; otherwise the spans (a primary-key lookup:
    // spans are ordered by trace) tell when, and the rest follows.
    let spans_in =
        |lo: Option<OffsetDateTime>, hi: Option<OffsetDateTime>| {
            let bounded = lo.is_some();
            let (lo, hi) = (lo.map(nanos).unwrap_or(0), hi.map(nanos).unwrap_or(0));
            async move {
                let time =
                    if bounded { "AND start_time >= fromUnixTimestamp64Nano(?) AND start_time <= fromUnixTimestamp64Nano(?)" } else { "" };
                let mut q = read(store, &format!(
                    "SELECT ?fields FROM spans FINAL WHERE project_id = ? AND trace_id = ? {time} ORDER BY start_time LIMIT {TRACE_SPANS}"
                ))
                .bind(project)
                .bind(trace_id);
                if bounded {
                    q = q.bind(lo).bind(hi);
                }
                q.fetch_all::<SpanLite>().await
            }
        };
    let calls_in = |lo: OffsetDateTime, hi: OffsetDateTime| {
        read(
            store,
            "SELECT ?fields FROM llm_calls FINAL WHERE project_id = ? AND trace_id = ? \
                 AND start_time >= fromUnixTimestamp64Nano(?) AND start_time <= fromUnixTimestamp64Nano(?) ORDER BY start_time LIMIT 1000",
        )
        .bind(project)
        .bind(trace_id)
        .bind(nanos(lo))
        .bind(nanos(hi))
        .fetch_all::<CallRow>()
    };
    let day = time::Duration::days(1);
    let hour = time::Duration::hours(1);
    let one = [trace_id];
    let (spans, calls, mut reasons, signals) = match around {
        Some(t) => {
            // Calls are ordered by hour: an hour either side reads a few granules. Spans are
            // looked up by trace id; the day bound only prunes partitions.
            let (spans, calls, reasons, signals) = tokio::try_join!(
                spans_in(Some(t - day), Some(t + day)),
                calls_in(t - hour, t + hour),
                failure_reasons(store, project, &one, t - day, t + day),
                queries::signals_for_trace(store, project, trace_id),
            )?;
            // A trace longer than the margins: its spans unbounded, its calls over its span.
            let spans = if spans.is_empty() { spans_in(None, None).await? } else { spans };
            let first = spans.iter().map(|s| s.start_time).min().unwrap_or(t);
            let last = spans.iter().map(|s| s.start_time).max().unwrap_or(t);
            let calls = if first < t - hour || last > t + hour { calls_in(first - hour, last + hour).await? } else { calls };
            (spans, calls, reasons, signals)
        }
        None => {
            let spans = spans_in(None, None).await?;
            let (lo, hi) = match (spans.iter().map(|s| s.start_time).min(), spans.iter().map(|s| s.start_time).max()) {
                (Some(lo), Some(hi)) => (lo - time::Duration::hours(1), hi + time::Duration::hours(1)),
                // No span (shorter span retention): the calls of the last 30 days, through the
                // trace_id bloom filter.
                _ => (OffsetDateTime::now_utc() - Window::Month.duration(), OffsetDateTime::now_utc() + time::Duration::hours(1)),
            };
            let (calls, reasons, signals) = tokio::try_join!(
                calls_in(lo, hi),
                failure_reasons(store, project, &one, lo, hi),
                queries::signals_for_trace(store, project, trace_id),
            )?;
            (spans, calls, reasons, signals)
        }
    };
    let mut calls: HashMap<String, CallRow> = calls.into_iter().map(|c| (c.span_id.clone(), c)).collect();
    let mut nodes: Vec<SpanNode> = spans
        .into_iter()
        .map(|s| {
            let call = calls.remove(&s.span_id).map(|c| {
                let r = reasons.remove(&(trace_id.to_string(), s.span_id.clone())).unwrap_or_default();
                call_view(c, r)
            });
            SpanNode {
                span_id: s.span_id,
                parent_span_id: s.parent_span_id,
                name: s.name,
                depth: 0,
                start: s.start_time,
                duration_ns: s.duration_ns,
                status_code: s.status_code,
                status_message: s.status_message,
                events: s.event_names.iter().zip(&s.event_attributes).map(|(n, a)| event_summary(n, a)).collect(),
                attributes: s.attributes.into_iter().collect(),
                call,
            }
        })
        .collect();
    // A call whose span is missing (span retention is shorter) still belongs in the view.
    for (span_id, c) in calls {
        let r = reasons.remove(&(trace_id.to_string(), span_id.clone())).unwrap_or_default();
        let name = format!("{} {}", if c.feature.is_empty() { "llm" } else { &c.feature }, c.request_model);
        nodes.push(SpanNode {
            span_id,
            parent_span_id: String::new(),
            name,
            depth: 0,
            start: c.start_time,
            duration_ns: c.duration_ns,
            status_code: String::new(),
            status_message: String::new(),
            attributes: Vec::new(),
            events: Vec::new(),
            call: Some(call_view(c, r)),
        });
    }
    let mut views: Vec<&mut CallView> = nodes.iter_mut().filter_map(|n| n.call.as_mut()).collect();
    attach_contents(store, project, &mut views).await?;
    Ok(trace_view(trace_id, nodes, signals))
}

/// Assembles a trace view from its spans (any order) and signals.
pub fn trace_view(trace_id: &str, nodes: Vec<SpanNode>, signals: Vec<SignalRow>) -> TraceView {
    let spans = span_tree(nodes);
    let start = spans.iter().map(|s| s.start).min().unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let end = spans.iter().map(|s| s.start + time::Duration::nanoseconds(s.duration_ns as i64)).max().unwrap_or(start);
    TraceView { trace_id: trace_id.to_string(), spans, signals, start, end }
}

pub async fn session(store: &Store, project: &str, session_id: &str, around: Option<OffsetDateTime>) -> Result<SessionView, StoreError> {
    let now = OffsetDateTime::now_utc();
    // Sessions last minutes to days: a week either side of a known turn, else the last 30 days.
    let (lo, hi) = match around {
        Some(t) => (t - time::Duration::days(7), t + time::Duration::days(7)),
        None => (now - Window::Month.duration(), now + time::Duration::hours(1)),
    };
    let rows: Vec<CallRow> = read(
        store,
        &format!(
            "SELECT ?fields FROM llm_calls FINAL WHERE project_id = ? AND session_id = ? \
             AND start_time >= fromUnixTimestamp64Nano(?) AND start_time <= fromUnixTimestamp64Nano(?) \
             ORDER BY start_time, trace_id, span_id LIMIT {SESSION_TURNS}"
        ),
    )
    .bind(project)
    .bind(session_id)
    .bind(nanos(lo))
    .bind(nanos(hi))
    .fetch_all()
    .await?;
    let traces: Vec<&str> = rows.iter().map(|r| r.trace_id.as_str()).collect::<HashSet<_>>().into_iter().collect();
    // Signals come on the session itself or on one of its traces (which may not name it).
    let signals_sql = format!(
        "SELECT ?fields FROM signals FINAL WHERE project_id = ? AND (session_id = ? OR trace_id IN {}) ORDER BY timestamp LIMIT 1000",
        sql_list(&traces)
    );
    let (mut reasons, signals) = tokio::try_join!(
        failure_reasons(store, project, &traces, lo, hi),
        read(store, &signals_sql).bind(project).bind(session_id).fetch_all::<SignalRow>(),
    )?;
    let user_id = rows.iter().map(|r| r.user_id.clone()).find(|u| !u.is_empty()).unwrap_or_default();
    let mut turns: Vec<CallView> = rows
        .into_iter()
        .map(|r| {
            let why = reasons.remove(&(r.trace_id.clone(), r.span_id.clone())).unwrap_or_default();
            call_view(r, why)
        })
        .collect();
    attach_contents(store, project, &mut turns.iter_mut().collect::<Vec<_>>()).await?;
    Ok(session_view(session_id, user_id, turns, signals))
}

pub fn session_view(session_id: &str, user_id: String, turns: Vec<CallView>, signals: Vec<SignalRow>) -> SessionView {
    let traces: HashSet<&str> = turns.iter().map(|t| t.trace_id.as_str()).collect();
    let mut by_trace: BTreeMap<String, Vec<SignalRow>> = BTreeMap::new();
    for s in signals {
        let key = if traces.contains(s.trace_id.as_str()) { s.trace_id.clone() } else { String::new() };
        by_trace.entry(key).or_default().push(s);
    }
    SessionView { session_id: session_id.to_string(), user_id, turns, signals: by_trace }
}

#[derive(Row, Deserialize)]
struct HitRow {
    trace_id: String,
    span_id: String,
    session_id: String,
    user_id: String,
    feature: String,
    model: String,
    #[serde(with = "clickhouse::serde::time::datetime64::nanos")]
    start_time: OffsetDateTime,
    status: String,
    snippet: String,
}

/// Calls whose trace, session or user id is `query`, or whose input or output text contains
/// it (case-insensitive), newest first, in the window.
pub async fn search(store: &Store, project: &str, query: &str, window: Window) -> Result<SearchResults, StoreError> {
    let q = query.trim();
    let since = OffsetDateTime::now_utc() - window.duration();
    let hits: Vec<HitRow> = read(store, &format!(
            "SELECT trace_id, span_id, session_id, user_id, feature, \
             if(response_model != '', response_model, request_model) AS model, start_time, status, \
             substring(if(positionCaseInsensitiveUTF8(output_text, ?) > 0 AND positionCaseInsensitiveUTF8(input_text, ?) = 0, output_text, input_text), 1, 200) AS snippet \
             FROM llm_calls FINAL WHERE project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) \
             AND (trace_id = ? OR session_id = ? OR user_id = ? OR positionCaseInsensitiveUTF8(input_text, ?) > 0 \
             OR positionCaseInsensitiveUTF8(output_text, ?) > 0) ORDER BY start_time DESC LIMIT {SEARCH_HITS}"
        ))
        .bind(q)
        .bind(q)
        .bind(project)
        .bind(nanos(since))
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(q)
        .fetch_all()
        .await?;
    Ok(SearchResults {
        query: q.to_string(),
        hits: hits
            .into_iter()
            .map(|h| SearchHit {
                trace_id: h.trace_id,
                span_id: h.span_id,
                session_id: h.session_id,
                user_id: h.user_id,
                feature: h.feature,
                model: h.model,
                start: h.start_time,
                status: h.status,
                snippet: h.snippet,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_quoted_for_in_lists() {
        assert_eq!(sql_list(&["ab", "c'd"]), "('ab','c\\'d')");
        assert_eq!(sql_list(&[]), "('')");
    }

    #[test]
    fn series_keep_empty_buckets_and_compute_rates() {
        let calls = [CallBucket { bucket: 3600, calls: 10, cost: 0.5 }, CallBucket { bucket: 3 * 3600, calls: 5, cost: 0.25 }];
        let failures = [Bucket { bucket: 3600, n: 2 }];
        let signals = [KindBucket { bucket: 3 * 3600, kind: "thumbs_down".into(), n: 1 }];
        let s = build_series(3600, 3 * 3600 + 10, 3600, &calls, &failures, &signals);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["calls", "failure rate", "thumbs_down rate", "cost"]);
        assert_eq!(s[0].values, [10.0, 0.0, 5.0]);
        assert_eq!(s[1].values, [0.2, 0.0, 0.0]);
        assert!((s[1].total - 2.0 / 15.0).abs() < 1e-9);
        assert_eq!(s[2].values, [0.0, 0.0, 0.2]);
        assert_eq!(s[3].total, 0.75);
    }
}
