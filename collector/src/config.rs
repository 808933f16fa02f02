//! The `[collector]` section of flywheel's configuration file (`FLYWHEEL_CONFIG`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::redact::RedactionConfig;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// OTLP/HTTP and signals listener.
    pub http: String,
    /// OTLP/gRPC listener.
    pub grpc: String,
    /// Largest request body accepted, after decompression (413 / RESOURCE_EXHAUSTED beyond).
    pub max_body_bytes: usize,
    /// The span attribute naming the application feature/route of a call. When absent from a
    /// trace, the feature is the agent or workflow name, else the root span's name, else the
    /// service name.
    pub feature_attribute: Option<String>,
    /// A price table replacing the built-in one.
    pub prices: Option<PathBuf>,
    pub redaction: RedactionConfig,
    /// How long a model call waits for its GenAI log events (and log events for their span)
    /// in memory before a late half is merged through a row rewrite.
    pub join_window_secs: u64,
    /// Requests that may wait for a ClickHouse insert; beyond, 429/503 with Retry-After.
    pub write_queue: usize,
    /// How often known API keys are re-read (a revocation takes effect within this delay).
    pub key_refresh_secs: u64,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            http: "127.0.0.1:4318".into(),
            grpc: "127.0.0.1:4317".into(),
            max_body_bytes: 16 << 20,
            feature_attribute: None,
            prices: None,
            redaction: RedactionConfig::default(),
            join_window_secs: 600,
            write_queue: 1024,
            key_refresh_secs: 30,
        }
    }
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    collector: CollectorConfig,
}

impl CollectorConfig {
    /// The `[collector]` section of `FLYWHEEL_CONFIG`, or the defaults.
    pub fn load() -> Result<Self, String> {
        match std::env::var_os("FLYWHEEL_CONFIG") {
            Some(path) if !path.is_empty() => Self::from_file(Path::new(&path)),
            _ => Ok(CollectorConfig::default()),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str::<File>(&text).map(|f| f.collector).map_err(|e| format!("{}: {e}", path.display()))
    }
}
