//! One eval case: a failing LLM call turned into a test — what the model was given, what it
//! answered, why that was a failure, what it should have answered when a user told us, and where
//! it came from. This is flywheel's own JSONL record (`schemas/api/eval_case.schema.json`); the
//! other formats are renderings of it.
//!
//! A case's identity is its content: [`EvalCase::id`] is the SHA-256 of the input and the bad
//! output (canonical JSON), so two calls that got the same input and gave the same answer are
//! one case, and a later label, triage decision or signal does not make an old case new.
//!
//! Personal data is masked the same way everywhere a case carries users' text — the
//! conversation, the bad output, the user's correction, comments, evidence, the rubric — so a
//! file can be shared and an assertion never names what the input no longer shows. The id is
//! taken before masking (masking rules may change; a case's identity may not). The developer's
//! own text (system instructions, tool definitions) is kept as it is: the case must reproduce.

use flywheel_schemas::failure::FailureDetails;
use std::collections::BTreeMap;

use flywheel_schemas::messages::{Message, Part};
use flywheel_schemas::rows::{FailureRow, LlmCallRow, SignalRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Version of the JSONL record; bumped on any incompatible change of the schema (2: the
/// expected behaviour always has a rubric and checks; the request's parameters).
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalCase {
    pub schema_version: u32,
    /// Hex SHA-256 of the canonical JSON of `input` and `output`.
    pub id: String,
    pub input: CaseInput,
    pub output: CaseOutput,
    pub failure: CaseFailure,
    pub expected: Expected,
    pub provenance: Provenance,
}

/// What the model was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseInput {
    /// The system instructions, when the call had any.
    pub system: Option<String>,
    /// The conversation so far, in flywheel's canonical message model (`{role, parts}`).
    pub messages: Vec<Message>,
    /// The tool definitions offered to the model, as the instrumentation sent them.
    pub tools: Option<Value>,
    /// The request's parameters, to reproduce the call.
    pub parameters: Parameters,
}

/// The request parameters of the original call, as recorded (null when the producer did not
/// record one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// The model asked for (the request model, else the one that answered).
    pub model: String,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    pub seed: Option<i64>,
    /// The structured output asked for, in OpenAI's `response_format` shape.
    pub response_format: Option<Value>,
}

/// What the model answered (the bad output, for reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseOutput {
    pub messages: Vec<Message>,
    /// The text of the answer (text parts joined), empty when there was none.
    pub text: String,
    pub finish_reasons: Vec<String>,
    /// The error of a failed call: `type: message`.
    pub error: Option<String>,
}

/// Why the call is a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseFailure {
    /// Detection reasons, e.g. `thumbs_down`, `finish_reason:length`, `edit`.
    pub reasons: Vec<String>,
    /// Subset of `explicit`, `implicit`, `derived`.
    pub categories: Vec<String>,
    pub severity: f64,
    pub signals: Vec<CaseSignal>,
    /// Reason → human explanation, as written by the detector.
    pub evidence: BTreeMap<String, String>,
    pub latency_ms: Option<f64>,
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseSignal {
    pub kind: String,
    pub value: Option<f64>,
    pub comment: String,
}

pub use super::expect::{Check, Expected};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub project: String,
    pub pattern_id: String,
    pub pattern_label: String,
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    pub model: String,
    /// RFC 3339, UTC.
    pub call_time: String,
}

/// The pattern a case comes from.
pub struct PatternRef<'a> {
    pub project: &'a str,
    pub id: &'a str,
    pub label: &'a str,
}

/// Everything stored about one failing call.
#[derive(Debug, Clone)]
pub struct FailingCall {
    pub failure: FailureRow,
    pub call: Option<LlmCallRow>,
    pub system: Option<String>,
    pub tools: Option<Value>,
    /// The structured output the request asked for (OpenAI `response_format` shape).
    pub response_format: Option<Value>,
    /// Signals on the call's span or on its trace without a span.
    pub signals: Vec<SignalRow>,
}

impl FailingCall {
    /// `failures.details` (empty details when missing or malformed).
    pub fn details(&self) -> FailureDetails {
        FailureDetails::parse(&self.failure.details)
    }

    /// The conversation given to the model; from the detector's `request` text when the call
    /// row is gone (retention) or has no messages.
    pub fn input_messages(&self) -> Vec<Message> {
        let parsed = self.call.as_ref().and_then(|c| serde_json::from_str::<Vec<Message>>(&c.input_messages).ok()).unwrap_or_default();
        if !parsed.is_empty() {
            return parsed;
        }
        match Some(self.details().request).filter(|s| !s.is_empty()) {
            Some(request) => vec![Message::text("user", request)],
            None => self
                .call
                .as_ref()
                .filter(|c| !c.input_text.is_empty())
                .map(|c| vec![Message::text("user", &c.input_text)])
                .unwrap_or_default(),
        }
    }

    pub fn output_messages(&self) -> Vec<Message> {
        self.call.as_ref().and_then(|c| serde_json::from_str::<Vec<Message>>(&c.output_messages).ok()).unwrap_or_default()
    }

    /// The answer's text: the call's output text, else the detector's `output`.
    pub fn output_text(&self) -> String {
        let from_call = self.call.as_ref().map(|c| c.output_text.clone()).unwrap_or_default();
        if !from_call.is_empty() {
            return from_call;
        }
        let from_messages: Vec<String> = self.output_messages().iter().map(Message::text_content).filter(|t| !t.is_empty()).collect();
        if !from_messages.is_empty() {
            return from_messages.join("\n");
        }
        self.details().output
    }

    /// The last user message's text: what the user asked.
    pub fn request_text(&self) -> String {
        let messages = self.input_messages();
        messages.iter().rev().find(|m| m.role == "user").map(Message::text_content).unwrap_or_default()
    }

    /// The user's corrected text, from the detector's `edit_text` or an `edit` signal.
    pub fn edit_text(&self) -> Option<String> {
        Some(self.details().edit_text)
            .filter(|t| !t.is_empty())
            .or_else(|| self.signals.iter().rev().find(|s| s.kind == "edit" && !s.text.is_empty()).map(|s| s.text.clone()))
            .filter(|t| !t.trim().is_empty())
    }
}

impl EvalCase {
    pub fn build(pattern: &PatternRef<'_>, call: &FailingCall) -> EvalCase {
        let details = call.details();
        let f = &call.failure;
        let row = call.call.as_ref();
        let parameters = Parameters {
            model: row
                .map(|c| if c.request_model.is_empty() { c.response_model.clone() } else { c.request_model.clone() })
                .unwrap_or_default(),
            temperature: row.and_then(|c| c.temperature),
            top_p: row.and_then(|c| c.top_p),
            max_tokens: row.and_then(|c| c.max_tokens),
            seed: row.and_then(|c| c.seed),
            response_format: call.response_format.clone(),
        };
        let mut input = CaseInput {
            system: call.system.clone().filter(|s| !s.is_empty()),
            messages: call.input_messages(),
            tools: call.tools.clone(),
            parameters,
        };
        let error = row
            .filter(|c| !c.error_type.is_empty() || !c.error_message.is_empty())
            .map(|c| if c.error_message.is_empty() { c.error_type.clone() } else { format!("{}: {}", c.error_type, c.error_message) })
            .or_else(|| Some(details.error.clone()).filter(|s| !s.is_empty()));
        let mut output = CaseOutput {
            messages: call.output_messages(),
            text: call.output_text(),
            finish_reasons: row.map(|c| c.finish_reasons.clone()).unwrap_or_default(),
            error,
        };
        let id = content_hash(&input, &output);
        let mut signals: Vec<CaseSignal> =
            details.signals.iter().map(|s| CaseSignal { kind: s.kind.clone(), value: s.value, comment: mask(&s.comment) }).collect();
        if signals.is_empty() {
            signals = call.signals.iter().map(|s| CaseSignal { kind: s.kind.clone(), value: s.value, comment: mask(&s.comment) }).collect();
        }
        let evidence = details.evidence.iter().map(|(k, v)| (k.clone(), mask(v))).collect();
        let failure = CaseFailure {
            reasons: f.reasons.clone(),
            categories: f.categories.clone(),
            severity: (f.severity as f64 * 1000.0).round() / 1000.0,
            signals,
            evidence,
            latency_ms: details.latency_ms.or_else(|| row.map(|c| c.duration_ns as f64 / 1e6)),
            cost_usd: details.cost_usd.or_else(|| row.and_then(|c| c.cost_usd)),
        };
        let mut expected = super::expect::expected(call, &details, pattern.label, input.parameters.max_tokens);
        expected.text = expected.text.as_deref().map(mask);
        expected.rubric = expected.rubric.iter().map(|r| mask(r)).collect();
        input.messages.iter_mut().for_each(mask_message);
        output.messages.iter_mut().for_each(mask_message);
        output.text = mask(&output.text);
        output.error = output.error.as_deref().map(mask);
        let provenance = Provenance {
            project: pattern.project.to_string(),
            pattern_id: pattern.id.to_string(),
            // Labels stored before they were masked quote answers as users wrote them.
            pattern_label: mask(pattern.label),
            trace_id: f.trace_id.clone(),
            span_id: f.span_id.clone(),
            session_id: f.session_id.clone(),
            user_id: f.user_id.clone(),
            feature: f.feature.clone(),
            model: f.model.clone(),
            call_time: rfc3339(f.call_time),
        };
        EvalCase { schema_version: SCHEMA_VERSION, id, input, output, failure, expected, provenance }
    }

    /// The last user message's text.
    pub fn question(&self) -> String {
        self.input.messages.iter().rev().find(|m| m.role == "user").map(Message::text_content).unwrap_or_default()
    }
}

/// Hex SHA-256 of the canonical JSON (keys sorted) of the input (what the model was given: its
/// instructions, conversation and tools) and the bad output's text, before masking. The
/// parameters are not part of it, so ids stay those of the first schema version.
pub fn content_hash(input: &CaseInput, output: &CaseOutput) -> String {
    let given = serde_json::json!({ "system": input.system, "messages": input.messages, "tools": input.tools });
    let value = serde_json::json!({ "input": given, "output": output.text, "error": output.error });
    sha256_hex(&canonical_json(&value))
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// JSON with object keys sorted at every level, so that equal values hash equally.
pub fn canonical_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let sorted: BTreeMap<&String, Value> = o.iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Messages in the OpenAI chat format (`{role, content}`, assistant `tool_calls`, `tool`
/// messages with `tool_call_id`), with the system instructions first when there are any.
pub fn openai_messages(system: Option<&str>, messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(s) = system {
        out.push(serde_json::json!({"role": "system", "content": s}));
    }
    for m in messages {
        let text = m.text_content();
        let calls: Vec<Value> = m
            .tool_calls()
            .enumerate()
            .map(|(i, (id, name, args))| {
                let arguments = match args {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                serde_json::json!({"id": id.clone().unwrap_or_else(|| format!("call_{i}")), "type": "function", "function": {"name": name, "arguments": arguments}})
            })
            .collect();
        let responses: Vec<(Option<String>, String)> = m
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolCallResponse { id, response } => {
                    Some((id.clone(), response.as_str().map(str::to_string).unwrap_or_else(|| response.to_string())))
                }
                _ => None,
            })
            .collect();
        if !responses.is_empty() {
            for (id, content) in responses {
                out.push(serde_json::json!({"role": "tool", "tool_call_id": id.unwrap_or_default(), "content": content}));
            }
            continue;
        }
        let mut msg = serde_json::json!({"role": m.role, "content": text});
        if !calls.is_empty() {
            msg["tool_calls"] = Value::Array(calls);
        }
        out.push(msg);
    }
    out
}

/// Text cut to at most `max` characters on a word boundary, whitespace collapsed, with an
/// ellipsis when cut; e-mail addresses and long digit runs masked (the collector has already
/// removed secrets at ingest; this keeps reports shareable).
pub fn excerpt(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().map(mask_word).collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let cut: String = collapsed.chars().take(max).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => cut[..i].to_string(),
        _ => cut,
    };
    format!("{}…", cut.trim_end_matches([',', '.', ';', ':']))
}

/// `text` with e-mail addresses and long digit runs (phone, card, account numbers) masked,
/// whitespace kept: the one masking of users' text in cases and excerpts.
pub fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
        out.push_str(&rest[..word]);
        rest = &rest[word..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push_str(&mask_word(&rest[..end]));
        rest = &rest[end..];
    }
    out
}

/// Masks the text parts of a message (tool calls and results keep their structure; their
/// string values are masked too).
fn mask_message(m: &mut Message) {
    for part in &mut m.parts {
        match part {
            Part::Text { content } => *content = mask(content),
            Part::ToolCallResponse { response, .. } => mask_value(response),
            Part::ToolCall { arguments, .. } => mask_value(arguments),
            _ => {}
        }
    }
}

fn mask_value(v: &mut Value) {
    match v {
        Value::String(s) => *s = mask(s),
        Value::Array(items) => items.iter_mut().for_each(mask_value),
        Value::Object(map) => map.values_mut().for_each(mask_value),
        _ => {}
    }
}

/// A word with personal data masked; the punctuation around it is kept ("(card 4111…)." keeps
/// its parenthesis and full stop).
fn mask_word(word: &str) -> String {
    let core = word.trim_matches(|c: char| {
        matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | ',' | '.' | ';' | ':' | '!' | '?' | '"' | '\'' | '<' | '>')
    });
    if core.is_empty() || core == word {
        return mask_core(word);
    }
    let start = word.find(core).unwrap_or(0);
    let masked = mask_core(core);
    if masked == core { word.to_string() } else { format!("{}{masked}{}", &word[..start], &word[start + core.len()..]) }
}

fn mask_core(word: &str) -> String {
    // Long upper-case references mixing letters and digits: parcel tracking numbers
    // (1Z…), booking and account references.
    let (upper, digits) = (word.chars().filter(char::is_ascii_uppercase).count(), word.chars().filter(char::is_ascii_digit).count());
    if word.len() >= 12 && upper + digits == word.chars().count() && upper >= 3 && digits >= 3 {
        return "[number]".into();
    }
    if let Some(at) = word.find('@')
        && at > 0
        && word[at + 1..].contains('.')
    {
        return "[email]".into();
    }
    let digits = word.chars().filter(char::is_ascii_digit).count();
    if digits >= 9 && digits * 10 >= word.chars().count() * 7 {
        return "[number]".into();
    }
    word.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"c":3,"d":2},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"c":3,"d":2},"b":1}"#);
    }

    #[test]
    fn excerpt_cuts_on_words_and_masks() {
        assert_eq!(excerpt("write to  jane.doe@example.com\nnow", 100), "write to [email] now");
        assert_eq!(excerpt("card 4111111111111111 ok", 100), "card [number] ok");
        assert_eq!(excerpt("one two three four five six", 14), "one two three…");
        // Punctuation around a masked value stays; upper-case references are masked too.
        assert_eq!(mask("(tracking 1ZT75BLQUKMQBBANGL). Write to ana@example.com."), "(tracking [number]). Write to [email].");
        assert_eq!(mask("model gpt-4o-mini-2024-07-18, order #1001"), "model gpt-4o-mini-2024-07-18, order #1001");
    }

    #[test]
    fn openai_messages_map_tool_calls_and_results() {
        let raw = r#"[{"role":"user","parts":[{"type":"text","content":"refund?"}]},
            {"role":"assistant","parts":[{"type":"tool_call","id":"c1","name":"lookup","arguments":{"order":"42"}}]},
            {"role":"tool","parts":[{"type":"tool_call_response","id":"c1","response":{"status":"shipped"}}]}]"#;
        let messages: Vec<Message> = serde_json::from_str(raw).unwrap();
        let out = openai_messages(Some("be nice"), &messages);
        assert_eq!(out[0]["role"], "system");
        assert_eq!(out[1]["content"], "refund?");
        assert_eq!(out[2]["tool_calls"][0]["function"]["arguments"], r#"{"order":"42"}"#);
        assert_eq!(out[3]["role"], "tool");
        assert_eq!(out[3]["tool_call_id"], "c1");
    }
}
