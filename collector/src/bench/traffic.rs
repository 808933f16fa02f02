//! Mixed GenAI traffic for the served benchmarks, in the three shapes producers send: content on
//! the spans (OTel GenAI 1.37), content in log events exported apart (1.28–1.36: the spans carry
//! no messages, `gen_ai.*.message` and `gen_ai.choice` records do), and agents that run many
//! tools between two model calls. Spans of consecutive traces are cut into requests of a given
//! size, as a batch span processor cuts them; log records go in requests of their own.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};

use super::{kv, s};

/// Log records per logs request.
const RECORDS_PER_REQUEST: usize = 30;
/// Tool spans of an agent trace.
const TOOLS: u64 = 20;

/// Encoded requests, ready to send.
pub struct Traffic {
    pub traces: Vec<Vec<u8>>,
    pub logs: Vec<Vec<u8>>,
    pub spans: u64,
    pub records: u64,
}

fn ids(seed: u64, trace: u64, span: u64) -> (Vec<u8>, Vec<u8>) {
    let t = (seed << 32 | trace).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&t.to_be_bytes());
    trace_id[8..].copy_from_slice(&(t ^ 0x5bd1_e995).to_be_bytes());
    let span_id = (t ^ (span + 1).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)) | 1;
    (trace_id.to_vec(), span_id.to_be_bytes().to_vec())
}

fn int(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

fn kvlist(items: Vec<KeyValue>) -> any_value::Value {
    any_value::Value::KvlistValue(KeyValueList { values: items })
}

struct Builder {
    seed: u64,
    now: u64,
    spans: Vec<Span>,
    records: Vec<LogRecord>,
}

impl Builder {
    fn span(&mut self, trace: u64, i: u64, parent: Option<u64>, name: &str, attributes: Vec<KeyValue>) -> (Vec<u8>, Vec<u8>) {
        let (trace_id, span_id) = ids(self.seed, trace, i);
        let start = self.now - 60_000_000_000 + trace * 1_000_000 + i * 10_000_000;
        self.spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: span_id.clone(),
            parent_span_id: parent.map(|p| ids(self.seed, trace, p).1).unwrap_or_default(),
            name: name.into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 800_000_000,
            attributes,
            status: Some(Status { code: status::StatusCode::Unset as i32, message: String::new() }),
            ..Default::default()
        });
        (trace_id, span_id)
    }

    fn chat_attributes(&self, trace: u64, i: u64, question: &str, answer: &str, content: bool) -> Vec<KeyValue> {
        let mut attrs = vec![
            kv("gen_ai.operation.name", s("chat")),
            kv(if content { "gen_ai.provider.name" } else { "gen_ai.system" }, s("openai")),
            kv("gen_ai.request.model", s("gpt-4o-mini")),
            kv("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            kv("gen_ai.response.id", s(format!("chatcmpl-{}-{trace}-{i}", self.seed))),
            kv("gen_ai.usage.input_tokens", int(700 + (trace % 300) as i64)),
            kv("gen_ai.usage.output_tokens", int(60 + (trace % 90) as i64)),
            kv("gen_ai.conversation.id", s(format!("sess-{}", trace % 5000))),
        ];
        if content {
            attrs.push(kv(
                "gen_ai.system_instructions",
                s(r#"[{"type":"text","content":"You are the support assistant of Acme. Follow the refund policy."}]"#),
            ));
            attrs
                .push(kv("gen_ai.input.messages", s(format!(r#"[{{"role":"user","parts":[{{"type":"text","content":"{question}"}}]}}]"#))));
            attrs.push(kv(
                "gen_ai.output.messages",
                s(format!(r#"[{{"role":"assistant","parts":[{{"type":"text","content":"{answer}"}}],"finish_reason":"stop"}}]"#)),
            ));
        }
        attrs
    }

    /// An agent span and two model calls, content on the spans (1.37).
    fn on_spans(&mut self, trace: u64) {
        let question = format!("Order #{trace} arrived damaged. Can I get a refund to my card?");
        self.span(trace, 0, None, "invoke_agent support_agent", vec![kv("gen_ai.operation.name", s("invoke_agent"))]);
        for i in 1..=2 {
            let attrs = self.chat_attributes(trace, i, &question, "I have opened a refund; it takes 5 to 7 business days.", true);
            self.span(trace, i, Some(0), "chat gpt-4o-mini", attrs);
        }
    }

    /// An agent span and two model calls whose content comes as log events (1.28–1.36).
    fn in_events(&mut self, trace: u64) {
        let question = format!("Where is my parcel #{trace}? It was due on Monday.");
        self.span(trace, 0, None, "invoke_agent tracking_agent", vec![kv("gen_ai.operation.name", s("invoke_agent"))]);
        for i in 1..=2 {
            let attrs = self.chat_attributes(trace, i, &question, "", false);
            let (trace_id, span_id) = self.span(trace, i, Some(0), "chat gpt-4o-mini", attrs);
            let at = self.now - 60_000_000_000 + trace * 1_000_000 + i * 10_000_000 + 800_000_000;
            let record = |name: &str, body: any_value::Value| LogRecord {
                time_unix_nano: at,
                event_name: name.into(),
                body: Some(AnyValue { value: Some(body) }),
                trace_id: trace_id.clone(),
                span_id: span_id.clone(),
                attributes: vec![kv("gen_ai.system", s("openai"))],
                ..Default::default()
            };
            self.records.push(record("gen_ai.system.message", kvlist(vec![kv("content", s("You track parcels for Acme."))])));
            self.records.push(record("gen_ai.user.message", kvlist(vec![kv("content", s(question.clone()))])));
            self.records.push(record(
                "gen_ai.choice",
                kvlist(vec![
                    kv("index", int(0)),
                    kv("finish_reason", s("stop")),
                    kv("message", kvlist(vec![kv("content", s(format!("Parcel #{trace} is in transit and due tomorrow.")))])),
                ]),
            ));
        }
    }

    /// An agent that calls a model, runs [`TOOLS`] tools, and calls the model again.
    fn with_tools(&mut self, trace: u64) {
        let question = format!("Compare the last {TOOLS} orders of customer {trace} and flag duplicates.");
        self.span(trace, 0, None, "invoke_agent audit_agent", vec![kv("gen_ai.operation.name", s("invoke_agent"))]);
        let attrs = self.chat_attributes(trace, 1, &question, "Let me look the orders up.", true);
        self.span(trace, 1, Some(0), "chat gpt-4o-mini", attrs);
        for t in 0..TOOLS {
            self.span(
                trace,
                2 + t,
                Some(0),
                "execute_tool lookup_order",
                vec![
                    kv("gen_ai.operation.name", s("execute_tool")),
                    kv("gen_ai.tool.name", s("lookup_order")),
                    kv("gen_ai.tool.call.id", s(format!("call_{trace}_{t}"))),
                    kv("gen_ai.tool.call.arguments", s(format!(r#"{{"order_id": {}}}"#, trace * 100 + t))),
                    kv("gen_ai.tool.call.result", s(format!(r#"{{"order_id": {}, "total": 42.5, "status": "shipped"}}"#, trace * 100 + t))),
                ],
            );
        }
        let attrs = self.chat_attributes(trace, 2 + TOOLS, &question, "Orders 3 and 7 are duplicates.", true);
        self.span(trace, 2 + TOOLS, Some(0), "chat gpt-4o-mini", attrs);
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", s("support-bot")), kv("telemetry.sdk.language", s("python"))],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope { name: "opentelemetry.instrumentation.openai_v2".into(), version: "2.1b0".into(), ..Default::default() })
}

/// At least `spans` spans of mixed traffic (a third of the traces of each shape), cut into
/// requests of `per_request` spans; `seed` makes the ids of one run distinct from another's.
pub fn mixed(seed: u64, spans: u64, per_request: usize) -> Traffic {
    use prost::Message as _;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mut b = Builder { seed, now, spans: Vec::new(), records: Vec::new() };
    let mut trace = 0;
    while (b.spans.len() as u64) < spans {
        match trace % 3 {
            0 => b.on_spans(trace),
            1 => b.in_events(trace),
            _ => b.with_tools(trace),
        }
        trace += 1;
    }
    let (n_spans, n_records) = (b.spans.len() as u64, b.records.len() as u64);
    let traces = b
        .spans
        .chunks(per_request.max(1))
        .map(|chunk| {
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: resource(),
                    scope_spans: vec![ScopeSpans { scope: scope(), spans: chunk.to_vec(), schema_url: String::new() }],
                    schema_url: String::new(),
                }],
            }
            .encode_to_vec()
        })
        .collect();
    let logs = b
        .records
        .chunks(RECORDS_PER_REQUEST)
        .map(|chunk| {
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: resource(),
                    scope_logs: vec![ScopeLogs { scope: scope(), log_records: chunk.to_vec(), schema_url: String::new() }],
                    schema_url: String::new(),
                }],
            }
            .encode_to_vec()
        })
        .collect();
    Traffic { traces, logs, spans: n_spans, records: n_records }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_every_shape_cut_as_asked() {
        let t = mixed(1, 1000, 5);
        assert!(t.spans >= 1000);
        assert_eq!(t.traces.len() as u64, t.spans.div_ceil(5));
        // A third of the traces send 6 records (3 per model call).
        assert!(t.records > 0 && t.logs.len() as u64 == t.records.div_ceil(RECORDS_PER_REQUEST as u64));
    }
}
