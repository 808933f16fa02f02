//! Where ClickHouse is and how long each table keeps its data.
//!
//! Sources, later wins: built-in defaults, the `[clickhouse]` and `[retention]` sections of the
//! TOML file named by `FLYWHEEL_CONFIG`, then the `FLYWHEEL_CLICKHOUSE_*` environment variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::StoreError;

pub const DEFAULT_DATABASE: &str = "flywheel";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// `None` means "no server configured": commands that need one start the local engine.
    /// `http://` or `https://`; credentials may ride in it (`https://user:password@host:8443`).
    pub url: Option<String>,
    /// Over the URL's own credentials when both are given.
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: String,
    /// A PEM file of the authority that signed the server's certificate, trusted besides the
    /// system's roots (a private server behind an internal CA).
    pub ca_file: Option<PathBuf>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig { url: None, user: None, password: None, database: DEFAULT_DATABASE.to_string(), ca_file: None }
    }
}

impl ClickHouseConfig {
    /// Applies `FLYWHEEL_CLICKHOUSE_URL`, `_USER`, `_PASSWORD`, `_DATABASE` and `_CA_FILE` over `self`.
    pub fn with_env(mut self) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(url) = var("FLYWHEEL_CLICKHOUSE_URL") {
            self.url = Some(url);
        }
        if let Some(user) = var("FLYWHEEL_CLICKHOUSE_USER") {
            self.user = Some(user);
        }
        if let Some(password) = var("FLYWHEEL_CLICKHOUSE_PASSWORD") {
            self.password = Some(password);
        }
        if let Some(database) = var("FLYWHEEL_CLICKHOUSE_DATABASE") {
            self.database = database;
        }
        if let Some(ca_file) = var("FLYWHEEL_CLICKHOUSE_CA_FILE") {
            self.ca_file = Some(PathBuf::from(ca_file));
        }
        self
    }
}

/// Retention in days per table. Tables not listed keep their data until deleted by hand
/// (patterns, triage state, exports and keys are small and long-lived).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub spans: u32,
    pub llm_calls: u32,
    pub signals: u32,
    pub failures: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { spans: 30, llm_calls: 90, signals: 365, failures: 180 }
    }
}

/// Longest retention accepted: TTLs are computed on `DateTime`, which ends in 2106; a longer
/// retention would wrap around into the past and expire every row at once.
pub const MAX_RETENTION_DAYS: u32 = 20_000;

impl Retention {
    /// Every retention between 1 and [`MAX_RETENTION_DAYS`] days.
    pub fn validate(&self) -> Result<(), String> {
        for (table, days) in self.as_map() {
            if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                return Err(format!("[retention] {table} = {days}: must be between 1 and {MAX_RETENTION_DAYS} days"));
            }
        }
        Ok(())
    }

    pub fn days(&self, table: &str) -> Option<u32> {
        match table {
            "spans" => Some(self.spans),
            "llm_calls" => Some(self.llm_calls),
            "signals" => Some(self.signals),
            "failures" => Some(self.failures),
            _ => None,
        }
    }

    pub fn as_map(&self) -> BTreeMap<&'static str, u32> {
        BTreeMap::from([("spans", self.spans), ("llm_calls", self.llm_calls), ("signals", self.signals), ("failures", self.failures)])
    }
}

/// The storage part of flywheel's configuration file. Other sections belong to other crates
/// and are ignored here.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct StorageConfig {
    pub clickhouse: ClickHouseConfig,
    pub retention: Retention,
}

impl StorageConfig {
    /// Reads `FLYWHEEL_CONFIG` (if set) then the environment.
    pub fn load() -> Result<Self, StoreError> {
        let mut cfg = match std::env::var_os("FLYWHEEL_CONFIG") {
            Some(path) if !path.is_empty() => Self::from_file(Path::new(&path))?,
            _ => StorageConfig::default(),
        };
        cfg.clickhouse = cfg.clickhouse.with_env();
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self, StoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StoreError::Config(format!("cannot read FLYWHEEL_CONFIG file {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| StoreError::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let cfg: StorageConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.retention.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_sections_override_defaults_and_unknown_sections_are_left_to_others() {
        let cfg = StorageConfig::from_toml(
            "[clickhouse]\nurl = \"http://ch:8123\"\ndatabase = \"prod\"\n[retention]\nspans = 7\n[collector]\nhttp = \"0.0.0.0:4318\"\n",
        )
        .unwrap();
        assert_eq!(cfg.clickhouse.url.as_deref(), Some("http://ch:8123"));
        assert_eq!(cfg.clickhouse.database, "prod");
        assert_eq!(cfg.retention.spans, 7);
        assert_eq!(cfg.retention.signals, 365);
    }

    #[test]
    fn a_retention_that_would_overflow_the_ttl_is_refused() {
        let err = StorageConfig::from_toml("[retention]\nspans = 36500\n").unwrap_err();
        assert!(err.contains("between 1 and 20000"), "{err}");
        assert!(StorageConfig::from_toml("[retention]\nspans = 0\n").is_err());
        assert!(StorageConfig::from_toml("[retention]\nspans = 20000\n").is_ok());
    }

    #[test]
    fn a_misspelt_retention_key_is_an_error_not_a_silent_default() {
        let err = StorageConfig::from_toml("[retention]\nspan = 7\n").unwrap_err();
        assert!(err.contains("span"), "{err}");
    }
}
