//! The simulated application: its two features, the models each one routes to, and how fast
//! those models answer. The numbers are rough production figures, so that latency and token
//! norms per feature look like the real thing to the analyzer.

use serde::Serialize;

use crate::catalogue::App;

/// An application feature. Each one is instrumented with a different GenAI convention, as two
/// teams of one company would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Customer support chat with tools (orders, refunds, shipping, account, billing);
    /// instrumented by hand with the OTel GenAI 1.37 conventions.
    SupportAssistant,
    /// IDE coding assistant (Rust, Python, SQL); instrumented with OpenInference.
    CodingAssistant,
    /// An application of the `catalogue` scenario (see [`crate::catalogue`]).
    Catalogue(App),
}

/// How a feature's team instruments its calls: which renderer in [`crate::spans`] writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrumentation {
    /// OTel GenAI 1.37 by hand: `gen_ai.*` attributes with JSON messages.
    GenAi,
    /// OpenInference: `llm.*` flattened messages, `input.value` / `output.value`.
    OpenInference,
}

impl Feature {
    /// The features of the default scenario.
    pub const ALL: [Feature; 2] = [Feature::SupportAssistant, Feature::CodingAssistant];

    /// The id used as root span name, agent name and `feature` in the truth file.
    pub fn id(self) -> &'static str {
        match self {
            Feature::SupportAssistant => "support_assistant",
            Feature::CodingAssistant => "coding_assistant",
            Feature::Catalogue(app) => app.id(),
        }
    }

    /// The `convention` value the collector records for this feature's calls.
    pub fn convention(self) -> &'static str {
        match self.instrumentation() {
            Instrumentation::GenAi => "otel_genai_1.37",
            Instrumentation::OpenInference => "openinference",
        }
    }

    pub fn instrumentation(self) -> Instrumentation {
        match self {
            Feature::SupportAssistant => Instrumentation::GenAi,
            Feature::CodingAssistant => Instrumentation::OpenInference,
            Feature::Catalogue(app) => app.instrumentation(),
        }
    }

    /// The JSON tool definitions the feature sends with its calls.
    pub fn tool_definitions(self) -> Vec<serde_json::Value> {
        match self {
            Feature::SupportAssistant => crate::support::tool_definitions().as_array().cloned().unwrap_or_default(),
            Feature::CodingAssistant => crate::coding::tool_definitions(),
            Feature::Catalogue(app) => app.tool_definitions(),
        }
    }

    /// Share of sessions that use this feature.
    pub fn traffic_share(self) -> f64 {
        match self {
            Feature::SupportAssistant => 0.55,
            Feature::CodingAssistant => 0.45,
            Feature::Catalogue(app) => app.traffic_share(),
        }
    }

    /// The models this feature routes to, with their share of its calls (an A/B test and a
    /// fallback, as in most production apps).
    pub fn models(self) -> &'static [(&'static Model, f64)] {
        match self {
            Feature::SupportAssistant => &[(&GPT_4O_MINI, 0.55), (&GPT_4_1, 0.25), (&CLAUDE_3_5_HAIKU, 0.20)],
            Feature::CodingAssistant => &[(&CLAUDE_SONNET_4, 0.50), (&GPT_4_1, 0.35), (&GPT_4O_MINI, 0.15)],
            Feature::Catalogue(app) => app.models(),
        }
    }

    /// `max_tokens` the feature requests on its calls.
    pub fn max_tokens(self) -> u64 {
        match self {
            Feature::SupportAssistant => 400,
            Feature::CodingAssistant => 1024,
            Feature::Catalogue(app) => app.max_tokens(),
        }
    }

    pub fn temperature(self) -> f64 {
        match self {
            Feature::SupportAssistant => 0.3,
            Feature::CodingAssistant => 0.2,
            Feature::Catalogue(app) => app.temperature(),
        }
    }
}

/// A model as the application calls it.
#[derive(Debug, PartialEq)]
pub struct Model {
    /// The requested model name (`gen_ai.request.model`).
    pub name: &'static str,
    /// The dated snapshot the provider answers with (`gen_ai.response.model`).
    pub snapshot: &'static str,
    /// `gen_ai.provider.name` / `llm.provider`.
    pub provider: &'static str,
    /// Time to the first token, milliseconds.
    pub first_token_ms: u64,
    /// Generation speed, milliseconds per output token.
    pub ms_per_token: f64,
}

pub const GPT_4O_MINI: Model =
    Model { name: "gpt-4o-mini", snapshot: "gpt-4o-mini-2024-07-18", provider: "openai", first_token_ms: 350, ms_per_token: 9.0 };
pub const GPT_4_1: Model =
    Model { name: "gpt-4.1", snapshot: "gpt-4.1-2025-04-14", provider: "openai", first_token_ms: 600, ms_per_token: 14.0 };
pub const CLAUDE_SONNET_4: Model =
    Model { name: "claude-sonnet-4", snapshot: "claude-sonnet-4-20250514", provider: "anthropic", first_token_ms: 900, ms_per_token: 16.0 };
pub const CLAUDE_3_5_HAIKU: Model = Model {
    name: "claude-3-5-haiku",
    snapshot: "claude-3-5-haiku-20241022",
    provider: "anthropic",
    first_token_ms: 450,
    ms_per_token: 10.0,
};

/// Rough token count of a text, as the providers' tokenizers give for English prose and code.
pub fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}
