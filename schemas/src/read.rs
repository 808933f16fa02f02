//! The read model: what a project's patterns, failures and traces look like to a program. The
//! collector's read API (`GET /v1/patterns`, …) and `flywheel mcp` serve these shapes, and
//! `flywheel patterns --json` prints the same [`Pattern`]; each shape is documented in
//! `schemas/api/openapi.json`.
//!
//! Every query is scoped to one project, and bounded: a list is cut at [`MAX_LIMIT`] items, a
//! trace at [`TRACE_SPANS`] spans, and a list that was cut says so (`truncated`).

use std::collections::{BTreeMap, HashMap, HashSet};

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::failure::{FailureDetails, Lane};
use crate::queries::{self, nanos};
use crate::rows::{FailureRow, LlmCallRow, PatternMemberRow, PatternRow, SignalRow, SpanRow};
use crate::store::{Store, StoreQuery};

/// The most items one answer lists.
pub const MAX_LIMIT: usize = 1000;
/// The most spans one trace answer holds.
pub const TRACE_SPANS: usize = 10_000;
/// How many failures a pattern's answer carries as examples.
pub const EXAMPLES: usize = 5;

/// A failure pattern as the TUI's list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    pub id: String,
    pub label: String,
    /// `behaviour`, `operations` or `users` (see [`Lane`]).
    pub lane: String,
    pub description: String,
    /// Failures in the latest analysis window.
    pub size: u64,
    pub previous_size: u64,
    /// `new`, `growing`, `stable`, `shrinking`, `resolved` (no member in the last run).
    pub trend: String,
    /// The triage state (one of `new`, `regressed`, `acknowledged`, `fixed`, `wont_fix`).
    pub status: String,
    /// The team's note of its latest triage decision.
    #[serde(default)]
    pub note: String,
    pub terms: Vec<String>,
    pub facets: BTreeMap<String, String>,
    pub calls: u64,
    pub traces: u64,
    pub sessions: u64,
    pub users: u64,
    pub severity: f32,
    pub cost_usd: f64,
    pub mean_latency_ms: f64,
    pub signal_mix: BTreeMap<String, u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fixed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub regressed_at: Option<OffsetDateTime>,
    pub regressed_in: String,
    pub run_id: String,
}

impl Pattern {
    pub fn of(p: &PatternRow, note: &str) -> Pattern {
        Pattern {
            id: p.pattern_id.clone(),
            label: p.label.clone(),
            lane: Lane::of(p).as_str().to_string(),
            description: p.description.clone(),
            size: p.size,
            previous_size: p.previous_size,
            trend: p.trend.clone(),
            status: p.status.clone(),
            note: note.to_string(),
            terms: p.terms.clone(),
            facets: p.facets.clone(),
            calls: p.calls,
            traces: p.traces,
            sessions: p.sessions,
            users: p.users,
            severity: p.severity,
            cost_usd: p.cost_usd,
            mean_latency_ms: p.mean_latency_ms,
            signal_mix: p.signal_mix.clone(),
            first_seen: p.first_seen,
            last_seen: p.last_seen,
            fixed_at: p.fixed(),
            regressed_at: p.regression(),
            regressed_in: p.regressed_in.clone(),
            run_id: p.run_id.clone(),
        }
    }
}

/// The answer of `GET /v1/patterns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternList {
    pub project: String,
    pub patterns: Vec<Pattern>,
}

/// A call of a pattern's latest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub trace_id: String,
    pub span_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub call_time: OffsetDateTime,
    /// Distance to the pattern's centre (nearest first).
    pub distance: f32,
}

impl From<PatternMemberRow> for Member {
    fn from(m: PatternMemberRow) -> Member {
        Member { trace_id: m.trace_id, span_id: m.span_id, call_time: m.call_time, distance: m.distance }
    }
}

/// A pattern with its members and a few failures as examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternDetail {
    pub pattern: Pattern,
    /// The members, nearest to the pattern's centre first, at most the limit asked.
    pub members: Vec<Member>,
    /// How many members the latest run found.
    pub member_count: usize,
    /// The failures of the nearest members (their request, answer, evidence).
    pub examples: Vec<Failure>,
}

/// A failing call as the analyzer recorded it: why it failed and what it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    pub model: String,
    #[serde(with = "time::serde::rfc3339")]
    pub call_time: OffsetDateTime,
    /// Rule ids (`tool_error`, `truncated`, `thumbs_down`, …).
    pub reasons: Vec<String>,
    pub categories: Vec<String>,
    pub severity: f32,
    /// The request and answer excerpts, the evidence per rule, the cause it was grouped by.
    pub details: FailureDetails,
}

impl From<FailureRow> for Failure {
    fn from(f: FailureRow) -> Failure {
        Failure {
            details: FailureDetails::parse(&f.details),
            trace_id: f.trace_id,
            span_id: f.span_id,
            session_id: f.session_id,
            user_id: f.user_id,
            feature: f.feature,
            model: f.model,
            call_time: f.call_time,
            reasons: f.reasons,
            categories: f.categories,
            severity: f.severity,
        }
    }
}

/// A page of failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    pub failures: Vec<Failure>,
    /// More matched than the limit.
    pub truncated: bool,
}

/// One trace: its spans, its model calls with their messages, the failures found in it and
/// the signals about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub trace_id: String,
    pub spans: Vec<Span>,
    /// More spans than [`TRACE_SPANS`]: the earliest are listed.
    pub truncated: bool,
    pub calls: Vec<Call>,
    pub failures: Vec<Failure>,
    pub signals: Vec<Signal>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: String,
    pub service_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub start_time: OffsetDateTime,
    pub duration_ms: f64,
    pub status_code: String,
    pub status_message: String,
    pub attributes: BTreeMap<String, String>,
    pub resource_attributes: BTreeMap<String, String>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub attributes: BTreeMap<String, String>,
}

impl From<SpanRow> for Span {
    fn from(s: SpanRow) -> Span {
        let events = s
            .event_names
            .into_iter()
            .zip(s.event_times)
            .zip(s.event_attributes)
            .map(|((name, time), attributes)| Event { name, time, attributes })
            .collect();
        Span {
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            name: s.name,
            kind: s.kind,
            service_name: s.service_name,
            start_time: s.start_time,
            duration_ms: s.duration_ns as f64 / 1e6,
            status_code: s.status_code,
            status_message: s.status_message,
            attributes: s.attributes,
            resource_attributes: s.resource_attributes,
            events,
        }
    }
}

/// A model call: what it was asked, with which parameters, and what it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    pub provider: String,
    pub request_model: String,
    pub response_model: String,
    #[serde(with = "time::serde::rfc3339")]
    pub start_time: OffsetDateTime,
    pub duration_ms: f64,
    /// The system instructions, when the producer sent them.
    pub system_instructions: String,
    /// The tool definitions offered to the model (JSON as sent), when any.
    pub tool_definitions: serde_json::Value,
    /// Messages in flywheel's canonical shape (see `CONVENTIONS.md`).
    pub input_messages: serde_json::Value,
    pub output_messages: serde_json::Value,
    pub finish_reasons: Vec<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    pub status: String,
    pub error_type: String,
    pub error_message: String,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    pub prompt_template_id: String,
    pub prompt_template_version: String,
}

/// JSON as stored, or the text itself when it is not JSON (a producer's raw payload).
fn json_or_text(raw: &str) -> serde_json::Value {
    if raw.trim().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()))
}

impl Call {
    fn of(c: LlmCallRow, contents: &HashMap<String, String>) -> Call {
        let content = |hash: &str| contents.get(hash).cloned().unwrap_or_default();
        Call {
            system_instructions: content(&c.system_instructions_hash),
            tool_definitions: json_or_text(&content(&c.tool_definitions_hash)),
            input_messages: json_or_text(&c.input_messages),
            output_messages: json_or_text(&c.output_messages),
            span_id: c.span_id,
            session_id: c.session_id,
            user_id: c.user_id,
            feature: c.feature,
            provider: c.provider,
            request_model: c.request_model,
            response_model: c.response_model,
            start_time: c.start_time,
            duration_ms: c.duration_ns as f64 / 1e6,
            finish_reasons: c.finish_reasons,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cost_usd: c.cost_usd,
            status: c.status,
            error_type: c.error_type,
            error_message: c.error_message,
            temperature: c.temperature,
            top_p: c.top_p,
            max_tokens: c.max_tokens,
            prompt_template_id: c.prompt_template_id,
            prompt_template_version: c.prompt_template_version,
        }
    }
}

/// A feedback signal about the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub kind: String,
    pub name: String,
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub value: Option<f64>,
    pub comment: String,
    pub text: String,
    pub edit_ratio: Option<f64>,
}

impl From<SignalRow> for Signal {
    fn from(s: SignalRow) -> Signal {
        Signal {
            kind: s.kind,
            name: s.name,
            source: s.source,
            timestamp: s.timestamp,
            span_id: s.span_id,
            session_id: s.session_id,
            user_id: s.user_id,
            value: s.value,
            comment: s.comment,
            text: s.text,
            edit_ratio: s.edit_ratio,
        }
    }
}

/// How far back a search looks when the request does not say.
pub const SEARCH_LOOKBACK: time::Duration = time::Duration::days(30);

/// The start of a lookback as asked (`since=7d`), ending now: `None` when not given, the
/// parser's one-line reason when not a duration.
pub fn since(spec: Option<&str>) -> Result<Option<OffsetDateTime>, String> {
    spec.map(|s| crate::lookback::parse(s).map(|d| OffsetDateTime::now_utc() - d)).transpose()
}

/// A limit as asked, within 1..=[`MAX_LIMIT`] (100 when not given).
pub fn limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(100).clamp(1, MAX_LIMIT)
}

/// A read of event tables with FINAL per partition: they are partitioned by day of a time that
/// a row's replacement shares (a retried span, call, signal or failure keeps its time), so
/// FINAL never needs to merge across partitions, and saying so lets the engine finalise each
/// partition on its own, in parallel. The TUI's reads use it too.
pub fn read<'a>(store: &'a Store, sql: &str) -> StoreQuery<'a> {
    store.query(sql).with_setting("do_not_merge_across_partitions_select_final", "1")
}

/// The project's patterns, regressed first, then by impact (as `flywheel patterns`).
pub async fn patterns(store: &Store, project: &str) -> Result<Vec<Pattern>, StoreError> {
    let (rows, triage) = queries::current_patterns_and_triage(store, project).await?;
    Ok(rows.iter().map(|p| Pattern::of(p, triage.get(&p.pattern_id).map(|t| t.note.as_str()).unwrap_or(""))).collect())
}

/// One pattern with at most `members` members and [`EXAMPLES`] example failures; `None` when
/// the project has no such pattern.
pub async fn pattern(store: &Store, project: &str, id: &str, members: usize) -> Result<Option<PatternDetail>, StoreError> {
    let Some(pattern) = patterns(store, project).await?.into_iter().find(|p| p.id == id) else { return Ok(None) };
    let all = queries::pattern_members(store, project, id).await?;
    let member_count = all.len();
    let members: Vec<Member> = all.into_iter().take(members.clamp(1, MAX_LIMIT)).map(Member::from).collect();
    let examples = failures_of(store, project, &members[..members.len().min(EXAMPLES)]).await?;
    Ok(Some(PatternDetail { pattern, members, member_count, examples }))
}

/// The failures of these calls, in the order given (a call the analyzer no longer holds a
/// failure for is left out).
async fn failures_of(store: &Store, project: &str, calls: &[Member]) -> Result<Vec<Failure>, StoreError> {
    if calls.is_empty() {
        return Ok(vec![]);
    }
    let traces: Vec<&str> = calls.iter().map(|m| m.trace_id.as_str()).collect::<HashSet<_>>().into_iter().collect();
    let lo = calls.iter().map(|m| m.call_time).min().unwrap_or(OffsetDateTime::UNIX_EPOCH) - time::Duration::days(1);
    let hi = calls.iter().map(|m| m.call_time).max().unwrap_or(OffsetDateTime::UNIX_EPOCH) + time::Duration::days(1);
    let rows: Vec<FailureRow> = read(
        store,
        "SELECT ?fields FROM failures FINAL WHERE project_id = ? AND trace_id IN ? \
         AND call_time >= fromUnixTimestamp64Nano(?) AND call_time <= fromUnixTimestamp64Nano(?)",
    )
    .bind(project)
    .bind(&traces)
    .bind(nanos(lo))
    .bind(nanos(hi))
    .fetch_all()
    .await?;
    let mut by_call: HashMap<(String, String), FailureRow> =
        rows.into_iter().map(|f| ((f.trace_id.clone(), f.span_id.clone()), f)).collect();
    Ok(calls.iter().filter_map(|m| by_call.remove(&(m.trace_id.clone(), m.span_id.clone()))).map(Failure::from).collect())
}

/// What `/v1/failures` filters on.
#[derive(Debug, Clone, Default)]
pub struct FailureFilter {
    /// Only the members of this pattern's latest run (nearest first).
    pub pattern: Option<String>,
    /// Only failures of calls at or after this time (newest first).
    pub since: Option<OffsetDateTime>,
    pub limit: usize,
}

/// Failures of the project: a pattern's, or the most recent ones. `None` when the pattern
/// named does not exist.
pub async fn failures(store: &Store, project: &str, filter: &FailureFilter) -> Result<Option<Failures>, StoreError> {
    let limit = filter.limit.clamp(1, MAX_LIMIT);
    if let Some(id) = &filter.pattern {
        if !patterns(store, project).await?.iter().any(|p| &p.id == id) {
            return Ok(None);
        }
        let members: Vec<Member> = queries::pattern_members(store, project, id)
            .await?
            .into_iter()
            .map(Member::from)
            .filter(|m| filter.since.is_none_or(|s| m.call_time >= s))
            .collect();
        let truncated = members.len() > limit;
        let mut failures = Vec::with_capacity(limit.min(members.len()));
        // In slices, so that one query's trace list stays small.
        for chunk in members[..members.len().min(limit)].chunks(200) {
            failures.extend(failures_of(store, project, chunk).await?);
        }
        return Ok(Some(Failures { failures, truncated }));
    }
    let since = filter.since.unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut rows: Vec<FailureRow> = read(
        store,
        "SELECT ?fields FROM failures FINAL WHERE project_id = ? AND call_time >= fromUnixTimestamp64Nano(?) \
         ORDER BY call_time DESC, trace_id, span_id LIMIT ?",
    )
    .bind(project)
    .bind(nanos(since))
    .bind(limit as u64 + 1)
    .fetch_all()
    .await?;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(Some(Failures { failures: rows.into_iter().map(Failure::from).collect(), truncated }))
}

/// One trace of the project; `None` when nothing of it is stored.
pub async fn trace(store: &Store, project: &str, trace_id: &str) -> Result<Option<Trace>, StoreError> {
    // Spans are ordered by trace: a key lookup. They also say when the trace ran, which bounds
    // the reads of tables ordered by time.
    let mut spans: Vec<SpanRow> =
        read(store, "SELECT ?fields FROM spans FINAL WHERE project_id = ? AND trace_id = ? ORDER BY start_time LIMIT ?")
            .bind(project)
            .bind(trace_id)
            .bind(TRACE_SPANS as u64 + 1)
            .fetch_all()
            .await?;
    let truncated = spans.len() > TRACE_SPANS;
    spans.truncate(TRACE_SPANS);
    let now = OffsetDateTime::now_utc();
    let (lo, hi) = match (spans.iter().map(|s| s.start_time).min(), spans.iter().map(|s| s.end_time).max()) {
        (Some(lo), Some(hi)) => (lo - time::Duration::hours(1), hi + time::Duration::hours(1)),
        // No span (a shorter span retention): the last 30 days, through the trace id index.
        _ => (now - time::Duration::days(30), now + time::Duration::hours(1)),
    };
    let calls = read(
        store,
        "SELECT ?fields FROM llm_calls FINAL WHERE project_id = ? AND trace_id = ? \
         AND start_time >= fromUnixTimestamp64Nano(?) AND start_time <= fromUnixTimestamp64Nano(?) ORDER BY start_time LIMIT ?",
    )
    .bind(project)
    .bind(trace_id)
    .bind(nanos(lo))
    .bind(nanos(hi))
    .bind(MAX_LIMIT as u64)
    .fetch_all::<LlmCallRow>();
    let failures = read(
        store,
        "SELECT ?fields FROM failures FINAL WHERE project_id = ? AND trace_id = ? \
         AND call_time >= fromUnixTimestamp64Nano(?) AND call_time <= fromUnixTimestamp64Nano(?) ORDER BY call_time",
    )
    .bind(project)
    .bind(trace_id)
    .bind(nanos(lo))
    .bind(nanos(hi))
    .fetch_all::<FailureRow>();
    let (calls, failures, signals) = tokio::try_join!(calls, failures, queries::signals_for_trace(store, project, trace_id))?;
    if spans.is_empty() && calls.is_empty() && signals.is_empty() {
        return Ok(None);
    }
    let contents = contents(store, project, calls.iter().flat_map(|c| [&c.system_instructions_hash, &c.tool_definitions_hash])).await?;
    Ok(Some(Trace {
        trace_id: trace_id.to_string(),
        spans: spans.into_iter().map(Span::from).collect(),
        truncated,
        calls: calls.into_iter().map(|c| Call::of(c, &contents)).collect(),
        failures: failures.into_iter().map(Failure::from).collect(),
        signals: signals.into_iter().map(Signal::from).collect(),
    }))
}

/// The shared contents (system instructions, tool definitions) of these hashes.
pub async fn contents<'a>(
    store: &Store,
    project: &str,
    hashes: impl Iterator<Item = &'a String>,
) -> Result<HashMap<String, String>, StoreError> {
    let hashes: Vec<&String> = hashes.filter(|h| !h.is_empty()).collect::<HashSet<_>>().into_iter().collect();
    if hashes.is_empty() {
        return Ok(HashMap::new());
    }
    #[derive(Row, Deserialize)]
    struct Content {
        hash: String,
        content: String,
    }
    let rows: Vec<Content> = store
        .query("SELECT hash, any(content) AS content FROM contents WHERE project_id = ? AND hash IN ? GROUP BY hash")
        .bind(project)
        .bind(hashes)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(|c| (c.hash, c.content)).collect())
}

/// Failures whose request, answer or error contains `text` (case-insensitive), newest first.
pub async fn search(store: &Store, project: &str, text: &str, since: OffsetDateTime, limit: usize) -> Result<Failures, StoreError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let mut rows: Vec<FailureRow> = read(
        store,
        "SELECT ?fields FROM failures FINAL WHERE project_id = ? AND call_time >= fromUnixTimestamp64Nano(?) \
         AND positionCaseInsensitiveUTF8(details, ?) > 0 ORDER BY call_time DESC, trace_id, span_id LIMIT ?",
    )
    .bind(project)
    .bind(nanos(since))
    .bind(text)
    .bind(limit as u64 + 1)
    .fetch_all()
    .await?;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    Ok(Failures { failures: rows.into_iter().map(Failure::from).collect(), truncated })
}
