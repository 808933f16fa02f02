//! Cost of a call from a versioned price table (`collector/data/prices.toml`, overridable).
//!
//! Token accounting differs by provider family: OpenAI counts cached tokens inside the input
//! tokens, Anthropic reports cache reads and writes apart. Pricing each correctly is the point
//! of this module; a cost reported by the SDK always wins over it (see `to_row`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

pub const DEFAULT_TABLE: &str = include_str!("../data/prices.toml");

#[derive(Debug, Error)]
#[error("invalid price table {path}: {detail}")]
pub struct PriceError {
    path: String,
    detail: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    pub version: String,
    #[serde(default)]
    providers: BTreeMap<String, ProviderRules>,
    models: BTreeMap<String, ModelPrice>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderRules {
    input_includes_cached: bool,
}

/// USD per million tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelPrice {
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
    reasoning: Option<f64>,
}

/// The token counts of one call, as normalised.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

impl PriceTable {
    pub fn builtin() -> PriceTable {
        Self::parse(DEFAULT_TABLE, "built-in").expect("the built-in price table parses (tested)")
    }

    pub fn load(path: &Path) -> Result<PriceTable, PriceError> {
        let text = std::fs::read_to_string(path).map_err(|e| PriceError { path: path.display().to_string(), detail: e.to_string() })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<PriceTable, PriceError> {
        toml::from_str(text).map_err(|e| PriceError { path: origin.to_string(), detail: e.to_string() })
    }

    fn model(&self, model: &str) -> Option<&ModelPrice> {
        let model = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase(); // "openai/gpt-4o" (routers)
        self.models.get(&model).or_else(|| {
            self.models.iter().filter(|(name, _)| model.starts_with(name.as_str())).max_by_key(|(name, _)| name.len()).map(|(_, p)| p)
        })
    }

    /// Whether `provider` counts cached tokens inside input tokens. Unknown providers are
    /// guessed from the model family.
    fn input_includes_cached(&self, provider: &str, model: &str) -> bool {
        if let Some(rules) = self.providers.get(provider) {
            return rules.input_includes_cached;
        }
        !model.to_ascii_lowercase().contains("claude")
    }

    /// The cost in USD, or `None` when the model is not in the table.
    pub fn cost(&self, provider: &str, model: &str, usage: Usage) -> Option<f64> {
        let price = self.model(model)?;
        let cached_in_input = self.input_includes_cached(provider, model);
        let uncached_input = if cached_in_input { usage.input.saturating_sub(usage.cache_read + usage.cache_write) } else { usage.input };
        let reasoning_price = price.reasoning.unwrap_or(price.output);
        // Reasoning tokens are part of the output count; price them apart only when they differ.
        let plain_output = usage.output.saturating_sub(usage.reasoning);
        let micro = uncached_input as f64 * price.input
            + usage.cache_read as f64 * price.cache_read.unwrap_or(price.input)
            + usage.cache_write as f64 * price.cache_write.unwrap_or(price.input)
            + plain_output as f64 * price.output
            + usage.reasoning.min(usage.output) as f64 * reasoning_price;
        Some(micro / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn openai_cached_tokens_are_inside_the_input_count() {
        let t = PriceTable::builtin();
        // tool_call call 2 of the fixtures: 1187 input of which 1024 cached, 14 output.
        let cost =
            t.cost("openai", "gpt-4o-mini-2024-07-18", Usage { input: 1187, output: 14, cache_read: 1024, ..Default::default() }).unwrap();
        let expected = (163.0 * 0.15 + 1024.0 * 0.075 + 14.0 * 0.60) / 1e6;
        assert!(close(cost, expected), "{cost} vs {expected}");
    }

    #[test]
    fn anthropic_cache_tokens_are_apart_from_input() {
        let t = PriceTable::builtin();
        let usage = Usage { input: 100, output: 50, cache_read: 2000, cache_write: 500, reasoning: 0 };
        let cost = t.cost("anthropic", "claude-sonnet-4-20250514", usage).unwrap();
        let expected = (100.0 * 3.0 + 2000.0 * 0.30 + 500.0 * 3.75 + 50.0 * 15.0) / 1e6;
        assert!(close(cost, expected), "{cost} vs {expected}");
    }

    #[test]
    fn longest_prefix_wins_and_unknown_models_have_no_cost() {
        let t = PriceTable::builtin();
        let mini = t.cost("openai", "gpt-4.1-mini-2025-04-14", Usage { input: 1_000_000, ..Default::default() }).unwrap();
        assert!(close(mini, 0.40), "gpt-4.1-mini must not be priced as gpt-4.1: {mini}");
        assert_eq!(t.cost("openai", "my-finetune", Usage::default()), None);
        assert_eq!(t.version, "2026-11-01");
    }

    #[test]
    fn a_broken_override_names_the_file() {
        let err = PriceTable::parse("version = 1", "/etc/prices.toml").unwrap_err();
        assert!(err.to_string().contains("/etc/prices.toml"), "{err}");
    }
}
