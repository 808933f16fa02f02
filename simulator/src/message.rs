//! Chat messages as the simulated application sends them to the model and gets them back,
//! independent of how a convention writes them on a span.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub role: &'static str,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    ToolCall { id: String, name: &'static str, arguments: Value },
    ToolResult { id: String, response: Value },
}

impl Msg {
    pub fn text(role: &'static str, text: impl Into<String>) -> Msg {
        Msg { role, parts: vec![Part::Text(text.into())] }
    }

    pub fn text_content(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The OTel GenAI 1.37 JSON form (`{role, parts: [...], finish_reason?}`).
    pub fn to_genai(&self, finish_reason: Option<&str>) -> Value {
        let parts: Vec<Value> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => json!({"type": "text", "content": t}),
                Part::ToolCall { id, name, arguments } => json!({"type": "tool_call", "id": id, "name": name, "arguments": arguments}),
                Part::ToolResult { id, response } => json!({"type": "tool_call_response", "id": id, "response": response}),
            })
            .collect();
        let mut m = json!({"role": self.role, "parts": parts});
        if let Some(reason) = finish_reason {
            m["finish_reason"] = json!(reason);
        }
        m
    }

    /// The OpenAI Chat Completions form, as OpenInference's `input.value` / `output.value`
    /// carry it. Arguments are a JSON string there, whatever the model produced.
    pub fn to_openai(&self) -> Value {
        let mut m = json!({"role": self.role});
        let text = self.text_content();
        let calls: Vec<Value> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall { id, name, arguments } => {
                    Some(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments_string(arguments)}}))
                }
                _ => None,
            })
            .collect();
        if let Some(Part::ToolResult { id, response }) = self.parts.first() {
            m["tool_call_id"] = json!(id);
            m["content"] = json!(value_string(response));
            return m;
        }
        m["content"] = if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) };
        if !calls.is_empty() {
            m["tool_calls"] = Value::Array(calls);
        }
        m
    }
}

/// Tool-call arguments as the wire carries them: the JSON text of an object, or the raw string
/// a model produced when it was not valid JSON.
pub fn arguments_string(arguments: &Value) -> String {
    value_string(arguments)
}

pub fn value_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
