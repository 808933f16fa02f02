//! The trace and session screens: a trace's spans (attributes, events) and LLM calls, a
//! session's calls in order, each call with its parameters, system instructions and tools
//! (shared contents, by hash), its failure reasons and its signals.

use super::*;

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

#[derive(Row, Deserialize)]
struct FailureReasons {
    trace_id: String,
    span_id: String,
    reasons: Vec<String>,
}

pub(super) async fn failure_reasons(
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
    let mut calls: Vec<CallView> = rows
        .into_iter()
        .map(|r| {
            let why = reasons.remove(&(r.trace_id.clone(), r.span_id.clone())).unwrap_or_default();
            call_view(r, why)
        })
        .collect();
    attach_contents(store, project, &mut calls.iter_mut().collect::<Vec<_>>()).await?;
    Ok(session_view(session_id, user_id, calls, signals))
}

pub fn session_view(session_id: &str, user_id: String, calls: Vec<CallView>, signals: Vec<SignalRow>) -> SessionView {
    let traces: HashSet<&str> = calls.iter().map(|t| t.trace_id.as_str()).collect();
    let mut by_trace: BTreeMap<String, Vec<SignalRow>> = BTreeMap::new();
    for s in signals {
        let key = if traces.contains(s.trace_id.as_str()) { s.trace_id.clone() } else { String::new() };
        by_trace.entry(key).or_default().push(s);
    }
    SessionView { session_id: session_id.to_string(), user_id, turns: turns_of(calls), signals: by_trace }
}

/// A session's calls (in time order) as user turns. A call joins the turn before it when it
/// answers the same user message and either runs in the same trace or follows a call that
/// asked for a tool — an agent's loop, even when its framework starts a new trace for the
/// follow-up request. The same message sent again after an answer (a regeneration, a retry)
/// is a turn of its own: the user acted again.
pub fn turns_of(calls: Vec<CallView>) -> Vec<Turn> {
    fn asked_tool(c: &CallView) -> bool {
        c.output.iter().any(|m| m.tool_calls().next().is_some())
            || c.finish_reasons.iter().any(|r| matches!(r.as_str(), "tool_calls" | "tool_use" | "function_call"))
    }
    let mut turns: Vec<Turn> = Vec::new();
    for c in calls {
        let joins = turns.last().is_some_and(|t| {
            let p = t.answer();
            let (now, before) = (c.said(), p.said());
            (now == before || now.trim().is_empty()) && (c.trace_id == p.trace_id || asked_tool(p))
        });
        match turns.last_mut() {
            Some(t) if joins => t.calls.push(c),
            _ => turns.push(Turn { calls: vec![c] }),
        }
    }
    turns
}
