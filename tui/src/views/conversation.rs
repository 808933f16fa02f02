//! An LLM call as readable text: the messages by role (system, user, assistant, tool calls with
//! their arguments, tool results), then tokens, cost, finish reason, error, failure reasons and
//! the user's signals, with a word diff for edits.

use flywheel_schemas::messages::{Message, Part};
use flywheel_schemas::rows::SignalRow;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::{fmt_duration, fmt_time};
use crate::model::CallView;
use crate::theme::Theme;

pub fn call_lines(call: &CallView, signals: &[&SignalRow], theme: &Theme) -> Vec<Line<'static>> {
    call_lines_anchored(call, signals, theme).0
}

/// The call's lines and the index of the first line of its answer (where `f` jumps to).
pub fn call_lines_anchored(call: &CallView, signals: &[&SignalRow], theme: &Theme) -> (Vec<Line<'static>>, usize) {
    let mut lines = vec![];
    let model = if call.provider.is_empty() { call.model.clone() } else { format!("{} ({})", call.model, call.provider) };
    lines.push(Line::from(vec![
        Span::styled(model, theme.title()),
        Span::raw(format!("  {}  {}", fmt_time(call.start), fmt_duration(call.duration_ns))),
        Span::styled(if call.feature.is_empty() { String::new() } else { format!("  feature {}", call.feature) }, theme.accent()),
    ]));
    let mut tokens = format!("tokens in {} out {}", call.input_tokens, call.output_tokens);
    if call.cache_read_tokens > 0 {
        tokens.push_str(&format!(" cached {}", call.cache_read_tokens));
    }
    if call.reasoning_tokens > 0 {
        tokens.push_str(&format!(" reasoning {}", call.reasoning_tokens));
    }
    let cost = call.cost_usd.map_or("cost ?".to_string(), |c| format!("cost ${c:.4}"));
    let finish = if call.finish_reasons.is_empty() { "-".to_string() } else { call.finish_reasons.join(",") };
    lines.push(Line::from(format!("{tokens}  {cost}  finish {finish}")));
    if !call.params.is_empty() {
        let params: Vec<String> = call.params.iter().map(|(k, v)| format!("{k} {v}")).collect();
        lines.push(Line::from(vec![Span::styled("params ", theme.dim()), Span::raw(params.join(" · "))]));
    }
    if call.status == "error" || !call.error_type.is_empty() || !call.error_message.is_empty() {
        lines.push(Line::from(vec![
            Span::styled("error ", theme.error()),
            Span::styled(format!("{} {}", call.error_type, call.error_message).trim().to_string(), theme.error()),
        ]));
    }
    if !call.reasons.is_empty() {
        lines.push(Line::from(vec![Span::styled("failing: ", theme.error()), Span::raw(call.reasons.join(", "))]));
    }
    if !call.session_id.is_empty() || !call.user_id.is_empty() {
        lines.push(Line::styled(format!("session {}  user {}", call.session_id, call.user_id), theme.dim()));
    }
    if !call.tools.is_empty() {
        lines.push(Line::styled(format!("tools offered ({})", call.tools.len()), theme.dim()));
        for t in &call.tools {
            lines.push(Line::from(vec![Span::styled("  ◇ ", theme.role("tool")), Span::raw(t.clone())]));
        }
    }
    lines.push(Line::raw(""));
    // The system instructions, unless the conversation already carries them as a message.
    if let Some(system) = &call.system
        && !call.input.iter().any(|m| m.role == "system" || m.role == "developer")
    {
        lines.extend(message_lines(&Message::text("system", system.clone()), theme));
    }
    if call.input.is_empty() && !call.input_text.is_empty() {
        lines.extend(message_lines(&Message::text("user", call.input_text.clone()), theme));
    }
    for m in &call.input {
        lines.extend(message_lines(m, theme));
    }
    let anchor = lines.len();
    if call.output.is_empty() && !call.output_text.is_empty() {
        lines.extend(message_lines(&Message::text("assistant", call.output_text.clone()), theme));
    }
    for m in &call.output {
        lines.extend(message_lines(m, theme));
    }
    if call.input.is_empty() && call.output.is_empty() && call.input_text.is_empty() && call.output_text.is_empty() {
        lines.push(Line::styled("(no message content recorded)", theme.dim()));
    }
    if !signals.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled("signals", theme.header()));
        for s in signals {
            lines.extend(signal_lines(s, &call.output_text, theme));
        }
    }
    (lines, anchor)
}

fn message_lines(m: &Message, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = vec![];
    let mut head = vec![Span::styled(format!("▌{}", m.role), theme.role(&m.role))];
    if let Some(name) = &m.name {
        head.push(Span::styled(format!(" ({name})"), theme.dim()));
    }
    if let Some(f) = &m.finish_reason {
        head.push(Span::styled(format!("  finish {f}"), theme.dim()));
    }
    lines.push(Line::from(head));
    for p in &m.parts {
        match p {
            Part::Text { content } => lines.extend(content.lines().map(|l| Line::raw(format!("  {l}")))),
            Part::Reasoning { content } => lines.extend(content.lines().map(|l| Line::styled(format!("  (thinking) {l}"), theme.dim()))),
            Part::ToolCall { id, name, arguments } => {
                let args = flywheel_schemas::messages::parse_arguments(arguments);
                let args = serde_json::to_string(&args).unwrap_or_default();
                let id = id.as_deref().map(|i| format!(" [{i}]")).unwrap_or_default();
                lines.push(Line::from(vec![
                    Span::styled("  → tool call ", theme.role("tool")),
                    Span::styled(format!("{name}({args})"), theme.key()),
                    Span::styled(id, theme.dim()),
                ]));
            }
            Part::ToolCallResponse { id, response } => {
                let text = match response {
                    serde_json::Value::String(s) => s.clone(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                };
                let id = id.as_deref().map(|i| format!(" [{i}]")).unwrap_or_default();
                lines.push(Line::from(vec![Span::styled(format!("  ← tool result{id} "), theme.role("tool")), Span::raw(text)]));
            }
            Part::Other(v) => {
                let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("part");
                lines.push(Line::styled(format!("  [{kind}]"), theme.dim()));
            }
        }
    }
    lines
}

fn signal_lines(s: &SignalRow, output: &str, theme: &Theme) -> Vec<Line<'static>> {
    let icon = match s.kind.as_str() {
        "thumbs_up" => "▲",
        "thumbs_down" => "▼",
        "edit" => "✎",
        "regenerate" | "retry" => "↻",
        _ => "•",
    };
    let mut head = format!("  {icon} {} {}", s.kind, fmt_time(s.timestamp));
    if let Some(v) = s.value {
        head.push_str(&format!("  value {v}"));
        if let Some(scale) = s.scale {
            head.push_str(&format!("/{scale}"));
        }
    }
    if let Some(r) = s.edit_ratio {
        head.push_str(&format!("  edited {:.0}%", r * 100.0));
    }
    let style = match s.kind.as_str() {
        "thumbs_up" | "copy" => theme.ok(),
        "thumbs_down" | "regenerate" | "edit" | "abandon" | "escalate" | "feature_disabled" => theme.error(),
        _ => Style::new(),
    };
    let mut lines = vec![Line::styled(head, style)];
    if !s.comment.is_empty() {
        lines.push(Line::raw(format!("    “{}”", s.comment)));
    }
    if s.kind == "edit" && !s.text.is_empty() {
        lines.push(Line::styled("    diff of the edited text ([-removed-] {+added+}):", theme.dim()));
        let mut spans = vec![Span::raw("    ")];
        spans.extend(diff_spans(output, &s.text, theme));
        lines.push(Line::from(spans));
    }
    lines
}

/// A word diff of `before` → `after` (longest common subsequence), as marked spans. Texts too
/// long for the quadratic table are shown whole instead.
pub fn diff_spans(before: &str, after: &str, theme: &Theme) -> Vec<Span<'static>> {
    let a: Vec<&str> = before.split_whitespace().collect();
    let b: Vec<&str> = after.split_whitespace().collect();
    if a.len() * b.len() > 4_000_000 {
        return vec![Span::styled(format!("[-{before}-]"), theme.removed()), Span::styled(format!(" {{+{after}+}}"), theme.added())];
    }
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops: Vec<(char, &str)> = vec![];
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push(('=', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    // Runs of the same operation become one marked span.
    let mut spans = vec![];
    let mut k = 0;
    while k < ops.len() {
        let op = ops[k].0;
        let mut words = vec![];
        while k < ops.len() && ops[k].0 == op {
            words.push(ops[k].1);
            k += 1;
        }
        let text = words.join(" ");
        spans.push(match op {
            '=' => Span::raw(format!("{text} ")),
            '-' => Span::styled(format!("[-{text}-] "), theme.removed()),
            _ => Span::styled(format!("{{+{text}+}} "), theme.added()),
        });
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_diff_marks_removed_and_added_runs() {
        let spans = diff_spans("refunds take 30 days to process", "refunds take 14 days", &Theme::new(false));
        let text: String = spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(text.trim(), "refunds take [-30-] {+14+} days [-to process-]");
    }
}
