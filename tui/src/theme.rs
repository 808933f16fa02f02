//! Colours, chosen to read on light and dark terminals alike, and the `--no-color` mode.
//!
//! Only the 16 named ANSI colours are used as foregrounds (the terminal's own palette decides
//! how they look, so a light theme stays legible) and never a background colour; selection is
//! reverse video, which works in every palette and without colour. `--no-color` (or `NO_COLOR`)
//! keeps bold, underline and reverse video only, so nothing is conveyed by colour alone: trends
//! have arrows, diffs have `[-…-]`/`{+…+}` markers, errors say "error".

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn new(color: bool) -> Theme {
        Theme { color }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color { Style::new().fg(c) } else { Style::new() }
    }

    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn header(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn dim(&self) -> Style {
        if self.color { Style::new().add_modifier(Modifier::DIM) } else { Style::new() }
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn accent(&self) -> Style {
        self.fg(Color::Magenta)
    }

    pub fn border(&self, focused: bool) -> Style {
        if focused { self.fg(Color::Cyan).add_modifier(Modifier::BOLD) } else { self.dim() }
    }

    pub fn added(&self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }

    pub fn removed(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::CROSSED_OUT)
    }

    pub fn trend(&self, trend: &str) -> Style {
        match trend {
            "new" | "growing" | "regressed" => self.error(),
            "shrinking" => self.warn(),
            "resolved" => self.ok(),
            _ => Style::new(),
        }
    }

    pub fn triage(&self, status: &str) -> Style {
        match status {
            "new" => self.fg(Color::Red),
            "regressed" => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            "acknowledged" => self.fg(Color::Yellow),
            "fixed" => self.ok(),
            _ => self.dim(),
        }
    }

    pub fn role(&self, role: &str) -> Style {
        let c = match role {
            "system" => Color::Magenta,
            "user" => Color::Blue,
            "assistant" => Color::Green,
            "tool" => Color::Yellow,
            _ => Color::Reset,
        };
        self.fg(c).add_modifier(Modifier::BOLD)
    }

    pub fn bar(&self, failing: bool) -> Style {
        self.fg(if failing { Color::Red } else { Color::Blue })
    }
}
