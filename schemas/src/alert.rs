//! Alerts: what `flywheel watch` tells a team between reviews, and the record that each was
//! delivered. The generic webhook body is an [`Alert`] as JSON, documented by
//! `schemas/api/alert.schema.json`; the Slack body is built from the same fields.

use std::collections::BTreeMap;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::rows::ts;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A pattern first seen in the window, already reaching enough users.
    NewPattern,
    /// A pattern whose rate per call grew by a factor over its baseline, significantly.
    PatternGrowing,
    /// A pattern fixed before, failing again.
    PatternRegressed,
    /// A feature's rate of one kind of signal (thumbs-down, regenerate, edit, feature
    /// disabled…) moved significantly from its baseline, up or down.
    SignalRate,
    /// A feature's cost per call above its norm.
    Cost,
    /// A feature's latency p95 above its norm.
    Latency,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NewPattern => "new_pattern",
            AlertKind::PatternGrowing => "pattern_growing",
            AlertKind::PatternRegressed => "pattern_regressed",
            AlertKind::SignalRate => "signal_rate",
            AlertKind::Cost => "cost",
            AlertKind::Latency => "latency",
        }
    }
}

/// One alert, as the generic webhook receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The idempotency key: the same event always has the same id (also sent as the
    /// `Idempotency-Key` header), so that a receiver can drop a repeat.
    pub id: String,
    pub kind: AlertKind,
    pub project: String,
    /// One line: what happened.
    pub title: String,
    /// The figures behind it, and the test that says it is not noise.
    pub text: String,
    /// The pattern it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_id: Option<String>,
    /// The feature it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// Named figures: `observed`, `baseline`, `p_value`, `count`, `users`…
    pub metrics: BTreeMap<String, f64>,
    /// The command that opens what the alert is about.
    pub command: String,
    #[serde(with = "time::serde::rfc3339")]
    pub detected_at: OffsetDateTime,
}

/// A delivered alert: one row per alert and destination (`alerts_sent`). Read before sending,
/// so that a tick never sends an event twice to the same place.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AlertSentRow {
    pub project_id: String,
    pub alert_id: String,
    /// The webhook's name (its URL's host and path when unnamed).
    pub destination: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    #[serde(with = "ts::nanos")]
    pub sent_at: OffsetDateTime,
}
