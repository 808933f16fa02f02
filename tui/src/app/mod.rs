//! The application state machine: one [`App`], updated by keys, mouse events and data
//! responses, rendered by `views`. Pure: no I/O happens here. Updates return [`Effect`]s
//! (queries to run, text to copy) that the event loop carries out, so every key can be tested
//! without a terminal or a database. The state and its types are here; what changes it is split
//! by concern: [`keys`], [`navigation`], [`requests`].

mod keys;
mod navigation;
mod requests;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use time::OffsetDateTime;

use crate::model::*;
use crate::query::{Payload, Request, Response};

/// The screens, in the order one drills down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Patterns,
    Pattern,
    Trace,
    Session,
    Search,
}

impl View {
    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Patterns => "patterns",
            View::Pattern => "pattern",
            View::Trace => "trace",
            View::Session => "session",
            View::Search => "search",
        }
    }
}

/// Which half of a two-pane view has the keys (`tab` switches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pane {
    /// The list: patterns' members, the span tree, a session's turns.
    #[default]
    List,
    /// The text beside or below it, scrolled with the same keys.
    Detail,
}

/// Something the event loop must do for the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Run {
        id: u64,
        request: Request,
    },
    /// Put this text on the clipboard (OSC 52).
    Copy(String),
}

/// A line being typed at the bottom of the screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// `/`: filters the patterns as you type.
    Filter(String),
    /// `:`: a trace id, session id, user id or text.
    Search(String),
    /// `e`: which format to export the pattern's eval cases in, and whether again.
    Export { pattern_id: String, again: bool },
}

/// The formats `e` offers, by key: what `flywheel export evals --format` offers.
pub const EXPORT_FORMATS: [(char, &str); 4] = [('j', "jsonl"), ('o', "openai-evals"), ('p', "promptfoo"), ('c', "csv")];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// Which slot a response fills; only the latest request of a slot is applied, so a slow
/// answer for a screen already left never overwrites a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Overview,
    Readiness,
    Patterns,
    Pattern,
    Trace,
    Session,
    Search,
    Action,
}

/// A selection and a scroll offset for a list view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub selected: usize,
    pub scroll: u16,
    pub pane: Pane,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub project: Option<String>,
    pub window: Window,
    pub impact: Impact,
    /// Who triage decisions are recorded as.
    pub user: String,
    /// A trace to open once the patterns are loaded (`flywheel tui --trace ID`, the command
    /// the report prints next to every example).
    pub trace: Option<String>,
    /// A pattern to open once the patterns are loaded (`flywheel tui --pattern ID`, the
    /// command `flywheel watch` alerts carry).
    pub pattern: Option<String>,
}

pub struct App {
    pub settings: Settings,
    /// Navigation history; the last entry is on screen. Never empty.
    pub stack: Vec<View>,
    pub overview: Option<Overview>,
    /// Each feature's agency readiness, shown under the overview's charts.
    pub readiness: Vec<ReadinessLine>,
    pub patterns: Option<Vec<PatternItem>>,
    pub pattern: Option<PatternDetail>,
    pub trace: Option<TraceView>,
    pub session: Option<SessionView>,
    pub search: Option<SearchResults>,
    pub filter: String,
    pub sort: SortKey,
    pub reverse: bool,
    pub cursors: std::collections::BTreeMap<&'static str, Cursor>,
    pub prompt: Option<Prompt>,
    pub help: bool,
    pub status: Status,
    pub quit: bool,
    /// Requests in flight: id → (slot, what the status line says meanwhile).
    pending: std::collections::BTreeMap<u64, (Slot, String)>,
    latest: std::collections::BTreeMap<Slot, u64>,
    /// What the latest request of a slot is about (a pattern or trace id), so that opening what
    /// was prefetched (or is being fetched) asks for nothing more.
    keys: std::collections::BTreeMap<Slot, String>,
    /// Ticks until the selection under the cursor is prefetched (set when the cursor moves, so
    /// that scrolling through a list does not fire a query per row).
    prefetch_in: Option<u8>,
    next_id: u64,
    /// Advances on every tick while something loads (the spinner).
    pub tick: usize,
    /// Rows of the list area at the last render, for page keys.
    pub page: usize,
    /// How far the detail pane on screen can scroll, as the last render measured it.
    pub max_scroll: u16,
    /// Where the selected call's answer starts in the trace's detail pane (last render).
    pub anchor: Option<u16>,
    /// `f` was pressed: scroll to the answer once the failing call is rendered.
    pub jump_to_answer: bool,
    /// `a` in a trace: every attribute of the selected span.
    pub show_attributes: bool,
    /// Ticks the status message has been shown: it gives the line back to the key hints.
    status_age: u16,
    /// Something changed on a tick (a status message expired): draw again.
    pub redraw: bool,
    /// The last triage decision and the state before it, for `u`.
    last_triage: Option<(String, String)>,
    /// The call a session was opened from (trace id, time), to select its turn.
    session_from: Option<(String, OffsetDateTime)>,
}

/// Ticks (50 ms) a message stays on the status line: 5 s, errors 12 s.
const STATUS_TICKS: u16 = 100;
const ERROR_TICKS: u16 = 240;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

impl App {
    pub fn new(settings: Settings) -> App {
        App {
            settings,
            stack: vec![View::Patterns],
            overview: None,
            readiness: vec![],
            patterns: None,
            pattern: None,
            trace: None,
            session: None,
            search: None,
            filter: String::new(),
            sort: SortKey::Impact,
            reverse: false,
            cursors: Default::default(),
            prompt: None,
            help: false,
            status: Status::default(),
            quit: false,
            pending: Default::default(),
            latest: Default::default(),
            keys: Default::default(),
            prefetch_in: None,
            next_id: 1,
            tick: 0,
            page: 10,
            max_scroll: u16::MAX,
            anchor: None,
            jump_to_answer: false,
            show_attributes: false,
            status_age: 0,
            redraw: false,
            last_triage: None,
            session_from: None,
        }
    }

    /// The effects of opening the UI: load the patterns.
    pub fn start(&mut self) -> Vec<Effect> {
        vec![self.load_patterns()]
    }

    pub fn view(&self) -> View {
        *self.stack.last().expect("the stack is never empty")
    }

    pub fn project(&self) -> &str {
        self.settings.project.as_deref().unwrap_or("")
    }

    pub fn loading(&self) -> Option<String> {
        self.pending.values().next().map(|(_, what)| format!("{} {what}", SPINNER[self.tick % SPINNER.len()]))
    }

    pub fn is_loading(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn cursor(&self, view: View) -> Cursor {
        self.cursors.get(view.title()).copied().unwrap_or_default()
    }

    fn cursor_mut(&mut self, view: View) -> &mut Cursor {
        self.cursors.entry(view.title()).or_default()
    }

    fn info(&mut self, text: impl Into<String>) {
        self.status = Status { text: text.into(), error: false };
        self.status_age = 0;
    }

    fn error(&mut self, text: impl Into<String>) {
        self.status = Status { text: text.into(), error: true };
        self.status_age = 0;
    }
}

/// The first 8 characters of an id: enough to tell ids apart on screen.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn code(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn loaded() -> App {
        let mut app = App::new(fixtures::settings());
        let effects = app.start();
        let Effect::Run { id, .. } = effects[0] else { panic!() };
        let prefetch =
            app.on_response(Response { id, result: Ok(Payload::Patterns { project: "shop".into(), items: fixtures::patterns() }) });
        let (id, request) = run_id(&prefetch);
        assert!(matches!(request, Request::Overview { .. }), "the overview is prefetched: {request:?}");
        let readiness = app.on_response(Response { id, result: Ok(Payload::Overview(fixtures::overview())) });
        let (id, request) = run_id(&readiness);
        assert!(matches!(request, Request::Readiness { .. }), "then the features' readiness: {request:?}");
        app.on_response(Response { id, result: Ok(Payload::Readiness(vec![])) });
        assert!(!app.is_loading());
        app
    }

    fn run_id(effects: &[Effect]) -> (u64, Request) {
        match &effects[0] {
            Effect::Run { id, request } => (*id, request.clone()),
            other => panic!("expected a query, got {other:?}"),
        }
    }

    #[test]
    fn opened_on_a_trace_from_the_report() {
        let mut app = App::new(Settings { trace: Some(fixtures::TRACE.to_ascii_uppercase()), ..fixtures::settings() });
        let Effect::Run { id, .. } = app.start()[0] else { panic!() };
        let effects =
            app.on_response(Response { id, result: Ok(Payload::Patterns { project: "shop".into(), items: fixtures::patterns() }) });
        let (_, req) = run_id(&effects);
        assert!(
            matches!(req, Request::Trace { ref trace_id, around: None, .. } if trace_id == fixtures::TRACE),
            "the trace is loaded without a time hint: {req:?}"
        );
        assert_eq!(app.stack, vec![View::Patterns, View::Trace], "esc goes back to the patterns");
        assert!(app.settings.trace.is_none(), "only once");
    }

    #[test]
    fn opened_on_a_pattern_from_an_alert() {
        let id = fixtures::patterns()[1].id().to_string();
        let mut app = App::new(Settings { pattern: Some(id.clone()), ..fixtures::settings() });
        let Effect::Run { id: rid, .. } = app.start()[0] else { panic!() };
        let effects =
            app.on_response(Response { id: rid, result: Ok(Payload::Patterns { project: "shop".into(), items: fixtures::patterns() }) });
        let (_, req) = run_id(&effects);
        assert!(matches!(req, Request::Pattern { ref item, .. } if item.id() == id), "{req:?}");
        assert_eq!(app.stack, vec![View::Patterns, View::Pattern], "esc goes back to the list");
        assert!(app.settings.pattern.is_none(), "only once");
        // An id that is not there says so instead of opening another pattern.
        let mut app = App::new(Settings { pattern: Some("pat_gone".into()), ..fixtures::settings() });
        let Effect::Run { id: rid, .. } = app.start()[0] else { panic!() };
        app.on_response(Response { id: rid, result: Ok(Payload::Patterns { project: "shop".into(), items: fixtures::patterns() }) });
        assert_eq!(app.stack, vec![View::Patterns]);
        assert!(app.status.text.contains("no pattern pat_gone"), "{}", app.status.text);
    }

    #[test]
    fn the_overview_asks_for_readiness_and_a_refresh_asks_again() {
        let mut app = App::new(fixtures::settings());
        let Effect::Run { id, .. } = app.start()[0] else { panic!() };
        let prefetch =
            app.on_response(Response { id, result: Ok(Payload::Patterns { project: "shop".into(), items: fixtures::patterns() }) });
        let (id, _) = run_id(&prefetch);
        let overview = || Payload::Overview(fixtures::overview());
        let effects = app.on_response(Response { id, result: Ok(overview()) });
        let (rid, req) = run_id(&effects);
        assert!(matches!(req, Request::Readiness { ref project } if project == &fixtures::overview().project), "{req:?}");
        let line = ReadinessLine { feature: "support".into(), level: "act".into(), reason: "within every `act` limit".into() };
        app.on_response(Response { id: rid, result: Ok(Payload::Readiness(vec![line.clone()])) });
        assert_eq!(app.readiness, vec![line]);
        // `r` re-reads everything on screen, readiness included.
        app.on_key(key('1'));
        let (id, _) = run_id(&app.on_key(key('r')));
        let (_, req) = run_id(&app.on_response(Response { id, result: Ok(overview()) }));
        assert!(matches!(req, Request::Readiness { .. }), "{req:?}");
    }

    #[test]
    fn drill_down_and_back() {
        let mut app = loaded();
        app.on_key(key('j'));
        assert_eq!(app.cursor(View::Patterns).selected, 1);
        let (id, req) = run_id(&app.on_key(code(KeyCode::Enter)));
        let Request::Pattern { item, .. } = req else { panic!("{req:?}") };
        assert_eq!(app.view(), View::Pattern);
        app.on_response(Response { id, result: Ok(Payload::Pattern(Box::new(fixtures::pattern_detail(*item)))) });
        let (_, req) = run_id(&app.on_key(code(KeyCode::Enter)));
        assert!(matches!(req, Request::Trace { ref trace_id, .. } if trace_id == fixtures::TRACE), "{req:?}");
        assert_eq!(app.view(), View::Trace);
        app.on_key(code(KeyCode::Esc));
        assert_eq!(app.view(), View::Pattern);
        app.on_key(code(KeyCode::Esc));
        app.on_key(code(KeyCode::Esc));
        assert_eq!(app.stack, vec![View::Patterns], "esc stops at the root");
    }

    #[test]
    fn filter_sort_and_triage() {
        let mut app = loaded();
        app.on_key(key('/'));
        for c in "refund".chars() {
            app.on_key(key(c));
        }
        app.on_key(code(KeyCode::Enter));
        assert_eq!(app.visible_patterns().len(), 1);
        let (id, req) = run_id(&app.on_key(key('a')));
        assert!(matches!(req, Request::Triage { ref status, .. } if status == "acknowledged"));
        let pid = app.visible_patterns()[0].id().to_string();
        let follow =
            app.on_response(Response { id, result: Ok(Payload::Triaged { pattern_id: pid.clone(), status: "acknowledged".into() }) });
        assert!(matches!(run_id(&follow).1, Request::Patterns { .. }), "triage re-reads the patterns");
        assert_eq!(app.visible_patterns()[0].row.status, "acknowledged");
        assert!(app.status.text.contains("acknowledged") && app.status.text.contains("u: undo"), "{}", app.status.text);
        // `u` puts it back as it was, once.
        let (id, req) = run_id(&app.on_key(key('u')));
        assert!(matches!(req, Request::Triage { ref status, ref pattern_id, .. } if status == "new" && *pattern_id == pid), "{req:?}");
        app.on_response(Response { id, result: Ok(Payload::Triaged { pattern_id: pid.clone(), status: "new".into() }) });
        assert_eq!(app.visible_patterns()[0].row.status, "new");
        assert!(app.on_key(key('u')).is_empty() && app.status.text.contains("nothing to undo"));
        // The message gives the line back to the key hints after a while.
        for _ in 0..=STATUS_TICKS {
            app.on_tick();
        }
        assert!(app.status.text.is_empty() && app.redraw);
        // `/` starts a fresh filter.
        app.on_key(key('/'));
        assert!(matches!(app.prompt, Some(Prompt::Filter(ref t)) if t.is_empty()));
        app.on_key(code(KeyCode::Esc));
        app.on_key(code(KeyCode::Esc));
        assert_eq!(app.visible_patterns().len(), fixtures::patterns().len());
        app.on_key(key('o'));
        assert_eq!(app.sort, SortKey::Size);
    }

    #[test]
    fn a_session_opens_on_the_call_it_was_opened_from() {
        let mut app = App::new(fixtures::settings());
        app.trace = Some(fixtures::trace_view());
        app.stack = vec![View::Patterns, View::Trace];
        app.on_key(key('G'));
        let session = fixtures::session_view();
        // Open it from the trace of the session's second turn.
        let second = session.turns[1].calls[0].trace_id.clone();
        let mut trace = fixtures::trace_view();
        trace.trace_id = second.clone();
        for s in &mut trace.spans {
            if let Some(c) = s.call.as_mut() {
                c.trace_id = second.clone();
                c.start = session.turns[1].start();
            }
        }
        app.trace = Some(trace);
        let (id, req) = run_id(&app.on_key(key('s')));
        assert!(matches!(req, Request::Session { .. }), "{req:?}");
        app.on_response(Response { id, result: Ok(Payload::Session(Box::new(session))) });
        assert_eq!(app.view(), View::Session);
        assert_eq!(app.cursor(View::Session).selected, 1, "the turn of the call we came from");
    }

    #[test]
    fn resting_on_a_row_prefetches_it_and_opening_it_then_asks_nothing_more() {
        let mut app = loaded();
        app.on_key(key('j'));
        app.on_key(key('j'));
        let mut effects = vec![];
        for _ in 0..=App::PREFETCH_TICKS {
            assert!(effects.is_empty(), "no query while the cursor moves");
            effects = app.on_tick();
        }
        let (id, req) = run_id(&effects);
        let Request::Pattern { item, .. } = req else { panic!("{req:?}") };
        app.on_response(Response { id, result: Ok(Payload::Pattern(Box::new(fixtures::pattern_detail(*item.clone())))) });
        assert!(app.on_key(code(KeyCode::Enter)).is_empty(), "already there");
        assert_eq!(app.view(), View::Pattern);
        assert_eq!(app.pattern.as_ref().unwrap().item.id(), item.id());
        assert_eq!(app.pattern.as_ref().unwrap().members.len(), 5);
        // In the pattern, the first member's trace is prefetched the same way.
        let effects: Vec<Effect> = (0..=App::PREFETCH_TICKS).flat_map(|_| app.on_tick()).collect();
        assert!(matches!(run_id(&effects).1, Request::Trace { ref trace_id, .. } if trace_id == fixtures::TRACE));
        assert!(app.on_key(code(KeyCode::Enter)).is_empty(), "the trace is being fetched already");
        assert_eq!(app.view(), View::Trace);
    }

    #[test]
    fn stale_responses_are_dropped_and_errors_reach_the_status_line() {
        let mut app = loaded();
        let (first, _) = run_id(&app.on_key(key('r')));
        let (second, _) = run_id(&app.on_key(key('r')));
        app.on_response(Response { id: first, result: Ok(Payload::Patterns { project: "shop".into(), items: vec![] }) });
        assert_eq!(app.patterns.as_ref().unwrap().len(), fixtures::patterns().len(), "stale answer ignored");
        app.on_response(Response { id: second, result: Err("connection refused".into()) });
        assert!(app.status.error && app.status.text.contains("connection refused"));
        assert!(!app.is_loading());
    }

    #[test]
    fn export_copy_help_and_quit() {
        let mut app = loaded();
        assert!(app.on_key(key('e')).is_empty(), "e asks which format first");
        assert!(matches!(app.prompt, Some(Prompt::Export { again: false, .. })));
        app.on_key(key('!'));
        let (id, req) = run_id(&app.on_key(key('p')));
        assert!(matches!(req, Request::Export { ref format, again: true, .. } if format == "promptfoo"), "{req:?}");
        assert!(app.prompt.is_none());
        app.on_response(Response { id, result: Err("cannot write evals/promptfoo.yaml: permission denied".into()) });
        assert!(app.status.text.contains("permission denied"), "an export that failed says why: {}", app.status.text);
        app.on_key(key('?'));
        assert!(app.help);
        app.on_key(key('q'));
        assert!(!app.help && !app.quit, "q closes help first");
        app.on_key(key(':'));
        for c in fixtures::TRACE.chars() {
            app.on_key(key(c));
        }
        let (_, req) = run_id(&app.on_key(code(KeyCode::Enter)));
        assert!(matches!(req, Request::Search { .. }));
        app.on_key(key('q'));
        assert!(app.quit);
    }
}
