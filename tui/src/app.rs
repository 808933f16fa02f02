//! The application state machine: one [`App`], updated by keys, mouse events and data
//! responses, rendered by `views`. Pure: no I/O happens here. Updates return [`Effect`]s
//! (queries to run, text to copy) that the event loop carries out, so every key can be tested
//! without a terminal or a database.

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
}

pub struct App {
    pub settings: Settings,
    /// Navigation history; the last entry is on screen. Never empty.
    pub stack: Vec<View>,
    pub overview: Option<Overview>,
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

    fn run(&mut self, slot: Slot, what: &str, request: Request) -> Effect {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, (slot, what.to_string()));
        if slot != Slot::Action {
            // Drop the older request's spinner entry: its answer will be ignored anyway.
            if let Some(old) = self.latest.insert(slot, id) {
                self.pending.remove(&old);
            }
        }
        Effect::Run { id, request }
    }

    fn load_patterns(&mut self) -> Effect {
        let project = self.settings.project.clone();
        self.run(Slot::Patterns, "loading patterns", Request::Patterns { project })
    }

    fn load_overview(&mut self) -> Effect {
        let (project, window) = (self.settings.project.clone(), self.settings.window);
        self.run(Slot::Overview, "loading overview", Request::Overview { project, window })
    }

    /// The patterns the table shows: filtered, then sorted.
    pub fn visible_patterns(&self) -> Vec<&PatternItem> {
        let Some(items) = &self.patterns else { return vec![] };
        let mut v: Vec<&PatternItem> = items.iter().filter(|p| matches_filter(p, &self.filter)).collect();
        sort_patterns(&mut v, self.sort, self.settings.impact, self.reverse);
        v
    }

    fn selected_pattern(&self) -> Option<PatternItem> {
        match self.view() {
            View::Patterns => self.visible_patterns().get(self.cursor(View::Patterns).selected).map(|p| (*p).clone()),
            View::Pattern => self.pattern.as_ref().map(|d| d.item.clone()),
            View::Overview => self.overview.as_ref().and_then(|o| o.top_patterns.get(self.cursor(View::Overview).selected)).cloned(),
            _ => None,
        }
    }

    /// The call under the cursor, as (trace id, session id, time), wherever one is selected.
    fn selected_call(&self) -> Option<(String, String, OffsetDateTime)> {
        match self.view() {
            View::Pattern => {
                let d = self.pattern.as_ref()?;
                let m = d.members.get(self.cursor(View::Pattern).selected)?;
                Some((m.trace_id.clone(), m.session_id.clone(), m.call_time))
            }
            View::Trace => {
                let t = self.trace.as_ref()?;
                let span = t.spans.get(self.cursor(View::Trace).selected);
                let call = span.and_then(|s| s.call.as_ref());
                let session = call.map(|c| c.session_id.clone()).or_else(|| t.session_id().map(String::from)).unwrap_or_default();
                Some((t.trace_id.clone(), session, span.map(|s| s.start).unwrap_or(t.start)))
            }
            View::Session => {
                let s = self.session.as_ref()?;
                let c = s.turns.get(self.cursor(View::Session).selected)?;
                Some((c.trace_id.clone(), c.session_id.clone(), c.start))
            }
            View::Search => {
                let r = self.search.as_ref()?;
                let h = r.hits.get(self.cursor(View::Search).selected)?;
                Some((h.trace_id.clone(), h.session_id.clone(), h.start))
            }
            _ => None,
        }
    }

    fn list_len(&self, view: View) -> usize {
        match view {
            View::Overview => self.overview.as_ref().map_or(0, |o| o.top_patterns.len()),
            View::Patterns => self.visible_patterns().len(),
            View::Pattern => self.pattern.as_ref().map_or(0, |d| d.members.len()),
            View::Trace => self.trace.as_ref().map_or(0, |t| t.spans.len()),
            View::Session => self.session.as_ref().map_or(0, |s| s.turns.len()),
            View::Search => self.search.as_ref().map_or(0, |r| r.hits.len()),
        }
    }

    fn push(&mut self, view: View) {
        if self.view() != view {
            self.stack.push(view);
        }
        let c = self.cursor_mut(view);
        c.scroll = 0;
        self.prefetch_in = Some(Self::PREFETCH_TICKS);
    }

    fn go_to_root(&mut self, view: View) -> Vec<Effect> {
        self.stack = vec![view];
        match view {
            View::Overview if self.overview.is_none() => vec![self.load_overview()],
            View::Patterns if self.patterns.is_none() => vec![self.load_patterns()],
            _ => vec![],
        }
    }

    fn info(&mut self, text: impl Into<String>) {
        self.status = Status { text: text.into(), error: false };
        self.status_age = 0;
    }

    fn error(&mut self, text: impl Into<String>) {
        self.status = Status { text: text.into(), error: true };
        self.status_age = 0;
    }

    /// Called about every 50 ms: advances the spinner, and prefetches what the cursor rests on.
    pub fn on_tick(&mut self) -> Vec<Effect> {
        if self.is_loading() {
            self.tick = self.tick.wrapping_add(1);
        }
        // A message is read, then the key hints come back.
        if !self.status.text.is_empty() {
            self.status_age = self.status_age.saturating_add(1);
            if self.status_age > if self.status.error { ERROR_TICKS } else { STATUS_TICKS } {
                self.status = Status::default();
                self.status_age = 0;
                self.redraw = true;
            }
        }
        match self.prefetch_in {
            Some(0) => {
                self.prefetch_in = None;
                self.prefetch()
            }
            Some(n) => {
                self.prefetch_in = Some(n - 1);
                vec![]
            }
            None => vec![],
        }
    }

    /// Ticks the cursor must rest before its selection is prefetched (~150 ms).
    const PREFETCH_TICKS: u8 = 3;

    fn prefetch(&mut self) -> Vec<Effect> {
        let project = self.project().to_string();
        match self.view() {
            View::Patterns | View::Overview => match self.selected_pattern() {
                Some(item) => {
                    let id = item.id().to_string();
                    self.run_once(Slot::Pattern, &id, "prefetching pattern", Request::Pattern { project, item: Box::new(item) })
                }
                None => vec![],
            },
            View::Pattern => match self.selected_call() {
                Some((trace_id, _, at)) => {
                    let key = trace_id.clone();
                    self.run_once(Slot::Trace, &key, "prefetching trace", Request::Trace { project, trace_id, around: Some(at) })
                }
                None => vec![],
            },
            _ => vec![],
        }
    }

    /// Runs `request` unless the slot already holds, or is fetching, the same `key`.
    fn run_once(&mut self, slot: Slot, key: &str, what: &str, request: Request) -> Vec<Effect> {
        if self.keys.get(&slot).is_some_and(|k| k == key) {
            return vec![];
        }
        self.keys.insert(slot, key.to_string());
        vec![self.run(slot, what, request)]
    }

    /// What the last render measured: the detail pane scrolls at most `max` lines (a resize or
    /// new content that shortens it pulls the scroll back, so the pane is never blank).
    /// Returns whether the screen must be drawn again (a jump moved the scroll).
    pub fn rendered(&mut self, m: crate::views::Measured) -> bool {
        self.max_scroll = m.max_scroll;
        self.anchor = m.anchor;
        let view = self.view();
        let jump = std::mem::take(&mut self.jump_to_answer).then_some(m.anchor).flatten();
        let c = self.cursor_mut(view);
        let before = c.scroll;
        if let Some(at) = jump {
            c.pane = Pane::Detail;
            c.scroll = at;
        }
        c.scroll = c.scroll.min(m.max_scroll);
        jump.is_some() && c.scroll != before
    }

    /// `f` in a trace: select the failing call (else the first call) and show its answer.
    fn jump_to_failing(&mut self) {
        let Some(t) = &self.trace else { return };
        let focus = t.focus_index();
        let failing = t.spans.get(focus).and_then(|s| s.call.as_ref()).is_some_and(|c| !c.reasons.is_empty() || c.status == "error");
        let c = self.cursor_mut(View::Trace);
        c.selected = focus;
        c.pane = Pane::Detail;
        c.scroll = 0;
        self.jump_to_answer = true;
        self.info(if failing { "the failing call's answer" } else { "no failing call in this trace: its first call" });
    }

    pub fn on_mouse(&mut self, ev: MouseEvent) -> Vec<Effect> {
        match ev.kind {
            MouseEventKind::ScrollDown => self.move_by(3),
            MouseEventKind::ScrollUp => self.move_by(-3),
            _ => {}
        }
        vec![]
    }

    /// Moves the selection (or the detail pane's scroll) by `delta` rows, clamped.
    fn move_by(&mut self, delta: isize) {
        self.prefetch_in = Some(Self::PREFETCH_TICKS);
        let view = self.view();
        let len = self.list_len(view);
        let max = self.max_scroll;
        let c = self.cursor_mut(view);
        if c.pane == Pane::Detail || len == 0 {
            c.scroll = (c.scroll as isize + delta).clamp(0, max as isize) as u16;
            return;
        }
        let before = c.selected;
        c.selected = (c.selected as isize + delta).clamp(0, len as isize - 1) as usize;
        if c.selected != before {
            c.scroll = 0;
        }
    }

    fn move_to(&mut self, end: bool) {
        self.prefetch_in = Some(Self::PREFETCH_TICKS);
        let view = self.view();
        let len = self.list_len(view);
        let max = self.max_scroll;
        let c = self.cursor_mut(view);
        if c.pane == Pane::Detail {
            c.scroll = if end { max } else { 0 };
        } else {
            c.selected = if end { len.saturating_sub(1) } else { 0 };
            c.scroll = 0;
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && matches!(key.code, KeyCode::Char('c')) {
            self.quit = true;
            return vec![];
        }
        if self.prompt.is_some() {
            return self.on_prompt_key(key);
        }
        if self.help {
            if matches!(key.code, KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter) {
                self.help = false;
            }
            return vec![];
        }
        let view = self.view();
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('j') | KeyCode::Down => self.move_by(1),
            KeyCode::Char('k') | KeyCode::Up => self.move_by(-1),
            KeyCode::PageDown | KeyCode::Char(' ') => self.move_by(self.page.max(1) as isize),
            KeyCode::PageUp => self.move_by(-(self.page.max(1) as isize)),
            KeyCode::Char('d') if key.modifiers.contains(KeyModifiers::CONTROL) => self.move_by((self.page / 2).max(1) as isize),
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => self.move_by(-((self.page / 2).max(1) as isize)),
            KeyCode::Char('g') | KeyCode::Home => self.move_to(false),
            KeyCode::Char('G') | KeyCode::End => self.move_to(true),
            KeyCode::Tab | KeyCode::BackTab => {
                if matches!(view, View::Pattern | View::Trace | View::Session) {
                    let c = self.cursor_mut(view);
                    c.pane = if c.pane == Pane::List { Pane::Detail } else { Pane::List };
                }
            }
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Char('h') | KeyCode::Left => {
                if view == View::Patterns && !self.filter.is_empty() && key.code == KeyCode::Esc {
                    self.filter.clear();
                    self.info("filter cleared");
                } else if self.stack.len() > 1 {
                    self.stack.pop();
                }
            }
            KeyCode::Char('1') => return self.go_to_root(View::Overview),
            KeyCode::Char('2') => return self.go_to_root(View::Patterns),
            KeyCode::Char(':') => self.prompt = Some(Prompt::Search(String::new())),
            // A fresh filter each time (esc clears the current one).
            KeyCode::Char('/') if view == View::Patterns => self.prompt = Some(Prompt::Filter(String::new())),
            KeyCode::Char('u') if matches!(view, View::Patterns | View::Pattern | View::Overview) => return self.undo_triage(),
            KeyCode::Char('r') => return self.refresh(),
            KeyCode::Char('t') => {
                self.settings.window = self.settings.window.next();
                self.info(format!("window: last {}", self.settings.window.label()));
                return vec![self.load_overview()];
            }
            KeyCode::Char('p') => return self.next_project(),
            KeyCode::Char('f') if view == View::Trace => self.jump_to_failing(),
            KeyCode::Char('a') if view == View::Trace => {
                self.show_attributes = !self.show_attributes;
                self.info(if self.show_attributes { "all attributes of the span (a: hide)" } else { "attributes hidden" });
            }
            KeyCode::Char('o') if view == View::Patterns => {
                self.sort = self.sort.next();
                self.info(format!("sorted by {}", self.sort.label()));
            }
            KeyCode::Char('O') if view == View::Patterns => {
                self.reverse = !self.reverse;
                self.info(format!("sorted by {}{}", self.sort.label(), if self.reverse { ", reversed" } else { "" }));
            }
            KeyCode::Char(c @ ('a' | 'f' | 'w' | 'n')) if matches!(view, View::Patterns | View::Pattern | View::Overview) => {
                let status = match c {
                    'a' => "acknowledged",
                    'f' => "fixed",
                    'w' => "wont_fix",
                    _ => "new",
                };
                return self.triage(status);
            }
            KeyCode::Char('e') if matches!(view, View::Patterns | View::Pattern | View::Overview) => return self.export(),
            KeyCode::Char('y') => {
                if let Some((trace, _, _)) = self.selected_call() {
                    self.info(format!("copied trace id {trace} to the clipboard"));
                    return vec![Effect::Copy(trace)];
                }
                self.info("no trace selected");
            }
            KeyCode::Char('s') => return self.open_session(),
            KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => return self.open(),
            _ => {}
        }
        vec![]
    }

    fn on_prompt_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(prompt) = self.prompt.as_mut() else { return vec![] };
        let text = match prompt {
            Prompt::Filter(t) | Prompt::Search(t) => t,
            Prompt::Export { pattern_id, again } => {
                match key.code {
                    KeyCode::Char('!') | KeyCode::Char('a') => *again = !*again,
                    KeyCode::Char(c) => {
                        if let Some((_, format)) = EXPORT_FORMATS.iter().find(|(k, _)| *k == c) {
                            let (pattern_id, again) = (pattern_id.clone(), *again);
                            self.prompt = None;
                            let project = self.project().to_string();
                            return vec![self.run(
                                Slot::Action,
                                &format!("exporting eval cases of {} ({format})", short(&pattern_id)),
                                Request::Export { project, pattern_id, format: format.to_string(), again },
                            )];
                        }
                    }
                    KeyCode::Esc => self.prompt = None,
                    _ => {}
                }
                return vec![];
            }
        };
        match key.code {
            KeyCode::Esc => {
                if matches!(prompt, Prompt::Filter(_)) {
                    self.filter.clear();
                }
                self.prompt = None;
            }
            KeyCode::Enter => {
                let prompt = self.prompt.take();
                if let Some(Prompt::Search(q)) = prompt {
                    return self.start_search(q);
                }
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) => text.push(c),
            _ => {}
        }
        if let Some(Prompt::Filter(t)) = &self.prompt {
            self.filter = t.clone();
            self.cursor_mut(View::Patterns).selected = 0;
        }
        vec![]
    }

    fn start_search(&mut self, query: String) -> Vec<Effect> {
        let q = query.trim().to_string();
        if q.is_empty() {
            return vec![];
        }
        let project = self.project().to_string();
        self.search = None;
        self.push(View::Search);
        self.cursor_mut(View::Search).selected = 0;
        vec![self.run(Slot::Search, &format!("searching {q}"), Request::Search { project, query: q, window: self.settings.window })]
    }

    fn refresh(&mut self) -> Vec<Effect> {
        self.keys.clear();
        let project = self.project().to_string();
        match self.view() {
            View::Overview => vec![self.load_overview()],
            View::Patterns => vec![self.load_patterns()],
            View::Pattern => match self.pattern.as_ref().map(|d| d.item.clone()) {
                Some(item) => vec![self.run(Slot::Pattern, "loading pattern", Request::Pattern { project, item: Box::new(item) })],
                None => vec![],
            },
            View::Trace => match self.trace.as_ref().map(|t| (t.trace_id.clone(), t.start)) {
                Some((trace_id, start)) => {
                    vec![self.run(Slot::Trace, "loading trace", Request::Trace { project, trace_id, around: Some(start) })]
                }
                None => vec![],
            },
            View::Session => match self.session.as_ref().map(|s| (s.session_id.clone(), s.turns.first().map(|t| t.start))) {
                Some((session_id, around)) => {
                    vec![self.run(Slot::Session, "loading session", Request::Session { project, session_id, around })]
                }
                None => vec![],
            },
            View::Search => match self.search.as_ref().map(|s| s.query.clone()) {
                Some(q) => self.start_search(q),
                None => vec![],
            },
        }
    }

    fn next_project(&mut self) -> Vec<Effect> {
        let projects = self.overview.as_ref().map(|o| o.projects.clone()).unwrap_or_default();
        if projects.len() < 2 {
            self.info(if projects.is_empty() {
                "open the overview (1) to list projects"
            } else {
                "only one project has calls in the window"
            });
            return if self.overview.is_none() { vec![self.load_overview()] } else { vec![] };
        }
        let i = projects.iter().position(|p| p == self.project()).map_or(0, |i| (i + 1) % projects.len());
        self.settings.project = Some(projects[i].clone());
        self.keys.clear();
        self.info(format!("project: {}", projects[i]));
        self.patterns = None;
        self.pattern = None;
        self.stack.truncate(1);
        let root = self.view();
        let mut effects = vec![self.load_overview(), self.load_patterns()];
        if root != View::Overview && root != View::Patterns {
            effects.truncate(1);
        }
        effects
    }

    fn open(&mut self) -> Vec<Effect> {
        let project = self.project().to_string();
        match self.view() {
            View::Patterns | View::Overview => {
                let Some(item) = self.selected_pattern() else { return vec![] };
                let stale = self.pattern.as_ref().is_none_or(|d| d.item.id() != item.id());
                if stale {
                    // Show the header at once from what the list knows; members follow.
                    self.pattern = Some(PatternDetail {
                        facets: crate::query::facets_of(&item, &[]),
                        item: item.clone(),
                        timeline: vec![],
                        member_count: 0,
                        members: vec![],
                    });
                    *self.cursor_mut(View::Pattern) = Cursor::default();
                }
                self.push(View::Pattern);
                let id = item.id().to_string();
                self.run_once(Slot::Pattern, &id, "loading pattern", Request::Pattern { project, item: Box::new(item) })
            }
            View::Pattern | View::Search | View::Session => {
                let Some((trace_id, _, at)) = self.selected_call() else { return vec![] };
                self.open_trace(trace_id, Some(at))
            }
            View::Trace => {
                let c = self.cursor_mut(View::Trace);
                c.pane = if c.pane == Pane::List { Pane::Detail } else { Pane::List };
                vec![]
            }
        }
    }

    fn open_trace(&mut self, trace_id: String, at: Option<OffsetDateTime>) -> Vec<Effect> {
        let project = self.project().to_string();
        if self.trace.as_ref().is_none_or(|t| t.trace_id != trace_id) {
            self.trace = None;
            *self.cursor_mut(View::Trace) = Cursor::default();
        }
        self.push(View::Trace);
        let key = trace_id.clone();
        self.run_once(Slot::Trace, &key, &format!("loading trace {}", short(&trace_id)), Request::Trace { project, trace_id, around: at })
    }

    fn open_session(&mut self) -> Vec<Effect> {
        let Some((trace_id, session_id, at)) = self.selected_call() else {
            self.info("select a call to open its session");
            return vec![];
        };
        if session_id.is_empty() {
            self.info("this call has no session id");
            return vec![];
        }
        let project = self.project().to_string();
        if self.session.as_ref().is_none_or(|s| s.session_id != session_id) {
            self.session = None;
            *self.cursor_mut(View::Session) = Cursor::default();
        }
        self.push(View::Session);
        self.session_from = Some((trace_id, at));
        vec![self.run(Slot::Session, "loading session", Request::Session { project, session_id, around: Some(at) })]
    }

    fn triage(&mut self, status: &str) -> Vec<Effect> {
        let Some(item) = self.selected_pattern() else {
            self.info("no pattern selected");
            return vec![];
        };
        let (project, by) = (self.project().to_string(), self.settings.user.clone());
        let pattern_id = item.id().to_string();
        let before = if item.row.status.is_empty() { "new".to_string() } else { item.row.status.clone() };
        self.last_triage = Some((pattern_id.clone(), before));
        vec![self.run(
            Slot::Action,
            &format!("marking {} {}", short(&pattern_id), status),
            Request::Triage { project, pattern_id, status: status.to_string(), by },
        )]
    }

    /// `u`: puts the last triaged pattern back in the state it had (recorded as a decision
    /// of its own: the history keeps both).
    fn undo_triage(&mut self) -> Vec<Effect> {
        let Some((pattern_id, before)) = self.last_triage.take() else {
            self.info("nothing to undo");
            return vec![];
        };
        let (project, by) = (self.project().to_string(), self.settings.user.clone());
        vec![self.run(
            Slot::Action,
            &format!("undoing: {} back to {}", short(&pattern_id), before.replace('_', " ")),
            Request::Triage { project, pattern_id, status: before, by },
        )]
    }

    fn export(&mut self) -> Vec<Effect> {
        let Some(item) = self.selected_pattern() else {
            self.info("no pattern selected");
            return vec![];
        };
        // The CLI's choices: the format, and whether to export cases exported before.
        self.prompt = Some(Prompt::Export { pattern_id: item.id().to_string(), again: false });
        vec![]
    }

    /// Applies a data response; stale ones (a newer request of the same slot exists) are dropped.
    pub fn on_response(&mut self, response: Response) -> Vec<Effect> {
        let Some((slot, _)) = self.pending.remove(&response.id) else { return vec![] };
        if slot != Slot::Action && self.latest.get(&slot) != Some(&response.id) {
            return vec![];
        }
        let payload = match response.result {
            Ok(p) => p,
            Err(e) => {
                self.keys.remove(&slot);
                self.error(format!("error: {e}"));
                return vec![];
            }
        };
        match payload {
            Payload::Patterns { project, items } => {
                if self.settings.project.is_none() {
                    self.settings.project = Some(project);
                }
                // Opened on a trace: it goes on top of the patterns (Esc returns to them).
                if let Some(trace_id) = self.settings.trace.take() {
                    self.patterns = Some(items);
                    return self.open_trace(trace_id.to_ascii_lowercase(), None);
                }
                let n = items.len();
                self.patterns = Some(items);
                let c = self.cursor_mut(View::Patterns);
                c.selected = c.selected.min(n.saturating_sub(1));
                self.prefetch_in = Some(Self::PREFETCH_TICKS);
                // The overview aggregates a whole window: load it now, in the background, so
                // that `1` shows it at once.
                if self.overview.is_none() && !self.latest.contains_key(&Slot::Overview) {
                    return vec![self.load_overview()];
                }
            }
            Payload::Overview(o) => {
                if self.settings.project.is_none() {
                    self.settings.project = Some(o.project.clone());
                }
                self.overview = Some(o);
            }
            Payload::Pattern(d) => {
                self.pattern = Some(*d);
                if self.view() == View::Pattern {
                    self.prefetch_in = Some(Self::PREFETCH_TICKS);
                }
            }
            Payload::Trace(t) => {
                let fresh = self.trace.as_ref().is_none_or(|old| old.trace_id != t.trace_id);
                if fresh {
                    self.cursor_mut(View::Trace).selected = t.focus_index();
                }
                if t.spans.is_empty() && self.view() == View::Trace {
                    self.error(format!("trace {} not found in project {}", t.trace_id, self.project()));
                }
                self.trace = Some(*t);
            }
            Payload::Session(s) => {
                // Open on the call we came from, not on the session's first turn.
                if let Some((trace_id, at)) = self.session_from.take()
                    && let Some(i) = s
                        .turns
                        .iter()
                        .position(|c| c.trace_id == trace_id)
                        .or_else(|| s.turns.iter().enumerate().min_by_key(|(_, c)| (c.start - at).abs()).map(|(i, _)| i))
                {
                    let c = self.cursor_mut(View::Session);
                    c.selected = i;
                    c.scroll = 0;
                }
                self.session = Some(*s);
            }
            Payload::Search(r) => {
                self.info(format!("{} calls match `{}`", r.hits.len(), r.query));
                self.search = Some(r);
            }
            Payload::Triaged { pattern_id, status } => {
                let label = self.patterns.iter().flatten().find(|p| p.id() == pattern_id).map(|p| p.row.label.clone());
                let undo = if self.last_triage.as_ref().is_some_and(|(id, _)| *id == pattern_id) { "  (u: undo)" } else { "" };
                self.info(format!("marked {}: {}{undo}", status.replace('_', " "), label.unwrap_or_else(|| pattern_id.clone())));
                for p in self.patterns.iter_mut().flatten().filter(|p| p.id() == pattern_id) {
                    p.row.status = status.clone();
                }
                if let Some(d) = self.pattern.as_mut().filter(|d| d.item.id() == pattern_id) {
                    d.item.row.status = status.clone();
                }
                for p in self.overview.iter_mut().flat_map(|o| o.top_patterns.iter_mut()).filter(|p| p.id() == pattern_id) {
                    p.row.status = status.clone();
                }
                // Re-read what ClickHouse now says, so the table shows the persisted state.
                return vec![self.load_patterns()];
            }
            Payload::Exported(msg) => self.info(msg),
        }
        vec![]
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
        app.on_response(Response { id, result: Ok(Payload::Overview(fixtures::overview())) });
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
        let second = session.turns[1].trace_id.clone();
        let mut trace = fixtures::trace_view();
        trace.trace_id = second.clone();
        for s in &mut trace.spans {
            if let Some(c) = s.call.as_mut() {
                c.trace_id = second.clone();
                c.start = session.turns[1].start;
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
        app.on_response(Response { id, result: Err("eval export lands with issue #7".into()) });
        assert!(app.status.text.contains("issue #7"));
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
