//! Renderings of eval cases for the tools that run them, and the reading of existing eval files
//! for `--append-to`.
//!
//! * `jsonl`: one [`EvalCase`] per line (`schemas/api/eval_case.schema.json`).
//! * `openai-evals`: one `{"input": [chat messages], "ideal": "…", "metadata": {…}}` per line,
//!   as the samples of OpenAI's evals registry; `ideal` is the user's corrected text or empty.
//! * `promptfoo`: a YAML list of promptfoo test cases (`tests: file://…`): `vars` with the
//!   conversation, `assert` entries derived from the failure reasons, `metadata` with provenance.
//! * `csv`: one row per case, for spreadsheets.
//!
//! Every rendering carries the case id (`id`, `metadata.flywheel_case_id`, `case_id`), and a
//! record also has a content key (hash of what the eval runs): appending skips a case whose id
//! or content key is already in the file, so merging never duplicates a test, even one written
//! by hand or by another tool.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

use super::ExportError;
use super::case::{Check, EvalCase, canonical_json, openai_messages, sha256_hex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvalFormat {
    Jsonl,
    OpenaiEvals,
    Promptfoo,
    Csv,
}

impl EvalFormat {
    pub const ALL: [EvalFormat; 4] = [EvalFormat::Jsonl, EvalFormat::OpenaiEvals, EvalFormat::Promptfoo, EvalFormat::Csv];

    /// The name used on the command line and in `eval_exports.format`.
    pub fn name(self) -> &'static str {
        match self {
            EvalFormat::Jsonl => "jsonl",
            EvalFormat::OpenaiEvals => "openai-evals",
            EvalFormat::Promptfoo => "promptfoo",
            EvalFormat::Csv => "csv",
        }
    }

    /// The file written when no `--out` is given, under `./evals/`.
    pub fn default_file_name(self) -> &'static str {
        match self {
            EvalFormat::Jsonl => "flywheel-evals.jsonl",
            EvalFormat::OpenaiEvals => "flywheel-evals.openai.jsonl",
            EvalFormat::Promptfoo => "flywheel-evals.promptfoo.yaml",
            EvalFormat::Csv => "flywheel-evals.csv",
        }
    }
}

impl fmt::Display for EvalFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EvalFormat {
    type Err = ExportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvalFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| ExportError::Options(format!("unknown format `{s}`: use jsonl, openai-evals, promptfoo or csv")))
    }
}

/// The columns of the CSV rendering, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "case_id",
    "project",
    "pattern_id",
    "pattern_label",
    "trace_id",
    "span_id",
    "call_time",
    "feature",
    "model",
    "reasons",
    "signals",
    "system",
    "conversation",
    "question",
    "tools",
    "bad_output",
    "expected",
    "expected_source",
    "rubric",
    "parameters",
];

/// A whole file of `cases`.
pub fn render(format: EvalFormat, cases: &[EvalCase]) -> Result<String, ExportError> {
    match format {
        EvalFormat::Jsonl => Ok(cases.iter().map(|c| format!("{}\n", serde_json::to_string(c).expect("a case serialises"))).collect()),
        EvalFormat::OpenaiEvals => Ok(cases.iter().map(|c| json_line(&openai_record(c))).collect()),
        EvalFormat::Promptfoo => {
            let header = format!(
                "# flywheel eval cases as promptfoo tests (flywheel eval case schema v{}).\n\
                 # Use from a promptfoo config: `tests: file://<this file>`; the conversation is in vars.messages.\n",
                super::case::SCHEMA_VERSION
            );
            Ok(format!("{header}{}", promptfoo_items(cases)?))
        }
        EvalFormat::Csv => csv_text(cases, true, CSV_COLUMNS.len()),
    }
}

/// What to write to merge `cases` into a file whose content is `existing`: the whole new
/// content (the existing text is kept byte for byte, new records are added at the end).
pub fn merge(format: EvalFormat, existing: &str, cases: &[EvalCase]) -> Result<String, ExportError> {
    if existing.trim().is_empty() {
        return render(format, cases);
    }
    let mut out = existing.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    match format {
        EvalFormat::Jsonl | EvalFormat::OpenaiEvals => out.push_str(&render(format, cases)?),
        EvalFormat::Promptfoo => out.push_str(&promptfoo_items(cases)?),
        EvalFormat::Csv => {
            let header = csv::ReaderBuilder::new()
                .from_reader(existing.as_bytes())
                .headers()
                .map_err(|e| ExportError::Append(format!("cannot read its CSV header: {e}")))?
                .clone();
            // A file written by an earlier version has the first columns of today's.
            let names: Vec<&str> = header.iter().collect();
            if names.len() < 18 || names.len() > CSV_COLUMNS.len() || names != CSV_COLUMNS[..names.len()] {
                return Err(ExportError::Append(format!(
                    "its columns are not flywheel's ({}); export to a new file instead",
                    header.iter().take(4).collect::<Vec<_>>().join(",")
                )));
            }
            out.push_str(&csv_text(cases, false, names.len())?);
        }
    }
    Ok(out)
}

/// The keys (case ids and content keys) of the records of an existing file.
pub fn existing_keys(format: EvalFormat, text: &str) -> Result<HashSet<String>, ExportError> {
    let mut keys = HashSet::new();
    match format {
        EvalFormat::Jsonl | EvalFormat::OpenaiEvals => {
            for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let record: Value =
                    serde_json::from_str(line).map_err(|e| ExportError::Append(format!("line {} is not JSON ({e})", n + 1)))?;
                keys.extend(record_keys(format, &record));
            }
        }
        EvalFormat::Promptfoo => {
            let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| ExportError::Append(format!("it is not YAML ({e})")))?;
            let tests = match &doc {
                Value::Null => return Ok(keys),
                Value::Array(tests) if !text.trim_start_matches(|c: char| c.is_whitespace()).starts_with('[') => tests,
                _ => {
                    return Err(ExportError::Append(
                        "it is not a promptfoo tests file in block style (a YAML list of test cases, as `tests: file://…` loads)".into(),
                    ));
                }
            };
            for t in tests {
                keys.extend(record_keys(format, t));
            }
        }
        EvalFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
            let headers = reader.headers().map_err(|e| ExportError::Append(format!("cannot read its CSV header: {e}")))?.clone();
            let Some(col) = headers.iter().position(|h| h == "case_id") else {
                return Err(ExportError::Append("it has no `case_id` column".into()));
            };
            for row in reader.records() {
                let row = row.map_err(|e| ExportError::Append(format!("bad CSV row: {e}")))?;
                if let Some(id) = row.get(col).filter(|id| !id.is_empty()) {
                    keys.insert(id.to_string());
                }
            }
        }
    }
    Ok(keys)
}

/// Keys of one rendered record: its flywheel case id, and a hash of what the eval runs.
pub fn record_keys(format: EvalFormat, record: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    let id = match format {
        EvalFormat::Jsonl => record.get("id"),
        _ => record.get("metadata").and_then(|m| m.get("flywheel_case_id")),
    };
    if let Some(id) = id.and_then(Value::as_str) {
        keys.push(id.to_string());
    }
    let content = match format {
        EvalFormat::Jsonl | EvalFormat::OpenaiEvals => record.get("input"),
        EvalFormat::Promptfoo => record.get("vars"),
        EvalFormat::Csv => None,
    };
    if let Some(c) = content {
        keys.push(format!("content:{}", sha256_hex(&canonical_json(c))));
    }
    keys
}

/// The keys a new case would have once rendered in `format`.
pub fn case_keys(format: EvalFormat, case: &EvalCase) -> Vec<String> {
    match format {
        EvalFormat::Jsonl => record_keys(format, &serde_json::to_value(case).expect("a case serialises")),
        EvalFormat::OpenaiEvals => record_keys(format, &openai_record(case)),
        EvalFormat::Promptfoo => record_keys(format, &promptfoo_test(case)),
        EvalFormat::Csv => vec![case.id.clone()],
    }
}

fn json_line(v: &Value) -> String {
    format!("{}\n", serde_json::to_string(v).expect("JSON values serialise"))
}

/// `ideal` is a reference answer — the user's corrected text — or empty: a rubric is not an
/// answer, and a match-style eval would fail every answer against it. The rubric travels as
/// `rubric` (for a model-graded eval's template, e.g. `closedqa` criteria), the tools offered as
/// `tools` (so tool-calling cases run), and both in `metadata`.
pub fn openai_record(case: &EvalCase) -> Value {
    let mut record = json!({
        "input": openai_messages(case.input.system.as_deref(), &case.input.messages),
        "ideal": case.expected.text.clone().unwrap_or_default(),
        "rubric": case.expected.rubric.join(" "),
        "metadata": metadata(case),
    });
    if let Some(tools) = openai_tools(case.input.tools.as_ref()) {
        record["tools"] = tools;
    }
    record
}

/// Tool definitions in OpenAI's chat shape (`{"type": "function", "function": {name,
/// description, parameters}}`) whatever shape the producer recorded them in (flat
/// `{name, description, parameters}`, `input_schema` as Anthropic names it).
pub fn openai_tools(tools: Option<&Value>) -> Option<Value> {
    let items: Vec<Value> = match tools? {
        Value::Array(items) => items.clone(),
        Value::Null => return None,
        one => vec![one.clone()],
    };
    let shaped: Vec<Value> = items
        .into_iter()
        .filter_map(|t| {
            if t.get("type").and_then(Value::as_str) == Some("function") && t.get("function").is_some() {
                return Some(t);
            }
            let name = t.get("name").and_then(Value::as_str)?;
            let mut function = json!({"name": name});
            if let Some(d) = t.get("description") {
                function["description"] = d.clone();
            }
            if let Some(p) = t.get("parameters").or_else(|| t.get("input_schema")).or_else(|| t.get("inputSchema")) {
                function["parameters"] = p.clone();
            }
            Some(json!({"type": "function", "function": function}))
        })
        .collect();
    (!shaped.is_empty()).then_some(Value::Array(shaped))
}

fn metadata(case: &EvalCase) -> Value {
    let p = &case.provenance;
    json!({
        "flywheel_case_id": case.id,
        "project": p.project,
        "pattern_id": p.pattern_id,
        "pattern_label": p.pattern_label,
        "trace_id": p.trace_id,
        "span_id": p.span_id,
        "call_time": p.call_time,
        "feature": p.feature,
        "model": p.model,
        "reasons": case.failure.reasons.join(", "),
        "bad_output": case.output.text,
        "expected_source": case.expected.source.clone().unwrap_or_else(|| "rubric".into()),
        "rubric": case.expected.rubric,
        "parameters": case.input.parameters,
    })
}

/// One promptfoo test case.
pub fn promptfoo_test(case: &EvalCase) -> Value {
    let mut vars = json!({
        "messages": openai_messages(None, &case.input.messages),
        "question": case.question(),
    });
    if let Some(system) = &case.input.system {
        vars["system"] = json!(system);
    }
    if let Some(tools) = openai_tools(case.input.tools.as_ref()) {
        vars["tools"] = tools;
    }
    if let Some(format) = &case.input.parameters.response_format {
        vars["response_format"] = format.clone();
    }
    let reasons = if case.failure.reasons.is_empty() { "failure".to_string() } else { case.failure.reasons.join(", ") };
    json!({
        "description": format!("{} — {} (trace {})", case.provenance.pattern_label, reasons, case.provenance.trace_id),
        "vars": vars,
        "assert": assertions(case),
        "metadata": metadata(case),
    })
}

/// The case's expected behaviour as promptfoo assertions: the rubric (an `llm-rubric`, with the
/// user's correction in it when there is one) and the deterministic checks — each one a check
/// that a correct answer passes (see [`super::expect`]).
pub fn assertions(case: &EvalCase) -> Vec<Value> {
    let mut out = vec![json!({"type": "llm-rubric", "value": case.expected.rubric.join(" ")})];
    for check in &case.expected.checks {
        out.push(match check {
            Check::NonEmpty => json!({"type": "javascript", "value": "String(output).trim().length > 0"}),
            Check::Json { required, allowed } => json!({"type": "javascript", "value": json_check(required, allowed)}),
            Check::MaxLatencyMs { value } => json!({"type": "latency", "threshold": value}),
        });
    }
    out
}

/// A promptfoo `javascript` assertion: the output parses as JSON once a Markdown code fence
/// around it is taken off, and carries the required keys with allowed values.
fn json_check(required: &[String], allowed: &std::collections::BTreeMap<String, Vec<String>>) -> String {
    let required = serde_json::to_string(required).expect("strings serialise");
    let allowed = serde_json::to_string(allowed).expect("strings serialise");
    format!(
        "(() => {{ let t = String(output).trim(); const m = t.match(/^```[a-zA-Z]*\\n([\\s\\S]*?)\\n?```$/); if (m) t = m[1]; \
         let v; try {{ v = JSON.parse(t); }} catch (e) {{ return false; }} const required = {required}; const allowed = {allowed}; \
         if (required.length === 0) return true; if (v === null || typeof v !== 'object' || Array.isArray(v)) return false; \
         return required.every(k => k in v) && Object.entries(allowed).every(([k, vs]) => !(k in v) || vs.includes(v[k])); }})()"
    )
}

fn promptfoo_items(cases: &[EvalCase]) -> Result<String, ExportError> {
    if cases.is_empty() {
        return Ok(String::new());
    }
    // Fields in the order a reader expects (a JSON map would sort them).
    #[derive(serde::Serialize)]
    struct Test {
        description: Value,
        vars: Value,
        assert: Value,
        metadata: Value,
    }
    let tests: Vec<Test> = cases
        .iter()
        .map(promptfoo_test)
        .map(|mut t| Test {
            description: t["description"].take(),
            vars: t["vars"].take(),
            assert: t["assert"].take(),
            metadata: t["metadata"].take(),
        })
        .collect();
    serde_yaml_ng::to_string(&tests).map_err(|e| ExportError::Render(format!("promptfoo YAML: {e}")))
}

/// One message of the CSV's conversation column: its text, tool calls and tool results.
fn conversation_line(m: &flywheel_schemas::messages::Message) -> String {
    use flywheel_schemas::messages::Part;
    let mut parts: Vec<String> = Vec::new();
    let text = m.text_content();
    if !text.is_empty() {
        parts.push(text);
    }
    for p in &m.parts {
        match p {
            Part::ToolCall { name, arguments, .. } => {
                let args = match arguments {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                parts.push(format!("→ {name}({args})"));
            }
            Part::ToolCallResponse { response, .. } => {
                parts.push(format!("← {}", response.as_str().map(str::to_string).unwrap_or_else(|| response.to_string())));
            }
            _ => {}
        }
    }
    format!("{}: {}", m.role, parts.join(" "))
}

/// Rows of `cases`; `columns` cuts them to the first columns (an older file's header).
fn csv_text(cases: &[EvalCase], header: bool, columns: usize) -> Result<String, ExportError> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    let err = |e: csv::Error| ExportError::Render(format!("CSV: {e}"));
    if header {
        w.write_record(CSV_COLUMNS).map_err(err)?;
    }
    for c in cases {
        let p = &c.provenance;
        let conversation: Vec<String> = c.input.messages.iter().map(conversation_line).collect();
        let tools: Vec<String> = c
            .input
            .tools
            .as_ref()
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.get("name").or_else(|| t.get("function").and_then(|f| f.get("name"))).and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let signals: Vec<String> = c.failure.signals.iter().map(|s| s.kind.clone()).collect();
        w.write_record(
            [
                c.id.as_str(),
                &p.project,
                &p.pattern_id,
                &p.pattern_label,
                &p.trace_id,
                &p.span_id,
                &p.call_time,
                &p.feature,
                &p.model,
                &c.failure.reasons.join(";"),
                &signals.join(";"),
                c.input.system.as_deref().unwrap_or_default(),
                &conversation.join("\n"),
                &c.question(),
                &tools.join(";"),
                &c.output.text,
                c.expected.text.as_deref().unwrap_or_default(),
                c.expected.source.as_deref().unwrap_or("rubric"),
                &c.expected.rubric.join("\n"),
                &serde_json::to_string(&c.input.parameters).expect("parameters serialise"),
            ]
            .into_iter()
            .take(columns),
        )
        .map_err(err)?;
    }
    let bytes = w.into_inner().map_err(|e| ExportError::Render(format!("CSV: {e}")))?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8"))
}
