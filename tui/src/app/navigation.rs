//! Moving around: the selection and scroll of each screen (bounded by what the last render
//! measured), drilling down into patterns, traces and sessions, and back.

use super::*;

impl App {
    /// The patterns the table shows: filtered, then sorted.
    pub fn visible_patterns(&self) -> Vec<&PatternItem> {
        let Some(items) = &self.patterns else { return vec![] };
        let mut v: Vec<&PatternItem> = items.iter().filter(|p| matches_filter(p, &self.filter)).collect();
        sort_patterns(&mut v, self.sort, self.settings.impact, self.reverse);
        v
    }

    pub(super) fn selected_pattern(&self) -> Option<PatternItem> {
        match self.view() {
            View::Patterns => self.visible_patterns().get(self.cursor(View::Patterns).selected).map(|p| (*p).clone()),
            View::Pattern => self.pattern.as_ref().map(|d| d.item.clone()),
            View::Overview => self.overview.as_ref().and_then(|o| o.top_patterns.get(self.cursor(View::Overview).selected)).cloned(),
            _ => None,
        }
    }

    /// The call under the cursor, as (trace id, session id, time), wherever one is selected.
    pub(super) fn selected_call(&self) -> Option<(String, String, OffsetDateTime)> {
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
                let c = s.turns.get(self.cursor(View::Session).selected)?.focus();
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

    pub(super) fn list_len(&self, view: View) -> usize {
        match view {
            View::Overview => self.overview.as_ref().map_or(0, |o| o.top_patterns.len()),
            View::Patterns => self.visible_patterns().len(),
            View::Pattern => self.pattern.as_ref().map_or(0, |d| d.members.len()),
            View::Trace => self.trace.as_ref().map_or(0, |t| t.spans.len()),
            View::Session => self.session.as_ref().map_or(0, |s| s.turns.len()),
            View::Search => self.search.as_ref().map_or(0, |r| r.hits.len()),
        }
    }

    pub(super) fn push(&mut self, view: View) {
        if self.view() != view {
            self.stack.push(view);
        }
        let c = self.cursor_mut(view);
        c.scroll = 0;
        self.prefetch_in = Some(Self::PREFETCH_TICKS);
    }

    pub(super) fn go_to_root(&mut self, view: View) -> Vec<Effect> {
        self.stack = vec![view];
        match view {
            View::Overview if self.overview.is_none() => vec![self.load_overview()],
            View::Patterns if self.patterns.is_none() => vec![self.load_patterns()],
            _ => vec![],
        }
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
    pub(super) fn jump_to_failing(&mut self) {
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

    /// Moves the selection (or the detail pane's scroll) by `delta` rows, clamped.
    pub(super) fn move_by(&mut self, delta: isize) {
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

    pub(super) fn move_to(&mut self, end: bool) {
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

    pub(super) fn open(&mut self) -> Vec<Effect> {
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

    pub(super) fn open_trace(&mut self, trace_id: String, at: Option<OffsetDateTime>) -> Vec<Effect> {
        let project = self.project().to_string();
        if self.trace.as_ref().is_none_or(|t| t.trace_id != trace_id) {
            self.trace = None;
            *self.cursor_mut(View::Trace) = Cursor::default();
        }
        self.push(View::Trace);
        let key = trace_id.clone();
        self.run_once(Slot::Trace, &key, &format!("loading trace {}", short(&trace_id)), Request::Trace { project, trace_id, around: at })
    }

    pub(super) fn open_session(&mut self) -> Vec<Effect> {
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
}
