//! The plan rendered as OpenTelemetry spans through the Rust SDK and exported with the OTLP
//! HTTP/protobuf exporter, as a real application would send them.
//!
//! Two things differ from an SDK's everyday use, both to keep runs reproducible and complete:
//! ids come from the plan through a custom [`IdGenerator`] (so the truth file can name them
//! before anything is sent), and ended spans are collected by a [`SpanProcessor`] that hands
//! them over in whole traces, so that a trace is never split across two requests (the
//! collector inherits a call's feature and identity from ancestors in the same request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, StringValue, Value as OtelValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{IdGenerator, SdkTracer, SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor};
use serde_json::{Value, json};

use crate::catalog::{Feature, Instrumentation};
use crate::compose::{self, Rng};
use crate::error::SimulateError;
use crate::message::{Msg, Part, arguments_string, value_string};
use crate::plan::{ErrorInfo, Interaction, LlmCall, SpanId, Step, ToolRun, TraceId};

/// Hands out the ids the plan chose; falls back to a seeded generator for any span the plan
/// did not name, so that even then a run stays reproducible.
#[derive(Debug)]
struct PlannedIds {
    next: Mutex<(Option<TraceId>, Option<SpanId>)>,
    fallback: Mutex<Rng>,
}

impl PlannedIds {
    fn set(&self, trace: Option<TraceId>, span: SpanId) {
        *self.next.lock().expect("id lock") = (trace, Some(span));
    }

    fn random(&self, len: usize) -> Vec<u8> {
        let mut rng = self.fallback.lock().expect("id lock");
        loop {
            let bytes: Vec<u8> = (0..len).map(|_| compose::between(&mut rng, 0, 255) as u8).collect();
            if bytes.iter().any(|b| *b != 0) {
                return bytes;
            }
        }
    }
}

impl IdGenerator for PlannedIds {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        let planned = self.next.lock().expect("id lock").0.take();
        let bytes = planned.unwrap_or_else(|| self.random(16).try_into().expect("16 bytes"));
        opentelemetry::trace::TraceId::from_bytes(bytes)
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        let planned = self.next.lock().expect("id lock").1.take();
        let bytes = planned.unwrap_or_else(|| self.random(8).try_into().expect("8 bytes"));
        opentelemetry::trace::SpanId::from_bytes(bytes)
    }
}

/// Collects ended spans until the emitter takes them, whole traces at a time.
#[derive(Debug, Default)]
struct Collected {
    spans: Arc<Mutex<Vec<SpanData>>>,
}

impl SpanProcessor for Collected {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.spans.lock().expect("span buffer lock").push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

const SERVICE: &str = "northwind-assistants";

fn resource(release: &str) -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", SERVICE),
            KeyValue::new("service.version", release.to_string()),
            KeyValue::new("deployment.environment.name", "production"),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        ])
        .build()
}

/// Renders interactions as spans with the OTel SDK.
pub struct Emitter {
    provider: SdkTracerProvider,
    support: SdkTracer,
    coding: SdkTracer,
    ids: Arc<PlannedIds>,
    spans: Arc<Mutex<Vec<SpanData>>>,
}

impl Emitter {
    pub fn new(seed: u64) -> Emitter {
        let ids = Arc::new(PlannedIds { next: Mutex::new((None, None)), fallback: Mutex::new(compose::rng(seed ^ 0x05ee_d1d5)) });
        let collected = Collected::default();
        let spans = collected.spans.clone();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource(crate::options::DEFAULT_RELEASE))
            .with_id_generator(SharedIds(ids.clone()))
            // Long multi-turn conversations flatten into many OpenInference attributes.
            .with_max_attributes_per_span(1024)
            .with_span_processor(collected)
            .build();
        // The support team instruments by hand with the GenAI conventions; the coding team
        // uses the OpenInference OpenAI instrumentation.
        let support = provider.tracer_with_scope(InstrumentationScope::builder("northwind.support").with_version("2.14.0").build());
        let coding = provider
            .tracer_with_scope(InstrumentationScope::builder("openinference.instrumentation.openai").with_version("0.1.30").build());
        Emitter { provider, support, coding, ids, spans }
    }

    /// The spans ended since the last call: whole traces, as `emit` ends every span it starts.
    pub fn take(&self) -> Vec<SpanData> {
        std::mem::take(&mut *self.spans.lock().expect("span buffer lock"))
    }

    pub fn emit(&self, ix: &Interaction) {
        let instrumentation = ix.feature.instrumentation();
        let tracer = match instrumentation {
            Instrumentation::GenAi => &self.support,
            Instrumentation::OpenInference => &self.coding,
        };
        self.ids.set(Some(ix.trace_id), ix.root_span_id);
        let root_attrs = match instrumentation {
            Instrumentation::GenAi => vec![
                KeyValue::new("user.id", ix.user_id.clone()),
                KeyValue::new("gen_ai.conversation.id", ix.session_id.clone()),
                KeyValue::new("http.route", route(ix.feature)),
            ],
            Instrumentation::OpenInference => vec![
                KeyValue::new("openinference.span.kind", "CHAIN"),
                KeyValue::new("user.id", ix.user_id.clone()),
                KeyValue::new("session.id", ix.session_id.clone()),
                KeyValue::new("input.value", ix.request.clone()),
                KeyValue::new("input.mime_type", "text/plain"),
                KeyValue::new("output.value", ix.answer.clone()),
                KeyValue::new("output.mime_type", "text/plain"),
            ],
        };
        let root = tracer
            .span_builder(ix.feature.id())
            .with_kind(SpanKind::Server)
            .with_start_time(SystemTime::from(ix.start))
            .with_attributes(root_attrs)
            .start_with_context(tracer, &Context::new());
        let root_cx = Context::new().with_span(root);
        let parent_cx = match ix.agent_span_id {
            Some(agent_id) => {
                self.ids.set(None, agent_id);
                let agent = tracer
                    .span_builder(format!("invoke_agent {}", ix.feature.id()))
                    .with_kind(SpanKind::Internal)
                    .with_start_time(SystemTime::from(ix.start + Duration::from_millis(1)))
                    .with_attributes([
                        KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                        KeyValue::new("gen_ai.agent.name", ix.feature.id()),
                        KeyValue::new("gen_ai.conversation.id", ix.session_id.clone()),
                    ])
                    .start_with_context(tracer, &root_cx);
                root_cx.with_span(agent)
            }
            None => root_cx.clone(),
        };
        let mut first_error: Option<&ErrorInfo> = None;
        for step in &ix.steps {
            match step {
                Step::Call(call) => {
                    self.ids.set(None, call.span_id);
                    first_error = first_error.or(call.error.as_ref());
                    match instrumentation {
                        Instrumentation::GenAi => self.genai_call(tracer, &parent_cx, ix, call),
                        Instrumentation::OpenInference => self.openinference_call(tracer, &parent_cx, ix, call),
                    }
                }
                Step::Tool(run) => {
                    self.ids.set(None, run.span_id);
                    match instrumentation {
                        Instrumentation::GenAi => genai_tool(tracer, &parent_cx, run),
                        Instrumentation::OpenInference => openinference_tool(tracer, &parent_cx, ix.feature, run),
                    }
                }
            }
        }
        // The error of a failed call propagates: the app's request fails too.
        let close = |cx: &Context, end: SystemTime| {
            let span = cx.span();
            if let Some(e) = first_error {
                span.set_status(Status::error(format!("{}: {}", e.error_type, e.message)));
            }
            span.end_with_timestamp(end);
        };
        if ix.agent_span_id.is_some() {
            close(&parent_cx, SystemTime::from(ix.end - Duration::from_millis(1)));
        }
        close(&root_cx, SystemTime::from(ix.end));
    }

    fn genai_call(&self, tracer: &SdkTracer, parent: &Context, ix: &Interaction, call: &LlmCall) {
        let model = call.model;
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", model.provider),
            KeyValue::new("gen_ai.request.model", model.name),
            KeyValue::new("gen_ai.request.max_tokens", call.max_tokens as i64),
            KeyValue::new("gen_ai.request.temperature", call.temperature),
            KeyValue::new("gen_ai.conversation.id", ix.session_id.clone()),
            KeyValue::new("user.id", ix.user_id.clone()),
            KeyValue::new("server.address", if model.provider == "anthropic" { "api.anthropic.com" } else { "api.openai.com" }),
            KeyValue::new("gen_ai.system_instructions", json!([{"type": "text", "content": call.system}]).to_string()),
            KeyValue::new("gen_ai.tool.definitions", Value::Array(ix.feature.tool_definitions()).to_string()),
            KeyValue::new("gen_ai.input.messages", Value::Array(call.input.iter().map(|m| m.to_genai(None)).collect()).to_string()),
        ];
        if let Some(output_type) = call.output_type {
            // JSON mode: the GenAI conventions name the requested output type on the call.
            attrs.push(KeyValue::new("gen_ai.output.type", output_type));
        }
        if let Some(output) = &call.output {
            let finish = call.finish_reason.unwrap_or("stop");
            attrs.extend([
                KeyValue::new("gen_ai.response.model", model.snapshot),
                KeyValue::new("gen_ai.output.messages", json!([output.to_genai(Some(finish))]).to_string()),
                KeyValue::new("gen_ai.response.finish_reasons", strings(&[finish])),
                KeyValue::new("gen_ai.usage.input_tokens", call.input_tokens as i64),
                KeyValue::new("gen_ai.usage.output_tokens", call.output_tokens as i64),
            ]);
        }
        if let Some(id) = &call.response_id {
            attrs.push(KeyValue::new("gen_ai.response.id", id.clone()));
        }
        if let Some(e) = &call.error {
            attrs.push(KeyValue::new("error.type", e.error_type.clone()));
        }
        let mut span = tracer
            .span_builder(format!("chat {}", model.name))
            .with_kind(SpanKind::Client)
            .with_start_time(SystemTime::from(call.start))
            .with_attributes(attrs)
            .start_with_context(tracer, parent);
        if let Some(e) = &call.error {
            record_error(&mut span, e, call.end, e.message.clone());
        }
        span.end_with_timestamp(SystemTime::from(call.end));
    }

    fn openinference_call(&self, tracer: &SdkTracer, parent: &Context, ix: &Interaction, call: &LlmCall) {
        let model = call.model;
        let mut messages = vec![Msg::text("system", call.system)];
        messages.extend(call.input.iter().cloned());
        let tools = ix.feature.tool_definitions();
        let mut parameters = json!({"model": model.name, "temperature": call.temperature, "max_tokens": call.max_tokens});
        let mut request = json!({"model": model.name, "messages": messages.iter().map(Msg::to_openai).collect::<Vec<_>>(), "temperature": call.temperature, "max_tokens": call.max_tokens, "tools": tools});
        if call.output_type == Some("json") {
            // JSON mode as the OpenAI API asks for it, recorded in the invocation parameters.
            parameters["response_format"] = json!({"type": "json_object"});
            request["response_format"] = json!({"type": "json_object"});
        }
        let mut attrs = vec![
            KeyValue::new("openinference.span.kind", "LLM"),
            KeyValue::new("llm.system", "openai"),
            KeyValue::new("llm.provider", model.provider),
            KeyValue::new("llm.model_name", if call.output.is_some() { model.snapshot } else { model.name }),
            KeyValue::new("llm.invocation_parameters", parameters.to_string()),
            KeyValue::new("session.id", ix.session_id.clone()),
            KeyValue::new("user.id", ix.user_id.clone()),
            KeyValue::new("input.value", request.to_string()),
            KeyValue::new("input.mime_type", "application/json"),
        ];
        for (i, m) in messages.iter().enumerate() {
            flatten_message(&mut attrs, &format!("llm.input_messages.{i}"), m);
        }
        for (i, tool) in tools.iter().enumerate() {
            attrs.push(KeyValue::new(format!("llm.tools.{i}.tool.json_schema"), tool.to_string()));
        }
        if let Some(output) = &call.output {
            flatten_message(&mut attrs, "llm.output_messages.0", output);
            let finish = call.finish_reason.unwrap_or("stop");
            let response = json!({
                "id": call.response_id,
                "object": "chat.completion",
                "model": model.snapshot,
                "choices": [{"index": 0, "message": output.to_openai(), "finish_reason": finish}],
                "usage": {"prompt_tokens": call.input_tokens, "completion_tokens": call.output_tokens, "total_tokens": call.input_tokens + call.output_tokens},
            });
            attrs.extend([
                KeyValue::new("output.value", response.to_string()),
                KeyValue::new("output.mime_type", "application/json"),
                KeyValue::new("llm.token_count.prompt", call.input_tokens as i64),
                KeyValue::new("llm.token_count.completion", call.output_tokens as i64),
                KeyValue::new("llm.token_count.total", (call.input_tokens + call.output_tokens) as i64),
            ]);
        }
        let mut span = tracer
            .span_builder("ChatCompletion")
            .with_kind(SpanKind::Internal)
            .with_start_time(SystemTime::from(call.start))
            .with_attributes(attrs)
            .start_with_context(tracer, parent);
        if let Some(e) = &call.error {
            // OpenInference puts the exception's short type first in the status message.
            record_error(&mut span, e, call.end, format!("{}: {}", e.error_type, e.message));
        }
        span.end_with_timestamp(SystemTime::from(call.end));
    }
}

/// The HTTP route of a feature's endpoint, on its root span.
fn route(feature: Feature) -> &'static str {
    match feature {
        Feature::Catalogue(app) => app.route(),
        _ => "/api/support/chat",
    }
}

/// `SdkTracerProvider` takes the generator by value; the emitter keeps a handle to set ids.
#[derive(Debug)]
struct SharedIds(Arc<PlannedIds>);

impl IdGenerator for SharedIds {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        self.0.new_trace_id()
    }
    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        self.0.new_span_id()
    }
}

fn strings(items: &[&str]) -> OtelValue {
    OtelValue::Array(Array::String(items.iter().map(|s| StringValue::from(s.to_string())).collect()))
}

fn record_error(span: &mut opentelemetry_sdk::trace::Span, e: &ErrorInfo, at: time::OffsetDateTime, status: String) {
    span.add_event_with_timestamp(
        "exception",
        SystemTime::from(at),
        vec![KeyValue::new("exception.type", e.exception_type.clone()), KeyValue::new("exception.message", e.message.clone())],
    );
    span.set_status(Status::error(status));
}

/// `llm.{input,output}_messages.N.message.*`, as OpenInference flattens them.
fn flatten_message(attrs: &mut Vec<KeyValue>, prefix: &str, m: &Msg) {
    attrs.push(KeyValue::new(format!("{prefix}.message.role"), m.role));
    let text = m.text_content();
    if !text.is_empty() {
        attrs.push(KeyValue::new(format!("{prefix}.message.content"), text));
    }
    let mut k = 0;
    for part in &m.parts {
        match part {
            Part::Text(_) => {}
            Part::ToolCall { id, name, arguments } => {
                let p = format!("{prefix}.message.tool_calls.{k}.tool_call");
                attrs.push(KeyValue::new(format!("{p}.id"), id.clone()));
                attrs.push(KeyValue::new(format!("{p}.function.name"), *name));
                attrs.push(KeyValue::new(format!("{p}.function.arguments"), arguments_string(arguments)));
                k += 1;
            }
            Part::ToolResult { id, response } => {
                attrs.push(KeyValue::new(format!("{prefix}.message.tool_call_id"), id.clone()));
                attrs.push(KeyValue::new(format!("{prefix}.message.content"), value_string(response)));
            }
        }
    }
}

fn genai_tool(tracer: &SdkTracer, parent: &Context, run: &ToolRun) {
    let mut attrs = vec![
        KeyValue::new("gen_ai.operation.name", "execute_tool"),
        KeyValue::new("gen_ai.tool.name", run.name),
        KeyValue::new("gen_ai.tool.type", "function"),
        KeyValue::new("gen_ai.tool.call.id", run.call_id.clone()),
        KeyValue::new("gen_ai.tool.call.arguments", arguments_string(&run.arguments)),
    ];
    match &run.result {
        Ok(v) => attrs.push(KeyValue::new("gen_ai.tool.call.result", v.to_string())),
        Err(e) => attrs.push(KeyValue::new("error.type", e.error_type.clone())),
    }
    let mut span = tracer
        .span_builder(format!("execute_tool {}", run.name))
        .with_kind(SpanKind::Internal)
        .with_start_time(SystemTime::from(run.start))
        .with_attributes(attrs)
        .start_with_context(tracer, parent);
    if let Err(e) = &run.result {
        record_error(&mut span, e, run.end, e.message.clone());
    }
    span.end_with_timestamp(SystemTime::from(run.end));
}

fn openinference_tool(tracer: &SdkTracer, parent: &Context, feature: Feature, run: &ToolRun) {
    let schema = feature.tool_definitions().into_iter().find(|t| t["function"]["name"] == run.name);
    let mut attrs = vec![
        KeyValue::new("openinference.span.kind", "TOOL"),
        KeyValue::new("tool.name", run.name),
        KeyValue::new("tool.parameters", schema.map(|s| s["function"]["parameters"].to_string()).unwrap_or_default()),
        KeyValue::new("input.value", arguments_string(&run.arguments)),
        KeyValue::new("input.mime_type", "application/json"),
    ];
    if let Ok(v) = &run.result {
        attrs.push(KeyValue::new("output.value", v.to_string()));
        attrs.push(KeyValue::new("output.mime_type", "application/json"));
    }
    let mut span = tracer
        .span_builder(run.name)
        .with_kind(SpanKind::Internal)
        .with_start_time(SystemTime::from(run.start))
        .with_attributes(attrs)
        .start_with_context(tracer, parent);
    if let Err(e) = &run.result {
        record_error(&mut span, e, run.end, format!("{}: {}", e.error_type, e.message));
    }
    span.end_with_timestamp(SystemTime::from(run.end));
}

impl Drop for Emitter {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// One OTLP exporter per concurrent request: the SDK never exports concurrently on one.
pub struct Exporters {
    exporters: Vec<opentelemetry_otlp::SpanExporter>,
    endpoint: String,
    /// The exporters' HTTP client, to find out why the collector cannot be reached (the
    /// exporter's own error says only "network error").
    client: reqwest_otlp::Client,
}

impl Exporters {
    pub fn new(endpoint: &str, key: Option<&str>, count: usize, release: &str) -> Result<Exporters, SimulateError> {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        // https:// collectors: the system's roots plus the CA file of the OTLP convention.
        let setup = |reason: String| SimulateError::ExporterSetup { endpoint: url.clone(), reason };
        let tls =
            flywheel_schemas::tls::client_config(flywheel_schemas::tls::otlp_ca_file().as_deref()).map_err(|e| setup(e.to_string()))?;
        let client = reqwest_otlp::Client::builder().tls_backend_preconfigured(tls).build().map_err(|e| setup(e.to_string()))?;
        let mut exporters = Vec::new();
        for _ in 0..count.max(1) {
            let mut headers = HashMap::new();
            if let Some(key) = key {
                headers.insert("authorization".to_string(), format!("Bearer {key}"));
            }
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url.clone())
                .with_timeout(Duration::from_secs(30))
                .with_headers(headers)
                .with_http_client(client.clone())
                .build()
                .map_err(|e| SimulateError::ExporterSetup { endpoint: url.clone(), reason: e.to_string() })?;
            exporter.set_resource(&resource(release));
            exporters.push(exporter);
        }
        Ok(Exporters { exporters, endpoint: url, client })
    }

    pub fn len(&self) -> usize {
        self.exporters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exporters.is_empty()
    }

    /// Why the collector cannot be reached: one request with the exporters' client, whose
    /// error chain names the cause (refused connection, unknown certificate authority, …).
    async fn unreachable(&self, reason: String) -> SimulateError {
        let Err(e) = self.client.post(&self.endpoint).send().await else {
            return SimulateError::Unreachable { endpoint: self.endpoint.clone(), reason };
        };
        let mut causes = Vec::new();
        let mut cause: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = cause {
            let text = c.to_string();
            if !causes.iter().any(|seen: &String| seen.contains(&text)) {
                causes.push(text);
            }
            cause = c.source();
        }
        let reason = causes.last().cloned().unwrap_or(reason);
        let tls = ["certificate", "UnknownIssuer", "tls", "TLS", "handshake"];
        if tls.iter().any(|t| reason.contains(t)) {
            SimulateError::Tls { endpoint: self.endpoint.clone(), reason }
        } else {
            SimulateError::Unreachable { endpoint: self.endpoint.clone(), reason }
        }
    }

    /// Exports one batch with exporter `slot`. The exporter already retries 429/503 with
    /// backoff; a collector under sustained pressure gets a few more, longer chances here.
    pub async fn export(&self, slot: usize, spans: Vec<SpanData>) -> Result<(), SimulateError> {
        let exporter = &self.exporters[slot];
        let mut wait = Duration::from_millis(500);
        for attempt in 0.. {
            match exporter.export(spans.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let reason = e.to_string();
                    let pressure = reason.contains("429") || reason.contains("503");
                    if reason.contains("network error") {
                        return Err(self.unreachable(reason).await);
                    }
                    if !pressure || attempt >= 8 {
                        return Err(SimulateError::Export { endpoint: self.endpoint.clone(), reason });
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
            }
        }
        unreachable!("the loop returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{SimulateOptions, Volume, parse_base_time};
    use crate::plan::{hex_id, plan};

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
    }

    #[test]
    fn spans_carry_the_planned_ids_times_and_conventions() {
        let opts = SimulateOptions { seed: 2, volume: Volume::Interactions(150), failure_rate: 0.4, ..Default::default() };
        let p = plan(&opts, parse_base_time("2025-06-02T12:00:00Z").unwrap());
        let emitter = Emitter::new(opts.seed);
        for ix in &p.interactions {
            emitter.emit(ix);
            let spans = emitter.take();
            let trace = hex_id(&ix.trace_id);
            assert!(spans.iter().all(|s| s.span_context.trace_id().to_string() == trace), "one trace per interaction");
            let root = spans.iter().find(|s| s.parent_span_id == opentelemetry::trace::SpanId::INVALID).expect("a root span");
            assert_eq!(root.name, ix.feature.id());
            assert_eq!(root.span_context.span_id().to_string(), hex_id(&ix.root_span_id));
            assert_eq!(root.start_time, SystemTime::from(ix.start));
            assert_eq!(spans.len(), ix.steps.len() + 1 + usize::from(ix.agent_span_id.is_some()));
            for call in ix.calls() {
                let span = spans.iter().find(|s| s.span_context.span_id().to_string() == hex_id(&call.span_id)).expect("the call's span");
                assert_eq!(span.end_time, SystemTime::from(call.end));
                match ix.feature {
                    Feature::SupportAssistant => {
                        assert_eq!(
                            attr(span, "gen_ai.provider.name").map(|v| v.as_str().to_string()).as_deref(),
                            Some(call.model.provider)
                        );
                        let input: Value = serde_json::from_str(&attr(span, "gen_ai.input.messages").unwrap().as_str()).unwrap();
                        assert_eq!(input.as_array().unwrap().len(), call.input.len());
                    }
                    Feature::CodingAssistant => {
                        assert_eq!(attr(span, "openinference.span.kind").unwrap().as_str(), "LLM");
                        assert_eq!(attr(span, "llm.input_messages.0.message.role").unwrap().as_str(), "system");
                    }
                    Feature::Catalogue(_) => unreachable!("a default-scenario plan"),
                }
                if call.error.is_some() {
                    assert!(matches!(span.status, Status::Error { .. }));
                    assert!(span.events.iter().any(|e| e.name == "exception"));
                }
            }
        }
    }
}
