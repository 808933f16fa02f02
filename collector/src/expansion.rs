//! How large a request becomes once stored, known before any row is built.
//!
//! A span row carries its resource and scope attributes (the `spans` table keeps them per
//! row, and so does the write-ahead log record): a request of 1,000 spans under one 300 KB
//! resource attribute is 350 KB on the wire and 300 MB of rows. Building such rows first would
//! let one request take the collector's memory; acknowledging them would put a record in the
//! log that it cannot hold. So the expansion is estimated from the decoded request — shared
//! attributes times the rows that copy them, plus each item's own size — and a request over
//! the bound is refused with 413 before anything else happens.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

/// Default bound on the estimated bytes of one request's rows.
pub const DEFAULT_MAX_ROWS_BYTES: u64 = 64 << 20;

/// Each span's own content goes into its `spans` row and, for a model call, its `llm_calls`
/// row (messages, tool calls): counted twice.
const OWN_COPIES: u64 = 2;

/// Estimated bytes of the rows of a trace request.
pub fn traces(request: &ExportTraceServiceRequest) -> u64 {
    let mut total = 0u64;
    for rs in &request.resource_spans {
        let resource = rs.resource.as_ref().map(|r| r.encoded_len() as u64).unwrap_or(0);
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| s.encoded_len() as u64).unwrap_or(0);
            let spans = ss.spans.len() as u64;
            let own: u64 = ss.spans.iter().map(|s| s.encoded_len() as u64).sum();
            total = total.saturating_add(spans.saturating_mul(resource + scope)).saturating_add(own.saturating_mul(OWN_COPIES));
        }
    }
    total
}

/// Estimated bytes of the rows of a logs request.
pub fn logs(request: &ExportLogsServiceRequest) -> u64 {
    let mut total = 0u64;
    for rl in &request.resource_logs {
        let resource = rl.resource.as_ref().map(|r| r.encoded_len() as u64).unwrap_or(0);
        for sl in &rl.scope_logs {
            let records = sl.log_records.len() as u64;
            let own: u64 = sl.log_records.iter().map(|r| r.encoded_len() as u64).sum();
            total = total.saturating_add(records.saturating_mul(resource)).saturating_add(own.saturating_mul(OWN_COPIES));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    #[test]
    fn shared_attributes_count_once_per_span_that_copies_them() {
        let big = KeyValue {
            key: "k8s.manifest".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue("x".repeat(300_000))) }),
            ..Default::default()
        };
        let spans = (0..1000u64)
            .map(|i| Span { trace_id: vec![1; 16], span_id: i.to_be_bytes().to_vec(), name: "s".into(), ..Default::default() })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![big], ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        };
        let wire = request.encoded_len() as u64;
        let estimate = traces(&request);
        assert!(wire < 400_000, "{wire}");
        assert!(estimate > 300_000_000, "1000 copies of 300 KB: {estimate}");
        assert!(estimate > DEFAULT_MAX_ROWS_BYTES);
    }
}
