//! The ground truth of a run: one JSON line per LLM call saying which failure was injected
//! where and how the user reacted, then one summary line. Tests score the analyzer with it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::error::SimulateError;
use crate::failure::FailureMode;
use crate::plan::{Plan, hex_id};

/// One line of the truth file.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TruthCall {
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    /// The `convention` the collector should record.
    pub convention: String,
    /// The requested model.
    pub model: String,
    pub provider: String,
    /// Position of the call in its trace (0 = first).
    pub call_index: usize,
    /// The failure injected into this very call, if any.
    pub failure_mode: Option<String>,
    /// The failure of the interaction the call belongs to (the same on every call of a trace).
    pub trace_failure_mode: Option<String>,
    /// Signal kinds sent to the signals API about this call.
    pub signals: Vec<String>,
    /// Everything the user did about this call, including what the app did not report (an
    /// unreported regenerate still shows as a second, near-identical interaction).
    pub reactions: Vec<String>,
    pub response_id: Option<String>,
    /// The trace this interaction regenerates or retries.
    pub follow_up_of: Option<String>,
    /// Start of the call, RFC 3339.
    pub timestamp: String,
}

/// The call lines of a plan, in order of interaction start.
pub fn calls(plan: &Plan) -> Vec<TruthCall> {
    let mut out = Vec::new();
    for ix in &plan.interactions {
        for (i, call) in ix.calls().enumerate() {
            let target = i == ix.target_call;
            out.push(TruthCall {
                trace_id: hex_id(&ix.trace_id),
                span_id: hex_id(&call.span_id),
                session_id: ix.session_id.clone(),
                user_id: ix.user_id.clone(),
                feature: ix.feature.id().to_string(),
                convention: ix.feature.convention().to_string(),
                model: call.model.name.to_string(),
                provider: call.model.provider.to_string(),
                call_index: i,
                failure_mode: call.failure.map(|f| f.id().to_string()),
                trace_failure_mode: ix.failure.map(|f| f.id().to_string()),
                signals: if target { ix.signals.iter().filter(|s| s.sent).map(|s| s.kind.id().to_string()).collect() } else { Vec::new() },
                reactions: if target { ix.reactions.iter().map(|r| r.kind.id().to_string()).collect() } else { Vec::new() },
                response_id: call.response_id.clone(),
                follow_up_of: ix.follow_up_of.map(|t| hex_id(&t)),
                timestamp: call.start.format(&Rfc3339).expect("timestamps format as RFC 3339"),
            });
        }
    }
    out
}

/// The summary line: what the run contains, and with which settings.
pub fn summary(plan: &Plan, failure_rate: f64, weights: &[(FailureMode, f64)]) -> Value {
    let mut failures = BTreeMap::new();
    // The modes of the run's scenario, switched off ones included (they count 0).
    for (mode, _) in weights {
        failures.insert(mode.id(), plan.failures(*mode));
    }
    let mut signals: BTreeMap<&str, usize> = BTreeMap::new();
    let mut implicit: BTreeMap<&str, usize> = BTreeMap::new();
    for s in plan.signals() {
        *if s.sent { &mut signals } else { &mut implicit }.entry(s.kind.id()).or_default() += 1;
    }
    let mut features: BTreeMap<&str, usize> = BTreeMap::new();
    for ix in &plan.interactions {
        *features.entry(ix.feature.id()).or_default() += 1;
    }
    json!({"summary": {
        "seed": plan.seed,
        "base_time": plan.base_time.format(&Rfc3339).expect("RFC 3339"),
        "duration_secs": plan.window.as_secs(),
        "sessions": plan.sessions,
        "users": plan.users,
        "interactions": plan.interactions.len(),
        "interactions_per_feature": features,
        "calls": plan.calls(),
        "failure_rate": failure_rate,
        "weights": weights.iter().map(|(m, w)| (m.id(), *w)).collect::<BTreeMap<_, _>>(),
        "failing_interactions": failures,
        "signals": signals,
        "unreported_reactions": implicit,
    }})
}

/// Writes the truth file: the call lines, then the summary line.
pub fn write(path: &Path, plan: &Plan, failure_rate: f64, weights: &[(FailureMode, f64)]) -> Result<usize, SimulateError> {
    let err = |source| SimulateError::Truth { path: path.to_path_buf(), source };
    let lines = calls(plan);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    for line in &lines {
        serde_json::to_writer(&mut out, line).map_err(|e| err(e.into()))?;
        out.write_all(b"\n").map_err(err)?;
    }
    serde_json::to_writer(&mut out, &summary(plan, failure_rate, weights)).map_err(|e| err(e.into()))?;
    out.write_all(b"\n").map_err(err)?;
    out.flush().map_err(err)?;
    Ok(lines.len())
}
