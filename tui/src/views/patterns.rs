//! The patterns table: impact order (or the chosen sort), trend arrows, size, users, signal
//! mix, main feature and model, triage state; operations patterns tagged `ops`; the sort column
//! marked in the header. Width goes to the label: optional columns take what their content
//! needs, and are dropped (signals, model, size, the long forms of trend and triage, feature,
//! triage) while the label would get fewer than 40 cells: at 80 columns short trend and triage;
//! at 50 impact, trend, label and users.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::{block, excerpt, fmt_count};
use crate::app::{App, View};
use crate::model::SortKey;
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
    // Optional columns take the width their content needs (capped); the richest set that
    // leaves the label LABEL_MIN cells is shown.
    let widest = |f: &dyn Fn(&&crate::model::PatternItem) -> usize, cap: usize, floor: usize| {
        visible.iter().map(f).max().unwrap_or(0).clamp(floor, cap) as u16
    };
    let widths_of = Widths {
        feature: widest(&|p| p.facet("feature").chars().count(), 20, 7),
        model: widest(&|p| p.facet("model").chars().count(), 24, 5),
        signals: widest(&|p| p.signal_mix().chars().count(), 24, 7),
    };
    let cols = Columns::fitting(inner.width, &widths_of);
    let sorted = |name: &'static str, key: SortKey| -> String {
        if app.sort == key { format!("{name}{}", if app.reverse { "▲" } else { "▼" }) } else { name.to_string() }
    };
    let mut header: Vec<String> = vec![sorted("impact", SortKey::Impact), sorted("trend", SortKey::Trend), "pattern".into()];
    let mut widths = vec![Constraint::Length(7), Constraint::Length(if cols.long { 12 } else { 6 }), Constraint::Fill(1)];
    if cols.size {
        header.push(sorted("size", SortKey::Size));
        widths.push(Constraint::Length(6));
    }
    header.push(sorted("users", SortKey::Users));
    widths.push(Constraint::Length(6));
    if cols.signals {
        header.push("signals".into());
        widths.push(Constraint::Length(widths_of.signals));
    }
    if cols.feature {
        header.push("feature".into());
        widths.push(Constraint::Length(widths_of.feature));
    }
    if cols.model {
        header.push("model".into());
        widths.push(Constraint::Length(widths_of.model));
    }
    if cols.triage {
        header.push("triage".into());
        widths.push(Constraint::Length(if cols.long { 12 } else { 6 }));
    }
    let rows = visible.iter().map(|p| {
        let r = &p.row;
        let trend = if cols.long { p.trend_arrow().to_string() } else { short_trend(&r.trend).to_string() };
        let mut cells = vec![
            Cell::from(fmt_count(p.impact(app.settings.impact))),
            Cell::from(Span::styled(trend, theme.trend(&r.trend))),
            // Operations failures (rate limits, timeouts, latency) are fixed elsewhere: tagged.
            Cell::from(match flywheel_schemas::failure::Lane::of(r) {
                flywheel_schemas::failure::Lane::Operations => {
                    Line::from(vec![Span::styled("ops ", theme.dim()), Span::raw(r.label.clone())])
                }
                flywheel_schemas::failure::Lane::Behaviour => Line::from(r.label.clone()),
            }),
        ];
        if cols.size {
            cells.push(Cell::from(fmt_count(r.size as f64)));
        }
        cells.push(Cell::from(fmt_count(r.users as f64)));
        if cols.signals {
            cells.push(Cell::from(excerpt(&p.signal_mix(), widths_of.signals as usize)));
        }
        if cols.feature {
            cells.push(Cell::from(excerpt(p.facet("feature"), widths_of.feature as usize)));
        }
        if cols.model {
            cells.push(Cell::from(excerpt(p.facet("model"), widths_of.model as usize)));
        }
        if cols.triage {
            let triage = if cols.long { r.status.replace('_', " ") } else { short_triage(&r.status).to_string() };
            cells.push(Cell::from(Span::styled(triage, theme.triage(&r.status))));
        }
        Row::new(cells)
    });
    let table =
        Table::new(rows, widths).header(Row::new(header).style(theme.header())).row_highlight_style(theme.selected()).column_spacing(1);
    let mut state = TableState::default().with_selected(Some(app.cursor(View::Patterns).selected));
    frame.render_stateful_widget(table, inner, &mut state);
}

/// Cells the label keeps before optional columns are dropped.
const LABEL_MIN: u16 = 40;

/// The content widths of the optional columns.
struct Widths {
    feature: u16,
    model: u16,
    signals: u16,
}

/// Which optional columns are shown, and whether trend and triage are spelled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    size: bool,
    signals: bool,
    feature: bool,
    model: bool,
    triage: bool,
    long: bool,
}

impl Columns {
    /// The richest set that leaves the label `LABEL_MIN` cells, dropping in this order: signals,
    /// model, size, the long forms of trend and triage, feature, triage.
    fn fitting(width: u16, w: &Widths) -> Columns {
        let mut c = Columns { size: true, signals: true, feature: true, model: true, triage: true, long: true };
        let drops: [fn(&mut Columns); 6] = [
            |c| c.signals = false,
            |c| c.model = false,
            |c| c.size = false,
            |c| c.long = false,
            |c| c.feature = false,
            |c| c.triage = false,
        ];
        for drop in drops {
            if width >= c.fixed(w) + LABEL_MIN {
                break;
            }
            drop(&mut c);
        }
        c
    }

    /// Cells of every column but the label, with one space between columns.
    fn fixed(&self, w: &Widths) -> u16 {
        let short_or_long = if self.long { 12 } else { 6 };
        let shown = [
            (true, 7),
            (true, short_or_long),
            (self.size, 6),
            (true, 6),
            (self.signals, w.signals),
            (self.feature, w.feature),
            (self.model, w.model),
            (self.triage, short_or_long),
        ];
        shown.iter().filter(|(on, _)| *on).map(|(_, n)| n + 1).sum()
    }
}

/// The trend as an arrow and four letters.
fn short_trend(trend: &str) -> &'static str {
    match trend {
        "new" => "✚ new",
        "regressed" => "⟲ back",
        "growing" => "↑ grow",
        "shrinking" => "↓ shr",
        "resolved" => "✓ res",
        "stable" => "→ stb",
        _ => "· ?",
    }
}

fn short_triage(status: &str) -> &'static str {
    match status {
        "acknowledged" => "ack",
        "regressed" => "REGR",
        "fixed" => "fixed",
        "wont_fix" => "won't",
        _ => "new",
    }
}
