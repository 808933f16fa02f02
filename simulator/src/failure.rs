//! The failure modes the simulator injects, their stable ids (used in the truth file and on the
//! command line) and the mix of them a run uses.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::catalog::{CLAUDE_3_5_HAIKU, CLAUDE_SONNET_4, Feature, GPT_4_1, GPT_4O_MINI, Model};
use crate::catalogue::Mode;
use crate::error::SimulateError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureMode {
    /// The support assistant invents a refund policy ("refunds within 90 days in cash").
    HallucinatedRefundPolicy,
    /// The answer is in French, Spanish or German although the question was in English.
    WrongLanguage,
    /// The answer stops mid-sentence: finish reason `length`, output tokens = `max_tokens`.
    TruncatedAnswer,
    /// The model calls a tool with missing or ill-typed arguments; the tool span fails.
    InvalidToolArguments,
    /// The provider answers 429: the call span is in error, with no output.
    RateLimitError,
    /// The model refuses a legitimate request.
    Refusal,
    /// A correct answer that takes 10 to 40 times the feature's usual latency.
    SlowAnswer,
    /// A question customers ask again and again (`--repeated-questions`) answered with facts
    /// that contradict the policy the other answers give ("14 days" where most say 30).
    InconsistentAnswer,
    /// A mode of the `catalogue` scenario (see [`crate::catalogue::Mode`]).
    Catalogue(Mode),
}

impl FailureMode {
    /// The modes of the default scenario.
    pub const ALL: [FailureMode; 7] = [
        FailureMode::HallucinatedRefundPolicy,
        FailureMode::WrongLanguage,
        FailureMode::TruncatedAnswer,
        FailureMode::InvalidToolArguments,
        FailureMode::RateLimitError,
        FailureMode::Refusal,
        FailureMode::SlowAnswer,
    ];

    /// Modes of the default scenario that are off unless asked for (`--modes NAME=WEIGHT`):
    /// they need traffic the default run does not play.
    pub const EXTRA: [FailureMode; 1] = [FailureMode::InconsistentAnswer];

    pub fn id(self) -> &'static str {
        match self {
            FailureMode::HallucinatedRefundPolicy => "hallucinated_refund_policy",
            FailureMode::WrongLanguage => "wrong_language",
            FailureMode::TruncatedAnswer => "truncated_answer",
            FailureMode::InvalidToolArguments => "invalid_tool_arguments",
            FailureMode::RateLimitError => "rate_limit_error",
            FailureMode::Refusal => "refusal",
            FailureMode::SlowAnswer => "slow_answer",
            FailureMode::InconsistentAnswer => "inconsistent_answer",
            FailureMode::Catalogue(mode) => mode.id(),
        }
    }

    /// Whether the mode can happen in a feature: only the support assistant talks refunds.
    pub fn applies_to(self, feature: Feature) -> bool {
        match self {
            FailureMode::Catalogue(mode) => feature == Feature::Catalogue(mode.app()),
            _ if matches!(feature, Feature::Catalogue(_)) => false,
            FailureMode::HallucinatedRefundPolicy | FailureMode::InconsistentAnswer => feature == Feature::SupportAssistant,
            _ => true,
        }
    }

    /// How much more often than its traffic share a model shows this failure. Failures
    /// concentrate on some models in real life (a small model drifting into the user's
    /// browser language, a provider tier with a tight rate limit), and the analyzer's facets
    /// should be able to find that.
    pub fn model_affinity(self, model: &Model) -> f64 {
        let favoured: &[(&Model, f64)] = match self {
            FailureMode::HallucinatedRefundPolicy => &[(&GPT_4O_MINI, 3.0)],
            FailureMode::WrongLanguage => &[(&GPT_4O_MINI, 8.0)],
            FailureMode::TruncatedAnswer => &[(&GPT_4_1, 2.0)],
            FailureMode::InvalidToolArguments => &[(&CLAUDE_3_5_HAIKU, 4.0), (&GPT_4O_MINI, 1.5)],
            FailureMode::RateLimitError => &[(&GPT_4_1, 6.0)],
            FailureMode::Refusal => &[(&CLAUDE_SONNET_4, 3.0), (&CLAUDE_3_5_HAIKU, 3.0)],
            FailureMode::SlowAnswer => &[(&CLAUDE_SONNET_4, 3.0), (&GPT_4_1, 2.0)],
            FailureMode::InconsistentAnswer => &[(&GPT_4O_MINI, 2.0)],
            FailureMode::Catalogue(mode) => mode.favoured_models(),
        };
        favoured.iter().find(|(m, _)| *m == model).map_or(1.0, |(_, w)| *w)
    }

    /// The weight of the mode in the default mix. The refund hallucination can only happen in
    /// one feature, so it weighs more there to be as visible overall as the others.
    pub fn default_weight(self) -> f64 {
        match self {
            FailureMode::HallucinatedRefundPolicy => 1.6,
            FailureMode::WrongLanguage => 1.0,
            FailureMode::TruncatedAnswer => 1.2,
            FailureMode::InvalidToolArguments => 0.8,
            FailureMode::RateLimitError => 0.8,
            FailureMode::Refusal => 0.8,
            FailureMode::SlowAnswer => 0.7,
            FailureMode::InconsistentAnswer => 0.0,
            FailureMode::Catalogue(mode) => mode.default_weight(),
        }
    }
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for FailureMode {
    type Err = SimulateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let all = || FailureMode::ALL.into_iter().chain(FailureMode::EXTRA).chain(Mode::ALL.map(FailureMode::Catalogue));
        all().find(|m| m.id() == s).ok_or_else(|| SimulateError::UnknownFailureMode {
            name: s.to_string(),
            known: all().map(FailureMode::id).collect::<Vec<_>>().join(", "),
        })
    }
}

impl Serialize for FailureMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// Which failure modes a run injects, and how often relative to each other. A weight of 0
/// switches a mode off.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureMix {
    weights: Vec<(FailureMode, f64)>,
}

impl Default for FailureMix {
    fn default() -> Self {
        FailureMix { weights: FailureMode::ALL.iter().chain(&FailureMode::EXTRA).map(|m| (*m, m.default_weight())).collect() }
    }
}

impl FailureMix {
    /// The mix of the `catalogue` scenario: its modes at their default weights.
    pub fn catalogue() -> FailureMix {
        FailureMix { weights: Mode::ALL.iter().map(|m| (FailureMode::Catalogue(*m), m.default_weight())).collect() }
    }

    pub fn weight(&self, mode: FailureMode) -> f64 {
        self.weights.iter().find(|(m, _)| *m == mode).map_or(0.0, |(_, w)| *w)
    }

    pub fn set(&mut self, mode: FailureMode, weight: f64) {
        if let Some(slot) = self.weights.iter_mut().find(|(m, _)| *m == mode) {
            slot.1 = weight;
        }
    }

    /// The modes that can happen in `feature`, with their weights (zero weights left out).
    pub fn for_feature(&self, feature: Feature) -> Vec<(FailureMode, f64)> {
        self.weights.iter().copied().filter(|(m, w)| *w > 0.0 && m.applies_to(feature)).collect()
    }

    pub fn modes(&self) -> impl Iterator<Item = (FailureMode, f64)> + '_ {
        self.weights.iter().copied()
    }

    /// Applies overrides such as `wrong_language=3,slow_answer=0` (`name=weight`, comma
    /// separated); modes not named keep their weight.
    pub fn apply_overrides(&mut self, spec: &str) -> Result<(), SimulateError> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = item.split_once('=').ok_or_else(|| SimulateError::BadModeSpec { item: item.to_string() })?;
            let mode: FailureMode = name.trim().parse()?;
            let weight: f64 = weight.trim().parse().map_err(|_| SimulateError::BadModeSpec { item: item.to_string() })?;
            if !weight.is_finite() || weight < 0.0 {
                return Err(SimulateError::BadModeSpec { item: item.to_string() });
            }
            self.set(mode, weight);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for mode in FailureMode::ALL {
            assert_eq!(mode.id().parse::<FailureMode>().unwrap(), mode);
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{}\"", mode.id()));
        }
        let err = "hallucination".parse::<FailureMode>().unwrap_err().to_string();
        assert!(err.contains("hallucinated_refund_policy"), "{err}");
    }

    #[test]
    fn overrides_change_only_the_named_modes() {
        let mut mix = FailureMix::default();
        mix.apply_overrides("wrong_language=3, slow_answer=0").unwrap();
        assert_eq!(mix.weight(FailureMode::WrongLanguage), 3.0);
        assert_eq!(mix.weight(FailureMode::SlowAnswer), 0.0);
        assert_eq!(mix.weight(FailureMode::Refusal), FailureMode::Refusal.default_weight());
        assert!(!mix.for_feature(Feature::CodingAssistant).iter().any(|(m, _)| *m == FailureMode::SlowAnswer));
        assert!(!mix.for_feature(Feature::CodingAssistant).iter().any(|(m, _)| *m == FailureMode::HallucinatedRefundPolicy));
        assert!(mix.apply_overrides("wrong_language").is_err());
        assert!(mix.apply_overrides("wrong_language=-1").is_err());
        assert!(mix.apply_overrides("nope=1").is_err());
    }
}
