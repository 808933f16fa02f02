//! The overview: calls, failure rate, each signal's rate and cost over the window as
//! sparklines (per hour up to a week, per day beyond), and the top patterns by impact.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};

use super::{block, excerpt, fmt_count, sparkline};
use crate::app::{App, View};
use crate::model::Unit;
use crate::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let Some(o) = &app.overview else {
        frame.render_widget(Paragraph::new("loading overview…").block(block(" overview ", true, theme)), area);
        return;
    };
    let window = o.window.unwrap_or(app.settings.window);
    let n = o.series.len() as u16;
    // The top patterns keep at least 3 rows; series beyond the space left are cut (by kind name).
    let [charts, top] = Layout::vertical([Constraint::Length((n + 2).min(area.height.saturating_sub(5))), Constraint::Min(3)]).areas(area);
    let title = Line::from(vec![
        Span::styled(format!(" {} ", o.project), theme.title()),
        Span::raw(format!("last {} per {} ", window.label(), window.bucket_label())),
        Span::styled(format!("projects: {} ", o.projects.join(", ")), theme.dim()),
    ]);
    let outer = block(title, false, theme);
    let inner = outer.inner(charts);
    frame.render_widget(outer, charts);
    let label_w = 20usize;
    let total_w = 10usize;
    let spark_w = (inner.width as usize).saturating_sub(label_w + total_w + 2);
    let lines: Vec<Line> = o
        .series
        .iter()
        .map(|s| {
            let total = match s.unit {
                Unit::Count => fmt_count(s.total),
                Unit::Rate => format!("{:.1}%", s.total * 100.0),
                Unit::Dollars => format!("${:.2}", s.total),
            };
            Line::from(vec![
                Span::styled(
                    format!("{:<label_w$}", excerpt(&s.name, label_w - 1)),
                    theme.header().remove_modifier(ratatui::style::Modifier::UNDERLINED),
                ),
                Span::styled(sparkline(&s.values, spark_w), theme.bar(s.name.contains("rate") && s.name != "calls")),
                Span::raw(format!(" {total:>total_w$}")),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
    // Each feature's agency readiness, and the questions answered two ways, when the analyzer
    // gave them: a line each above the top patterns.
    let key = |text: String| Span::styled(text, theme.header().remove_modifier(ratatui::style::Modifier::UNDERLINED));
    let readiness: Vec<Line> = app
        .readiness
        .iter()
        .map(|r| {
            let feature = if r.feature.is_empty() { "(no feature)" } else { r.feature.as_str() };
            Line::from(vec![
                key(format!("{:<22}", excerpt(feature, 21))),
                Span::styled(format!("{:<16}", r.level), theme.title()),
                Span::styled(r.reason.clone(), theme.dim()),
            ])
        })
        .collect();
    let top = lines_above(frame, top, " readiness: suggest · draft · act (flywheel readiness) ", readiness, theme);
    let inconsistent: Vec<Line> = o
        .inconsistent
        .iter()
        .map(|c| {
            Line::from(vec![
                key(format!("“{}” ", excerpt(&c.question, 60))),
                Span::styled(c.sides(), theme.title()),
                Span::styled(format!("  asked {}", c.asked), theme.dim()),
            ])
        })
        .collect();
    let top = lines_above(frame, top, " inconsistent answers: one question, contradicting facts ", inconsistent, theme);
    let outer = block(Span::styled(" top patterns by impact (enter opens) ", theme.title()), true, theme);
    let inner = outer.inner(top);
    frame.render_widget(outer, top);
    if o.top_patterns.is_empty() {
        frame.render_widget(Paragraph::new("no open pattern"), inner);
        return;
    }
    let rows = o.top_patterns.iter().map(|p| {
        Row::new(vec![
            fmt_count(p.impact(app.settings.impact)),
            p.trend_arrow().to_string(),
            p.row.label.clone(),
            fmt_count(p.row.users as f64),
            p.row.status.replace('_', " "),
        ])
    });
    let widths = [Constraint::Length(6), Constraint::Length(11), Constraint::Fill(1), Constraint::Length(5), Constraint::Length(12)];
    let table = Table::new(rows, widths)
        .header(Row::new(vec!["impact", "trend", "pattern", "users", "triage"]).style(theme.header()))
        .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(app.cursor(View::Overview).selected));
    frame.render_stateful_widget(table, inner, &mut state);
}

/// Draws `lines` in a titled block at the top of `area`, as long as what stays below keeps 3
/// rows; returns what stays below (all of `area` when there is nothing to draw or no room).
fn lines_above(frame: &mut Frame, area: Rect, title: &'static str, lines: Vec<Line<'static>>, theme: &Theme) -> Rect {
    let room = area.height.saturating_sub(5);
    if lines.is_empty() || room < 3 {
        return area;
    }
    let rows = (lines.len() as u16 + 2).min(room);
    let [head, rest] = Layout::vertical([Constraint::Length(rows), Constraint::Min(3)]).areas(area);
    let outer = block(Span::styled(title, theme.title()), false, theme);
    let inner = outer.inner(head);
    frame.render_widget(outer, head);
    frame.render_widget(Paragraph::new(lines), inner);
    rest
}
