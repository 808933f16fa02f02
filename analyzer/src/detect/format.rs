//! The `format_violation` rule: the call asked for JSON (a `response_format`, JSON mode,
//! `gen_ai.output.type = json`, a structured-output schema, or instructions that say so) and
//! the answer does not parse, misses a key the contract requires, or gives a key a value
//! outside the ones it allows.
//!
//! The contract comes from a schema when the request carries one (`required`, `enum`), else
//! from the instructions, the way prompts spell it out: keys quoted and followed by a colon or
//! a gloss (`{"category": one of billing, shipping; …}`, `the keys "answer" (one sentence) and
//! "chart" (one of number, bar)`). What is read from prose is checked against the feature's
//! own answers before it counts: a key most well-formed answers leave out, or a list of values
//! most answers step outside, was misread (an example, an optional field), not broken.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use regex::Regex;
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

/// The structured output a request asked for, in OpenAI's `response_format` shape, from the
/// spec the inputs read (`json`, a `response_format` attribute value, a schema, invocation
/// parameters carrying `response_format`): what an eval case passes on to reproduce the call.
pub fn response_format(spec: &str) -> Option<Value> {
    let spec = spec.trim();
    if spec.is_empty() {
        return None;
    }
    match serde_json::from_str::<Value>(spec) {
        Ok(Value::Object(map)) => {
            if let Some(rf) = map.get("response_format").filter(|v| v.is_object()) {
                return Some(rf.clone());
            }
            if map.get("type").and_then(Value::as_str).is_some_and(|t| t.starts_with("json")) && !map.contains_key("properties") {
                return Some(Value::Object(map));
            }
            Some(serde_json::json!({"type": "json_schema", "json_schema": {"name": "output", "schema": Value::Object(map)}}))
        }
        Ok(Value::String(s)) => response_format(&s),
        Ok(_) => Some(serde_json::json!({"type": "json_object"})),
        Err(_) if spec.eq_ignore_ascii_case("json") || spec.eq_ignore_ascii_case("json_object") => {
            Some(serde_json::json!({"type": "json_object"}))
        }
        Err(_) => Some(serde_json::json!({"type": spec})),
    }
}

/// The shallowest object with a `required` list in a schema (the answer's top level): that
/// list and the object's properties.
fn top_level(schema: &Value) -> Option<(Vec<String>, serde_json::Map<String, Value>)> {
    let mut level = vec![schema];
    for _ in 0..6 {
        let mut next = Vec::new();
        for v in level {
            match v {
                Value::Object(map) => {
                    if let (Some(Value::Array(keys)), Some(Value::Object(properties))) = (map.get("required"), map.get("properties")) {
                        return Some((keys.iter().filter_map(Value::as_str).map(str::to_string).collect(), properties.clone()));
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

/// What an answer must be beyond parsing: keys it must carry, values some keys allow (the
/// shape failures record, so that an eval case can check it).
pub use flywheel_schemas::failure::OutputContract as Contract;

/// A quoted key followed by a colon or a gloss in parentheses, and the "one of …" list that may
/// follow it (up to the next key, `;`, `)`, `}` or the end of the sentence).
static KEY_IN_PROSE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"["`]([A-Za-z_][A-Za-z0-9_]{0,40})["`]\s*(?::|\()\s*(?:(?:must be |is )?one of:?\s*([^;)}"\n]*))?"#).expect("valid regex")
});

/// The contract a prompt spells out (see the module's comment); empty when it names no keys.
fn from_instructions(text: &str) -> Contract {
    // Keys are read from the first mention of JSON on: quoted words before it are examples of
    // something else (a tone, a product name).
    let Some(start) = text.to_ascii_lowercase().find("json") else { return Contract::default() };
    let mut contract = Contract::default();
    for cap in KEY_IN_PROSE.captures_iter(&text[start..]) {
        let key = cap[1].to_string();
        let gloss = &text[start + cap.get(0).map_or(0, |m| m.end())..];
        if gloss.trim_start().to_ascii_lowercase().starts_with("optional") || contract.required.contains(&key) {
            continue;
        }
        if let Some(list) = cap.get(2) {
            let values: Vec<String> = list
                .as_str()
                .trim_end_matches(['.', ' '])
                .split([',', '|', '/'])
                .flat_map(|v| v.split(" or "))
                .map(|v| v.trim().trim_matches(['"', '\'', '`']).to_string())
                .filter(|v| !v.is_empty() && v.split_whitespace().count() <= 3)
                .collect();
            if values.len() >= 2 {
                contract.allowed.insert(key.clone(), values);
            }
        }
        contract.required.push(key);
    }
    contract
}

/// The contract of a schema: the required keys of its top level and their `enum`s.
fn from_schema(schema: &Value) -> Contract {
    let Some((required, properties)) = top_level(schema) else { return Contract::default() };
    let allowed = properties
        .iter()
        .filter_map(|(k, p)| {
            let values: Vec<String> = p.get("enum")?.as_array()?.iter().filter_map(Value::as_str).map(str::to_string).collect();
            (!values.is_empty()).then(|| (k.clone(), values))
        })
        .collect();
    Contract { required, allowed }
}

/// The contract of each group of requests that share instructions and a spec, checked against
/// the group's answers when it was read from prose (see the module's comment).
pub fn contracts(requests: &[FormatRequest], instructions: &BTreeMap<String, String>) -> HashMap<(String, String), Contract> {
    let mut groups: HashMap<(String, String), Vec<&FormatRequest>> = HashMap::new();
    for r in requests {
        groups.entry(r.contract_key()).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(key, members)| {
            let schema = serde_json::from_str::<Value>(&key.1).ok();
            let mut contract = schema.as_ref().map(from_schema).unwrap_or_default();
            if contract.required.is_empty() {
                let prose = instructions.get(&key.0).map_or("", String::as_str);
                contract = followed(from_instructions(prose), &members);
            }
            (key, contract)
        })
        .collect()
}

/// The part of a contract read from prose that the answers bear out: keys that most answers
/// parsing as objects carry, value lists that most of their values keep to.
fn followed(mut contract: Contract, members: &[&FormatRequest]) -> Contract {
    let objects: Vec<serde_json::Map<String, Value>> = members
        .iter()
        .filter_map(|r| match serde_json::from_str::<Value>(unfenced(&r.output)) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
        .collect();
    if objects.len() < MIN_ANSWERS {
        return Contract::default();
    }
    contract.required.retain(|k| objects.iter().filter(|o| o.contains_key(k)).count() * 2 > objects.len());
    contract.allowed.retain(|k, values| {
        let given: Vec<&str> = objects.iter().filter_map(|o| o.get(k)?.as_str()).collect();
        let kept = given.iter().filter(|v| values.iter().any(|a| a == *v)).count();
        contract.required.contains(k) && !given.is_empty() && kept * 10 >= given.len() * 8
    });
    contract
}

/// Well-formed answers needed before a contract read from prose is trusted.
const MIN_ANSWERS: usize = 10;

/// What is wrong with the answer, or None when it is what was asked for.
pub fn check(request: &FormatRequest, contract: &Contract) -> Option<String> {
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
    if contract.required.is_empty() {
        return None;
    }
    let Value::Object(answer) = &parsed else {
        return Some(format!("JSON object requested; the answer is a JSON {}", kind(&parsed)));
    };
    let missing: Vec<&String> = contract.required.iter().filter(|k| !answer.contains_key(k.as_str())).collect();
    if !missing.is_empty() {
        return Some(format!(
            "the answer misses required key{} {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    contract.allowed.iter().find_map(|(k, values)| {
        let v = answer.get(k)?;
        let ok = v.as_str().is_some_and(|s| values.iter().any(|a| a == s));
        (!ok).then(|| format!("the answer's `{k}` is not one of {}: {}", values.join(", "), super::excerpt(&v.to_string(), 40)))
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
        FormatRequest { spec: spec.into(), output: output.into(), system_hash: "h".into(), ..Default::default() }
    }

    /// The contract of one group of requests under `instructions`, checked on each.
    fn verdicts(instructions: &str, outputs: &[&str]) -> Vec<Option<String>> {
        let requests: Vec<FormatRequest> = outputs.iter().map(|o| req("json", o)).collect();
        let contracts = contracts(&requests, &BTreeMap::from([("h".to_string(), instructions.to_string())]));
        requests.iter().map(|r| check(r, &contracts[&r.contract_key()])).collect()
    }

    #[test]
    fn json_that_parses_is_fine_fenced_or_not() {
        let none = Contract::default();
        assert_eq!(check(&req("json", r#"{"intent": "refund", "order_id": 42}"#), &none), None);
        assert_eq!(check(&req("json", "```json\n{\"intent\": \"refund\"}\n```"), &none), None);
        assert_eq!(check(&req("instructions", "[1, 2, 3]"), &none), None);
    }

    #[test]
    fn prose_or_cut_json_is_a_violation() {
        let none = Contract::default();
        let e = check(&req("json", "Sure! The intent is a refund request for order 42."), &none).unwrap();
        assert!(e.contains("does not parse (not JSON)"), "{e}");
        let e = check(&req("json", r#"{"intent": "refund", "order_id": 4"#), &none).unwrap();
        assert!(e.contains("stops before the JSON ends"), "{e}");
    }

    #[test]
    fn a_schema_requires_its_keys_and_values() {
        let spec = r#"{"response_format":{"type":"json_schema","json_schema":{"name":"triage","schema":{"type":"object","properties":{"intent":{"type":"string"},"priority":{"type":"string","enum":["low","high"]}},"required":["intent","priority"]}}}}"#;
        let requests = [
            req(spec, r#"{"intent":"refund","priority":"high"}"#),
            req(spec, r#"{"intent":"refund"}"#),
            req(spec, r#"["refund"]"#),
            req(spec, r#"{"intent":"refund","priority":"urgent"}"#),
        ];
        // A schema is explicit: it counts even when few answers are there to bear it out.
        let contracts = contracts(&requests, &BTreeMap::new());
        let found: Vec<Option<String>> = requests.iter().map(|r| check(r, &contracts[&r.contract_key()])).collect();
        assert_eq!(found[0], None);
        assert_eq!(found[1].as_deref(), Some("the answer misses required key `priority`"));
        assert_eq!(found[2].as_deref(), Some("JSON object requested; the answer is a JSON array"));
        assert_eq!(found[3].as_deref(), Some("the answer's `priority` is not one of low, high: \"urgent\""));
    }

    #[test]
    fn instructions_spell_out_keys_and_allowed_values() {
        let triage = "Classify the e-mail. Reply with a JSON object only: {\"category\": one of billing, warranty_claim, shipping; \
                      \"priority\": one of low, normal, high; \"summary\": one English sentence}.";
        let analyst = "Use the tone \"friendly\". Then reply with a JSON object with the keys \"answer\" (one sentence), \"sql\" \
                       (the query) and \"chart\" (one of number, bar, line, table). Add \"note\" (optional) when unsure.";
        assert_eq!(
            from_instructions(triage),
            Contract {
                required: vec!["category".into(), "priority".into(), "summary".into()],
                allowed: BTreeMap::from([
                    ("category".into(), vec!["billing".into(), "warranty_claim".into(), "shipping".into()]),
                    ("priority".into(), vec!["low".into(), "normal".into(), "high".into()]),
                ]),
            }
        );
        let c = from_instructions(analyst);
        assert_eq!(c.required, ["answer", "sql", "chart"]);
        assert_eq!(c.allowed["chart"], ["number", "bar", "line", "table"]);

        let good = r#"{"category": "billing", "priority": "low", "summary": "Asks about a charge."}"#;
        let mut outputs = vec![good; 12];
        outputs.extend([
            r#"{"category": "billing", "summary": "Asks about a charge."}"#,
            r#"{"category": "urgent", "priority": "low", "summary": "Asks about a charge."}"#,
        ]);
        let found = verdicts(triage, &outputs);
        assert!(found[..12].iter().all(Option::is_none), "{found:?}");
        assert_eq!(found[12].as_deref(), Some("the answer misses required key `priority`"));
        assert!(found[13].as_deref().unwrap().starts_with("the answer's `category` is not one of billing"), "{found:?}");
    }

    #[test]
    fn what_the_answers_do_not_bear_out_was_misread() {
        // The prompt shows an example with a key most answers leave out, and a list of values
        // the answers do not keep to: neither is a contract the feature follows.
        let prompt = "Answer in JSON, e.g. {\"reply\": \"…\", \"debug\": \"…\", \"mood\": one of calm, upset}.";
        let outputs: Vec<String> = (0..12).map(|i| format!(r#"{{"reply": "ok {i}", "mood": "m{i}"}}"#)).collect();
        let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        assert!(verdicts(prompt, &outputs).iter().all(Option::is_none));
        // Too few answers to tell: only parsing counts.
        assert!(verdicts(prompt, &[r#"{"mood": "m"}"#]).iter().all(Option::is_none));
    }
}
