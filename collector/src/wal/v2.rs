//! Records of format versions 1 and 2: `postcard(Batch)` with the call rows as they were
//! before `error_class` and `http_status` (version 3). Postcard is not self-describing, so the
//! old layout is kept here, field for field, and converted: a replayed call gets its class read
//! from its type and message, as the build that wrote it would have had it read at ingest.

use flywheel_schemas::rows::{Attributes, ContentRow, LlmCallRow, LogRecordRow, SignalRow, SpanRow};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::writer::Batch;

/// The batch of versions 1 and 2.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchV2 {
    pub spans: Vec<SpanRow>,
    pub calls: Vec<LlmCallRowV2>,
    pub contents: Vec<ContentRow>,
    pub logs: Vec<LogRecordRow>,
    pub signals: Vec<SignalRow>,
}

/// `LlmCallRow` of versions 1 and 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmCallRowV2 {
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
    #[serde(with = "flywheel_schemas::rows::ts::nanos")]
    pub start_time: OffsetDateTime,
    #[serde(with = "flywheel_schemas::rows::ts::nanos")]
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
    #[serde(with = "flywheel_schemas::rows::ts::nanos")]
    pub ingested_at: OffsetDateTime,
}

impl From<BatchV2> for Batch {
    fn from(b: BatchV2) -> Batch {
        Batch {
            spans: b.spans,
            calls: b.calls.into_iter().map(Into::into).collect(),
            contents: b.contents,
            logs: b.logs,
            signals: b.signals,
            encoded_spans: Vec::new(),
        }
    }
}

impl From<LlmCallRowV2> for LlmCallRow {
    fn from(r: LlmCallRowV2) -> LlmCallRow {
        let failed = r.status == "error" || !r.error_type.is_empty();
        let (error_class, http_status) = if failed {
            let (class, status) = flywheel_schemas::error_class::read(&r.error_type, &r.error_message, None);
            (class.id().to_string(), status)
        } else {
            (String::new(), 0)
        };
        LlmCallRow {
            project_id: r.project_id,
            trace_id: r.trace_id,
            span_id: r.span_id,
            parent_span_id: r.parent_span_id,
            session_id: r.session_id,
            user_id: r.user_id,
            feature: r.feature,
            service_name: r.service_name,
            operation: r.operation,
            provider: r.provider,
            request_model: r.request_model,
            response_model: r.response_model,
            response_id: r.response_id,
            start_time: r.start_time,
            end_time: r.end_time,
            duration_ns: r.duration_ns,
            time_to_first_token_ns: r.time_to_first_token_ns,
            input_messages: r.input_messages,
            output_messages: r.output_messages,
            system_instructions_hash: r.system_instructions_hash,
            tool_definitions_hash: r.tool_definitions_hash,
            input_text: r.input_text,
            output_text: r.output_text,
            tool_names: r.tool_names,
            finish_reasons: r.finish_reasons,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cache_read_tokens: r.cache_read_tokens,
            cache_write_tokens: r.cache_write_tokens,
            reasoning_tokens: r.reasoning_tokens,
            cost_usd: r.cost_usd,
            cost_source: r.cost_source,
            status: r.status,
            temperature: r.temperature,
            top_p: r.top_p,
            max_tokens: r.max_tokens,
            seed: r.seed,
            is_stream: r.is_stream,
            prompt_template_id: r.prompt_template_id,
            prompt_template_version: r.prompt_template_version,
            convention: r.convention,
            input_hash: r.input_hash,
            metadata: r.metadata,
            ingested_at: r.ingested_at,
            error_type: r.error_type,
            error_message: r.error_message,
            error_class,
            http_status,
        }
    }
}
