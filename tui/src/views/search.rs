//! Search results: calls matching a trace, session or user id or a text, newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::{block, excerpt, fmt_time};
use crate::app::{App, View, short};
use crate::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let Some(r) = &app.search else {
        frame.render_widget(Paragraph::new("searching…").block(block(" search ", true, theme)), area);
        return;
    };
    let failing = r.hits.iter().filter(|h| h.failing()).count();
    // At the limit there may be more: say so rather than let the list pass for all of them.
    let count = if r.hits.len() >= r.limit {
        format!("the newest {} calls (the limit: refine the search or narrow the window with t)", r.hits.len())
    } else {
        format!("{} calls", r.hits.len())
    };
    let outer = block(
        Span::styled(format!(" search `{}`: {count}, {failing} failing (enter: trace, s: session) ", r.query), theme.title()),
        true,
        theme,
    );
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if r.hits.is_empty() {
        frame.render_widget(Paragraph::new("nothing matches in this project and window (t widens the window)"), inner);
        return;
    }
    let rows = r.hits.iter().map(|h| {
        let status = if h.failing() {
            let why = h.reasons.first().cloned().unwrap_or_else(|| h.status.clone());
            Cell::from(Span::styled(format!("✘ {why}"), theme.error()))
        } else {
            Cell::from(h.status.clone())
        };
        Row::new(vec![
            Cell::from(fmt_time(h.start)),
            Cell::from(short(&h.trace_id).to_string()),
            Cell::from(h.feature.clone()),
            status,
            Cell::from(excerpt(&h.user_id, 12)),
            Cell::from(excerpt(&h.snippet, 200)),
        ])
    });
    let widths = [
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(14),
        Constraint::Length(12),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(vec!["time", "trace", "feature", "status", "user", "text"]).style(theme.header()))
        .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(app.cursor(View::Search).selected));
    frame.render_stateful_widget(table, inner, &mut state);
}
