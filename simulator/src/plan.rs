//! The traffic plan: every session, interaction, model call, tool run and user reaction of a
//! run, with ids and timestamps, computed from the seed and the base time alone before anything
//! is sent. The spans, the signals and the truth file are three renderings of one plan, so
//! they cannot disagree.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::catalog::{Feature, Model, tokens};
use crate::compose::{self, Rng, alnum, between, between_f, chance, hex, pick, weighted};
use crate::failure::FailureMode;
use crate::message::{Msg, Part};
use crate::options::{SimulateOptions, Volume};
use crate::reactions::{self, Kind, Link, Reaction, Shown};
use crate::scenario::Scenario;
use crate::signals::Signal;
use crate::turn::{ToolUse, Turn};
use crate::{coding, support, wording};

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

pub fn hex_id(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub base_time: OffsetDateTime,
    pub window: Duration,
    /// In order of start time.
    pub interactions: Vec<Interaction>,
    pub sessions: usize,
    pub users: usize,
}

/// One request of a user to a feature: one trace.
#[derive(Debug, Clone)]
pub struct Interaction {
    pub feature: Feature,
    pub trace_id: TraceId,
    pub root_span_id: SpanId,
    /// The support assistant runs as an agent; the coding assistant is a plain chain.
    pub agent_span_id: Option<SpanId>,
    pub session_id: String,
    pub user_id: String,
    pub request: String,
    pub answer: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub steps: Vec<Step>,
    pub failure: Option<FailureMode>,
    /// Index (among the calls) of the call the failure and the reactions belong to.
    pub target_call: usize,
    pub reactions: Vec<Reaction>,
    /// The signals the app reports for the reactions (`sent` ones only reach the API).
    pub signals: Vec<Signal>,
    /// The trace this interaction regenerates or retries.
    pub follow_up_of: Option<TraceId>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Call(LlmCall),
    Tool(ToolRun),
}

#[derive(Debug, Clone)]
pub struct LlmCall {
    pub span_id: SpanId,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub model: &'static Model,
    pub system: &'static str,
    pub input: Vec<Msg>,
    pub output: Option<Msg>,
    pub finish_reason: Option<&'static str>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub max_tokens: u64,
    pub temperature: f64,
    pub response_id: Option<String>,
    pub error: Option<ErrorInfo>,
    pub failure: Option<FailureMode>,
    /// The output type the app asked for (`"json"` in JSON mode), or `None` for free text.
    pub output_type: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct ToolRun {
    pub span_id: SpanId,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub name: &'static str,
    pub call_id: String,
    pub arguments: Value,
    pub result: Result<Value, ErrorInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    /// As an exception event reports it, with its module (`openai.RateLimitError`).
    pub exception_type: String,
    /// As `error.type` reports it (`RateLimitError`).
    pub error_type: String,
    pub message: String,
}

impl Interaction {
    pub fn calls(&self) -> impl Iterator<Item = &LlmCall> {
        self.steps.iter().filter_map(|s| match s {
            Step::Call(c) => Some(c),
            Step::Tool(_) => None,
        })
    }

    pub(crate) fn shift_back(&mut self, by: time::Duration) {
        self.start -= by;
        self.end -= by;
        for step in &mut self.steps {
            match step {
                Step::Call(c) => {
                    c.start -= by;
                    c.end -= by;
                }
                Step::Tool(t) => {
                    t.start -= by;
                    t.end -= by;
                }
            }
        }
        for s in &mut self.signals {
            s.timestamp -= by;
        }
    }

    /// The latest instant of the interaction, its signals included.
    pub(crate) fn last_instant(&self) -> OffsetDateTime {
        self.signals.iter().map(|s| s.timestamp).fold(self.end, OffsetDateTime::max)
    }
}

impl Plan {
    pub fn calls(&self) -> usize {
        self.interactions.iter().map(|i| i.calls().count()).sum()
    }

    pub fn failures(&self, mode: FailureMode) -> usize {
        self.interactions.iter().filter(|i| i.failure == Some(mode)).count()
    }

    pub fn signals(&self) -> impl Iterator<Item = &Signal> {
        self.interactions.iter().flat_map(|i| i.signals.iter())
    }
}

struct User {
    id: String,
    feature: Feature,
}

/// Plans a run. Pure: the same options and base time give the same plan.
pub fn plan(opts: &SimulateOptions, base_time: OffsetDateTime) -> Plan {
    if opts.scenario == Scenario::Catalogue {
        return crate::catalogue::planner::plan(opts, base_time);
    }
    let mut p = Planner { rng: compose::rng(opts.seed), opts, base: base_time, users: Vec::new(), out: Vec::new() };
    let (user_count, mut budget) = match opts.volume {
        Volume::Sessions(n) => ((n * 2 / 5).max(4), Budget::Sessions(n)),
        Volume::Interactions(n) => ((n / 6).max(4), Budget::Interactions(n)),
    };
    for _ in 0..user_count {
        let id = format!("u_{}", hex(&mut p.rng, 5));
        let feature = weighted(&mut p.rng, &Feature::ALL.map(|f| (f, f.traffic_share())));
        p.users.push(User { id, feature });
    }
    let mut sessions = 0;
    let mut used_users = std::collections::BTreeSet::new();
    while !budget.exhausted() {
        let user = between(&mut p.rng, 0, p.users.len() as u64 - 1) as usize;
        used_users.insert(user);
        p.session(user, &mut budget);
        sessions += 1;
    }
    // Stable sort: interactions that start together keep their generation order.
    p.out.sort_by_key(|i| i.start);
    Plan { seed: opts.seed, base_time, window: opts.window, interactions: p.out, sessions, users: used_users.len() }
}

pub(crate) enum Budget {
    Sessions(usize),
    Interactions(usize),
}

impl Budget {
    pub(crate) fn of(volume: Volume) -> Budget {
        match volume {
            Volume::Sessions(n) => Budget::Sessions(n),
            Volume::Interactions(n) => Budget::Interactions(n),
        }
    }
    pub(crate) fn exhausted(&self) -> bool {
        matches!(self, Budget::Sessions(0) | Budget::Interactions(0))
    }
    pub(crate) fn interaction(&mut self) {
        if let Budget::Interactions(n) = self {
            *n = n.saturating_sub(1);
        }
    }
    pub(crate) fn session(&mut self) {
        if let Budget::Sessions(n) = self {
            *n = n.saturating_sub(1);
        }
    }
    pub(crate) fn allows_interaction(&self) -> bool {
        !matches!(self, Budget::Interactions(0))
    }
}

struct Planner<'a> {
    rng: Rng,
    opts: &'a SimulateOptions,
    base: OffsetDateTime,
    users: Vec<User>,
    out: Vec<Interaction>,
}

/// A request to send again (regenerate button, retry, or the user retyping it).
struct Repeat {
    turn: Turn,
    request: String,
    of: TraceId,
    at: OffsetDateTime,
    chain: usize,
}

impl Planner<'_> {
    fn session(&mut self, user: usize, budget: &mut Budget) {
        let rng = &mut self.rng;
        let preferred = self.users[user].feature;
        let other = Feature::ALL.into_iter().find(|f| *f != preferred).expect("two features");
        let feature = if chance(rng, 0.85) { preferred } else { other };
        let user_id = self.users[user].id.clone();
        let session_id = session_id(rng, feature);
        let planned_turns = weighted(rng, &[(1, 0.25), (2, 0.25), (3, 0.2), (4, 0.15), (5, 0.1), (6, 0.05)]);
        let mut t = self.session_start();
        let mut history: Vec<Msg> = Vec::new();
        let mut previous_topic: Option<&'static str> = None;
        let mut items: Vec<Interaction> = Vec::new();
        let mut done = 0;
        let mut repeat: Option<Repeat> = None;
        while done < planned_turns && budget.allows_interaction() {
            // A new turn is written to fit its failure; a repeated one keeps its text, so its
            // failure is drawn among the modes that fit it.
            let (turn, request, follow_up_of, chain, failure) = match repeat.take() {
                Some(r) => {
                    t = r.at;
                    let failure = self.draw_failure(feature, Some(&r.turn), false, r.at);
                    (r.turn, r.request, Some(r.of), r.chain, failure)
                }
                None => {
                    let failure = self.draw_failure(feature, None, done == 0, t);
                    let turn = self.new_turn(feature, failure, previous_topic, done > 0);
                    let request = turn.request.clone();
                    (turn, request, None, 0, failure)
                }
            };
            let ix = self.interaction(feature, &user_id, &session_id, &history, &turn, &request, failure, t, follow_up_of);
            budget.interaction();
            let kinds: Vec<Kind> = ix.reactions.iter().map(|r| r.kind).collect();
            let last_reaction = ix.reactions.iter().map(|r| ix.end + r.delay).max().unwrap_or(ix.end);
            if let Some(r) = ix.reactions.iter().find(|r| r.kind.repeats_request()).filter(|_| chain < 3) {
                let at = ix.end + r.delay + Duration::from_millis(between(&mut self.rng, 300, 2_000));
                let again = near_identical(&mut self.rng, &request, ix.failure);
                repeat = Some(Repeat { turn: turn.clone(), request: again, of: ix.trace_id, at, chain: chain + 1 });
            } else {
                history.push(Msg::text("user", request.clone()));
                if !ix.answer.is_empty() {
                    history.push(Msg::text("assistant", ix.answer.clone()));
                }
                done += 1;
                t = last_reaction + Duration::from_secs(between(&mut self.rng, 15, 240));
            }
            previous_topic = Some(turn.topic);
            items.push(ix);
            if kinds.iter().any(|k| k.ends_session()) {
                break;
            }
        }
        budget.session();
        // Nothing may lie in the future: a session that would run past the base time is moved
        // back as a whole.
        let limit = self.base - Duration::from_secs(1);
        if let Some(last) = items.iter().map(Interaction::last_instant).max()
            && last > limit
        {
            let by = last - limit;
            for ix in &mut items {
                ix.shift_back(by);
            }
        }
        self.out.extend(items);
    }

    fn session_start(&mut self) -> OffsetDateTime {
        session_start(&mut self.rng, self.opts.window, self.base)
    }

    /// Whether this interaction fails, and how. With a turn already written (a repeat), only
    /// the modes that fit it: a hallucinated policy needs a refund question, bad tool
    /// arguments need a tool.
    fn draw_failure(&mut self, feature: Feature, turn: Option<&Turn>, first: bool, at: OffsetDateTime) -> Option<FailureMode> {
        if !chance(&mut self.rng, self.opts.failure_rate_at(at, self.base)) {
            return None;
        }
        let modes: Vec<(FailureMode, f64)> = self
            .opts
            .mix
            .for_feature(feature)
            .into_iter()
            .filter(|(m, _)| match (m, turn) {
                (FailureMode::HallucinatedRefundPolicy, Some(t)) => t.topic == "refund",
                (FailureMode::InvalidToolArguments, Some(t)) => t.tool.is_some(),
                // A contradiction needs a question others ask too: a session's opening one.
                (FailureMode::InconsistentAnswer, Some(t)) => t.topic == "faq",
                (FailureMode::InconsistentAnswer, None) => first,
                _ => true,
            })
            .collect();
        (!modes.is_empty()).then(|| weighted(&mut self.rng, &modes))
    }

    fn new_turn(&mut self, feature: Feature, failure: Option<FailureMode>, previous: Option<&'static str>, follow_up: bool) -> Turn {
        // A session may open with a question customers ask again and again; drawn only when
        // the run asks for them, so that other runs keep their exact traffic.
        let repeated = self.opts.repeated_questions;
        let rng = &mut self.rng;
        let faq = (feature == Feature::SupportAssistant && !follow_up && repeated > 0.0 && chance(rng, repeated))
            .then(|| if chance(rng, 0.3) { "faq_personal" } else { "faq" });
        // A repeated question opens a session; what follows it is the usual traffic.
        let stay = previous.filter(|p| !p.starts_with("faq")).filter(|_| chance(rng, 0.5));
        match feature {
            Feature::SupportAssistant => {
                let topic = match failure {
                    Some(FailureMode::HallucinatedRefundPolicy) => Some("refund"),
                    Some(FailureMode::InvalidToolArguments) => Some(pick(rng, &["order_status", "account", "billing", "order_status"])),
                    Some(FailureMode::InconsistentAnswer) => Some("faq"),
                    _ => faq.or(stay),
                };
                let mut turn = support::turn(rng, topic, follow_up);
                // Shipping questions only sometimes use a tool; retry until one does.
                while failure == Some(FailureMode::InvalidToolArguments) && turn.tool.is_none() {
                    turn = support::turn(rng, Some("order_status"), follow_up);
                }
                turn
            }
            Feature::CodingAssistant | Feature::Catalogue(_) => {
                let mut turn = coding::turn(rng, stay, follow_up);
                if failure == Some(FailureMode::InvalidToolArguments) && turn.tool.is_none() {
                    turn.tool = Some(coding::search_docs(rng, turn.topic, &turn.subject));
                }
                turn
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn interaction(
        &mut self,
        feature: Feature,
        user_id: &str,
        session_id: &str,
        history: &[Msg],
        turn: &Turn,
        request: &str,
        failure: Option<FailureMode>,
        start: OffsetDateTime,
        follow_up_of: Option<TraceId>,
    ) -> Interaction {
        let rng = &mut self.rng;
        let trace_id = trace_id(rng);
        let root_span_id = span_id(rng);
        let agent_span_id = (feature == Feature::SupportAssistant).then(|| span_id(rng));
        let models: Vec<(&'static Model, f64)> =
            feature.models().iter().map(|(m, w)| (*m, w * failure.map_or(1.0, |f| f.model_affinity(m)))).collect();
        let model = weighted(rng, &models);
        let system = match feature {
            Feature::SupportAssistant => support::SYSTEM_PROMPT,
            _ => coding::SYSTEM_PROMPT,
        };
        let tool_tokens = match feature {
            Feature::SupportAssistant => 260,
            _ => 90,
        };
        let context = CallContext { model, system, tool_tokens, max_tokens: feature.max_tokens(), temperature: feature.temperature() };

        let mut input = history.to_vec();
        input.push(Msg::text("user", request));
        let mut steps = Vec::new();
        let mut at = start + Duration::from_millis(between(rng, 3, 12));
        let mut language = None;
        let tool = match failure {
            Some(FailureMode::Refusal | FailureMode::RateLimitError) => None,
            _ => turn.tool.clone(),
        };

        let answer;
        let target_call;
        if failure == Some(FailureMode::RateLimitError) {
            let (exception_type, message) = wording::rate_limit(rng, model);
            let call = context.failed_call(rng, at, input, ErrorInfo { exception_type, error_type: "RateLimitError".into(), message });
            steps.push(Step::Call(call));
            answer = String::new();
            target_call = 0;
        } else {
            if let Some(tool) = &tool {
                let call_id = tool_call_id(rng, model);
                let (arguments, result) = if failure == Some(FailureMode::InvalidToolArguments) {
                    let (args, error_type, message) = wording::invalid_arguments(rng, tool);
                    let exception_type = match error_type.as_str() {
                        "ValidationError" => "pydantic_core._pydantic_core.ValidationError".to_string(),
                        "JSONDecodeError" => "json.decoder.JSONDecodeError".to_string(),
                        other => other.to_string(),
                    };
                    (args, Err(ErrorInfo { exception_type, error_type, message }))
                } else {
                    (tool.arguments.clone(), Ok(tool.result.clone()))
                };
                let ask = Msg {
                    role: "assistant",
                    parts: vec![Part::ToolCall { id: call_id.clone(), name: tool.name, arguments: arguments.clone() }],
                };
                let failure_here = (failure == Some(FailureMode::InvalidToolArguments)).then_some(FailureMode::InvalidToolArguments);
                let call = context.call(rng, at, input.clone(), ask.clone(), "tool_calls", None, 1.0, failure_here);
                at = call.end + Duration::from_millis(between(rng, 1, 6));
                steps.push(Step::Call(call));
                let run = tool_run(rng, at, tool, &call_id, arguments, result);
                at = run.end + Duration::from_millis(between(rng, 1, 6));
                let response = match &run.result {
                    Ok(v) => v.clone(),
                    Err(e) => json!({"error": format!("{}: {}", e.error_type, e.message)}),
                };
                steps.push(Step::Tool(run));
                input.push(ask);
                input.push(Msg { role: "tool", parts: vec![Part::ToolResult { id: call_id, response }] });
            }
            let mut finish = "stop";
            let mut max_tokens = None;
            let mut slowdown = 1.0;
            let text = match failure {
                Some(FailureMode::HallucinatedRefundPolicy) => wording::hallucinated_policy(rng, turn),
                Some(FailureMode::InconsistentAnswer) => crate::repeated::contradiction(rng, turn),
                Some(FailureMode::WrongLanguage) => {
                    let (lang, text) = wording::foreign_answer(rng, feature, turn);
                    language = Some(lang);
                    text
                }
                Some(FailureMode::TruncatedAnswer) => {
                    let (budget, cut) = wording::truncate(rng, &turn.answer);
                    finish = "length";
                    max_tokens = Some(budget);
                    cut
                }
                Some(FailureMode::InvalidToolArguments) => match feature {
                    Feature::SupportAssistant => support::tool_failure_answer(rng),
                    Feature::CodingAssistant | Feature::Catalogue(_) => coding::tool_failure_answer(rng),
                },
                Some(FailureMode::Refusal) => wording::refusal(rng, feature),
                Some(FailureMode::SlowAnswer) => {
                    slowdown = between_f(rng, 10.0, 40.0);
                    turn.answer.clone()
                }
                // The catalogue plans its own interactions (crate::catalogue::planner).
                Some(FailureMode::RateLimitError | FailureMode::Catalogue(_)) | None => turn.answer.clone(),
            };
            let failure_here = failure.filter(|f| *f != FailureMode::InvalidToolArguments);
            let call = context.call(rng, at, input, Msg::text("assistant", text.clone()), finish, max_tokens, slowdown, failure_here);
            steps.push(Step::Call(call));
            answer = text;
            target_call = if failure == Some(FailureMode::InvalidToolArguments) {
                0
            } else {
                steps.iter().filter(|s| matches!(s, Step::Call(_))).count() - 1
            };
        }

        let last_end = steps
            .iter()
            .map(|s| match s {
                Step::Call(c) => c.end,
                Step::Tool(t) => t.end,
            })
            .max()
            .unwrap_or(start);
        let end = last_end + Duration::from_millis(between(rng, 2, 15));
        let mut ix = Interaction {
            feature,
            trace_id,
            root_span_id,
            agent_span_id,
            session_id: session_id.to_string(),
            user_id: user_id.to_string(),
            request: request.to_string(),
            answer,
            start,
            end,
            steps,
            failure,
            target_call,
            reactions: Vec::new(),
            signals: Vec::new(),
            follow_up_of,
        };
        let target_response = ix.calls().nth(target_call).and_then(|c| c.response_id.clone());
        let shown = Shown { feature, turn, language, has_response_id: target_response.is_some() };
        ix.reactions = reactions::react(rng, failure, &shown);
        ix.signals = signals_of(rng, &ix);
        ix
    }
}

pub(crate) struct CallContext {
    pub(crate) model: &'static Model,
    pub(crate) system: &'static str,
    pub(crate) tool_tokens: u64,
    pub(crate) max_tokens: u64,
    pub(crate) temperature: f64,
}

impl CallContext {
    fn input_tokens(&self, input: &[Msg]) -> u64 {
        let messages: u64 = input
            .iter()
            .flat_map(|m| &m.parts)
            .map(|p| match p {
                Part::Text(t) => tokens(t),
                Part::ToolCall { arguments, .. } => tokens(&arguments.to_string()) + 8,
                Part::ToolResult { response, .. } => tokens(&response.to_string()) + 4,
            })
            .sum();
        tokens(self.system) + self.tool_tokens + messages + 4 * input.len() as u64
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call(
        &self,
        rng: &mut Rng,
        start: OffsetDateTime,
        input: Vec<Msg>,
        output: Msg,
        finish: &'static str,
        max_tokens: Option<u64>,
        slowdown: f64,
        failure: Option<FailureMode>,
    ) -> LlmCall {
        let output_tokens = match max_tokens {
            // Stopped by the limit: the provider reports exactly the budget.
            Some(budget) => budget,
            None => output
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => tokens(t),
                    Part::ToolCall { arguments, .. } => tokens(&arguments.to_string()) + 12,
                    Part::ToolResult { .. } => 0,
                })
                .sum(),
        };
        let ms = (self.model.first_token_ms as f64 * between_f(rng, 0.7, 1.6)
            + output_tokens as f64 * self.model.ms_per_token * between_f(rng, 0.8, 1.3))
            * slowdown;
        LlmCall {
            span_id: span_id(rng),
            start,
            end: start + Duration::from_secs_f64(ms / 1000.0),
            model: self.model,
            system: self.system,
            input_tokens: self.input_tokens(&input),
            input,
            output: Some(output),
            finish_reason: Some(finish),
            output_tokens,
            max_tokens: max_tokens.unwrap_or(self.max_tokens),
            temperature: self.temperature,
            response_id: Some(response_id(rng, self.model)),
            error: None,
            failure,
            output_type: None,
        }
    }

    fn failed_call(&self, rng: &mut Rng, start: OffsetDateTime, input: Vec<Msg>, error: ErrorInfo) -> LlmCall {
        LlmCall {
            span_id: span_id(rng),
            start,
            end: start + Duration::from_millis(between(rng, 120, 900)),
            model: self.model,
            system: self.system,
            input_tokens: 0,
            input,
            output: None,
            finish_reason: None,
            output_tokens: 0,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            response_id: None,
            error: Some(error),
            failure: Some(FailureMode::RateLimitError),
            output_type: None,
        }
    }

    /// A call that fails after `ms` milliseconds with `error` (a provider error, a timeout),
    /// charged to `failure`.
    pub(crate) fn errored_call(
        &self,
        rng: &mut Rng,
        start: OffsetDateTime,
        input: Vec<Msg>,
        error: ErrorInfo,
        ms: u64,
        failure: FailureMode,
    ) -> LlmCall {
        LlmCall {
            span_id: span_id(rng),
            start,
            end: start + Duration::from_millis(ms),
            model: self.model,
            system: self.system,
            input_tokens: 0,
            input,
            output: None,
            finish_reason: None,
            output_tokens: 0,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            response_id: None,
            error: Some(error),
            failure: Some(failure),
            output_type: None,
        }
    }
}

pub(crate) fn tool_run(
    rng: &mut Rng,
    start: OffsetDateTime,
    tool: &ToolUse,
    call_id: &str,
    arguments: Value,
    result: Result<Value, ErrorInfo>,
) -> ToolRun {
    let ms = if result.is_ok() { between(rng, 40, 600) } else { between(rng, 2, 40) };
    ToolRun {
        span_id: span_id(rng),
        start,
        end: start + Duration::from_millis(ms),
        name: tool.name,
        call_id: call_id.to_string(),
        arguments,
        result,
    }
}

/// The signals an app reports for an interaction's reactions.
pub(crate) fn signals_of(rng: &mut Rng, ix: &Interaction) -> Vec<Signal> {
    let target = ix.calls().nth(ix.target_call).expect("the target call exists");
    let trace = hex_id(&ix.trace_id);
    ix.reactions
        .iter()
        .enumerate()
        .map(|(n, r)| {
            let mut s = Signal {
                kind: r.kind,
                timestamp: ix.end + r.delay,
                sent: r.sent,
                trace_id: None,
                span_id: None,
                session_id: None,
                message_id: None,
                user_id: chance(rng, 0.9).then(|| ix.user_id.clone()),
                feature: chance(rng, 0.6).then(|| ix.feature.id().to_string()),
                value: r.value,
                comment: r.comment.clone(),
                text: r.text.clone(),
                idempotency_key: format!("sim-{trace}-{}-{n}", r.kind.id()),
            };
            match (r.link, &target.response_id) {
                (Link::Message, Some(id)) => s.message_id = Some(id.clone()),
                (Link::Session, _) => s.session_id = Some(ix.session_id.clone()),
                _ => {
                    s.trace_id = Some(trace.clone());
                    if chance(rng, 0.5) {
                        s.span_id = Some(hex_id(&target.span_id));
                    }
                }
            }
            s
        })
        .collect()
}

/// A session id in the style of the feature's framework: a conversation id for the agents,
/// a UUID for the OpenInference apps.
pub(crate) fn session_id(rng: &mut Rng, feature: Feature) -> String {
    match feature.instrumentation() {
        crate::catalog::Instrumentation::GenAi => format!("conv_{}", hex(rng, 8)),
        crate::catalog::Instrumentation::OpenInference => {
            format!("{}-{}-{}-{}-{}", hex(rng, 4), hex(rng, 2), hex(rng, 2), hex(rng, 2), hex(rng, 6))
        }
    }
}

/// A session start in the window ending at `base`, more often in working hours when the window
/// spans days.
pub(crate) fn session_start(rng: &mut Rng, window: Duration, base: OffsetDateTime) -> OffsetDateTime {
    let span = window.as_secs_f64();
    let start = base - window;
    for _ in 0..64 {
        let at = start + Duration::from_secs_f64(between_f(rng, 0.0, 1.0) * span);
        if span < 2.0 * 86_400.0 {
            return at;
        }
        let hour = at.hour() as f64 + at.minute() as f64 / 60.0;
        let distance = ((hour - 15.0).abs()).min(24.0 - (hour - 15.0).abs());
        let weekend = matches!(at.weekday(), time::Weekday::Saturday | time::Weekday::Sunday);
        let weight = (0.2 + 0.8 * (-(distance * distance) / 32.0).exp()) * if weekend { 0.6 } else { 1.0 };
        if between_f(rng, 0.0, 1.0) < weight {
            return at;
        }
    }
    start + Duration::from_secs_f64(between_f(rng, 0.0, 1.0) * span)
}

/// The request sent again: as is (the regenerate or retry button), or retyped by the user.
pub(crate) fn near_identical(rng: &mut Rng, request: &str, failure: Option<FailureMode>) -> String {
    if chance(rng, 0.6) {
        return request.to_string();
    }
    let trimmed = request.trim_end_matches(['.', '?', '!']);
    match between(rng, 0, 4) {
        0 => format!("{trimmed}?"),
        1 => format!("{} {request}", pick(rng, &["Again:", "Let me try again:", "Retrying:", "Once more -"])),
        2 if failure == Some(FailureMode::WrongLanguage) => format!("Please answer in English. {request}"),
        3 => format!("{request} Please."),
        _ => {
            let mut chars = trimmed.chars();
            chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
        }
    }
}

pub(crate) fn trace_id(rng: &mut Rng) -> TraceId {
    loop {
        let mut id = [0u8; 16];
        for b in &mut id {
            *b = between(rng, 0, 255) as u8;
        }
        if id != [0; 16] {
            return id;
        }
    }
}

pub(crate) fn span_id(rng: &mut Rng) -> SpanId {
    loop {
        let mut id = [0u8; 8];
        for b in &mut id {
            *b = between(rng, 0, 255) as u8;
        }
        if id != [0; 8] {
            return id;
        }
    }
}

pub(crate) fn response_id(rng: &mut Rng, model: &Model) -> String {
    match model.provider {
        "anthropic" => format!("msg_01{}", alnum(rng, 22)),
        _ => format!("chatcmpl-{}", alnum(rng, 29)),
    }
}

pub(crate) fn tool_call_id(rng: &mut Rng, model: &Model) -> String {
    match model.provider {
        "anthropic" => format!("toolu_01{}", alnum(rng, 22)),
        _ => format!("call_{}", alnum(rng, 24)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::failure::FailureMix;
    use crate::options::parse_base_time;
    use crate::truth;

    fn options(seed: u64, volume: Volume) -> SimulateOptions {
        SimulateOptions { seed, volume, ..Default::default() }
    }

    fn base() -> OffsetDateTime {
        parse_base_time("2025-06-02T12:00:00Z").unwrap()
    }

    /// The text that shows a call's failure: its output, or its error.
    fn failure_text(ix: &Interaction) -> String {
        let call = ix.calls().nth(ix.target_call).unwrap();
        let tool_error = ix.steps.iter().find_map(|s| match s {
            Step::Tool(t) => t.result.as_ref().err().map(|e| e.message.clone()),
            _ => None,
        });
        match ix.failure {
            Some(FailureMode::RateLimitError) => call.error.as_ref().unwrap().message.clone(),
            Some(FailureMode::InvalidToolArguments) => tool_error.unwrap(),
            _ => call.output.as_ref().unwrap().text_content(),
        }
    }

    #[test]
    fn same_seed_and_base_time_give_the_same_run() {
        let a = plan(&options(7, Volume::Interactions(300)), base());
        let b = plan(&options(7, Volume::Interactions(300)), base());
        let c = plan(&options(8, Volume::Interactions(300)), base());
        let weights: Vec<_> = FailureMix::default().modes().collect();
        assert_eq!(truth::calls(&a), truth::calls(&b));
        assert_eq!(truth::summary(&a, 0.15, &weights), truth::summary(&b, 0.15, &weights));
        let signals = |p: &Plan| p.signals().map(|s| s.to_wire()).collect::<Vec<_>>();
        assert_eq!(signals(&a), signals(&b));
        let requests = |p: &Plan| p.interactions.iter().map(|i| i.request.clone()).collect::<Vec<_>>();
        assert_eq!(requests(&a), requests(&b));
        assert_ne!(truth::calls(&a), truth::calls(&c));
        assert_ne!(requests(&a), requests(&c));
    }

    #[test]
    fn the_volume_is_exact() {
        let p = plan(&options(1, Volume::Interactions(500)), base());
        assert_eq!(p.interactions.len(), 500);
        assert!(p.calls() > 500, "tool turns make two calls");
        let p = plan(&options(1, Volume::Sessions(40)), base());
        assert_eq!(p.sessions, 40);
        assert_eq!(p.interactions.iter().map(|i| i.session_id.as_str()).collect::<BTreeSet<_>>().len(), 40);
    }

    #[test]
    fn failure_rate_and_mode_mix_follow_the_configuration() {
        let mut opts = options(11, Volume::Interactions(8000));
        opts.failure_rate = 0.3;
        opts.mix.apply_overrides("wrong_language=3,refusal=0").unwrap();
        let p = plan(&opts, base());
        let failing = p.interactions.iter().filter(|i| i.failure.is_some()).count();
        let rate = failing as f64 / p.interactions.len() as f64;
        assert!((rate - 0.3).abs() < 0.02, "failure rate {rate}");
        assert_eq!(p.failures(FailureMode::Refusal), 0);
        for feature in Feature::ALL {
            let weights = opts.mix.for_feature(feature);
            let total_weight: f64 = weights.iter().map(|(_, w)| w).sum();
            let of_feature: Vec<_> = p.interactions.iter().filter(|i| i.feature == feature && i.failure.is_some()).collect();
            for (mode, w) in weights {
                let share = of_feature.iter().filter(|i| i.failure == Some(mode)).count() as f64 / of_feature.len() as f64;
                let expected = w / total_weight;
                assert!((share - expected).abs() < 0.05, "{feature:?} {mode}: {share:.3} vs {expected:.3}");
            }
        }
        assert!(
            p.interactions
                .iter()
                .all(|i| i.feature == Feature::SupportAssistant || i.failure != Some(FailureMode::HallucinatedRefundPolicy))
        );
    }

    #[test]
    fn failures_concentrate_on_their_models() {
        let mut opts = options(5, Volume::Interactions(6000));
        opts.failure_rate = 0.3;
        let p = plan(&opts, base());
        let share = |mode: FailureMode, model: &str| {
            let of_mode: Vec<_> = p.interactions.iter().filter(|i| i.failure == Some(mode)).collect();
            of_mode.iter().filter(|i| i.calls().next().unwrap().model.name == model).count() as f64 / of_mode.len() as f64
        };
        let healthy_mini = {
            let healthy: Vec<_> = p.interactions.iter().filter(|i| i.failure.is_none()).collect();
            healthy.iter().filter(|i| i.calls().next().unwrap().model.name == "gpt-4o-mini").count() as f64 / healthy.len() as f64
        };
        assert!(share(FailureMode::WrongLanguage, "gpt-4o-mini") > 0.6, "{}", share(FailureMode::WrongLanguage, "gpt-4o-mini"));
        assert!(healthy_mini < 0.45, "{healthy_mini}");
        assert!(share(FailureMode::RateLimitError, "gpt-4.1") > 0.6);
    }

    #[test]
    fn failure_wording_varies() {
        let mut opts = options(9, Volume::Interactions(5000));
        opts.failure_rate = 0.4;
        let p = plan(&opts, base());
        for mode in FailureMode::ALL {
            let texts: Vec<String> = p.interactions.iter().filter(|i| i.failure == Some(mode)).map(failure_text).collect();
            let distinct: BTreeSet<&String> = texts.iter().collect();
            assert!(texts.len() >= 100, "{mode}: only {} cases", texts.len());
            // Repeats exist (a regenerated request can fail the same way), but they are rare.
            assert!(distinct.len() as f64 >= 0.85 * texts.len() as f64, "{mode}: {} distinct texts of {}", distinct.len(), texts.len());
        }
        let requests: BTreeSet<&str> = p.interactions.iter().map(|i| i.request.as_str()).collect();
        assert!(requests.len() > 4000, "{} distinct requests", requests.len());
    }

    #[test]
    fn each_failure_looks_like_its_mode() {
        let mut opts = options(13, Volume::Interactions(3000));
        opts.failure_rate = 0.4;
        let p = plan(&opts, base());
        let healthy_ms: Vec<f64> = p
            .interactions
            .iter()
            .filter(|i| i.failure.is_none())
            .flat_map(|i| i.calls())
            .map(|c| (c.end - c.start).as_seconds_f64() * 1000.0)
            .collect();
        let norm = healthy_ms.iter().sum::<f64>() / healthy_ms.len() as f64;
        for ix in p.interactions.iter().filter(|i| i.failure.is_some()) {
            let mode = ix.failure.unwrap();
            let call = ix.calls().nth(ix.target_call).unwrap();
            assert_eq!(call.failure, Some(mode));
            assert_eq!(ix.calls().filter(|c| c.failure.is_some()).count(), 1, "one failing call per trace");
            let text = failure_text(ix);
            match mode {
                FailureMode::TruncatedAnswer => {
                    assert_eq!(call.finish_reason, Some("length"));
                    assert_eq!(call.output_tokens, call.max_tokens);
                    assert!(!text.ends_with('.'), "{text}");
                }
                FailureMode::RateLimitError => {
                    assert!(call.output.is_none() && call.response_id.is_none());
                    assert_eq!(call.error.as_ref().unwrap().error_type, "RateLimitError");
                    assert!(text.contains("429"));
                }
                FailureMode::InvalidToolArguments => {
                    assert_eq!(ix.target_call, 0);
                    assert_eq!(call.finish_reason, Some("tool_calls"));
                }
                FailureMode::Refusal => assert!(["help", "assist", "provide"].iter().any(|w| text.contains(w)), "{text}"),
                FailureMode::WrongLanguage => {
                    assert!(
                        [
                            "Bonjour",
                            "Hola",
                            "Hallo",
                            "Guten",
                            "Merci",
                            "Gracias",
                            "Vielen",
                            "Voici",
                            "Aquí",
                            "Hier",
                            "Vous",
                            "Puede",
                            "Sie",
                            "Am ",
                            "La ",
                            "Le ",
                            "El ",
                            "Das ",
                            "Ihre",
                            "Su ",
                            "Votre",
                            "Je ",
                            "Ich ",
                            "Pour",
                            "En ",
                            "Für",
                            "Die ",
                            "Ja,",
                            "Sí,",
                            "Nous",
                            "Acabo",
                            "Se ",
                            "Ein ",
                            "Un ",
                            "Sobre",
                            "Zu ",
                            "Concernant",
                            "He ",
                            "J'ai",
                            "Unbenutzte"
                        ]
                        .iter()
                        .any(|w| text.contains(w)),
                        "{text}"
                    )
                }
                FailureMode::HallucinatedRefundPolicy | FailureMode::InconsistentAnswer => {
                    assert_eq!(ix.feature, Feature::SupportAssistant)
                }
                FailureMode::SlowAnswer => {
                    let ms = (call.end - call.start).as_seconds_f64() * 1000.0;
                    assert!(ms > 5.0 * norm, "{ms} ms vs norm {norm}");
                }
                FailureMode::Catalogue(_) => unreachable!("the default scenario injects only its own modes"),
            }
        }
    }

    #[test]
    fn time_stays_in_the_window_and_never_in_the_future() {
        let mut opts = options(3, Volume::Interactions(2000));
        opts.window = Duration::from_secs(2 * 86_400);
        let p = plan(&opts, base());
        let earliest = base() - opts.window - Duration::from_secs(3600);
        for ix in &p.interactions {
            assert!(ix.start >= earliest && ix.last_instant() < base(), "{} .. {}", ix.start, ix.last_instant());
            for call in ix.calls() {
                assert!(call.start >= ix.start && call.end <= ix.end);
            }
        }
        assert!(p.interactions.windows(2).all(|w| w[0].start <= w[1].start));
    }

    #[test]
    fn regenerations_repeat_the_request_in_the_same_session_soon_after() {
        let mut opts = options(21, Volume::Interactions(3000));
        opts.failure_rate = 0.3;
        let p = plan(&opts, base());
        let by_trace: BTreeMap<TraceId, &Interaction> = p.interactions.iter().map(|i| (i.trace_id, i)).collect();
        let mut repeats = 0;
        for ix in &p.interactions {
            let Some(of) = ix.follow_up_of else { continue };
            repeats += 1;
            let original = by_trace[&of];
            assert_eq!(original.session_id, ix.session_id);
            assert!(original.reactions.iter().any(|r| r.kind.repeats_request()));
            let gap = ix.start - original.end;
            assert!(gap > time::Duration::ZERO && gap < time::Duration::seconds(30), "{gap}");
            let core = original.request.trim_end_matches(['.', '?', '!']);
            assert!(ix.request.to_lowercase().contains(&core[1..].to_lowercase()), "{} / {}", original.request, ix.request);
        }
        assert!(repeats > 50, "{repeats}");
        // Some regenerations are never reported: only the repeated request shows them.
        assert!(p.signals().any(|s| s.kind == Kind::Regenerate && !s.sent));
    }

    #[test]
    fn signals_link_in_several_ways() {
        let mut opts = options(17, Volume::Interactions(3000));
        opts.failure_rate = 0.3;
        let p = plan(&opts, base());
        let sent: Vec<_> = p.signals().filter(|s| s.sent).collect();
        let by_trace = sent.iter().filter(|s| s.trace_id.is_some()).count();
        let by_message = sent.iter().filter(|s| s.message_id.is_some()).count();
        let by_session = sent.iter().filter(|s| s.session_id.is_some() && s.trace_id.is_none()).count();
        assert!(by_trace > by_message && by_message > 10 && by_session > 10, "{by_trace} {by_message} {by_session}");
        let kinds: BTreeSet<Kind> = sent.iter().map(|s| s.kind).collect();
        for kind in [Kind::ThumbsUp, Kind::ThumbsDown, Kind::Regenerate, Kind::Edit, Kind::Copy, Kind::Abandon, Kind::Escalate, Kind::Retry]
        {
            assert!(kinds.contains(&kind), "{kind:?} never sent");
        }
        let keys: BTreeSet<&str> = sent.iter().map(|s| s.idempotency_key.as_str()).collect();
        assert_eq!(keys.len(), sent.len(), "idempotency keys are unique");
        // Healthy answers get rare noise, failures far more feedback.
        let rate = |failing: bool| {
            let group: Vec<_> = p.interactions.iter().filter(|i| i.failure.is_some() == failing).collect();
            group.iter().filter(|i| !i.signals.is_empty()).count() as f64 / group.len() as f64
        };
        assert!(rate(false) < 0.2 && rate(true) > 0.6, "{} {}", rate(false), rate(true));
    }

    #[test]
    fn repeated_questions_open_sessions_and_contradictions_answer_them() {
        let mut opts = options(21, Volume::Interactions(2000));
        opts.repeated_questions = 0.4;
        opts.failure_rate = 0.3;
        opts.mix.apply_overrides("inconsistent_answer=3").unwrap();
        let p = plan(&opts, base());
        let faq: Vec<&Interaction> = p.interactions.iter().filter(|i| crate::repeated::is_policy_question(&i.request)).collect();
        let contradicted: Vec<&&Interaction> = faq.iter().filter(|i| i.failure == Some(FailureMode::InconsistentAnswer)).collect();
        assert!(faq.len() > 100 && contradicted.len() >= 15, "{} repeated questions, {} contradicted", faq.len(), contradicted.len());
        assert!(contradicted.len() * 3 < faq.len(), "most answers are right");
        // Every contradiction answers a repeated question, as the session's first turn.
        assert_eq!(p.interactions.iter().filter(|i| i.failure == Some(FailureMode::InconsistentAnswer)).count(), contradicted.len());
        // Without the option, no contradictions and no account lookups.
        let plain = plan(&options(21, Volume::Interactions(2000)), base());
        assert!(plain.interactions.iter().all(|i| i.failure != Some(FailureMode::InconsistentAnswer)));
        assert!(!plain.interactions.iter().flat_map(|i| &i.steps).any(|s| matches!(s, Step::Tool(t) if t.name == "get_account_summary")));
    }

    #[test]
    fn a_failure_rate_that_drifts_moves_from_start_to_end_over_the_window() {
        let mut opts = options(5, Volume::Interactions(4000));
        opts.window = std::time::Duration::from_secs(28 * 86_400);
        opts.failure_rate = 0.4;
        opts.failure_rate_end = Some(0.04);
        let p = plan(&opts, base());
        let share = |from: i64, to: i64| {
            let week: Vec<&Interaction> = p
                .interactions
                .iter()
                .filter(|i| i.start >= base() - time::Duration::days(to) && i.start < base() - time::Duration::days(from))
                .collect();
            week.iter().filter(|i| i.failure.is_some()).count() as f64 / week.len().max(1) as f64
        };
        let (first, last) = (share(21, 28), share(0, 7));
        assert!(first > 0.3 && last < 0.1, "first week {first:.3}, last week {last:.3}");
        assert!((opts.failure_rate_at(base() - time::Duration::days(14), base()) - 0.22).abs() < 1e-9);
        // Without it, one rate throughout, and the same run as before.
        let plain = options(5, Volume::Interactions(4000));
        assert_eq!(plain.failure_rate_at(base() - time::Duration::days(6), base()), plain.failure_rate);
    }
}
