//! Detection: which interactions failed, why, and how badly.
//!
//! ClickHouse computes each feature's latency and cost norms and hands over one lean row per
//! LLM call of the window (ids, status, finish reasons, excerpts), the spans in error and the
//! signals; the rules ([`crate::rules`]) run here. The unit of a failure is the *interaction*
//! (trace): a thumbs-down is about what the user saw, a failed tool call about the call that
//! asked for it, and both belong to one failure anchored on the call with the strongest
//! explicit evidence — otherwise two rows of one incident would land in different patterns.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::rules::{Category, Rule, RuleKind, Rules};

pub mod actions;
mod checks;
pub mod disclosure;
pub mod format;
pub mod grounding;
pub mod ignored;
pub mod inconsistent;
mod inputs;
pub(crate) use inputs::{FORMAT_SPEC_SQL, RESPONSE_FORMAT_RE};
pub mod loops;
pub mod security;
pub mod wrong_language;

pub use checks::excerpt;
use checks::{call_rule, signal_rule};
pub use inputs::{Call, DisclosureCandidate, ErrorSpan, FormatRequest, IgnoranceCandidate, Inputs, Norm, Signal, ToolRun, fetch};

pub use flywheel_schemas::failure::{Contrast, SignalBrief};

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
    /// The output contract a `format_violation` broke.
    pub format: Option<format::Contract>,
    /// Rule id → what the rule found, in a word that takes part in the failure's cause: the
    /// looping tool, the family of disclosed data (`secret` or `personal`).
    pub qualifiers: BTreeMap<String, String>,
    /// An `inconsistent` failure's question and the answers that disagree about it.
    pub contrast: Option<Contrast>,
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
    format: Option<format::Contract>,
    qualifiers: BTreeMap<usize, String>,
    contrast: Option<Contrast>,
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
    // Findings that fail no call on their own but name the cause of a failure users flagged.
    let mut explanations: HashMap<(String, String), (usize, grounding::Unsupported)> = HashMap::new();
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
            RuleKind::AgentLoop => {
                for (i, l) in loops::find(rule, &inputs.tool_runs, &inputs.calls, &by_trace) {
                    let c = &inputs.calls[i];
                    let h = hits.entry((c.trace_id.clone(), c.span_id.clone())).or_default();
                    h.add(ri, l.evidence());
                    h.qualifiers.insert(ri, l.tool.clone());
                }
                continue;
            }
            RuleKind::FormatViolation => {
                let contracts = format::contracts(&inputs.format_requests, &inputs.instructions);
                for r in &inputs.format_requests {
                    if by_key.contains_key(&(r.trace_id.as_str(), r.span_id.as_str()))
                        && let Some(what) = format::check(r, &contracts[&r.contract_key()])
                    {
                        let h = hits.entry((r.trace_id.clone(), r.span_id.clone())).or_default();
                        h.add(ri, what);
                        h.format = Some(contracts[&r.contract_key()].clone());
                    }
                }
                continue;
            }
            RuleKind::SensitiveData => {
                for d in &inputs.disclosures {
                    if by_key.contains_key(&(d.trace_id.as_str(), d.span_id.as_str()))
                        && let Some(found) = disclosure::check(rule, d, inputs.instructions.get(&d.system_hash).map_or("", String::as_str))
                    {
                        let h = hits.entry((d.trace_id.clone(), d.span_id.clone())).or_default();
                        h.add(ri, found.evidence.clone());
                        h.qualifiers.insert(ri, found.family().to_string());
                    }
                }
                continue;
            }
            RuleKind::UngroundedFigure => {
                let found = grounding::check_all(
                    &inputs.groundings,
                    |g| inputs.instructions.get(&g.system_hash).map_or("", String::as_str),
                    |g| by_key.contains_key(&(g.trace_id.as_str(), g.span_id.as_str())),
                );
                for (g, u) in found {
                    let key = (g.trace_id.clone(), g.span_id.clone());
                    if u.explains {
                        explanations.insert(key, (ri, u));
                        continue;
                    }
                    let h = hits.entry(key).or_default();
                    h.qualifiers.insert(ri, u.qualifier());
                    h.add(ri, u.evidence);
                }
                continue;
            }
            RuleKind::IgnoredSources => {
                for c in &inputs.ignorances {
                    if by_key.contains_key(&(c.trace_id.as_str(), c.span_id.as_str()))
                        && let Some(found) = ignored::check(c)
                    {
                        hits.entry((c.trace_id.clone(), c.span_id.clone())).or_default().add(ri, found.evidence);
                    }
                }
                continue;
            }
            RuleKind::UnperformedAction => {
                for (i, u) in actions::find(&inputs.calls, &by_trace, &by_session, &inputs.defined_tools, &inputs.ran_tools) {
                    let c = &inputs.calls[i];
                    let h = hits.entry((c.trace_id.clone(), c.span_id.clone())).or_default();
                    h.add(ri, u.evidence);
                    h.qualifiers.insert(ri, u.tool);
                }
                continue;
            }
            RuleKind::Inconsistent => {
                // The groups were read with `fetch` (to fetch their sources); `find` holds each
                // group of one question and one source to the rule's `min_calls`.
                let min_calls = rule.spec.min_calls.unwrap_or(3) as usize;
                for (i, found) in inconsistent::find(min_calls, &inputs.calls, &inputs.questions, &inputs.contexts, &inputs.signals) {
                    let c = &inputs.calls[i];
                    let h = hits.entry((c.trace_id.clone(), c.span_id.clone())).or_default();
                    h.add(ri, found.evidence);
                    h.qualifiers.insert(ri, found.qualifier);
                    h.contrast = Some(found.contrast);
                }
                continue;
            }
            RuleKind::LanguageMismatch => {
                for (i, (question, answer)) in wrong_language::mismatches(rule, &inputs.calls) {
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
        let message = [&s.exception_message, &s.status_message].into_iter().find(|m| !m.is_empty()).cloned().unwrap_or_default();
        // An agent or chain span that failed because its model call failed carries the call's
        // error up: that is the call's failure (already counted), not a tool's.
        if s.tool_name.is_empty() && calls.iter().any(|&i| propagated(&inputs.calls[i], &s.exception_type, &message)) {
            continue;
        }
        let tool = if s.tool_name.is_empty() { s.name.clone() } else { s.tool_name.clone() };
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
                if merged.format.is_none() {
                    merged.format = h.format;
                }
                if merged.contrast.is_none() {
                    merged.contrast = h.contrast;
                }
                for (ri, q) in h.qualifiers {
                    merged.qualifiers.entry(ri).or_insert(q);
                }
            }
        }
        for (ri, s, evidence) in trace_signals.remove(trace).unwrap_or_default() {
            note_signal(&mut merged, ri, s, evidence);
        }
        if merged.reasons.is_empty() {
            continue;
        }
        // Only users flagged it: a finding on one of its calls (the anchor's first) is its cause.
        if merged.reasons.keys().all(|&ri| rules.rules[ri].spec.category == Category::Implicit) {
            let found = std::iter::once(anchor)
                .chain(calls.iter().rev().copied())
                .find_map(|i| explanations.remove(&(inputs.calls[i].trace_id.clone(), inputs.calls[i].span_id.clone())));
            if let Some((ri, u)) = found {
                merged.qualifiers.insert(ri, u.qualifier());
                merged.add(ri, format!("{} — users flagged the answer", u.evidence));
            }
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
            format: merged.format,
            contrast: merged.contrast,
            qualifiers: merged.qualifiers.into_iter().map(|(ri, q)| (rules.rules[ri].spec.id.clone(), q)).collect(),
        });
    }
    failures
}

fn note_signal(h: &mut Hits, ri: usize, s: &Signal, evidence: String) {
    h.add(ri, evidence);
    *h.derived_only.entry(ri).or_insert(true) &= s.source == "derived";
    h.signals.push(SignalBrief { kind: s.kind.clone(), value: s.value, comment: s.comment.clone() });
    // An evaluator names what it checks: its name is the cause (faithfulness, relevance, …).
    if s.kind == "evaluation" && !s.name.is_empty() {
        h.qualifiers.entry(ri).or_insert_with(|| s.name.clone());
    }
    if s.kind == "edit" && h.edit_text.is_empty() {
        h.edit_text = s.text.clone();
    }
}

fn rule_of(rules: &Rules, kind: RuleKind) -> Option<(usize, &Rule)> {
    rules.rules.iter().enumerate().find(|(_, r)| r.spec.kind == kind)
}

/// Independent pieces of evidence: 1 - Π(1 - s).
/// Whether a span's error is `call`'s own, carried up: the call failed, and the span names the
/// same error type (`openai.RateLimitError`, `<class 'openai.RateLimitError'>` and
/// `RateLimitError` are one) or the same message, or names nothing.
fn propagated(call: &Call, exception_type: &str, message: &str) -> bool {
    if call.status != "error" && call.error_type.is_empty() {
        return false;
    }
    let short = |t: &str| -> String {
        let t = t.trim().trim_start_matches("<class '").trim_end_matches("'>");
        t.rsplit(['.', ':']).next().unwrap_or(t).to_ascii_lowercase()
    };
    let same_type = !exception_type.is_empty() && !call.error_type.is_empty() && short(exception_type) == short(&call.error_type);
    let message = message.trim();
    let same_message = !message.is_empty()
        && !call.error_message.is_empty()
        && (call.error_message.contains(message) || message.contains(call.error_message.trim()));
    same_type || same_message || (exception_type.is_empty() && message.is_empty())
}

pub fn combine(severities: impl Iterator<Item = f32>) -> f32 {
    1.0 - severities.fold(1.0, |acc, s| acc * (1.0 - s.clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use inputs::GroundingCandidate;
    use time::OffsetDateTime;

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
        evaluate(&Rules::defaults(), &Inputs { calls, error_spans, signals, norms: norms(), ..Default::default() })
    }

    fn reasons(calls: Vec<Call>) -> Vec<String> {
        run(calls, vec![], vec![]).into_iter().flat_map(|f| f.reasons).collect()
    }

    #[test]
    fn a_period_its_sources_do_not_give_is_the_cause_only_of_an_answer_users_flagged() {
        let page = "Price match: a major retailer's lower price within 14 days of purchase. Delivery takes 9 business days.";
        let answer = "We match any price for 90 days and refund twice the difference.";
        let calls: Vec<Call> = ["t1", "t2"]
            .iter()
            .map(|t| Call { output_text: answer.into(), input_text: format!("{page}\nDo you match prices?"), ..call(t, "a", 0) })
            .collect();
        let groundings: Vec<GroundingCandidate> = calls
            .iter()
            .map(|c| GroundingCandidate {
                trace_id: c.trace_id.clone(),
                span_id: c.span_id.clone(),
                output: answer.into(),
                context: c.input_text.clone(),
                sources: page.into(),
                system_hash: String::new(),
            })
            .collect();
        let inputs = Inputs { calls, groundings, signals: vec![signal("thumbs_down", "t1", "a")], norms: norms(), ..Default::default() };
        let failures = evaluate(&Rules::defaults(), &inputs);
        assert_eq!(failures.len(), 1, "the answer nobody flagged is no failure: {failures:?}");
        let f = &failures[0];
        assert_eq!(f.call.trace_id, "t1");
        assert_eq!(f.reasons, vec!["ungrounded_figure".to_string(), "thumbs_down".to_string()]);
        assert_eq!(f.qualifiers["ungrounded_figure"], format!("duration {}", grounding::EXPLAINS));
        assert!(f.evidence["ungrounded_figure"].contains("90 days"), "{:?}", f.evidence);
        let cause = crate::cause::of(&Rules::defaults(), f);
        assert_eq!((cause.key.as_str(), cause.open), ("ungrounded_figure · support", true));
    }

    #[test]
    fn an_outside_evaluation_fails_a_call_by_its_verdict_or_its_score() {
        let eval = |trace: &str, label: &str, value: Option<f64>, scale: Option<f64>| Signal {
            name: "faithfulness".into(),
            label: label.into(),
            value,
            scale,
            annotator: "llm".into(),
            comment: "states a 90-day window its sources do not give".into(),
            ..signal("evaluation", trace, "a")
        };
        let calls: Vec<Call> = (1..=7).map(|i| call(&format!("t{i}"), "a", i)).collect();
        let signals = vec![
            eval("t1", "unfaithful", Some(0.9), None), // the label says fail, whatever the score
            eval("t2", "Faithful", Some(0.1), None),   // the label says pass
            eval("t3", "", Some(0.2), None),           // no label: 0.2 of 1 fails
            eval("t4", "", Some(4.0), Some(5.0)),      // 4 of 5 passes
            eval("t5", "", Some(2.0), Some(5.0)),      // 2 of 5 fails
            eval("t6", "", Some(3.0), None),           // a score without its scale says nothing
            eval("t7", "NOT-RELEVANT", None, None),
        ];
        let failures = run(calls, vec![], signals);
        let failed: Vec<&str> = failures.iter().map(|f| f.call.trace_id.as_str()).collect();
        assert_eq!(failed, vec!["t1", "t3", "t5", "t7"]);
        let f = &failures[0];
        assert_eq!(f.reasons, vec!["failed_evaluation"]);
        assert_eq!(f.categories, vec!["explicit"]);
        assert_eq!(f.qualifiers["failed_evaluation"], "faithfulness");
        let evidence = &f.evidence["failed_evaluation"];
        assert!(
            evidence.starts_with("evaluation `faithfulness` (llm): unfaithful, score 0.9") && evidence.contains("90-day"),
            "{evidence}"
        );
        assert_eq!(crate::cause::of(&Rules::defaults(), f).key, "failed_evaluation · faithfulness");
    }

    #[test]
    fn excerpts_end_on_a_word() {
        use super::checks::excerpt;
        assert_eq!(excerpt("tool lookup_order failed: ValidationError for field order_id", 30), "tool lookup_order failed…");
        assert_eq!(excerpt("short", 30), "short");
        // One long word: cut inside it rather than lose the text.
        assert_eq!(excerpt("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 10), "aaaaaaaaaa…");
        // A space too early (before the last third) is not worth losing two thirds for.
        assert_eq!(excerpt("a bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 10), "a bbbbbbbb…");
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

    /// The OTel GenAI default records no message content: a call with output tokens and no
    /// recorded messages answered; one that produced no tokens did not, captured or not.
    #[test]
    fn no_content_captured_is_not_an_empty_answer() {
        let mut c = call("t1", "a", 0);
        c.output_text.clear();
        c.output_captured = false;
        c.output_tokens = 9;
        assert_eq!(reasons(vec![c.clone()]), Vec::<String>::new());
        c.output_tokens = 0;
        assert_eq!(reasons(vec![c]), vec!["empty_output"]);
    }

    #[test]
    fn refusals_in_varied_wording() {
        for answer in [
            "I'm sorry, but I can't help with that request.",
            "Unfortunately, I cannot provide that information as it involves account details.",
            "I'm afraid that's not something I can help with.",
            "Sorry, but I'm not able to assist with this.",
            "Je suis désolé, mais je ne peux pas vous aider avec cette demande.",
            "Lo siento, pero no puedo ayudarte con esa solicitud.",
            "Fragen zu den Trail Club kann ich leider nicht beantworten.",
            "Desculpe, mas não posso ajudar com esse pedido.",
            "Daar kan ik je helaas niet mee helpen.",
        ] {
            let mut c = call("t1", "a", 0);
            c.output_text = answer.into();
            assert_eq!(reasons(vec![c]), vec!["refusal"], "{answer}");
        }
        for fine in [
            "You can help yourself to a refund in the portal.",
            "I can't wait for your order to arrive! It ships today.",
            "Je ne peux pas garantir la date exacte, mais la livraison prend 3 à 5 jours.",
            "Gerne kann ich Ihnen helfen: der Club kostet 49 $ pro Jahr.",
            "Ik kan je helpen met je bestelling.",
        ] {
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

    /// An agent span in error because its model call hit a rate limit is the call's failure
    /// (one reason, `error_status`), not a tool error beside it.
    #[test]
    fn a_parent_failed_by_its_model_call_is_no_tool_error() {
        let mut failed = call("t1", "a", 1);
        failed.status = "error".into();
        failed.error_type = "openai.RateLimitError".into();
        failed.error_message = "Error code: 429 - Rate limit reached".into();
        let agent = ErrorSpan {
            trace_id: "t1".into(),
            span_id: "agent".into(),
            name: "invoke_agent trip_planner".into(),
            start_time: at(0),
            status_code: "error".into(),
            exception_type: "<class 'openai.RateLimitError'>".into(),
            exception_message: "Error code: 429 - Rate limit reached".into(),
            ..Default::default()
        };
        let f = run(vec![failed], vec![agent.clone()], vec![]);
        assert_eq!(f[0].reasons, vec!["error_status"]);
        // A tool that failed on its own still counts.
        let tool = ErrorSpan { span_id: "tool".into(), tool_name: "lookup_order".into(), exception_type: "KeyError".into(), ..agent };
        let f = run(vec![call("t1", "a", 1)], vec![tool], vec![]);
        assert_eq!(f[0].reasons, vec!["tool_error"]);
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
