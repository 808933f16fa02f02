//! Shared shapes of the analyzer's output that other crates read: a failure's details and the
//! lane of a pattern.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rows::PatternRow;

/// Which lane a failure pattern is in. *Operations* failures are infrastructure (rate limits,
/// timeouts, unavailable services, latency and cost outliers), fixed by configuration and shown
/// apart; *behaviour* failures are what the AI said or did, fixed by prompts, tools, models and
/// evals — the ones eval cases are exported from by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    #[default]
    Behaviour,
    Operations,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Behaviour => "behaviour",
            Lane::Operations => "operations",
        }
    }

    /// The lane a stored value names; anything else (older rows) is behaviour.
    pub fn parse(s: &str) -> Lane {
        if s == "operations" { Lane::Operations } else { Lane::Behaviour }
    }

    /// The lane of a pattern, from its `lane` facet.
    pub fn of(pattern: &PatternRow) -> Lane {
        Lane::parse(pattern.facets.get("lane").map(String::as_str).unwrap_or(""))
    }
}

/// A user signal as a failure remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SignalBrief {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// What the analyzer records about one failure (`failures.details`): the texts a reviewer
/// reads, the evidence, and the cause it was grouped by. Written by the analyzer; read by the
/// TUI, the eval export and the report with this one type. Every field has a default, so rows
/// written by older versions read as far as they go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FailureDetails {
    /// Hash of the text the failure was represented by (the embeddings cache key).
    pub text_hash: String,
    /// The user's request (excerpt).
    pub request: String,
    /// The answer (excerpt).
    pub output: String,
    /// The call's error and the trace's tool errors.
    pub error: String,
    pub tools: Vec<String>,
    /// The user's corrected text, when an `edit` signal carried one.
    pub edit_text: String,
    pub signals: Vec<SignalBrief>,
    /// Rule id → what the rule saw.
    pub evidence: BTreeMap<String, String>,
    pub latency_ms: Option<f64>,
    pub cost_usd: Option<f64>,
    /// The cause key the failure was grouped by (empty: only users flagged it).
    pub signature: String,
    pub lane: Lane,
    /// (user's language, answer's language) when they differ.
    pub languages: Option<(String, String)>,
    /// The output contract a `format_violation` was checked against: what a good answer
    /// must be (read by the eval export to write the check a correct answer passes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputContract>,
    /// For an `inconsistent` failure: the question asked again and again, and the answers it
    /// got side by side (this failure's among them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contrast: Option<Contrast>,
}

/// One question asked by several users or sessions and the answers that disagree about it:
/// the evidence of an `inconsistent` failure, shown side by side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Contrast {
    /// The question as one of its askers wrote it (excerpt).
    pub question: String,
    /// Calls that asked it in the window, and the sessions they came from.
    pub asked: u32,
    pub sessions: u32,
    /// The stances the answers take, the reference first (the one users accepted, else the
    /// most frequent); at most a few.
    pub answers: Vec<Stance>,
}

impl Contrast {
    /// One entry per question among `contrasts` (the one that saw it asked most), the most
    /// asked first: what the weekly review and the TUI overview list.
    pub fn by_question(contrasts: impl IntoIterator<Item = Contrast>) -> Vec<Contrast> {
        let mut by: BTreeMap<String, Contrast> = BTreeMap::new();
        for c in contrasts {
            let key = c.question.trim().to_lowercase();
            if by.get(&key).is_none_or(|seen| seen.asked < c.asked) {
                by.insert(key, c);
            }
        }
        let mut out: Vec<Contrast> = by.into_values().collect();
        out.sort_by(|a, b| b.asked.cmp(&a.asked).then_with(|| a.question.cmp(&b.question)));
        out
    }

    /// The stances in a line, the reference first: `30 days (13) vs 60 days (3)`.
    pub fn sides(&self) -> String {
        self.answers
            .iter()
            .map(|s| format!("{} ({})", if s.facts.is_empty() { "(no fact)".to_string() } else { s.facts.join(", ") }, s.calls))
            .collect::<Vec<_>>()
            .join(" vs ")
    }
}

/// Answers that agree with each other on the facts they state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stance {
    /// One of its answers (excerpt).
    pub text: String,
    /// The facts it states that other stances contradict ("30 days", "yes").
    pub facts: Vec<String>,
    pub calls: u32,
    pub sessions: u32,
    /// Answers of this stance users accepted (copied, rated up) and rejected (thumbs down,
    /// regenerated, edited).
    pub accepted: u32,
    pub rejected: u32,
    /// The reference: what the consistent answer says.
    pub reference: bool,
    /// The stance of the failure these details belong to.
    pub this: bool,
}

/// What a structured answer must be beyond parsing as JSON: the keys it must carry and the
/// values some keys allow (from the request's schema, or from instructions the answers bear
/// out). Empty: any JSON will do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutputContract {
    pub required: Vec<String>,
    pub allowed: BTreeMap<String, Vec<String>>,
}

impl FailureDetails {
    /// The details of a stored row; empty details for a missing or malformed value.
    pub fn parse(raw: &str) -> FailureDetails {
        serde_json::from_str(raw).unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("details serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_round_trip_and_old_rows_read() {
        let d = FailureDetails {
            request: "Where is my order?".into(),
            signals: vec![SignalBrief { kind: "thumbs_down".into(), value: None, comment: String::new() }],
            evidence: BTreeMap::from([("tool_error".into(), "lookup_order: ValidationError".into())]),
            lane: Lane::Operations,
            languages: Some(("English".into(), "French".into())),
            ..Default::default()
        };
        assert_eq!(FailureDetails::parse(&d.to_json()), d);
        // A row of an earlier version: no lane, numbers where they were.
        let old = FailureDetails::parse(r#"{"request":"hi","latency_ms":12.5,"signature":"refusal","unknown":1}"#);
        assert_eq!((old.request.as_str(), old.latency_ms, old.lane), ("hi", Some(12.5), Lane::Behaviour));
        assert_eq!(FailureDetails::parse("not json"), FailureDetails::default());
    }
}
