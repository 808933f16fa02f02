//! A seeded analyzer state for the export and report tests, written straight into the tables
//! the analyzer fills (llm_calls with canonical messages, contents, signals including an edit
//! with its corrected text, failures, patterns, pattern_members, embeddings, triage).
//!
//! Project `shop`, "now" = the wall clock:
//! * `p-refund` — "refund policy: invents a 90-day window": 9 support calls of 6 users over
//!   4 days, thumbs-down (one edit, on the most central member); embeddings in three tight
//!   groups of three, so diverse representatives are one per group.
//! * `p-trunc` — "truncated code answers": 4 coding calls of one user in one session,
//!   `finish_reason:length` and regenerations; no embeddings (lexical fallback).
//! * `p-lang` — "answers in French": resolved.
//! * `p-ratelimit` — "rate limited by the provider": triaged `fixed`.
//! * 30 healthy calls in the current 7 days, 20 calls (2 failing) the 7 days before.

#![allow(dead_code)]

use flywheel_schemas::Store;
use flywheel_schemas::queries;
use flywheel_schemas::rows::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

pub const PROJECT: &str = "shop";
pub const REFUND: &str = "p-refund";
pub const REFUND_LABEL: &str = "refund policy: invents a 90-day window";
pub const TRUNC: &str = "p-trunc";
pub const TRUNC_LABEL: &str = "truncated code answers";
pub const LANG_LABEL: &str = "answers in French";
pub const RATELIMIT: &str = "p-ratelimit";
pub const EDIT_TEXT: &str = "Refunds are possible within 30 days of delivery; after that we can offer store credit.";
pub const SYSTEM: &str = "You are the support assistant of Shop. Follow the refund policy: 30 days from delivery.";
/// Calls in the current 7 days: 9 + 4 + 3 + 30 (p-lang's members are older).
pub const CURRENT_CALLS: u64 = 46;
pub const CURRENT_FAILING: u64 = 16;
pub const PREVIOUS_CALLS: u64 = 22;

pub fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub fn trace_id(tag: u32, i: u32) -> String {
    format!("{tag:08x}{i:024x}")
}

pub fn span_id(tag: u32, i: u32) -> String {
    format!("{tag:08x}{i:08x}")
}

pub fn text_messages(pairs: &[(&str, &str)]) -> String {
    let v: Vec<Value> = pairs.iter().map(|(role, text)| json!({"role": role, "parts": [{"type": "text", "content": text}]})).collect();
    Value::Array(v).to_string()
}

#[derive(Default)]
pub struct Seed {
    pub now: Option<OffsetDateTime>,
    pub calls: Vec<LlmCallRow>,
    pub contents: Vec<ContentRow>,
    pub signals: Vec<SignalRow>,
    pub failures: Vec<FailureRow>,
    pub patterns: Vec<PatternRow>,
    pub members: Vec<PatternMemberRow>,
    pub embeddings: Vec<EmbeddingRow>,
}

pub struct Call<'a> {
    pub tag: u32,
    pub i: u32,
    pub at: OffsetDateTime,
    pub feature: &'a str,
    pub model: &'a str,
    pub user: String,
    pub session: String,
    pub input: String,
    pub output: &'a str,
    pub finish: &'a str,
    pub error: Option<(&'a str, &'a str)>,
    pub system: Option<&'a str>,
    pub tools: Option<Value>,
}

impl Seed {
    fn now(&self) -> OffsetDateTime {
        self.now.expect("now set")
    }

    pub fn call(&mut self, c: Call<'_>) -> (String, String) {
        let (trace, span) = (trace_id(c.tag, c.i), span_id(c.tag, c.i));
        let system_hash = c.system.map(sha).unwrap_or_default();
        let tools_text = c.tools.as_ref().map(Value::to_string);
        let tools_hash = tools_text.as_deref().map(sha).unwrap_or_default();
        if let Some(s) = c.system {
            self.contents.push(ContentRow {
                project_id: PROJECT.into(),
                hash: system_hash.clone(),
                kind: "system_instructions".into(),
                content: s.into(),
                last_seen: c.at,
            });
        }
        if let Some(t) = &tools_text {
            self.contents.push(ContentRow {
                project_id: PROJECT.into(),
                hash: tools_hash.clone(),
                kind: "tool_definitions".into(),
                content: t.clone(),
                last_seen: c.at,
            });
        }
        let output_messages = if c.output.is_empty() {
            "[]".to_string()
        } else {
            json!([{"role": "assistant", "parts": [{"type": "text", "content": c.output}], "finish_reason": c.finish}]).to_string()
        };
        let input_text = serde_json::from_str::<Vec<flywheel_schemas::messages::Message>>(&c.input)
            .unwrap()
            .iter()
            .map(|m| m.text_content())
            .collect::<Vec<_>>()
            .join("\n");
        self.calls.push(LlmCallRow {
            project_id: PROJECT.into(),
            trace_id: trace.clone(),
            span_id: span.clone(),
            parent_span_id: String::new(),
            session_id: c.session,
            user_id: c.user,
            feature: c.feature.into(),
            service_name: "shop-api".into(),
            operation: "chat".into(),
            provider: "openai".into(),
            request_model: c.model.into(),
            response_model: c.model.into(),
            response_id: format!("resp-{}-{}", c.tag, c.i),
            start_time: c.at,
            end_time: c.at + Duration::milliseconds(1200),
            duration_ns: 1_200_000_000,
            time_to_first_token_ns: None,
            input_messages: c.input,
            output_messages,
            system_instructions_hash: system_hash,
            tool_definitions_hash: tools_hash,
            input_text,
            output_text: c.output.into(),
            tool_names: vec![],
            finish_reasons: if c.finish.is_empty() { vec![] } else { vec![c.finish.into()] },
            input_tokens: 300,
            output_tokens: 120,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            cost_usd: Some(0.0025),
            cost_source: "price_table".into(),
            status: if c.error.is_some() { "error".into() } else { "ok".into() },
            error_type: c.error.map(|e| e.0.to_string()).unwrap_or_default(),
            error_message: c.error.map(|e| e.1.to_string()).unwrap_or_default(),
            error_class: c
                .error
                .map(|e| flywheel_schemas::error_class::ErrorClass::classify(e.0, e.1, 0).id().to_string())
                .unwrap_or_default(),
            http_status: 0,
            temperature: Some(0.2),
            top_p: None,
            max_tokens: Some(512),
            seed: None,
            is_stream: false,
            prompt_template_id: String::new(),
            prompt_template_version: String::new(),
            convention: "genai".into(),
            input_hash: String::new(),
            metadata: Default::default(),
            ingested_at: self.now(),
        });
        (trace, span)
    }

    pub fn signal(&mut self, trace: &str, span: &str, kind: &str, at: OffsetDateTime, comment: &str, text: &str) {
        let n = self.signals.len();
        self.signals.push(SignalRow {
            project_id: PROJECT.into(),
            signal_id: format!("sig-{n}"),
            idempotency_key: format!("sig-{n}"),
            kind: kind.into(),
            name: String::new(),
            source: "api".into(),
            timestamp: at + Duration::seconds(30),
            trace_id: trace.into(),
            span_id: span.into(),
            session_id: String::new(),
            message_id: String::new(),
            user_id: String::new(),
            feature: String::new(),
            value: if kind == "thumbs_down" { Some(0.0) } else { None },
            scale: None,
            comment: comment.into(),
            text: text.into(),
            edit_distance: None,
            edit_ratio: None,
            link_status: "linked".into(),
            attributes: Default::default(),
            ingested_at: self.now(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub fn failure(&mut self, trace: &str, span: &str, reasons: &[&str], details: Value, pattern: Option<(&str, f32)>) {
        let call = self.calls.iter().find(|c| c.trace_id == trace).unwrap().clone();
        let categories: Vec<String> = reasons
            .iter()
            .map(|r| if ["thumbs_down", "regenerate", "edit"].contains(r) { "implicit" } else { "explicit" }.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.failures.push(FailureRow {
            project_id: PROJECT.into(),
            trace_id: trace.into(),
            span_id: span.into(),
            session_id: call.session_id.clone(),
            user_id: call.user_id.clone(),
            feature: call.feature.clone(),
            model: call.response_model.clone(),
            call_time: call.start_time,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            categories,
            severity: 0.7,
            details: details.to_string(),
            run_id: "run-1".into(),
            detected_at: self.now(),
        });
        if let Some((pattern, distance)) = pattern {
            self.members.push(PatternMemberRow {
                project_id: PROJECT.into(),
                pattern_id: pattern.into(),
                run_id: "run-1".into(),
                trace_id: trace.into(),
                span_id: span.into(),
                call_time: call.start_time,
                distance,
                added_at: self.now(),
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn pattern(&mut self, id: &str, label: &str, trend: &str, feature: &str, model: &str, terms: &[&str], users: u64, previous: u64) {
        let members: Vec<&PatternMemberRow> = self.members.iter().filter(|m| m.pattern_id == id).collect();
        let size = members.len() as u64;
        let first = members.iter().map(|m| m.call_time).min().unwrap();
        let last = members.iter().map(|m| m.call_time).max().unwrap();
        self.patterns.push(PatternRow {
            project_id: PROJECT.into(),
            pattern_id: id.into(),
            label: label.into(),
            description: format!("{size} failing calls in {feature} on {model}"),
            terms: terms.iter().map(|t| t.to_string()).collect(),
            facets: [("feature".to_string(), feature.to_string()), ("model".to_string(), model.to_string())].into(),
            status: "new".into(),
            trend: trend.into(),
            size: if trend == "resolved" { 0 } else { size },
            previous_size: previous,
            calls: size,
            traces: size,
            sessions: users,
            users,
            severity: 0.7,
            cost_usd: size as f64 * 0.0025,
            mean_latency_ms: 1200.0,
            signal_mix: Default::default(),
            centroid: vec![],
            first_seen: first,
            last_seen: last,
            fixed_at: time::OffsetDateTime::UNIX_EPOCH,
            regressed_at: time::OffsetDateTime::UNIX_EPOCH,
            regressed_in: String::new(),
            run_id: "run-1".into(),
            updated_at: self.now(),
        });
    }

    pub fn build(now: OffsetDateTime) -> Seed {
        let mut s = Seed { now: Some(now), ..Default::default() };
        let tools = json!([{"name": "lookup_order", "description": "Find an order", "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}]);
        let day = Duration::days(1);

        // p-refund: three groups of three in embedding space, 6 users over 4 days.
        let openers = ["Can I get a refund for order", "I want my money back for order", "Is it too late to return order"];
        let answers = [
            "Yes! Our policy allows refunds within 90 days of purchase, so you are covered.",
            "Absolutely, refunds are accepted up to 90 days after purchase; I have started it.",
            "No problem: you have a 90-day refund window, simply reply with your order number.",
        ];
        for i in 0..9u32 {
            let group = (i % 3) as usize;
            let at = now - day * (i / 3 + 1) as i32 + Duration::minutes(i as i64 * 7);
            let question = format!("{} #{} bought {} days ago?", openers[group], 1000 + i, 40 + i);
            let input = if i == 1 {
                json!([
                    {"role": "user", "parts": [{"type": "text", "content": question}]},
                    {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "lookup_order", "arguments": {"order_id": "1001"}}]},
                    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"status": "delivered", "days_ago": 41}}]}
                ])
                .to_string()
            } else {
                text_messages(&[("user", &question)])
            };
            let (t, sp) = s.call(Call {
                tag: 0xa1,
                i,
                at,
                feature: "support",
                model: "gpt-4o-mini",
                user: format!("user-{}", i % 6),
                session: format!("sess-r{i}"),
                input,
                output: answers[group],
                finish: "stop",
                error: None,
                system: Some(SYSTEM),
                tools: Some(tools.clone()),
            });
            let text = format!("{question}\n{}", answers[group]);
            let mut vector = vec![0.0f32; 3];
            vector[group] = 1.0;
            vector[(group + 1) % 3] = 0.02 * i as f32;
            s.embeddings.push(EmbeddingRow {
                project_id: PROJECT.into(),
                model: "minilm-test".into(),
                text_hash: sha(&text),
                vector,
                created_at: now,
            });
            // Members ordered by distance: group 0 first (0, 3, 6), then the others.
            let distance = if group == 0 { 0.05 + 0.01 * i as f32 } else { 0.3 + 0.01 * i as f32 };
            let mut reasons = vec!["thumbs_down"];
            let mut details = json!({
                "text_hash": sha(&text), "request": question, "output": answers[group],
                "signals": [{"kind": "thumbs_down", "value": 0.0, "comment": if i == 3 { "that is not our policy" } else { "" }}],
                "evidence": {"thumbs_down": "the user pressed thumbs-down 30 s after the answer"},
                "latency_ms": 1200.0, "cost_usd": 0.0025
            });
            s.signal(&t, &sp, "thumbs_down", at, if i == 3 { "that is not our policy" } else { "" }, "");
            if i == 0 {
                reasons.push("edit");
                details["edit_text"] = json!(EDIT_TEXT);
                details["signals"].as_array_mut().unwrap().push(json!({"kind": "edit", "value": null, "comment": ""}));
                s.signal(&t, &sp, "edit", at, "", EDIT_TEXT);
            }
            s.failure(&t, &sp, &reasons, details, Some((REFUND, distance)));
        }

        // p-trunc: one user, one session, one day, no embeddings.
        for i in 0..4u32 {
            let at = now - Duration::hours(5) + Duration::minutes(i as i64 * 3);
            let question = [
                "Write a Rust function that parses ISO weeks",
                "Now add tests for week 53",
                "Make it handle lowercase w",
                "And the error type?",
            ][i as usize];
            let output = [
                "fn parse_week(s: &str) -> Option<(i32, u8)> {\n    let (y, w) = s.split_once('W')?;\n    let year = y.trim_end_matches('-')",
                "#[test]\nfn week_53() {\n    assert_eq!(parse",
                "match s.find(['W', 'w']) {\n    Some(i) =>",
                "#[derive(Debug)]\npub enum WeekError {\n    Missing",
            ][i as usize];
            let (t, sp) = s.call(Call {
                tag: 0xb2,
                i,
                at,
                feature: "coding",
                model: "claude-sonnet",
                user: "dev-1".into(),
                session: "sess-code".into(),
                input: text_messages(&[("user", question)]),
                output,
                finish: "length",
                error: None,
                system: None,
                tools: None,
            });
            s.signal(&t, &sp, "regenerate", at, "", "");
            let details =
                json!({"request": question, "output": output, "evidence": {"finish_reason:length": "the answer hit max_tokens (512)"}});
            s.failure(&t, &sp, &["finish_reason:length", "regenerate"], details, Some((TRUNC, 0.1 * i as f32)));
        }

        // p-lang: resolved, members 9 and 10 days ago.
        for i in 0..2u32 {
            let at = now - day * (9 + i as i32);
            let (t, sp) = s.call(Call {
                tag: 0xc3,
                i,
                at,
                feature: "support",
                model: "gpt-4o-mini",
                user: format!("user-fr{i}"),
                session: format!("sess-fr{i}"),
                input: text_messages(&[("user", "Where is my parcel?")]),
                output: "Votre colis est en route.",
                finish: "stop",
                error: None,
                system: Some(SYSTEM),
                tools: None,
            });
            s.failure(
                &t,
                &sp,
                &["thumbs_down"],
                json!({"request": "Where is my parcel?", "output": "Votre colis est en route."}),
                Some(("p-lang", 0.1)),
            );
        }

        // p-ratelimit: errors, triaged fixed.
        for i in 0..3u32 {
            let at = now - Duration::hours(30) + Duration::minutes(i as i64);
            let (t, sp) = s.call(Call {
                tag: 0xd4,
                i,
                at,
                feature: "support",
                model: "gpt-4o-mini",
                user: format!("user-{i}"),
                session: format!("sess-rl{i}"),
                input: text_messages(&[("user", &format!("Track order #{}", 2000 + i))]),
                output: "",
                finish: "",
                error: Some(("RateLimitError", "429 Too Many Requests")),
                system: Some(SYSTEM),
                tools: None,
            });
            s.failure(
                &t,
                &sp,
                &["error_status", "empty_output"],
                json!({"error": "RateLimitError: 429 Too Many Requests", "lane": "operations"}),
                Some((RATELIMIT, 0.0)),
            );
        }

        // Healthy traffic: 30 calls now, 20 the week before (2 failing, in no pattern).
        for i in 0..50u32 {
            let current = i < 30;
            let at = if current { now - Duration::hours(2 + i as i64 * 5) } else { now - day * 8 - Duration::hours((i - 30) as i64 * 6) };
            let feature = if i % 3 == 0 { "coding" } else { "support" };
            let (t, sp) = s.call(Call {
                tag: 0xe5,
                i,
                at,
                feature,
                model: "gpt-4o-mini",
                user: format!("user-h{}", i % 10),
                session: format!("sess-h{i}"),
                input: text_messages(&[("user", "What are your opening hours?")]),
                output: "We are open 9:00–18:00, Monday to Saturday.",
                finish: "stop",
                error: None,
                system: Some(SYSTEM),
                tools: None,
            });
            if !current && i < 32 {
                s.signal(&t, &sp, "thumbs_down", at, "", "");
                s.failure(&t, &sp, &["thumbs_down"], json!({"request": "What are your opening hours?"}), None);
            }
        }

        s.pattern(REFUND, REFUND_LABEL, "growing", "support", "gpt-4o-mini", &["refund", "90 days", "policy"], 6, 4);
        s.pattern(TRUNC, TRUNC_LABEL, "new", "coding", "claude-sonnet", &["max_tokens", "fn", "test"], 1, 0);
        s.pattern("p-lang", LANG_LABEL, "resolved", "support", "gpt-4o-mini", &["votre", "colis"], 2, 2);
        s.pattern(RATELIMIT, "rate limited by the provider", "stable", "support", "gpt-4o-mini", &["429", "rate limit"], 3, 3);
        // Rate limits are an operations failure (fixed by capacity or retries, not by a prompt).
        // The analyzer stores the cause key it grouped on; the report's advice follows it.
        let facets = &mut s.patterns.last_mut().unwrap().facets;
        facets.insert("lane".into(), "operations".into());
        facets.insert("signature".into(), "error · model · rate_limit".into());
        s
    }

    pub async fn insert(&self, store: &Store) {
        store.insert("llm_calls", &self.calls).await.unwrap();
        store.insert("contents", &self.contents).await.unwrap();
        store.insert("signals", &self.signals).await.unwrap();
        store.insert("failures", &self.failures).await.unwrap();
        store.insert("patterns", &self.patterns).await.unwrap();
        store.insert("pattern_members", &self.members).await.unwrap();
        store.insert("embeddings", &self.embeddings).await.unwrap();
        queries::set_triage(store, PROJECT, RATELIMIT, "fixed", "raised the quota", "test").await.unwrap();
    }
}

/// Which embedding group a `p-refund` member's trace belongs to.
pub fn refund_group(trace: &str) -> Option<u32> {
    let tag = u32::from_str_radix(&trace[..8], 16).ok()?;
    let i = u32::from_str_radix(&trace[8..], 16).ok()?;
    (tag == 0xa1).then_some(i % 3)
}
