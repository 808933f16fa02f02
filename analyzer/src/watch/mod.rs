//! `flywheel watch`: the analysis on a schedule, and alerts to webhooks when something changed
//! that a team would want to hear about before its weekly review.
//!
//! A tick analyses the window (as `flywheel analyze` does), then compares its recent part
//! (`recent`, the last 24 hours by default) with the rest of the window, its baseline
//! ([`rules`]): a new pattern above a number of users, a pattern whose rate per call grew by a
//! factor, a pattern that came back after a fix, a feature's signal rate that moved, its cost per
//! call or latency p95 above its norm. Every rate comparison must pass a minimum count and a
//! two-proportion test at `alpha`, Bonferroni-corrected over the tests the tick ran, so that
//! the defaults do not page for noise. Alerts go to every webhook ([`deliver`]) as a Slack
//! incoming-webhook body or as the generic JSON body of `schemas/api/alert.schema.json`,
//! retried with backoff, and never twice for the same event (a delivery is recorded in
//! `alerts_sent` and checked before sending; the event's id is also the `Idempotency-Key`).

pub mod deliver;
pub mod rules;

use flywheel_schemas::Store;
use flywheel_schemas::alert::Alert;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::error::AnalyzerError;
use crate::run::{self, Outcome};

/// What one tick did.
pub struct Tick {
    pub outcome: Outcome,
    pub alerts: Vec<Alert>,
    pub delivery: deliver::Delivery,
}

/// One tick: analyse the window ending now, decide the alerts, deliver them.
pub async fn tick(
    store: &Store,
    client: &reqwest::Client,
    cfg: &WatchConfig,
    opts: run::Options<'_>,
    progress: &dyn run::Progress,
) -> Result<Tick, AnalyzerError> {
    let (window, recent) = (cfg.window_duration().map_err(AnalyzerError::Config)?, cfg.recent_duration().map_err(AnalyzerError::Config)?);
    let now = OffsetDateTime::now_utc();
    let opts = run::Options { since: now - window, until: now, ..opts };
    let project = opts.project.clone();
    let outcome = run::analyze(store, &opts, progress).await?;
    // The run's patterns with the team's triage applied (a `wont_fix` pattern never alerts).
    let patterns = flywheel_schemas::queries::current_patterns(store, &project).await?;
    let periods = rules::Periods { start: now - window, recent: now - recent, end: now };
    let alerts = rules::alerts(store, &project, &patterns, periods, &cfg.alerts, now).await?;
    let retry_base = std::time::Duration::from_millis(cfg.retry_base_ms);
    let delivery = deliver::deliver(store, client, &cfg.webhooks, &alerts, cfg.attempts, retry_base).await?;
    Ok(Tick { outcome, alerts, delivery })
}

/// How a webhook wants its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"text": …, "blocks": […]}`: Slack's incoming webhooks, and the many tools that accept
    /// the same body (Mattermost, Rocket.Chat, Discord's `/slack` endpoint).
    Slack,
    /// The [`flywheel_schemas::alert::Alert`] itself.
    #[default]
    Json,
}

/// One destination of alerts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    #[serde(default)]
    pub format: Format,
    /// What deliveries are recorded under; by default the URL's host and a hash of the URL
    /// (a Slack URL is a secret: it is not stored).
    #[serde(default)]
    pub name: Option<String>,
}

/// What a rate comparison needs before it may alert.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// A new pattern alerts once it reaches this many users.
    pub new_pattern_min_users: u64,
    /// A pattern alerts as growing when its rate per call is this many times its baseline.
    pub growth_factor: f64,
    /// The fewest events (failures, signals, slow or costly calls) in the recent part for any
    /// rate alert.
    pub min_count: u64,
    /// The family-wise significance level of a tick's tests (Bonferroni-corrected).
    pub alpha: f64,
    /// Signal kinds whose rate per feature is watched, up and down.
    pub signal_kinds: Vec<String>,
    /// A signal rate alerts when it moves by this factor (up, or down to 1/factor).
    pub signal_factor: f64,
    /// Cost per call this many times the feature's baseline alerts.
    pub cost_factor: f64,
    /// Latency p95 this many times the feature's baseline alerts.
    pub latency_factor: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            new_pattern_min_users: 3,
            growth_factor: 2.0,
            min_count: 10,
            alpha: 0.01,
            signal_kinds: ["thumbs_down", "regenerate", "edit", "feature_disabled", "escalation"].map(String::from).to_vec(),
            signal_factor: 2.0,
            cost_factor: 1.5,
            latency_factor: 1.5,
        }
    }
}

/// The `[watch]` section of the configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Time between ticks (30m, 1h, 6h…).
    pub every: String,
    /// The window each tick analyses.
    pub window: String,
    /// The recent part of the window, compared with the rest of it.
    pub recent: String,
    pub webhooks: Vec<Webhook>,
    pub alerts: Thresholds,
    /// Attempts per delivery before it waits for the next tick.
    pub attempts: u32,
    /// First retry delay, doubled at each attempt (capped at a minute; a `Retry-After` is
    /// honoured up to the same cap).
    pub retry_base_ms: u64,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            every: "1h".into(),
            window: "7d".into(),
            recent: "24h".into(),
            webhooks: vec![],
            alerts: Thresholds::default(),
            attempts: 5,
            retry_base_ms: 1000,
        }
    }
}

impl WatchConfig {
    /// The `[watch]` section of a configuration file (other sections are other parts' own).
    pub fn parse(text: &str, origin: &str) -> Result<WatchConfig, AnalyzerError> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            watch: WatchConfig,
        }
        let file: File = toml::from_str(text).map_err(|e| AnalyzerError::Config(format!("{origin}: [watch]: {e}")))?;
        file.watch.validate().map_err(|e| AnalyzerError::Config(format!("{origin}: [watch] {e}")))?;
        Ok(file.watch)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, spec) in [("every", &self.every), ("window", &self.window), ("recent", &self.recent)] {
            flywheel_schemas::lookback::parse(spec).map_err(|e| format!("{name}: {e}"))?;
        }
        if self.recent_duration()? >= self.window_duration()? {
            return Err(format!(
                "recent = {} must be shorter than window = {}: the rest of the window is the baseline",
                self.recent, self.window
            ));
        }
        for hook in &self.webhooks {
            let url = reqwest::Url::parse(&hook.url).map_err(|e| format!("webhook `{}`: {e}", hook.url))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("webhook `{}`: use an http:// or https:// URL", hook.url));
            }
        }
        let a = &self.alerts;
        if a.alpha.is_nan() || a.alpha <= 0.0 || a.alpha >= 1.0 {
            return Err(format!("alerts.alpha = {}: must be between 0 and 1", a.alpha));
        }
        for (name, f) in [
            ("growth_factor", a.growth_factor),
            ("signal_factor", a.signal_factor),
            ("cost_factor", a.cost_factor),
            ("latency_factor", a.latency_factor),
        ] {
            // NaN fails too.
            if f.is_nan() || f <= 1.0 {
                return Err(format!("alerts.{name} = {f}: must be above 1"));
            }
        }
        if self.attempts == 0 {
            return Err("attempts = 0: at least one attempt".into());
        }
        Ok(())
    }

    pub fn every_duration(&self) -> Result<time::Duration, String> {
        flywheel_schemas::lookback::parse(&self.every)
    }
    pub fn window_duration(&self) -> Result<time::Duration, String> {
        flywheel_schemas::lookback::parse(&self.window)
    }
    pub fn recent_duration(&self) -> Result<time::Duration, String> {
        flywheel_schemas::lookback::parse(&self.recent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_reads_with_defaults_and_refuses_what_cannot_work() {
        let cfg = WatchConfig::parse(
            "[clickhouse]\nurl = \"http://x\"\n[watch]\nevery = \"30m\"\n[[watch.webhooks]]\nurl = \"https://hooks.slack.com/services/T/B/x\"\nformat = \"slack\"\n[watch.alerts]\nmin_count = 20\n",
            "test",
        )
        .unwrap();
        assert_eq!((cfg.every.as_str(), cfg.window.as_str(), cfg.alerts.min_count, cfg.alerts.growth_factor), ("30m", "7d", 20, 2.0));
        assert_eq!(cfg.webhooks[0].format, Format::Slack);
        assert_eq!(WatchConfig::parse("", "test").unwrap(), WatchConfig::default());
        for (bad, says) in [
            ("[watch]\nrecent = \"8d\"\n", "shorter than window"),
            ("[watch]\nevery = \"soon\"\n", "every"),
            ("[[watch.webhooks]]\nurl = \"ftp://x\"\n", "http"),
            ("[watch.alerts]\nalpha = 2.0\n", "alpha"),
            ("[watch.alerts]\ngrowth_factor = 0.5\n", "growth_factor"),
            ("[watch]\neverry = \"1h\"\n", "unknown field"),
        ] {
            let e = WatchConfig::parse(bad, "test").unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
