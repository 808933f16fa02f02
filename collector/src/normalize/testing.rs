//! Test support shared by the convention modules: drafts of a captured fixture, and the bits
//! of them that the assertions compare.

use flywheel_schemas::messages::{Message, Part};
use serde_json::{Value, json};

use super::span::fixture_spans;
use super::{Attrs, Draft, SpanView, read_call};

/// The model calls of a fixture file, as drafts.
pub fn calls(file: &str) -> Vec<Draft> {
    fixture_spans(file).iter().filter_map(|s| read_call(&s.view())).collect()
}

/// The non-empty text of each message.
pub fn texts(messages: &Option<Vec<Message>>) -> Vec<String> {
    messages.iter().flatten().map(Message::text_content).filter(|t| !t.is_empty()).collect()
}

pub fn first_tool_call(messages: &Option<Vec<Message>>) -> (Option<String>, String, Value) {
    let (id, name, args) = messages.iter().flatten().flat_map(Message::tool_calls).next().expect("a tool call");
    (id.clone(), name.to_string(), args.clone())
}

pub fn tool_response(messages: &Option<Vec<Message>>) -> (Option<String>, Value) {
    messages
        .iter()
        .flatten()
        .flat_map(|m| &m.parts)
        .find_map(|p| match p {
            Part::ToolCallResponse { id, response } => Some((id.clone(), response.clone())),
            _ => None,
        })
        .expect("a tool result")
}

/// The tool call every `tool_call` fixture makes.
pub fn weather_call() -> (Option<String>, String, Value) {
    (Some("call_FIXTUREweather01".into()), "get_weather".into(), json!({"location": "Paris, FR", "unit": "celsius"}))
}

/// Runs `f` on a view of a span named `name` with `attrs` (a JSON object) and no events.
pub fn with_view<T>(name: &str, attrs: Value, f: impl FnOnce(&SpanView<'_>) -> T) -> T {
    let attrs = Attrs(serde_json::from_value(attrs).expect("attributes are a JSON object"));
    let resource = Attrs::default();
    let view = SpanView { name, scope_name: "", resource: &resource, attrs: &attrs, events: &[], is_error: false, status_message: "" };
    f(&view)
}
