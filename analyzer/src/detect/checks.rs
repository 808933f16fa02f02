//! The rules that look at one call or one signal alone.

use super::inputs::{Call, Norm, Signal};
use crate::rules::{Rule, RuleKind};

pub(super) fn call_rule(rule: &Rule, c: &Call, norm: Option<&Norm>) -> Option<String> {
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
                // No content captured is not an empty answer: only a call whose messages were
                // recorded, or whose token counts say it produced nothing, answered nothing.
                && (c.output_captured || (c.input_tokens > 0 && c.output_tokens == 0))
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
        RuleKind::InsecureCode => super::security::insecure_code(&c.output_text),
        RuleKind::FollowedInjection => super::security::followed_injection(&c.injection, &c.input_text, &c.output_text),
        RuleKind::Signal
        | RuleKind::ToolError
        | RuleKind::Exception
        | RuleKind::LanguageMismatch
        | RuleKind::AgentLoop
        | RuleKind::FormatViolation
        | RuleKind::SensitiveData
        | RuleKind::UngroundedFigure
        | RuleKind::UnperformedAction
        | RuleKind::IgnoredSources
        | RuleKind::Inconsistent => None,
    }
}

pub(super) fn signal_rule(rule: &Rule, s: &Signal) -> Option<String> {
    let spec = &rule.spec;
    if spec.signal.as_deref() != Some(s.kind.as_str()) {
        return None;
    }
    if s.kind == "evaluation" {
        return failed_evaluation(s, spec.max_value.unwrap_or(0.4));
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

/// Verdicts that say the answer failed, and verdicts that say it passed, whatever the
/// evaluator (Phoenix's, Ragas', DeepEval's, promptfoo's and the OTel examples' labels),
/// compared lower-case with `-` and spaces read as `_`.
const FAILING_LABELS: &[&str] = &[
    "fail",
    "failed",
    "failure",
    "false",
    "no",
    "incorrect",
    "wrong",
    "bad",
    "unfaithful",
    "not_faithful",
    "hallucinated",
    "hallucination",
    "unsupported",
    "ungrounded",
    "not_grounded",
    "irrelevant",
    "not_relevant",
    "unhelpful",
    "not_helpful",
    "toxic",
    "unsafe",
    "harmful",
    "inaccurate",
    "incomplete",
    "off_topic",
    "violation",
    "negative",
    "reject",
    "rejected",
];
const PASSING_LABELS: &[&str] = &[
    "pass",
    "passed",
    "true",
    "yes",
    "correct",
    "right",
    "good",
    "faithful",
    "grounded",
    "supported",
    "relevant",
    "helpful",
    "safe",
    "non_toxic",
    "not_toxic",
    "accurate",
    "complete",
    "on_topic",
    "positive",
    "accept",
    "accepted",
];

/// Whether an outside evaluation judged its answer a failure, and how it reads as evidence:
/// its label when the label is a known verdict; else its score read against its scale (a
/// score in 0..1 without one), failing at or below `max` (0.4: on a five-point scale 1 and 2
/// fail, 3 passes). An evaluation that says neither is not evidence.
pub(super) fn failed_evaluation(s: &Signal, max: f64) -> Option<String> {
    let label = s.label.trim().to_lowercase().replace(['-', ' '], "_");
    let by_label = if FAILING_LABELS.contains(&label.as_str()) {
        Some(true)
    } else if PASSING_LABELS.contains(&label.as_str()) {
        Some(false)
    } else {
        None
    };
    let normalised = match (s.value, s.scale) {
        (Some(v), Some(scale)) if scale > 0.0 => Some(v / scale),
        (Some(v), None) if (0.0..=1.0).contains(&v) => Some(v),
        _ => None,
    };
    if !by_label.or(normalised.map(|n| n <= max)).unwrap_or(false) {
        return None;
    }
    let who = if s.annotator.is_empty() { String::new() } else { format!(" ({})", s.annotator) };
    let mut what = format!("evaluation `{}`{who}", s.name);
    let verdict: Vec<String> = [
        (!s.label.is_empty()).then(|| s.label.clone()),
        s.value.map(|v| match s.scale {
            Some(scale) => format!("score {v} of {scale}"),
            None => format!("score {v}"),
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !verdict.is_empty() {
        what.push_str(&format!(": {}", verdict.join(", ")));
    }
    if !s.comment.is_empty() {
        what.push_str(&format!(" — \"{}\"", excerpt(&s.comment, 200)));
    }
    Some(what)
}

/// At most `max` characters with an ellipsis when cut: at the last word boundary within the
/// last third (labels and evidence read as words, not "ValidationEr…"), else on a char boundary.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((i, _)) => {
            let head = &text[..i];
            let floor = head.char_indices().nth(max * 2 / 3).map_or(0, |(j, _)| j);
            let cut = match head.rfind(char::is_whitespace) {
                Some(j) if j >= floor => head[..j].trim_end_matches(|c: char| c.is_whitespace() || ",;:-–—(".contains(c)),
                _ => head,
            };
            format!("{cut}…")
        }
        None => text.to_string(),
    }
}
