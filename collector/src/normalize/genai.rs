//! OpenTelemetry GenAI semantic conventions, every version met in the wild
//! (docs/conventions.md lists the keys):
//!
//! * ≥1.37: `gen_ai.provider.name`, `gen_ai.input.messages` / `output.messages` /
//!   `system_instructions` as JSON strings on spans, or structured in the
//!   `gen_ai.client.inference.operation.details` log event;
//! * 1.28–1.36: `gen_ai.system`, content in per-message log events (`gen_ai.user.message`,
//!   `gen_ai.choice`, …) joined to their span by trace and span id;
//! * ≤1.27: content in the span events `gen_ai.content.prompt` / `gen_ai.content.completion`.

use flywheel_schemas::messages::{Message, Part, parse_arguments};
use flywheel_schemas::rows::LogRecordRow;
use serde::Deserialize as _;
use serde_json::Value;

use super::{Attrs, Draft, SpanView, fill, messages_from_openai};

pub fn read(span: &SpanView<'_>, d: &mut Draft) {
    let a = span.attrs;
    let current = a.contains("gen_ai.provider.name") || a.contains("gen_ai.input.messages") || a.contains("gen_ai.output.messages");
    let legacy = a.contains("gen_ai.system") || a.contains("gen_ai.operation.name") || a.contains("gen_ai.request.model");
    if !current && !legacy {
        return;
    }
    let span_events = span.events.iter().any(|e| e.name == "gen_ai.content.prompt" || e.name == "gen_ai.content.completion");
    fill!(
        d.convention,
        Some(if current {
            "otel_genai_1.37"
        } else if span_events {
            "otel_genai_1.27"
        } else {
            "otel_genai_1.28"
        })
    );
    read_attributes(a, d);
    for e in span.events {
        match e.name.as_str() {
            "gen_ai.content.prompt" => fill!(d.input, e.attrs.json("gen_ai.prompt").map(|v| messages_from_openai(&v))),
            "gen_ai.content.completion" => fill!(d.output, e.attrs.json("gen_ai.completion").map(|v| messages_from_openai(&v))),
            _ => {}
        }
    }
}

/// The attributes shared by spans and by the 1.37 operation-details log event.
pub fn read_attributes(a: &Attrs, d: &mut Draft) {
    fill!(d.operation, a.string("gen_ai.operation.name"));
    fill!(d.provider, a.string("gen_ai.provider.name").or_else(|| a.string("gen_ai.system")));
    fill!(d.request_model, a.string("gen_ai.request.model"));
    fill!(d.response_model, a.string("gen_ai.response.model"));
    fill!(d.response_id, a.string("gen_ai.response.id"));
    fill!(d.input, a.json("gen_ai.input.messages").as_ref().and_then(messages));
    fill!(d.output, a.json("gen_ai.output.messages").as_ref().and_then(messages));
    fill!(d.system, a.json("gen_ai.system_instructions").as_ref().and_then(instructions));
    fill!(d.tool_definitions, a.json("gen_ai.tool.definitions"));
    fill!(d.finish_reasons, a.strings("gen_ai.response.finish_reasons"));
    fill!(d.input_tokens, a.u64("gen_ai.usage.input_tokens").or_else(|| a.u64("gen_ai.usage.prompt_tokens")));
    fill!(d.output_tokens, a.u64("gen_ai.usage.output_tokens").or_else(|| a.u64("gen_ai.usage.completion_tokens")));
    fill!(d.cache_read_tokens, a.u64("gen_ai.usage.cache_read.input_tokens").or_else(|| a.u64("gen_ai.usage.cache_read_input_tokens")));
    fill!(
        d.cache_write_tokens,
        a.u64("gen_ai.usage.cache_creation.input_tokens").or_else(|| a.u64("gen_ai.usage.cache_creation_input_tokens"))
    );
    fill!(d.reasoning_tokens, a.u64("gen_ai.usage.reasoning.output_tokens").or_else(|| a.u64("gen_ai.usage.reasoning_tokens")));
    fill!(d.cost_usd, a.f64("gen_ai.usage.cost"));
    fill!(d.temperature, a.f64("gen_ai.request.temperature"));
    fill!(d.top_p, a.f64("gen_ai.request.top_p"));
    fill!(d.max_tokens, a.u64("gen_ai.request.max_tokens").or_else(|| a.u64("gen_ai.request.max_completion_tokens")));
    fill!(d.seed, a.i64("gen_ai.request.seed").or_else(|| a.i64("gen_ai.openai.request.seed")));
    fill!(d.stream, a.bool("gen_ai.request.stream"));
    // Seconds, under the name of the span attribute or of the metric it feeds (pydantic-ai).
    fill!(
        d.ttft_ns,
        a.f64("gen_ai.response.time_to_first_chunk")
            .or_else(|| a.f64("gen_ai.client.operation.time_to_first_chunk"))
            .or_else(|| a.f64("gen_ai.server.time_to_first_token"))
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| (s * 1e9) as u64)
    );
    fill!(d.feature, a.string("gen_ai.agent.name").or_else(|| a.string("gen_ai.workflow.name")));
}

/// `gen_ai.input.messages` / `output.messages`: one malformed message must not lose the others.
fn messages(value: &Value) -> Option<Vec<Message>> {
    let items = value.as_array()?;
    Some(
        items
            .iter()
            .map(|item| {
                // Read from the parsed value in place (no copy of it first).
                Message::deserialize(item).map(normalise_parts).unwrap_or_else(|_| Message {
                    role: item.get("role").and_then(Value::as_str).unwrap_or("unknown").to_string(),
                    name: None,
                    parts: vec![Part::Other(item.clone())],
                    finish_reason: None,
                })
            })
            .collect(),
    )
}

/// Arguments are objects in the 1.37 schema, but some producers still send strings.
fn normalise_parts(mut m: Message) -> Message {
    for part in &mut m.parts {
        if let Part::ToolCall { arguments, .. } = part {
            *arguments = parse_arguments(arguments);
        }
    }
    m
}

/// `gen_ai.system_instructions`: a list of parts, or a plain string.
fn instructions(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p.get("content").and_then(Value::as_str)).collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

/// The log events [`read_log_event`] reads: the ones a call is completed with.
pub const LOG_EVENTS: &[&str] = &[
    "gen_ai.client.inference.operation.details",
    "gen_ai.system.message",
    "gen_ai.user.message",
    "gen_ai.assistant.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
];

/// [`read_log_event`] of a record as `log_records` holds it: attributes flattened to text
/// (read back by meaning, as [`Attrs`] reads numbers and JSON sent as strings), a structured
/// body as JSON text.
pub fn read_stored_event(row: &LogRecordRow) -> Option<LogContent> {
    let attrs = Attrs::new(row.attributes.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect());
    let trimmed = row.body.trim_start();
    let body = if row.body.is_empty() {
        Value::Null
    } else if trimmed.starts_with('{') || trimmed.starts_with('[') {
        super::attrs::parse_bounded(&row.body).unwrap_or_else(|| Value::String(row.body.clone()))
    } else {
        Value::String(row.body.clone())
    };
    read_log_event(&row.event_name, &attrs, &body)
}

/// A GenAI log event, as a partial draft to join to its span. `None` for other log records.
///
/// 1.37: `gen_ai.client.inference.operation.details` carries the attributes of the span with
/// structured messages. 1.28–1.36: one event per message; the event name is in the record's
/// `event_name`, or in the `event.name` attribute (JavaScript instrumentations).
pub fn read_log_event(event_name: &str, attrs: &Attrs, body: &Value) -> Option<LogContent> {
    match event_name {
        "gen_ai.client.inference.operation.details" => {
            let mut d = Draft { convention: Some("otel_genai_1.37"), ..Default::default() };
            read_attributes(attrs, &mut d);
            Some(LogContent::Details(Box::new(d)))
        }
        "gen_ai.system.message" | "gen_ai.user.message" | "gen_ai.assistant.message" | "gen_ai.tool.message" => {
            let role = event_name.trim_start_matches("gen_ai.").trim_end_matches(".message");
            let mut message = body.clone();
            if let Value::Object(map) = &mut message {
                map.entry("role").or_insert_with(|| Value::String(role.to_string()));
            }
            if role == "tool"
                && let Value::Object(map) = &mut message
                && let Some(id) = map.remove("id")
            {
                map.insert("tool_call_id".into(), id);
            }
            super::message_from_openai(&message).map(LogContent::Input)
        }
        "gen_ai.choice" => {
            let inner = body.get("message").cloned().unwrap_or(Value::Null);
            let mut message = super::message_from_openai(&inner).unwrap_or(Message {
                role: "assistant".into(),
                name: None,
                parts: vec![],
                finish_reason: None,
            });
            if message.role == "user" {
                message.role = "assistant".into(); // the choice body often omits the role
            }
            message.finish_reason = body.get("finish_reason").and_then(Value::as_str).map(str::to_string);
            let index = body.get("index").and_then(Value::as_u64).unwrap_or(0);
            Some(LogContent::Choice(index, message))
        }
        _ => None,
    }
}

/// What one GenAI log event contributes to its call.
#[derive(Debug, Clone, PartialEq)]
pub enum LogContent {
    Details(Box<Draft>),
    Input(Message),
    Choice(u64, Message),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::otlp::{flat, flat_map};

    /// The storage join reads the events back from `log_records`: what it reads is what the
    /// collector read from the request.
    #[test]
    fn a_stored_event_reads_as_the_event_received() {
        let details: BTreeMap<String, Value> = [
            ("gen_ai.operation.name", serde_json::json!("chat")),
            ("gen_ai.request.model", serde_json::json!("gpt-4o")),
            ("gen_ai.usage.input_tokens", serde_json::json!(42)),
            ("gen_ai.request.temperature", serde_json::json!(0.5)),
            ("gen_ai.response.finish_reasons", serde_json::json!(["stop"])),
            ("gen_ai.input.messages", serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])),
            (
                "gen_ai.output.messages",
                serde_json::json!([{"role": "assistant", "parts": [{"type": "text", "content": "hello"}], "finish_reason": "stop"}]),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let cases = [
            ("gen_ai.client.inference.operation.details", details, Value::Null),
            ("gen_ai.user.message", BTreeMap::new(), serde_json::json!({"content": "What is the refund window?"})),
            ("gen_ai.tool.message", BTreeMap::new(), serde_json::json!({"content": "{\"days\": 30}", "id": "call_1"})),
            (
                "gen_ai.choice",
                BTreeMap::new(),
                serde_json::json!({"index": 1, "finish_reason": "stop", "message": {"content": "30 days."}}),
            ),
        ];
        for (name, attrs, body) in cases {
            let received = read_log_event(name, &Attrs::new(attrs.clone()), &body);
            assert!(received.is_some(), "{name}");
            let row = LogRecordRow {
                project_id: "p".into(),
                record_id: "r".into(),
                timestamp: time::OffsetDateTime::UNIX_EPOCH,
                observed_timestamp: time::OffsetDateTime::UNIX_EPOCH,
                trace_id: "t".into(),
                span_id: "s".into(),
                severity_number: 0,
                severity_text: String::new(),
                event_name: name.into(),
                body: if body.is_null() { String::new() } else { flat(&body) },
                service_name: String::new(),
                scope_name: String::new(),
                resource_attributes: Default::default(),
                attributes: flat_map(&attrs),
                ingested_at: time::OffsetDateTime::UNIX_EPOCH,
            };
            assert_eq!(read_stored_event(&row), received, "{name}");
        }
    }
}
