//! View models: what each view shows, already shaped for rendering and free of I/O.
//!
//! [`crate::data`] builds them from ClickHouse rows; tests and the benchmark build them from
//! fixtures. Views only read them, so a view can always be rendered from a snapshot.

use std::collections::BTreeMap;

use flywheel_schemas::failure::Contrast;
use flywheel_schemas::messages::Message;
use flywheel_schemas::rows::{PatternRow, SignalRow};
use time::OffsetDateTime;

/// The time window the overview (and search) look at, with the bucket of its sparklines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day,
    Week,
    Month,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Day, Window::Week, Window::Month];

    pub fn label(self) -> &'static str {
        match self {
            Window::Day => "24h",
            Window::Week => "7d",
            Window::Month => "30d",
        }
    }

    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.label() == s)
    }

    pub fn duration(self) -> time::Duration {
        match self {
            Window::Day => time::Duration::hours(24),
            Window::Week => time::Duration::days(7),
            Window::Month => time::Duration::days(30),
        }
    }

    /// Seconds per sparkline bucket: hourly up to a week, daily beyond.
    pub fn bucket_secs(self) -> i64 {
        match self {
            Window::Day | Window::Week => 3600,
            Window::Month => 86_400,
        }
    }

    pub fn bucket_label(self) -> &'static str {
        if self.bucket_secs() == 3600 { "hour" } else { "day" }
    }

    pub fn next(self) -> Window {
        match self {
            Window::Day => Window::Week,
            Window::Week => Window::Month,
            Window::Month => Window::Day,
        }
    }
}

/// One series of the overview, one value per bucket of the window (oldest first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
    /// Window total, rendered beside the sparkline (a count, a rate or dollars).
    pub total: f64,
    pub unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    #[default]
    Count,
    Rate,
    Dollars,
}

/// One feature's agency readiness as the overview shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadinessLine {
    pub feature: String,
    /// `suggest`, `draft`, `act` or `not enough data`.
    pub level: String,
    /// What holds it there, in a sentence.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overview {
    pub project: String,
    pub window: Option<Window>,
    /// Calls, failure rate, one rate per signal kind, cost.
    pub series: Vec<Series>,
    pub top_patterns: Vec<PatternItem>,
    /// Every project with calls in the window, for the selector.
    pub projects: Vec<String>,
    /// Questions of the window answered inconsistently, the most asked first (a few).
    pub inconsistent: Vec<Contrast>,
}

/// A pattern as the patterns table and the detail header show it.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternItem {
    pub row: PatternRow,
}

impl PatternItem {
    pub fn id(&self) -> &str {
        &self.row.pattern_id
    }

    pub fn facet(&self, key: &str) -> &str {
        self.row.facets.get(key).map(String::as_str).unwrap_or("")
    }

    /// Signal kinds by count, largest first, as `thumbs_down 12 · edit 3`.
    pub fn signal_mix(&self) -> String {
        let mut mix: Vec<(&String, &u64)> = self.row.signal_mix.iter().filter(|(_, n)| **n > 0).collect();
        mix.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        mix.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(" · ")
    }

    pub fn impact(&self, by: Impact) -> f64 {
        let base = match by {
            Impact::Users => self.row.users as f64,
            Impact::Sessions => self.row.sessions as f64,
            Impact::Calls => self.row.calls.max(self.row.size) as f64,
            Impact::Cost => self.row.cost_usd,
        };
        base * f64::from(self.row.severity.max(0.0))
    }

    pub fn trend_arrow(&self) -> &'static str {
        trend_arrow(&self.row.trend)
    }
}

pub fn trend_arrow(trend: &str) -> &'static str {
    match trend {
        "new" => "✚ new",
        "regressed" => "⟲ regressed",
        "growing" => "↑ growing",
        "shrinking" => "↓ shrinking",
        "resolved" => "✓ resolved",
        "stable" => "→ stable",
        _ => "· ?",
    }
}

/// What "impact" multiplies severity by (`--impact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Impact {
    #[default]
    Users,
    Sessions,
    Calls,
    Cost,
}

impl Impact {
    pub fn parse(s: &str) -> Option<Impact> {
        match s {
            "users" => Some(Impact::Users),
            "sessions" => Some(Impact::Sessions),
            "calls" => Some(Impact::Calls),
            "cost" => Some(Impact::Cost),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Impact::Users => "users",
            Impact::Sessions => "sessions",
            Impact::Calls => "calls",
            Impact::Cost => "cost",
        }
    }
}

/// Orders of the patterns table (`o` cycles them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Impact,
    Size,
    Users,
    Severity,
    LastSeen,
    Trend,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [SortKey::Impact, SortKey::Size, SortKey::Users, SortKey::Severity, SortKey::LastSeen, SortKey::Trend];

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Impact => "impact",
            SortKey::Size => "size",
            SortKey::Users => "users",
            SortKey::Severity => "severity",
            SortKey::LastSeen => "last seen",
            SortKey::Trend => "trend",
        }
    }

    pub fn next(self) -> SortKey {
        let i = SortKey::ALL.iter().position(|k| *k == self).unwrap_or(0);
        SortKey::ALL[(i + 1) % SortKey::ALL.len()]
    }
}

fn trend_rank(trend: &str) -> u8 {
    match trend {
        "regressed" => 0,
        "new" => 1,
        "growing" => 2,
        "stable" => 3,
        "shrinking" => 4,
        "resolved" => 5,
        _ => 6,
    }
}

/// Sorts patterns, largest first (or reversed), with the pattern id as a stable tie-break.
pub fn sort_patterns<P: std::borrow::Borrow<PatternItem>>(items: &mut [P], key: SortKey, impact: Impact, reverse: bool) {
    items.sort_by(|a, b| {
        let (a, b) = (a.borrow(), b.borrow());
        let ord = match key {
            // A fixed failure that came back leads the default order, as in `patterns`.
            SortKey::Impact => (b.row.is_regressed() && b.row.size > 0)
                .cmp(&(a.row.is_regressed() && a.row.size > 0))
                .then(b.impact(impact).total_cmp(&a.impact(impact))),
            SortKey::Size => b.row.size.cmp(&a.row.size),
            SortKey::Users => b.row.users.cmp(&a.row.users),
            SortKey::Severity => b.row.severity.total_cmp(&a.row.severity),
            SortKey::LastSeen => b.row.last_seen.cmp(&a.row.last_seen),
            SortKey::Trend => trend_rank(&a.row.trend).cmp(&trend_rank(&b.row.trend)),
        };
        let ord = if reverse { ord.reverse() } else { ord };
        ord.then_with(|| a.row.pattern_id.cmp(&b.row.pattern_id))
    });
}

/// Whether a pattern matches the `/` filter: every word must appear (case-insensitive) in its
/// label, id, terms, facets, trend or triage state.
pub fn matches_filter(item: &PatternItem, filter: &str) -> bool {
    if filter.trim().is_empty() {
        return true;
    }
    let r = &item.row;
    let hay = format!(
        "{} {} {} {} {} {} {}",
        r.label,
        r.pattern_id,
        r.terms.join(" "),
        r.facets.values().cloned().collect::<Vec<_>>().join(" "),
        r.trend,
        r.status,
        r.description
    )
    .to_lowercase();
    filter.to_lowercase().split_whitespace().all(|w| hay.contains(w))
}

/// One failing call of a pattern, joined to its `llm_calls` row and its `failures` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub trace_id: String,
    pub span_id: String,
    pub call_time: OffsetDateTime,
    pub distance: f32,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    pub model: String,
    pub status: String,
    pub error_type: String,
    pub finish_reasons: Vec<String>,
    pub input_text: String,
    pub output_text: String,
    pub reasons: Vec<String>,
    /// For an answer inconsistent with others to the same question: those answers.
    pub contrast: Option<Contrast>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Facet {
    pub name: String,
    /// Value and count, most frequent first.
    pub values: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatternDetail {
    pub item: PatternItem,
    pub facets: Vec<Facet>,
    /// Members per day, oldest first: (day as `MM-DD`, count).
    pub timeline: Vec<(String, u64)>,
    /// Total members of the latest run; `members` holds the nearest ones.
    pub member_count: usize,
    pub members: Vec<Member>,
}

/// One span of a trace, in tree order (parents before children, siblings by start time).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanNode {
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub depth: usize,
    pub start: OffsetDateTime,
    pub duration_ns: u64,
    pub status_code: String,
    pub status_message: String,
    /// The span's attributes, sorted by key (shown on demand; tool spans show their input,
    /// output and error from them).
    pub attributes: Vec<(String, String)>,
    /// The span's events: name and what they say (an exception's type and message).
    pub events: Vec<(String, String)>,
    /// The LLM call of this span, when it is one.
    pub call: Option<CallView>,
}

impl SpanNode {
    /// The first attribute among `keys` (the conventions that carry the same meaning).
    pub fn attribute(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| self.attributes.iter().find(|(key, v)| key == k && !v.is_empty()).map(|(_, v)| v.as_str()))
    }
}

/// An LLM call, shaped for reading: messages parsed from the canonical model.
#[derive(Debug, Clone, PartialEq)]
pub struct CallView {
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    pub model: String,
    pub provider: String,
    pub start: OffsetDateTime,
    pub duration_ns: u64,
    pub input: Vec<Message>,
    pub output: Vec<Message>,
    pub input_text: String,
    pub output_text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: Option<f64>,
    pub finish_reasons: Vec<String>,
    pub status: String,
    pub error_type: String,
    pub error_message: String,
    /// Failure reasons found by the analyzer, when the call failed.
    pub reasons: Vec<String>,
    /// Request parameters as recorded: temperature, max_tokens, top_p, seed, the prompt
    /// template and its version.
    pub params: Vec<(String, String)>,
    /// The system instructions (shared content, by hash) and the tool definitions offered.
    pub system: Option<String>,
    pub tools: Vec<String>,
    pub system_hash: String,
    pub tools_hash: String,
}

impl CallView {
    /// The user's last message in the call's input (its text parts), else the stored excerpt.
    pub fn said(&self) -> String {
        self.input.iter().rev().find(|m| m.role == "user").map(|m| m.text_content()).unwrap_or_else(|| self.input_text.clone())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraceView {
    pub trace_id: String,
    pub spans: Vec<SpanNode>,
    pub signals: Vec<SignalRow>,
    /// The trace's time range, for the waterfall's scale.
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl TraceView {
    pub fn session_id(&self) -> Option<&str> {
        self.spans.iter().filter_map(|s| s.call.as_ref()).map(|c| c.session_id.as_str()).find(|s| !s.is_empty())
    }

    /// The span to select first: the first failing LLM call, else the first LLM call.
    pub fn focus_index(&self) -> usize {
        let calls = || self.spans.iter().enumerate().filter(|(_, s)| s.call.is_some());
        calls()
            .find(|(_, s)| s.call.as_ref().is_some_and(|c| !c.reasons.is_empty() || c.status == "error"))
            .or_else(|| calls().next())
            .map(|(i, _)| i)
            .unwrap_or(0)
    }
}

/// One user turn of a session: what the user said and every model call it took to answer it
/// (an agent's tool loop is one turn), in order. Never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub calls: Vec<CallView>,
}

impl Turn {
    pub fn start(&self) -> OffsetDateTime {
        self.calls[0].start
    }

    /// The call that answered the user: the turn's last.
    pub fn answer(&self) -> &CallView {
        self.calls.last().expect("a turn has calls")
    }

    /// What the user said: the last user message of the turn's first call.
    pub fn request(&self) -> String {
        self.calls[0].said()
    }

    pub fn failing(&self) -> bool {
        self.calls.iter().any(|c| c.status == "error" || !c.reasons.is_empty())
    }

    /// The failure reasons of its calls, each once, in order.
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.calls.iter().flat_map(|c| &c.reasons) {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }

    /// The call a reader should see first: the first failing one, else the answer.
    pub fn focus(&self) -> &CallView {
        self.calls.iter().find(|c| c.status == "error" || !c.reasons.is_empty()).unwrap_or_else(|| self.answer())
    }

    /// The traces its calls ran in (usually one).
    pub fn traces(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for c in &self.calls {
            if !out.contains(&c.trace_id.as_str()) {
                out.push(&c.trace_id);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub session_id: String,
    pub user_id: String,
    /// User turns, oldest first.
    pub turns: Vec<Turn>,
    /// Signals of the session, by trace id (signals on the session alone under "").
    pub signals: BTreeMap<String, Vec<SignalRow>>,
}

/// One search hit: an LLM call.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub trace_id: String,
    pub span_id: String,
    pub session_id: String,
    pub user_id: String,
    pub feature: String,
    pub model: String,
    pub start: OffsetDateTime,
    pub status: String,
    pub snippet: String,
    /// The analyzer's failure reasons for the call (empty: not failing).
    pub reasons: Vec<String>,
}

impl SearchHit {
    pub fn failing(&self) -> bool {
        !self.reasons.is_empty() || self.status == "error"
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    pub query: String,
    /// The most hits a search returns: when `hits` has this many, there may be more.
    pub limit: usize,
    pub hits: Vec<SearchHit>,
}

/// Orders spans into a tree: roots (no parent, or a parent absent from the trace) first, each
/// followed by its children, siblings by start time. A cycle or duplicate cannot loop: every
/// span is placed once.
pub fn span_tree(mut spans: Vec<SpanNode>) -> Vec<SpanNode> {
    spans.sort_by(|a, b| a.start.cmp(&b.start).then(a.span_id.cmp(&b.span_id)));
    let ids: std::collections::HashSet<String> = spans.iter().map(|s| s.span_id.clone()).collect();
    let mut children: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        if s.parent_span_id.is_empty() || !ids.contains(&s.parent_span_id) || s.parent_span_id == s.span_id {
            roots.push(i);
        } else {
            children.entry(s.parent_span_id.clone()).or_default().push(i);
        }
    }
    let mut placed = vec![false; spans.len()];
    let mut order = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut placed[i], true) {
            continue;
        }
        order.push((i, depth));
        if let Some(kids) = children.get(&spans[i].span_id) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    // Spans only reachable through a cycle are still shown, at the root.
    for (i, p) in placed.iter().enumerate() {
        if !p {
            order.push((i, 0));
        }
    }
    let mut slots: Vec<Option<SpanNode>> = spans.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(i, depth)| {
            slots[i].take().map(|mut s| {
                s.depth = depth;
                s
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regression_leads_the_default_order_and_only_that_one() {
        let mut items = crate::fixtures::patterns();
        // The smallest active pattern came back after a fix.
        let smallest =
            items.iter().filter(|p| p.row.size > 0 && p.row.trend != "resolved").min_by_key(|p| p.row.size).unwrap().row.pattern_id.clone();
        let back = items.iter_mut().find(|p| p.row.pattern_id == smallest).unwrap();
        back.row.status = "regressed".into();
        back.row.trend = "regressed".into();
        sort_patterns(&mut items, SortKey::Impact, Impact::Users, false);
        assert_eq!(items[0].row.pattern_id, smallest);
        assert_eq!(items[0].trend_arrow(), "⟲ regressed");
        // Other orders are the user's choice: size puts it where its size is.
        sort_patterns(&mut items, SortKey::Size, Impact::Users, false);
        assert_ne!(items[0].row.pattern_id, smallest);
    }

    fn node(id: &str, parent: &str, start: i64) -> SpanNode {
        SpanNode {
            span_id: id.into(),
            parent_span_id: parent.into(),
            name: id.into(),
            depth: 0,
            start: OffsetDateTime::from_unix_timestamp(start).unwrap(),
            duration_ns: 1,
            status_code: String::new(),
            status_message: String::new(),
            attributes: vec![],
            events: vec![],
            call: None,
        }
    }

    #[test]
    fn span_tree_puts_children_under_parents_and_survives_cycles() {
        let tree = span_tree(vec![node("c", "a", 3), node("b", "a", 2), node("a", "", 1), node("x", "y", 0), node("y", "x", 5)]);
        let order: Vec<(&str, usize)> = tree.iter().map(|s| (s.span_id.as_str(), s.depth)).collect();
        assert_eq!(order[..3], [("a", 0), ("b", 1), ("c", 1)]);
        assert_eq!(tree.len(), 5, "spans in a cycle are still shown");
    }
}
