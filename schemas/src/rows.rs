//! One Rust type per ClickHouse table, in column order (`schemas/sql/`). Inserts validate these
//! types against the live schema, so a drift between the two is an error at the first insert,
//! never silently wrong data.
//!
//! Conventions: ids are lowercase hex strings (trace 32, span 16 characters; empty when absent);
//! timestamps are UTC with nanosecond precision; attribute maps keep every key as received.

use std::collections::BTreeMap;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub type Attributes = BTreeMap<String, String>;

/// Serde helpers for `DateTime64(9)` columns (single, nullable and arrays).
pub mod ts {
    pub use clickhouse::serde::time::datetime64::nanos;
    pub use clickhouse::serde::time::datetime64::nanos::option;

    /// `Array(DateTime64(9))`: the crate ships no helper for arrays of timestamps.
    pub mod vec {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};
        use time::OffsetDateTime;

        pub fn serialize<S: Serializer>(v: &[OffsetDateTime], s: S) -> Result<S::Ok, S::Error> {
            let nanos: Result<Vec<i64>, _> = v
                .iter()
                .map(|t| {
                    i64::try_from(t.unix_timestamp_nanos())
                        .map_err(|_| serde::ser::Error::custom(format!("{t} is out of DateTime64(9) range")))
                })
                .collect();
            nanos?.serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OffsetDateTime>, D::Error> {
            Vec::<i64>::deserialize(d)?
                .into_iter()
                .map(|n| OffsetDateTime::from_unix_timestamp_nanos(n.into()).map_err(serde::de::Error::custom))
                .collect()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SpanRow {
    pub project_id: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub trace_state: String,
    pub name: String,
    pub kind: String,
    #[serde(with = "ts::nanos")]
    pub start_time: OffsetDateTime,
    #[serde(with = "ts::nanos")]
    pub end_time: OffsetDateTime,
    pub duration_ns: u64,
    pub status_code: String,
    pub status_message: String,
    pub service_name: String,
    pub scope_name: String,
    pub scope_version: String,
    pub resource_attributes: Attributes,
    pub scope_attributes: Attributes,
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
    #[serde(with = "ts::vec")]
    pub event_times: Vec<OffsetDateTime>,
    pub event_names: Vec<String>,
    pub event_attributes: Vec<Attributes>,
    pub dropped_events_count: u32,
    pub link_trace_ids: Vec<String>,
    pub link_span_ids: Vec<String>,
    pub link_attributes: Vec<Attributes>,
    pub dropped_links_count: u32,
    #[serde(with = "ts::nanos")]
    pub ingested_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct LlmCallRow {
    pub project_id: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    pub service_name: String,
    pub operation: String,
    pub provider: String,
    pub request_model: String,
    pub response_model: String,
    pub response_id: String,
    #[serde(with = "ts::nanos")]
    pub start_time: OffsetDateTime,
    #[serde(with = "ts::nanos")]
    pub end_time: OffsetDateTime,
    pub duration_ns: u64,
    pub time_to_first_token_ns: Option<u64>,
    pub input_messages: String,
    pub output_messages: String,
    pub system_instructions_hash: String,
    pub tool_definitions_hash: String,
    pub input_text: String,
    pub output_text: String,
    pub tool_names: Vec<String>,
    pub finish_reasons: Vec<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: Option<f64>,
    pub cost_source: String,
    pub status: String,
    pub error_type: String,
    pub error_message: String,
    /// The canonical class of the error (`error_class::ErrorClass::id`), empty when the call
    /// did not fail; `error_type` and `error_message` keep what the producer sent.
    pub error_class: String,
    /// The HTTP status of the failed request, when the producer recorded one (0 otherwise).
    pub http_status: u16,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    pub seed: Option<i64>,
    pub is_stream: bool,
    pub prompt_template_id: String,
    pub prompt_template_version: String,
    pub convention: String,
    pub input_hash: String,
    pub metadata: Attributes,
    #[serde(with = "ts::nanos")]
    pub ingested_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ContentRow {
    pub project_id: String,
    pub hash: String,
    pub kind: String,
    pub content: String,
    #[serde(with = "ts::nanos")]
    pub last_seen: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SignalRow {
    pub project_id: String,
    pub signal_id: String,
    pub idempotency_key: String,
    pub kind: String,
    pub name: String,
    pub source: String,
    #[serde(with = "ts::nanos")]
    pub timestamp: OffsetDateTime,
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub message_id: String,
    pub user_id: String,
    pub feature: String,
    pub value: Option<f64>,
    pub scale: Option<f64>,
    pub comment: String,
    pub text: String,
    pub edit_distance: Option<u64>,
    pub edit_ratio: Option<f64>,
    pub link_status: String,
    pub attributes: Attributes,
    #[serde(with = "ts::nanos")]
    pub ingested_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct FailureRow {
    pub project_id: String,
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    pub model: String,
    #[serde(with = "ts::nanos")]
    pub call_time: OffsetDateTime,
    pub reasons: Vec<String>,
    pub categories: Vec<String>,
    pub severity: f32,
    pub details: String,
    pub run_id: String,
    #[serde(with = "ts::nanos")]
    pub detected_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PatternRow {
    pub project_id: String,
    pub pattern_id: String,
    pub label: String,
    pub description: String,
    pub terms: Vec<String>,
    pub facets: Attributes,
    pub status: String,
    pub trend: String,
    pub size: u64,
    pub previous_size: u64,
    pub calls: u64,
    pub traces: u64,
    pub sessions: u64,
    pub users: u64,
    pub severity: f32,
    pub cost_usd: f64,
    pub mean_latency_ms: f64,
    pub signal_mix: BTreeMap<String, u64>,
    pub centroid: Vec<f32>,
    #[serde(with = "ts::nanos")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "ts::nanos")]
    pub last_seen: OffsetDateTime,
    /// When the pattern was last fixed: triaged `fixed`, or resolved by a run that found no
    /// member; the epoch when never.
    #[serde(with = "ts::nanos")]
    pub fixed_at: OffsetDateTime,
    /// The first failure after that fix, when the pattern came back; the epoch when it did not.
    #[serde(with = "ts::nanos")]
    pub regressed_at: OffsetDateTime,
    /// The release (`service.version`) the returning failures ran, '' when they carry none.
    pub regressed_in: String,
    pub run_id: String,
    #[serde(with = "ts::nanos")]
    pub updated_at: OffsetDateTime,
}

impl PatternRow {
    /// Came back after a fix, and the team has not decided on it since.
    pub fn is_regressed(&self) -> bool {
        self.status == "regressed"
    }

    /// When it came back, if it ever did.
    pub fn regression(&self) -> Option<OffsetDateTime> {
        (self.regressed_at > OffsetDateTime::UNIX_EPOCH).then_some(self.regressed_at)
    }

    /// When it was last fixed, if ever.
    pub fn fixed(&self) -> Option<OffsetDateTime> {
        (self.fixed_at > OffsetDateTime::UNIX_EPOCH).then_some(self.fixed_at)
    }

    /// Its lifecycle in a few words — "fixed 2026-11-20, back 2026-12-02 in 2.15.0" — empty
    /// when it was never fixed.
    pub fn lifecycle(&self) -> String {
        let Some(fixed) = self.fixed() else { return String::new() };
        match self.regression() {
            Some(back) if self.regressed_in.is_empty() => format!("fixed {}, back {}", fixed.date(), back.date()),
            Some(back) => format!("fixed {}, back {} in {}", fixed.date(), back.date(), self.regressed_in),
            None => format!("fixed {}", fixed.date()),
        }
    }
}

// For building rows in tests and callers; the epoch stands for "no time".
impl Default for PatternRow {
    fn default() -> Self {
        PatternRow {
            project_id: String::new(),
            pattern_id: String::new(),
            label: String::new(),
            description: String::new(),
            terms: vec![],
            facets: Attributes::default(),
            status: String::new(),
            trend: String::new(),
            size: 0,
            previous_size: 0,
            calls: 0,
            traces: 0,
            sessions: 0,
            users: 0,
            severity: 0.0,
            cost_usd: 0.0,
            mean_latency_ms: 0.0,
            signal_mix: BTreeMap::new(),
            centroid: vec![],
            first_seen: OffsetDateTime::UNIX_EPOCH,
            last_seen: OffsetDateTime::UNIX_EPOCH,
            fixed_at: OffsetDateTime::UNIX_EPOCH,
            regressed_at: OffsetDateTime::UNIX_EPOCH,
            regressed_in: String::new(),
            run_id: String::new(),
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PatternMemberRow {
    pub project_id: String,
    pub pattern_id: String,
    pub run_id: String,
    pub trace_id: String,
    pub span_id: String,
    #[serde(with = "ts::nanos")]
    pub call_time: OffsetDateTime,
    pub distance: f32,
    #[serde(with = "ts::nanos")]
    pub added_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EvalExportRow {
    pub project_id: String,
    pub case_hash: String,
    pub format: String,
    pub pattern_id: String,
    pub trace_id: String,
    pub span_id: String,
    pub path: String,
    #[serde(with = "ts::nanos")]
    pub exported_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ApiKeyRow {
    pub project_id: String,
    pub key_id: String,
    pub key_hash: String,
    pub name: String,
    #[serde(with = "ts::nanos")]
    pub created_at: OffsetDateTime,
    #[serde(with = "ts::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "ts::nanos")]
    pub updated_at: OffsetDateTime,
}

/// `token_keys`: the public key that verifies an API key's feedback tokens.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct TokenKeyRow {
    pub project_id: String,
    pub key_id: String,
    pub public_key: String,
    #[serde(with = "ts::nanos")]
    pub registered_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct LogRecordRow {
    pub project_id: String,
    /// The record's place in its request (8 hex digits), then a hash of what tells it apart.
    pub record_id: String,
    #[serde(with = "ts::nanos")]
    pub timestamp: OffsetDateTime,
    #[serde(with = "ts::nanos")]
    pub observed_timestamp: OffsetDateTime,
    pub trace_id: String,
    pub span_id: String,
    pub severity_number: u8,
    pub severity_text: String,
    pub event_name: String,
    pub body: String,
    pub service_name: String,
    pub scope_name: String,
    pub resource_attributes: Attributes,
    pub attributes: Attributes,
    #[serde(with = "ts::nanos")]
    pub ingested_at: OffsetDateTime,
}

/// A cached sentence embedding of one text (`text_hash` = hex SHA-256 of the text).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EmbeddingRow {
    pub project_id: String,
    pub model: String,
    pub text_hash: String,
    pub vector: Vec<f32>,
    #[serde(with = "ts::nanos")]
    pub created_at: OffsetDateTime,
}

/// A name an LLM gave a pattern (opt-in); the latest per pattern id wins.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PatternNameRow {
    pub project_id: String,
    pub pattern_id: String,
    pub name: String,
    /// The model that named it.
    pub model: String,
    /// The analyzer's own label when it was named.
    pub rule_label: String,
    #[serde(with = "ts::nanos")]
    pub named_at: OffsetDateTime,
}

/// A triage decision on a pattern; the latest row per pattern wins.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PatternTriageRow {
    pub project_id: String,
    pub pattern_id: String,
    /// One of [`TRIAGE_STATES`].
    pub status: String,
    pub note: String,
    pub updated_by: String,
    #[serde(with = "ts::nanos")]
    pub updated_at: OffsetDateTime,
}

/// Triage states of a pattern, in the order a team moves through them. `regressed` is set by
/// the analyzer when a fixed pattern comes back (a team may set it too); the team's next
/// decision replaces it.
pub const TRIAGE_STATES: &[&str] = &["new", "regressed", "acknowledged", "fixed", "wont_fix"];

/// One analyzer run.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AnalysisRunRow {
    pub project_id: String,
    pub run_id: String,
    #[serde(with = "ts::nanos")]
    pub started_at: OffsetDateTime,
    #[serde(with = "ts::nanos")]
    pub finished_at: OffsetDateTime,
    #[serde(with = "ts::nanos")]
    pub window_start: OffsetDateTime,
    #[serde(with = "ts::nanos")]
    pub window_end: OffsetDateTime,
    pub calls: u64,
    pub failures: u64,
    pub clustered: u64,
    pub patterns: u64,
    /// How failures were represented: the embedding model's name, or `lexical` (TF-IDF/LSA).
    pub representation: String,
    /// JSON: timings, rule counts, parameters.
    pub details: String,
}

/// The tables every row type above belongs to, for code that walks all of them.
pub const TABLES: &[&str] = &[
    "spans",
    "llm_calls",
    "contents",
    "signals",
    "failures",
    "patterns",
    "pattern_members",
    "eval_exports",
    "api_keys",
    "token_keys",
    "log_records",
    "embeddings",
    "pattern_triage",
    "analysis_runs",
    "alerts_sent",
];
