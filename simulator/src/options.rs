//! What a run is asked to do, and the parsing of its command-line values.

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::SimulateError;
use crate::failure::FailureMix;
use crate::scenario::Scenario;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318";

/// How much traffic to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volume {
    /// This many sessions, whatever their length.
    Sessions(usize),
    /// Exactly this many interactions (traces), follow-up regenerations included.
    Interactions(usize),
}

#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Which application to play; it decides the features and the failure modes.
    pub scenario: Scenario,
    pub seed: u64,
    /// The simulated time span of the traffic, ending at the base time.
    pub window: Duration,
    /// The end of the window; `None` is now. Pin it to make two runs byte-identical.
    pub base_time: Option<OffsetDateTime>,
    pub volume: Volume,
    /// Share of interactions with an injected failure, 0 to 1 (at the window's start when
    /// `failure_rate_end` is set).
    pub failure_rate: f64,
    /// The share at the window's end, reached linearly: a feature getting better or worse over
    /// the simulated weeks, for `flywheel readiness` and trends. `None`: one rate throughout.
    pub failure_rate_end: Option<f64>,
    pub mix: FailureMix,
    /// The collector's OTLP/HTTP base URL (traces go to `/v1/traces`, signals to `/v1/signals`).
    pub endpoint: String,
    /// A project API key, sent as `Authorization: Bearer KEY`.
    pub key: Option<String>,
    /// Where to write the ground truth (JSONL).
    pub truth: Option<PathBuf>,
    /// The application's release: the resource's `service.version`.
    pub release: String,
    /// Share of support sessions that open with a question customers ask again and again (a
    /// policy question, or one about their own account): the traffic in which answers to one
    /// question can disagree. 0 plays none, as earlier versions did.
    pub repeated_questions: f64,
}

/// The release the simulated application runs unless told otherwise.
pub const DEFAULT_RELEASE: &str = "2.14.0";

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions {
            scenario: Scenario::Default,
            seed: 42,
            window: Duration::from_secs(7 * 86_400),
            base_time: None,
            volume: Volume::Interactions(1000),
            failure_rate: 0.15,
            failure_rate_end: None,
            mix: FailureMix::default(),
            endpoint: DEFAULT_ENDPOINT.to_string(),
            key: None,
            truth: None,
            release: DEFAULT_RELEASE.to_string(),
            repeated_questions: 0.0,
        }
    }
}

impl SimulateOptions {
    /// The defaults of a scenario: its failure modes at their default weights.
    pub fn for_scenario(scenario: Scenario) -> SimulateOptions {
        SimulateOptions { scenario, mix: scenario.mix(), failure_rate: scenario.default_failure_rate(), ..Default::default() }
    }

    pub fn validate(&self) -> Result<(), SimulateError> {
        if let Some((mode, _)) = self.mix.modes().find(|(m, w)| *w > 0.0 && !self.scenario.has_mode(*m)) {
            return Err(SimulateError::BadOption(format!("failure mode `{mode}` is not part of the `{}` scenario", self.scenario.id())));
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(SimulateError::BadOption(format!("--failure-rate must be between 0 and 1, got {}", self.failure_rate)));
        }
        if let Some(end) = self.failure_rate_end
            && !(0.0..=1.0).contains(&end)
        {
            return Err(SimulateError::BadOption(format!("--failure-rate-end must be between 0 and 1, got {end}")));
        }
        if !(0.0..=1.0).contains(&self.repeated_questions) {
            return Err(SimulateError::BadOption(format!("--repeated-questions must be between 0 and 1, got {}", self.repeated_questions)));
        }
        if self.mix.weight(crate::failure::FailureMode::InconsistentAnswer) > 0.0 && self.repeated_questions == 0.0 {
            return Err(SimulateError::BadOption(
                "failure mode `inconsistent_answer` contradicts answers to repeated questions: add --repeated-questions (e.g. 0.3)".into(),
            ));
        }
        if matches!(self.volume, Volume::Sessions(0) | Volume::Interactions(0)) {
            return Err(SimulateError::BadOption("the volume must be at least one session or interaction".into()));
        }
        if self.window.is_zero() {
            return Err(SimulateError::BadOption("--duration must be longer than zero".into()));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(SimulateError::BadOption(format!("--endpoint must be an http:// URL, got `{}`", self.endpoint)));
        }
        Ok(())
    }
}

impl SimulateOptions {
    /// The failure rate of an interaction that starts `at` in a window ending at `base`:
    /// `failure_rate`, moving linearly to `failure_rate_end` when that is set.
    pub fn failure_rate_at(&self, at: OffsetDateTime, base: OffsetDateTime) -> f64 {
        let Some(end) = self.failure_rate_end else { return self.failure_rate };
        let window = self.window.as_secs_f64().max(1.0);
        let into = ((at - (base - self.window)).as_seconds_f64() / window).clamp(0.0, 1.0);
        self.failure_rate + (end - self.failure_rate) * into
    }
}

/// `30s`, `15m`, `2h`, `7d`, `1h30m`: read as every command reads durations
/// ([`flywheel_schemas::lookback`]).
pub fn parse_duration(value: &str) -> Result<Duration, SimulateError> {
    let span = flywheel_schemas::lookback::parse(value).map_err(|reason| SimulateError::BadDuration { reason })?;
    Ok(Duration::from_secs(span.whole_seconds().unsigned_abs()))
}

/// An RFC 3339 time, e.g. `2025-06-02T12:00:00Z`.
pub fn parse_base_time(value: &str) -> Result<OffsetDateTime, SimulateError> {
    OffsetDateTime::parse(value.trim(), &Rfc3339)
        .map_err(|e| SimulateError::BadBaseTime { value: value.to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        let err = parse_duration("seven days").unwrap_err().to_string();
        assert!(err.contains("30m, 36h, 7d, 2w or 1d12h"), "{err}");
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn base_time_is_rfc3339() {
        assert_eq!(parse_base_time("2025-06-02T12:00:00Z").unwrap().unix_timestamp(), 1_748_865_600);
        assert!(parse_base_time("yesterday").is_err());
    }

    #[test]
    fn validation_names_the_bad_option() {
        let bad = SimulateOptions { failure_rate: 1.5, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("--failure-rate"));
        let bad = SimulateOptions { endpoint: "127.0.0.1:4318".into(), ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("--endpoint"));
        SimulateOptions::default().validate().unwrap();
    }
}
