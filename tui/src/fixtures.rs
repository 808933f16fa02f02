//! Fixture view models for the tests: a support assistant with a hallucinated refund policy,
//! truncated answers and a rate-limit pattern.

use std::collections::BTreeMap;

use flywheel_schemas::messages::{Message, Part};
use flywheel_schemas::rows::{PatternRow, SignalRow};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::app::Settings;
use crate::model::*;

pub const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const SESSION: &str = "sess-42";
pub const T0: OffsetDateTime = datetime!(2026-11-20 14:03:07 UTC);

pub fn settings() -> Settings {
    Settings { project: Some("shop".into()), window: Window::Week, impact: Impact::Users, user: "alice".into(), trace: None, pattern: None }
}

/// `impact`: users, severity, size.
fn pattern(id: &str, label: &str, trend: &str, status: &str, impact: (u64, f32, u64), facets: &[(&str, &str)]) -> PatternItem {
    let (users, severity, size) = impact;
    PatternItem {
        row: PatternRow {
            project_id: "shop".into(),
            pattern_id: id.into(),
            label: label.into(),
            description: format!("{label}: what users hit"),
            terms: label.split_whitespace().map(String::from).collect(),
            facets: facets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            status: status.into(),
            trend: trend.into(),
            size,
            previous_size: size / 2,
            calls: size,
            traces: size,
            sessions: size / 2,
            users,
            severity,
            cost_usd: size as f64 * 0.01,
            mean_latency_ms: 1800.0,
            signal_mix: [("thumbs_down".to_string(), size / 3), ("edit".to_string(), size / 5)].into_iter().collect(),
            centroid: vec![],
            first_seen: T0 - time::Duration::days(3),
            last_seen: T0,
            fixed_at: time::OffsetDateTime::UNIX_EPOCH,
            regressed_at: time::OffsetDateTime::UNIX_EPOCH,
            regressed_in: String::new(),
            run_id: "run-1".into(),
            updated_at: T0,
        },
    }
}

pub fn patterns() -> Vec<PatternItem> {
    vec![
        pattern(
            "p-refund-0001",
            "refund policy hallucinated: invents a 90-day window for returns",
            "growing",
            "new",
            (41, 0.9, 57),
            &[("feature", "support"), ("model", "gpt-4o-mini"), ("signal", "thumbs_down")],
        ),
        pattern(
            "p-trunc-0002",
            "answer truncated at max tokens",
            "new",
            "new",
            (12, 0.6, 80),
            &[("feature", "coding"), ("model", "claude-sonnet"), ("finish_reason", "length")],
        ),
        pattern(
            "p-ratelimit-03",
            "rate limited by provider",
            "shrinking",
            "acknowledged",
            (30, 0.5, 33),
            &[("feature", "support"), ("model", "gpt-4o"), ("error_type", "RateLimitError")],
        ),
        pattern("p-lang-000004", "answered in the wrong language", "resolved", "fixed", (3, 0.4, 4), &[("feature", "support")]),
    ]
}

pub fn member(i: i64) -> Member {
    Member {
        trace_id: if i == 0 { TRACE.into() } else { format!("{i:032x}") },
        span_id: "00f067aa0ba902b7".into(),
        call_time: T0 - time::Duration::hours(i),
        distance: 0.1 * i as f32,
        session_id: SESSION.into(),
        user_id: format!("user-{i}"),
        feature: "support".into(),
        model: "gpt-4o-mini".into(),
        status: "ok".into(),
        error_type: String::new(),
        finish_reasons: vec!["stop".into()],
        input_text: "Can I get a refund after 60 days?".into(),
        output_text: "Yes, refunds are possible up to 90 days.".into(),
        reasons: vec!["thumbs_down".into(), "edit".into()],
        contrast: None,
    }
}

pub fn pattern_detail(item: PatternItem) -> PatternDetail {
    let members: Vec<Member> = (0..5).map(member).collect();
    PatternDetail {
        facets: crate::query::facets_of(&item, &members),
        item,
        timeline: vec![("11-18".into(), 3), ("11-19".into(), 9), ("11-20".into(), 21)],
        member_count: 57,
        members,
    }
}

pub fn signal(kind: &str, text: &str) -> SignalRow {
    SignalRow {
        project_id: "shop".into(),
        signal_id: format!("sig-{kind}"),
        idempotency_key: String::new(),
        kind: kind.into(),
        name: String::new(),
        source: "api".into(),
        timestamp: T0 + time::Duration::seconds(30),
        trace_id: TRACE.into(),
        span_id: String::new(),
        session_id: SESSION.into(),
        message_id: String::new(),
        user_id: "user-0".into(),
        feature: "support".into(),
        value: None,
        scale: None,
        comment: if kind == "thumbs_down" { "wrong policy".into() } else { String::new() },
        text: text.into(),
        edit_distance: None,
        edit_ratio: if kind == "edit" { Some(0.4) } else { None },
        link_status: "linked".into(),
        attributes: BTreeMap::new(),
        ingested_at: T0,
    }
}

pub fn call(trace_id: &str, start: OffsetDateTime, failing: bool) -> CallView {
    CallView {
        trace_id: trace_id.into(),
        span_id: "00f067aa0ba902b7".into(),
        session_id: SESSION.into(),
        user_id: "user-0".into(),
        feature: "support".into(),
        model: "gpt-4o-mini".into(),
        provider: "openai".into(),
        start,
        duration_ns: 1_840_000_000,
        input: vec![
            Message::text("system", "You are the support assistant of Shop."),
            Message::text("user", "Can I get a refund after 60 days?"),
            Message {
                role: "assistant".into(),
                name: None,
                parts: vec![Part::ToolCall {
                    id: Some("call_1".into()),
                    name: "lookup_policy".into(),
                    arguments: serde_json::json!({"topic": "refunds"}),
                }],
                finish_reason: None,
            },
            Message {
                role: "tool".into(),
                name: None,
                parts: vec![Part::ToolCallResponse { id: Some("call_1".into()), response: serde_json::json!("refunds within 30 days") }],
                finish_reason: None,
            },
        ],
        output: vec![Message {
            finish_reason: Some("stop".into()),
            ..Message::text("assistant", "Yes, refunds are possible up to 90 days.")
        }],
        input_text: "Can I get a refund after 60 days?".into(),
        output_text: "Yes, refunds are possible up to 90 days.".into(),
        input_tokens: 812,
        output_tokens: 64,
        cache_read_tokens: 0,
        reasoning_tokens: 0,
        cost_usd: Some(0.00042),
        finish_reasons: vec!["stop".into()],
        status: if failing { "error".into() } else { "ok".into() },
        error_type: if failing { "RateLimitError".into() } else { String::new() },
        error_message: if failing { "429 Too Many Requests".into() } else { String::new() },
        reasons: if failing { vec!["error_status".into()] } else { vec![] },
        params: vec![
            ("temperature".into(), "0.2".into()),
            ("max_tokens".into(), "256".into()),
            ("prompt".into(), "support-answer@v14".into()),
        ],
        system: Some("You are the support assistant of Shop. Refunds: 30 days from delivery.".into()),
        tools: vec!["lookup_policy — Find the policy on a topic".into()],
        system_hash: "h-system".into(),
        tools_hash: "h-tools".into(),
    }
}

fn span(id: &str, parent: &str, name: &str, offset_ms: i64, ms: u64, call: Option<CallView>) -> SpanNode {
    SpanNode {
        span_id: id.into(),
        parent_span_id: parent.into(),
        name: name.into(),
        depth: 0,
        start: T0 + time::Duration::milliseconds(offset_ms),
        duration_ns: ms * 1_000_000,
        status_code: String::new(),
        status_message: String::new(),
        attributes: if name.starts_with("tool ") {
            vec![
                ("gen_ai.operation.name".into(), "execute_tool".into()),
                ("gen_ai.tool.call.arguments".into(), r#"{"topic": "refunds"}"#.into()),
                ("gen_ai.tool.call.result".into(), "refunds within 30 days".into()),
                ("gen_ai.tool.name".into(), "lookup_policy".into()),
            ]
        } else {
            vec![]
        },
        events: vec![],
        call,
    }
}

pub fn trace_view() -> TraceView {
    let nodes = vec![
        span(
            "00f067aa0ba902b7",
            "a000000000000001",
            "chat gpt-4o-mini",
            120,
            1840,
            Some(CallView { reasons: vec!["thumbs_down".into(), "edit".into()], ..call(TRACE, T0, false) }),
        ),
        span("a000000000000001", "", "support.answer", 0, 2100, None),
        span("b000000000000002", "a000000000000001", "tool lookup_policy", 40, 60, None),
    ];
    let signals = vec![signal("thumbs_down", ""), signal("edit", "No, refunds are possible up to 30 days.")];
    crate::query::trace_view(TRACE, nodes, signals)
}

pub fn session_view() -> SessionView {
    let turns = vec![
        call(TRACE, T0, false),
        call("5bf92f3577b34da6a3ce929d0e0e4737", T0 + time::Duration::minutes(1), true),
        call("6bf92f3577b34da6a3ce929d0e0e4738", T0 + time::Duration::minutes(2), false),
    ];
    let signals = vec![signal("thumbs_down", ""), signal("regenerate", "")];
    crate::query::session_view(SESSION, "user-0".into(), turns, signals)
}

pub fn overview() -> Overview {
    let hours = 48;
    let calls: Vec<f64> = (0..hours).map(|h| 100.0 + (h % 24) as f64 * 10.0).collect();
    Overview {
        project: "shop".into(),
        window: Some(Window::Week),
        series: vec![
            Series { name: "calls".into(), total: calls.iter().sum(), values: calls, unit: Unit::Count },
            Series {
                name: "failure rate".into(),
                total: 0.12,
                values: (0..hours).map(|h| 0.05 + (h % 5) as f64 * 0.03).collect(),
                unit: Unit::Rate,
            },
            Series { name: "thumbs_down rate".into(), total: 0.031, values: vec![0.03; hours], unit: Unit::Rate },
            Series { name: "cost".into(), total: 42.5, values: vec![1.0; hours], unit: Unit::Dollars },
        ],
        top_patterns: patterns().into_iter().take(3).collect(),
        projects: vec!["shop".into(), "docs-bot".into()],
        inconsistent: Vec::new(),
    }
}

pub fn search() -> SearchResults {
    SearchResults {
        query: "refund".into(),
        limit: 100,
        hits: vec![SearchHit {
            trace_id: TRACE.into(),
            span_id: "00f067aa0ba902b7".into(),
            session_id: SESSION.into(),
            user_id: "user-0".into(),
            feature: "support".into(),
            model: "gpt-4o-mini".into(),
            start: T0,
            status: "ok".into(),
            snippet: "Can I get a refund after 60 days?".into(),
            reasons: vec!["thumbs_down".into()],
        }],
    }
}
