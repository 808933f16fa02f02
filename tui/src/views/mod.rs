//! Pure rendering: `render` draws the [`App`] as it is, one module per screen. Nothing here
//! queries, waits or mutates state, so every screen renders from fixture data in tests.

mod conversation;
mod help;
mod overview;
mod pattern;
mod patterns;
mod search;
mod session;
mod trace;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use time::OffsetDateTime;

use crate::app::{App, Prompt, View};
use crate::theme::Theme;

/// Draws the screen; returns how far the view's detail pane can scroll (0 when it has none),
/// for the app to keep its scroll within the text: views stay pure, the bound comes back.
pub fn render(frame: &mut Frame, app: &App, theme: &Theme) -> Measured {
    let [top, body, bottom] = Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    header(frame, top, app, theme);
    let max_scroll = match app.view() {
        View::Overview => {
            overview::render(frame, body, app, theme);
            Measured::default()
        }
        View::Patterns => {
            patterns::render(frame, body, app, theme);
            Measured::default()
        }
        View::Pattern => Measured { max_scroll: pattern::render(frame, body, app, theme), anchor: None },
        View::Trace => trace::render(frame, body, app, theme),
        View::Session => Measured { max_scroll: session::render(frame, body, app, theme), anchor: None },
        View::Search => {
            search::render(frame, body, app, theme);
            Measured::default()
        }
    };
    status_line(frame, bottom, app, theme);
    if app.help {
        help::render(frame, frame.area(), app, theme);
    }
    max_scroll
}

/// What a render measured of the detail pane on screen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measured {
    /// How far it scrolls before its last line would leave the pane.
    pub max_scroll: u16,
    /// The scroll that shows the selected call's answer first (the trace view).
    pub anchor: Option<u16>,
}

/// How far a bordered, wrapped paragraph drawn in `area` scrolls before its last line would
/// leave the bottom of the pane.
fn max_scroll(p: &Paragraph, area: Rect) -> u16 {
    let lines = p.line_count(area.width.saturating_sub(2));
    u16::try_from(lines).unwrap_or(u16::MAX).saturating_sub(area.height)
}

fn header(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let crumbs: Vec<&str> = app.stack.iter().map(|v| v.title()).collect();
    let project = if app.project().is_empty() { "…" } else { app.project() };
    let line = Line::from(vec![
        Span::styled(" flywheel ", theme.title()),
        Span::raw("│ "),
        Span::styled(format!("project {project}"), theme.accent()),
        Span::raw(format!(" │ last {} │ ", app.settings.window.label())),
        Span::styled(crumbs.join(" › "), Style::new().add_modifier(ratatui::style::Modifier::BOLD)),
    ]);
    // The help hint keeps its corner: the breadcrumb gets the rest of the line.
    let [left, right] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(7)]).areas(area);
    frame.render_widget(Paragraph::new(line), left);
    let hint = Line::from(vec![Span::styled("?", theme.key()), Span::raw(" help ")]).right_aligned();
    frame.render_widget(Paragraph::new(hint), right);
}

fn status_line(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let line = if let Some(prompt) = &app.prompt {
        let (label, text) = match prompt {
            Prompt::Filter(t) => ("/", t.as_str()),
            Prompt::Search(t) => ("search trace/session/user id or text: ", t.as_str()),
            Prompt::Export { again, .. } => {
                let mut spans = vec![Span::styled("export eval cases as ", theme.key())];
                for (k, name) in crate::app::EXPORT_FORMATS {
                    spans.push(Span::styled(k.to_string(), theme.key()));
                    spans.push(Span::raw(format!(" {name}  ")));
                }
                spans.push(Span::styled("!", theme.key()));
                spans.push(Span::raw(format!(" again ({})  ", if *again { "on" } else { "off" })));
                spans.push(Span::styled("esc", theme.key()));
                spans.push(Span::raw(" cancel"));
                frame.render_widget(Paragraph::new(Line::from(spans)), area);
                return;
            }
        };
        Line::from(vec![Span::styled(label, theme.key()), Span::raw(text.to_string()), Span::styled("█", theme.dim())])
    } else {
        let mut spans = vec![];
        if let Some(loading) = app.loading() {
            spans.push(Span::styled(format!("{loading}  "), theme.warn()));
        }
        if !app.status.text.is_empty() {
            let style = if app.status.error { theme.error() } else { Style::new() };
            spans.push(Span::styled(app.status.text.clone(), style));
        } else if app.loading().is_none() {
            spans.push(Span::styled(hints(app.view()), theme.dim()));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn hints(view: View) -> &'static str {
    match view {
        View::Overview => "j/k move  enter open  t window  p project  2 patterns  : search  ? help  q quit",
        View::Patterns => "j/k move  enter open  / filter  o sort  a ack  f fixed  w won't fix  e export  ? help",
        View::Pattern => "enter trace  s session  tab pane  a/f/w/n triage  e export  y copy id  esc back",
        View::Trace => "j/k span  f failing answer  a attributes  tab pane  s session  y copy id  esc back  ? help",
        View::Session => "j/k turn  enter trace  tab pane  y copy trace id  esc back  ? help",
        View::Search => "j/k move  enter trace  s session  y copy trace id  esc back",
    }
}

/// A bordered block whose border says whether it has the keys.
fn block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    Block::default().borders(Borders::ALL).border_style(theme.border(focused)).title(title)
}

pub fn fmt_duration(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 1.0 {
        format!("{:.0}µs", ns as f64 / 1e3)
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        format!("{:.1}m", ms / 60_000.0)
    }
}

pub fn fmt_time(t: OffsetDateTime) -> String {
    format!("{:02}-{:02} {:02}:{:02}:{:02}", u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

pub fn fmt_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// `s` cut to `max` characters (an ellipsis marks the cut), spaces kept.
pub fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// One line of at most `max` characters (newlines become spaces; an ellipsis marks a cut).
pub fn excerpt(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// A text sparkline of at most `width` cells: values are first averaged into `width` bins (bins
/// may hold unequal numbers of values, so sums would show steps that are not in the data), then
/// scaled to the largest bin; `·` marks an empty bin.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let bins = width.min(values.len());
    let mut merged = vec![0.0; bins];
    let mut counts = vec![0usize; bins];
    for (i, v) in values.iter().enumerate() {
        let b = i * bins / values.len();
        merged[b] += v;
        counts[b] += 1;
    }
    for (m, c) in merged.iter_mut().zip(&counts) {
        *m /= (*c).max(1) as f64;
    }
    let max = merged.iter().cloned().fold(0.0, f64::max);
    merged
        .iter()
        .map(|v| if max <= 0.0 || *v <= 0.0 { ' ' } else { BARS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize] })
        .map(|c| if c == ' ' { '·' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
