//! OpenInference (Arize Phoenix): `openinference.span.kind`, `llm.*`, `embedding.*`,
//! `input.value` / `output.value` (docs/conventions.md lists the keys).
//!
//! Only `LLM` and `EMBEDDING` spans are model calls. Every other kind (`CHAIN`, `AGENT`, `TOOL`,
//! `RETRIEVER`…) gets its lowercase kind as operation, which is not a model operation, so the
//! span stays in `spans` only.
//!
//! Messages come from the flattened `llm.input_messages.N.message.*` keys; when an
//! instrumentation did not flatten them, from the raw OpenAI request and response JSON in
//! `input.value` / `output.value` (Chat Completions and Responses API shapes). Session and user
//! (`session.id`, `user.id`) are read centrally by `identity`, in Langfuse's order.

use flywheel_schemas::messages::{Message, Part, parse_arguments};
use serde_json::Value;

use super::{Attrs, Draft, SpanView, fill, message_from_openai, messages_from_openai};

pub fn read(span: &SpanView<'_>, d: &mut Draft) {
    let a = span.attrs;
    let Some(kind) = a.string("openinference.span.kind") else { return };
    fill!(d.convention, Some("openinference"));
    let kind = kind.to_ascii_lowercase();
    let operation = match kind.as_str() {
        "llm" => "chat",
        "embedding" => "embeddings",
        other => other,
    };
    fill!(d.operation, Some(operation.to_string()));
    if kind != "llm" && kind != "embedding" {
        return;
    }

    let invocation = a.json("llm.invocation_parameters").or_else(|| a.json("embedding.invocation_parameters")).filter(Value::is_object);
    let param = |key: &str| invocation.as_ref().and_then(|p| p.get(key)).filter(|v| !v.is_null());
    let input_json = json_value(a, "input");
    let output_json = json_value(a, "output");

    fill!(d.provider, a.string("llm.provider").or_else(|| a.string("llm.system")));
    fill!(d.request_model, a.string("llm.request.model_name").or_else(|| param("model").and_then(Value::as_str).map(str::to_string)));
    fill!(
        d.response_model,
        a.string("llm.response.model_name").or_else(|| a.string("llm.model_name")).or_else(|| a.string("embedding.model_name"))
    );
    fill!(d.response_id, output_json.as_ref().and_then(provider_response_id));

    fill!(d.input, messages(a, "llm.input_messages"));
    fill!(d.input, embedding_texts(a));
    fill!(d.input, input_json.as_ref().and_then(request_messages));
    fill!(d.output, messages(a, "llm.output_messages"));
    fill!(d.output, output_json.as_ref().and_then(response_messages));
    if kind == "llm" && d.output.is_none() && a.string("output.mime_type").is_some_and(|m| m.starts_with("text/")) {
        d.output = a.string("output.value").map(|text| vec![Message::text("assistant", text)]);
    }

    fill!(d.finish_reasons, a.strings("llm.finish_reason"));
    fill!(d.finish_reasons, output_json.as_ref().and_then(response_finish_reasons));
    // `llm.finish_reason` is per span; with a single choice it is that message's.
    if let (Some([message]), Some([reason])) = (d.output.as_deref_mut(), d.finish_reasons.as_deref()) {
        fill!(message.finish_reason, Some(reason.clone()));
    }

    fill!(d.input_tokens, a.u64("llm.token_count.prompt"));
    fill!(d.output_tokens, a.u64("llm.token_count.completion"));
    fill!(d.cache_read_tokens, a.u64("llm.token_count.prompt_details.cache_read"));
    fill!(d.cache_write_tokens, a.u64("llm.token_count.prompt_details.cache_write"));
    fill!(d.reasoning_tokens, a.u64("llm.token_count.completion_details.reasoning"));
    fill!(d.cost_usd, a.f64("llm.cost.total"));

    fill!(d.temperature, param("temperature").and_then(Value::as_f64));
    fill!(d.top_p, param("top_p").and_then(Value::as_f64));
    fill!(
        d.max_tokens,
        param("max_tokens").or_else(|| param("max_completion_tokens")).or_else(|| param("max_output_tokens")).and_then(Value::as_u64)
    );
    fill!(d.seed, param("seed").and_then(Value::as_i64));
    fill!(d.stream, param("stream").and_then(Value::as_bool));

    let tools: Vec<Value> = a.indexed("llm.tools").values().filter_map(|t| t.json("tool.json_schema")).collect();
    fill!(d.tool_definitions, (!tools.is_empty()).then_some(Value::Array(tools)));

    fill!(d.template_id, a.string("llm.prompt_template.id"));
    fill!(d.template_version, a.string("llm.prompt_template.version"));

    if let Some(Value::Object(metadata)) = a.json("metadata") {
        for (key, value) in metadata {
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            d.metadata.entry(format!("metadata.{key}")).or_insert(value);
        }
    }
    if let Some(tags) = a.strings("tag.tags") {
        d.metadata.entry("tags".into()).or_insert_with(|| Value::from(tags).to_string());
    }
}

/// The provider's id of the response (`chatcmpl-…`, `resp_…`, `msg_…`) in `output.value`:
/// the raw response's `id`, or where a framework keeps it — LangChain's `llm_output.id` and
/// each message's `response_metadata.id` (what `AIMessage.response_metadata["id"]` hands the
/// application, so a signal sent with it links). A framework's own run id (`kwargs.id`,
/// `run-…`) is not the provider's and is not read.
fn provider_response_id(output: &Value) -> Option<String> {
    let string = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    // A raw provider response: OpenAI's carry `object` (`choices` / `output`), Anthropic's
    // `"type": "message"`. A framework's message dump has an `id` of its own.
    let raw = ["object", "choices", "output"].iter().any(|k| output.get(k).is_some())
        || output.get("type").and_then(Value::as_str) == Some("message");
    string(output.get("id").filter(|_| raw))
        .or_else(|| string(output.pointer("/llm_output/id")))
        .or_else(|| response_metadata_id(output, 0))
}

/// The first `response_metadata.id` (or `response_metadata.response_id`), depth first, a few
/// levels down (`generations[0][0].message.kwargs.response_metadata.id` in LangChain's dumps).
fn response_metadata_id(value: &Value, depth: usize) -> Option<String> {
    const MAX_DEPTH: usize = 8;
    match value {
        Value::Object(map) => {
            if let Some(meta) = map.get("response_metadata") {
                let id = meta.get("id").or_else(|| meta.get("response_id")).and_then(Value::as_str).filter(|s| !s.is_empty());
                if let Some(id) = id {
                    return Some(id.to_string());
                }
            }
            (depth < MAX_DEPTH).then(|| map.values().find_map(|v| response_metadata_id(v, depth + 1))).flatten()
        }
        Value::Array(items) if depth < MAX_DEPTH => items.iter().take(16).find_map(|v| response_metadata_id(v, depth + 1)),
        _ => None,
    }
}

/// `input.value` / `output.value` when their mime type says JSON.
fn json_value(a: &Attrs, prefix: &str) -> Option<Value> {
    let mime = a.string(&format!("{prefix}.mime_type"))?;
    if !mime.contains("json") {
        return None;
    }
    a.json(&format!("{prefix}.value")).filter(|v| v.is_object() || v.is_array())
}

/// `llm.{input,output}_messages.N.message.*`.
fn messages(a: &Attrs, prefix: &str) -> Option<Vec<Message>> {
    let items: Vec<Message> = a.indexed(prefix).values().map(message).collect();
    (!items.is_empty()).then_some(items)
}

fn message(m: &Attrs) -> Message {
    let role = m.string("message.role").unwrap_or_else(|| "user".into());
    let mut parts = Vec::new();
    let content = m.string("message.content");
    let stated = content.clone();
    let tool_call_id = m.string("message.tool_call_id");
    if role == "tool" || tool_call_id.is_some() {
        if content.is_some() || tool_call_id.is_some() {
            parts.push(Part::ToolCallResponse { id: tool_call_id, response: content.map(Value::String).unwrap_or(Value::Null) });
        }
    } else if let Some(text) = content {
        parts.push(Part::Text { content: text });
    }
    // Some instrumentations (the OpenAI Agents SDK's) send the text both as `message.content`
    // and as `message.contents.M`: the same answer, not two. A text part is kept only when
    // `message.content` does not already hold it.
    let said = |text: &str| stated.as_deref().is_some_and(|c| c.contains(text));
    for item in m.indexed("message.contents").values() {
        match (item.string("message_content.type").as_deref(), item.string("message_content.text")) {
            (Some("text") | None, Some(text)) if said(&text) => {}
            (Some("text") | None, Some(text)) => parts.push(Part::Text { content: text }),
            _ => parts.push(Part::Other(Value::Object(item.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))),
        }
    }
    for call in m.indexed("message.tool_calls").values() {
        parts.push(Part::ToolCall {
            id: call.string("tool_call.id"),
            name: call.string("tool_call.function.name").unwrap_or_default(),
            arguments: call.get("tool_call.function.arguments").map(parse_arguments).unwrap_or(Value::Null),
        });
    }
    // Function calling before tool calls (OpenAI's deprecated `function_call`).
    if let Some(name) = m.string("message.function_call_name") {
        parts.push(Part::ToolCall {
            id: None,
            name,
            arguments: m.get("message.function_call_arguments_json").map(parse_arguments).unwrap_or(Value::Null),
        });
    }
    Message { role, name: m.string("message.name"), parts, finish_reason: None }
}

/// `embedding.embeddings.N.embedding.text`: the embedded inputs, one user message each.
fn embedding_texts(a: &Attrs) -> Option<Vec<Message>> {
    let texts: Vec<Message> =
        a.indexed("embedding.embeddings").values().filter_map(|e| e.string("embedding.text")).map(|t| Message::text("user", t)).collect();
    (!texts.is_empty()).then_some(texts)
}

/// The messages of a raw OpenAI request: Chat Completions `messages`, or the Responses API
/// `input` (a string or a list of items) with its `instructions`.
fn request_messages(request: &Value) -> Option<Vec<Message>> {
    if let Some(messages) = request.get("messages").filter(|m| m.is_array()) {
        return Some(messages_from_openai(messages));
    }
    let input = request.get("input")?;
    let mut out = Vec::new();
    if let Some(instructions) = request.get("instructions").and_then(Value::as_str) {
        out.push(Message::text("system", instructions));
    }
    match input {
        Value::String(text) => out.push(Message::text("user", text.clone())),
        Value::Array(items) => out.extend(items.iter().filter_map(responses_item)),
        _ => {}
    }
    (!out.is_empty()).then_some(out)
}

/// One item of a Responses API `input` or `output` list.
fn responses_item(item: &Value) -> Option<Message> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    match item.get("type").and_then(Value::as_str) {
        Some("function_call") => Some(Message {
            role: "assistant".into(),
            name: None,
            parts: vec![Part::ToolCall {
                id: item.get("call_id").and_then(text),
                name: item.get("name").and_then(text).unwrap_or_default(),
                arguments: parse_arguments(item.get("arguments").unwrap_or(&Value::Null)),
            }],
            finish_reason: None,
        }),
        Some("function_call_output") => Some(Message {
            role: "tool".into(),
            name: None,
            parts: vec![Part::ToolCallResponse {
                id: item.get("call_id").and_then(text),
                response: item.get("output").cloned().unwrap_or(Value::Null),
            }],
            finish_reason: None,
        }),
        Some("reasoning") => {
            let summary: Vec<&str> = item
                .get("summary")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.get("text").and_then(Value::as_str))
                .collect();
            Some(Message {
                role: "assistant".into(),
                name: None,
                parts: vec![Part::Reasoning { content: summary.join("\n") }],
                finish_reason: None,
            })
        }
        Some("message") | None if item.get("role").is_some() => {
            let role = item.get("role").and_then(text).unwrap_or_else(|| "user".into());
            let parts = match item.get("content") {
                Some(Value::String(s)) => vec![Part::Text { content: s.clone() }],
                Some(Value::Array(contents)) => contents
                    .iter()
                    .map(|c| match (c.get("type").and_then(Value::as_str), c.get("text").and_then(Value::as_str)) {
                        (Some("input_text" | "output_text" | "text"), Some(t)) => Part::Text { content: t.to_string() },
                        _ => Part::Other(c.clone()),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some(Message { role, name: None, parts, finish_reason: None })
        }
        _ => Some(Message { role: "user".into(), name: None, parts: vec![Part::Other(item.clone())], finish_reason: None }),
    }
}

/// The messages of a raw OpenAI response: Chat Completions `choices[].message` or Responses
/// API `output[]`.
fn response_messages(response: &Value) -> Option<Vec<Message>> {
    if let Some(choices) = response.get("choices").and_then(Value::as_array) {
        let out: Vec<Message> = choices
            .iter()
            .filter_map(|choice| {
                let mut m = message_from_openai(choice.get("message")?)?;
                if m.role == "user" {
                    m.role = "assistant".into(); // a streamed choice may omit the role
                }
                m.finish_reason = choice.get("finish_reason").and_then(Value::as_str).map(str::to_string);
                Some(m)
            })
            .collect();
        return (!out.is_empty()).then_some(out);
    }
    let items = response.get("output").and_then(Value::as_array)?;
    // The Responses API returns one item per part; they form one assistant turn.
    let parts: Vec<Part> = items.iter().filter_map(responses_item).flat_map(|m| m.parts).collect();
    (!parts.is_empty()).then(|| vec![Message { role: "assistant".into(), name: None, parts, finish_reason: None }])
}

/// `choices[].finish_reason`; for the Responses API, `status` (`completed` means the model
/// stopped: `stop`, or `tool_calls` when it asked for a function) or the incomplete reason.
fn response_finish_reasons(response: &Value) -> Option<Vec<String>> {
    if let Some(choices) = response.get("choices").and_then(Value::as_array) {
        let reasons: Vec<String> =
            choices.iter().filter_map(|c| c.get("finish_reason").and_then(Value::as_str).map(str::to_string)).collect();
        return (!reasons.is_empty()).then_some(reasons);
    }
    let output = response.get("output").and_then(Value::as_array)?;
    match response.get("status").and_then(Value::as_str)? {
        "completed" if output.iter().any(|i| i.get("type").and_then(Value::as_str) == Some("function_call")) => {
            Some(vec!["tool_calls".into()])
        }
        "completed" => Some(vec!["stop".into()]),
        "incomplete" => response.pointer("/incomplete_details/reason").and_then(Value::as_str).map(|r| vec![r.to_string()]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::normalize::testing::{calls, first_tool_call, texts, tool_response, weather_call};

    use serde_json::{Value, json};

    use crate::normalize::span::fixture_spans;
    use crate::normalize::{Draft, read_call};

    /// The model calls of a fixture, in span order (`None`s dropped).
    fn assert_chat_plain(d: &Draft) {
        assert_eq!(d.convention, Some("openinference"));
        assert_eq!(d.operation.as_deref(), Some("chat"));
        assert_eq!(d.provider.as_deref(), Some("openai"));
        assert_eq!(d.request_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(d.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(d.response_id.as_deref(), Some("chatcmpl-FIXTUREA0001"));
        assert_eq!((d.input_tokens, d.output_tokens, d.cache_read_tokens), (Some(27), Some(8), Some(0)));
        assert_eq!(d.finish_reasons, Some(vec!["stop".to_string()]));
        assert_eq!(d.system.as_deref(), Some("You are a concise assistant."));
        assert_eq!(texts(&d.input), vec!["What is the capital of France?"]);
        assert_eq!(texts(&d.output), vec!["The capital of France is Paris."]);
        assert_eq!(d.output.as_ref().unwrap()[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!((d.temperature, d.top_p, d.max_tokens, d.seed), (Some(0.2), Some(0.9), Some(100), Some(42)));
    }

    #[test]
    fn oi_chat_plain() {
        let calls = calls("oi/chat_plain.json");
        assert_eq!(calls.len(), 1);
        assert_chat_plain(&calls[0]);
        assert_eq!(calls[0].stream, None, "not a streamed request");
        assert_eq!(calls[0].reasoning_tokens, Some(0));
    }

    #[test]
    fn oi_chat_stream() {
        let d = &calls("oi/chat_stream.json")[0];
        assert_eq!(d.stream, Some(true));
        assert_eq!(d.temperature, Some(0.2));
        assert_eq!(d.response_id.as_deref(), Some("chatcmpl-FIXTUREA0002"));
        assert_eq!((d.input_tokens, d.output_tokens), (Some(27), Some(8)));
        assert_eq!(texts(&d.output), vec!["The capital of France is Paris."]);
        assert_eq!(d.finish_reasons, Some(vec!["stop".to_string()]));
    }

    #[test]
    fn oi_tool_call_two_calls() {
        let calls = calls("oi/tool_call.json");
        assert_eq!(calls.len(), 2);
        let (first, second) = (&calls[0], &calls[1]);
        assert_eq!((first.input_tokens, first.output_tokens, first.cache_read_tokens), (Some(1152), Some(19), Some(0)));
        assert_eq!(first.finish_reasons, Some(vec!["tool_calls".to_string()]));
        assert_eq!(first_tool_call(&first.output), weather_call());
        let tools = first.tool_definitions.as_ref().and_then(Value::as_array).expect("tool definitions");
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0]["function"]["name"], "get_weather");

        assert_eq!((second.input_tokens, second.output_tokens, second.cache_read_tokens), (Some(1187), Some(14), Some(1024)));
        assert_eq!(second.finish_reasons, Some(vec!["stop".to_string()]));
        assert_eq!(first_tool_call(&second.input), weather_call(), "the assistant turn is replayed");
        let (id, response) = tool_response(&second.input);
        assert_eq!(id.as_deref(), Some("call_FIXTUREweather01"));
        assert_eq!(response, json!("{\"temp_c\": 18, \"sky\": \"partly cloudy\"}"));
        assert_eq!(texts(&second.output), vec!["It is 18°C and partly cloudy in Paris right now."]);
        assert_eq!(second.system.as_deref(), Some("You are a concise assistant."));
    }

    #[test]
    fn oi_tool_call_stream() {
        let d = &calls("oi/tool_call_stream.json")[0];
        assert_eq!(first_tool_call(&d.output), weather_call());
        assert_eq!(d.finish_reasons, Some(vec!["tool_calls".to_string()]));
        assert_eq!(d.stream, Some(true));
    }

    #[test]
    fn oi_errors() {
        let d = &calls("oi/error_429.json")[0];
        assert_eq!(d.error_type.as_deref(), Some("RateLimitError"));
        assert!(d.error_message.as_deref().unwrap_or_default().contains("429"));
        assert_eq!(texts(&d.input), vec!["What is the capital of France?"]);
        assert_eq!((d.output.as_ref(), d.input_tokens), (None, None));
        let d = &calls("oi/error_500.json")[0];
        assert_eq!(d.error_type.as_deref(), Some("InternalServerError"));
        assert_eq!(d.stream, Some(true));
    }

    #[test]
    fn oi_embeddings() {
        let d = &calls("oi/embeddings.json")[0];
        assert_eq!(d.operation.as_deref(), Some("embeddings"));
        assert_eq!(d.input_tokens, Some(12));
        assert_eq!(d.request_model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(d.response_model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(texts(&d.input), vec!["hello world", "bonjour le monde"]);
    }

    #[test]
    fn oi_responses_api() {
        let d = &calls("oi/responses.json")[0];
        assert_eq!((d.input_tokens, d.output_tokens), (Some(31), Some(9)));
        assert_eq!(d.system.as_deref(), Some("You are a concise assistant."));
        assert_eq!(texts(&d.input), vec!["What is the capital of France?"]);
        assert_eq!(texts(&d.output), vec!["Paris is the capital of France."]);
        assert_eq!(d.response_id.as_deref(), Some("resp-FIXTUREA0006"));
        assert_eq!(d.temperature, Some(0.3));
        // No `llm.finish_reason` on Responses API spans: derived from the response's `status`.
        assert_eq!(d.finish_reasons, Some(vec!["stop".to_string()]));
    }

    #[test]
    fn oi_agent_only_llm_spans_are_calls() {
        let spans = fixture_spans("oi/agent.json");
        let drafts: Vec<(String, Option<Draft>)> = spans.iter().map(|s| (s.name.clone(), read_call(&s.view()))).collect();
        for (name, draft) in &drafts {
            assert_eq!(draft.is_some(), name == "ChatCompletion", "{name}");
        }
        let calls: Vec<&Draft> = drafts.iter().filter_map(|(_, d)| d.as_ref()).collect();
        assert_eq!(calls.len(), 2);
        for d in &calls {
            assert_eq!(d.session_id.as_deref(), Some("sess-FIXTURE-0001"));
            assert_eq!(d.user_id.as_deref(), Some("user-FIXTURE-42"));
            assert_eq!(d.metadata.get("metadata.app_version").map(String::as_str), Some("1.2.3"));
            assert_eq!(d.metadata.get("metadata.feature").map(String::as_str), Some("trip"));
            assert_eq!(d.metadata.get("tags").map(String::as_str), Some(r#"["fixture","agent"]"#));
        }
        assert_eq!(first_tool_call(&calls[0].output), weather_call());
        assert_eq!(calls[1].cache_read_tokens, Some(1024));
        assert_eq!(tool_response(&calls[1].input).0.as_deref(), Some("call_FIXTUREweather01"));
    }

    #[test]
    fn js_oi_chat() {
        let d = &calls("js-oi/chat_plain.json")[0];
        assert_chat_plain(d);

        let d = &calls("js-oi/chat_stream.json")[0];
        assert_eq!(d.stream, Some(true));
        assert_eq!(texts(&d.output), vec!["The capital of France is Paris."]);
        assert_eq!(d.finish_reasons, Some(vec!["stop".to_string()]));
        // JS OpenInference 4.2.7 records neither token usage nor the response model on streamed
        // calls: `llm.model_name` is the requested `gpt-4o-mini` and no `llm.token_count.*`.
        assert_eq!(d.response_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!((d.input_tokens, d.output_tokens), (None, None));
    }

    #[test]
    fn js_oi_tool_call() {
        let calls = calls("js-oi/tool_call.json");
        assert_eq!(calls.len(), 2);
        assert_eq!(first_tool_call(&calls[0].output), weather_call());
        assert_eq!((calls[0].input_tokens, calls[0].output_tokens), (Some(1152), Some(19)));
        assert_eq!((calls[1].input_tokens, calls[1].output_tokens, calls[1].cache_read_tokens), (Some(1187), Some(14), Some(1024)));
        assert_eq!(
            tool_response(&calls[1].input),
            (Some("call_FIXTUREweather01".into()), json!("{\"temp_c\":18,\"sky\":\"partly cloudy\"}"))
        );
    }

    #[test]
    fn js_oi_agent() {
        let spans = fixture_spans("js-oi/agent.json");
        let calls: Vec<Draft> = spans.iter().filter_map(|s| read_call(&s.view())).collect();
        assert_eq!(calls.len(), 2, "chain, agent and tool spans are not model calls");
        for name in ["get_weather", "weather_agent", "trip_planner"] {
            let span = spans.iter().find(|s| s.name == name).unwrap();
            assert_eq!(read_call(&span.view()), None, "{name}");
        }
        for d in &calls {
            assert_eq!(d.session_id.as_deref(), Some("sess-FIXTURE-0001"));
            assert_eq!(d.user_id.as_deref(), Some("user-FIXTURE-42"));
        }
    }

    #[test]
    fn json_and_protobuf_twins_give_the_same_drafts() {
        for scenario in ["oi/tool_call", "oi/agent", "oi/responses", "js-oi/agent"] {
            let from_json = calls(&format!("{scenario}.json"));
            assert!(!from_json.is_empty());
            assert_eq!(from_json, calls(&format!("{scenario}.pb")), "{scenario}");
        }
        assert_eq!(calls("oi/chat_plain.pb.gz"), calls("oi/chat_plain.json"));
        assert_eq!(calls("oi/chat_plain.grpc.pb"), calls("oi/chat_plain.json"));
    }

    /// Instrumentations that do not flatten messages leave only the raw request and response:
    /// the real payloads of the captures, with the flattened keys removed.
    #[test]
    fn raw_request_and_response_json_are_the_fallback() {
        let strip = |file: &str, index: usize| {
            let mut span = fixture_spans(file).remove(index);
            span.attrs
                .0
                .retain(|k, _| !k.starts_with("llm.input_messages") && !k.starts_with("llm.output_messages") && k != "llm.finish_reason");
            read_call(&span.view()).unwrap()
        };
        let first = strip("oi/tool_call.json", 0);
        assert_eq!(first.system.as_deref(), Some("You are a concise assistant."));
        assert_eq!(texts(&first.input), vec!["What's the weather like in Paris today?"]);
        assert_eq!(first_tool_call(&first.output), weather_call());
        assert_eq!(first.finish_reasons, Some(vec!["tool_calls".to_string()]));
        let second = strip("oi/tool_call.json", 1);
        assert_eq!(tool_response(&second.input).0.as_deref(), Some("call_FIXTUREweather01"));
        assert_eq!(texts(&second.output), vec!["It is 18°C and partly cloudy in Paris right now."]);
        assert_eq!(second.finish_reasons, Some(vec!["stop".to_string()]));

        let responses = strip("oi/responses.json", 0);
        assert_eq!(responses.system.as_deref(), Some("You are a concise assistant."));
        assert_eq!(texts(&responses.input), vec!["What is the capital of France?"]);
        assert_eq!(texts(&responses.output), vec!["Paris is the capital of France."]);
        assert_eq!(responses.finish_reasons, Some(vec!["stop".to_string()]));
    }

    #[test]
    fn other_span_kinds_set_their_operation() {
        let (d, call) =
            crate::normalize::testing::with_view("retrieve", json!({"openinference.span.kind": "RETRIEVER", "input.value": "q"}), |view| {
                let mut d = Draft::default();
                super::read(view, &mut d);
                (d, read_call(view))
            });
        assert_eq!((d.convention, d.operation.as_deref()), (Some("openinference"), Some("retriever")));
        assert_eq!(call, None);
    }
}
