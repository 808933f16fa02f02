//! flywheel's terminal UI (ratatui + crossterm): overview → patterns → pattern → trace →
//! session, with triage and eval export from the keyboard.
//!
//! Contract:
//! * reads ClickHouse only through `flywheel-schemas` (the `Store` and its shared queries);
//!   triage decisions are written with `queries::set_triage`; eval export goes through the
//!   [`Exporter`] the caller provides, so this crate depends on no other flywheel crate;
//! * queries run as tasks off the UI thread ([`query::Worker`]); the UI shows a spinner and keeps
//!   answering keys meanwhile; a failed query becomes a line in the status bar, never a crash;
//! * the terminal is restored on every exit, panics included ([`terminal`]), and nothing is
//!   printed to it while the UI runs (logs go to a file);
//! * state changes are pure ([`app`]) and rendering is a pure function of the state
//!   ([`views`]), which is what the `TestBackend` tests and `flywheel bench tui` rely on.
//!
//! Non-goals: no analysis (that is the analyzer's), no writes other than triage decisions.

pub mod app;
pub mod bench;
pub mod model;
pub mod query;
pub mod terminal;
pub mod theme;
pub mod views;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use crossterm::event::{self, Event, KeyEventKind};
use flywheel_schemas::Store;

use crate::app::{App, Effect, Settings};
use crate::model::{Impact, Window};
use crate::query::Worker;
use crate::theme::Theme;

/// Exports a pattern's eval cases (the same code path as `flywheel export evals`). Called from a
/// blocking background thread inside the caller's tokio runtime.
pub trait Exporter: Send + Sync {
    /// A one-line human message such as `12 eval cases → /path/evals.jsonl`, or why not.
    /// `format` is one of the CLI's (`jsonl`, `openai-evals`, `promptfoo`, `csv`); `again`
    /// exports cases already exported in it too.
    fn export_pattern(&self, project: &str, pattern_id: &str, format: &str, again: bool) -> Result<String, String>;

    /// Each feature's agency readiness (`flywheel readiness`), for the overview: the analyzer
    /// decides it, and the TUI reads only storage. None at hand: nothing shown.
    fn readiness(&self, _project: &str) -> Result<Vec<model::ReadinessLine>, String> {
        Ok(vec![])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TuiOptions {
    /// `None`: the project with the most patterns.
    pub project: Option<String>,
    pub window: Window,
    pub impact: Impact,
    /// No colours (also when `NO_COLOR` is set): bold, underline and reverse video only.
    pub no_color: bool,
    /// Who triage decisions are recorded as (`$USER` by default).
    pub user: String,
    /// Open this trace first (`flywheel tui --trace ID`).
    pub trace: Option<String>,
    /// Open this pattern first (`flywheel tui --pattern ID`, the command alerts carry).
    pub pattern: Option<String>,
}

impl Default for TuiOptions {
    fn default() -> TuiOptions {
        TuiOptions {
            project: None,
            window: Window::Week,
            impact: Impact::Users,
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            user: std::env::var("USER").unwrap_or_else(|_| "tui".into()),
            trace: None,
            pattern: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error("cannot start the query runtime: {0}")]
    Runtime(String),
}

/// Opens the UI on the current terminal and returns when the user quits.
///
/// Queries run on the ambient tokio runtime when there is one (the `Store`'s connections belong
/// to it), else on a runtime of its own.
pub fn run(store: Store, opts: TuiOptions, exporter: Arc<dyn Exporter>) -> Result<(), TuiError> {
    let own_runtime = match tokio::runtime::Handle::try_current() {
        Ok(_) => None,
        Err(_) => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| TuiError::Runtime(e.to_string()))?,
        ),
    };
    let handle = match &own_runtime {
        Some(rt) => rt.handle().clone(),
        None => tokio::runtime::Handle::current(),
    };
    let (tx, rx) = mpsc::channel();
    let worker = Worker::new(handle, store, exporter, tx);
    let theme = Theme::new(!opts.no_color);
    let mut app = App::new(Settings {
        project: opts.project,
        window: opts.window,
        impact: opts.impact,
        user: opts.user,
        trace: opts.trace,
        pattern: opts.pattern,
    });
    let mut session = terminal::Session::enter()?;
    let effects = app.start();
    perform(&worker, &mut app, effects);
    let result = event_loop(&mut session, &worker, &mut app, &rx, &theme);
    drop(session);
    if let Some(rt) = own_runtime {
        // Pending queries are abandoned, not awaited: quitting must be immediate.
        rt.shutdown_background();
    }
    result
}

fn event_loop(
    session: &mut terminal::Session,
    worker: &Worker,
    app: &mut App,
    rx: &mpsc::Receiver<query::Response>,
    theme: &Theme,
) -> Result<(), TuiError> {
    let mut dirty = true;
    while !app.quit {
        if dirty {
            let size = session.terminal.size()?;
            // Rows of a list, for page keys: the screen less header, status and borders.
            app.page = size.height.saturating_sub(8) as usize;
            let mut measured = views::Measured::default();
            session.terminal.draw(|f| measured = views::render(f, app, theme))?;
            // A jump to the answer is known only once the pane is measured: draw again.
            dirty = app.rendered(measured);
        }
        // Short polls keep the spinner moving and answers applied promptly.
        if event::poll(Duration::from_millis(50))? {
            let effects = match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => app.on_key(k),
                Event::Mouse(m) => app.on_mouse(m),
                Event::Resize(..) => vec![],
                _ => continue,
            };
            perform(worker, app, effects);
            dirty = true;
        }
        while let Ok(response) = rx.try_recv() {
            let effects = app.on_response(response);
            perform(worker, app, effects);
            dirty = true;
        }
        let loading = app.is_loading();
        let effects = app.on_tick();
        if loading || !effects.is_empty() || std::mem::take(&mut app.redraw) {
            perform(worker, app, effects);
            dirty = true;
        }
    }
    Ok(())
}

fn perform(worker: &Worker, app: &mut App, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::Run { id, request } => worker.submit(id, request),
            Effect::Copy(text) => {
                if let Err(e) = terminal::copy_to_clipboard(&text) {
                    app.status = app::Status { text: format!("error: cannot copy: {e}"), error: true };
                }
            }
        }
    }
}
