//! The weekly error-analysis review (`flywheel report`): what a team reads to decide, in
//! minutes, which failure patterns are one-off fixes and which are systemic.
//!
//! Contract: headline numbers of the period (calls, failure rate, each signal rate, cost)
//! against the previous period of the same length; the current patterns ranked by impact with
//! trend, triage state, share of users, models and features; for the top patterns their label,
//! terms, 2–3 diverse examples (redacted, cut to a few lines, with trace ids) and a suggested
//! decision from their spread; signal rates per feature; cost per pattern. Markdown renders on
//! a code forge (tables only, no raw HTML); HTML is one self-contained file (inline CSS and SVG).
//!
//! Patterns are shown in their current state (the latest analyzer run, triage applied): a report
//! of an old week shows that week's traffic numbers but today's patterns.

pub mod charts;
pub mod data;
pub mod html;
pub mod markdown;
pub mod period;

use std::fmt;
use std::path::{Path, PathBuf};

use flywheel_schemas::{Store, StoreError};
use time::OffsetDateTime;

pub use data::Review;
pub use period::Period;

use crate::export::{self, ExportError};

/// Top patterns that get a section with examples.
pub const DEFAULT_TOP: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Options(String),
    #[error("cannot write {path}: {source} ({})", crate::export::write_hint(source))]
    Write { path: PathBuf, source: std::io::Error },
}

impl From<ExportError> for ReportError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Store(s) => ReportError::Store(s),
            ExportError::Write { path, source } => ReportError::Write { path, source },
            other => ReportError::Options(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Html,
}

impl ReportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "md",
            ReportFormat::Html => "html",
        }
    }
}

/// Which period to review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeriodSpec {
    /// `2026-W47`.
    Week(String),
    /// `7d`, ending now.
    Since(String),
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// `None` picks the only project with data.
    pub project: Option<String>,
    pub period: PeriodSpec,
    pub format: ReportFormat,
    /// Default `./reports/flywheel-report-<period>.<md|html>`; `-` writes to standard output.
    pub out: Option<PathBuf>,
    pub top: usize,
    /// "Now" for `--since` (tests); the wall clock when `None`.
    pub now: Option<OffsetDateTime>,
}

impl ReportOptions {
    pub fn new(period: PeriodSpec, format: ReportFormat) -> ReportOptions {
        ReportOptions { project: None, period, format, out: None, top: DEFAULT_TOP, now: None }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReportSummary {
    pub project: String,
    pub period: String,
    /// `None` when written to standard output.
    pub path: Option<PathBuf>,
    pub calls: u64,
    pub failing_calls: u64,
    pub patterns: usize,
    /// The rendered document.
    pub document: String,
}

impl fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "report {} of project `{}`: {} calls, {} failing, {} patterns",
            self.period,
            self.project,
            int(self.calls),
            int(self.failing_calls),
            self.patterns
        )?;
        if let Some(p) = &self.path {
            write!(f, " → {}", p.display())?;
        }
        Ok(())
    }
}

/// Gathers, renders and writes the review; see the module documentation.
pub async fn write_report(store: &Store, opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    let now = opts.now.unwrap_or_else(OffsetDateTime::now_utc);
    let period = match &opts.period {
        PeriodSpec::Week(w) => Period::week(w)?,
        PeriodSpec::Since(s) => Period::since(s, now)?,
    };
    let project = export::resolve_project(store, opts.project.as_deref()).await?;
    let review = data::gather(store, &project, &period, opts.top.max(1)).await?;
    let document = match opts.format {
        ReportFormat::Markdown => markdown::render(&review),
        ReportFormat::Html => html::render(&review),
    };
    let path = match &opts.out {
        Some(p) if p.as_os_str() == "-" => None,
        Some(p) => Some(p.clone()),
        None => Some(Path::new("reports").join(format!("flywheel-report-{}.{}", period.slug, opts.format.extension()))),
    };
    if let Some(p) = &path {
        export::write_atomically(p, &document)?;
    }
    Ok(ReportSummary {
        project,
        period: period.label.clone(),
        path,
        calls: review.current.calls,
        failing_calls: review.current.failing_calls,
        patterns: review.patterns.len(),
        document,
    })
}

// Number formatting shared by both renderings.

/// `12,345`.
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12.3%`.
pub fn pct(x: f64) -> String {
    if x > 0.0 && x < 0.001 { "<0.1%".into() } else { format!("{:.1}%", x * 100.0) }
}

/// `$1.23`, with four decimals below a dollar (LLM calls cost fractions of a cent).
pub fn usd(x: f64) -> String {
    if x != 0.0 && x.abs() < 1.0 { format!("${x:.4}") } else { format!("${x:.2}") }
}

/// Relative change of a count or amount: `+12%`, `−5%`, `new`, `=`.
pub fn change(now: f64, before: f64) -> String {
    if before == 0.0 {
        return if now == 0.0 { "=".into() } else { "new".into() };
    }
    let d = (now - before) / before * 100.0;
    if d.abs() < 0.05 {
        "=".into()
    } else if d > 0.0 {
        format!("+{d:.1}%")
    } else {
        format!("−{:.1}%", -d)
    }
}

/// Change of a rate in percentage points: `+1.2 pts`.
pub fn change_pts(now: f64, before: f64) -> String {
    let d = (now - before) * 100.0;
    if d.abs() < 0.05 {
        "=".into()
    } else if d > 0.0 {
        format!("+{d:.1} pts")
    } else {
        format!("−{:.1} pts", -d)
    }
}

/// The headline signals a review acts on: the negative kinds seen in either period, at most
/// three, the highest current rate first (every kind stays in the per-feature table).
pub fn headline_signals(r: &Review) -> Vec<String> {
    let mut kinds: Vec<String> = r
        .signal_kinds
        .iter()
        .filter(|k| data::NEGATIVE_SIGNALS.contains(&k.as_str()))
        .filter(|k| {
            r.current.signal_rates.get(*k).copied().unwrap_or(0.0) > 0.0 || r.previous.signal_rates.get(*k).copied().unwrap_or(0.0) > 0.0
        })
        .cloned()
        .collect();
    kinds.sort_by(|a, b| {
        let rate = |k: &String| r.current.signal_rates.get(k).copied().unwrap_or(0.0);
        rate(b).total_cmp(&rate(a)).then_with(|| a.cmp(b))
    });
    kinds.truncate(3);
    kinds
}

/// A value of the previous period, or `no data` when it had no call (not a zero).
pub fn before(r: &Review, value: String) -> String {
    if r.previous.has_data() { value } else { "no data".into() }
}

/// A change against the previous period, or `—` when it had too few calls to compare with.
pub fn versus(r: &Review, change: String) -> String {
    if r.previous.comparable() { change } else { "—".into() }
}

/// The sentence under the headline when the previous period cannot be compared with, if so.
pub fn baseline_note(r: &Review) -> Option<String> {
    let n = r.previous.calls;
    if n == 0 {
        Some("The previous period has no calls: nothing to compare with (not a 0 % failure rate).".into())
    } else if !r.previous.comparable() {
        Some(format!(
            "The previous period has only {n} call{}: too few to compare with (changes need at least {}).",
            if n == 1 { "" } else { "s" },
            data::MIN_BASELINE_CALLS
        ))
    } else {
        None
    }
}

/// Patterns that came back after a fix and that the team has not decided on since: the
/// review's first item.
pub fn regressions(r: &Review) -> Vec<&data::PatternView> {
    r.patterns.iter().filter(|v| v.pattern.is_regressed() && v.pattern.size > 0).collect()
}

/// Trend with an arrow.
pub fn trend(t: &str) -> String {
    match t {
        "new" => "★ new".into(),
        "growing" => "▲ growing".into(),
        "shrinking" => "▼ shrinking".into(),
        "stable" => "● stable".into(),
        "resolved" => "✓ resolved".into(),
        "regressed" => "⟲ regressed".into(),
        other => other.to_string(),
    }
}

/// `support (12), coding (3)`.
pub fn counts(list: &[(String, u64)]) -> String {
    if list.is_empty() {
        return "—".into();
    }
    list.iter().map(|(k, n)| format!("{} ({n})", if k.is_empty() { "(none)" } else { k })).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(int(12), "12");
        assert_eq!(pct(0.1234), "12.3%");
        assert_eq!(usd(1.5), "$1.50");
        assert_eq!(usd(0.0012), "$0.0012");
        assert_eq!(usd(0.0225), "$0.0225");
        assert_eq!(change(110.0, 100.0), "+10.0%");
        assert_eq!(change(90.0, 100.0), "−10.0%");
        assert_eq!(change(5.0, 0.0), "new");
        assert_eq!(change_pts(0.12, 0.10), "+2.0 pts");
    }
}
