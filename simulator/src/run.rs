//! A whole run: plan, spans to the collector as fast as it accepts them, signals, truth file.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinSet;

use crate::catalog::Feature;
use crate::error::SimulateError;
use crate::failure::FailureMode;
use crate::options::SimulateOptions;
use crate::plan::{self, Plan};
use crate::signals::{self, Delivery};
use crate::spans::{Emitter, Exporters};
use crate::truth;

/// Spans per OTLP request (whole traces only, so a request may hold a few more).
const SPANS_PER_REQUEST: usize = 400;
/// OTLP requests in flight.
const CONCURRENT_EXPORTS: usize = 2;

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub seed: u64,
    pub base_time: OffsetDateTime,
    pub window: Duration,
    pub sessions: usize,
    pub users: usize,
    pub interactions: usize,
    pub calls: usize,
    pub spans: usize,
    pub calls_per_feature: Vec<(Feature, usize)>,
    pub failures: Vec<(FailureMode, usize)>,
    pub signals_planned: usize,
    pub unreported_reactions: usize,
    pub delivery: Delivery,
    pub truth: Option<PathBuf>,
    pub endpoint: String,
    pub elapsed: Duration,
}

impl Summary {
    /// Lines to show as warnings (the run still succeeded).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.delivery.no_api > 0 {
            out.push(format!("the collector has no signals API yet: {} signals not sent", self.delivery.no_api));
        }
        out
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let start = self.base_time - self.window;
        let fmt_time = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        writeln!(
            f,
            "simulated {} interactions in {} sessions of {} users, seed {}, over {} ({} → {})",
            self.interactions,
            self.sessions,
            self.users,
            self.seed,
            humantime::format_duration(self.window),
            fmt_time(start),
            fmt_time(self.base_time)
        )?;
        let per_feature: Vec<String> =
            self.calls_per_feature.iter().map(|(feat, n)| format!("{} {n} ({})", feat.id(), feat.convention())).collect();
        writeln!(f, "  {} LLM calls, {} spans: {}", self.calls, self.spans, per_feature.join(", "))?;
        let failing: usize = self.failures.iter().map(|(_, n)| n).sum();
        let modes: Vec<String> = self.failures.iter().filter(|(_, n)| *n > 0).map(|(m, n)| format!("{m} {n}")).collect();
        writeln!(
            f,
            "  failures: {failing} interactions ({:.1}%): {}",
            100.0 * failing as f64 / self.interactions.max(1) as f64,
            if modes.is_empty() { "none".to_string() } else { modes.join(", ") }
        )?;
        writeln!(
            f,
            "  signals: {} sent, {} not sent (no signals API), {} reactions left implicit in the traffic",
            self.delivery.sent, self.delivery.no_api, self.unreported_reactions
        )?;
        match &self.truth {
            Some(path) => writeln!(f, "  truth: {} ({} calls + summary line)", path.display(), self.calls)?,
            None => writeln!(f, "  truth: not written (use --truth FILE)")?,
        }
        let secs = self.elapsed.as_secs_f64();
        write!(f, "  sent to {} in {secs:.1}s ({:.0} interactions/s)", self.endpoint, self.interactions as f64 / secs.max(0.001))
    }
}

/// Plays the simulated application against the collector at `opts.endpoint`.
pub async fn run(opts: &SimulateOptions) -> Result<Summary, SimulateError> {
    opts.validate()?;
    let started = Instant::now();
    let base_time = opts.base_time.unwrap_or_else(OffsetDateTime::now_utc);
    let plan = plan::plan(opts, base_time);
    let spans = export_spans(&plan, opts).await?;

    let mut to_send: Vec<_> = plan.signals().filter(|s| s.sent).collect();
    to_send.sort_by_key(|s| s.timestamp);
    let delivery = signals::send(&opts.endpoint, opts.key.as_deref(), &to_send).await?;

    // Modes off by default are reported only when a run asks for them.
    let weights: Vec<(FailureMode, f64)> = opts.mix.modes().filter(|(m, w)| *w > 0.0 || !FailureMode::EXTRA.contains(m)).collect();
    if let Some(path) = &opts.truth {
        truth::write(path, &plan, opts.failure_rate, &weights)?;
    }
    Ok(Summary {
        seed: opts.seed,
        base_time,
        window: opts.window,
        sessions: plan.sessions,
        users: plan.users,
        interactions: plan.interactions.len(),
        calls: plan.calls(),
        spans,
        calls_per_feature: opts
            .scenario
            .features()
            .iter()
            .map(|f| (*f, plan.interactions.iter().filter(|i| i.feature == *f).map(|i| i.calls().count()).sum()))
            .collect(),
        failures: weights.iter().map(|(m, _)| (*m, plan.failures(*m))).collect(),
        signals_planned: to_send.len(),
        unreported_reactions: plan.signals().filter(|s| !s.sent).count(),
        delivery,
        truth: opts.truth.clone(),
        endpoint: opts.endpoint.clone(),
        elapsed: started.elapsed(),
    })
}

/// Emits every interaction and exports the spans, whole traces per request, with a few
/// requests in flight so the collector, not the simulator, sets the pace.
async fn export_spans(plan: &Plan, opts: &SimulateOptions) -> Result<usize, SimulateError> {
    let exporters = Arc::new(Exporters::new(&opts.endpoint, opts.key.as_deref(), CONCURRENT_EXPORTS, &opts.release)?);
    let emitter = Emitter::new(opts.seed);
    let mut free: Vec<usize> = (0..exporters.len()).rev().collect();
    let mut in_flight: JoinSet<(usize, Result<(), SimulateError>)> = JoinSet::new();
    let mut pending = Vec::new();
    let mut total = 0;
    let last = plan.interactions.len().saturating_sub(1);
    for (n, ix) in plan.interactions.iter().enumerate() {
        emitter.emit(ix);
        pending.extend(emitter.take());
        if pending.len() < SPANS_PER_REQUEST && n < last {
            continue;
        }
        let batch = std::mem::take(&mut pending);
        total += batch.len();
        let slot = match free.pop() {
            Some(slot) => slot,
            None => finished(&mut in_flight).await?,
        };
        let exporters = exporters.clone();
        in_flight.spawn(async move { (slot, exporters.export(slot, batch).await) });
    }
    while !in_flight.is_empty() {
        finished(&mut in_flight).await?;
    }
    Ok(total)
}

/// Waits for one export and returns its exporter slot, or its error.
async fn finished(in_flight: &mut JoinSet<(usize, Result<(), SimulateError>)>) -> Result<usize, SimulateError> {
    match in_flight.join_next().await {
        Some(Ok((slot, Ok(())))) => Ok(slot),
        Some(Ok((_, Err(e)))) => Err(e),
        Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        None => unreachable!("called with exports in flight"),
    }
}
