//! The collector's own counters, served at `/metrics` in the Prometheus text format. Every
//! rejection is counted with its reason: nothing is refused silently.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Events counted deep in the collector's layers, where no [`Metrics`] is at hand (a deadline
/// passing in a ClickHouse call, a connection closed by a timeout, a JSON attribute left as
/// text, a key lookup): process-wide counters, rendered with the rest at `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A ClickHouse call passed its deadline (see `deadline`), by call.
    PingTimeout,
    LookupTimeout,
    InsertTimeout,
    JobTimeout,
    /// A connection closed because nothing arrived for the idle timeout.
    IdleTimeout,
    /// A connection closed because its request headers did not arrive in time.
    HeaderTimeout,
    /// A JSON string attribute past the node bound, kept as text.
    JsonUninterpreted,
    /// One key (or a token's key id) looked up alone in `api_keys`.
    KeyLookup,
    /// The whole key table re-read.
    KeyTableRead,
    /// A string that was not valid UTF-8, stored with U+FFFD (`otlp::repair`).
    StringRepaired,
    /// A JSON `doubleValue` sent as a string, read as its number or name.
    NumberRepaired,
    /// An attribute value nested past the decoders' depth, cut.
    DeepValueCut,
    /// An HTTP/1 request on the gRPC port, answered with where to send it.
    Http1OnGrpc,
}

/// One counter per event: the last variant's index, plus one.
const EVENTS: usize = Event::Http1OnGrpc as usize + 1;
static COUNTS: [AtomicU64; EVENTS] = [const { AtomicU64::new(0) }; EVENTS];

/// Counts one `event`.
pub fn count(event: Event) {
    COUNTS[event as usize].fetch_add(1, Relaxed);
}

/// Counts `n` `event`s.
pub fn count_n(event: Event, n: u64) {
    COUNTS[event as usize].fetch_add(n, Relaxed);
}

/// How many `event`s this process counted.
pub fn counted(event: Event) -> u64 {
    COUNTS[event as usize].load(Relaxed)
}

fn render_events(out: &mut String) {
    use Event::*;
    let family = |out: &mut String, name: &str, help: &str, label: &str, values: &[(&str, Event)]| {
        let _ = writeln!(out, "# HELP flywheel_{name} {help}\n# TYPE flywheel_{name} counter");
        for (value, event) in values {
            let _ = writeln!(out, "flywheel_{name}{{{label}=\"{value}\"}} {}", counted(*event));
        }
    };
    family(
        out,
        "clickhouse_timeouts_total",
        "ClickHouse calls that passed their deadline (treated as ClickHouse away), by call.",
        "call",
        &[("ping", PingTimeout), ("lookup", LookupTimeout), ("insert", InsertTimeout), ("job", JobTimeout)],
    );
    family(
        out,
        "connections_timed_out_total",
        "Connections closed by a timeout: nothing received for idle_timeout_secs, or headers not complete within header_timeout_secs.",
        "reason",
        &[("idle", IdleTimeout), ("headers", HeaderTimeout)],
    );
    family(
        out,
        "json_attributes_uninterpreted_total",
        "JSON string attributes past the node bound, stored as the text received.",
        "bound",
        &[("nodes", JsonUninterpreted)],
    );
    family(
        out,
        "key_lookups_total",
        "Reads of api_keys: one key (or token key id) alone, or the whole table.",
        "kind",
        &[("one", KeyLookup), ("table", KeyTableRead)],
    );
    family(
        out,
        "values_repaired_total",
        "Values repaired so that the request around them is stored: strings that were not UTF-8 (stored with U+FFFD), JSON doubles sent as strings, values nested too deep (cut).",
        "what",
        &[("utf8", StringRepaired), ("number", NumberRepaired), ("deep", DeepValueCut)],
    );
    family(
        out,
        "grpc_port_http1_requests_total",
        "HTTP/1 requests on the OTLP/gRPC port (an OTLP/HTTP exporter pointed at 4317), answered 400 with the port to use.",
        "answer",
        &[("400", Http1OnGrpc)],
    );
}

#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub spans_received: AtomicU64,
    pub spans_accepted: AtomicU64,
    pub llm_calls: AtomicU64,
    pub log_records_received: AtomicU64,
    pub log_records_accepted: AtomicU64,
    pub signals_accepted: AtomicU64,
    /// Model-call spans that recorded a call another span already records (double
    /// instrumentation): merged into it, no row of their own.
    pub duplicate_calls: AtomicU64,
    /// The storage join (`pipeline::rejoin`): spans reported after an insert, dropped because
    /// its queue was full, given up after failed reads or writes; calls it completed.
    pub rejoin_reported: AtomicU64,
    pub rejoin_dropped: AtomicU64,
    pub rejoin_failed: AtomicU64,
    pub rejoined: AtomicU64,
    pub bytes_received: AtomicU64,
    pub inserts: AtomicU64,
    pub insert_errors: AtomicU64,
    pub inserted_rows: AtomicU64,
    pub insert_seconds_micros: AtomicU64,
    /// The write-ahead log's group commit: appends acknowledged, and the fsyncs (groups) that
    /// made them durable.
    pub wal_appends: AtomicU64,
    pub wal_fsyncs: AtomicU64,
    /// `(signal, reason)` → items refused (spans, log records, whole requests).
    rejected: Mutex<BTreeMap<(String, String), u64>>,
    /// OTLP metric data points received (counted, not stored), per metric.
    metric_points: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn reject(&self, signal: &str, reason: &str, count: u64) {
        let mut map = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((signal.to_string(), reason.to_string())).or_default() += count;
    }

    pub fn metric_points(&self, counted: BTreeMap<&'static str, u64>) {
        let mut map = self.metric_points.lock().unwrap_or_else(|e| e.into_inner());
        for (name, n) in counted {
            *map.entry(name).or_default() += n;
        }
    }

    pub fn record_insert(&self, rows: usize, took: Duration, ok: bool) {
        self.inserts.fetch_add(1, Relaxed);
        self.insert_seconds_micros.fetch_add(took.as_micros() as u64, Relaxed);
        if ok {
            self.inserted_rows.fetch_add(rows as u64, Relaxed);
        } else {
            self.insert_errors.fetch_add(1, Relaxed);
        }
    }

    pub fn rejected(&self, signal: &str, reason: &str) -> u64 {
        let map = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(signal.to_string(), reason.to_string())).copied().unwrap_or(0)
    }

    pub fn render(&self, wal: Option<crate::wal::WalStatus>) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP flywheel_{name} {help}\n# TYPE flywheel_{name} counter\nflywheel_{name} {value}");
        };
        if let Some(w) = wal {
            let gauge = |out: &mut String, name: &str, help: &str, value: String| {
                let _ = writeln!(out, "# HELP flywheel_{name} {help}\n# TYPE flywheel_{name} gauge\nflywheel_{name} {value}");
            };
            gauge(&mut out, "wal_bytes", "Size of the write-ahead log on disk.", w.bytes.to_string());
            gauge(&mut out, "wal_max_bytes", "Bound on the write-ahead log; at it, requests get 429.", w.max_bytes.to_string());
            gauge(&mut out, "wal_pending_records", "Acknowledged records not yet in ClickHouse.", w.pending_records.to_string());
            gauge(
                &mut out,
                "wal_oldest_pending_seconds",
                "Age of the oldest acknowledged record not yet in ClickHouse.",
                format!("{:.3}", w.oldest_pending.map(|d| d.as_secs_f64()).unwrap_or(0.0)),
            );
            counter(
                &mut out,
                "wal_appends_total",
                "Requests' rows appended to the write-ahead log (acknowledged).",
                self.wal_appends.load(Relaxed),
            );
            counter(
                &mut out,
                "wal_fsyncs_total",
                "Group commits of the write-ahead log: one write and fsync for the appends queued together.",
                self.wal_fsyncs.load(Relaxed),
            );
        }
        counter(&mut out, "requests_total", "Export requests received (all transports).", self.requests.load(Relaxed));
        counter(&mut out, "received_bytes_total", "Request body bytes received, before decompression.", self.bytes_received.load(Relaxed));
        counter(&mut out, "spans_received_total", "Spans decoded from requests.", self.spans_received.load(Relaxed));
        counter(&mut out, "spans_accepted_total", "Spans stored.", self.spans_accepted.load(Relaxed));
        counter(
            &mut out,
            "llm_calls_total",
            "LLM call rows written (including updates from late log events).",
            self.llm_calls.load(Relaxed),
        );
        counter(&mut out, "log_records_received_total", "Log records decoded from requests.", self.log_records_received.load(Relaxed));
        counter(&mut out, "log_records_accepted_total", "Log records stored.", self.log_records_accepted.load(Relaxed));
        counter(
            &mut out,
            "signals_accepted_total",
            "Signals stored (API, OTLP log records, span events).",
            self.signals_accepted.load(Relaxed),
        );
        counter(
            &mut out,
            "duplicate_calls_total",
            "Model-call spans merged into the call they recorded again (two instrumentations at once).",
            self.duplicate_calls.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP flywheel_rejoin_spans_total Stored spans checked for their other side (a call, its log events, a second recording of the call) in ClickHouse, by outcome: checked, dropped (queue full), failed (ClickHouse errors).\n# TYPE flywheel_rejoin_spans_total counter"
        );
        for (outcome, n) in [("checked", &self.rejoin_reported), ("dropped", &self.rejoin_dropped), ("failed", &self.rejoin_failed)] {
            let _ = writeln!(out, "flywheel_rejoin_spans_total{{outcome=\"{outcome}\"}} {}", n.load(Relaxed));
        }
        counter(
            &mut out,
            "rejoined_calls_total",
            "Calls completed in storage with log events another collector (or this one, after its join cache) stored.",
            self.rejoined.load(Relaxed),
        );
        counter(&mut out, "clickhouse_inserts_total", "Group-commit inserts to ClickHouse.", self.inserts.load(Relaxed));
        counter(&mut out, "clickhouse_insert_errors_total", "Failed group-commit inserts.", self.insert_errors.load(Relaxed));
        counter(&mut out, "clickhouse_inserted_rows_total", "Rows inserted into ClickHouse.", self.inserted_rows.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP flywheel_clickhouse_insert_seconds_total Time spent in ClickHouse inserts.\n# TYPE flywheel_clickhouse_insert_seconds_total counter\nflywheel_clickhouse_insert_seconds_total {:.6}",
            self.insert_seconds_micros.load(Relaxed) as f64 / 1e6
        );
        let _ =
            writeln!(out, "# HELP flywheel_rejected_total Items refused, by signal and reason.\n# TYPE flywheel_rejected_total counter");
        let map = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        for ((signal, reason), n) in map.iter() {
            let _ = writeln!(out, "flywheel_rejected_total{{signal=\"{signal}\",reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP flywheel_metric_points_received_total OTLP metric data points received (counted, not stored), by metric.\n# TYPE flywheel_metric_points_received_total counter"
        );
        let points = self.metric_points.lock().unwrap_or_else(|e| e.into_inner());
        for (name, n) in points.iter() {
            let _ = writeln!(out, "flywheel_metric_points_received_total{{metric=\"{name}\"}} {n}");
        }
        render_events(&mut out);
        out
    }
}
