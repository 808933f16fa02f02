//! A trace: its span tree as a waterfall (indent = depth, bar = when and how long within the
//! trace), and the selected span in full: for an LLM call the conversation, tokens, cost,
//! finish reason, error and the signals attached.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};

use super::conversation::call_lines;
use super::{block, fit, fmt_duration, fmt_time};
use crate::app::{App, Pane, View, short};
use crate::model::TraceView;
use crate::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let Some(t) = &app.trace else {
        frame.render_widget(Paragraph::new("loading trace…").block(block(" trace ", true, theme)), area);
        return;
    };
    let cursor = app.cursor(View::Trace);
    let [tree_area, detail_area] = if area.width >= 120 {
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area)
    } else {
        Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area)
    };
    let title = Line::from(vec![
        Span::styled(format!(" trace {} ", t.trace_id), theme.title()),
        Span::raw(format!("{} spans  {}  {} ", t.spans.len(), fmt_time(t.start), fmt_duration(total_ns(t)))),
    ]);
    let outer = block(title, cursor.pane == Pane::List, theme);
    let inner = outer.inner(tree_area);
    frame.render_widget(outer, tree_area);
    let width = inner.width as usize;
    let name_w = (width * 5 / 10).max(10);
    let dur_w = 7;
    let bar_w = width.saturating_sub(name_w + dur_w + 2).max(1);
    let items: Vec<ListItem> = t
        .spans
        .iter()
        .map(|s| {
            let failing = s.status_code.eq_ignore_ascii_case("error")
                || s.call.as_ref().is_some_and(|c| c.status == "error" || !c.reasons.is_empty());
            let marker = if s.call.is_some() { "◆ " } else { "" };
            let name = format!("{}{}{}", "  ".repeat(s.depth.min(12)), marker, s.name);
            let name = format!("{:<name_w$}", fit(&name, name_w));
            let bar = waterfall_bar(t, s.start, s.duration_ns, bar_w);
            let mut spans = vec![
                Span::styled(name, if failing { theme.error() } else { ratatui::style::Style::new() }),
                Span::raw(format!(" {:>dur_w$} ", fmt_duration(s.duration_ns))),
                Span::styled(bar, theme.bar(failing)),
            ];
            if failing {
                spans.push(Span::styled(" !", theme.error()));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let list = List::new(items).highlight_style(theme.selected());
    let mut state = ListState::default().with_selected(Some(cursor.selected));
    frame.render_stateful_widget(list, inner, &mut state);

    let span = t.spans.get(cursor.selected);
    let mut lines: Vec<Line> = vec![];
    let title = match span {
        Some(s) => format!(" {} · span {} ", s.name, short(&s.span_id)),
        None => " span ".to_string(),
    };
    if let Some(s) = span {
        match &s.call {
            Some(call) => {
                let signals: Vec<_> = t.signals.iter().filter(|g| g.span_id.is_empty() || g.span_id == s.span_id).collect();
                lines.extend(call_lines(call, &signals, theme));
            }
            None => {
                lines.push(Line::from(format!("{}  {}  {}", s.name, fmt_time(s.start), fmt_duration(s.duration_ns))));
                if !s.status_code.is_empty() {
                    lines.push(Line::from(format!("status {} {}", s.status_code, s.status_message)));
                }
                let signals: Vec<_> = t.signals.iter().filter(|g| g.span_id == s.span_id).collect();
                for g in signals {
                    lines.push(Line::from(format!("signal {} {}", g.kind, g.comment)));
                }
            }
        }
    } else if t.spans.is_empty() {
        lines.push(Line::styled("no spans found for this trace in the project", theme.error()));
    }
    let other: Vec<_> = t.signals.iter().filter(|g| !g.span_id.is_empty() && t.spans.iter().all(|s| s.span_id != g.span_id)).collect();
    if !other.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled(format!("{} signals on spans not in this trace", other.len()), theme.dim()));
    }
    let detail = Paragraph::new(lines)
        .block(block(Span::styled(title, theme.title()), cursor.pane == Pane::Detail, theme))
        .wrap(Wrap { trim: false })
        .scroll((cursor.scroll, 0));
    frame.render_widget(detail, detail_area);
}

fn total_ns(t: &TraceView) -> u64 {
    (t.end - t.start).whole_nanoseconds().max(0) as u64
}

/// `width` cells with the span's part of the trace filled.
fn waterfall_bar(t: &TraceView, start: time::OffsetDateTime, duration_ns: u64, width: usize) -> String {
    let total = total_ns(t).max(1) as f64;
    let offset = (start - t.start).whole_nanoseconds().max(0) as f64;
    let from = ((offset / total) * width as f64).floor() as usize;
    let len = ((duration_ns as f64 / total) * width as f64).ceil().max(1.0) as usize;
    let from = from.min(width.saturating_sub(1));
    let to = (from + len).min(width);
    (0..width).map(|i| if i >= from && i < to { '█' } else { '·' }).collect()
}
