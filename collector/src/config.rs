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
    /// Bytes of request bodies held at once (raw, decompressed, decoded), over all requests;
    /// beyond, 429 / RESOURCE_EXHAUSTED with Retry-After.
    pub max_inflight_body_bytes: u64,
    /// What one client (an API key; for browser signals, the tokens of one project) may hold
    /// of that budget, so that one client cannot starve the others; default half the budget.
    /// Never below what one request of `max_body_bytes` reserves (three times it).
    pub max_inflight_body_bytes_per_key: Option<u64>,
    /// Connections open at once over both listeners (lowered below the file descriptor limit).
    pub max_connections: usize,
    /// A connection on which nothing arrives for this long is closed (idle keep-alive, a
    /// stalled upload).
    pub idle_timeout_secs: u64,
    /// Request headers must arrive within this delay.
    pub header_timeout_secs: u64,
    /// Largest estimated size of one request's rows (resource and scope attributes are stored
    /// with every span): beyond it, 413 before any row is built (see `expansion`).
    pub max_request_rows_bytes: u64,
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
    /// Bound on the join cache (estimated bytes of the calls and log events it holds); past
    /// it the oldest entries go, and their late half is joined in storage (one more write).
    pub join_cache_max_bytes: usize,
    /// Whether calls and log events that did not meet in memory are joined in storage (docs/
    /// storage.md, Several collectors). Off only where no producer sends content as log events.
    pub join_in_storage: bool,
    /// Requests that may wait for a ClickHouse insert; beyond, 429/503 with Retry-After.
    pub write_queue: usize,
    /// How often known API keys are re-read (a revocation takes effect within this delay).
    pub key_refresh_secs: u64,
    /// A span attribute holding the application's own message id, which signals may name
    /// (`message_id`) besides `gen_ai.response.id`.
    pub message_id_attribute: Option<String>,
    /// Browser origins allowed to post signals (CORS); `["*"]` for any. Empty: same origin only.
    pub cors_origins: Vec<String>,
    /// How often pending signals (target not seen yet) are retried, and after how long an
    /// unresolved one becomes `unlinked`.
    pub signal_link_interval_secs: u64,
    pub signal_link_timeout_secs: u64,
    pub derive: crate::signals::derive::DeriveConfig,
    /// The write-ahead log (on by default): requests are acknowledged once fsynced in it, and
    /// it absorbs ClickHouse outages. Off: acknowledged once inserted into ClickHouse.
    pub wal: bool,
    /// Default `$FLYWHEEL_DATA_DIR/wal/<database>` (`FLYWHEEL_DATA_DIR` defaults to `FLYWHEEL_HOME`); env `FLYWHEEL_WAL_DIR` overrides. One
    /// collector per directory.
    pub wal_dir: Option<PathBuf>,
    /// Bound on the log's size; when full, requests get 429 / RESOURCE_EXHAUSTED.
    pub wal_max_bytes: u64,
    /// How long the log's drain gathers records before it inserts them, unless its chunk fills
    /// first: fewer, larger inserts for ClickHouse, at the cost of this much delay before light
    /// traffic is queryable. 0 inserts whatever is there at once.
    pub insert_linger_ms: u64,
    /// The `spans` retention (from `[retention]`, set by `flywheel serve`): older spans and log
    /// records would expire the moment they are written, so they are refused and reported.
    #[serde(skip)]
    pub spans_retention_days: Option<u32>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            http: "127.0.0.1:4318".into(),
            grpc: "127.0.0.1:4317".into(),
            max_body_bytes: 16 << 20,
            max_request_rows_bytes: crate::expansion::DEFAULT_MAX_ROWS_BYTES,
            max_inflight_body_bytes: 256 << 20,
            max_inflight_body_bytes_per_key: None,
            max_connections: 4096,
            idle_timeout_secs: 60,
            header_timeout_secs: 10,
            feature_attribute: None,
            prices: None,
            redaction: RedactionConfig::default(),
            join_window_secs: 600,
            join_cache_max_bytes: crate::pipeline::JOIN_CACHE_DEFAULT_MAX_BYTES,
            join_in_storage: true,
            write_queue: 1024,
            key_refresh_secs: 30,
            message_id_attribute: None,
            cors_origins: Vec::new(),
            signal_link_interval_secs: 15,
            signal_link_timeout_secs: 3600,
            derive: Default::default(),
            wal: true,
            wal_dir: None,
            wal_max_bytes: 1 << 30,
            insert_linger_ms: crate::wal::DEFAULT_INSERT_LINGER.as_millis() as u64,
            spans_retention_days: None,
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
        let mut cfg = match std::env::var_os("FLYWHEEL_CONFIG") {
            Some(path) if !path.is_empty() => Self::from_file(Path::new(&path))?,
            _ => CollectorConfig::default(),
        };
        if let Some(dir) = std::env::var_os("FLYWHEEL_WAL_DIR").filter(|d| !d.is_empty()) {
            cfg.wal_dir = Some(PathBuf::from(dir));
        }
        Ok(cfg)
    }

    /// The write-ahead log directory for `database`: `wal_dir`, else `$FLYWHEEL_HOME/wal/<database>`.
    pub fn wal_dir_for(&self, database: &str) -> PathBuf {
        self.wal_dir.clone().unwrap_or_else(|| flywheel_schemas::engine::data_home().join("wal").join(database))
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str::<File>(&text).map(|f| f.collector).map_err(|e| format!("{}: {e}", path.display()))
    }
}
