//! The cause of a failure — what a reviewer would name — as opposed to the evidence that
//! revealed it.
//!
//! A failure the system itself named gets a *cause key*; failures with the same key are one
//! pattern whatever else they carry (a thumbs-down on a rate-limited call is a rate limit).
//! * **Errors** (a call in error, an exception, a failing tool) group the way Sentry groups
//!   exceptions and Drain groups log lines: by where it failed (the model call, or the tool),
//!   by a canonical error class that reads the same across frameworks and providers
//!   (`RateLimitError`, `openai.RateLimitError`, "Error code: 429", `RESOURCE_EXHAUSTED` are
//!   all a rate limit), and — for errors of no known class — by the error type and the
//!   message's *template*, its variables (numbers, ids, quoted values, paths, URLs) masked,
//!   near-identical templates joined. Distinct messages under one span status split; one
//!   message with different ids in it does not.
//! * **Behaviours** a rule names (truncation, refusal, wrong language, broken format,
//!   disclosure, agent loop, empty answer) are their own causes.
//! * Failures only users flagged have no key: their text has to speak ([`crate::cluster`]).
//!
//! Every cause is in a lane: *operations* (rate limits, timeouts, unavailable services,
//! latency and cost outliers: infrastructure, fixed by configuration, shown apart) or
//! *behaviour* (what the AI said or did: fixed by prompts, tools, models, evals).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::detect::Failure;
use crate::detect::grounding::Qualifier;
use crate::rules::{Category, Rules};

pub use flywheel_schemas::failure::Lane;

pub use flywheel_schemas::error_class::ErrorClass;

/// Whether which tool failed is part of the cause. Arguments the tools reject and tools that
/// do not exist are the model's doing, whichever tool it aimed at; a tool that times out or
/// does not find its rows is that tool's problem.
fn per_tool(class: ErrorClass) -> bool {
    !matches!(class, ErrorClass::InvalidArguments | ErrorClass::UnknownTool)
}

static MASKS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"https?://\S+", "<url>"),
        (r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b", "<email>"),
        (r"(?:/[\w.\-]+){2,}/?", "<path>"),
        (r#""[^"\n]{0,120}"|'[^'\n]{0,120}'|`[^`\n]{0,120}`"#, "<*>"),
        (r"\{[^{}\n]{0,400}\}|\[[^\[\]\n]{0,400}\]", "<*>"),
        (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<id>"),
        // Tokens mixing letters and digits (org-a1b2c3, NW-48213, gpt-4.1), and hex ids.
        (r"\b[A-Za-z_\-]*\d[\w.\-]*\b", "<n>"),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).expect("valid mask"), r))
    .collect()
});

/// The message's template: variables masked (URLs, e-mails, paths, quoted values, inline
/// objects, ids, numbers), whitespace collapsed, cut at 160 characters.
pub fn template(message: &str) -> String {
    let mut t = message.to_string();
    for (re, with) in MASKS.iter() {
        t = re.replace_all(&t, *with).into_owned();
    }
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::detect::excerpt(&t, 160)
}

/// Drain's similarity of two templates: the share of positions with the same token when they
/// have as many tokens, else the overlap of their token sets.
pub fn template_similarity(a: &str, b: &str) -> f64 {
    let ta: Vec<&str> = a.split(' ').collect();
    let tb: Vec<&str> = b.split(' ').collect();
    if ta.len() == tb.len() {
        return ta.iter().zip(&tb).filter(|(x, y)| x == y).count() as f64 / ta.len().max(1) as f64;
    }
    let sa: std::collections::BTreeSet<&str> = ta.into_iter().collect();
    let sb: std::collections::BTreeSet<&str> = tb.into_iter().collect();
    sa.intersection(&sb).count() as f64 / sa.union(&sb).count().max(1) as f64
}

/// Templates at least this similar are one message (Drain's default similarity threshold).
const SAME_TEMPLATE: f64 = 0.6;

const SEP: &str = " · ";

/// A failure's cause: its key (empty when only users flagged it) and lane.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cause {
    pub key: String,
    pub lane: Lane,
    /// Failures only users flagged may join this cause by their text: its rule recognises the
    /// behaviour in free text and misses some instances ([`crate::rules::RuleKind::misses_instances`]).
    pub open: bool,
}

/// The error a failure carries, when its strongest evidence is an error: (scope, error type,
/// message). Scope is `model` for the call itself, `tool:NAME` for a failing tool.
fn error_of(rule_id: &str, f: &Failure) -> Option<(String, String, String)> {
    match rule_id {
        "error_status" => Some(("model".into(), f.call.error_type.clone(), f.call.error_message.clone())),
        "exception" => {
            let e = f.evidence.get(rule_id).cloned().unwrap_or_default();
            let (ty, msg) = e.split_once(": ").unwrap_or((e.as_str(), ""));
            Some(("model".into(), ty.to_string(), msg.to_string()))
        }
        "tool_error" => {
            // "tool: Type: message" or "tool: message".
            let e = f.tool_errors.first().cloned().or_else(|| f.evidence.get(rule_id).cloned()).unwrap_or_default();
            let (tool, rest) = e.split_once(": ").unwrap_or(("tool", e.as_str()));
            let (ty, msg) = match rest.split_once(": ") {
                Some((t, m)) if !t.contains(' ') && t.len() <= 80 => (t.to_string(), m.to_string()),
                _ => (String::new(), rest.to_string()),
            };
            Some((format!("tool:{tool}"), ty, msg))
        }
        _ => None,
    }
}

/// Every error a failure carries — its call's, its first failing tool's, its call span's
/// exception — as (scope, error type, message), in that order, read the one way causes read
/// them. Labels take the first non-empty type and message from here.
pub fn errors(f: &Failure) -> Vec<(String, String, String)> {
    ["error_status", "tool_error", "exception"].into_iter().filter_map(|id| error_of(id, f)).collect()
}

/// The cause of one failure, before near-identical templates are joined ([`causes`]).
pub fn of(rules: &Rules, f: &Failure) -> Cause {
    let strongest = f
        .reasons
        .iter()
        .filter_map(|r| rules.get(r))
        .filter(|r| r.spec.category != Category::Implicit)
        .max_by(|a, b| a.spec.severity.total_cmp(&b.spec.severity).then_with(|| rank(rules, b.id()).cmp(&rank(rules, a.id()))));
    let Some(rule) = strongest else { return Cause { key: String::new(), lane: Lane::Behaviour, open: false } };
    let id = rule.id();
    if let Some((scope, ty, message)) = error_of(id, f) {
        // The model call's class was read at ingest, with the request's HTTP status; other
        // errors (tools, exceptions) and rows stored before that are read here the same way.
        let class = match id {
            "error_status" => {
                ErrorClass::from_id(&f.call.error_class).unwrap_or_else(|| ErrorClass::classify(&ty, &message, f.call.http_status))
            }
            _ => ErrorClass::of(&ty, &message),
        };
        let scope = if scope.starts_with("tool:") && !per_tool(class) { "tool".to_string() } else { scope };
        let mut key = ["error", &scope, class.id()].join(SEP);
        if class == ErrorClass::Other {
            let ty = if ty.is_empty() { "error".to_string() } else { ty.rsplit('.').next().unwrap_or(&ty).to_string() };
            key = [key.as_str(), &ty, &template(&message)].join(SEP);
        }
        return Cause { key, lane: lane(&scope, class), open: false };
    }
    let lane = if rule.spec.category == Category::Derived { Lane::Operations } else { Lane::Behaviour };
    let key = match (id, f.qualifiers.get(id)) {
        ("sensitive_data", Some(family)) => [id, family.as_str()].join(SEP),
        // A format is one feature's contract with the program that reads its answers: two
        // features breaking theirs are two causes (a prompt each, a schema each).
        ("format_violation", _) => [id, f.call.feature.as_str()].join(SEP),
        // Unfaithful to its sources: a feature's retrieval or tools, and its prompt, are the
        // cause; a help centre misquoting its pages and an agent misreading its tools are two.
        // Quoting a figure the sources give as outdated is its own cause: how the pages mark
        // their old values, not figures made up.
        ("ungrounded_figure", Some(q)) if Qualifier::read(q).superseded => [id, f.call.feature.as_str(), "superseded"].join(SEP),
        ("ungrounded_figure", _) => [id, f.call.feature.as_str()].join(SEP),
        ("ignored_sources", _) => [id, f.call.feature.as_str()].join(SEP),
        // What an outside evaluator checks (faithfulness, relevance, …) is the cause it found.
        ("failed_evaluation", Some(evaluator)) => [id, evaluator.as_str()].join(SEP),
        // Questions answered two ways: a feature whose facts are not pinned down (missing from
        // its instructions or sources, or sampled too hot) — one cause per feature, whichever
        // questions show it; the report and the members list the questions one by one.
        ("inconsistent", _) => [id, f.call.feature.as_str()].join(SEP),
        // The tool the answers claim ran: one missing step of one agent.
        ("unperformed_action", Some(tool)) => [id, tool.as_str()].join(SEP),
        _ => id.to_string(),
    };
    // A period read to explain what users flagged is found only where the answer states one:
    // other flagged answers of that cause may join it by their text, as for the open rules.
    let explained = id == "ungrounded_figure" && f.qualifiers.get(id).is_some_and(|q| Qualifier::read(q).explains);
    Cause { key, lane, open: rule.spec.kind.misses_instances() || explained }
}

/// A model call refused for its API key is configuration; a tool refusing the agent a table
/// is the agent reaching for what it should not (excessive agency), a behaviour.
fn lane(scope: &str, class: ErrorClass) -> Lane {
    if class == ErrorClass::Auth && scope.starts_with("tool") { Lane::Behaviour } else { class.lane() }
}

fn rank(rules: &Rules, id: &str) -> usize {
    rules.rules.iter().position(|r| r.id() == id).unwrap_or(usize::MAX)
}

/// The causes of all failures, with near-identical message templates joined: within one
/// scope and error type, the most frequent template absorbs those at least [`SAME_TEMPLATE`]
/// similar to it, as Drain does, so that one message's wording variants are one cause.
pub fn causes(rules: &Rules, failures: &[Failure]) -> Vec<Cause> {
    let mut causes: Vec<Cause> = failures.iter().map(|f| of(rules, f)).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &causes {
        if c.key.starts_with("error") && c.key.split(SEP).count() == 5 {
            *counts.entry(c.key.as_str()).or_default() += 1;
        }
    }
    let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut representatives: Vec<&str> = Vec::new();
    let mut rename: BTreeMap<String, String> = BTreeMap::new();
    for (key, _) in by_count {
        let (prefix, tpl) = key.rsplit_once(SEP).expect("five parts");
        let joined = representatives.iter().find(|r| {
            let (rp, rt) = r.rsplit_once(SEP).expect("five parts");
            rp == prefix && template_similarity(rt, tpl) >= SAME_TEMPLATE
        });
        match joined {
            Some(r) => {
                rename.insert(key.to_string(), r.to_string());
            }
            None => representatives.push(key),
        }
    }
    for c in &mut causes {
        if let Some(r) = rename.get(&c.key) {
            c.key = r.clone();
        }
    }
    causes
}

/// What usually fixes a cause, for the weekly review: advice that follows the cause, not the
/// evidence. Empty for failures only users flagged (their examples say more than a rule can).
pub fn advice(key: &str) -> &'static str {
    if let Some((_, class, _, _)) = parse_error_key(key) {
        return match class {
            ErrorClass::RateLimit => "Raise the provider tier or spread the load: retries with backoff, a queue, a fallback model",
            ErrorClass::ContextLength => "Trim what goes into the prompt (history, retrieved passages, tool results) or summarise it",
            ErrorClass::Timeout => "Check the slow dependency; set deadlines, retries and a fallback path",
            ErrorClass::Unavailable => "A dependency was down: retries with backoff and a fallback provider",
            ErrorClass::ContentFilter => "Review the requests the filter blocks and the filter's settings",
            ErrorClass::Auth => "Check credentials and what the agent is allowed to reach; narrow the tools' scope",
            ErrorClass::UnknownTool => {
                "The model calls tools that do not exist: list the real tools in the request and constrain tool choice"
            }
            ErrorClass::InvalidArguments => {
                "Tighten the tool's schema (types, enums, required fields) and show valid examples in its description"
            }
            ErrorClass::Syntax => {
                "The model writes code the tool cannot parse: give it the dialect and schema, and validate before running"
            }
            ErrorClass::InvalidRequest => {
                "The provider refuses the request itself: check the parameters the app sends (model, options, message layout) against its API"
            }
            ErrorClass::NotFound => "The model asks for things that do not exist: ground it in the real names (schema, catalogue) first",
            ErrorClass::Other => "Read the error template and the examples; fix the tool or the prompt that leads to it",
        };
    }
    match key.split(SEP).next().unwrap_or("") {
        "finish_reason:length" => "Raise max_tokens where answers need it, or ask for shorter answers",
        "finish_reason:content_filter" => "Review the requests the filter blocks and the filter's settings",
        "refusal" => {
            "Review the instructions or safety settings that make the model refuse requests it should serve; add eval cases of allowed requests"
        }
        "empty_output" => "Find why the model returns nothing (stop sequences, tool-only turns, filters)",
        "language_mismatch" => "Tell the model to answer in the user's language, and test with non-English conversations",
        "format_violation" => "Use the provider's structured outputs (JSON schema) and validate, retrying on a parse failure",
        "sensitive_data" => "Keep personal data and secrets out of the context the model sees, and filter answers before showing them",
        "insecure_code" => {
            "Tell the model to use parameterised queries, argument lists and safe loaders, and scan suggested code (Bandit, Semgrep) before showing it"
        }
        "followed_injection" => {
            "Treat retrieved pages and tool results as data: strip instructions from them, mark them as untrusted in the prompt, and filter links the answer may give"
        }
        "ungrounded_figure" => {
            "Tell the model to quote figures only from the sources it is given (and to say when they hold none); check answers' figures against the sources before showing them"
        }
        "ignored_sources" => {
            "Tell the model to answer from the sources it is given before saying it does not know, and check that retrieved passages reach the prompt in a form it reads"
        }
        "unperformed_action" => {
            "Make the agent call the tool before it reports the action (require the tool call, check the trace for it before answering), and never let it say done without the tool's result"
        }
        "inconsistent" => {
            "Pin the answer: state the fact in the instructions or a source the model retrieves, lower the temperature for factual questions, and keep the question as an eval case expecting the consistent answer"
        }
        "agent_loop" => "Cap the agent's steps, detect repeated tool calls, and make tool results say when there is nothing more to find",
        "failed_evaluation" => {
            "An outside evaluator failed these answers: read its explanations on the examples, fix the prompt, retrieval or tool it points to, and keep the cases as evals"
        }
        "slow" => "Look at the slow calls' prompt sizes, models and providers; stream, cache, or route to a faster model",
        "costly" => "Look at the costly calls' prompt sizes and models; trim context or route to a cheaper model",
        // Only users flagged it: nothing names the cause but the answers themselves.
        "" => {
            "Only users flagged these answers: read the examples against the instructions and sources, name the cause, fix the prompt or retrieval it points to, and keep the cases as evals"
        }
        _ => "",
    }
}

/// The parts of an error cause key: (scope, class, error type, template).
pub fn parse_error_key(key: &str) -> Option<(String, ErrorClass, String, String)> {
    let parts: Vec<&str> = key.split(SEP).collect();
    if parts.first() != Some(&"error") || parts.len() < 3 {
        return None;
    }
    let class = ErrorClass::from_id(parts[2])?;
    Some((parts[1].to_string(), class, parts.get(3).unwrap_or(&"").to_string(), parts.get(4).unwrap_or(&"").to_string()))
}

/// The lane of a cause key (for patterns read back from storage).
pub fn lane_of_key(key: &str) -> Lane {
    match parse_error_key(key) {
        Some((scope, class, _, _)) => lane(&scope, class),
        None if key == "slow" || key == "costly" => Lane::Operations,
        None => Lane::Behaviour,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::tests_support::failure;

    #[test]
    fn error_classes_read_the_same_across_providers_and_frameworks() {
        let cases = [
            ("openai.RateLimitError", "Error code: 429 - {'error': {'message': 'Rate limit reached for gpt-4.1'}}", ErrorClass::RateLimit),
            ("", "RESOURCE_EXHAUSTED: Quota exceeded for aiplatform.googleapis.com", ErrorClass::RateLimit),
            ("ContextWindowExceededError", "This model's maximum context length is 128000 tokens", ErrorClass::ContextLength),
            ("APITimeoutError", "Request timed out.", ErrorClass::Timeout),
            ("ValidationError", "1 validation error for LookupOrderArgs\norder_id\n  Field required", ErrorClass::InvalidArguments),
            ("JSONDecodeError", "Could not parse the arguments of lookup_order", ErrorClass::InvalidArguments),
            ("ToolNotFoundError", "No tool named `get_invoice` is registered", ErrorClass::UnknownTool),
            ("ProgrammingError", "syntax error at or near \"FROM\" at character 31", ErrorClass::Syntax),
            ("UndefinedColumn", "column \"revenu\" does not exist", ErrorClass::NotFound),
            ("InsufficientPrivilege", "permission denied for table salaries", ErrorClass::Auth),
            ("InternalServerError", "Error code: 503 - The server is overloaded", ErrorClass::Unavailable),
            ("KeyError", "'customer'", ErrorClass::Other),
        ];
        for (ty, msg, class) in cases {
            assert_eq!(ErrorClass::of(ty, msg), class, "{ty}: {msg}");
        }
        assert!(ErrorClass::of("RateLimitError", "").lane() == Lane::Operations);
    }

    #[test]
    fn templates_mask_what_varies() {
        assert_eq!(
            template("Rate limit reached for gpt-4.1 in organization org-Ab12Cd on tokens: Limit 30000, Used 29876. See https://x.io/a"),
            template("Rate limit reached for gpt-4o in organization org-Zz99Yy on tokens: Limit 200000, Used 199000. See https://x.io/b")
        );
        assert_eq!(template("order 'NW-4821' not found in /srv/data/orders.db"), "order <*> not found in <path>");
        assert!(template_similarity(&template("column \"revenu\" does not exist"), &template("column \"totl\" does not exist")) >= 0.99);
        assert!(template_similarity("cannot reach the inventory service", "the inventory is empty for <*>") < SAME_TEMPLATE);
    }

    #[test]
    fn one_signature_many_causes_and_one_cause_many_wordings() {
        let rules = Rules::defaults();
        let tool = |t: &str, e: &str| {
            let mut f = failure(t, &["tool_error", "thumbs_down"]);
            f.tool_errors = vec![e.to_string()];
            f
        };
        let fs = vec![
            tool("t1", "run_sql: ProgrammingError: syntax error at or near \"FROM\" at character 31"),
            tool("t2", "run_sql: ProgrammingError: syntax error at or near \"WHERE\" at character 77"),
            tool("t3", "run_sql: UndefinedColumn: column \"revenu\" does not exist"),
            tool("t4", "run_sql: InsufficientPrivilege: permission denied for table salaries"),
            tool("t5", "lookup_order: ValidationError: order_id: Input should be a valid integer"),
            tool("t6", "cancel_order: ValidationError: 'reason' is a required property"),
            tool("t7", "run_sql: ToolError: the warehouse returned no rows for 2024-07"),
            tool("t8", "run_sql: ToolError: the warehouse returned no rows for 2025-01"),
            tool("t9", "run_sql: ToolError: cannot open a session: too many clients already"),
        ];
        let keys: Vec<String> = causes(&rules, &fs).into_iter().map(|c| c.key).collect();
        assert_eq!(keys[0], keys[1], "one syntax error, two queries");
        assert_ne!(keys[0], keys[2]);
        assert_ne!(keys[2], keys[3]);
        assert_eq!(keys[4], keys[5], "rejected arguments are the model's doing, whichever tool");
        assert_eq!(keys[6], keys[7], "one message template");
        assert_ne!(keys[7], keys[8], "another message under the same type");
        assert_eq!(keys[3], "error · tool:run_sql · auth");
        assert_eq!(causes(&rules, &fs)[3].lane, Lane::Behaviour, "the agent reaching for a forbidden table");
        assert_eq!(of(&rules, &failure("u", &["thumbs_down"])).key, "", "users only: no cause key");
        assert_eq!(of(&rules, &failure("s", &["finish_reason:length", "slow"])).key, "finish_reason:length");
        assert_eq!(of(&rules, &failure("s", &["slow"])).lane, Lane::Operations);
    }
}
