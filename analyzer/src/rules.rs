//! Detection rules as data: the shipped defaults (`analyzer/data/rules.toml`) or a file the
//! user points at. Parsing checks every rule up front so that a typo fails the run with the
//! rule's id, not silently detects nothing.

use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use crate::error::AnalyzerError;

pub const DEFAULT_RULES: &str = include_str!("../data/rules.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Explicit,
    Implicit,
    Derived,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Explicit => "explicit",
            Category::Implicit => "implicit",
            Category::Derived => "derived",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    CallError,
    Exception,
    FinishReason,
    ToolError,
    EmptyOutput,
    OutputPattern,
    LanguageMismatch,
    Signal,
    LatencyNorm,
    CostNorm,
    AgentLoop,
    FormatViolation,
    SensitiveData,
    InsecureCode,
    FollowedInjection,
    UngroundedFigure,
    UnperformedAction,
    IgnoredSources,
    Inconsistent,
}

impl RuleKind {
    /// Whether the rule recognises a behaviour in free text (phrases, a language guess), so
    /// that some instances of that behaviour escape it: a failure only users flagged may be one
    /// of them. The other kinds check a recorded fact on every call (a finish reason, a status,
    /// a parse, a tool-call sequence, a detector's match): a failure they did not flag does not
    /// have their cause, however much its text resembles their members'.
    pub fn misses_instances(self) -> bool {
        matches!(self, RuleKind::OutputPattern | RuleKind::LanguageMismatch)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub kind: RuleKind,
    pub category: Category,
    pub severity: f32,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub patterns: Vec<String>,
    pub signal: Option<String>,
    pub max_value: Option<f64>,
    pub min_edit_ratio: Option<f64>,
    pub within_minutes: Option<u32>,
    pub factor: Option<f64>,
    pub min_ms: Option<f64>,
    pub min_calls: Option<u64>,
    pub min_chars: Option<usize>,
    pub min_confidence: Option<f64>,
    /// `agent_loop`: runs of one tool with identical arguments that make a loop.
    pub min_repeats: Option<usize>,
    /// `agent_loop`: runs with near-identical arguments (token overlap ≥ `min_similarity`).
    pub min_near_repeats: Option<usize>,
    pub min_similarity: Option<f64>,
    /// `sensitive_data`: the kinds that count (secret, card, email, phone); all when empty.
    #[serde(default)]
    pub kinds: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<RuleSpec>,
}

/// A validated rule, with its regexes compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    pub regexes: Vec<Regex>,
}

impl Rule {
    pub fn id(&self) -> &str {
        &self.spec.id
    }
}

#[derive(Debug, Clone)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

impl Rules {
    pub fn defaults() -> Rules {
        Rules::parse(DEFAULT_RULES, "built-in rules").expect("the shipped rules are valid")
    }

    pub fn load(path: &Path) -> Result<Rules, AnalyzerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AnalyzerError::Rules(format!("cannot read {}: {e} (check `[analyzer] rules` in your config)", path.display())))?;
        Rules::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Rules, AnalyzerError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| AnalyzerError::Rules(format!("{origin}: {e}")))?;
        let mut rules = Vec::new();
        for spec in file.rules {
            let bad = |what: &str| AnalyzerError::Rules(format!("{origin}: rule `{}` ({:?}): {what}", spec.id, spec.kind));
            if spec.id.trim().is_empty() {
                return Err(AnalyzerError::Rules(format!("{origin}: a rule has an empty id")));
            }
            if rules.iter().any(|r: &Rule| r.spec.id == spec.id) {
                return Err(bad("the id is used twice"));
            }
            if !(0.0..=1.0).contains(&spec.severity) {
                return Err(bad("severity must be between 0 and 1"));
            }
            match spec.kind {
                RuleKind::FinishReason if spec.values.is_empty() => return Err(bad("needs `values`, the finish reasons")),
                RuleKind::OutputPattern if spec.patterns.is_empty() => return Err(bad("needs `patterns`, regexes")),
                RuleKind::Signal if spec.signal.is_none() => return Err(bad("needs `signal`, the signal kind")),
                RuleKind::LatencyNorm | RuleKind::CostNorm if spec.factor.is_none_or(|f| f <= 1.0) => {
                    return Err(bad("needs `factor` above 1"));
                }
                RuleKind::SensitiveData if spec.kinds.iter().any(|k| !["secret", "card", "email", "phone"].contains(&k.as_str())) => {
                    return Err(bad("`kinds` are among secret, card, email, phone"));
                }
                RuleKind::AgentLoop if spec.min_repeats.is_some_and(|n| n < 2) => return Err(bad("`min_repeats` is at least 2")),
                RuleKind::Inconsistent if spec.min_calls.is_some_and(|n| n < 2) => {
                    return Err(bad("`min_calls` is at least 2: one answer cannot disagree with itself"));
                }
                _ => {}
            }
            let regexes = spec
                .patterns
                .iter()
                .map(|p| Regex::new(&format!("(?is){p}")).map_err(|e| bad(&format!("bad pattern `{p}`: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule { spec, regexes });
        }
        Ok(Rules { rules })
    }

    pub fn of_kind(&self, kind: RuleKind) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.spec.kind == kind)
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.spec.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_cover_every_kind() {
        let rules = Rules::defaults();
        for kind in [
            RuleKind::CallError,
            RuleKind::Exception,
            RuleKind::FinishReason,
            RuleKind::ToolError,
            RuleKind::EmptyOutput,
            RuleKind::OutputPattern,
            RuleKind::LanguageMismatch,
            RuleKind::Signal,
            RuleKind::LatencyNorm,
            RuleKind::CostNorm,
            RuleKind::AgentLoop,
            RuleKind::FormatViolation,
            RuleKind::SensitiveData,
            RuleKind::InsecureCode,
            RuleKind::FollowedInjection,
            RuleKind::UngroundedFigure,
            RuleKind::UnperformedAction,
            RuleKind::IgnoredSources,
            RuleKind::Inconsistent,
        ] {
            assert!(rules.of_kind(kind).count() > 0, "{kind:?}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        let err = Rules::parse("[[rules]]\nid = \"x\"\nkind = \"signal\"\ncategory = \"implicit\"\nseverity = 0.5\n", "t").unwrap_err();
        assert!(err.to_string().contains("rule `x`") && err.to_string().contains("needs `signal`"), "{err}");
        let err = Rules::parse("[[rules]]\nid = \"x\"\nkind = \"sigal\"\ncategory = \"implicit\"\nseverity = 0.5\n", "t").unwrap_err();
        assert!(err.to_string().contains("sigal"), "{err}");
        let err = Rules::parse("[[rules]]\nid = \"x\"\nkind = \"call_error\"\ncategory = \"explicit\"\nseverity = 2\n", "t").unwrap_err();
        assert!(err.to_string().contains("between 0 and 1"), "{err}");
        let err = Rules::parse(
            "[[rules]]\nid = \"x\"\nkind = \"output_pattern\"\ncategory = \"explicit\"\nseverity = 0.5\npatterns = [\"(\"]\n",
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad pattern"), "{err}");
        let err = Rules::parse("[[rules]]\nid = \"x\"\nkind = \"call_error\"\ncategory = \"explicit\"\nseverity = 0.5\nfactr = 2\n", "t")
            .unwrap_err();
        assert!(err.to_string().contains("factr"), "{err}");
    }
}
