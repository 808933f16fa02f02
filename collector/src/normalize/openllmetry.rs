//! OpenLLMetry (Traceloop), both generations (docs/conventions.md lists the keys):
//!
//! * ≥0.55 ("openllmetry"): the OTel GenAI keys, read by [`super::genai`], plus `traceloop.*`,
//!   `gen_ai.usage.total_tokens`, `gen_ai.is_streaming` and `gen_ai.user`;
//! * ≤0.53 ("openllmetry_legacy"): indexed `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`,
//!   `llm.request.type`, `llm.usage.*`, `llm.is_streaming`, `llm.request.functions.N.*`.
//!
//! Both write `gen_ai.*` keys too, so [`super::genai`] has already named the span an OTel GenAI
//! one: this module, more specific, replaces that convention name when it recognises its own.
//! Decorated spans (`traceloop.span.kind` = `workflow`, `task`, `agent`, `tool`) are not model
//! calls. Session and user (`traceloop.association.properties.*`, `gen_ai.user`, `llm.user`) are
//! read centrally by `identity`. Values are kept as sent: Traceloop ≥0.60 reports OpenAI's
//! `tool_calls` finish reason as `tool_call`.

use flywheel_schemas::messages::{Message, Part, parse_arguments};
use serde_json::{Value, json};

use super::{Attrs, Draft, SpanView, fill};

pub fn read(span: &SpanView<'_>, d: &mut Draft) {
    let a = span.attrs;
    let legacy = a.has_prefix("gen_ai.prompt.") || a.has_prefix("gen_ai.completion.") || a.contains("llm.request.type");
    let current = a.has_prefix("traceloop.")
        || a.contains("gen_ai.usage.total_tokens")
        || a.contains("gen_ai.is_streaming")
        || (traceloop_scope(span.scope_name) && (a.has_prefix("gen_ai.") || a.has_prefix("llm.")));
    if !legacy && !current {
        return;
    }
    d.convention = Some(if legacy { "openllmetry_legacy" } else { "openllmetry" });

    if let Some(kind) = a.string("traceloop.span.kind") {
        fill!(d.operation, Some(kind.to_ascii_lowercase()));
    }
    fill!(
        d.operation,
        a.string("llm.request.type").map(|t| match t.as_str() {
            "chat" => "chat".to_string(),
            "completion" => "text_completion".to_string(),
            "embedding" => "embeddings".to_string(),
            other => other.to_string(),
        })
    );

    // Very old releases (≤0.2x) used `llm.*` names for what later became `gen_ai.*`.
    fill!(d.provider, a.string("llm.vendor").map(|v| v.to_ascii_lowercase()));
    fill!(d.request_model, a.string("llm.request.model"));
    fill!(d.response_model, a.string("llm.response.model"));

    fill!(d.input, messages(a, "gen_ai.prompt"));
    fill!(d.output, messages(a, "gen_ai.completion"));
    let reasons: Vec<String> = a.indexed("gen_ai.completion").values().filter_map(|c| c.string("finish_reason")).collect();
    fill!(d.finish_reasons, (!reasons.is_empty()).then_some(reasons));

    fill!(d.input_tokens, a.u64("llm.usage.prompt_tokens"));
    fill!(d.output_tokens, a.u64("llm.usage.completion_tokens"));
    fill!(d.cache_read_tokens, a.u64("gen_ai.usage.cache_read_input_tokens"));
    fill!(d.cache_write_tokens, a.u64("gen_ai.usage.cache_creation_input_tokens"));
    fill!(d.reasoning_tokens, a.u64("llm.usage.reasoning_tokens"));

    fill!(d.temperature, a.f64("llm.temperature"));
    fill!(d.top_p, a.f64("llm.top_p"));
    fill!(d.max_tokens, a.u64("llm.request.max_tokens"));
    fill!(d.stream, a.bool("gen_ai.is_streaming").or_else(|| a.bool("llm.is_streaming")));
    fill!(d.tool_definitions, functions(a));

    fill!(d.feature, a.string("traceloop.workflow.name"));
    if matches!(a.string("traceloop.span.kind").as_deref(), Some("workflow" | "agent")) {
        fill!(d.feature, a.string("traceloop.entity.name"));
    }
    fill!(d.template_id, a.string("traceloop.prompt.key"));
    fill!(d.template_version, a.string("traceloop.prompt.version"));
}

/// Traceloop's instrumentations: `opentelemetry.instrumentation.<lib>` (Python, the same
/// prefix as OTel contrib, so contrib's own GenAI scopes are excluded), `traceloop.tracer`, and
/// `@traceloop/instrumentation-<lib>` (JavaScript).
fn traceloop_scope(scope: &str) -> bool {
    const OTEL_CONTRIB: &[&str] = &["opentelemetry.instrumentation.google_genai"];
    scope.starts_with("traceloop")
        || scope.starts_with("@traceloop")
        || (scope.starts_with("opentelemetry.instrumentation.") && !scope.ends_with("_v2") && !OTEL_CONTRIB.contains(&scope))
}

/// `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`.
fn messages(a: &Attrs, prefix: &str) -> Option<Vec<Message>> {
    let items: Vec<Message> = a.indexed(prefix).values().map(message).collect();
    (!items.is_empty()).then_some(items)
}

fn message(m: &Attrs) -> Message {
    // Embedding inputs carry no role; legacy text completions put the prompt under `user`.
    let role = m.string("role").unwrap_or_else(|| "user".into());
    let content = m.get("content").or_else(|| m.get("user")).filter(|v| !matches!(v, Value::String(s) if s.is_empty()));
    let mut parts = Vec::new();
    if role == "tool" || m.contains("tool_call_id") {
        parts.push(Part::ToolCallResponse { id: m.string("tool_call_id"), response: content.cloned().unwrap_or(Value::Null) });
    } else if let Some(content) = content {
        parts.extend(content_parts(content));
    }
    for call in m.indexed("tool_calls").values() {
        parts.push(Part::ToolCall {
            id: call.string("id"),
            name: call.string("name").unwrap_or_default(),
            arguments: call.get("arguments").map(parse_arguments).unwrap_or(Value::Null),
        });
    }
    Message { role, name: None, parts, finish_reason: m.string("finish_reason") }
}

/// Content is a string, or, for multimodal messages, an OpenAI content list dumped as JSON.
fn content_parts(content: &Value) -> Vec<Part> {
    let list = match content {
        Value::String(s) if s.trim_start().starts_with('[') => super::attrs::parse_bounded(s),
        Value::Array(_) => Some(content.clone()),
        _ => None,
    };
    match list {
        Some(Value::Array(items)) if items.iter().all(|i| i.get("type").is_some()) => items
            .into_iter()
            .map(|item| match (item.get("type").and_then(Value::as_str), item.get("text").and_then(Value::as_str)) {
                (Some("text"), Some(text)) => Part::Text { content: text.to_string() },
                _ => Part::Other(item),
            })
            .collect(),
        _ => match content {
            Value::String(s) => vec![Part::Text { content: s.clone() }],
            other => vec![Part::Text { content: other.to_string() }],
        },
    }
}

/// `llm.request.functions.N.{name,description,parameters}`, in the shape of
/// `gen_ai.tool.definitions`.
fn functions(a: &Attrs) -> Option<Value> {
    let tools: Vec<Value> = a
        .indexed("llm.request.functions")
        .values()
        .map(|f| {
            let mut tool = json!({"type": "function", "name": f.string("name").unwrap_or_default()});
            if let Some(description) = f.string("description") {
                tool["description"] = Value::String(description);
            }
            if let Some(parameters) = f.json("parameters") {
                tool["parameters"] = parameters;
            }
            tool
        })
        .collect();
    (!tools.is_empty()).then_some(Value::Array(tools))
}

#[cfg(test)]
mod tests {
    use crate::normalize::testing::{calls, first_tool_call, texts, tool_response, weather_call};

    use serde_json::json;

    use crate::normalize::span::fixture_spans;
    use crate::normalize::{Draft, read_call};

    fn reasons(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|r| r.to_string()).collect())
    }

    /// What every chat_plain capture agrees on, whatever the generation.
    fn assert_chat_plain(d: &Draft, convention: &str) {
        assert_eq!(d.convention, Some(convention));
        assert_eq!(d.operation.as_deref(), Some("chat"));
        assert_eq!(d.provider.as_deref(), Some("openai"));
        assert_eq!(d.request_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(d.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(d.response_id.as_deref(), Some("chatcmpl-FIXTUREA0001"));
        assert_eq!((d.input_tokens, d.output_tokens), (Some(27), Some(8)));
        assert_eq!(d.finish_reasons, reasons(&["stop"]));
        assert_eq!(d.system.as_deref(), Some("You are a concise assistant."));
        assert_eq!(texts(&d.input), vec!["What is the capital of France?"]);
        assert_eq!(texts(&d.output), vec!["The capital of France is Paris."]);
        // Traceloop does not emit the seed (README, "Encoding facts").
        assert_eq!((d.temperature, d.top_p, d.max_tokens, d.seed), (Some(0.2), Some(0.9), Some(100), None));
    }

    #[test]
    fn tl_chat() {
        let d = &calls("tl/chat_plain.json")[0];
        assert_chat_plain(d, "openllmetry");
        assert_eq!(d.stream, Some(false));
        assert_eq!(d.user_id.as_deref(), Some("user-FIXTURE-42"), "gen_ai.user");
        assert_eq!(d.cache_read_tokens, Some(0));

        let d = &calls("tl/chat_stream.json")[0];
        assert_eq!(d.convention, Some("openllmetry"));
        assert_eq!(d.stream, Some(true));
        assert_eq!((d.input_tokens, d.output_tokens), (Some(27), Some(8)));
        assert_eq!(texts(&d.output), vec!["The capital of France is Paris."]);
    }

    #[test]
    fn tl_tool_call_keeps_the_normalised_finish_reason() {
        let pair = calls("tl/tool_call.json");
        assert_eq!(pair.len(), 2);
        assert_eq!((pair[0].input_tokens, pair[0].output_tokens, pair[0].cache_read_tokens), (Some(1152), Some(19), Some(0)));
        assert_eq!(pair[0].finish_reasons, reasons(&["tool_call"]), "Traceloop ≥0.60 sends tool_call, kept as sent");
        assert_eq!(first_tool_call(&pair[0].output), weather_call());
        assert_eq!(pair[0].tool_definitions.as_ref().and_then(|t| t[0]["name"].as_str()), Some("get_weather"));
        assert_eq!((pair[1].input_tokens, pair[1].output_tokens, pair[1].cache_read_tokens), (Some(1187), Some(14), Some(1024)));
        assert_eq!(pair[1].finish_reasons, reasons(&["stop"]));
        assert_eq!(tool_response(&pair[1].input).0.as_deref(), Some("call_FIXTUREweather01"));
        assert_eq!(texts(&pair[1].output), vec!["It is 18°C and partly cloudy in Paris right now."]);

        let d = &calls("tl/tool_call_stream.json")[0];
        assert_eq!(first_tool_call(&d.output), weather_call());
        assert_eq!(d.stream, Some(true));
    }

    #[test]
    fn tl_embeddings_responses_and_errors() {
        let d = &calls("tl/embeddings.json")[0];
        assert_eq!((d.convention, d.operation.as_deref(), d.input_tokens), (Some("openllmetry"), Some("embeddings"), Some(12)));

        let d = &calls("tl/responses.json")[0];
        assert_eq!((d.input_tokens, d.output_tokens), (Some(31), Some(9)));
        assert_eq!(texts(&d.output), vec!["Paris is the capital of France."]);
        assert_eq!(d.system.as_deref(), Some("You are a concise assistant."));
        assert_eq!(d.response_id.as_deref(), Some("resp-FIXTUREA0006"));

        let d = &calls("tl/error_429.json")[0];
        assert_eq!(d.error_type.as_deref(), Some("RateLimitError"));
        assert_eq!(d.convention, Some("openllmetry"));
    }

    #[test]
    fn tl_agent() {
        let spans = fixture_spans("tl/agent.json");
        for name in ["get_weather.tool", "weather_agent.agent", "trip_planner.workflow"] {
            let span = spans.iter().find(|s| s.name == name).unwrap();
            assert_eq!(read_call(&span.view()), None, "{name}");
            let mut d = Draft::default();
            super::read(&span.view(), &mut d);
            assert_eq!(d.convention, Some("openllmetry"), "{name}");
            assert_eq!(Some(name.rsplit('.').next().unwrap()), d.operation.as_deref());
        }
        let calls: Vec<Draft> = spans.iter().filter_map(|s| read_call(&s.view())).collect();
        assert_eq!(calls.len(), 2);
        for d in &calls {
            assert_eq!(d.convention, Some("openllmetry"));
            assert_eq!(d.session_id.as_deref(), Some("sess-FIXTURE-0001"));
            assert_eq!(d.user_id.as_deref(), Some("user-FIXTURE-42"));
            // gen_ai.agent.name (read by genai) comes before traceloop.workflow.name.
            assert_eq!(d.feature.as_deref(), Some("weather_agent"));
        }
        assert_eq!(first_tool_call(&calls[0].output), weather_call());
        assert_eq!(calls[1].cache_read_tokens, Some(1024));
    }

    #[test]
    fn tl_legacy_chat() {
        let d = &calls("tl-legacy/chat_plain.pb")[0];
        assert_chat_plain(d, "openllmetry_legacy");
        assert_eq!(d.stream, Some(false));
        assert_eq!(d.user_id.as_deref(), Some("user-FIXTURE-42"), "llm.user");
        assert_eq!((d.cache_read_tokens, d.reasoning_tokens), (Some(0), Some(0)));

        let d = &calls("tl-legacy/chat_stream.pb")[0];
        assert_eq!(d.stream, Some(true));
        assert_eq!(texts(&d.output), vec!["The capital of France is Paris."]);
        assert_eq!(d.finish_reasons, reasons(&["stop"]));
    }

    #[test]
    fn tl_legacy_tool_call() {
        let calls = calls("tl-legacy/tool_call.pb");
        assert_eq!(calls.len(), 2);
        let (first, second) = (&calls[0], &calls[1]);
        assert_eq!(first.convention, Some("openllmetry_legacy"));
        assert_eq!((first.input_tokens, first.output_tokens, first.cache_read_tokens), (Some(1152), Some(19), Some(0)));
        assert_eq!(first.finish_reasons, reasons(&["tool_calls"]));
        assert_eq!(first_tool_call(&first.output), weather_call());
        let tools = first.tool_definitions.as_ref().expect("llm.request.functions");
        assert_eq!(tools[0]["name"], "get_weather");
        assert_eq!(tools[0]["description"], "Get the current weather for a city");
        assert_eq!(tools[0]["parameters"]["required"], json!(["location"]));

        assert_eq!((second.input_tokens, second.output_tokens, second.cache_read_tokens), (Some(1187), Some(14), Some(1024)));
        assert_eq!(second.finish_reasons, reasons(&["stop"]));
        assert_eq!(first_tool_call(&second.input), weather_call());
        assert_eq!(
            tool_response(&second.input),
            (Some("call_FIXTUREweather01".into()), json!("{\"temp_c\": 18, \"sky\": \"partly cloudy\"}"))
        );
        assert_eq!(texts(&second.output), vec!["It is 18°C and partly cloudy in Paris right now."]);
    }

    #[test]
    fn tl_legacy_embeddings_responses_errors_and_agent() {
        let d = &calls("tl-legacy/embeddings.pb")[0];
        assert_eq!((d.operation.as_deref(), d.input_tokens), (Some("embeddings"), Some(12)));
        assert_eq!(texts(&d.input), vec!["hello world", "bonjour le monde"]);

        let d = &calls("tl-legacy/responses.pb")[0];
        assert_eq!(d.convention, Some("openllmetry_legacy"));
        assert_eq!((d.input_tokens, d.output_tokens), (Some(31), Some(9)));
        assert_eq!(texts(&d.output), vec!["Paris is the capital of France."]);
        assert_eq!(d.system.as_deref(), Some("You are a concise assistant."));
        // 0.52.6 records no finish reason for the Responses API.
        assert_eq!(d.finish_reasons, None);

        let d = &calls("tl-legacy/error_429.pb")[0];
        assert_eq!(d.error_type.as_deref(), Some("RateLimitError"));

        let spans = fixture_spans("tl-legacy/agent.pb");
        let calls: Vec<Draft> = spans.iter().filter_map(|s| read_call(&s.view())).collect();
        assert_eq!(calls.len(), 2, "workflow, agent and tool spans are not model calls");
        for d in &calls {
            assert_eq!(d.convention, Some("openllmetry_legacy"));
            assert_eq!(d.session_id.as_deref(), Some("sess-FIXTURE-0001"));
            assert_eq!(d.user_id.as_deref(), Some("user-FIXTURE-42"));
        }
    }

    #[test]
    fn js_tl() {
        let d = &calls("js-tl/chat_plain.json")[0];
        assert_chat_plain(d, "openllmetry");

        let d = &calls("js-tl/chat_stream.json")[0];
        assert_eq!(d.convention, Some("openllmetry"), "recognised by its scope alone");
        assert_eq!(texts(&d.output), vec!["The capital of France is Paris."]);
        assert_eq!(d.finish_reasons, reasons(&["stop"]));
        // JS Traceloop 0.27 records no usage on streamed spans (README, Problems 5).
        assert_eq!((d.input_tokens, d.output_tokens), (None, None));

        let calls = calls("js-tl/tool_call.json");
        assert_eq!(calls[0].finish_reasons, reasons(&["tool_call"]));
        assert_eq!(first_tool_call(&calls[0].output), weather_call());
        assert_eq!((calls[1].input_tokens, calls[1].output_tokens), (Some(1187), Some(14)));
        // JS Traceloop 0.27 records no cached-token count: 1024 is not in the capture.
        assert_eq!(calls[1].cache_read_tokens, None);
        assert_eq!(tool_response(&calls[1].input).0.as_deref(), Some("call_FIXTUREweather01"));
    }

    #[test]
    fn otel_contrib_scopes_stay_otel_genai() {
        for file in ["otel-v2-legacy/chat_plain.json", "otel-v2/embeddings.json", "js-otel/chat_plain.json"] {
            for d in calls(file) {
                assert!(d.convention.is_some_and(|c| c.starts_with("otel_genai")), "{file}: {:?}", d.convention);
            }
        }
    }

    #[test]
    fn json_and_protobuf_twins_give_the_same_drafts() {
        for scenario in ["tl/agent", "tl/tool_call", "js-tl/tool_call", "tl-legacy/embeddings"] {
            let from_json = calls(&format!("{scenario}.json"));
            assert!(!from_json.is_empty());
            assert_eq!(from_json, calls(&format!("{scenario}.pb")), "{scenario}");
        }
        // The other tl-legacy `.json` captures hold an empty `{"arrayValue": {}}`
        // (`llm.request.reasoning_effort`), which the OTLP/JSON decoder refuses today; their
        // protobuf and gRPC twins are compared instead.
        for scenario in ["tl-legacy/agent", "tl-legacy/tool_call", "tl-legacy/chat_plain"] {
            let from_pb = calls(&format!("{scenario}.pb"));
            assert!(!from_pb.is_empty());
            assert_eq!(from_pb, calls(&format!("{scenario}.grpc.pb")), "{scenario}");
        }
    }
}
