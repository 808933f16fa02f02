//! One pattern: label, description, distinctive terms, facets with their counts, a timeline of
//! members per day, and the member calls (nearest to the pattern's centre first).

use flywheel_schemas::failure::Contrast;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};

use super::{block, excerpt, fmt_count, fmt_time, sparkline};
use crate::app::{App, Pane, View};
use crate::model::trend_arrow;
use crate::theme::Theme;

/// Renders the pattern; returns how far its detail panes (facets) can scroll.
pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) -> u16 {
    let Some(d) = &app.pattern else {
        frame.render_widget(Paragraph::new("loading pattern…").block(block(" pattern ", true, theme)), area);
        return 0;
    };
    let cursor = app.cursor(View::Pattern);
    let r = &d.item.row;
    let facets_h = if area.height >= 30 { 9 } else { 6 };
    let [head, info, members] = Layout::vertical([Constraint::Length(4), Constraint::Length(facets_h), Constraint::Min(3)]).areas(area);

    let title =
        Line::from(vec![Span::styled(format!(" {} ", r.label), theme.title()), Span::styled(format!("{} ", r.pattern_id), theme.dim())]);
    let outer = block(title, false, theme);
    let lines = vec![
        Line::from(vec![
            Span::styled(trend_arrow(&r.trend), theme.trend(&r.trend)),
            Span::raw("  triage "),
            Span::styled(r.status.replace('_', " "), theme.triage(&r.status)),
            Span::raw(format!(
                "  size {} (was {})  users {}  sessions {}  severity {:.2}  cost ${:.2}  latency {:.0}ms",
                r.size, r.previous_size, r.users, r.sessions, r.severity, r.cost_usd, r.mean_latency_ms
            )),
        ]),
        Line::from(vec![Span::styled("terms ", theme.dim()), Span::styled(r.terms.join(", "), theme.accent())]),
    ];
    let desc = if r.description.is_empty() { vec![] } else { vec![Line::styled(excerpt(&r.description, 500), theme.dim())] };
    frame.render_widget(Paragraph::new([lines, desc].concat()).block(outer).wrap(Wrap { trim: true }), head);

    // Facets on the left, the timeline on the right; both scroll with the detail pane.
    let [facets_area, timeline_area] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(info);
    let focused = cursor.pane == Pane::Detail;
    let facet_lines: Vec<Line> = d
        .facets
        .iter()
        .map(|f| {
            let values: Vec<String> = f.values.iter().take(4).map(|(v, n)| format!("{v} {n}")).collect();
            Line::from(vec![
                Span::styled(format!("{:<12}", f.name), theme.dim()),
                Span::raw(if values.is_empty() { "-".to_string() } else { values.join(" · ") }),
            ])
        })
        .collect();
    let facets = Paragraph::new(facet_lines).block(block(" facets ", focused, theme)).wrap(Wrap { trim: true });
    let max = super::max_scroll(&facets, facets_area);
    frame.render_widget(facets.scroll((cursor.scroll.min(max), 0)), facets_area);
    let tl = block(Span::raw(format!(" timeline ({} members) ", d.member_count)), focused, theme);
    let tl_inner = tl.inner(timeline_area);
    frame.render_widget(tl, timeline_area);
    let counts: Vec<f64> = d.timeline.iter().map(|(_, n)| *n as f64).collect();
    let mut tl_lines = vec![Line::styled(sparkline(&counts, tl_inner.width as usize), theme.bar(true))];
    if let (Some(first), Some(last)) = (d.timeline.first(), d.timeline.last()) {
        let peak = d.timeline.iter().map(|(_, n)| *n).max().unwrap_or(0);
        tl_lines.push(Line::styled(format!("{} → {}  peak {}/day", first.0, last.0, peak), theme.dim()));
    }
    tl_lines.push(Line::styled(format!("first {}  last {}", fmt_time(r.first_seen), fmt_time(r.last_seen)), theme.dim()));
    let life = r.lifecycle();
    if !life.is_empty() {
        tl_lines.push(Line::styled(life, if r.is_regressed() { theme.triage(&r.status) } else { theme.dim() }));
    }
    frame.render_widget(Paragraph::new(tl_lines), tl_inner);

    let shown = d.members.len();
    let title = if shown < d.member_count {
        format!(" members: {shown} nearest of {} (enter: trace, s: session) ", fmt_count(d.member_count as f64))
    } else {
        format!(" members: {shown} (enter: trace, s: session) ")
    };
    // An inconsistent answer is read against the others to its question: side by side below.
    let contrast = d.members.get(cursor.selected).and_then(|m| m.contrast.as_ref()).filter(|c| c.answers.len() >= 2);
    let (members, answers_area) = match contrast {
        Some(_) if members.height >= 14 => {
            let [top, bottom] = Layout::vertical([Constraint::Min(5), Constraint::Percentage(45)]).areas(members);
            (top, Some(bottom))
        }
        _ => (members, None),
    };
    if let (Some(c), Some(area)) = (contrast, answers_area) {
        render_contrast(frame, area, c, theme);
    }
    let outer = block(Span::styled(title, theme.title()), !focused, theme);
    let inner = outer.inner(members);
    frame.render_widget(outer, members);
    if d.members.is_empty() {
        let msg = if app.is_loading() { "loading members…" } else { "no members in the latest run" };
        frame.render_widget(Paragraph::new(msg), inner);
        return max;
    }
    let wide = inner.width >= 110;
    let rows = d.members.iter().map(|m| {
        let why = if m.reasons.is_empty() { m.finish_reasons.join(",") } else { m.reasons.join(",") };
        let mut cells = vec![fmt_time(m.call_time), m.feature.clone(), excerpt(&why, 24)];
        if wide {
            cells.insert(2, m.model.clone());
        }
        cells.push(excerpt(&m.input_text, 200));
        Row::new(cells)
    });
    let mut header = vec!["time", "feature", "why", "request"];
    let mut widths = vec![Constraint::Length(14), Constraint::Length(10), Constraint::Length(16), Constraint::Fill(1)];
    if wide {
        header.insert(2, "model");
        widths.insert(2, Constraint::Length(14));
        widths[1] = Constraint::Length(14);
        widths[3] = Constraint::Length(24);
    }
    let table = Table::new(rows, widths).header(Row::new(header).style(theme.header())).row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(cursor.selected));
    frame.render_stateful_widget(table, inner, &mut state);
    max
}

/// The answers one question got, side by side: the reference first, the selected call's
/// stance marked.
fn render_contrast(frame: &mut Frame, area: Rect, c: &Contrast, theme: &Theme) {
    let title = format!(" “{}” asked {} times in {} sessions: answers side by side ", excerpt(&c.question, 80), c.asked, c.sessions);
    let outer = block(Span::styled(title, theme.title()), false, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let shown: Vec<_> = c.answers.iter().take(3).collect();
    let columns = Layout::horizontal(shown.iter().map(|_| Constraint::Ratio(1, shown.len() as u32))).split(inner);
    for (s, col) in shown.iter().zip(columns.iter()) {
        let role = match (s.reference, s.this) {
            (true, _) => "reference",
            (false, true) => "this answer",
            (false, false) => "other",
        };
        let facts = if s.facts.is_empty() { "-".to_string() } else { s.facts.join(", ") };
        let mut head = vec![
            Span::styled(format!("{role}: "), if s.this { theme.accent() } else { theme.dim() }),
            Span::styled(facts, theme.title()),
            Span::styled(format!("  {} calls · {} sessions", s.calls, s.sessions), theme.dim()),
        ];
        if s.accepted + s.rejected > 0 {
            head.push(Span::styled(format!(" · ✓{} ✗{}", s.accepted, s.rejected), theme.dim()));
        }
        let text = vec![Line::from(head), Line::raw(excerpt(&s.text, 400))];
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), col.inner(ratatui::layout::Margin::new(1, 0)));
    }
}
