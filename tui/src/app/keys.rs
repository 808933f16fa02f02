//! Keys and the mouse: what each press does on each screen, and the prompts (filter, search,
//! export) typed at the bottom.

use super::*;

impl App {
    pub fn on_mouse(&mut self, ev: MouseEvent) -> Vec<Effect> {
        match ev.kind {
            MouseEventKind::ScrollDown => self.move_by(3),
            MouseEventKind::ScrollUp => self.move_by(-3),
            _ => {}
        }
        vec![]
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && matches!(key.code, KeyCode::Char('c')) {
            self.quit = true;
            return vec![];
        }
        if self.prompt.is_some() {
            return self.on_prompt_key(key);
        }
        if self.help {
            if matches!(key.code, KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter) {
                self.help = false;
            }
            return vec![];
        }
        let view = self.view();
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('j') | KeyCode::Down => self.move_by(1),
            KeyCode::Char('k') | KeyCode::Up => self.move_by(-1),
            KeyCode::PageDown | KeyCode::Char(' ') => self.move_by(self.page.max(1) as isize),
            KeyCode::PageUp => self.move_by(-(self.page.max(1) as isize)),
            KeyCode::Char('d') if key.modifiers.contains(KeyModifiers::CONTROL) => self.move_by((self.page / 2).max(1) as isize),
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => self.move_by(-((self.page / 2).max(1) as isize)),
            KeyCode::Char('g') | KeyCode::Home => self.move_to(false),
            KeyCode::Char('G') | KeyCode::End => self.move_to(true),
            KeyCode::Tab | KeyCode::BackTab => {
                if matches!(view, View::Pattern | View::Trace | View::Session) {
                    let c = self.cursor_mut(view);
                    c.pane = if c.pane == Pane::List { Pane::Detail } else { Pane::List };
                }
            }
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Char('h') | KeyCode::Left => {
                if view == View::Patterns && !self.filter.is_empty() && key.code == KeyCode::Esc {
                    self.filter.clear();
                    self.info("filter cleared");
                } else if self.stack.len() > 1 {
                    self.stack.pop();
                }
            }
            KeyCode::Char('1') => return self.go_to_root(View::Overview),
            KeyCode::Char('2') => return self.go_to_root(View::Patterns),
            KeyCode::Char(':') => self.prompt = Some(Prompt::Search(String::new())),
            // A fresh filter each time (esc clears the current one).
            KeyCode::Char('/') if view == View::Patterns => self.prompt = Some(Prompt::Filter(String::new())),
            KeyCode::Char('u') if matches!(view, View::Patterns | View::Pattern | View::Overview) => return self.undo_triage(),
            KeyCode::Char('r') => return self.refresh(),
            KeyCode::Char('t') => {
                self.settings.window = self.settings.window.next();
                self.info(format!("window: last {}", self.settings.window.label()));
                return vec![self.load_overview()];
            }
            KeyCode::Char('p') => return self.next_project(),
            KeyCode::Char('f') if view == View::Trace => self.jump_to_failing(),
            KeyCode::Char('a') if view == View::Trace => {
                self.show_attributes = !self.show_attributes;
                self.info(if self.show_attributes { "all attributes of the span (a: hide)" } else { "attributes hidden" });
            }
            KeyCode::Char('o') if view == View::Patterns => {
                self.sort = self.sort.next();
                self.info(format!("sorted by {}", self.sort.label()));
            }
            KeyCode::Char('O') if view == View::Patterns => {
                self.reverse = !self.reverse;
                self.info(format!("sorted by {}{}", self.sort.label(), if self.reverse { ", reversed" } else { "" }));
            }
            KeyCode::Char(c @ ('a' | 'f' | 'w' | 'n')) if matches!(view, View::Patterns | View::Pattern | View::Overview) => {
                let status = match c {
                    'a' => "acknowledged",
                    'f' => "fixed",
                    'w' => "wont_fix",
                    _ => "new",
                };
                return self.triage(status);
            }
            KeyCode::Char('e') if matches!(view, View::Patterns | View::Pattern | View::Overview) => return self.export(),
            KeyCode::Char('y') => {
                if let Some((trace, _, _)) = self.selected_call() {
                    self.info(format!("copied trace id {trace} to the clipboard"));
                    return vec![Effect::Copy(trace)];
                }
                self.info("no trace selected");
            }
            KeyCode::Char('s') => return self.open_session(),
            KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => return self.open(),
            _ => {}
        }
        vec![]
    }

    pub(super) fn on_prompt_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(prompt) = self.prompt.as_mut() else { return vec![] };
        let text = match prompt {
            Prompt::Filter(t) | Prompt::Search(t) => t,
            Prompt::Export { pattern_id, again } => {
                match key.code {
                    KeyCode::Char('!') | KeyCode::Char('a') => *again = !*again,
                    KeyCode::Char(c) => {
                        if let Some((_, format)) = EXPORT_FORMATS.iter().find(|(k, _)| *k == c) {
                            let (pattern_id, again) = (pattern_id.clone(), *again);
                            self.prompt = None;
                            let project = self.project().to_string();
                            return vec![self.run(
                                Slot::Action,
                                &format!("exporting eval cases of {} ({format})", short(&pattern_id)),
                                Request::Export { project, pattern_id, format: format.to_string(), again },
                            )];
                        }
                    }
                    KeyCode::Esc => self.prompt = None,
                    _ => {}
                }
                return vec![];
            }
        };
        match key.code {
            KeyCode::Esc => {
                if matches!(prompt, Prompt::Filter(_)) {
                    self.filter.clear();
                }
                self.prompt = None;
            }
            KeyCode::Enter => {
                let prompt = self.prompt.take();
                if let Some(Prompt::Search(q)) = prompt {
                    return self.start_search(q);
                }
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) => text.push(c),
            _ => {}
        }
        if let Some(Prompt::Filter(t)) = &self.prompt {
            self.filter = t.clone();
            self.cursor_mut(View::Patterns).selected = 0;
        }
        vec![]
    }
}
