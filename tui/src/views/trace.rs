//! A trace: its span tree as a waterfall (indent = depth, bar = when and how long within the
//! trace), and the selected span in full: for an LLM call the conversation, tokens, cost,
//! finish reason, error and the signals attached.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};

use super::conversation::call_lines_anchored;
use super::{block, fit, fmt_duration, fmt_time};
use crate::app::{App, Pane, View, short};
use crate::model::TraceView;
use crate::theme::Theme;

/// Renders the trace; returns how far its detail pane can scroll and where the selected call's
/// answer starts in it.
pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) -> super::Measured {
    let Some(t) = &app.trace else {
        frame.render_widget(Paragraph::new("loading trace…").block(block(" trace ", true, theme)), area);
        return super::Measured::default();
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
    let mut anchor = None;
    let title = match span {
        Some(s) => format!(" {} · span {} ", s.name, short(&s.span_id)),
        None => " span ".to_string(),
    };
    if let Some(s) = span {
        match &s.call {
            Some(call) => {
                let signals: Vec<_> = t.signals.iter().filter(|g| g.span_id.is_empty() || g.span_id == s.span_id).collect();
                let (call_lines, at) = call_lines_anchored(call, &signals, theme);
                anchor = Some(at);
                lines.extend(call_lines);
            }
            None => {
                lines.push(Line::from(format!("{}  {}  {}", s.name, fmt_time(s.start), fmt_duration(s.duration_ns))));
                let failed = s.status_code == "error" || s.events.iter().any(|(n, _)| n == "exception");
                if failed || !s.status_message.is_empty() {
                    let status = format!("status {} {}", s.status_code, s.status_message);
                    lines.push(Line::styled(status.trim_end().to_string(), if failed { theme.error() } else { theme.dim() }));
                }
                // What a tool or retrieval span did, read by meaning across conventions.
                for (label, keys) in SPAN_FIELDS {
                    if let Some(v) = s.attribute(keys) {
                        lines.push(Line::styled(label.to_string(), theme.header()));
                        lines.extend(v.lines().take(40).map(|l| Line::raw(format!("  {l}"))));
                    }
                }
                for (name, text) in &s.events {
                    let style = if name == "exception" { theme.error() } else { theme.dim() };
                    lines.push(Line::styled(format!("event {name} {text}").trim_end().to_string(), style));
                }
                let signals: Vec<_> = t.signals.iter().filter(|g| g.span_id == s.span_id).collect();
                for g in signals {
                    lines.push(Line::from(format!("signal {} {}", g.kind, g.comment)));
                }
            }
        }
        if app.show_attributes {
            // On demand, first: what the producer sent, before flywheel's reading of it.
            let mut head = vec![Line::styled(format!("attributes ({})  a: hide", s.attributes.len()), theme.header())];
            for (k, v) in &s.attributes {
                let v: String = v.chars().take(300).collect();
                head.push(Line::from(vec![Span::styled(format!("  {k} "), theme.dim()), Span::raw(v.replace('\n', " "))]));
            }
            head.push(Line::raw(""));
            anchor = anchor.map(|a| a + head.len());
            lines.splice(0..0, head);
        } else if s.call.is_none() && !s.attributes.is_empty() {
            lines.push(Line::styled(format!("a: all {} attributes", s.attributes.len()), theme.dim()));
        }
    } else if t.spans.is_empty() {
        lines.push(Line::styled("no spans found for this trace in the project", theme.error()));
    }
    let other: Vec<_> = t.signals.iter().filter(|g| !g.span_id.is_empty() && t.spans.iter().all(|s| s.span_id != g.span_id)).collect();
    if !other.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled(format!("{} signals on spans not in this trace", other.len()), theme.dim()));
    }
    let anchor = anchor.map(|at| {
        let before = Paragraph::new(lines[..at.min(lines.len())].to_vec()).wrap(Wrap { trim: false });
        u16::try_from(before.line_count(detail_area.width.saturating_sub(2))).unwrap_or(u16::MAX)
    });
    let detail = Paragraph::new(lines)
        .block(block(Span::styled(title, theme.title()), cursor.pane == Pane::Detail, theme))
        .wrap(Wrap { trim: false });
    let max = super::max_scroll(&detail, detail_area);
    frame.render_widget(detail.scroll((cursor.scroll.min(max), 0)), detail_area);
    super::Measured { max_scroll: max, anchor: anchor.map(|a| a.min(max)) }
}

/// Span attributes shown by meaning for spans that are not model calls: the OTel GenAI tool
/// attributes, OpenInference's `input.value`/`output.value`, OpenLLMetry's entity input and
/// output, and the generic `error.type`.
const SPAN_FIELDS: &[(&str, &[&str])] = &[
    ("input", &["gen_ai.tool.call.arguments", "input.value", "traceloop.entity.input", "ai.toolCall.args", "tool.parameters"]),
    ("output", &["gen_ai.tool.call.result", "output.value", "traceloop.entity.output", "ai.toolCall.result"]),
    ("error", &["error.type", "exception.message"]),
];

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
