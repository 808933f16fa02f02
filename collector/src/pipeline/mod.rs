//! The ingestion pipeline, shared by every receiver: decoded OTLP requests in, stored rows out.
//!
//! Traces: every span → `spans` (raw, redacted); every model call → `llm_calls` (normalised,
//! identity and feature inherited from its ancestors in the request, priced), with its
//! repeated prompt content → `contents`. Logs: every record → `log_records`; GenAI content
//! events are joined to their call by (trace id, span id), in either arrival order, through
//! the [`JoinCache`]. `traces`/`logs` return once the rows are stored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flywheel_schemas::rows::{ContentRow, LlmCallRow, LogRecordRow};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest};
use serde_json::Value;
use time::OffsetDateTime;

mod join;

pub use join::DEFAULT_MAX_BYTES as JOIN_CACHE_DEFAULT_MAX_BYTES;
pub use join::JoinCache;

use crate::metrics::Metrics;
use crate::normalize::genai::read_log_event;
use crate::normalize::span::{DecodedSpan, Rejected, decode_spans, nanos};
use crate::normalize::{self, Attrs, Draft, SpanIds, fill};
use crate::otlp::{any_to_json, attributes, flat, flat_map, hex_id};
use crate::price::{PriceTable, Usage};
use crate::redact::Redactor;
use crate::signals::{SOURCE_OTLP_LOG, SOURCE_SPAN_EVENT, SignalService, wire};

/// The event name of a signal sent through OpenTelemetry (log record or span event).
pub const SIGNAL_EVENT: &str = "flywheel.signal";
use crate::writer::{Batch, WriteError, Writer};

/// What happened to a request's items, for the OTLP partial-success answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub accepted: u64,
    pub rejected: u64,
    pub message: String,
}

impl Outcome {
    /// Adds the warning of values repaired to decode the request ([`crate::otlp::repair`]).
    pub fn warn(&mut self, repairs: &crate::otlp::repair::Repairs) {
        if let Some(warning) = repairs.message() {
            self.message = if self.message.is_empty() { warning } else { format!("{}; {warning}", self.message) };
        }
    }

    /// The OTLP partial-success part of a trace export reply: absent when nothing was refused
    /// or repaired (a partial success with nothing rejected is a warning, per the OTLP spec).
    pub fn trace_partial(&self) -> Option<ExportTracePartialSuccess> {
        (self.rejected > 0 || !self.message.is_empty())
            .then(|| ExportTracePartialSuccess { rejected_spans: self.rejected as i64, error_message: self.message.clone() })
    }

    pub fn logs_partial(&self) -> Option<ExportLogsPartialSuccess> {
        (self.rejected > 0 || !self.message.is_empty())
            .then(|| ExportLogsPartialSuccess { rejected_log_records: self.rejected as i64, error_message: self.message.clone() })
    }
}

pub struct Pipeline {
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub signals: SignalService,
    prices: PriceTable,
    redactor: Redactor,
    feature_attribute: Option<String>,
    joins: Mutex<JoinCache>,
    written_contents: Mutex<HashSet<(String, String, time::Date)>>,
    retention_days: Option<u32>,
    /// Bound on the estimated bytes of one request's rows ([`crate::expansion`]).
    max_rows_bytes: u64,
}

impl Pipeline {
    pub fn new(
        writer: Writer,
        metrics: Arc<Metrics>,
        signals: SignalService,
        prices: PriceTable,
        redactor: Redactor,
        feature_attribute: Option<String>,
        join_window: Duration,
    ) -> Pipeline {
        Pipeline {
            writer,
            metrics,
            signals,
            prices,
            redactor,
            feature_attribute,
            joins: Mutex::new(JoinCache::new(join_window, join::DEFAULT_MAX_BYTES)),
            written_contents: Mutex::new(HashSet::new()),
            retention_days: None,
            max_rows_bytes: crate::expansion::DEFAULT_MAX_ROWS_BYTES,
        }
    }

    /// Bounds the join cache to `bytes` (estimated).
    pub fn with_join_cache_bytes(self, bytes: usize) -> Self {
        self.joins.lock().unwrap_or_else(|e| e.into_inner()).max_bytes = bytes;
        self
    }

    /// Refuses spans and log records older than the `spans` retention: written, they would
    /// expire at once (TTL) — the client hears about it instead (partial success).
    pub fn with_retention(mut self, days: Option<u32>) -> Self {
        self.retention_days = days;
        self
    }

    /// The join cache's estimated bytes, and the entries it evicted to stay within its bound.
    pub fn join_stats(&self) -> (usize, u64) {
        let joins = self.joins.lock().unwrap_or_else(|e| e.into_inner());
        (joins.bytes(), joins.evicted)
    }

    /// Refuses (413) a request whose rows would exceed `bytes`, before they are built.
    pub fn with_max_rows_bytes(mut self, bytes: u64) -> Self {
        self.max_rows_bytes = bytes;
        self
    }

    /// Refuses a request whose rows, once built, would take more than the bound: checked on the
    /// decoded request, so that no memory is spent on rows that cannot be stored.
    fn check_expansion(&self, project: &str, signal: &str, estimate: u64, wire: usize) -> Result<(), WriteError> {
        if estimate <= self.max_rows_bytes {
            return Ok(());
        }
        self.metrics.reject(signal, "too_large_rows", 1);
        tracing::warn!(
            project,
            signal,
            wire_bytes = wire,
            row_bytes = estimate,
            limit = self.max_rows_bytes,
            "request refused: its resource and scope attributes, copied into every row, make it too large to store"
        );
        Err(WriteError::TooLarge { bytes: estimate, limit: self.max_rows_bytes })
    }

    fn expired(&self, at: OffsetDateTime, now: OffsetDateTime) -> Option<String> {
        let days = self.retention_days?;
        (at < now - time::Duration::days(days as i64))
            .then(|| format!("older than the {days}-day retention of spans (dated {at}); it would expire at once"))
    }

    #[tracing::instrument(name = "ingest traces", skip_all, fields(project = %project))]
    pub async fn traces(&self, project: &str, request: &ExportTraceServiceRequest) -> Result<Outcome, WriteError> {
        use prost::Message as _;
        self.check_expansion(project, "spans", crate::expansion::traces(request), request.encoded_len())?;
        let now = OffsetDateTime::now_utc();
        let (mut spans, mut rejected) = decode_spans(request);
        spans.retain(|s| match self.expired(s.ids.start, now) {
            Some(reason) => {
                rejected.push(Rejected { span_name: s.name.clone(), reason, cause: "expired" });
                false
            }
            None => true,
        });
        let received = (spans.len() + rejected.len()) as u64;
        self.metrics.spans_received.fetch_add(received, std::sync::atomic::Ordering::Relaxed);
        for r in &rejected {
            tracing::warn!(project, span = %r.span_name, reason = %r.reason, "span rejected");
        }
        count_rejected(&self.metrics, "spans", &rejected);
        for span in &mut spans {
            self.redact_span(span);
        }

        let mut batch = Batch { spans: spans.iter().map(|s| s.row(project, now)).collect(), ..Default::default() };
        let by_id: HashMap<(&str, &str), &DecodedSpan> =
            spans.iter().map(|s| ((s.ids.trace_id.as_str(), s.ids.span_id.as_str()), s)).collect();
        {
            let calls: Vec<(&DecodedSpan, Draft)> = spans
                .iter()
                .filter_map(|span| {
                    let mut draft = normalize::read_call(&span.view())?;
                    self.inherit(span, &by_id, &mut draft);
                    Some((span, draft))
                })
                .collect();
            let (wrapped, parents) = wrappers(&calls);
            let key_of = |span: &DecodedSpan| (project.to_string(), span.ids.trace_id.clone(), span.ids.span_id.clone());
            let mut joins = self.joins.lock().unwrap_or_else(|e| e.into_inner());
            let mut written: Vec<(String, String, String)> = Vec::new();
            let mut absorbed = Vec::new();
            for (i, (span, draft)) in calls.iter().enumerate() {
                let key = key_of(span);
                if let Some(&child) = wrapped.get(&i) {
                    absorbed.push((key, draft.clone(), key_of(calls[child].0)));
                    continue;
                }
                // The wrapper of a call that came in an earlier request.
                if !parents.contains(&(span.ids.trace_id.as_str(), span.ids.span_id.as_str()))
                    && let Some(child) = joins.child_of(&key).filter(|child| child.2 != span.ids.parent_span_id)
                {
                    absorbed.push((key, draft.clone(), child));
                    continue;
                }
                joins.add_call(key.clone(), span.ids.clone(), draft.clone(), span.status == "error");
                written.push(key);
            }
            for (wrapper, draft, child) in absorbed {
                self.metrics.duplicate_calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if joins.absorb(wrapper, draft, &child).is_some() && !written.contains(&child) {
                    written.push(child);
                }
            }
            for key in &written {
                if let Some((ids, draft, is_error)) = joins.merged(key) {
                    batch.calls.push(self.call_row(project, &ids, &draft, is_error, now, &mut batch.contents));
                }
            }
        }
        // Who and where, from the request's own calls: a signal sent as a span event gets the
        // session, user and feature of the call it judges, as one sent as a log record does,
        // without waiting for that call to reach storage.
        let is_signal = |name: &str| name == SIGNAL_EVENT || name == wire::EVALUATION_EVENT;
        // An evaluation sent as a span of its own (a point-in-time span under the call it
        // judges, as some SDKs emit events): its parent is the evaluated call.
        let evaluation_spans: Vec<&DecodedSpan> =
            spans.iter().filter(|s| s.attrs.0.contains_key("gen_ai.evaluation.name") && !s.ids.parent_span_id.is_empty()).collect();
        let has_events = !evaluation_spans.is_empty() || spans.iter().any(|s| s.events.iter().any(|e| is_signal(&e.name)));
        let contexts: Vec<CallContext> = if has_events { batch.calls.iter().map(CallContext::of).collect() } else { Vec::new() };
        self.store(batch).await?;
        self.metrics.spans_accepted.fetch_add(spans.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // Signals sent as span events, once their span is stored (so that they link at once).
        let mut events: Vec<_> = spans
            .iter()
            .flat_map(|s| s.events.iter().filter(|e| is_signal(&e.name)).map(move |e| (s, e)))
            .enumerate()
            .map(|(i, (s, e))| {
                let read = if e.name == SIGNAL_EVENT { wire::from_attributes } else { wire::from_evaluation };
                read(i, &e.attrs.0, &s.ids.trace_id, &s.ids.span_id).map(|mut sig| {
                    sig.timestamp = sig.timestamp.or(Some(e.time));
                    CallContext::fill(&contexts, &mut sig);
                    sig
                })
            })
            .collect();
        for s in evaluation_spans {
            let sig = wire::from_evaluation(events.len(), &s.attrs.0, &s.ids.trace_id, &s.ids.parent_span_id).map(|mut sig| {
                sig.timestamp = Some(s.ids.end);
                CallContext::fill(&contexts, &mut sig);
                sig
            });
            events.push(sig);
        }
        self.store_signals(project, events, SOURCE_SPAN_EVENT).await?;
        Ok(outcome(spans.len() as u64, &rejected, "spans"))
    }

    #[tracing::instrument(name = "ingest logs", skip_all, fields(project = %project))]
    pub async fn logs(&self, project: &str, request: &ExportLogsServiceRequest) -> Result<Outcome, WriteError> {
        use prost::Message as _;
        self.check_expansion(project, "logs", crate::expansion::logs(request), request.encoded_len())?;
        let now = OffsetDateTime::now_utc();
        let mut batch = Batch::default();
        let mut rejected = Vec::new();
        let mut touched: Vec<(String, String, String)> = Vec::new();
        let mut contents = Vec::new();
        let mut log_signals = Vec::new();
        // The place of each record in the request, part of its identity.
        let mut position = 0u64;
        for rl in &request.resource_logs {
            let resource = rl.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").map(flat).unwrap_or_default();
            let resource_key = normalize::content_hash(&format!("{resource:?}"));
            for sl in &rl.scope_logs {
                let scope = sl.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                for record in &sl.log_records {
                    position += 1;
                    let ids = (ids_or_empty(&record.trace_id, 16), ids_or_empty(&record.span_id, 8));
                    let (Some(trace_id), Some(span_id)) = ids else {
                        rejected.push(Rejected {
                            span_name: record.event_name.clone(),
                            reason: "trace_id/span_id of a wrong length".into(),
                            cause: "invalid_id",
                        });
                        continue;
                    };
                    let mut attrs = attributes(&record.attributes);
                    let mut body = record.body.as_ref().map(any_to_json).unwrap_or(Value::Null);
                    for v in attrs.values_mut() {
                        self.redactor.redact_value(v);
                    }
                    self.redactor.redact_value(&mut body);
                    let attrs = Attrs::new(attrs);
                    let event_name = if record.event_name.is_empty() {
                        attrs.string("event.name").unwrap_or_default()
                    } else {
                        record.event_name.clone()
                    };
                    // A record with no time at all is dated on receipt: dated 1970 it would be
                    // expired by the table's TTL the moment it is written.
                    let received = now.unix_timestamp_nanos() as u64;
                    let time =
                        [record.time_unix_nano, record.observed_time_unix_nano, received].into_iter().find(|t| *t > 0).unwrap_or(received);
                    if let Err(reason) = crate::normalize::time_range::check_nanos("time", time)
                        .and_then(|_| crate::normalize::time_range::check_nanos("observed time", record.observed_time_unix_nano))
                    {
                        rejected.push(Rejected { span_name: record.event_name.clone(), reason, cause: "time_out_of_range" });
                        continue;
                    }
                    if let Some(reason) = self.expired(nanos(time), now) {
                        rejected.push(Rejected { span_name: record.event_name.clone(), reason, cause: "expired" });
                        continue;
                    }
                    if event_name == SIGNAL_EVENT || event_name == wire::EVALUATION_EVENT {
                        let read = if event_name == SIGNAL_EVENT { wire::from_attributes } else { wire::from_evaluation };
                        let mut sig = read(log_signals.len(), &attrs.0, &trace_id, &span_id);
                        if let Ok(s) = &mut sig {
                            s.timestamp = s.timestamp.or(Some(nanos(time)));
                        }
                        log_signals.push(sig);
                    }
                    if !trace_id.is_empty()
                        && !span_id.is_empty()
                        && let Some(content) = read_log_event(&event_name, &attrs, &body)
                    {
                        contents.push(((project.to_string(), trace_id.clone(), span_id.clone()), content));
                    }
                    batch.logs.push(LogRecordRow {
                        project_id: project.to_string(),
                        // Everything that tells two records apart, so that only a record sent again
                        // (a retry, a replay of the log) collapses: its resource and scope, its
                        // severity and times, and its place in the request (identical records
                        // logged twice are two records).
                        record_id: normalize::content_hash(&format!(
                            "{resource_key}/{scope}/{position}/{trace_id}/{span_id}/{time}/{}/{}/{}/{event_name}/{body}/{:?}",
                            record.observed_time_unix_nano, record.severity_number, record.severity_text, attrs.0
                        )),
                        timestamp: nanos(time),
                        observed_timestamp: nanos(record.observed_time_unix_nano.max(time)),
                        trace_id,
                        span_id,
                        severity_number: record.severity_number.clamp(0, 255) as u8,
                        severity_text: record.severity_text.clone(),
                        event_name,
                        body: if body.is_null() { String::new() } else { flat(&body) },
                        service_name: service.clone(),
                        scope_name: scope.clone(),
                        resource_attributes: flat_map(&resource),
                        attributes: flat_map(&attrs.0),
                        ingested_at: now,
                    });
                }
            }
        }
        {
            let mut joins = self.joins.lock().unwrap_or_else(|e| e.into_inner());
            for (key, content) in contents {
                if let Some(call) = joins.add_log(key, content)
                    && !touched.contains(&call)
                {
                    touched.push(call);
                }
            }
            // A call already stored gets a complete row again: ReplacingMergeTree keeps the newest.
            for key in &touched {
                if let Some((ids, draft, is_error)) = joins.merged(key) {
                    batch.calls.push(self.call_row(&key.0, &ids, &draft, is_error, now, &mut batch.contents));
                }
            }
        }
        let accepted = batch.logs.len() as u64;
        self.metrics.log_records_received.fetch_add(accepted + rejected.len() as u64, std::sync::atomic::Ordering::Relaxed);
        count_rejected(&self.metrics, "logs", &rejected);
        self.store(batch).await?;
        self.metrics.log_records_accepted.fetch_add(accepted, std::sync::atomic::Ordering::Relaxed);
        self.store_signals(project, log_signals, SOURCE_OTLP_LOG).await?;
        Ok(outcome(accepted, &rejected, "log records"))
    }

    async fn store(&self, mut batch: Batch) -> Result<(), WriteError> {
        let today = OffsetDateTime::now_utc().date();
        {
            // Repeated prompt content is written once a day (contents is partitioned by day).
            let written = self.written_contents.lock().unwrap_or_else(|e| e.into_inner());
            let mut seen = HashSet::new();
            batch.contents.retain(|c| !written.contains(&(c.project_id.clone(), c.hash.clone(), today)) && seen.insert(c.hash.clone()));
        }
        let new_contents: Vec<(String, String, time::Date)> =
            batch.contents.iter().map(|c| (c.project_id.clone(), c.hash.clone(), today)).collect();
        let calls = batch.calls.len() as u64;
        self.writer.write(batch).await?;
        self.metrics.llm_calls.fetch_add(calls, std::sync::atomic::Ordering::Relaxed);
        let mut written = self.written_contents.lock().unwrap_or_else(|e| e.into_inner());
        if written.len() > 100_000 {
            written.retain(|(_, _, day)| *day == today);
        }
        written.extend(new_contents);
        Ok(())
    }

    /// Signals carried by OTLP (log records, span events): the record itself is stored raw
    /// regardless; a signal that does not validate is counted and logged, never silently lost.
    async fn store_signals(&self, project: &str, items: Vec<Result<wire::Signal, wire::Invalid>>, source: &str) -> Result<(), WriteError> {
        if items.is_empty() {
            return Ok(());
        }
        let prepared = self.signals.prepare(project, items, source, None).await;
        for bad in &prepared.rejected {
            tracing::warn!(project, source, field = %bad.field, error = %bad.error, "signal refused");
        }
        self.metrics.reject("signals", "invalid", prepared.rejected.len() as u64);
        let accepted = prepared.rows.len() as u64;
        self.writer.write(Batch { signals: prepared.rows.clone(), ..Default::default() }).await?;
        self.signals.stored(&prepared);
        self.metrics.signals_accepted.fetch_add(accepted, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn redact_span(&self, span: &mut DecodedSpan) {
        if self.redactor.is_empty() {
            return;
        }
        for v in span.attrs.0.values_mut() {
            self.redactor.redact_value(v);
        }
        for e in &mut span.events {
            for v in e.attrs.0.values_mut() {
                self.redactor.redact_value(v);
            }
        }
        span.status_message = self.redactor.redact(&span.status_message).into_owned();
    }

    /// Session, user and feature from the span's ancestors present in the same request, and
    /// the configured feature attribute, which wins over everything.
    fn inherit(&self, span: &DecodedSpan, by_id: &HashMap<(&str, &str), &DecodedSpan>, draft: &mut Draft) {
        let mut ancestors = Vec::new();
        let mut parent = span.ids.parent_span_id.as_str();
        while !parent.is_empty() && ancestors.len() < 64 {
            let Some(p) = by_id.get(&(span.ids.trace_id.as_str(), parent)) else { break };
            ancestors.push(*p);
            parent = p.ids.parent_span_id.as_str();
        }
        for a in &ancestors {
            let (session, user) = normalize::identity_of(&a.view());
            fill!(draft.session_id, session);
            fill!(draft.user_id, user);
        }
        if let Some(attr) = &self.feature_attribute
            && let Some(value) = std::iter::once(span)
                .chain(ancestors.iter().copied())
                .find_map(|s| s.attrs.string(attr).or_else(|| s.resource.string(attr)))
        {
            draft.feature = Some(value);
        }
        fill!(draft.feature, ancestors.iter().find_map(|a| normalize::feature_hint(&a.view())));
        if draft.feature.is_none()
            && let Some(root) = ancestors.last().filter(|r| r.ids.parent_span_id.is_empty())
        {
            draft.feature = Some(root.name.clone());
        }
        fill!(draft.feature, (!span.ids.service_name.is_empty()).then(|| span.ids.service_name.clone()));
    }

    fn call_row(
        &self,
        project: &str,
        ids: &SpanIds,
        draft: &Draft,
        is_error: bool,
        now: OffsetDateTime,
        contents: &mut Vec<ContentRow>,
    ) -> LlmCallRow {
        let mut row = normalize::to_row(project, ids, draft, is_error, now);
        if row.cost_usd.is_none() {
            let usage = Usage {
                input: row.input_tokens,
                output: row.output_tokens,
                cache_read: row.cache_read_tokens,
                cache_write: row.cache_write_tokens,
                reasoning: row.reasoning_tokens,
            };
            if let Some(cost) = self.prices.cost(&row.provider, &row.response_model, usage) {
                row.cost_usd = Some(cost);
                row.cost_source = format!("price_table:{}", self.prices.version);
            }
        }
        let mut content = |kind: &str, hash: &str, text: String| {
            if !hash.is_empty() {
                contents.push(ContentRow {
                    project_id: project.to_string(),
                    hash: hash.to_string(),
                    kind: kind.to_string(),
                    content: text,
                    last_seen: now,
                });
            }
        };
        content("system_instructions", &row.system_instructions_hash, draft.system.clone().unwrap_or_default());
        content("tool_definitions", &row.tool_definitions_hash, draft.tool_definitions.as_ref().map(Value::to_string).unwrap_or_default());
        row
    }
}

/// One model call recorded twice: two instrumentations active at once (OpenInference's and
/// OTel's `openai-v2`, a framework's and its provider client's) each make a span for the same
/// request, the outer one the parent of the inner. A model-call span whose one model-call child
/// is in the request is that child's wrapper: its fields fill the child's gaps and it gets no
/// row of its own (its span stays in `spans`), so tokens and cost count once and no false
/// regeneration is derived from the repeat.
///
/// Returns wrapper index → child index, and the parents (trace, span) of every call of the
/// request (a span with several model-call children is an aggregate, not a wrapper).
fn wrappers<'a>(calls: &'a [(&'a DecodedSpan, Draft)]) -> (HashMap<usize, usize>, HashSet<(&'a str, &'a str)>) {
    let index: HashMap<(&str, &str), usize> =
        calls.iter().enumerate().map(|(i, (s, _))| ((s.ids.trace_id.as_str(), s.ids.span_id.as_str()), i)).collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut parents = HashSet::new();
    for (i, (span, _)) in calls.iter().enumerate() {
        let parent = (span.ids.trace_id.as_str(), span.ids.parent_span_id.as_str());
        parents.insert(parent);
        // A span that names itself as its parent is nobody's wrapper (nor its own).
        if let Some(&p) = index.get(&parent).filter(|&&p| p != i) {
            children.entry(p).or_default().push(i);
        }
    }
    let wrapped: HashMap<usize, usize> = children.into_iter().filter(|(_, c)| c.len() == 1).map(|(p, c)| (p, c[0])).collect();
    // Spans whose parents form a cycle (A under B under A) wrap nothing: followed from any of
    // them, the chain comes back, and absorbing along it would leave no row at all.
    let in_cycle = |start: usize| {
        let mut at = start;
        for _ in 0..wrapped.len() {
            match wrapped.get(&at) {
                Some(&next) if next == start => return true,
                Some(&next) => at = next,
                None => return false,
            }
        }
        false
    };
    let acyclic = wrapped.iter().filter(|(p, _)| !in_cycle(**p)).map(|(p, c)| (*p, *c)).collect();
    (acyclic, parents)
}

/// The identity of one call of a request, for the signals sent beside it.
struct CallContext {
    trace_id: String,
    span_id: String,
    start: OffsetDateTime,
    session_id: String,
    user_id: String,
    feature: String,
}

impl CallContext {
    fn of(c: &LlmCallRow) -> CallContext {
        CallContext {
            trace_id: c.trace_id.clone(),
            span_id: c.span_id.clone(),
            start: c.start_time,
            session_id: c.session_id.clone(),
            user_id: c.user_id.clone(),
            feature: c.feature.clone(),
        }
    }

    /// Fills what the signal left empty from the call it judges: the call of its span, else
    /// the trace's last call started before it (the link's own rule), else the trace's last.
    fn fill(contexts: &[CallContext], sig: &mut wire::Signal) {
        let in_trace = |c: &&CallContext| c.trace_id == sig.trace_id;
        let call = contexts
            .iter()
            .filter(in_trace)
            .find(|c| c.span_id == sig.span_id)
            .or_else(|| contexts.iter().filter(in_trace).filter(|c| sig.timestamp.is_none_or(|t| c.start <= t)).max_by_key(|c| c.start))
            .or_else(|| contexts.iter().filter(in_trace).max_by_key(|c| c.start));
        let Some(c) = call else { return };
        for (field, value) in [(&mut sig.session_id, &c.session_id), (&mut sig.user_id, &c.user_id), (&mut sig.feature, &c.feature)] {
            if field.is_empty() {
                field.clone_from(value);
            }
        }
    }
}

fn ids_or_empty(bytes: &[u8], len: usize) -> Option<String> {
    if bytes.is_empty() { Some(String::new()) } else { hex_id(bytes, len) }
}

/// Counts refused items in `/metrics` by cause.
fn count_rejected(metrics: &Metrics, signal: &str, rejected: &[Rejected]) {
    let mut by_cause: BTreeMap<&str, u64> = BTreeMap::new();
    for r in rejected {
        *by_cause.entry(r.cause).or_default() += 1;
    }
    for (cause, n) in by_cause {
        metrics.reject(signal, cause, n);
    }
}

fn outcome(accepted: u64, rejected: &[Rejected], what: &str) -> Outcome {
    let message = match rejected.first() {
        None => String::new(),
        Some(first) => format!("{} {what} rejected; first: `{}`: {}", rejected.len(), first.span_name, first.reason),
    };
    Outcome { accepted, rejected: rejected.len() as u64, message }
}
