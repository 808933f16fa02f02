//! The catalogue's promises: deterministic, every mode present at the benchmark's volume, every
//! confuser group really confusing, and healthy traffic that looks like the failures' evidence.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{App, Confuser, Mode};
use crate::catalog::Feature;
use crate::failure::FailureMode;
use crate::message::Part;
use crate::options::{SimulateOptions, Volume, parse_base_time};
use crate::plan::{Interaction, Plan, Step, plan};
use crate::reactions::Kind;
use crate::scenario::Scenario;
use crate::truth;

/// The volume `flywheel bench analyze --scenario catalogue` plays by default.
pub const BENCH_INTERACTIONS: usize = 7000;
pub const BENCH_FAILURE_RATE: f64 = 0.3;

fn catalogue(seed: u64, interactions: usize) -> Plan {
    let opts = SimulateOptions {
        seed,
        volume: Volume::Interactions(interactions),
        failure_rate: BENCH_FAILURE_RATE,
        ..SimulateOptions::for_scenario(Scenario::Catalogue)
    };
    opts.validate().unwrap();
    plan(&opts, parse_base_time("2026-11-30T12:00:00Z").unwrap())
}

fn of_mode(p: &Plan, mode: Mode) -> Vec<&Interaction> {
    p.interactions.iter().filter(|i| i.failure == Some(FailureMode::Catalogue(mode))).collect()
}

fn tool_errors(ix: &Interaction) -> Vec<(String, String)> {
    ix.steps
        .iter()
        .filter_map(|s| match s {
            Step::Tool(t) => t.result.as_ref().err().map(|e| (e.error_type.clone(), e.message.clone())),
            _ => None,
        })
        .collect()
}

fn last_output(ix: &Interaction) -> String {
    ix.calls().last().and_then(|c| c.output.as_ref()).map(|o| o.text_content()).unwrap_or_default()
}

#[test]
fn same_seed_same_plan_other_seed_other_plan() {
    let (a, b, c) = (catalogue(3, 800), catalogue(3, 800), catalogue(4, 800));
    assert_eq!(truth::calls(&a), truth::calls(&b));
    let texts = |p: &Plan| p.interactions.iter().map(|i| (i.request.clone(), i.answer.clone())).collect::<Vec<_>>();
    assert_eq!(texts(&a), texts(&b));
    let signals = |p: &Plan| p.signals().map(|s| s.to_wire()).collect::<Vec<_>>();
    assert_eq!(signals(&a), signals(&b));
    assert_ne!(texts(&a), texts(&c));
    assert_eq!(a.interactions.len(), 800);
}

#[test]
fn every_mode_has_enough_failures_at_the_bench_volume() {
    for seed in 1..=5 {
        let p = catalogue(seed, BENCH_INTERACTIONS);
        let least = Mode::ALL.iter().map(|m| of_mode(&p, *m).len()).min().unwrap_or(0);
        eprintln!("seed {seed}: the rarest mode has {least} failing interactions");
        for mode in Mode::ALL {
            let n = of_mode(&p, mode).len();
            assert!(n >= 40, "seed {seed}: {} has {n} failing interactions", mode.id());
            assert!(of_mode(&p, mode).iter().all(|i| i.feature == Feature::Catalogue(mode.app())));
        }
        let apps: BTreeSet<&str> = p.interactions.iter().map(|i| i.feature.id()).collect();
        assert_eq!(apps.len(), App::ALL.len());
        let failing = p.interactions.iter().filter(|i| i.failure.is_some()).count() as f64 / p.interactions.len() as f64;
        assert!((0.22..0.4).contains(&failing), "failure share {failing}");
    }
}

#[test]
fn failures_are_varied_and_concentrate_on_their_models() {
    let p = catalogue(7, BENCH_INTERACTIONS);
    for mode in Mode::ALL {
        // A request asked again may fail the same way: count first attempts.
        let items: Vec<&Interaction> = of_mode(&p, mode).into_iter().filter(|i| i.follow_up_of.is_none()).collect();
        let texts: BTreeSet<String> = items
            .iter()
            .map(|ix| {
                let errors = tool_errors(ix);
                let call_error = ix.calls().find_map(|c| c.error.as_ref().map(|e| e.message.clone()));
                errors.first().map(|e| e.1.clone()).or(call_error).unwrap_or_else(|| format!("{} {}", ix.request, last_output(ix)))
            })
            .collect();
        assert!(texts.len() as f64 >= 0.7 * items.len() as f64, "{}: {} distinct of {}", mode.id(), texts.len(), items.len());
    }
    let on = |mode: Mode, model: &str| {
        let items = of_mode(&p, mode);
        items.iter().filter(|i| i.calls().next().unwrap().model.name == model).count() as f64 / items.len() as f64
    };
    assert!(on(Mode::SqlAnswerNotJson, "claude-sonnet-4") > 0.6);
    assert!(on(Mode::OverRefusal, "claude-3-5-haiku") > 0.5);
    for mode in [Mode::ProviderRateLimit, Mode::ContextWindowExceeded, Mode::ProviderTimeout] {
        assert!(of_mode(&p, mode).iter().all(|i| i.calls().all(|c| c.model.provider == "openai")), "{}", mode.id());
    }
}

#[test]
fn healthy_traffic_is_multilingual_over_english_articles() {
    let p = catalogue(11, 3000);
    let healthy: Vec<&Interaction> =
        p.interactions.iter().filter(|i| i.failure.is_none() && i.feature == Feature::Catalogue(App::HelpCenter)).collect();
    let french = |s: &str| {
        s.contains("Combien")
            || s.contains("Livrez")
            || s.contains("Vous ")
            || s.contains("Mon ")
            || s.contains("Que ")
            || s.contains("Puis-je")
            || s.contains("J'ai")
    };
    let foreign: Vec<&&Interaction> = healthy.iter().filter(|i| french(&i.request)).collect();
    assert!(foreign.len() > 50, "{} French healthy interactions", foreign.len());
    // The answer is in French while the articles it comes from are in English, in a `user`
    // message as a tool result (Anthropic), as a `tool` message, or in the input as text.
    let mut layouts = BTreeSet::new();
    for ix in &foreign {
        let call = ix.calls().last().unwrap();
        assert!(!ix.answer.contains("per year") && !ix.answer.contains("business days"), "{}", ix.answer);
        for m in &call.input {
            for part in &m.parts {
                match part {
                    Part::ToolResult { response, .. } => {
                        assert!(response.to_string().contains("articles"));
                        layouts.insert(format!("tool result in {}", m.role));
                    }
                    Part::Text(t) if t.starts_with("Help-centre articles") => {
                        layouts.insert(format!("articles in {}", m.role));
                    }
                    _ => {}
                }
            }
        }
    }
    for layout in ["tool result in user", "tool result in tool", "articles in system", "articles in user"] {
        assert!(layouts.contains(layout), "{layout} missing: {layouts:?}");
    }
    // Good answers get some noise too.
    let noisy: BTreeSet<Kind> = p
        .interactions
        .iter()
        .filter(|i| i.failure.is_none())
        .flat_map(|i| i.reactions.iter().map(|r| r.kind))
        .filter(|k| matches!(k, Kind::ThumbsDown | Kind::Regenerate))
        .collect();
    assert_eq!(noisy.len(), 2);
}

#[test]
fn one_signature_several_causes() {
    let p = catalogue(5, BENCH_INTERACTIONS);
    let group = |c: Confuser| Mode::ALL.into_iter().filter(move |m| m.confuser() == Some(c));
    let mut messages: BTreeMap<Mode, BTreeSet<String>> = BTreeMap::new();
    for mode in group(Confuser::RunSqlError) {
        for ix in of_mode(&p, mode) {
            let errors = tool_errors(ix);
            assert_eq!(errors.len(), 1, "{}", mode.id());
            assert_eq!(errors[0].0, "ToolException", "one exception type for every run_sql failure");
            messages.entry(mode).or_default().insert(errors[0].1.clone());
        }
    }
    assert_eq!(messages.len(), 4);
    for (mode, m) in &messages {
        assert!(m.len() > 20, "{}: only {} distinct messages", mode.id(), m.len());
    }
    let mut types = BTreeSet::new();
    for mode in group(Confuser::ProviderError) {
        for ix in of_mode(&p, mode) {
            let call = ix.calls().nth(ix.target_call).unwrap();
            let error = call.error.as_ref().expect("a provider error");
            types.insert(error.error_type.clone());
            assert!(call.output.is_none());
        }
    }
    assert_eq!(types.len(), 3, "{types:?}");
}

#[test]
fn one_reaction_several_causes() {
    let p = catalogue(6, BENCH_INTERACTIONS);
    let mut sequences: BTreeMap<Mode, BTreeSet<Vec<Kind>>> = BTreeMap::new();
    for mode in Mode::ALL.into_iter().filter(|m| m.confuser() == Some(Confuser::ThumbsDownThenEscalate)) {
        for ix in of_mode(&p, mode) {
            sequences.entry(mode).or_default().insert(ix.reactions.iter().map(|r| r.kind).collect());
            // Nothing explicit: the call is a plain, successful answer.
            assert!(ix.calls().all(|c| c.error.is_none()) && ix.calls().last().unwrap().finish_reason == Some("stop"));
        }
    }
    assert_eq!(sequences.len(), 3);
    let expected: BTreeSet<Vec<Kind>> = [vec![], vec![Kind::ThumbsDown, Kind::Escalate]].into();
    for (mode, seen) in &sequences {
        assert_eq!(seen, &expected, "{}", mode.id());
    }
}

#[test]
fn one_cause_several_kinds_of_evidence() {
    let p = catalogue(8, BENCH_INTERACTIONS);
    let (mut worded, mut deflected, mut filtered) = (0, 0, 0);
    for ix in of_mode(&p, Mode::OverRefusal) {
        let call = ix.calls().last().unwrap();
        let text = last_output(ix).to_lowercase();
        if call.finish_reason == Some("content_filter") {
            filtered += 1;
        } else if [
            "sorry",
            "désolé",
            "lo siento",
            "leid",
            "desculpe",
            "not able",
            "ne peux",
            "no puedo",
            "nicht",
            "não posso",
            "pas en mesure",
        ]
        .iter()
        .any(|w| text.contains(w))
        {
            worded += 1;
        } else {
            deflected += 1;
        }
    }
    assert!(worded > 10 && deflected > 10 && filtered > 5, "{worded} {deflected} {filtered}");
}

#[test]
fn detector_evidence_is_where_the_conventions_put_it() {
    let p = catalogue(9, BENCH_INTERACTIONS);
    // JSON mode on the analyst's calls, and answers that break it.
    for ix in p.interactions.iter().filter(|i| i.feature == Feature::Catalogue(App::SqlAnalyst)) {
        assert!(ix.calls().all(|c| c.output_type == Some("json")));
        let parsed = serde_json::from_str::<Value>(&last_output(ix)).ok();
        let complete = parsed.is_some_and(|v| ["answer", "sql", "chart"].iter().all(|k| v.get(k).is_some()));
        assert_eq!(complete, ix.failure != Some(FailureMode::Catalogue(Mode::SqlAnswerNotJson)), "{}", last_output(ix));
    }
    // JSON mode on the triage call too, and answers the queue cannot file.
    for ix in p.interactions.iter().filter(|i| i.feature == Feature::Catalogue(App::TicketTriage)) {
        assert!(ix.calls().all(|c| c.output_type == Some("json")));
        let parsed = serde_json::from_str::<Value>(&last_output(ix)).ok();
        let categories = ["billing", "warranty_claim", "rentals", "pricing", "shipping"];
        let valid = parsed.is_some_and(|v| {
            ["category", "priority", "language", "summary"].iter().all(|k| v.get(k).is_some())
                && v["category"].as_str().is_some_and(|c| categories.contains(&c))
        });
        assert_eq!(valid, ix.failure != Some(FailureMode::Catalogue(Mode::TriageSchemaViolation)), "{}", last_output(ix));
    }
    // Agent loops: the same tool again and again in one trace.
    let searches = |ix: &Interaction| ix.steps.iter().filter(|s| matches!(s, Step::Tool(t) if t.name == "search_flights")).count();
    assert!(of_mode(&p, Mode::AgentSearchLoop).iter().all(|i| searches(i) >= 5));
    assert!(p.interactions.iter().filter(|i| i.failure.is_none()).all(|i| searches(i) <= 1));
    // Sensitive data the user did not give.
    for ix in of_mode(&p, Mode::LeakedCustomerContact) {
        let answer = last_output(ix);
        let email = answer.split_whitespace().find(|w| w.contains('@')).expect("an e-mail in the answer");
        assert!(!ix.request.contains(email.trim_matches(|c: char| !c.is_alphanumeric())));
    }
    for ix in of_mode(&p, Mode::SecretInCode) {
        let answer = last_output(ix);
        assert!(["sk-proj-", "AKIA", "xoxb-", "sk_live_", "ghp_"].iter().any(|k| answer.contains(k)), "{answer}");
    }
    // The unrequested cancellation calls cancel_booking; nothing healthy does.
    let cancels = |ix: &Interaction| ix.steps.iter().any(|s| matches!(s, Step::Tool(t) if t.name == "cancel_booking"));
    assert!(of_mode(&p, Mode::UnrequestedCancellation).iter().all(|i| cancels(i)));
    assert!(p.interactions.iter().filter(|i| i.failure.is_none()).all(|i| !cancels(i)));
    // Latency far above the norm.
    let ms = |ix: &Interaction| ix.calls().map(|c| (c.end - c.start).as_seconds_f64()).fold(0.0, f64::max);
    let agent_norm: Vec<f64> =
        p.interactions.iter().filter(|i| i.failure.is_none() && i.feature == Feature::Catalogue(App::TripAgent)).map(ms).collect();
    let norm = agent_norm.iter().sum::<f64>() / agent_norm.len() as f64;
    assert!(of_mode(&p, Mode::LatencySpike).iter().all(|i| ms(i) > 5.0 * norm));
}

#[test]
fn catalogue_spans_carry_json_mode_and_the_anthropic_layout() {
    use opentelemetry::Value as OtelValue;
    let p = catalogue(2, 300);
    let emitter = crate::spans::Emitter::new(2);
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone())
    };
    let (mut json_params, mut json_output_type, mut user_tool_results) = (0, 0, 0);
    for ix in &p.interactions {
        emitter.emit(ix);
        for span in emitter.take() {
            if let Some(OtelValue::String(params)) = attr(&span, "llm.invocation_parameters")
                && params.as_str().contains("json_object")
            {
                json_params += 1;
            }
            if attr(&span, "gen_ai.output.type").is_some_and(|v| v.as_str() == "json") {
                json_output_type += 1;
            }
            if let Some(OtelValue::String(input)) = attr(&span, "gen_ai.input.messages") {
                let messages: Value = serde_json::from_str(input.as_str()).unwrap();
                user_tool_results += messages
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["role"] == "user" && m["parts"][0]["type"] == "tool_call_response")
                    .count();
            }
        }
    }
    assert!(json_params > 20 && json_output_type > 10 && user_tool_results > 20, "{json_params} {json_output_type} {user_tool_results}");
}
