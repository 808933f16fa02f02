//! The `format_violation` rule: the call asked for JSON (a `response_format`, JSON mode,
//! `gen_ai.output.type = json`, a structured-output schema, or instructions that say so) and
//! the answer does not parse, or misses a key the schema requires.

use serde_json::Value;

use super::inputs::FormatRequest;

/// The JSON inside an answer that wraps it in a Markdown code fence (which JSON-mode clients
/// strip and tolerate), else the answer itself.
fn unfenced(output: &str) -> &str {
    let t = output.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let body = rest.split_once('\n').map_or("", |(_, b)| b);
        return body.trim_end().strip_suffix("```").unwrap_or(body).trim();
    }
    t
}

/// The shallowest object with a `required` list in a schema (the answer's top level), and
/// that list.
fn required_keys(schema: &Value) -> Option<Vec<String>> {
    let mut level = vec![schema];
    for _ in 0..6 {
        let mut next = Vec::new();
        for v in level {
            match v {
                Value::Object(map) => {
                    if let Some(Value::Array(keys)) = map.get("required")
                        && map.contains_key("properties")
                    {
                        return Some(keys.iter().filter_map(Value::as_str).map(str::to_string).collect());
                    }
                    next.extend(map.values());
                }
                Value::Array(items) => next.extend(items),
                _ => {}
            }
        }
        level = next;
    }
    None
}

/// What is wrong with the answer, or None when it is what was asked for.
pub fn check(request: &FormatRequest) -> Option<String> {
    let body = unfenced(&request.output);
    if body.is_empty() {
        return None;
    }
    let parsed = match serde_json::from_str::<Value>(body) {
        Ok(v) => v,
        Err(e) => {
            let start = super::excerpt(body, 60);
            return Some(format!("JSON was requested; the answer does not parse ({}): \"{start}\"", e.classify_phrase()));
        }
    };
    let schema = serde_json::from_str::<Value>(&request.spec).ok();
    let required = schema.as_ref().and_then(required_keys).unwrap_or_default();
    if required.is_empty() {
        return None;
    }
    let Value::Object(answer) = &parsed else {
        return Some(format!("JSON object requested; the answer is a JSON {}", kind(&parsed)));
    };
    let missing: Vec<&String> = required.iter().filter(|k| !answer.contains_key(k.as_str())).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the answer misses required key{} {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        )
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        Value::Object(_) => "object",
    }
}

/// serde_json's error category in words, without the line and column that differ per answer.
trait Phrase {
    fn classify_phrase(&self) -> &'static str;
}

impl Phrase for serde_json::Error {
    fn classify_phrase(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Eof => "it stops before the JSON ends",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data | serde_json::error::Category::Io => "invalid JSON",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(spec: &str, output: &str) -> FormatRequest {
        FormatRequest { spec: spec.into(), output: output.into(), ..Default::default() }
    }

    #[test]
    fn json_that_parses_is_fine_fenced_or_not() {
        assert_eq!(check(&req("json", r#"{"intent": "refund", "order_id": 42}"#)), None);
        assert_eq!(check(&req("json", "```json\n{\"intent\": \"refund\"}\n```")), None);
        assert_eq!(check(&req("instructions", "[1, 2, 3]")), None);
    }

    #[test]
    fn prose_or_cut_json_is_a_violation() {
        let e = check(&req("json", "Sure! The intent is a refund request for order 42.")).unwrap();
        assert!(e.contains("does not parse (not JSON)"), "{e}");
        let e = check(&req("json", r#"{"intent": "refund", "order_id": 4"#)).unwrap();
        assert!(e.contains("stops before the JSON ends"), "{e}");
    }

    #[test]
    fn a_schema_requires_its_keys() {
        let spec = r#"{"response_format":{"type":"json_schema","json_schema":{"name":"triage","schema":{"type":"object","properties":{"intent":{"type":"string"},"priority":{"type":"string"}},"required":["intent","priority"]}}}}"#;
        assert_eq!(check(&req(spec, r#"{"intent":"refund","priority":"high"}"#)), None);
        assert_eq!(check(&req(spec, r#"{"intent":"refund"}"#)).unwrap(), "the answer misses required key `priority`");
        assert_eq!(check(&req(spec, r#"["refund"]"#)).unwrap(), "JSON object requested; the answer is a JSON array");
    }
}
