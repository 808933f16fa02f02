//! Detection: which interactions failed, why, and how badly.
//!
//! ClickHouse computes each feature's latency and cost norms and hands over one lean row per
//! LLM call of the window (ids, status, finish reasons, excerpts), the spans in error and the
//! signals; the rules ([`crate::rules`]) run here. The unit of a failure is the *interaction*
//! (trace): a thumbs-down is about what the user saw, a failed tool call about the call that
//! asked for it, and both belong to one failure anchored on the call with the strongest
//! explicit evidence — otherwise two rows of one incident would land in different patterns.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use clickhouse::Row;
use flywheel_schemas::Store;
use flywheel_schemas::rows::ts;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::AnalyzerError;
use crate::rules::{Category, Rule, RuleKind, Rules};

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
    pub finish_reasons: Vec<String>,
    pub tool_names: Vec<String>,
    /// The user's last message (excerpt).
    pub input_text: String,
    /// The answer (excerpt).
    pub output_text: String,
    /// Tool calls the model made: the output messages' JSON when it has any (excerpt).
    pub tool_calls: String,
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
    pub source: String,
    #[serde(with = "ts::nanos")]
    pub timestamp: OffsetDateTime,
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub value: Option<f64>,
    pub comment: String,
    pub text: String,
    pub edit_ratio: Option<f64>,
}

// Defaults for building rows in tests and callers; the epoch stands for "no time".
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
            finish_reasons: vec![],
            tool_names: vec![],
            input_text: String::new(),
            output_text: String::new(),
            tool_calls: String::new(),
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
            source: String::new(),
            timestamp: OffsetDateTime::UNIX_EPOCH,
            trace_id: String::new(),
            span_id: String::new(),
            session_id: String::new(),
            value: None,
            comment: String::new(),
            text: String::new(),
            edit_ratio: None,
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

#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub calls: Vec<Call>,
    pub error_spans: Vec<ErrorSpan>,
    pub signals: Vec<Signal>,
    pub norms: Vec<Norm>,
}

/// A signal as a failure remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalBrief {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub comment: String,
}

/// A failing interaction, anchored on one of its calls.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The anchor call.
    pub call: Call,
    /// Rule ids that fired, in rule-file order.
    pub reasons: Vec<String>,
    pub categories: Vec<String>,
    pub severity: f32,
    /// Reason → what was seen.
    pub evidence: BTreeMap<String, String>,
    pub signals: Vec<SignalBrief>,
    /// The corrected text of the user's edit, the best reference a user ever gives.
    pub edit_text: String,
    /// Tool errors of the trace, as "tool: message".
    pub tool_errors: Vec<String>,
    /// Detected languages of question and answer when they differ.
    pub languages: Option<(String, String)>,
}

impl Failure {
    /// The key of the anchor call.
    pub fn key(&self) -> (String, String) {
        (self.call.trace_id.clone(), self.call.span_id.clone())
    }
}

/// Evidence collected for one call before the trace is folded into one failure.
#[derive(Default)]
struct Hits {
    reasons: BTreeMap<usize, String>,
    signals: Vec<SignalBrief>,
    edit_text: String,
    tool_errors: Vec<String>,
    languages: Option<(String, String)>,
    /// Signal rules fired only by signals the collector derived (not sent by the app).
    derived_only: BTreeMap<usize, bool>,
}

impl Hits {
    fn add(&mut self, rule_index: usize, evidence: impl Into<String>) {
        self.reasons.entry(rule_index).or_insert_with(|| evidence.into());
    }
}

/// Runs every rule over the window's data; one failure per failing trace, in trace order.
pub fn evaluate(rules: &Rules, inputs: &Inputs) -> Vec<Failure> {
    let norms: HashMap<(&str, &str), &Norm> = inputs.norms.iter().map(|n| ((n.feature.as_str(), n.model.as_str()), n)).collect();
    let mut hits: BTreeMap<(String, String), Hits> = BTreeMap::new();
    let mut by_trace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut by_key: HashMap<(&str, &str), usize> = HashMap::new();
    let mut by_session: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, c) in inputs.calls.iter().enumerate() {
        by_trace.entry(&c.trace_id).or_default().push(i);
        by_key.insert((&c.trace_id, &c.span_id), i);
        if !c.session_id.is_empty() {
            by_session.entry(&c.session_id).or_default().push(i);
        }
    }
    for calls in by_trace.values_mut().chain(by_session.values_mut()) {
        calls.sort_by_key(|&i| (inputs.calls[i].start_time, i));
    }
    for (ri, rule) in rules.rules.iter().enumerate() {
        match rule.spec.kind {
            RuleKind::Signal | RuleKind::ToolError | RuleKind::Exception => continue,
            RuleKind::LanguageMismatch => {
                for (i, (question, answer)) in language_mismatches(rule, &inputs.calls) {
                    let c = &inputs.calls[i];
                    let h = hits.entry((c.trace_id.clone(), c.span_id.clone())).or_default();
                    h.add(ri, format!("asked in {question}, answered in {answer}"));
                    h.languages = Some((question, answer));
                }
                continue;
            }
            _ => {}
        }
        for c in &inputs.calls {
            if let Some(text) = call_rule(rule, c, norms.get(&(c.feature.as_str(), c.model.as_str())).copied()) {
                hits.entry((c.trace_id.clone(), c.span_id.clone())).or_default().add(ri, text);
            }
        }
    }

    // Spans in error: an exception on the call's own span, or a failed tool the call asked for.
    for s in &inputs.error_spans {
        if let Some(&ci) = by_key.get(&(s.trace_id.as_str(), s.span_id.as_str())) {
            if let Some((ri, _)) = rule_of(rules, RuleKind::Exception)
                && !s.exception_type.is_empty()
            {
                let c = &inputs.calls[ci];
                hits.entry((c.trace_id.clone(), c.span_id.clone()))
                    .or_default()
                    .add(ri, format!("{}: {}", s.exception_type, excerpt(&s.exception_message, 200)));
            }
            continue;
        }
        let Some(calls) = by_trace.get(s.trace_id.as_str()) else { continue };
        // The call that asked for the tool started before it; else the trace's first call.
        let asker = calls.iter().rev().find(|&&i| inputs.calls[i].start_time <= s.start_time).or(calls.first()).copied();
        let (Some(ci), Some((ri, _))) = (asker, rule_of(rules, RuleKind::ToolError)) else { continue };
        let c = &inputs.calls[ci];
        let tool = if s.tool_name.is_empty() { s.name.clone() } else { s.tool_name.clone() };
        let message = [&s.exception_message, &s.status_message].into_iter().find(|m| !m.is_empty()).cloned().unwrap_or_default();
        let what = if s.exception_type.is_empty() {
            format!("{tool}: {}", excerpt(&message, 200))
        } else {
            format!("{tool}: {}: {}", s.exception_type, excerpt(&message, 200))
        };
        let h = hits.entry((c.trace_id.clone(), c.span_id.clone())).or_default();
        h.add(ri, what.clone());
        h.tool_errors.push(what);
    }

    // Signals: on a span, on a trace (the interaction: resolved when the trace is folded), or
    // on a session (the session's last call before the signal).
    let mut trace_signals: BTreeMap<String, Vec<(usize, &Signal, String)>> = BTreeMap::new();
    for s in &inputs.signals {
        for (ri, rule) in rules.rules.iter().enumerate().filter(|(_, r)| r.spec.kind == RuleKind::Signal) {
            let Some(evidence) = signal_rule(rule, s) else { continue };
            if !s.trace_id.is_empty() {
                if let Some(&ci) = by_key.get(&(s.trace_id.as_str(), s.span_id.as_str())) {
                    let c = &inputs.calls[ci];
                    note_signal(hits.entry((c.trace_id.clone(), c.span_id.clone())).or_default(), ri, s, evidence);
                } else if by_trace.contains_key(s.trace_id.as_str()) {
                    trace_signals.entry(s.trace_id.clone()).or_default().push((ri, s, evidence));
                }
            } else if let Some(calls) = by_session.get(s.session_id.as_str()) {
                let window = rule.spec.within_minutes.map(|m| time::Duration::minutes(m.into()));
                let before = calls.iter().rev().find(|&&i| inputs.calls[i].start_time <= s.timestamp).copied();
                if let Some(ci) = before {
                    let c = &inputs.calls[ci];
                    if window.is_none_or(|w| s.timestamp - c.start_time <= w) {
                        note_signal(hits.entry((c.trace_id.clone(), c.span_id.clone())).or_default(), ri, s, evidence);
                    }
                }
            }
        }
    }

    // Fold each trace into one failure.
    let mut failing_traces: BTreeSet<&str> =
        hits.keys().map(|(t, _)| by_trace.get_key_value(t.as_str()).map(|(k, _)| *k).unwrap_or("")).collect();
    failing_traces.extend(trace_signals.keys().map(|t| by_trace.get_key_value(t.as_str()).map(|(k, _)| *k).unwrap_or("")));
    failing_traces.remove("");
    let mut failures = Vec::new();
    for trace in failing_traces {
        let calls = &by_trace[trace];
        let severity_of = |i: usize, category: Option<Category>| -> f32 {
            let c = &inputs.calls[i];
            hits.get(&(c.trace_id.clone(), c.span_id.clone())).map_or(0.0, |h| {
                combine(
                    h.reasons
                        .keys()
                        .filter(|&&ri| category.is_none_or(|cat| rules.rules[ri].spec.category == cat))
                        .map(|&ri| rules.rules[ri].spec.severity),
                )
            })
        };
        // Anchor: strongest explicit evidence; else a call a signal named; else the last call.
        let anchor = calls
            .iter()
            .copied()
            .filter(|&i| severity_of(i, Some(Category::Explicit)) > 0.0)
            .max_by(|&a, &b| severity_of(a, Some(Category::Explicit)).total_cmp(&severity_of(b, Some(Category::Explicit))).then(b.cmp(&a)))
            .or_else(|| calls.iter().copied().filter(|&i| severity_of(i, None) > 0.0).max_by_key(|&i| (inputs.calls[i].start_time, i)))
            .unwrap_or(*calls.last().expect("a trace has calls"));
        let mut merged = Hits::default();
        for &i in calls {
            let c = &inputs.calls[i];
            if let Some(h) = hits.remove(&(c.trace_id.clone(), c.span_id.clone())) {
                for (ri, e) in h.reasons {
                    merged.add(ri, e);
                }
                merged.signals.extend(h.signals);
                for (ri, d) in h.derived_only {
                    *merged.derived_only.entry(ri).or_insert(true) &= d;
                }
                merged.tool_errors.extend(h.tool_errors);
                if merged.edit_text.is_empty() {
                    merged.edit_text = h.edit_text;
                }
                if merged.languages.is_none() {
                    merged.languages = h.languages;
                }
            }
        }
        for (ri, s, evidence) in trace_signals.remove(trace).unwrap_or_default() {
            note_signal(&mut merged, ri, s, evidence);
        }
        if merged.reasons.is_empty() {
            continue;
        }
        let reasons: Vec<String> = merged.reasons.keys().map(|&ri| rules.rules[ri].spec.id.clone()).collect();
        // A signal the collector derived (not sent by the app) is derived evidence.
        let categories: Vec<String> = merged
            .reasons
            .keys()
            .map(|&ri| if merged.derived_only.get(&ri) == Some(&true) { "derived" } else { rules.rules[ri].spec.category.as_str() })
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let severity = combine(merged.reasons.keys().map(|&ri| rules.rules[ri].spec.severity));
        let evidence = merged.reasons.iter().map(|(&ri, e)| (rules.rules[ri].spec.id.clone(), e.clone())).collect();
        failures.push(Failure {
            call: inputs.calls[anchor].clone(),
            reasons,
            categories,
            severity,
            evidence,
            signals: merged.signals,
            edit_text: merged.edit_text,
            tool_errors: merged.tool_errors,
            languages: merged.languages,
        });
    }
    failures
}

fn note_signal(h: &mut Hits, ri: usize, s: &Signal, evidence: String) {
    h.add(ri, evidence);
    *h.derived_only.entry(ri).or_insert(true) &= s.source == "derived";
    h.signals.push(SignalBrief { kind: s.kind.clone(), value: s.value, comment: s.comment.clone() });
    if s.kind == "edit" && h.edit_text.is_empty() {
        h.edit_text = s.text.clone();
    }
}

fn rule_of(rules: &Rules, kind: RuleKind) -> Option<(usize, &Rule)> {
    rules.rules.iter().enumerate().find(|(_, r)| r.spec.kind == kind)
}

/// Independent pieces of evidence: 1 - Π(1 - s).
pub fn combine(severities: impl Iterator<Item = f32>) -> f32 {
    1.0 - severities.fold(1.0, |acc, s| acc * (1.0 - s.clamp(0.0, 1.0)))
}

/// Calls answered in another language than asked: the question's language when it is long
/// enough to tell, else the language the feature answers in 80 % of the time (a short "and
/// the price?" says nothing, a feature that always answers in English does).
fn language_mismatches(rule: &Rule, calls: &[Call]) -> Vec<(usize, (String, String))> {
    let detector = crate::language::Detector::new();
    let min_chars = rule.spec.min_chars.unwrap_or(40);
    let min_confidence = rule.spec.min_confidence.unwrap_or(0.5);
    let answers: Vec<Option<String>> = calls
        .iter()
        .map(|c| if c.output_text.chars().count() >= min_chars { detector.detect(&c.output_text, min_confidence) } else { None })
        .collect();
    let mut per_feature: HashMap<&str, BTreeMap<&str, usize>> = HashMap::new();
    for (c, a) in calls.iter().zip(&answers) {
        if let Some(a) = a {
            *per_feature.entry(&c.feature).or_default().entry(a).or_default() += 1;
        }
    }
    let usual: HashMap<&str, &str> = per_feature
        .iter()
        .filter_map(|(f, langs)| {
            let total: usize = langs.values().sum();
            let (lang, n) = langs.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
            (total >= 20 && *n * 5 >= total * 4).then_some((*f, *lang))
        })
        .collect();
    let mut out = Vec::new();
    for (i, (c, answer)) in calls.iter().zip(&answers).enumerate() {
        let Some(answer) = answer else { continue };
        let question = detector.detect(&c.input_text, min_confidence).or_else(|| usual.get(c.feature.as_str()).map(|l| l.to_string()));
        if let Some(question) = question
            && &question != answer
        {
            out.push((i, (question, answer.clone())));
        }
    }
    out
}

fn call_rule(rule: &Rule, c: &Call, norm: Option<&Norm>) -> Option<String> {
    let spec = &rule.spec;
    let text = |s: String| Some(s);
    match spec.kind {
        RuleKind::CallError => {
            if c.status == "error" || !c.error_type.is_empty() {
                let kind = if c.error_type.is_empty() { "error" } else { &c.error_type };
                return text(format!("{kind}: {}", excerpt(&c.error_message, 200)).trim_end_matches(": ").to_string());
            }
            None
        }
        RuleKind::FinishReason => c
            .finish_reasons
            .iter()
            .find(|r| spec.values.iter().any(|v| v.eq_ignore_ascii_case(r)))
            .map(|r| format!("finish reason `{r}` after {} output tokens", c.output_tokens)),
        RuleKind::EmptyOutput => {
            if c.status != "error"
                && c.error_type.is_empty()
                && c.output_text.trim().is_empty()
                && c.tool_names.is_empty()
                && c.tool_calls.is_empty()
            {
                return text("the call succeeded with no output".into());
            }
            None
        }
        RuleKind::OutputPattern => {
            let out = c.output_text.trim();
            rule.regexes.iter().find_map(|re| re.find(out)).and_then(|m| text(format!("\"{}\"", excerpt(m.as_str(), 120))))
        }
        RuleKind::LatencyNorm => {
            let norm = norm.filter(|n| n.calls >= spec.min_calls.unwrap_or(20) && n.median_duration_ns > 0.0)?;
            let ms = c.duration_ns as f64 / 1e6;
            let limit = norm.median_duration_ns / 1e6 * spec.factor.unwrap_or(5.0);
            (ms > limit && ms >= spec.min_ms.unwrap_or(0.0)).then(|| {
                format!(
                    "{:.1} s, {:.0}× the feature's median of {:.1} s",
                    ms / 1e3,
                    ms / (norm.median_duration_ns / 1e6),
                    norm.median_duration_ns / 1e9
                )
            })
        }
        RuleKind::CostNorm => {
            let norm = norm.filter(|n| n.calls >= spec.min_calls.unwrap_or(20) && n.median_cost_usd > 0.0)?;
            let cost = c.cost_usd?;
            (cost > norm.median_cost_usd * spec.factor.unwrap_or(5.0))
                .then(|| format!("${cost:.4}, {:.0}× the feature's median", cost / norm.median_cost_usd))
        }
        RuleKind::Signal | RuleKind::ToolError | RuleKind::Exception | RuleKind::LanguageMismatch => None,
    }
}

fn signal_rule(rule: &Rule, s: &Signal) -> Option<String> {
    let spec = &rule.spec;
    if spec.signal.as_deref() != Some(s.kind.as_str()) {
        return None;
    }
    if let Some(max) = spec.max_value {
        let v = s.value?;
        if v > max {
            return None;
        }
    }
    if let Some(min) = spec.min_edit_ratio
        && s.edit_ratio.is_none_or(|r| r < min)
    {
        return None;
    }
    let mut what = s.kind.clone();
    if s.source == "derived" {
        what.push_str(" (derived)");
    }
    if let Some(v) = s.value {
        what.push_str(&format!(" {v}"));
    }
    if let Some(r) = s.edit_ratio {
        what.push_str(&format!(", {:.0}% of the answer rewritten", r * 100.0));
    }
    if !s.comment.is_empty() {
        what.push_str(&format!(": \"{}\"", excerpt(&s.comment, 120)));
    }
    Some(what)
}

/// At most `max` characters, cut on a char boundary, with an ellipsis when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos() as i64
}

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
    let calls: Vec<Call> = store
        .query(&format!(
            "SELECT trace_id, span_id, session_id, user_id, feature, if(response_model != '', response_model, request_model) AS model, \
             provider, start_time, duration_ns, cost_usd, input_tokens, output_tokens, status, error_type, \
             substringUTF8(error_message, 1, 400) AS error_message, finish_reasons, tool_names, \
             substringUTF8(input_text, 1, 600) AS input_text, substringUTF8(output_text, 1, 800) AS output_text, \
             if(position(output_messages, 'tool_call') > 0, substringUTF8(output_messages, 1, 2000), '') AS tool_calls \
             FROM llm_calls FINAL WHERE {window} ORDER BY trace_id, start_time, span_id"
        ))
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until))
        .fetch_all()
        .await?;
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
            "SELECT kind, source, timestamp, trace_id, span_id, session_id, value, substringUTF8(comment, 1, 400) AS comment, \
             substringUTF8(text, 1, 4000) AS text, edit_ratio FROM signals FINAL \
             WHERE project_id = ? AND timestamp >= fromUnixTimestamp64Nano(?) AND timestamp < fromUnixTimestamp64Nano(?) \
             ORDER BY timestamp, signal_id",
        )
        .bind(project)
        .bind(nanos(since))
        .bind(nanos(until + time::Duration::days(1)))
        .fetch_all()
        .await?;
    Ok(Inputs { calls, error_spans, signals, norms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_763_700_000).unwrap() + time::Duration::minutes(minute)
    }

    fn call(trace: &str, span: &str, minute: i64) -> Call {
        Call {
            trace_id: trace.into(),
            span_id: span.into(),
            session_id: format!("s-{trace}"),
            user_id: "u1".into(),
            feature: "support".into(),
            model: "gpt-4o-mini".into(),
            provider: "openai".into(),
            start_time: at(minute),
            duration_ns: 1_000_000_000,
            cost_usd: Some(0.001),
            input_tokens: 100,
            output_tokens: 50,
            status: "ok".into(),
            finish_reasons: vec!["stop".into()],
            input_text: "Where is my order 123? It was due last week.".into(),
            output_text: "Your order shipped yesterday and should arrive on Friday.".into(),
            ..Default::default()
        }
    }

    fn signal(kind: &str, trace: &str, span: &str) -> Signal {
        Signal {
            kind: kind.into(),
            source: "api".into(),
            timestamp: at(5),
            trace_id: trace.into(),
            span_id: span.into(),
            ..Default::default()
        }
    }

    fn norms() -> Vec<Norm> {
        vec![Norm { feature: "support".into(), model: "gpt-4o-mini".into(), calls: 100, median_duration_ns: 1e9, median_cost_usd: 0.001 }]
    }

    fn run(calls: Vec<Call>, error_spans: Vec<ErrorSpan>, signals: Vec<Signal>) -> Vec<Failure> {
        evaluate(&Rules::defaults(), &Inputs { calls, error_spans, signals, norms: norms() })
    }

    fn reasons(calls: Vec<Call>) -> Vec<String> {
        run(calls, vec![], vec![]).into_iter().flat_map(|f| f.reasons).collect()
    }

    #[test]
    fn a_healthy_call_is_no_failure() {
        assert!(run(vec![call("t1", "a", 0)], vec![], vec![]).is_empty());
    }

    #[test]
    fn error_status_and_error_type() {
        let mut c = call("t1", "a", 0);
        c.status = "error".into();
        c.error_type = "RateLimitError".into();
        c.error_message = "Rate limit reached for gpt-4.1".into();
        c.output_text.clear();
        let f = run(vec![c], vec![], vec![]);
        assert_eq!(f[0].reasons, vec!["error_status"], "an error call is not also an empty output");
        assert_eq!(f[0].evidence["error_status"], "RateLimitError: Rate limit reached for gpt-4.1");
        assert_eq!(f[0].categories, vec!["explicit"]);
        assert!((f[0].severity - 0.8).abs() < 1e-6);
    }

    #[test]
    fn finish_reasons_length_and_content_filter() {
        let mut c = call("t1", "a", 0);
        c.finish_reasons = vec!["length".into()];
        let mut d = call("t2", "b", 0);
        d.finish_reasons = vec!["CONTENT_FILTER".into()];
        assert_eq!(reasons(vec![c, d]), vec!["finish_reason:length", "finish_reason:content_filter"]);
    }

    #[test]
    fn empty_output_but_not_a_tool_call() {
        let mut c = call("t1", "a", 0);
        c.output_text = "  ".into();
        let mut d = call("t2", "b", 0);
        d.output_text.clear();
        d.tool_names = vec!["lookup_order".into()];
        assert_eq!(reasons(vec![c, d]), vec!["empty_output"]);
    }

    #[test]
    fn refusals_in_varied_wording() {
        for answer in [
            "I'm sorry, but I can't help with that request.",
            "Unfortunately, I cannot provide that information as it involves account details.",
            "I'm afraid that's not something I can help with.",
            "Sorry, but I'm not able to assist with this.",
        ] {
            let mut c = call("t1", "a", 0);
            c.output_text = answer.into();
            assert_eq!(reasons(vec![c]), vec!["refusal"], "{answer}");
        }
        for fine in ["You can help yourself to a refund in the portal.", "I can't wait for your order to arrive! It ships today."] {
            let mut c = call("t1", "a", 0);
            c.output_text = fine.into();
            assert!(reasons(vec![c]).is_empty(), "{fine}");
        }
    }

    #[test]
    fn an_answer_in_another_language() {
        let mut c = call("t1", "a", 0);
        c.input_text = "Where is my order? It was due last week. Can you check the tracking for me?".into();
        c.output_text = "Votre commande a été expédiée hier et devrait arriver vendredi. Merci de votre patience.".into();
        let f = run(vec![c], vec![], vec![]);
        assert_eq!(f[0].reasons, vec!["language_mismatch"]);
        assert_eq!(f[0].languages, Some(("English".into(), "French".into())));
        // Too short to tell: no verdict.
        let mut d = call("t2", "b", 0);
        d.output_text = "Merci!".into();
        assert!(run(vec![d], vec![], vec![]).is_empty());
        // A short question: the feature's usual answer language stands for it.
        let mut calls: Vec<Call> = (0..30).map(|i| call(&format!("u{i:02}"), "a", 0)).collect();
        for c in &mut calls {
            c.input_text = "and the price?".into();
            c.output_text = "The jacket costs 120 dollars and ships within two days to your address.".into();
        }
        calls[7].output_text = "La chaqueta cuesta 120 dólares y se envía en dos días a su dirección.".into();
        let f = run(calls, vec![], vec![]);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].call.trace_id.as_str(), f[0].languages.clone()), ("u07", Some(("English".into(), "Spanish".into()))));
    }

    #[test]
    fn latency_and_cost_far_above_the_features_norm() {
        let mut slow = call("t1", "a", 0);
        slow.duration_ns = 12_000_000_000;
        let mut usual = call("t2", "b", 0);
        usual.duration_ns = 3_000_000_000;
        let mut costly = call("t3", "c", 0);
        costly.cost_usd = Some(0.05);
        assert_eq!(reasons(vec![slow, usual, costly]), vec!["slow", "costly"]);
    }

    #[test]
    fn a_failed_tool_belongs_to_the_call_that_asked_for_it() {
        let first = call("t1", "a", 0);
        let second = call("t1", "b", 2);
        let tool = ErrorSpan {
            trace_id: "t1".into(),
            span_id: "tool".into(),
            name: "execute_tool lookup_order".into(),
            start_time: at(1),
            status_code: "error".into(),
            tool_name: "lookup_order".into(),
            exception_type: "ValidationError".into(),
            exception_message: "order_id: field required".into(),
            ..Default::default()
        };
        let f = run(vec![first, second], vec![tool], vec![signal("thumbs_down", "t1", "")]);
        assert_eq!(f.len(), 1, "one failure per interaction");
        assert_eq!(f[0].call.span_id, "a", "anchored on the explicit evidence");
        assert_eq!(f[0].reasons, vec!["tool_error", "thumbs_down"]);
        assert_eq!(f[0].tool_errors, vec!["lookup_order: ValidationError: order_id: field required"]);
        assert_eq!(f[0].categories, vec!["explicit", "implicit"]);
    }

    #[test]
    fn an_exception_event_on_the_call_span() {
        let span = ErrorSpan {
            trace_id: "t1".into(),
            span_id: "a".into(),
            exception_type: "openai.APITimeoutError".into(),
            exception_message: "Request timed out".into(),
            ..Default::default()
        };
        let f = run(vec![call("t1", "a", 0)], vec![span], vec![]);
        assert_eq!(f[0].reasons, vec!["exception"]);
        assert_eq!(f[0].evidence["exception"], "openai.APITimeoutError: Request timed out");
    }

    #[test]
    fn trace_signals_land_on_the_last_call_and_span_signals_on_their_call() {
        let calls = vec![call("t1", "a", 0), call("t1", "b", 1), call("t2", "c", 0), call("t2", "d", 1)];
        let f = run(calls, vec![], vec![signal("thumbs_down", "t1", ""), signal("regenerate", "t2", "c")]);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].call.span_id.as_str(), f[0].reasons.clone()), ("b", vec!["thumbs_down".to_string()]));
        assert_eq!((f[1].call.span_id.as_str(), f[1].reasons.clone()), ("c", vec!["regenerate".to_string()]));
        assert_eq!(f[0].signals, vec![SignalBrief { kind: "thumbs_down".into(), value: None, comment: String::new() }]);
    }

    #[test]
    fn ratings_edits_and_feature_disabled_have_thresholds() {
        let mut low = signal("rating", "t1", "");
        low.value = Some(1.0);
        let mut high = signal("rating", "t2", "");
        high.value = Some(5.0);
        let mut big_edit = signal("edit", "t3", "");
        big_edit.edit_ratio = Some(0.6);
        big_edit.text = "Refunds are accepted within 30 days, to the original payment method.".into();
        let mut small_edit = signal("edit", "t4", "");
        small_edit.edit_ratio = Some(0.05);
        // Disabled on the session 3 minutes after t5's call, and 2 hours after t6's.
        let soon = Signal { kind: "feature_disabled".into(), timestamp: at(3), session_id: "s-t5".into(), ..Default::default() };
        let late = Signal { kind: "feature_disabled".into(), timestamp: at(120), session_id: "s-t6".into(), ..Default::default() };
        let calls = ["t1", "t2", "t3", "t4", "t5", "t6"].iter().map(|t| call(t, "a", 0)).collect();
        let f = run(calls, vec![], vec![low, high, big_edit, small_edit, soon, late]);
        let got: Vec<(&str, Vec<String>)> = f.iter().map(|f| (f.call.trace_id.as_str(), f.reasons.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("t1", vec!["low_rating".to_string()]),
                ("t3", vec!["large_edit".to_string()]),
                ("t5", vec!["feature_disabled".to_string()])
            ]
        );
        assert_eq!(f[1].edit_text, "Refunds are accepted within 30 days, to the original payment method.");
    }

    #[test]
    fn derived_signals_are_derived_evidence() {
        let mut s = signal("regenerate", "t1", "");
        s.source = "derived".into();
        let f = run(vec![call("t1", "a", 0)], vec![], vec![s]);
        assert_eq!(f[0].reasons, vec!["regenerate"]);
        assert_eq!(f[0].evidence["regenerate"], "regenerate (derived)");
        assert_eq!(f[0].categories, vec!["derived"]);
        let mut s = signal("abandon", "t2", "");
        s.source = "derived".into();
        let f = run(vec![call("t2", "a", 0)], vec![], vec![s]);
        assert_eq!(f[0].reasons, vec!["abandon"]);
    }

    #[test]
    fn severity_combines_independent_evidence() {
        assert!((combine([0.5, 0.5].into_iter()) - 0.75).abs() < 1e-6);
        assert_eq!(combine(std::iter::empty()), 0.0);
    }

    #[test]
    fn signals_about_unknown_traces_are_ignored() {
        assert!(run(vec![call("t1", "a", 0)], vec![], vec![signal("thumbs_down", "elsewhere", "")]).is_empty());
    }
}
