//! Every screen rendered from fixtures on a `TestBackend`, at 80×24 and 120×40, asserting the
//! text a user would read.

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::render;
use crate::app::{App, View};
use crate::fixtures;
use crate::theme::Theme;

fn screen(app: &App, w: u16, h: u16, color: bool) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| render(f, app, &Theme::new(color))).unwrap();
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
    let s = screen(&app, 120, 40, true);
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
    let small = screen(&app, 80, 24, false);
    assert_all(&small, &["refund policy", "↑ growing", "support", "new", "? help"]);
    assert!(small.lines().all(|l| l.chars().count() == 80));
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
fn search_results_and_help() {
    let mut app = app_on(View::Search);
    assert_all(&screen(&app, 80, 24, true), &["search `refund`: 1 calls", "4bf92f35", "Can I get a refund"]);
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
    terminal.draw(|f| render(f, &app, &Theme::new(false))).unwrap();
    let buf = terminal.backend().buffer();
    assert!(buf.content().iter().all(|c| c.fg == ratatui::style::Color::Reset && c.bg == ratatui::style::Color::Reset));
}
