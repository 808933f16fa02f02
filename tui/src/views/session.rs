//! A session: its turns in order (time, feature, failing or not, the user's request, signals),
//! and the selected turn's conversation with its signals.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};

use super::conversation::call_lines;
use super::{block, excerpt, fmt_time};
use crate::app::{App, Pane, View};
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
    let rows = s.turns.iter().enumerate().map(|(i, c)| {
        let failing = c.status == "error" || !c.reasons.is_empty();
        let signals: Vec<String> = s.signals.get(&c.trace_id).map(|v| v.iter().map(|g| g.kind.clone()).collect()).unwrap_or_default();
        let request = c.input.iter().rev().find(|m| m.role == "user").map(|m| m.text_content()).unwrap_or_else(|| c.input_text.clone());
        Row::new(vec![
            format!("{}", i + 1),
            fmt_time(c.start),
            c.feature.clone(),
            if failing { format!("✗ {}", excerpt(&c.reasons.join(","), 18)) } else { "✓".into() },
            excerpt(&signals.join(","), 22),
            excerpt(&request, 200),
        ])
        .style(if failing { theme.error() } else { ratatui::style::Style::new() })
    });
    let widths = [
        Constraint::Length(3),
        Constraint::Length(14),
        Constraint::Length(10),
        Constraint::Length(14),
        Constraint::Length(if inner.width >= 100 { 22 } else { 12 }),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(vec!["#", "time", "feature", "result", "signals", "user said"]).style(theme.header()))
        .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(cursor.selected));
    frame.render_stateful_widget(table, inner, &mut state);

    let mut lines = vec![];
    if let Some(c) = s.turns.get(cursor.selected) {
        let signals: Vec<_> = s.signals.get(&c.trace_id).map(|v| v.iter().collect()).unwrap_or_default();
        lines = call_lines(c, &signals, theme);
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
