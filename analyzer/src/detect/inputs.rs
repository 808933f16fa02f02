//! What detection reads from ClickHouse: one lean row per LLM call of the window, the spans in
//! error, the tool runs of traces that repeat a tool, the calls that asked for a format, the
//! signals and each feature's norms. ClickHouse does the filtering and the aggregation; the
//! rules run in Rust over these rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use clickhouse::Row;
use flywheel_schemas::Store;
use flywheel_schemas::queries::nanos;
use flywheel_schemas::rows::ts;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::AnalyzerError;

/// One LLM call of the window, as much as the rules need.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct Call {
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    pub model: String,
    pub provider: String,
    #[serde(with = "ts::nanos")]
    pub start_time: OffsetDateTime,
    pub duration_ns: u64,
    pub cost_usd: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub status: String,
    pub error_type: String,
    pub error_message: String,
    /// The class the collector read at ingest (empty for rows stored before it did).
    pub error_class: String,
    pub http_status: u16,
    pub finish_reasons: Vec<String>,
    pub tool_names: Vec<String>,
    /// The user's last message (excerpt).
    pub input_text: String,
    /// The answer (excerpt).
    pub output_text: String,
    /// Whether the producer recorded the answer's messages at all. The OTel GenAI default
    /// captures no content: no messages is then no evidence of an empty answer.
    pub output_captured: bool,
    /// The input from its first instruction aimed at the model on ("ignore your previous
    /// instructions…"), when it has one: prompt injection, read by [`super::security`].
    pub injection: String,
    /// The hash of the call's system instructions (`contents`).
    pub system_hash: String,
    /// Tool calls the model made: the output messages' JSON when it has any (excerpt).
    pub tool_calls: String,
    /// The text the user wrote in the last few user turns of the input (tool results and
    /// retrieved documents excluded), one entry per turn: the user's language is read here.
    pub user_turns: Vec<String>,
}

/// A span in error, or with an exception event, that is not an LLM call of the window.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ErrorSpan {
    pub trace_id: String,
    pub span_id: String,
    pub name: String,
    #[serde(with = "ts::nanos")]
    pub start_time: OffsetDateTime,
    pub status_code: String,
    pub status_message: String,
    pub tool_name: String,
    pub exception_type: String,
    pub exception_message: String,
}

/// A signal that may attach to a call of the window.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct Signal {
    pub kind: String,
    /// A custom signal's name; an evaluation's evaluator.
    pub name: String,
    pub source: String,
    #[serde(with = "ts::nanos")]
    pub timestamp: OffsetDateTime,
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub value: Option<f64>,
    pub scale: Option<f64>,
    pub comment: String,
    pub text: String,
    pub edit_ratio: Option<f64>,
    /// An evaluation's verdict and who judged (human, llm, code; '' when unknown).
    pub label: String,
    pub annotator: String,
}

// Defaults for building rows in tests and callers; the epoch stands for "no time".
impl Call {
    /// The tool calls the model asked for in this answer: (tool name, arguments as JSON).
    pub fn requested_tools(&self) -> Vec<(String, String)> {
        let Ok(messages) = serde_json::from_str::<Vec<flywheel_schemas::messages::Message>>(&self.tool_calls) else { return vec![] };
        messages
            .iter()
            .flat_map(|m| m.tool_calls().map(|(_, name, args)| (name.to_string(), args.to_string())).collect::<Vec<_>>())
            .collect()
    }
}

impl Default for Call {
    fn default() -> Self {
        Call {
            trace_id: String::new(),
            span_id: String::new(),
            session_id: String::new(),
            user_id: String::new(),
            feature: String::new(),
            model: String::new(),
            provider: String::new(),
            start_time: OffsetDateTime::UNIX_EPOCH,
            duration_ns: 0,
            cost_usd: None,
            input_tokens: 0,
            output_tokens: 0,
            status: String::new(),
            error_type: String::new(),
            error_message: String::new(),
            error_class: String::new(),
            http_status: 0,
            finish_reasons: vec![],
            tool_names: vec![],
            input_text: String::new(),
            output_text: String::new(),
            output_captured: true,
            injection: String::new(),
            system_hash: String::new(),
            tool_calls: String::new(),
            user_turns: vec![],
        }
    }
}

impl Default for ErrorSpan {
    fn default() -> Self {
        ErrorSpan {
            trace_id: String::new(),
            span_id: String::new(),
            name: String::new(),
            start_time: OffsetDateTime::UNIX_EPOCH,
            status_code: String::new(),
            status_message: String::new(),
            tool_name: String::new(),
            exception_type: String::new(),
            exception_message: String::new(),
        }
    }
}

impl Default for Signal {
    fn default() -> Self {
        Signal {
            kind: String::new(),
            name: String::new(),
            source: String::new(),
            timestamp: OffsetDateTime::UNIX_EPOCH,
            trace_id: String::new(),
            span_id: String::new(),
            session_id: String::new(),
            value: None,
            scale: None,
            comment: String::new(),
            text: String::new(),
            edit_ratio: None,
            label: String::new(),
            annotator: String::new(),
        }
    }
}

/// The usual latency and cost of a feature on a model, computed in ClickHouse (models differ
/// in price and speed by 20×: a norm across models would flag every call of the slow one).
#[derive(Debug, Clone, Default, Row, Serialize, Deserialize)]
pub struct Norm {
    pub feature: String,
    pub model: String,
    pub calls: u64,
    pub median_duration_ns: f64,
    pub median_cost_usd: f64,
}

/// One run of a tool, in a trace that runs some tool at least three times (the only traces
/// where an agent can loop).
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ToolRun {
    pub trace_id: String,
    pub span_id: String,
    #[serde(with = "ts::nanos")]
    pub start_time: OffsetDateTime,
    pub tool: String,
    /// The arguments as the producer recorded them (excerpt).
    pub arguments: String,
}

/// A call that asked for structured output, with what it asked for and what it got.
#[derive(Debug, Clone, Default, Row, Serialize, Deserialize)]
pub struct FormatRequest {
    pub trace_id: String,
    pub span_id: String,
    /// What asked for the format: `json` (`gen_ai.output.type`), the request's
    /// `response_format` or schema JSON, or `instructions` (the system prompt says so).
    pub spec: String,
    /// The whole answer, up to 20,000 characters.
    pub output: String,
    /// The call's system instructions, by hash into [`Inputs::instructions`].
    pub system_hash: String,
}

impl FormatRequest {
    /// Requests under one contract: the same instructions and the same spec.
    pub fn contract_key(&self) -> (String, String) {
        (self.system_hash.clone(), self.spec.clone())
    }
}

/// A call whose answer contains something that looks like personal data or a secret, with
/// all the text the user wrote in the conversation (to tell a leak from an echo).
#[derive(Debug, Clone, Default, Row, Serialize, Deserialize)]
pub struct DisclosureCandidate {
    pub trace_id: String,
    pub span_id: String,
    pub output: String,
    pub user_text: String,
    /// The call's system instructions, by hash into [`Inputs::instructions`].
    pub system_hash: String,
}

/// The source material of a call's input, in ClickHouse: tool results, system and other
/// non-chat messages, and the parts of a user message before its last (a page pasted before
/// the question) — not what the user or the assistant said in the conversation.
const SOURCES_SQL: &str = "substringUTF8(arrayStringConcat(arrayMap(m -> arrayStringConcat(arrayMap((p, i) -> \
    if(JSONExtractString(p, 'type') = 'tool_call_response' OR JSONExtractString(m, 'role') NOT IN ('user', 'assistant') \
       OR (JSONExtractString(m, 'role') = 'user' AND i < length(JSONExtractArrayRaw(m, 'parts'))), \
       concat(JSONExtractString(p, 'content'), ' ', JSONExtractRaw(p, 'response')), ''), \
    JSONExtractArrayRaw(m, 'parts'), arrayEnumerate(JSONExtractArrayRaw(m, 'parts'))), ' '), \
    JSONExtractArrayRaw(input_messages)), '\\n'), 1, 60000)";

/// A call whose answer says it has no information, with its last user turn and its sources:
/// read by [`super::ignored`].
#[derive(Debug, Clone, Default, Row, Serialize, Deserialize)]
pub struct IgnoranceCandidate {
    pub trace_id: String,
    pub span_id: String,
    pub output: String,
    pub question: String,
    pub sources: String,
}

/// A call whose answer states figures (prices, percentages, times, durations), with the text of
/// everything the model was given: read by [`super::grounding`].
#[derive(Debug, Clone, Default, Row, Serialize, Deserialize)]
pub struct GroundingCandidate {
    pub trace_id: String,
    pub span_id: String,
    pub output: String,
    /// The text of every input message part: texts, tool results, tool-call arguments.
    pub context: String,
    /// The source material among them: tool results, system and other non-chat messages, and
    /// the parts of a user message before its last (a page pasted before the question) — not
    /// what the user or the assistant said in the conversation.
    pub sources: String,
    /// The call's system instructions, by hash into [`Inputs::instructions`].
    pub system_hash: String,
}

/// Names by key: a feature's defined tools, a trace's tools that ran.
#[derive(Debug, Clone, Row, Deserialize)]
struct Names {
    key: String,
    names: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub calls: Vec<Call>,
    pub error_spans: Vec<ErrorSpan>,
    pub signals: Vec<Signal>,
    pub norms: Vec<Norm>,
    pub tool_runs: Vec<ToolRun>,
    pub format_requests: Vec<FormatRequest>,
    pub disclosures: Vec<DisclosureCandidate>,
    pub groundings: Vec<GroundingCandidate>,
    pub ignorances: Vec<IgnoranceCandidate>,
    /// Per feature: the tools its requests offered the model (tool definitions).
    pub defined_tools: BTreeMap<String, BTreeSet<String>>,
    /// Per trace whose answers may report an action: the tools whose spans ran in it.
    pub ran_tools: BTreeMap<String, BTreeSet<String>>,
    /// The system instructions of disclosure candidates and format requests, by hash: what
    /// the developer gave the model on purpose, and the output contract it spelled out.
    pub instructions: BTreeMap<String, String>,
    /// Calls asking one question (indices into `calls`) whose answers state disagreeing facts,
    /// before their sources are compared ([`super::inconsistent::candidates`]).
    pub questions: Vec<Vec<usize>>,
    /// For calls that ask a question others asked and answered differently: a hash of their
    /// sources (tool results, retrieved pages, other non-chat input; '' for none), by (trace,
    /// span): [`super::inconsistent`] compares only answers given the same sources.
    pub contexts: HashMap<(String, String), String>,
}

/// The text parts of the user-role messages of `input_messages` (canonical JSON), as an
/// array of strings: what the user wrote, never tool results (which travel in `tool`
/// messages, or as `tool_call_response` parts of a user message in Anthropic's layout).
fn user_texts_sql(last: usize) -> String {
    format!(
        "arraySlice(arrayFilter(t -> t != '', arrayMap(m -> arrayStringConcat(arrayMap(p -> JSONExtractString(p, 'content'), \
         arrayFilter(p -> JSONExtractString(p, 'type') = 'text', JSONExtractArrayRaw(m, 'parts'))), '\\n'), \
         arrayFilter(m -> JSONExtractString(m, 'role') = 'user', JSONExtractArrayRaw(input_messages)))), -{last}, {last})"
    )
}

/// Where producers say a call asked for structured output: OTel GenAI ≥ 1.37
/// `gen_ai.output.type`, the older `gen_ai.openai.request.response_format`, OpenInference's
/// invocation parameters, OpenLLMetry's structured-output schema, Vercel AI's object mode.
pub(crate) const FORMAT_SPEC_SQL: &str = "multiIf(\
    lower(attributes['gen_ai.output.type']) = 'json', 'json', \
    startsWith(lower(attributes['gen_ai.openai.request.response_format']), 'json'), attributes['gen_ai.openai.request.response_format'], \
    attributes['gen_ai.request.structured_output_schema'] != '', attributes['gen_ai.request.structured_output_schema'], \
    match(attributes['llm.invocation_parameters'], ?), attributes['llm.invocation_parameters'], \
    attributes['ai.settings.output'] IN ('object', 'array'), if(attributes['ai.schema'] != '', attributes['ai.schema'], 'json'), \
    '')";

/// `response_format: {"type": "json_object" | "json_schema", …}` in invocation parameters.
pub(crate) const RESPONSE_FORMAT_RE: &str = r#""response_format"\s*:\s*\{[^}]*"json"#;

/// A system prompt that asks for JSON ("respond only with valid JSON", "return a JSON object").
const JSON_INSTRUCTIONS_RE: &str =
    r"(?i)\b(respond|reply|answer|return|output|format|produce|write)\b[^.\n]{0,60}\bjson\b|\bvalid json\b|\bjson (object|only|format)\b";

/// Pulls what the rules need for `[since, until)` from ClickHouse.
pub async fn fetch(store: &Store, project: &str, since: OffsetDateTime, until: OffsetDateTime) -> Result<Inputs, AnalyzerError> {
    let window = "project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) AND start_time < fromUnixTimestamp64Nano(?)";
    let norms: Vec<Norm> = store
        .query(&format!(
            "SELECT feature, if(response_model != '', response_model, request_model) AS model, count() AS calls, \
             toFloat64(quantileExact(0.5)(duration_ns)) AS median_duration_ns, \
             toFloat64(quantileExactIf(0.5)(ifNull(cost_usd, 0), isNotNull(cost_usd))) AS median_cost_usd \
             FROM llm_calls FINAL WHERE {window} AND status != 'error' GROUP BY feature, model ORDER BY feature, model"
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .fetch_all()
        .await?;
    // Instructions aimed at the model inside system instructions (RAG templates put the
    // retrieved pages there too), by hash: only the matching ones leave the database.
    let injected: Vec<(String, String)> = store
        .query(&format!(
            "SELECT hash, any(extract(content, ?)) FROM contents \
             WHERE project_id = ? AND kind = 'system_instructions' AND match(content, ?) \
               AND hash IN (SELECT system_instructions_hash FROM llm_calls WHERE {window}) GROUP BY hash"
        ))
        .bind(super::security::INJECTION_SQL)
        .bind(project)
        .bind(super::security::INJECTION_SQL)
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .fetch_all()
        .await?;
    let injected_hashes: Vec<&str> = injected.iter().map(|(h, _)| h.as_str()).collect();
    let mut calls: Vec<Call> = store
        .query(&format!(
            "SELECT trace_id, span_id, session_id, user_id, feature, if(response_model != '', response_model, request_model) AS model, \
             provider, start_time, duration_ns, cost_usd, input_tokens, output_tokens, status, error_type, \
             substringUTF8(error_message, 1, 400) AS error_message, error_class, http_status, finish_reasons, tool_names, \
             substringUTF8(input_text, 1, 600) AS input_text, substringUTF8(output_text, 1, if(injection = '' AND NOT has(?, system_instructions_hash), 800, 8000)) AS output_text, \
             output_messages NOT IN ('', '[]') AS output_captured, extract(input_messages, ?) AS injection, \
             system_instructions_hash AS system_hash, \
             if(position(output_messages, 'tool_call') > 0, substringUTF8(output_messages, 1, 4000), '') AS tool_calls, \
             arrayMap(t -> substringUTF8(t, greatest(1, toInt64(lengthUTF8(t)) - 599), 600), {user_turns}) AS user_turns \
             FROM llm_calls FINAL WHERE {window} ORDER BY trace_id, start_time, span_id",
            user_turns = user_texts_sql(3)
        ))
        .bind(&injected_hashes)
        .bind(super::security::INJECTION_SQL)
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .fetch_all()
        .await?;
    let injected: BTreeMap<String, String> = injected.into_iter().collect();
    for c in calls.iter_mut().filter(|c| c.injection.is_empty()) {
        if let Some(text) = injected.get(&c.system_hash) {
            c.injection.clone_from(text);
        }
    }
    // Questions others asked and got another answer to: what their sources were (a hash), a
    // few thousand traces a query (the trace ids travel in the query text).
    let questions = super::inconsistent::candidates(2, &calls);
    let contexts = {
        let wanted: BTreeSet<(&str, &str)> =
            questions.iter().flatten().map(|&i| (calls[i].trace_id.as_str(), calls[i].span_id.as_str())).collect();
        let traces: Vec<&str> = wanted.iter().map(|(t, _)| *t).collect::<BTreeSet<_>>().into_iter().collect();
        let mut contexts = HashMap::new();
        for chunk in traces.chunks(2000) {
            let rows: Vec<(String, String, String)> = store
                .query(&format!(
                    "SELECT trace_id, span_id, if((({SOURCES_SQL}) AS sources) = '', '', hex(cityHash64(sources))) \
                     FROM llm_calls FINAL WHERE {window} AND has(?, trace_id)"
                ))
                .bind(project)
                .bind(nanos(since))
                .bind(nanos(until))
                .bind(chunk)
                .fetch_all()
                .await?;
            for (t, s, text) in rows {
                if wanted.contains(&(t.as_str(), s.as_str())) {
                    contexts.insert((t, s), text);
                }
            }
        }
        contexts
    };
    // Spans of the window's traces in error or with an exception event; LLM call spans are
    // told apart by the rules (their exception events count, their status already did).
    let error_spans: Vec<ErrorSpan> = store
        .query(&format!(
            "SELECT trace_id, span_id, name, start_time, status_code, status_message, \
             if(attributes['gen_ai.tool.name'] != '', attributes['gen_ai.tool.name'], attributes['tool.name']) AS tool_name, \
             if(indexOf(event_names, 'exception') > 0, event_attributes[indexOf(event_names, 'exception')]['exception.type'], '') AS exception_type, \
             substringUTF8(if(indexOf(event_names, 'exception') > 0, event_attributes[indexOf(event_names, 'exception')]['exception.message'], ''), 1, 400) AS exception_message \
             FROM spans FINAL WHERE {window} AND (status_code = 'error' OR has(event_names, 'exception')) ORDER BY trace_id, start_time, span_id"
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .fetch_all()
        .await?;
    // Signals may come a while after the call: look a day past the window's end.
    let signals: Vec<Signal> = store
        .query(
            "SELECT kind, name, source, timestamp, trace_id, span_id, session_id, value, scale, substringUTF8(comment, 1, 400) AS comment, \
             substringUTF8(text, 1, 4000) AS text, edit_ratio, attributes['evaluation.label'] AS label, \
             attributes['evaluation.annotator'] AS annotator FROM signals FINAL \
             WHERE project_id = ? AND timestamp >= fromUnixTimestamp64Nano(?) AND timestamp < fromUnixTimestamp64Nano(?) \
             ORDER BY timestamp, signal_id",
        )
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until + time::Duration::days(1)))
        .fetch_all()
        .await?;
    // Tool runs of traces that run one tool three times or more: where an agent may loop.
    let tool = "multiIf(attributes['gen_ai.tool.name'] != '', attributes['gen_ai.tool.name'], attributes['tool.name'] != '', \
                attributes['tool.name'], attributes['traceloop.span.kind'] = 'tool', attributes['traceloop.entity.name'], '')";
    let tool_runs: Vec<ToolRun> = store
        .query(&format!(
            "SELECT trace_id, span_id, start_time, {tool} AS tool, substringUTF8(multiIf(attributes['gen_ai.tool.call.arguments'] != '', \
             attributes['gen_ai.tool.call.arguments'], attributes['input.value'] != '', attributes['input.value'], \
             attributes['traceloop.entity.input']), 1, 400) AS arguments \
             FROM spans FINAL WHERE {window} AND tool != '' AND trace_id IN \
             (SELECT trace_id FROM spans WHERE {window} AND {tool} != '' GROUP BY trace_id, {tool} HAVING count() >= 3) \
             ORDER BY trace_id, start_time, span_id"
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .fetch_all()
        .await?;
    // Calls that asked for structured output: by a request parameter on their span, or by
    // their system instructions.
    let format_requests: Vec<FormatRequest> = store
        .query(&format!(
            "SELECT c.trace_id AS trace_id, c.span_id AS span_id, if(s.spec != '', s.spec, 'instructions') AS spec, c.output AS output, \
             c.system_instructions_hash AS system_hash \
             FROM (SELECT trace_id, span_id, system_instructions_hash, substringUTF8(output_text, 1, 20000) AS output \
                   FROM llm_calls FINAL WHERE {window} AND output_text != '') AS c \
             LEFT JOIN (SELECT trace_id, span_id, {FORMAT_SPEC_SQL} AS spec FROM spans WHERE {window} AND spec != '') AS s \
             ON c.trace_id = s.trace_id AND c.span_id = s.span_id \
             WHERE s.spec != '' OR (c.system_instructions_hash != '' AND c.system_instructions_hash IN \
               (SELECT hash FROM contents WHERE project_id = ? AND kind = 'system_instructions' AND match(content, ?))) \
             ORDER BY trace_id, span_id"
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(RESPONSE_FORMAT_RE)
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(project)
        .bind(JSON_INSTRUCTIONS_RE)
        .fetch_all()
        .await?;
    // Answers with something that looks like personal data or a secret: ClickHouse finds the
    // few candidates, the rule checks each match (card checksums) against what the user wrote.
    let disclosures: Vec<DisclosureCandidate> = store
        .query(&format!(
            "SELECT trace_id, span_id, substringUTF8(output_text, 1, 8000) AS output, \
             substringUTF8(arrayStringConcat({user_all}, '\\n'), 1, 50000) AS user_text, \
             system_instructions_hash AS system_hash \
             FROM llm_calls FINAL WHERE {window} AND match(output_text, ?) ORDER BY trace_id, span_id",
            user_all = user_texts_sql(1000)
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(flywheel_schemas::sensitive::ANY)
        .fetch_all()
        .await?;
    // Answers that state figures, with all the input they had (texts, tool results, arguments).
    let groundings: Vec<GroundingCandidate> = store
        .query(&format!(
            "SELECT trace_id, span_id, substringUTF8(output_text, 1, 8000) AS output, \
             substringUTF8(arrayStringConcat(arrayMap(m -> arrayStringConcat(arrayMap(p -> concat(JSONExtractString(p, 'content'), ' ', \
             JSONExtractRaw(p, 'response'), ' ', JSONExtractRaw(p, 'arguments')), JSONExtractArrayRaw(m, 'parts')), '\\n'), \
             JSONExtractArrayRaw(input_messages)), '\\n'), 1, 60000) AS context, \
             {SOURCES_SQL} AS sources, system_instructions_hash AS system_hash \
             FROM llm_calls FINAL WHERE {window} AND output_text != '' AND input_messages != '' AND match(output_text, ?) \
             ORDER BY trace_id, span_id"
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(super::grounding::CANDIDATE_RE)
        .fetch_all()
        .await?;
    // The tools each feature offers the model (the names in its tool definitions), and the
    // tools that ran in the traces whose answers may report an action done.
    let defined: Vec<Names> = store
        .query(&format!(
            "SELECT c.feature AS key, groupUniqArrayArray(d.names) AS names \
             FROM (SELECT DISTINCT feature, tool_definitions_hash AS hash FROM llm_calls WHERE {window} AND tool_definitions_hash != '') AS c \
             INNER JOIN (SELECT hash, any(arrayFilter(n -> n != '', arrayMap(t -> if(JSONExtractString(t, 'name') != '', \
               JSONExtractString(t, 'name'), JSONExtractString(t, 'function', 'name')), JSONExtractArrayRaw(content)))) AS names \
               FROM contents WHERE project_id = ? AND kind = 'tool_definitions' GROUP BY hash) AS d ON c.hash = d.hash \
             GROUP BY key ORDER BY key"
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(project)
        .fetch_all()
        .await?;
    let defined_tools = defined.into_iter().map(|n| (n.key, n.names.into_iter().collect())).collect();
    let ran: Vec<Names> = store
        .query(&format!(
            "SELECT trace_id AS key, groupUniqArray({tool}) AS names FROM spans WHERE {window} AND {tool} != '' AND trace_id IN \
             (SELECT trace_id FROM llm_calls WHERE {window} AND match(output_text, ?)) GROUP BY key ORDER BY key"
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(super::actions::CANDIDATE_RE)
        .fetch_all()
        .await?;
    let ran_tools = ran.into_iter().map(|n| (n.key, n.names.into_iter().collect())).collect();
    // Answers that say they have no information, with their sources and the question.
    let ignorances: Vec<IgnoranceCandidate> = store
        .query(&format!(
            "SELECT trace_id, span_id, substringUTF8(output_text, 1, 4000) AS output, \
             arrayStringConcat({last_user}, '') AS question, {SOURCES_SQL} AS sources \
             FROM llm_calls FINAL WHERE {window} AND input_messages != '' AND match(output_text, ?) ORDER BY trace_id, span_id",
            last_user = user_texts_sql(1)
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .bind(super::ignored::NO_INFORMATION_RE)
        .fetch_all()
        .await?;
    // The instructions of all three: what a disclosure may repeat, what a format request asked
    // for, what an answer's figures may come from.
    let hashes: BTreeSet<&str> = disclosures
        .iter()
        .map(|d| d.system_hash.as_str())
        .chain(format_requests.iter().map(|r| r.system_hash.as_str()))
        .chain(groundings.iter().map(|g| g.system_hash.as_str()))
        .filter(|h| !h.is_empty())
        .collect();
    let instructions: BTreeMap<String, String> = if hashes.is_empty() {
        BTreeMap::new()
    } else {
        store
            .query(
                "SELECT hash, any(substringUTF8(content, 1, 50000)) AS instructions FROM contents \
                 WHERE project_id = ? AND kind = 'system_instructions' AND has(?, hash) GROUP BY hash",
            )
            .bind(project)
            .bind(hashes.into_iter().collect::<Vec<&str>>())
            .fetch_all::<(String, String)>()
            .await?
            .into_iter()
            .collect()
    };
    Ok(Inputs {
        calls,
        error_spans,
        signals,
        norms,
        tool_runs,
        format_requests,
        disclosures,
        groundings,
        ignorances,
        defined_tools,
        ran_tools,
        instructions,
        questions,
        contexts,
    })
}
