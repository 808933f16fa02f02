//! Vercel AI SDK telemetry (`experimental_telemetry`): `ai.*` keys, as documented at
//! <https://ai-sdk.dev/docs/ai-sdk-core/telemetry> and seen in recorded v4–v6 spans.
//!
//! One SDK call makes an outer span (`ai.generateText`, `ai.streamText`, `ai.embed`…), one inner
//! provider-call span per step (`ai.generateText.doGenerate`, `ai.streamText.doStream`,
//! `ai.embed.doEmbed`…) and one span per tool execution (`ai.toolCall`). Only the inner spans are
//! model calls: the outer span repeats their usage summed over steps, and counting it too would
//! count every call twice. The operation is the `ai.operationId` attribute, else the span name.
//!
//! The inner spans carry `gen_ai.system` and `gen_ai.request.model` too, so [`super::genai`] has
//! already named them OTel GenAI spans: this module, more specific, replaces that convention
//! name, and turns the provider id (`openai.chat`, `openai.responses`) into the provider
//! (`openai`). Session and user (`ai.telemetry.metadata.sessionId` / `userId`) are read
//! centrally by `identity`; every `ai.telemetry.metadata.*` entry is kept in the metadata.

use flywheel_schemas::messages::{Message, Part, parse_arguments};
use serde_json::Value;

use super::{Attrs, Draft, SpanView, fill};

pub fn read(span: &SpanView<'_>, d: &mut Draft) {
    let a = span.attrs;
    let operation_id = a.string("ai.operationId").or_else(|| span.name.starts_with("ai.").then(|| span.name.to_string())).or_else(|| {
        a.string("operation.name").and_then(|n| n.split_whitespace().next().map(str::to_string)).filter(|n| n.starts_with("ai."))
    });
    let Some(operation_id) = operation_id.filter(|_| a.has_prefix("ai.")) else { return };
    if d.convention.is_none_or(|c| c.starts_with("otel_genai")) {
        d.convention = Some("vercel_ai");
    }

    let step = operation_id.rsplit('.').next().unwrap_or_default();
    match step {
        "doGenerate" | "doStream" => fill!(d.operation, Some("chat".into())),
        "doEmbed" => fill!(d.operation, Some("embeddings".into())),
        // Outer and tool spans are never model calls, whatever else they carry.
        _ if operation_id == "ai.toolCall" => d.operation = Some("tool".into()),
        _ => d.operation = Some("workflow".into()),
    }
    fill!(d.feature, a.string("ai.telemetry.functionId"));
    for (key, value) in a.with_prefix("ai.telemetry.metadata.") {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        d.metadata.entry(key.to_string()).or_insert(value);
    }
    if !matches!(step, "doGenerate" | "doStream" | "doEmbed") {
        return;
    }

    // `openai.chat` → `openai`; replaces the raw id that genai copied from `gen_ai.system`.
    let raw_provider = a.string("ai.model.provider").or_else(|| a.string("gen_ai.system"));
    if let Some(raw) = raw_provider
        && (d.provider.is_none() || d.provider.as_deref() == Some(raw.as_str()) || d.provider == a.string("gen_ai.system"))
    {
        d.provider = raw.split('.').next().map(str::to_string).filter(|p| !p.is_empty());
    }
    fill!(d.request_model, a.string("ai.model.id"));
    fill!(d.response_model, a.string("ai.response.model"));
    fill!(d.response_id, a.string("ai.response.id"));
    let finish_reason = a.string("ai.response.finishReason");
    fill!(d.finish_reasons, finish_reason.clone().map(|r| vec![r]));

    fill!(d.input_tokens, a.u64("ai.usage.inputTokens").or_else(|| a.u64("ai.usage.promptTokens")).or_else(|| a.u64("ai.usage.tokens")));
    fill!(d.output_tokens, a.u64("ai.usage.outputTokens").or_else(|| a.u64("ai.usage.completionTokens")));
    fill!(d.cache_read_tokens, a.u64("ai.usage.cachedInputTokens").or_else(|| a.u64("ai.usage.inputTokenDetails.cacheReadTokens")));
    fill!(d.cache_write_tokens, a.u64("ai.usage.inputTokenDetails.cacheWriteTokens"));
    fill!(d.reasoning_tokens, a.u64("ai.usage.reasoningTokens").or_else(|| a.u64("ai.usage.outputTokenDetails.reasoningTokens")));

    fill!(d.temperature, a.f64("ai.settings.temperature"));
    fill!(d.top_p, a.f64("ai.settings.topP"));
    fill!(d.max_tokens, a.u64("ai.settings.maxOutputTokens").or_else(|| a.u64("ai.settings.maxTokens")));
    fill!(d.seed, a.i64("ai.settings.seed"));
    fill!(d.stream, Some(step == "doStream"));
    fill!(d.ttft_ns, a.f64("ai.response.msToFirstChunk").map(|ms| (ms * 1e6) as u64));

    fill!(d.input, a.json("ai.prompt.messages").as_ref().and_then(messages));
    fill!(d.input, a.json("ai.prompt").as_ref().and_then(prompt));
    fill!(d.input, embedding_values(a));
    fill!(d.output, output(a, finish_reason));
    if let Some(Value::Array(tools)) = a.get("ai.prompt.tools") {
        let tools: Vec<Value> = tools.iter().map(parse_arguments).collect();
        fill!(d.tool_definitions, (!tools.is_empty()).then_some(Value::Array(tools)));
    }
}

/// `ai.prompt.messages`: `[{role, content: string | [part…]}]` (the SDK's model messages).
fn messages(value: &Value) -> Option<Vec<Message>> {
    let items = value.as_array()?;
    Some(items.iter().map(message).collect())
}

fn message(m: &Value) -> Message {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("user").to_string();
    let parts = match m.get("content") {
        Some(Value::String(s)) => vec![Part::Text { content: s.clone() }],
        Some(Value::Array(items)) => items.iter().map(part).collect(),
        _ => Vec::new(),
    };
    Message { role, name: None, parts, finish_reason: None }
}

fn part(p: &Value) -> Part {
    let str_of = |key: &str| p.get(key).and_then(Value::as_str).map(str::to_string);
    match p.get("type").and_then(Value::as_str) {
        Some("text") => Part::Text { content: str_of("text").unwrap_or_default() },
        Some("reasoning") => Part::Reasoning { content: str_of("text").unwrap_or_default() },
        // v4 writes `args` / `result`, v5+ `input` / `output`.
        Some("tool-call") => Part::ToolCall {
            id: str_of("toolCallId"),
            name: str_of("toolName").unwrap_or_default(),
            arguments: parse_arguments(p.get("input").or_else(|| p.get("args")).unwrap_or(&Value::Null)),
        },
        Some("tool-result") => Part::ToolCallResponse { id: str_of("toolCallId"), response: tool_output(p) },
        _ => Part::Other(p.clone()),
    }
}

/// A tool result: v4 `result` as is; v5+ `output: {type: "text" | "json" | …, value}`.
fn tool_output(p: &Value) -> Value {
    match p.get("output") {
        Some(Value::Object(o)) if o.contains_key("type") && o.contains_key("value") => o["value"].clone(),
        Some(other) => other.clone(),
        None => p.get("result").cloned().unwrap_or(Value::Null),
    }
}

/// `ai.prompt` on spans that lack `ai.prompt.messages`: `{system?, prompt?, messages?}`.
fn prompt(value: &Value) -> Option<Vec<Message>> {
    let mut out = Vec::new();
    if let Some(system) = value.get("system").and_then(Value::as_str) {
        out.push(Message::text("system", system));
    }
    match value.get("prompt") {
        Some(Value::String(text)) => out.push(Message::text("user", text.clone())),
        Some(list @ Value::Array(_)) => out.extend(messages(list).unwrap_or_default()),
        _ => {}
    }
    out.extend(value.get("messages").and_then(messages).unwrap_or_default());
    (!out.is_empty()).then_some(out)
}

/// `ai.values` (`embedMany`) or `ai.value` (`embed`): each value is JSON text, usually a string.
fn embedding_values(a: &Attrs) -> Option<Vec<Message>> {
    let values: Vec<Value> = match a.get("ai.values").or_else(|| a.get("ai.value"))? {
        Value::Array(items) => items.clone(),
        single => vec![single.clone()],
    };
    let texts: Vec<Message> = values
        .iter()
        .map(|v| match parse_arguments(v) {
            Value::String(s) => Message::text("user", s),
            other => Message::text("user", other.to_string()),
        })
        .collect();
    (!texts.is_empty()).then_some(texts)
}

/// One assistant message from `ai.response.text`, `.reasoning`, `.object` and `.toolCalls`.
fn output(a: &Attrs, finish_reason: Option<String>) -> Option<Vec<Message>> {
    let mut parts = Vec::new();
    if let Some(reasoning) = a.string("ai.response.reasoning") {
        parts.push(Part::Reasoning { content: reasoning });
    }
    if let Some(text) = a.string("ai.response.text").or_else(|| a.string("ai.response.object")) {
        parts.push(Part::Text { content: text });
    }
    if let Some(Value::Array(calls)) = a.json("ai.response.toolCalls") {
        for call in &calls {
            parts.push(Part::ToolCall {
                id: call.get("toolCallId").and_then(Value::as_str).map(str::to_string),
                name: call.get("toolName").and_then(Value::as_str).unwrap_or_default().to_string(),
                arguments: parse_arguments(call.get("input").or_else(|| call.get("args")).unwrap_or(&Value::Null)),
            });
        }
    }
    (!parts.is_empty()).then(|| vec![Message { role: "assistant".into(), name: None, parts, finish_reason }])
}

#[cfg(test)]
mod tests {
    use flywheel_schemas::messages::{Message, Part};
    use serde_json::{Value, json};

    use crate::normalize::{Attrs, Draft, SpanView, read_call};

    /// A Vercel AI SDK span as the SDK's tracer (scope `ai`) exports it. The attribute maps
    /// below follow spans recorded from `ai` 4.x–6.x against OpenAI (the SDK's own telemetry
    /// tests and Arize's v6 captures), with this project's canned values.
    fn call(name: &str, attrs: Value) -> Option<Draft> {
        let attrs = Attrs(serde_json::from_value(attrs).unwrap());
        let resource = Attrs(serde_json::from_value(json!({"service.name": "fixture-vercel"})).unwrap());
        read_call(&SpanView {
            name,
            scope_name: "ai",
            resource: &resource,
            attrs: &attrs,
            events: &[],
            is_error: false,
            status_message: "",
        })
    }

    fn texts(messages: &Option<Vec<Message>>) -> Vec<String> {
        messages.iter().flatten().map(Message::text_content).filter(|t| !t.is_empty()).collect()
    }

    fn tool_call(messages: &Option<Vec<Message>>) -> (Option<String>, String, Value) {
        let (id, name, args) = messages.iter().flatten().flat_map(Message::tool_calls).next().expect("a tool call");
        (id.clone(), name.to_string(), args.clone())
    }

    fn weather_call() -> (Option<String>, String, Value) {
        (Some("call_FIXTUREweather01".into()), "get_weather".into(), json!({"location": "Paris, FR", "unit": "celsius"}))
    }

    #[test]
    fn generate_text_do_generate_is_a_chat_call() {
        let d = call(
            "ai.generateText.doGenerate",
            json!({
                "operation.name": "ai.generateText.doGenerate capital-quiz",
                "ai.operationId": "ai.generateText.doGenerate",
                "ai.telemetry.functionId": "capital-quiz",
                "ai.telemetry.metadata.sessionId": "sess-FIXTURE-0001",
                "ai.telemetry.metadata.userId": "user-FIXTURE-42",
                "ai.telemetry.metadata.plan": "pro",
                "ai.model.provider": "openai.chat",
                "ai.model.id": "gpt-4o-mini",
                "ai.settings.maxRetries": 2,
                "ai.settings.temperature": 0.2,
                "ai.settings.topP": 0.9,
                "ai.settings.maxOutputTokens": 100,
                "ai.settings.seed": 42,
                "ai.prompt.messages": "[{\"role\":\"system\",\"content\":\"You are a concise assistant.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is the capital of France?\"}]}]",
                "gen_ai.system": "openai.chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.request.temperature": 0.2,
                "ai.response.finishReason": "stop",
                "ai.response.text": "The capital of France is Paris.",
                "ai.response.id": "chatcmpl-FIXTUREA0001",
                "ai.response.model": "gpt-4o-mini-2024-07-18",
                "ai.response.timestamp": "2026-01-01T00:00:00.000Z",
                "ai.usage.promptTokens": 27,
                "ai.usage.completionTokens": 8,
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.response.id": "chatcmpl-FIXTUREA0001",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": 27,
                "gen_ai.usage.output_tokens": 8
            }),
        )
        .expect("a model call");
        assert_eq!(d.convention, Some("vercel_ai"), "more specific than the gen_ai.* keys it also carries");
        assert_eq!(d.operation.as_deref(), Some("chat"));
        assert_eq!(d.provider.as_deref(), Some("openai"));
        assert_eq!(d.request_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(d.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(d.response_id.as_deref(), Some("chatcmpl-FIXTUREA0001"));
        assert_eq!((d.input_tokens, d.output_tokens), (Some(27), Some(8)));
        assert_eq!(d.finish_reasons, Some(vec!["stop".to_string()]));
        assert_eq!(d.system.as_deref(), Some("You are a concise assistant."));
        assert_eq!(texts(&d.input), vec!["What is the capital of France?"]);
        assert_eq!(texts(&d.output), vec!["The capital of France is Paris."]);
        assert_eq!((d.temperature, d.top_p, d.max_tokens, d.seed), (Some(0.2), Some(0.9), Some(100), Some(42)));
        assert_eq!(d.stream, Some(false));
        assert_eq!(d.feature.as_deref(), Some("capital-quiz"));
        assert_eq!(d.session_id.as_deref(), Some("sess-FIXTURE-0001"));
        assert_eq!(d.user_id.as_deref(), Some("user-FIXTURE-42"));
        assert_eq!(d.metadata.get("plan").map(String::as_str), Some("pro"));
    }

    #[test]
    fn stream_text_do_stream_with_v5_usage_and_time_to_first_chunk() {
        let d = call(
            "ai.streamText.doStream",
            json!({
                "ai.operationId": "ai.streamText.doStream",
                "ai.model.provider": "openai.responses",
                "ai.model.id": "gpt-4o-mini",
                "ai.prompt.messages": "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is the capital of France?\"}]}]",
                "gen_ai.system": "openai.responses",
                "ai.response.msToFirstChunk": 426.5,
                "ai.response.finishReason": "stop",
                "ai.response.text": "Paris is the capital of France.",
                "ai.response.model": "gpt-4o-mini-2024-07-18",
                "ai.usage.inputTokens": 31,
                "ai.usage.outputTokens": 9,
                "ai.usage.totalTokens": 40,
                "ai.usage.reasoningTokens": 0,
                "ai.usage.cachedInputTokens": 0
            }),
        )
        .unwrap();
        assert_eq!((d.operation.as_deref(), d.provider.as_deref()), (Some("chat"), Some("openai")));
        assert_eq!((d.input_tokens, d.output_tokens, d.cache_read_tokens, d.reasoning_tokens), (Some(31), Some(9), Some(0), Some(0)));
        assert_eq!(d.stream, Some(true));
        assert_eq!(d.ttft_ns, Some(426_500_000));
        assert_eq!(texts(&d.output), vec!["Paris is the capital of France."]);
    }

    #[test]
    fn tool_calls_and_results_in_both_sdk_generations() {
        // v5+: `input` / `output`, arguments as an object; cached tokens reported.
        let first = call(
            "ai.generateText.doGenerate",
            json!({
                "ai.operationId": "ai.generateText.doGenerate",
                "ai.model.provider": "openai.chat",
                "ai.model.id": "gpt-4o-mini",
                "ai.prompt.tools": ["{\"type\":\"function\",\"name\":\"get_weather\",\"description\":\"Get the current weather for a city\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"}}}}"],
                "ai.prompt.toolChoice": "{\"type\":\"auto\"}",
                "ai.prompt.messages": "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What's the weather like in Paris today?\"}]}]",
                "ai.response.finishReason": "tool-calls",
                "ai.response.text": "",
                "ai.response.toolCalls": "[{\"toolCallId\":\"call_FIXTUREweather01\",\"toolName\":\"get_weather\",\"input\":{\"location\":\"Paris, FR\",\"unit\":\"celsius\"}}]",
                "ai.usage.inputTokens": 1152,
                "ai.usage.outputTokens": 19
            }),
        )
        .unwrap();
        assert_eq!(first.finish_reasons, Some(vec!["tool-calls".to_string()]), "kept as sent");
        assert_eq!(tool_call(&first.output), weather_call());
        assert_eq!(first.tool_definitions.as_ref().map(|t| t[0]["name"].clone()), Some(json!("get_weather")));

        // v4: `args` / `result`, arguments as a JSON string.
        let second = call(
            "ai.generateText.doGenerate",
            json!({
                "ai.operationId": "ai.generateText.doGenerate",
                "ai.model.provider": "openai.chat",
                "ai.model.id": "gpt-4o-mini",
                "ai.prompt.messages": "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What's the weather like in Paris today?\"}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool-call\",\"toolCallId\":\"call_FIXTUREweather01\",\"toolName\":\"get_weather\",\"args\":\"{\\\"location\\\":\\\"Paris, FR\\\",\\\"unit\\\":\\\"celsius\\\"}\"}]},{\"role\":\"tool\",\"content\":[{\"type\":\"tool-result\",\"toolCallId\":\"call_FIXTUREweather01\",\"toolName\":\"get_weather\",\"result\":{\"temp_c\":18,\"sky\":\"partly cloudy\"}}]}]",
                "ai.response.finishReason": "stop",
                "ai.response.text": "It is 18°C and partly cloudy in Paris right now.",
                "ai.usage.promptTokens": 1187,
                "ai.usage.completionTokens": 14,
                "ai.usage.cachedInputTokens": 1024
            }),
        )
        .unwrap();
        assert_eq!((second.input_tokens, second.output_tokens, second.cache_read_tokens), (Some(1187), Some(14), Some(1024)));
        assert_eq!(tool_call(&second.input), weather_call());
        let result = second.input.iter().flatten().flat_map(|m| &m.parts).find_map(|p| match p {
            Part::ToolCallResponse { id, response } => Some((id.clone(), response.clone())),
            _ => None,
        });
        assert_eq!(result, Some((Some("call_FIXTUREweather01".into()), json!({"temp_c": 18, "sky": "partly cloudy"}))));

        // v5 tool results wrap the value: `output: {type: "json", value}`.
        let v5 =
            super::part(&json!({"type": "tool-result", "toolCallId": "c1", "toolName": "t", "output": {"type": "text", "value": "18°C"}}));
        assert_eq!(v5, Part::ToolCallResponse { id: Some("c1".into()), response: json!("18°C") });
    }

    #[test]
    fn outer_and_tool_spans_are_not_model_calls() {
        let outer = json!({
            "ai.operationId": "ai.generateText",
            "ai.model.provider": "openai.chat",
            "ai.model.id": "gpt-4o-mini",
            "ai.prompt": "{\"system\":\"You are a concise assistant.\",\"prompt\":\"What is the capital of France?\"}",
            "ai.response.text": "The capital of France is Paris.",
            "ai.usage.promptTokens": 27,
            "ai.usage.completionTokens": 8
        });
        assert_eq!(call("ai.generateText", outer), None);
        assert_eq!(call("ai.streamText", json!({"operation.name": "ai.streamText", "ai.model.id": "gpt-4o-mini"})), None);
        let tool = json!({
            "operation.name": "ai.toolCall",
            "ai.operationId": "ai.toolCall",
            "ai.toolCall.name": "get_weather",
            "ai.toolCall.id": "call_FIXTUREweather01",
            "ai.toolCall.args": "{\"location\":\"Paris, FR\",\"unit\":\"celsius\"}",
            "ai.toolCall.result": "{\"temp_c\":18}"
        });
        assert_eq!(call("ai.toolCall", tool), None);
        // Even if an outer span carried an OTel operation name, it stays a workflow span.
        assert_eq!(call("ai.generateText", json!({"ai.operationId": "ai.generateText", "gen_ai.operation.name": "chat"})), None);
    }

    #[test]
    fn prompt_fallback_and_embeddings() {
        // Some versions put only `ai.prompt` on the provider span.
        let d = call(
            "ai.generateText.doGenerate",
            json!({
                "ai.model.id": "gpt-4o-mini",
                "ai.model.provider": "openai.chat",
                "ai.prompt": "{\"system\":\"You are a concise assistant.\",\"prompt\":\"What is the capital of France?\"}",
                "ai.response.text": "The capital of France is Paris."
            }),
        )
        .unwrap();
        assert_eq!(d.system.as_deref(), Some("You are a concise assistant."));
        assert_eq!(texts(&d.input), vec!["What is the capital of France?"]);

        let d = call(
            "ai.embedMany.doEmbed",
            json!({
                "ai.operationId": "ai.embedMany.doEmbed",
                "ai.model.provider": "openai.embedding",
                "ai.model.id": "text-embedding-3-small",
                "ai.values": ["\"hello world\"", "\"bonjour le monde\""],
                "ai.embeddings": ["[0.0123,-0.0456]", "[0.0123,-0.0456]"],
                "ai.usage.tokens": 12,
                "gen_ai.system": "openai.embedding"
            }),
        )
        .unwrap();
        assert_eq!((d.convention, d.operation.as_deref(), d.provider.as_deref()), (Some("vercel_ai"), Some("embeddings"), Some("openai")));
        assert_eq!(d.input_tokens, Some(12));
        assert_eq!(texts(&d.input), vec!["hello world", "bonjour le monde"]);
        assert_eq!(call("ai.embedMany", json!({"ai.operationId": "ai.embedMany", "ai.usage.tokens": 12})), None);
    }

    #[test]
    fn spans_without_ai_keys_are_left_alone() {
        let d = crate::normalize::testing::with_view("ai.fake", json!({"http.method": "POST"}), |view| {
            let mut d = Draft::default();
            super::read(view, &mut d);
            d
        });
        assert_eq!(d, Draft::default());
    }
}
