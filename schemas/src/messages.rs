//! The canonical message model stored in `llm_calls.input_messages` / `output_messages`
//! (JSON), whatever convention the span used.
//!
//! It follows the OTel GenAI 1.37+ message schema (`{role, parts: [...], finish_reason?}`) so
//! that the most common modern payload needs no translation, with tool-call arguments always
//! parsed into JSON values (OpenInference and the legacy conventions send them as strings).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool` (or whatever the producer sent).
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        content: String,
    },
    ToolCall {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        name: String,
        #[serde(default)]
        arguments: Value,
    },
    ToolCallResponse {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// `result` is pydantic-ai's name for it.
        #[serde(default, alias = "result")]
        response: Value,
    },
    Reasoning {
        content: String,
    },
    /// Anything else (images, files, future part types), kept as received.
    #[serde(untagged)]
    Other(Value),
}

impl Message {
    pub fn text(role: &str, content: impl Into<String>) -> Message {
        Message { role: role.to_string(), name: None, parts: vec![Part::Text { content: content.into() }], finish_reason: None }
    }

    /// The concatenated text parts.
    pub fn text_content(&self) -> String {
        let texts: Vec<&str> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { content } => Some(content.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n")
    }

    pub fn tool_calls(&self) -> impl Iterator<Item = (&Option<String>, &str, &Value)> {
        self.parts.iter().filter_map(|p| match p {
            Part::ToolCall { id, name, arguments } => Some((id, name.as_str(), arguments)),
            _ => None,
        })
    }
}

/// Tool-call arguments arrive as a JSON object or as a JSON string holding one; both become a
/// value. A string that is not JSON stays a string rather than being dropped.
pub fn parse_arguments(raw: &Value) -> Value {
    match raw {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otel_1_37_messages_parse_as_is() {
        let raw = r#"[{"role":"assistant","parts":[{"arguments":{"location":"Paris, FR"},"name":"get_weather","id":"call_1","type":"tool_call"},{"type":"image","uri":"x"}],"finish_reason":"tool_calls"}]"#;
        let messages: Vec<Message> = serde_json::from_str(raw).unwrap();
        assert_eq!(messages[0].finish_reason.as_deref(), Some("tool_calls"));
        let calls: Vec<_> = messages[0].tool_calls().collect();
        assert_eq!(calls[0].1, "get_weather");
        assert_eq!(calls[0].2["location"], "Paris, FR");
        assert!(matches!(messages[0].parts[1], Part::Other(_)));
        let back: Vec<Message> = serde_json::from_str(&serde_json::to_string(&messages).unwrap()).unwrap();
        assert_eq!(back, messages);
    }

    #[test]
    fn string_arguments_are_parsed_and_garbage_is_kept() {
        assert_eq!(parse_arguments(&Value::String("{\"a\":1}".into()))["a"], 1);
        assert_eq!(parse_arguments(&Value::String("{not json".into())), Value::String("{not json".into()));
    }
}
