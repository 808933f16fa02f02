//! `?`: every key, in a box over the current screen.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::block;
use crate::app::App;
use crate::theme::Theme;

/// Every key of the UI: (keys, what they do). The help screen and README list these.
pub const KEYS: &[(&str, &str)] = &[
    ("j k ↓ ↑", "move (or scroll the focused pane)"),
    ("g G", "first / last"),
    ("PgDn PgUp ^d ^u", "page down / up"),
    ("enter l →", "open: pattern, trace of a call"),
    ("esc h ←", "back (esc also clears the filter)"),
    ("tab", "switch pane (list / detail)"),
    ("1  2", "overview / patterns"),
    ("/", "filter patterns (a fresh filter; esc clears it)"),
    ("o  O", "sort patterns: next key / reverse"),
    ("a f w n", "triage: acknowledged, fixed, won't fix, new"),
    ("u", "undo the last triage decision"),
    ("f  (trace)", "jump to the failing call's answer"),
    ("a  (trace)", "every attribute of the selected span"),
    ("e", "export the pattern's eval cases: choose the format, ! to export again"),
    (":", "search trace id, session id, user id or text"),
    ("s", "open the session of the selected call"),
    ("y", "copy the trace id (OSC 52)"),
    ("t  p", "time window (24h/7d/30d) / next project"),
    ("r", "reload"),
    ("mouse wheel", "scroll"),
    ("?", "this help"),
    ("q ^c", "quit"),
];

pub fn render(frame: &mut Frame, area: Rect, _app: &App, theme: &Theme) {
    let width = 64.min(area.width);
    let height = (KEYS.len() as u16 + 4).min(area.height);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    let mut lines: Vec<Line> =
        KEYS.iter().map(|(k, what)| Line::from(vec![Span::styled(format!("{k:>16}  "), theme.key()), Span::raw(*what)])).collect();
    lines.push(Line::styled(format!("logs: {}", crate::terminal::log_path().display()), theme.dim()));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(block(Span::styled(" keys (esc closes) ", theme.title()), true, theme)), popup);
}
