//! Normalisation: one `llm_calls` row per model call, whatever convention the span used.
//!
//! Each convention module reads the attributes it knows into a [`Draft`], filling only fields
//! still empty, in order of precedence (OTel GenAI, OpenLLMetry, OpenInference, Vercel AI SDK):
//! a span that carries several conventions (common: OpenLLMetry writes `gen_ai.*` too) gets the
//! most specific value of each field. Unknown attributes are never an error: the raw span is
//! stored whole in `spans` whatever happens here.

pub mod attrs;
pub mod genai;
pub mod openinference;
pub mod openllmetry;
pub mod span;
#[cfg(test)]
pub(crate) mod testing;
pub mod time_range;
pub mod vercel;

use std::collections::BTreeMap;

use flywheel_schemas::messages::{Message, Part};
use flywheel_schemas::rows::LlmCallRow;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use attrs::Attrs;

/// A span event, with typed attributes.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub time: OffsetDateTime,
    pub attrs: Attrs,
}

/// What the normaliser sees of one span.
#[derive(Debug, Clone)]
pub struct SpanView<'a> {
    pub name: &'a str,
    pub scope_name: &'a str,
    pub resource: &'a Attrs,
    pub attrs: &'a Attrs,
    pub events: &'a [Event],
    pub is_error: bool,
    pub status_message: &'a str,
}

/// The fields of a call as read from the conventions, before they become a row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    pub convention: Option<&'static str>,
    pub operation: Option<String>,
    pub provider: Option<String>,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub response_id: Option<String>,
    pub system: Option<String>,
    pub input: Option<Vec<Message>>,
    pub output: Option<Vec<Message>>,
    pub tool_definitions: Option<Value>,
    pub finish_reasons: Option<Vec<String>>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    pub seed: Option<i64>,
    pub stream: Option<bool>,
    pub ttft_ns: Option<u64>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub feature: Option<String>,
    pub template_id: Option<String>,
    pub template_version: Option<String>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// The HTTP status of the failed request, when recorded.
    pub http_status: Option<u16>,
    pub metadata: BTreeMap<String, String>,
}

/// `fill!(draft.field, value)`: sets a field only if no earlier (more specific) source did.
macro_rules! fill {
    ($slot:expr, $value:expr) => {
        if $slot.is_none() {
            $slot = $value;
        }
    };
}
pub(crate) use fill;

impl Draft {
    /// Fills every empty field of `self` from `other` (used to join log events to spans).
    pub fn merge(&mut self, other: Draft) {
        fill!(self.convention, other.convention);
        fill!(self.operation, other.operation);
        fill!(self.provider, other.provider);
        fill!(self.request_model, other.request_model);
        fill!(self.response_model, other.response_model);
        fill!(self.response_id, other.response_id);
        fill!(self.system, other.system);
        fill!(self.input, other.input);
        fill!(self.output, other.output);
        fill!(self.tool_definitions, other.tool_definitions);
        fill!(self.finish_reasons, other.finish_reasons);
        fill!(self.input_tokens, other.input_tokens);
        fill!(self.output_tokens, other.output_tokens);
        fill!(self.cache_read_tokens, other.cache_read_tokens);
        fill!(self.cache_write_tokens, other.cache_write_tokens);
        fill!(self.reasoning_tokens, other.reasoning_tokens);
        fill!(self.cost_usd, other.cost_usd);
        fill!(self.temperature, other.temperature);
        fill!(self.top_p, other.top_p);
        fill!(self.max_tokens, other.max_tokens);
        fill!(self.seed, other.seed);
        fill!(self.stream, other.stream);
        fill!(self.ttft_ns, other.ttft_ns);
        fill!(self.session_id, other.session_id);
        fill!(self.user_id, other.user_id);
        fill!(self.feature, other.feature);
        fill!(self.template_id, other.template_id);
        fill!(self.template_version, other.template_version);
        fill!(self.error_type, other.error_type);
        fill!(self.error_message, other.error_message);
        fill!(self.http_status, other.http_status);
        for (k, v) in other.metadata {
            self.metadata.entry(k).or_insert(v);
        }
    }

    /// Derived fields, recomputed after every merge: finish reasons from the output messages,
    /// system messages moved out of the input.
    pub fn finalize(&mut self) {
        if self.finish_reasons.is_none() {
            let from_output: Vec<String> = self.output.iter().flatten().filter_map(|m| m.finish_reason.clone()).collect();
            if !from_output.is_empty() {
                self.finish_reasons = Some(from_output);
            }
        }
        self.split_system();
    }

    /// Moves system-role messages out of the input into the system instructions: they repeat on
    /// every call and are stored once by hash (`contents`), whatever convention carried them.
    ///
    /// When the span names its system instructions apart (`gen_ai.system_instructions`), a
    /// system message of the input that says something else is per-call context — retrieved
    /// pages, a user profile — and stays in the input: dropped, the model's input would be lost.
    fn split_system(&mut self) {
        let Some(input) = self.input.as_mut() else { return };
        let is_system = |m: &Message| m.role == "system" || m.role == "developer";
        match &self.system {
            None => {
                let system: Vec<String> = input.iter().filter(|m| is_system(m)).map(Message::text_content).collect();
                input.retain(|m| !is_system(m));
                if !system.is_empty() {
                    self.system = Some(system.join("\n"));
                }
            }
            Some(instructions) => {
                let instructions = instructions.trim();
                input.retain(|m| !is_system(m) || m.text_content().trim() != instructions);
            }
        }
    }
}

/// Reads every convention into a draft. `None` when the span is not a model call (agents,
/// tools, workflows, HTTP spans…): those stay in `spans` only.
pub fn read_call(span: &SpanView<'_>) -> Option<Draft> {
    let mut draft = Draft::default();
    genai::read(span, &mut draft);
    openllmetry::read(span, &mut draft);
    openinference::read(span, &mut draft);
    vercel::read(span, &mut draft);
    if !is_model_call(span, &draft) {
        return None;
    }
    let (session, user) = identity_of(span);
    fill!(draft.session_id, session);
    fill!(draft.user_id, user);
    errors(span, &mut draft);
    draft.finalize();
    Some(draft)
}

/// A name for the application feature that a span belongs to, when it says so itself: an
/// agent, a workflow, a Vercel AI SDK function id.
pub fn feature_hint(span: &SpanView<'_>) -> Option<String> {
    let a = span.attrs;
    ["gen_ai.agent.name", "gen_ai.workflow.name", "traceloop.workflow.name", "ai.telemetry.functionId"].iter().find_map(|k| a.string(k))
}

const MODEL_OPERATIONS: &[&str] = &["chat", "text_completion", "generate_content", "completion", "embeddings", "embedding", "responses"];

fn is_model_call(span: &SpanView<'_>, draft: &Draft) -> bool {
    match draft.operation.as_deref() {
        Some(op) => MODEL_OPERATIONS.contains(&op),
        // No operation name at all: a span that names a model and reports usage is a call.
        None => draft.convention.is_some() && (draft.request_model.is_some() || draft.response_model.is_some()) && !span.name.is_empty(),
    }
}

/// Session and user ids of a span, in the order Langfuse settled on after years of user reports.
pub fn identity_of(span: &SpanView<'_>) -> (Option<String>, Option<String>) {
    let a = span.attrs;
    let r = span.resource;
    let first = |keys: &[&str]| keys.iter().find_map(|k| a.string(k).or_else(|| r.string(k)));
    (
        first(&[
            "langfuse.session.id",
            "session.id",
            "gen_ai.conversation.id",
            "traceloop.association.properties.session_id",
            "traceloop.association.properties.sessionId",
            "ai.telemetry.metadata.sessionId",
            "ai.telemetry.metadata.session_id",
        ]),
        first(&[
            "langfuse.user.id",
            "user.id",
            "traceloop.association.properties.user_id",
            "traceloop.association.properties.userId",
            "ai.telemetry.metadata.userId",
            "ai.telemetry.metadata.user_id",
            "enduser.id",
            "gen_ai.user",
            "llm.user",
        ]),
    )
}

/// Error type and message: `error.type` when the instrumentation sets it, else the exception
/// event's type without its module path (`openai.RateLimitError` → `RateLimitError`, as OTel
/// instrumentations report it), so that one failure mode groups across conventions.
fn errors(span: &SpanView<'_>, draft: &mut Draft) {
    let exception = span.events.iter().rev().find(|e| e.name == "exception");
    fill!(draft.error_type, span.attrs.string("error.type").filter(|t| t != "_OTHER"));
    if let Some(e) = exception {
        fill!(draft.error_type, e.attrs.string("exception.type").map(|t| t.rsplit(['.', ':']).next().unwrap_or(&t).to_string()));
        fill!(draft.error_message, e.attrs.string("exception.message"));
    }
    if span.is_error {
        fill!(draft.error_message, (!span.status_message.is_empty()).then(|| span.status_message.to_string()));
        if draft.error_type.is_none() {
            // "RateLimitError: Error code: 429 - …" (OpenInference's status message).
            draft.error_type = span
                .status_message
                .split_once(':')
                .map(|(t, _)| t.trim())
                .filter(|t| !t.is_empty() && !t.contains(' '))
                .map(str::to_string)
                .or_else(|| Some("error".to_string()));
        }
    }
    // The request's HTTP status, by meaning: the HTTP conventions' attribute (current, then
    // older names) on the span or its exception (else the messages, see `error_class`).
    const STATUS_KEYS: [&str; 4] = ["http.response.status_code", "http.status_code", "error.status_code", "status_code"];
    let from_attrs = |attrs: &Attrs| STATUS_KEYS.iter().find_map(|k| attrs.u64(k)).filter(|s| (100..600).contains(s)).map(|s| s as u16);
    fill!(draft.http_status, from_attrs(span.attrs));
    if let Some(e) = exception {
        fill!(draft.http_status, from_attrs(&e.attrs));
    }
}

/// The class of a call's error and its request's HTTP status: the status recorded in
/// attributes, else one its type or message states (`Error code: 429`, an `error.type` of
/// `429`). Nothing for a call that did not fail.
fn error_class(draft: &Draft, is_error: bool) -> (String, u16) {
    if !is_error && draft.error_type.is_none() {
        return (String::new(), 0);
    }
    let (ty, message) = (draft.error_type.as_deref().unwrap_or_default(), draft.error_message.as_deref().unwrap_or_default());
    let (class, status) = flywheel_schemas::error_class::read(ty, message, draft.http_status);
    (class.id().to_string(), status)
}

/// The identity of a span: `(trace_id, span_id)` in hex, plus where it sits in its trace.
#[derive(Debug, Clone)]
pub struct SpanIds {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub service_name: String,
}

/// Hash of prompt content, used to store it once (`contents`) and to spot repeated requests.
pub fn content_hash(text: &str) -> String {
    crate::otlp::to_hex(&Sha256::digest(text.as_bytes())[..12])
}

/// The `llm_calls` row of a draft. Cost is priced by the caller (it needs the price table).
pub fn to_row(project: &str, ids: &SpanIds, draft: &Draft, is_error: bool, now: OffsetDateTime) -> LlmCallRow {
    let input = draft.input.clone().unwrap_or_default();
    let output = draft.output.clone().unwrap_or_default();
    // The user's own last words: a user message that only carries tool results (Anthropic's
    // layout) is not what the user asked.
    let input_text =
        input.iter().rev().filter(|m| m.role == "user").map(Message::text_content).find(|t| !t.trim().is_empty()).unwrap_or_default();
    let output_text = output.iter().map(Message::text_content).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("\n");
    let mut tool_names: Vec<String> = output.iter().flat_map(|m| m.tool_calls().map(|(_, name, _)| name.to_string())).collect();
    tool_names.dedup();
    let hash_of = |text: &Option<String>| text.as_deref().filter(|t| !t.is_empty()).map(content_hash).unwrap_or_default();
    let tool_defs = draft.tool_definitions.as_ref().map(|v| v.to_string());
    let input_json = serde_json::to_string(&input).unwrap_or_default();
    let (error_class, http_status) = error_class(draft, is_error);
    LlmCallRow {
        project_id: project.to_string(),
        trace_id: ids.trace_id.clone(),
        span_id: ids.span_id.clone(),
        parent_span_id: ids.parent_span_id.clone(),
        session_id: draft.session_id.clone().unwrap_or_default(),
        user_id: draft.user_id.clone().unwrap_or_default(),
        feature: draft.feature.clone().unwrap_or_default(),
        service_name: ids.service_name.clone(),
        operation: draft.operation.clone().unwrap_or_else(|| "chat".into()),
        provider: draft.provider.clone().unwrap_or_default(),
        request_model: draft.request_model.clone().or_else(|| draft.response_model.clone()).unwrap_or_default(),
        response_model: draft.response_model.clone().or_else(|| draft.request_model.clone()).unwrap_or_default(),
        response_id: draft.response_id.clone().unwrap_or_default(),
        start_time: ids.start,
        end_time: ids.end,
        duration_ns: (ids.end - ids.start).whole_nanoseconds().max(0) as u64,
        time_to_first_token_ns: draft.ttft_ns,
        input_messages: input_json.clone(),
        output_messages: serde_json::to_string(&output).unwrap_or_default(),
        system_instructions_hash: hash_of(&draft.system),
        tool_definitions_hash: hash_of(&tool_defs),
        input_text,
        output_text,
        tool_names,
        finish_reasons: draft.finish_reasons.clone().unwrap_or_default(),
        input_tokens: draft.input_tokens.unwrap_or(0),
        output_tokens: draft.output_tokens.unwrap_or(0),
        cache_read_tokens: draft.cache_read_tokens.unwrap_or(0),
        cache_write_tokens: draft.cache_write_tokens.unwrap_or(0),
        reasoning_tokens: draft.reasoning_tokens.unwrap_or(0),
        cost_usd: draft.cost_usd,
        cost_source: if draft.cost_usd.is_some() { "sdk".into() } else { String::new() },
        status: if is_error { "error".into() } else { "ok".into() },
        error_type: draft.error_type.clone().unwrap_or_default(),
        error_message: draft.error_message.clone().unwrap_or_default(),
        error_class,
        http_status,
        temperature: draft.temperature,
        top_p: draft.top_p,
        max_tokens: draft.max_tokens,
        seed: draft.seed,
        is_stream: draft.stream.unwrap_or(false),
        prompt_template_id: draft.template_id.clone().unwrap_or_default(),
        prompt_template_version: draft.template_version.clone().unwrap_or_default(),
        convention: draft.convention.unwrap_or("unknown").to_string(),
        input_hash: if input.is_empty() {
            String::new()
        } else {
            content_hash(&format!("{}\u{0}{input_json}", draft.system.as_deref().unwrap_or("")))
        },
        metadata: draft.metadata.clone(),
        ingested_at: now,
    }
}

/// The conventions a call row may name ([`Draft::convention`]).
const CONVENTIONS: &[&str] =
    &["otel_genai_1.27", "otel_genai_1.28", "otel_genai_1.37", "openinference", "openllmetry", "openllmetry_legacy", "vercel_ai"];

/// A stored call back as what [`to_row`] made it from, to complete it with what arrived later
/// (its GenAI log events, through another collector): `system` and `tool_definitions` are the
/// contents its hashes name. Derived columns (texts, tool names, hashes, error class, a cost
/// from the price table) are derived again; messages stored empty are absent, so that log
/// events may fill them.
pub fn from_row(row: &LlmCallRow, system: Option<String>, tool_definitions: Option<Value>) -> (SpanIds, Draft, bool) {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let messages = |json: &str| serde_json::from_str::<Vec<Message>>(json).ok().filter(|m| !m.is_empty());
    let ids = SpanIds {
        trace_id: row.trace_id.clone(),
        span_id: row.span_id.clone(),
        parent_span_id: row.parent_span_id.clone(),
        start: row.start_time,
        end: row.end_time,
        service_name: row.service_name.clone(),
    };
    let draft = Draft {
        convention: CONVENTIONS.iter().copied().find(|c| *c == row.convention),
        operation: text(&row.operation),
        provider: text(&row.provider),
        request_model: text(&row.request_model),
        response_model: text(&row.response_model),
        response_id: text(&row.response_id),
        system: system.filter(|s| !s.is_empty()),
        input: messages(&row.input_messages),
        output: messages(&row.output_messages),
        tool_definitions,
        finish_reasons: (!row.finish_reasons.is_empty()).then(|| row.finish_reasons.clone()),
        input_tokens: (row.input_tokens > 0).then_some(row.input_tokens),
        output_tokens: (row.output_tokens > 0).then_some(row.output_tokens),
        cache_read_tokens: (row.cache_read_tokens > 0).then_some(row.cache_read_tokens),
        cache_write_tokens: (row.cache_write_tokens > 0).then_some(row.cache_write_tokens),
        reasoning_tokens: (row.reasoning_tokens > 0).then_some(row.reasoning_tokens),
        // A price-table cost is priced again (tokens may come with the log events).
        cost_usd: row.cost_usd.filter(|_| row.cost_source == "sdk"),
        temperature: row.temperature,
        top_p: row.top_p,
        max_tokens: row.max_tokens,
        seed: row.seed,
        stream: Some(row.is_stream),
        ttft_ns: row.time_to_first_token_ns,
        session_id: text(&row.session_id),
        user_id: text(&row.user_id),
        feature: text(&row.feature),
        template_id: text(&row.prompt_template_id),
        template_version: text(&row.prompt_template_version),
        error_type: text(&row.error_type),
        error_message: text(&row.error_message),
        http_status: (row.http_status > 0).then_some(row.http_status),
        metadata: row.metadata.clone(),
    };
    (ids, draft, row.status == "error")
}

/// Builds messages from OpenAI chat-style JSON (`[{role, content, tool_calls, tool_call_id}]`),
/// shared by the conventions that embed raw request payloads.
pub fn messages_from_openai(value: &Value) -> Vec<Message> {
    let Some(items) = value.as_array() else { return Vec::new() };
    items.iter().filter_map(message_from_openai).collect()
}

pub fn message_from_openai(m: &Value) -> Option<Message> {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("user").to_string();
    let mut parts = Vec::new();
    match m.get("content") {
        Some(Value::String(s)) if role == "tool" => parts.push(Part::ToolCallResponse {
            id: m.get("tool_call_id").and_then(Value::as_str).map(str::to_string),
            response: Value::String(s.clone()),
        }),
        Some(Value::String(s)) => parts.push(Part::Text { content: s.clone() }),
        Some(Value::Array(items)) => {
            for item in items {
                match (item.get("type").and_then(Value::as_str), item.get("text").and_then(Value::as_str)) {
                    (Some("text") | None, Some(text)) => parts.push(Part::Text { content: text.to_string() }),
                    _ => parts.push(Part::Other(item.clone())),
                }
            }
        }
        _ => {}
    }
    for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let function = call.get("function").unwrap_or(call);
        parts.push(Part::ToolCall {
            id: call.get("id").and_then(Value::as_str).map(str::to_string),
            name: function.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
            arguments: flywheel_schemas::messages::parse_arguments(function.get("arguments").unwrap_or(&Value::Null)),
        });
    }
    Some(Message {
        role,
        name: m.get("name").and_then(Value::as_str).map(str::to_string),
        parts,
        finish_reason: m.get("finish_reason").and_then(Value::as_str).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The storage join completes a stored row through [`from_row`]: a row read back and
    /// written again is the row it was, derived columns included.
    #[test]
    fn a_stored_call_read_back_gives_the_same_row() {
        let t = time::macros::datetime!(2026-12-01 10:00 UTC);
        let ids = SpanIds {
            trace_id: "t".into(),
            span_id: "s".into(),
            parent_span_id: "p".into(),
            start: t,
            end: t + time::Duration::seconds(2),
            service_name: "svc".into(),
        };
        let text = |role: &str, s: &str| Message {
            role: role.into(),
            name: None,
            parts: vec![Part::Text { content: s.into() }],
            finish_reason: None,
        };
        let mut answer = text("assistant", "Refunds take 5 days.");
        answer.parts.push(Part::ToolCall { id: Some("c1".into()), name: "lookup".into(), arguments: serde_json::json!({"id": 4}) });
        let mut draft = Draft {
            convention: Some("openinference"),
            operation: Some("chat".into()),
            provider: Some("openai".into()),
            request_model: Some("gpt-4o".into()),
            response_id: Some("chatcmpl-1".into()),
            system: Some("Be brief.".into()),
            input: Some(vec![text("system", "Be brief."), text("user", "How long do refunds take?")]),
            output: Some(vec![answer]),
            tool_definitions: Some(serde_json::json!([{"name": "lookup"}])),
            input_tokens: Some(12),
            output_tokens: Some(7),
            cache_read_tokens: Some(3),
            temperature: Some(0.2),
            max_tokens: Some(256),
            stream: Some(true),
            ttft_ns: Some(1000),
            session_id: Some("sess".into()),
            feature: Some("support".into()),
            error_type: Some("RateLimitError".into()),
            http_status: Some(429),
            metadata: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        draft.finalize();
        let row = to_row("proj", &ids, &draft, true, t);
        let (ids2, mut again, is_error) = from_row(&row, draft.system.clone(), draft.tool_definitions.clone());
        again.finalize();
        assert_eq!(to_row("proj", &ids2, &again, is_error, t), row);
    }

    /// A system message of the input that is not the span's system instructions (retrieved
    /// pages a RAG template put there) is the model's input too: it stays, where a copy of the
    /// instructions goes.
    #[test]
    fn per_call_system_context_is_kept_beside_the_instructions() {
        let mut d = Draft {
            system: Some("You are the help-centre assistant.".into()),
            input: Some(vec![
                Message::text("system", "You are the help-centre assistant."),
                Message::text("system", "Help-centre articles:\n[1] Shipping: we ship to 44 countries."),
                Message::text("user", "Do you ship to Japan?"),
            ]),
            ..Default::default()
        };
        d.finalize();
        let roles: Vec<(&str, String)> = d.input.iter().flatten().map(|m| (m.role.as_str(), m.text_content())).collect();
        assert_eq!(roles.len(), 2, "{roles:?}");
        assert!(roles[0].1.starts_with("Help-centre articles"));
        assert_eq!(d.system.as_deref(), Some("You are the help-centre assistant."));

        let mut only_messages =
            Draft { input: Some(vec![Message::text("system", "Be brief."), Message::text("user", "Hi")]), ..Default::default() };
        only_messages.finalize();
        assert_eq!(only_messages.system.as_deref(), Some("Be brief."));
        assert_eq!(only_messages.input.as_ref().map(Vec::len), Some(1));
    }
}
