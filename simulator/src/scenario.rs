//! The applications the simulator can play. `default` is the two-feature shop the analyzer was
//! developed with; `catalogue` is the benchmark that is not: many failure modes over several kinds
//! of application, with deliberate confusers (see [`crate::catalogue`]).

use std::fmt;
use std::str::FromStr;

use crate::catalog::Feature;
use crate::catalogue::App;
use crate::error::SimulateError;
use crate::failure::{FailureMix, FailureMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenario {
    /// Northwind Outfitters' support and coding assistants with 7 failure modes.
    #[default]
    Default,
    /// Five applications (RAG help centre, text-to-SQL, travel agent, developer assistant,
    /// ticket triage) with 26 failure modes drawn from published taxonomies.
    Catalogue,
}

impl Scenario {
    pub const ALL: [Scenario; 2] = [Scenario::Default, Scenario::Catalogue];

    pub fn id(self) -> &'static str {
        match self {
            Scenario::Default => "default",
            Scenario::Catalogue => "catalogue",
        }
    }

    /// The features the scenario plays.
    pub fn features(self) -> Vec<Feature> {
        match self {
            Scenario::Default => Feature::ALL.to_vec(),
            Scenario::Catalogue => App::ALL.iter().map(|a| Feature::Catalogue(*a)).collect(),
        }
    }

    /// The scenario's failure modes at their default weights.
    pub fn mix(self) -> FailureMix {
        match self {
            Scenario::Default => FailureMix::default(),
            Scenario::Catalogue => FailureMix::catalogue(),
        }
    }

    /// The default share of failing interactions: the catalogue has more modes to fill.
    pub fn default_failure_rate(self) -> f64 {
        match self {
            Scenario::Default => 0.15,
            Scenario::Catalogue => 0.3,
        }
    }

    pub fn has_mode(self, mode: FailureMode) -> bool {
        matches!(mode, FailureMode::Catalogue(_)) == (self == Scenario::Catalogue)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Scenario {
    type Err = SimulateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL.into_iter().find(|x| x.id() == s).ok_or_else(|| {
            SimulateError::BadOption(format!("unknown scenario `{s}`: use one of {}", Scenario::ALL.map(Scenario::id).join(", ")))
        })
    }
}
