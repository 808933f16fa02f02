//! The signals wire contract (`POST /v1/signals`, JSON Schema in `schemas/api/`): parsing and
//! validation, with an error per signal that names the field at fault, so that one bad signal
//! in a batch is reported and the others are kept.

use std::collections::BTreeMap;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const KINDS: &[&str] = &[
    "thumbs_up",
    "thumbs_down",
    "rating",
    "regenerate",
    "edit",
    "copy",
    "feature_disabled",
    "feature_enabled",
    "abandon",
    "escalate",
    "retry",
    "comment",
    "custom",
    "evaluation",
];

/// Who judged, for an `evaluation`: a person, a model (LLM-as-judge) or a program. Phoenix's
/// `DECISION` and `AGENT` annotators read as a model.
pub const ANNOTATORS: &[&str] = &["human", "llm", "code"];

/// Where an evaluation's label and annotator are kept among a signal's attributes.
pub const EVALUATION_LABEL: &str = "evaluation.label";
pub const EVALUATION_ANNOTATOR: &str = "evaluation.annotator";
/// The OTel GenAI event (log record or span event) of an evaluation result.
pub const EVALUATION_EVENT: &str = "gen_ai.evaluation.result";

/// Longest free text kept (comment, edited text); longer is refused, not silently cut.
pub const MAX_TEXT: usize = 64 * 1024;

/// One validated signal, before linking.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub kind: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub message_id: String,
    pub user_id: String,
    pub timestamp: Option<OffsetDateTime>,
    pub value: Option<f64>,
    pub scale: Option<f64>,
    pub comment: String,
    pub text: Option<String>,
    pub feature: String,
    pub idempotency_key: String,
    pub attributes: BTreeMap<String, String>,
}

/// Why one signal was refused: which one, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Invalid {
    pub index: usize,
    pub field: String,
    pub error: String,
}

/// The signals of a request body: one object, an array, or `{"signals": [...]}`.
/// `Err` when the body itself is not usable (not JSON, wrong shape).
pub fn parse_body(body: &[u8]) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(mut map) if map.contains_key("signals") => match map.remove("signals") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err("`signals` must be an array of signal objects".into()),
        },
        obj @ Value::Object(_) => Ok(vec![obj]),
        _ => Err("the body must be a signal object, an array of them, or {\"signals\": [...]}".into()),
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Validates one signal object.
pub fn validate(index: usize, value: &Value) -> Result<Signal, Invalid> {
    let bad = |field: &str, error: String| Invalid { index, field: field.to_string(), error };
    let Value::Object(map) = value else { return Err(bad("", "each signal must be a JSON object".into())) };
    let string = |field: &str| -> Result<String, Invalid> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(s.clone()),
            Some(Value::String(_)) => Err(bad(field, format!("longer than {MAX_TEXT} bytes"))),
            Some(other) => Err(bad(field, format!("must be a string, got {}", type_name(other)))),
        }
    };
    let number = |field: &str| -> Result<Option<f64>, Invalid> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(bad(field, format!("must be a number, got {}", type_name(other)))),
        }
    };
    let kind = string("kind")?;
    if kind.is_empty() {
        return Err(bad("kind", format!("required; one of {}", KINDS.join(", "))));
    }
    if !KINDS.contains(&kind.as_str()) {
        return Err(bad("kind", format!("unknown kind `{kind}`; one of {}", KINDS.join(", "))));
    }
    let trace_id = string("trace_id")?.to_ascii_lowercase();
    if !trace_id.is_empty() && !is_hex(&trace_id, 32) {
        return Err(bad("trace_id", "must be 32 hexadecimal characters".into()));
    }
    let span_id = string("span_id")?.to_ascii_lowercase();
    if !span_id.is_empty() && !is_hex(&span_id, 16) {
        return Err(bad("span_id", "must be 16 hexadecimal characters".into()));
    }
    let session_id = string("session_id")?;
    let message_id = string("message_id")?;
    if trace_id.is_empty() && span_id.is_empty() && session_id.is_empty() && message_id.is_empty() {
        return Err(bad("trace_id", "a signal needs a target: one or more of trace_id, span_id, session_id, message_id".into()));
    }
    let timestamp = match map.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let at = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| bad("timestamp", format!("must be an RFC 3339 date-time ({e})")))?;
            crate::normalize::time_range::check("timestamp", at).map_err(|e| bad("timestamp", e))?;
            Some(at)
        }
        Some(other) => return Err(bad("timestamp", format!("must be an RFC 3339 string, got {}", type_name(other)))),
    };
    let value = number("value")?;
    let scale = number("scale")?;
    // The top of the rating scale: a value is read against it (4 of 5), so it must be above 0.
    if scale.is_some_and(|s| s <= 0.0) {
        return Err(bad("scale", "must be above 0: the top of the rating scale (5 for five stars, 1 for thumbs)".into()));
    }
    if kind == "rating" && value.is_none() {
        return Err(bad("value", "a rating needs a numeric value".into()));
    }
    let name = string("name")?;
    if kind == "custom" && name.is_empty() {
        return Err(bad("name", "a custom signal needs a name".into()));
    }
    // An outside evaluation: who judged (`annotator`), its verdict (`label`, `value`) and why
    // (`explanation`, kept as the comment).
    let label = string("label")?;
    let explanation = string("explanation")?;
    let annotator = string("annotator")?.to_ascii_lowercase();
    let annotator = match annotator.as_str() {
        "decision" | "agent" => "llm".to_string(),
        _ => annotator,
    };
    if kind == "evaluation" {
        if name.is_empty() {
            return Err(bad("name", "an evaluation needs the evaluator's name (`name`, e.g. \"faithfulness\")".into()));
        }
        if value.is_none() && label.is_empty() && explanation.is_empty() {
            return Err(bad("value", "an evaluation needs a score (`value`), a `label` or an `explanation`".into()));
        }
        if !annotator.is_empty() && !ANNOTATORS.contains(&annotator.as_str()) {
            return Err(bad("annotator", format!("unknown annotator `{annotator}`; one of {}", ANNOTATORS.join(", "))));
        }
    }
    let text = match map.get("text") {
        None | Some(Value::Null) => None,
        _ => Some(string("text")?),
    };
    if kind == "edit" && text.is_none() {
        return Err(bad("text", "an edit needs the final text (`text`) to compare with the output".into()));
    }
    let mut attributes = match map.get("attributes") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(attrs)) => attrs
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(bad(&format!("attributes.{k}"), format!("must be a string, got {}", type_name(other)))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad("attributes", format!("must be an object of strings, got {}", type_name(other)))),
    };
    // Fields this version does not know are kept as attributes rather than refused or lost.
    for (key, v) in map.iter().filter(|(k, _)| !FIELDS.contains(&k.as_str())) {
        attributes.entry(key.clone()).or_insert_with(|| crate::otlp::flat(v));
    }
    if !label.is_empty() {
        attributes.insert(EVALUATION_LABEL.into(), label);
    }
    if !annotator.is_empty() {
        attributes.insert(EVALUATION_ANNOTATOR.into(), annotator);
    }
    let comment = string("comment")?;
    let comment = if comment.is_empty() { explanation } else { comment };
    Ok(Signal {
        kind,
        name,
        trace_id,
        span_id,
        session_id,
        message_id,
        user_id: string("user_id")?,
        timestamp,
        value,
        scale,
        comment,
        text,
        feature: string("feature")?,
        idempotency_key: string("idempotency_key")?,
        attributes,
    })
}

const FIELDS: &[&str] = &[
    "kind",
    "trace_id",
    "span_id",
    "session_id",
    "message_id",
    "user_id",
    "timestamp",
    "value",
    "scale",
    "comment",
    "text",
    "feature",
    "name",
    "idempotency_key",
    "attributes",
    "label",
    "explanation",
    "annotator",
];

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A signal from attributes (OTLP log records and span events named `flywheel.signal`): the
/// same fields as the JSON contract, as attribute keys, with the record's trace context as the
/// default target.
pub fn from_attributes(index: usize, attrs: &BTreeMap<String, Value>, trace_id: &str, span_id: &str) -> Result<Signal, Invalid> {
    let mut map = serde_json::Map::new();
    let mut extra = serde_json::Map::new();
    for (k, v) in attrs {
        let key = k.strip_prefix("flywheel.signal.").or_else(|| k.strip_prefix("signal.")).unwrap_or(k);
        match key {
            "event.name" => {}
            "value" | "scale" => {
                let n = match v {
                    Value::String(s) => {
                        s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(v.clone())
                    }
                    other => other.clone(),
                };
                map.insert(key.to_string(), n);
            }
            k if FIELDS.contains(&k) && k != "attributes" => {
                map.insert(k.to_string(), v.clone());
            }
            _ => {
                extra.insert(k.clone(), Value::String(crate::otlp::flat(v)));
            }
        }
    }
    if !map.contains_key("trace_id") && !trace_id.is_empty() {
        map.insert("trace_id".into(), Value::String(trace_id.into()));
    }
    if !map.contains_key("span_id") && !span_id.is_empty() {
        map.insert("span_id".into(), Value::String(span_id.into()));
    }
    if !extra.is_empty() {
        map.insert("attributes".into(), Value::Object(extra));
    }
    validate(index, &Value::Object(map))
}

/// An evaluation result as the OTel GenAI conventions carry it (`gen_ai.evaluation.result`,
/// as a log record, a span event, or a span of its own): the evaluator's name, score and label,
/// its explanation; the evaluated call is the record's trace context, else
/// `gen_ai.response.id` (the completion's id, which links like a message id). The annotator
/// kind has no convention attribute: any attribute named `…annotator_kind` or
/// `…annotator.kind` is read; else it stays unknown.
pub fn from_evaluation(index: usize, attrs: &BTreeMap<String, Value>, trace_id: &str, span_id: &str) -> Result<Signal, Invalid> {
    let text = |v: &Value| match v {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(crate::otlp::flat(other)),
    };
    let mut map = serde_json::Map::new();
    let mut extra = serde_json::Map::new();
    map.insert("kind".into(), Value::String("evaluation".into()));
    for (k, v) in attrs {
        match k.as_str() {
            "event.name" => {}
            "gen_ai.evaluation.name" => {
                map.insert("name".into(), text(v));
            }
            "gen_ai.evaluation.score.value" => {
                let n = match v {
                    Value::String(s) => s.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number),
                    Value::Number(_) => Some(v.clone()),
                    _ => None,
                };
                map.insert("value".into(), n.unwrap_or_else(|| v.clone()));
            }
            "gen_ai.evaluation.score.label" => {
                map.insert("label".into(), text(v));
            }
            "gen_ai.evaluation.explanation" => {
                map.insert("explanation".into(), text(v));
            }
            "gen_ai.response.id" => {
                map.insert("message_id".into(), text(v));
            }
            k if k.ends_with("annotator_kind") || k.ends_with("annotator.kind") => {
                map.insert("annotator".into(), text(v));
            }
            _ => {
                extra.insert(k.clone(), Value::String(crate::otlp::flat(v)));
            }
        }
    }
    if !trace_id.is_empty() {
        map.insert("trace_id".into(), Value::String(trace_id.into()));
    }
    if !span_id.is_empty() {
        map.insert("span_id".into(), Value::String(span_id.into()));
    }
    if !extra.is_empty() {
        map.insert("attributes".into(), Value::Object(extra));
    }
    validate(index, &Value::Object(map))
}

/// Span annotations as Phoenix's REST API takes them (`POST /v1/span_annotations`, the
/// OpenInference annotation shape): `{"data": [{"span_id", "name", "annotator_kind",
/// "result": {"label", "score", "explanation"}, "metadata", "identifier"}]}`, as signal
/// objects of kind `evaluation`. Teams already sending annotations to Phoenix point the same
/// client at flywheel.
pub fn from_span_annotations(body: &[u8]) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Some(Value::Array(items)) = value.get("data") else {
        return Err("the body must be {\"data\": [span annotations]}".into());
    };
    Ok(items
        .iter()
        .map(|a| {
            let Value::Object(a) = a else { return a.clone() };
            let mut s = serde_json::Map::new();
            s.insert("kind".into(), Value::String("evaluation".into()));
            let result = a.get("result").cloned().unwrap_or(Value::Null);
            let fields = [
                ("span_id", a.get("span_id")),
                ("trace_id", a.get("trace_id")),
                ("name", a.get("name")),
                ("annotator", a.get("annotator_kind")),
                ("label", result.get("label")),
                ("value", result.get("score")),
                ("explanation", result.get("explanation")),
            ];
            for (field, v) in fields {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    s.insert(field.into(), v.clone());
                }
            }
            // The same annotation sent again (an upsert in Phoenix) is one signal here.
            if let Some(id) = a.get("identifier").and_then(Value::as_str).filter(|i| !i.is_empty()) {
                let span = a.get("span_id").and_then(Value::as_str).unwrap_or("");
                let name = a.get("name").and_then(Value::as_str).unwrap_or("");
                s.insert("idempotency_key".into(), Value::String(format!("annotation:{span}:{name}:{id}")));
            }
            if let Some(Value::Object(meta)) = a.get("metadata") {
                let flat: serde_json::Map<String, Value> =
                    meta.iter().map(|(k, v)| (format!("metadata.{k}"), Value::String(crate::otlp::flat(v)))).collect();
                s.insert("attributes".into(), Value::Object(flat));
            }
            Value::Object(s)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_body_shapes_are_accepted() {
        assert_eq!(parse_body(br#"{"kind":"copy","trace_id":"x"}"#).unwrap().len(), 1);
        assert_eq!(parse_body(br#"[{"kind":"copy"},{"kind":"copy"}]"#).unwrap().len(), 2);
        assert_eq!(parse_body(br#"{"signals":[{"kind":"copy"}]}"#).unwrap().len(), 1);
        assert!(parse_body(b"not json").unwrap_err().contains("not valid JSON"));
        assert!(parse_body(b"42").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"trace_id": "0af7651916cd43dd8448eb211c80319c"}), "kind", "required"),
            (json!({"kind": "love", "session_id": "s"}), "kind", "unknown kind `love`"),
            (json!({"kind": "copy"}), "trace_id", "needs a target"),
            (json!({"kind": "copy", "trace_id": "xyz"}), "trace_id", "32 hexadecimal"),
            (json!({"kind": "copy", "span_id": "00f067aa0ba902b"}), "span_id", "16 hexadecimal"),
            (json!({"kind": "rating", "session_id": "s", "value": "5"}), "value", "must be a number"),
            (json!({"kind": "rating", "session_id": "s"}), "value", "needs a numeric value"),
            (json!({"kind": "edit", "session_id": "s"}), "text", "final text"),
            (json!({"kind": "custom", "session_id": "s"}), "name", "needs a name"),
            (json!({"kind": "copy", "session_id": "s", "timestamp": "yesterday"}), "timestamp", "RFC 3339"),
            (json!({"kind": "copy", "session_id": "s", "attributes": {"a": 1}}), "attributes.a", "must be a string"),
        ];
        for (input, field, message) in cases {
            let err = validate(3, &input).unwrap_err();
            assert_eq!(err.index, 3);
            assert_eq!(err.field, field, "{input}");
            assert!(err.error.contains(message), "{input}: {}", err.error);
        }
    }

    #[test]
    fn a_complete_signal_validates() {
        let s = validate(
            0,
            &json!({"kind": "edit", "trace_id": "0AF7651916CD43DD8448EB211C80319C", "text": "fixed", "timestamp": "2026-11-20T10:00:00.5Z",
                    "attributes": {"page": "/chat"}, "idempotency_key": "k1", "user_id": "u"}),
        )
        .unwrap();
        assert_eq!(s.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(s.text.as_deref(), Some("fixed"));
        assert_eq!(s.timestamp.unwrap().nanosecond(), 500_000_000);
        let s = validate(0, &json!({"kind": "copy", "session_id": "s", "colour": "red"})).unwrap();
        assert_eq!(s.attributes["colour"], "red", "unknown fields are kept as attributes");
    }

    #[test]
    fn otlp_attributes_map_to_the_same_fields() {
        let attrs: BTreeMap<String, Value> =
            [("event.name", json!("flywheel.signal")), ("kind", json!("rating")), ("value", json!("4")), ("browser", json!("firefox"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        let s = from_attributes(0, &attrs, "0af7651916cd43dd8448eb211c80319c", "").unwrap();
        assert_eq!(s.value, Some(4.0));
        assert_eq!(s.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(s.attributes["browser"], "firefox");
    }

    #[test]
    fn evaluations_need_an_evaluator_and_a_verdict_and_keep_who_judged() {
        let s = validate(
            0,
            &json!({"kind": "evaluation", "span_id": "00f067aa0ba902b7", "name": "faithfulness", "value": 0.2,
                    "label": "unfaithful", "explanation": "cites a 90-day window the sources do not give", "annotator": "LLM"}),
        )
        .unwrap();
        assert_eq!((s.name.as_str(), s.value), ("faithfulness", Some(0.2)));
        assert_eq!(s.comment, "cites a 90-day window the sources do not give");
        assert_eq!((s.attributes[EVALUATION_LABEL].as_str(), s.attributes[EVALUATION_ANNOTATOR].as_str()), ("unfaithful", "llm"));
        for (bad, field) in [
            (json!({"kind": "evaluation", "trace_id": "0af7651916cd43dd8448eb211c80319c", "value": 1}), "name"),
            (json!({"kind": "evaluation", "trace_id": "0af7651916cd43dd8448eb211c80319c", "name": "x"}), "value"),
            (
                json!({"kind": "evaluation", "trace_id": "0af7651916cd43dd8448eb211c80319c", "name": "x", "value": 1, "annotator": "robot"}),
                "annotator",
            ),
        ] {
            assert_eq!(validate(0, &bad).unwrap_err().field, field, "{bad}");
        }
    }

    #[test]
    fn an_otel_evaluation_event_and_a_phoenix_annotation_read_the_same() {
        let attrs: BTreeMap<String, Value> = [
            ("event.name", json!("gen_ai.evaluation.result")),
            ("gen_ai.evaluation.name", json!("relevance")),
            ("gen_ai.evaluation.score.value", json!(0.0)),
            ("gen_ai.evaluation.score.label", json!("not_relevant")),
            ("gen_ai.evaluation.explanation", json!("answers about shipping, not refunds")),
            ("gen_ai.response.id", json!("chatcmpl-9")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let otel = from_evaluation(0, &attrs, "", "").unwrap();
        assert_eq!((otel.kind.as_str(), otel.name.as_str(), otel.message_id.as_str()), ("evaluation", "relevance", "chatcmpl-9"));
        assert_eq!(otel.attributes[EVALUATION_LABEL], "not_relevant");
        let body = json!({"data": [{"span_id": "00f067aa0ba902b7", "name": "relevance", "annotator_kind": "HUMAN",
            "result": {"label": "not_relevant", "score": 0, "explanation": "answers about shipping, not refunds"},
            "metadata": {"reviewer": "ana"}, "identifier": "r1"}]});
        let items = from_span_annotations(body.to_string().as_bytes()).unwrap();
        let phoenix = validate(0, &items[0]).unwrap();
        assert_eq!((phoenix.value, phoenix.comment.as_str()), (Some(0.0), otel.comment.as_str()));
        assert_eq!(phoenix.attributes[EVALUATION_ANNOTATOR], "human");
        assert_eq!(phoenix.attributes["metadata.reviewer"], "ana");
        assert_eq!(phoenix.idempotency_key, "annotation:00f067aa0ba902b7:relevance:r1");
        assert!(from_span_annotations(b"[]").unwrap_err().contains("data"));
    }
}
