//! A session: its user turns in order (time, feature, failing or not, model calls, signals,
//! what the user said), and the selected turn — its model calls, then the one to read first
//! (the first failing, else the answer) in full, with its signals.

use flywheel_schemas::rows::SignalRow;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};

use super::conversation::call_lines;
use super::{block, excerpt, fmt_time};
use crate::app::{App, Pane, View};
use crate::model::Turn;
use crate::theme::Theme;

/// Renders the session; returns how far its detail pane can scroll.
pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) -> u16 {
    let Some(s) = &app.session else {
        frame.render_widget(Paragraph::new("loading session…").block(block(" session ", true, theme)), area);
        return 0;
    };
    let cursor = app.cursor(View::Session);
    let [turns_area, detail_area] = Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area);
    let title = Line::from(vec![
        Span::styled(format!(" session {} ", s.session_id), theme.title()),
        Span::raw(format!("user {}  {} turns ", s.user_id, s.turns.len())),
    ]);
    let outer = block(title, cursor.pane == Pane::List, theme);
    let inner = outer.inner(turns_area);
    frame.render_widget(outer, turns_area);
    let signals_of = |t: &Turn| -> Vec<&SignalRow> { t.traces().iter().filter_map(|id| s.signals.get(*id)).flatten().collect() };
    let rows = s.turns.iter().enumerate().map(|(i, t)| {
        let failing = t.failing();
        let signals: Vec<String> = signals_of(t).iter().map(|g| g.kind.clone()).collect();
        Row::new(vec![
            format!("{}", i + 1),
            fmt_time(t.start()),
            t.answer().feature.clone(),
            if failing { format!("✗ {}", excerpt(&t.reasons().join(","), 18)) } else { "✓".into() },
            t.calls.len().to_string(),
            excerpt(&signals.join(","), 22),
            excerpt(&t.request(), 200),
        ])
        .style(if failing { theme.error() } else { ratatui::style::Style::new() })
    });
    let widths = [
        Constraint::Length(3),
        Constraint::Length(14),
        Constraint::Length(10),
        Constraint::Length(14),
        Constraint::Length(5),
        Constraint::Length(if inner.width >= 100 { 22 } else { 12 }),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(vec!["#", "time", "feature", "result", "calls", "signals", "user said"]).style(theme.header()))
        .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(cursor.selected));
    frame.render_stateful_widget(table, inner, &mut state);

    let mut lines = vec![];
    if let Some(t) = s.turns.get(cursor.selected) {
        // An agent's turn: each model call in a line, then the one to read first in full.
        if t.calls.len() > 1 {
            lines.push(Line::styled(format!("{} model calls in this turn", t.calls.len()), theme.header()));
            for (n, c) in t.calls.iter().enumerate() {
                let asked: Vec<&str> = c.output.iter().flat_map(|m| m.tool_calls()).map(|(_, name, _)| name).collect();
                let what = if asked.is_empty() { "answered".to_string() } else { format!("asked for {}", asked.join(", ")) };
                let result =
                    if c.status == "error" || !c.reasons.is_empty() { format!("✗ {}", c.reasons.join(",")) } else { "✓".into() };
                let style = if std::ptr::eq(c, t.focus()) { theme.accent() } else { ratatui::style::Style::new() };
                lines.push(Line::styled(format!("  {}. {} {} {what} {result}", n + 1, fmt_time(c.start), c.model), style));
            }
            lines.push(Line::raw(""));
        }
        lines.extend(call_lines(t.focus(), &signals_of(t), theme));
    } else if s.turns.is_empty() {
        lines.push(Line::raw("no calls in this session"));
    }
    if let Some(general) = s.signals.get("") {
        lines.push(Line::raw(""));
        lines.push(Line::styled("signals on the session", theme.header()));
        for g in general {
            lines.push(Line::raw(format!("  {} {} {}", g.kind, fmt_time(g.timestamp), g.comment)));
        }
    }
    let detail = Paragraph::new(lines)
        .block(block(Span::styled(" turn ", theme.title()), cursor.pane == Pane::Detail, theme))
        .wrap(Wrap { trim: false });
    let max = super::max_scroll(&detail, detail_area);
    frame.render_widget(detail.scroll((cursor.scroll.min(max), 0)), detail_area);
    max
}
