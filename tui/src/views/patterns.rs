//! The patterns table: impact order (or the chosen sort), trend arrows, size, users, signal
//! mix, main feature and model, triage state; operations patterns tagged `ops`. Narrow terminals drop the widest optional columns.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::{block, excerpt, fmt_count};
use crate::app::{App, View};
use crate::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let visible = app.visible_patterns();
    let total = app.patterns.as_ref().map_or(0, Vec::len);
    let mut title = vec![Span::styled(format!(" patterns ({}", visible.len()), theme.title())];
    if visible.len() != total {
        title.push(Span::styled(format!(" of {total}"), theme.title()));
    }
    title.push(Span::styled(")", theme.title()));
    title.push(Span::raw(format!(
        " by {}{} (impact = {} × severity) ",
        app.sort.label(),
        if app.reverse { " ↑" } else { "" },
        app.settings.impact.label()
    )));
    if !app.filter.is_empty() {
        title.push(Span::styled(format!("filter /{} ", app.filter), theme.key()));
    }
    let outer = block(Line::from(title), true, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let Some(_) = &app.patterns else {
        frame.render_widget(Paragraph::new("loading patterns…"), inner);
        return;
    };
    if visible.is_empty() {
        let msg = if total == 0 {
            "no failure patterns yet: run `flywheel analyze`, then press r"
        } else {
            "no pattern matches the filter (esc clears it)"
        };
        frame.render_widget(Paragraph::new(msg), inner);
        return;
    }
    let wide = inner.width >= 110;
    let mut header = vec!["impact", "trend", "pattern", "size", "users"];
    let mut widths = vec![Constraint::Length(6), Constraint::Length(11), Constraint::Fill(1), Constraint::Length(5), Constraint::Length(5)];
    if wide {
        header.push("signals");
        widths.push(Constraint::Length(18));
    }
    header.push("feature");
    widths.push(Constraint::Length(10));
    if wide {
        header.push("model");
        widths.push(Constraint::Length(13));
    }
    header.push("triage");
    widths.push(Constraint::Length(12));
    let rows = visible.iter().map(|p| {
        let r = &p.row;
        let mut cells = vec![
            Cell::from(fmt_count(p.impact(app.settings.impact))),
            Cell::from(Span::styled(p.trend_arrow(), theme.trend(&r.trend))),
            // Operations failures (rate limits, timeouts, latency) are fixed elsewhere: tagged.
            Cell::from(match flywheel_schemas::failure::Lane::of(r) {
                flywheel_schemas::failure::Lane::Operations => {
                    Line::from(vec![Span::styled("ops ", theme.dim()), Span::raw(r.label.clone())])
                }
                flywheel_schemas::failure::Lane::Behaviour => Line::from(r.label.clone()),
            }),
            Cell::from(fmt_count(r.size as f64)),
            Cell::from(fmt_count(r.users as f64)),
        ];
        if wide {
            cells.push(Cell::from(excerpt(&p.signal_mix(), 18)));
        }
        cells.push(Cell::from(p.facet("feature").to_string()));
        if wide {
            cells.push(Cell::from(p.facet("model").to_string()));
        }
        cells.push(Cell::from(Span::styled(r.status.replace('_', " "), theme.triage(&r.status))));
        Row::new(cells)
    });
    let table =
        Table::new(rows, widths).header(Row::new(header).style(theme.header())).row_highlight_style(theme.selected()).column_spacing(1);
    let mut state = TableState::default().with_selected(Some(app.cursor(View::Patterns).selected));
    frame.render_stateful_widget(table, inner, &mut state);
}
