//! Every screen rendered from fixtures on a `TestBackend`, at 80×24 and 120×40, asserting the
//! text a user would read.

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::render;
use crate::app::{App, View};
use crate::fixtures;
use crate::model::ReadinessLine;
use crate::theme::Theme;

fn screen(app: &App, w: u16, h: u16, color: bool) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal
        .draw(|f| {
            render(f, app, &Theme::new(color));
        })
        .unwrap();
    let buf = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        for x in 0..w {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn app_on(view: View) -> App {
    let mut app = App::new(fixtures::settings());
    app.patterns = Some(fixtures::patterns());
    app.overview = Some(fixtures::overview());
    app.pattern = Some(fixtures::pattern_detail(fixtures::patterns().remove(0)));
    app.trace = Some(fixtures::trace_view());
    app.session = Some(fixtures::session_view());
    app.search = Some(fixtures::search());
    app.stack = vec![View::Patterns];
    if view != View::Patterns {
        app.stack.push(view);
    }
    app
}

fn assert_all(screen: &str, expected: &[&str]) {
    for e in expected {
        assert!(screen.contains(e), "`{e}` not on screen:\n{screen}");
    }
}

#[test]
fn patterns_table() {
    let app = app_on(View::Patterns);
    // At 200 columns every column shows; at 120 signals go first so that the label keeps 40.
    let mid = screen(&app, 120, 40, true);
    assert_all(&mid, &["refund policy hallucinated: invents a 90-day w", "↑ growing", "acknowledged", "gpt-4o-mini"]);
    let s = screen(&app, 200, 40, true);
    assert_all(
        &s,
        &[
            "project shop",
            "patterns (4)",
            "refund policy hallucinated",
            "↑ growing",
            "✚ new",
            "↓ shrinking",
            "✓ resolved",
            "acknowledged",
            "thumbs_down 19",
            "gpt-4o-mini",
            "impact = users × severity",
        ],
    );
    // Impact order: 41×0.9 > 30×0.5 > 12×0.6 > 3×0.4.
    let order: Vec<usize> =
        ["refund policy", "rate limited", "answer truncated", "wrong language"].iter().map(|l| s.find(l).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{s}");
    assert!(s.contains("impact▼"), "the sort column is marked:\n{s}");
    // 80×24: the label keeps at least 40 characters; short trend and triage.
    let small = screen(&app, 80, 24, false);
    assert_all(&small, &["refund policy hallucinated: invents a 90", "↑ grow", "support", "new", "? help", "impact▼"]);
    assert!(small.lines().all(|l| l.chars().count() == 80));
    // 50 columns: the compact layout — impact, trend, label, users — and the help hint kept.
    let tiny = screen(&app, 50, 15, false);
    assert_all(&tiny, &["refund policy halluc", "↑ grow", "? help", "users"]);
    assert!(!tiny.contains("triage"), "{tiny}");
    assert!(tiny.lines().all(|l| l.chars().count() == 50));
}

#[test]
fn patterns_filter_and_empty_states() {
    let mut app = app_on(View::Patterns);
    app.filter = "coding".into();
    let s = screen(&app, 80, 24, true);
    assert_all(&s, &["patterns (1 of 4)", "answer truncated", "filter /coding"]);
    assert!(!s.contains("refund policy"));
    app.patterns = Some(vec![]);
    app.filter.clear();
    assert_all(&screen(&app, 80, 24, true), &["no failure patterns yet"]);
}

#[test]
fn overview_sparklines_and_top_patterns() {
    let app = app_on(View::Overview);
    for (w, h) in [(80, 24), (120, 40)] {
        let s = screen(&app, w, h, true);
        assert_all(
            &s,
            &["last 7d per hour", "calls", "failure rate", "thumbs_down rate", "cost", "12.0%", "$42.50", "top patterns", "refund policy"],
        );
        assert!(s.contains('█') && s.contains('▃'), "sparklines drawn:\n{s}");
    }
}

#[test]
fn overview_lists_the_questions_answered_two_ways() {
    use flywheel_schemas::failure::{Contrast, Stance};
    let mut app = app_on(View::Overview);
    let stance = |facts: &str, calls| Stance { facts: vec![facts.into()], calls, ..Default::default() };
    app.overview.as_mut().unwrap().inconsistent = vec![Contrast {
        question: "Are gift cards refundable?".into(),
        asked: 20,
        sessions: 19,
        answers: vec![stance("no", 17), stance("yes", 3)],
    }];
    let s = screen(&app, 120, 40, true);
    assert_all(&s, &["inconsistent answers", "“Are gift cards refundable?” no (17) vs yes (3)  asked 20", "top patterns"]);
}

#[test]
fn overview_shows_each_features_readiness_when_the_analyzer_gave_it() {
    let mut app = app_on(View::Overview);
    app.readiness = vec![
        ReadinessLine { feature: "support".into(), level: "draft".into(), reason: "held at `draft` by failures 6.0 % > 5.0 %".into() },
        ReadinessLine { feature: "checkout".into(), level: "not enough data".into(), reason: "too little traffic".into() },
    ];
    let s = screen(&app, 120, 40, true);
    assert_all(
        &s,
        &["readiness", "support", "draft", "held at `draft` by failures", "checkout", "not enough data", "top patterns", "refund policy"],
    );
    // On a small screen the top patterns keep their rows: readiness gives way.
    let s = screen(&app, 80, 14, true);
    assert!(s.contains("top patterns"), "{s}");
}

#[test]
fn pattern_detail() {
    let app = app_on(View::Pattern);
    let s = screen(&app, 120, 40, true);
    assert_all(
        &s,
        &[
            "refund policy hallucinated",
            "p-refund-0001",
            "↑ growing",
            "terms refund, policy, hallucinated",
            "features",
            "support 5",
            "models",
            "gpt-4o-mini 5",
            "reasons",
            "thumbs_down 5",
            "signals",
            "timeline (57 members)",
            "members: 5 nearest of 57",
            "Can I get a refund",
        ],
    );
    let small = screen(&app, 80, 24, false);
    assert_all(&small, &["refund policy hallucinated", "features", "members: 5 nearest", "Can I get a refund"]);
}

#[test]
fn an_inconsistent_member_shows_the_answers_side_by_side() {
    use flywheel_schemas::failure::{Contrast, Stance};
    let mut app = app_on(View::Pattern);
    let stance = |facts: &str, text: &str, calls, reference, this| Stance {
        text: text.into(),
        facts: vec![facts.into()],
        calls,
        sessions: calls,
        accepted: u32::from(reference),
        rejected: 0,
        reference,
        this,
    };
    let contrast = Contrast {
        question: "How long do I have to return an item?".into(),
        asked: 12,
        sessions: 11,
        answers: vec![
            stance("30 days", "You can return unused items within 30 days of delivery.", 9, true, false),
            stance("14 days", "Returns are accepted for 14 days after purchase.", 3, false, true),
        ],
    };
    app.pattern.as_mut().unwrap().members[0].contrast = Some(contrast);
    let s = screen(&app, 120, 40, true);
    assert_all(
        &s,
        &[
            "asked 12 times in 11 sessions: answers side by side",
            "reference: 30 days",
            "9 calls · 9 sessions · ✓1 ✗0",
            "this answer: 14 days",
            "within 30 days of delivery",
            "accepted for 14 days",
        ],
    );
    // Side by side: both answers start on one line.
    assert!(s.lines().any(|l| l.contains("reference: 30 days") && l.contains("this answer: 14 days")), "{s}");
    // Too small a screen keeps the member table whole.
    assert!(!screen(&app, 80, 24, false).contains("side by side"));
}

#[test]
fn trace_waterfall_and_conversation() {
    let mut app = app_on(View::Trace);
    app.cursors.entry("trace").or_default().selected = app.trace.as_ref().unwrap().focus_index();
    let s = screen(&app, 120, 40, true);
    assert_all(
        &s,
        &[
            fixtures::TRACE,
            "support.answer",
            "  tool lookup_policy",
            "  ◆ chat gpt-4o-mini",
            "2.1s",
            "1.8s",
            "▌system",
            "You are the support assistant",
            "▌user",
            "→ tool call lookup_policy({\"topic\":\"refunds\"})",
            "← tool result [call_1] refunds within 30 days",
            "▌assistant",
            "tokens in 812 out 64",
            "cost $0.0004",
            "finish stop",
            "failing: thumbs_down, edit",
            "thumbs_down",
            "wrong policy",
            "[-Yes,-] {+No,+}",
            "[-90-] {+30+}",
        ],
    );
    let small = screen(&app, 80, 24, false);
    assert_all(&small, &["support.answer", "chat gpt-4o-mini", "gpt-4o-mini (openai)"]);
}

#[test]
fn session_turns() {
    let mut app = app_on(View::Session);
    app.cursors.entry("session").or_default().selected = 1;
    let s = screen(&app, 120, 40, true);
    assert_all(
        &s,
        &[
            "session sess-42",
            "user user-0",
            "3 turns",
            "✗ error_status",
            "thumbs_down,regenerate",
            "error RateLimitError 429 Too Many Requests",
        ],
    );
    assert_all(&screen(&app, 80, 24, false), &["session sess-42", "✓", "✗"]);
}

#[test]
fn an_agent_turn_lists_its_model_calls_and_shows_the_failing_one() {
    let mut app = app_on(View::Session);
    let s = app.session.as_mut().unwrap();
    // The first turn's agent asks a tool, then answers: one turn of two calls.
    let mut ask = s.turns[0].calls[0].clone();
    ask.output = vec![flywheel_schemas::messages::Message {
        role: "assistant".into(),
        name: None,
        parts: vec![flywheel_schemas::messages::Part::ToolCall {
            id: None,
            name: "lookup_policy".into(),
            arguments: serde_json::json!({}),
        }],
        finish_reason: Some("tool_calls".into()),
    }];
    ask.reasons = vec!["tool_error".into()];
    ask.start -= time::Duration::seconds(5);
    s.turns[0].calls.insert(0, ask);
    let screen = screen(&app, 120, 40, true);
    assert_all(&screen, &["3 turns", "calls", "2 model calls in this turn", "asked for lookup_policy ✗ tool_error", "answered ✓"]);
}

#[test]
fn search_results_and_help() {
    let mut app = app_on(View::Search);
    assert_all(&screen(&app, 120, 24, true), &["search `refund`: 1 calls, 1 failing", "4bf92f35", "✘ thumbs_down", "Can I get a refund"]);
    // At the limit the title says there may be more.
    let mut at_limit = app_on(View::Search);
    at_limit.search.as_mut().unwrap().limit = 1;
    assert_all(&screen(&at_limit, 120, 24, true), &["the newest 1 calls (the limit: refine the search"]);
    app.help = true;
    let s = screen(&app, 80, 24, true);
    for (keys, what) in super::help::KEYS.iter().take(17) {
        assert!(s.contains(keys) && s.contains(&what[..what.len().min(20)]), "help lists `{keys}`:\n{s}");
    }
}

#[test]
fn loading_and_errors_show_in_the_status_line() {
    let mut app = App::new(fixtures::settings());
    let _ = app.start();
    assert_all(&screen(&app, 80, 24, true), &["loading patterns"]);
    app.status = crate::app::Status { text: "error: connection refused".into(), error: true };
    assert_all(&screen(&app, 80, 24, true), &["error: connection refused"]);
}

#[test]
fn no_color_mode_uses_no_colours() {
    let app = app_on(View::Trace);
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    terminal
        .draw(|f| {
            render(f, &app, &Theme::new(false));
        })
        .unwrap();
    let buf = terminal.backend().buffer();
    assert!(buf.content().iter().all(|c| c.fg == ratatui::style::Color::Reset && c.bg == ratatui::style::Color::Reset));
}

/// The issue's bug: `tab` then `G`/`PgDn` in a trace scrolled past the end and left the pane
/// blank. The render measures how far the detail pane can scroll; the app stops there.
#[test]
fn detail_scroll_stops_at_the_last_line() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    const H: u16 = 14;
    let draw = |app: &App| {
        let mut terminal = Terminal::new(TestBackend::new(80, H)).unwrap();
        let mut measured = super::Measured::default();
        terminal.draw(|f| measured = render(f, app, &Theme::new(false))).unwrap();
        let buf = terminal.backend().buffer().clone();
        let rows: Vec<String> = (0..H).map(|y| (0..80).map(|x| buf[(x, y)].symbol().to_string()).collect()).collect();
        (measured, rows)
    };
    let mut app = app_on(View::Trace);
    // The model call (third span): its conversation is longer than the pane.
    app.on_key(KeyEvent::new(KeyCode::Char('G'), KeyModifiers::NONE));
    let (measured, _) = draw(&app);
    let max = measured.max_scroll;
    app.rendered(measured);
    assert!(max > 0, "the fixture's call is longer than the pane at 80×14");
    app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    app.on_key(KeyEvent::new(KeyCode::Char('G'), KeyModifiers::NONE));
    assert_eq!(app.cursor(View::Trace).scroll, max);
    let (_, at_end) = draw(&app);
    for _ in 0..3 {
        app.on_key(KeyEvent::new(KeyCode::PageDown, KeyModifiers::NONE));
        app.on_key(KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE));
    }
    assert_eq!(app.cursor(View::Trace).scroll, max, "scrolling stops at the last line");
    let (_, after) = draw(&app);
    assert_eq!(after, at_end);
    // The last content row of the detail pane (above its border and the status line) has text.
    assert!(at_end[H as usize - 3].trim_matches(|c: char| c == '│' || c.is_whitespace()).len() > 2, "blank pane:\n{}", at_end.join("\n"));
    // A smaller screen (or shorter content) pulls the scroll back within the text.
    app.rendered(super::Measured { max_scroll: 1, anchor: None });
    assert_eq!(app.cursor(View::Trace).scroll, 1);
}

/// The trace is the evidence: the call's parameters, prompt version, the tools it was offered
/// and its system instructions; a tool span's input and output; every attribute on `a`; `f`
/// jumps to the failing call's answer.
#[test]
fn trace_evidence_attributes_and_the_failing_answer() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let key = |c: char| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    let mut app = app_on(View::Trace);
    app.on_key(key('G'));
    let s = screen(&app, 200, 60, false);
    assert_all(
        &s,
        &["params temperature 0.2 · max_tokens 256 · prompt support-answer@v14", "tools offered (1)", "lookup_policy — Find the policy"],
    );
    // The fixture's conversation has its own system message: the instructions are not repeated.
    assert_eq!(s.matches("▌system").count(), 1, "{s}");

    // The tool span: what it was given and what it returned.
    app.on_key(key('k'));
    let s = screen(&app, 120, 40, false);
    assert_all(&s, &["input", r#"{"topic": "refunds"}"#, "output", "refunds within 30 days", "a: all 4 attributes"]);
    app.on_key(key('a'));
    let s = screen(&app, 120, 40, false);
    assert_all(&s, &["attributes (4)", "gen_ai.tool.name lookup_policy", "gen_ai.operation.name execute_tool"]);

    // `f`: the failing call is selected and its answer is the first line of the pane.
    app.on_key(key('g'));
    app.on_key(key('f'));
    let mut terminal = Terminal::new(TestBackend::new(80, 16)).unwrap();
    let mut measured = super::Measured::default();
    terminal.draw(|f| measured = render(f, &app, &Theme::new(false))).unwrap();
    assert!(app.rendered(measured), "the jump asks for another frame");
    assert!(measured.anchor.is_some_and(|a| a > 0), "{measured:?}");
    assert_eq!(app.cursor(View::Trace).scroll, measured.anchor.unwrap());
    let s = screen(&app, 80, 16, false);
    assert!(s.contains("▌assistant") && s.contains("Yes, refunds are possible up to 90 days."), "{s}");
    assert!(!s.contains("Can I get a refund after 60 days?"), "scrolled past the question:\n{s}");
}
