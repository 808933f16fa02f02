//! Data in and out: the queries a screen asks for (with the slot that keeps only the latest
//! answer), prefetching what the cursor rests on, triage and export, and applying answers.

use super::*;

impl App {
    pub(super) fn run(&mut self, slot: Slot, what: &str, request: Request) -> Effect {
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

    pub(super) fn load_patterns(&mut self) -> Effect {
        let project = self.settings.project.clone();
        self.run(Slot::Patterns, "loading patterns", Request::Patterns { project })
    }

    pub(super) fn load_overview(&mut self) -> Effect {
        let (project, window) = (self.settings.project.clone(), self.settings.window);
        self.run(Slot::Overview, "loading overview", Request::Overview { project, window })
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
    pub(super) const PREFETCH_TICKS: u8 = 3;

    pub(super) fn prefetch(&mut self) -> Vec<Effect> {
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
    pub(super) fn run_once(&mut self, slot: Slot, key: &str, what: &str, request: Request) -> Vec<Effect> {
        if self.keys.get(&slot).is_some_and(|k| k == key) {
            return vec![];
        }
        self.keys.insert(slot, key.to_string());
        vec![self.run(slot, what, request)]
    }

    pub(super) fn start_search(&mut self, query: String) -> Vec<Effect> {
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

    pub(super) fn refresh(&mut self) -> Vec<Effect> {
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
            View::Session => match self.session.as_ref().map(|s| (s.session_id.clone(), s.turns.first().map(|t| t.start()))) {
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

    pub(super) fn next_project(&mut self) -> Vec<Effect> {
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

    pub(super) fn triage(&mut self, status: &str) -> Vec<Effect> {
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
    pub(super) fn undo_triage(&mut self) -> Vec<Effect> {
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

    pub(super) fn export(&mut self) -> Vec<Effect> {
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
                // Opened on a pattern: select it in the list and open it (Esc returns to the list).
                if let Some(id) = self.settings.pattern.take() {
                    match self.visible_patterns().iter().position(|p| p.id() == id) {
                        Some(i) => {
                            self.cursor_mut(View::Patterns).selected = i;
                            return self.open();
                        }
                        None => {
                            self.error(format!("no pattern {id} in project {}: it may be resolved or in another project", self.project()))
                        }
                    }
                }
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
                let project = o.project.clone();
                self.overview = Some(o);
                // Readiness is per project and slow to change: asked once per project.
                return self.run_once(Slot::Readiness, &project, "reading readiness", Request::Readiness { project: project.clone() });
            }
            Payload::Readiness(lines) => self.readiness = lines,
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
                        .position(|t| t.calls.iter().any(|c| c.trace_id == trace_id))
                        .or_else(|| s.turns.iter().enumerate().min_by_key(|(_, t)| (t.start() - at).abs()).map(|(i, _)| i))
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
