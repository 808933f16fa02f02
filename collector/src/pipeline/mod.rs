//! The ingestion pipeline, shared by every receiver: decoded OTLP requests in, stored rows out.
//!
//! Traces: every span → `spans` (raw, redacted); every model call → `llm_calls` (normalised,
//! identity and feature inherited from its ancestors in the request, priced), with its
//! repeated prompt content → `contents`. Logs: every record → `log_records`; GenAI content
//! events are joined to their call by (trace id, span id), in either arrival order: in memory
//! through the [`JoinCache`] when both reach this collector, in storage otherwise (`rejoin`).
//! `traces`/`logs` return once the rows are stored.
//!
//! Stages, one module each: `traces` (spans in), `logs` (log records in), `calls` (a
//! span's redaction, inherited identity and `llm_calls` row), `join` (calls and their log
//! events, in memory), `rejoin` (the same, in storage, across collectors); this module holds the pipeline, its storage step and its answer.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
use time::OffsetDateTime;

mod calls;
mod join;
mod logs;
mod rejoin;
mod traces;

pub use join::DEFAULT_MAX_BYTES as JOIN_CACHE_DEFAULT_MAX_BYTES;
pub use join::JoinCache;
pub(crate) use rejoin::reported;
pub use rejoin::{RejoinError, Reported, Reports, Stored};

use crate::metrics::Metrics;
use crate::normalize::genai::read_log_event;
use crate::normalize::span::{DecodedSpan, Rejected, decode_spans_where, nanos};
use crate::normalize::{self, Attrs, Draft, SpanIds, fill};
use crate::otlp::{attributes, flat, flat_map, hex_id, into_attributes, into_flat, into_flat_map, into_json};
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
    /// `wire`: the request's encoded size, for the log line of a refusal only (computing it
    /// walks the whole request).
    fn check_expansion(&self, project: &str, signal: &str, estimate: u64, wire: impl FnOnce() -> usize) -> Result<(), WriteError> {
        if estimate <= self.max_rows_bytes {
            return Ok(());
        }
        self.metrics.reject(signal, "too_large_rows", 1);
        tracing::warn!(
            project,
            signal,
            wire_bytes = wire(),
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
}

/// Spans or log records of one request normalised and logged at a time: a larger request goes
/// to the log in slices, each durable before the next is built, so that its rows are never all
/// in memory (a trace's spans stay in one slice, however many).
const SLICE: usize = 4096;

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
