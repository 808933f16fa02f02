//! Readable, deterministic names for patterns: the dominant evidence and facets, and the terms
//! that set the pattern's texts apart from every other failure's (class-based TF-IDF).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::cause;
use crate::detect::{Contrast, Failure, excerpt};
use crate::text::terms;

/// The `k` most distinctive terms of each class; `docs[i]` belongs to `classes[i]` (None =
/// background: outliers count in the term frequencies across classes but get no terms).
pub fn distinctive_terms(docs: &[String], classes: &[Option<usize>], n_classes: usize, k: usize) -> Vec<Vec<String>> {
    let mut tf: Vec<HashMap<String, f64>> = vec![HashMap::new(); n_classes + 1];
    let mut docs_with: Vec<HashMap<String, usize>> = vec![HashMap::new(); n_classes + 1];
    let mut class_docs = vec![0usize; n_classes + 1];
    for (doc, class) in docs.iter().zip(classes) {
        let c = class.unwrap_or(n_classes);
        class_docs[c] += 1;
        let ts = terms(doc);
        let unique: HashSet<&String> = ts.iter().collect();
        for t in unique {
            *docs_with[c].entry(t.clone()).or_default() += 1;
        }
        for t in ts {
            *tf[c].entry(t).or_default() += 1.0;
        }
    }
    let mut total: HashMap<&str, f64> = HashMap::new();
    for class in &tf {
        for (t, n) in class {
            *total.entry(t.as_str()).or_default() += n;
        }
    }
    let avg_terms = tf.iter().map(|c| c.values().sum::<f64>()).sum::<f64>() / (n_classes + 1) as f64;
    (0..n_classes)
        .map(|c| {
            let size: f64 = tf[c].values().sum();
            let mut scored: Vec<(f64, &String)> = tf[c]
                .iter()
                // A label term must be common inside the pattern, not one member's quirk.
                .filter(|(t, _)| docs_with[c][*t] * 4 >= class_docs[c].max(1))
                // Numbers and ids (folded to zeros) and two-letter fragments read as noise.
                .filter(|(t, _)| t.split(' ').all(|w| w.chars().count() > 2 && !w.contains('0')))
                .map(|(t, n)| ((n / size.max(1.0)) * (1.0 + avg_terms / total[t.as_str()]).ln(), t))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            let mut chosen: Vec<String> = Vec::new();
            for (_, t) in scored {
                // A pair says more than its words alone; a word already inside a chosen pair adds nothing.
                if chosen.iter().any(|c| c.split(' ').any(|w| w == t) || t.split(' ').all(|w| c.split(' ').any(|x| x == w))) {
                    continue;
                }
                chosen.push(t.clone());
                if chosen.len() == k {
                    break;
                }
            }
            chosen
        })
        .collect()
}

/// The most frequent value and its share, ignoring empty values; ties by value.
pub fn dominant<'a>(values: impl Iterator<Item = &'a str>) -> Option<(String, f64)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut n = 0;
    for v in values.filter(|v| !v.is_empty()) {
        *counts.entry(v).or_default() += 1;
        n += 1;
    }
    let (v, c) = counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
    Some((v.to_string(), c as f64 / n as f64))
}

/// The cause first, in the words a reviewer would use: "`lookup_order` arguments rejected:
/// “order_id: Input should be a valid integer” (ValidationError)", "answers cut at
/// `max_tokens` = 256", "answers in French, Spanish to users writing in English". Built from
/// the cause key and what the members have in common; deterministic.
pub fn cause_phrase(key: &str, members: &[&Failure]) -> String {
    let most = |values: Vec<String>| dominant(values.iter().map(String::as_str));
    let tools = |n: usize| -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for f in members {
            if let Some((tool, _)) = f.tool_errors.first().and_then(|e| e.split_once(": ")) {
                *counts.entry(tool.to_string()).or_default() += 1;
            }
        }
        let mut v: Vec<(String, usize)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.iter().take(n).map(|(t, _)| format!("`{t}`")).collect::<Vec<_>>().join(", ")
    };
    if let Some((scope, class, ty, _)) = cause::parse_error_key(key) {
        let who = match scope.strip_prefix("tool:") {
            Some(tool) => format!("`{tool}`"),
            None if scope == "tool" => {
                let t = tools(2);
                if t.is_empty() { "tool calls".to_string() } else { t }
            }
            None => "model calls".to_string(),
        };
        // The most frequent message, its variables masked, says what the error is.
        let message = most(members.iter().map(|f| error_message(f)).map(|m| cause::template(&m)).collect());
        let types = most(members.iter().map(|f| error_type(f)).collect());
        let mut phrase = match class {
            cause::ErrorClass::Other => format!("{who} fail"),
            _ => format!("{who} {}", class.phrase()),
        };
        if let Some((m, _)) = message.filter(|(m, _)| !m.is_empty()) {
            phrase.push_str(&format!(": “{}”", excerpt(&m, 90)));
        }
        let ty = types.map(|(t, _)| t).unwrap_or(ty);
        if !ty.is_empty() {
            phrase.push_str(&format!(" ({ty})"));
        }
        return phrase;
    }
    let (id, qualifier) = key.split_once(" · ").unwrap_or((key, ""));
    match id {
        "finish_reason:length" => match most(members.iter().map(|f| f.call.output_tokens.to_string()).collect()) {
            Some((n, share)) if share >= 0.5 && n != "0" => format!("answers cut at `max_tokens` = {n}"),
            _ => "answers cut off (finish reason `length`)".into(),
        },
        "finish_reason:content_filter" => "answers blocked by the content filter".into(),
        "refusal" => "refuses requests".into(),
        "empty_output" => "empty answers".into(),
        "language_mismatch" => {
            let mut asked: BTreeMap<&str, usize> = BTreeMap::new();
            let mut answered: BTreeMap<&str, usize> = BTreeMap::new();
            for f in members {
                if let Some((q, a)) = &f.languages {
                    *asked.entry(q).or_default() += 1;
                    *answered.entry(a).or_default() += 1;
                }
            }
            // Languages that make up a tenth of the pattern, not a stray misdetection.
            let list = |m: BTreeMap<&str, usize>| {
                let mut v: Vec<(&str, usize)> = m.into_iter().filter(|(_, n)| n * 10 >= members.len()).collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                v.iter().map(|(l, _)| *l).collect::<Vec<_>>().join(", ")
            };
            let (a, q) = (list(answered), list(asked));
            if a.is_empty() { "answers in the wrong language".into() } else { format!("answers in {a} to users writing in {q}") }
        }
        "format_violation" => {
            // The most frequent kind of break, in words shared by its members (a key's name,
            // not the value each answer put there).
            let what = most(
                members
                    .iter()
                    .filter_map(|f| f.evidence.get(id))
                    .map(|e| match e.split_once(" is not one of") {
                        _ if e.contains("misses required") => e.trim_start_matches("the answer ").to_string(),
                        Some((k, _)) => format!("{} outside its allowed values", k.trim_start_matches("the answer's ")),
                        None => "not valid JSON".into(),
                    })
                    .collect(),
            );
            let who = if qualifier.is_empty() { "answers".to_string() } else { format!("`{qualifier}` answers") };
            format!("{who} break the requested JSON format ({})", what.map_or("not valid JSON".to_string(), |(w, _)| w))
        }
        "sensitive_data" => {
            let kinds = most(
                members
                    .iter()
                    .filter_map(|f| f.evidence.get(id))
                    .map(|e| {
                        e.split(" (")
                            .next()
                            .unwrap_or("")
                            .trim_start_matches("the answer discloses ")
                            .trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
                            .to_string()
                    })
                    .collect(),
            );
            match (qualifier, kinds) {
                ("secret", _) => "answers contain secrets (API keys, tokens) nobody gave them".into(),
                (_, Some((k, _))) => format!("answers disclose {k} the user did not give"),
                _ => "answers disclose personal data the user did not give".into(),
            }
        }
        "agent_loop" => match most(members.iter().filter_map(|f| f.qualifiers.get(id).cloned()).collect()) {
            Some((tool, _)) => format!("the agent runs `{tool}` in a loop"),
            None => "the agent repeats the same step in a loop".into(),
        },
        "insecure_code" => {
            match most(members.iter().filter_map(|f| f.evidence.get(id)).map(|e| e.split(": `").next().unwrap_or("").to_string()).collect())
            {
                Some((what, share)) if share >= 0.6 => format!("answers suggest code open to attack: {what}"),
                _ => "answers suggest code open to injection (SQL, shell, eval, deserialisation, HTML)".into(),
            }
        }
        "followed_injection" => "answers follow instructions planted in retrieved content or tool results (prompt injection)".into(),
        "ungrounded_figure" => {
            // The kinds of figure, by how many members state one; those of at least a fifth of
            // the members are named.
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for q in members.iter().filter_map(|f| f.qualifiers.get(id)) {
                *kinds.entry(crate::detect::grounding::Qualifier::read(q).kind).or_default() += 1;
            }
            let mut kinds: Vec<(&str, usize)> = kinds.into_iter().filter(|&(_, n)| n * 5 >= members.len()).collect();
            kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let kind = match kinds.as_slice() {
                [] => "figures".to_string(),
                [(k, _)] => format!("{k}s"),
                more => more.iter().map(|(k, _)| format!("{k}s")).collect::<Vec<_>>().join(" and "),
            };
            let (feature, superseded) = match qualifier.split_once(" · ") {
                Some((feature, "superseded")) => (feature, true),
                _ => (qualifier, false),
            };
            let who = if feature.is_empty() { "answers".to_string() } else { format!("`{feature}` answers") };
            if superseded {
                format!("{who} quote former {kind} their sources mark as outdated")
            } else {
                format!("{who} state {kind} their sources do not give")
            }
        }
        "ignored_sources" => {
            if qualifier.is_empty() {
                "answers say there is no information their sources give".into()
            } else {
                format!("`{qualifier}` answers say there is no information their sources give")
            }
        }
        "unperformed_action" => {
            let family = most(
                members
                    .iter()
                    .filter_map(|f| f.evidence.get(id))
                    .filter_map(|e| e.strip_prefix("the answer reports a ").and_then(|r| r.split(" as done").next()).map(str::to_string))
                    .collect(),
            );
            let what = family.map_or("an action".to_string(), |(f, _)| format!("a {f}"));
            if qualifier.is_empty() {
                format!("answers report {what} as done that no tool performed")
            } else {
                format!("answers report {what} as done, but `{qualifier}` never ran")
            }
        }
        "failed_evaluation" => {
            // The verdict most of its members got, when they share one ("unfaithful").
            let verdict = most(
                members
                    .iter()
                    .filter_map(|f| f.evidence.get(id))
                    .filter_map(|e| e.split_once(": ").map(|(_, v)| v.split([',', '—']).next().unwrap_or("").trim().to_string()))
                    .filter(|v| !v.is_empty() && !v.starts_with("score"))
                    .collect(),
            );
            let evaluator =
                if qualifier.is_empty() { "an outside evaluation".to_string() } else { format!("the `{qualifier}` evaluation") };
            match verdict {
                Some((v, share)) if share >= 0.5 => format!("fails {evaluator} ({v})"),
                _ => format!("fails {evaluator}"),
            }
        }
        "inconsistent" => {
            // The questions its members asked, most members first, with the facts in dispute.
            let mut questions: BTreeMap<&str, (usize, &Contrast)> = BTreeMap::new();
            for f in members {
                if let (Some(q), Some(c)) = (f.qualifiers.get(id), &f.contrast) {
                    let e = questions.entry(q.as_str()).or_insert((0, c));
                    e.0 += 1;
                    if c.asked > e.1.asked {
                        e.1 = c;
                    }
                }
            }
            let mut top: Vec<(usize, &Contrast)> = questions.into_values().collect();
            top.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.asked.cmp(&a.1.asked)).then(a.1.question.cmp(&b.1.question)));
            let one = |c: &Contrast| {
                let sides: Vec<String> = c.answers.iter().filter(|s| !s.facts.is_empty()).take(3).map(|s| s.facts.join(", ")).collect();
                format!("“{}” ({})", excerpt(&c.question, 60), sides.join(" vs "))
            };
            match top.as_slice() {
                [] => "the same question gets answers that contradict each other".into(),
                [(_, c)] => format!("answers to {} disagree", one(c)),
                [(_, a), (_, b), rest @ ..] => {
                    let more = if rest.is_empty() { String::new() } else { format!(" and {} more", rest.len()) };
                    format!("answers to the same question disagree: {}; {}{more}", one(a), one(b))
                }
            }
        }
        "slow" => "answers far slower than the feature's usual".into(),
        "costly" => "calls far costlier than the feature's usual".into(),
        id => id.replace('_', " "),
    }
}

fn error_message(f: &Failure) -> String {
    cause::errors(f).into_iter().map(|(_, _, message)| message).find(|m| !m.is_empty()).unwrap_or_default()
}

/// The error's type as the producer wrote it, without its module (`openai.RateLimitError`
/// → `RateLimitError`).
pub fn error_type(f: &Failure) -> String {
    let raw = cause::errors(f).into_iter().map(|(_, ty, _)| ty).find(|t| !t.is_empty()).unwrap_or_default();
    raw.rsplit('.').next().unwrap_or_default().to_string()
}

/// The label: evidence · distinctive terms · the dominant feature when it clearly dominates.
pub fn label(evidence: &str, terms: &[String], feature: Option<&(String, f64)>) -> String {
    let mut parts = vec![evidence.to_string()];
    if !terms.is_empty() {
        parts.push(terms.iter().take(3).cloned().collect::<Vec<_>>().join(", "));
    }
    if let Some((f, share)) = feature
        && *share >= 0.7
    {
        parts.push(f.clone());
    }
    parts.join(" · ")
}

/// What users did about a pattern's failures, most frequent first ("thumbs-down, regenerate").
pub fn signal_phrase(mix: &BTreeMap<String, u64>) -> String {
    let mut kinds: Vec<(&String, &u64)> = mix.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let names: Vec<String> = kinds.iter().take(2).map(|(k, _)| k.replace('_', "-")).collect();
    if names.is_empty() { "flagged".into() } else { names.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_terms_are_distinctive_and_deterministic() {
        let docs: Vec<String> = [
            "Refunds are available within 90 days in cash.",
            "You get a cash refund within 90 days.",
            "A cash refund is possible within 90 days of purchase.",
            "The answer stops in the middle of the",
            "Here is how to configure the server and then the",
            "Your order shipped and arrives Friday.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let classes = [Some(0), Some(0), Some(0), Some(1), Some(1), None];
        let t = distinctive_terms(&docs, &classes, 2, 3);
        assert!(t[0].iter().any(|x| x.contains("cash")), "{:?}", t[0]);
        assert!(t[0].iter().any(|x| x.contains("00 days") || x.contains("within")), "{:?}", t[0]);
        assert_eq!(distinctive_terms(&docs, &classes, 2, 3), t);
    }

    #[test]
    fn labels_read_like_a_reviewer_would_name_the_pattern() {
        let feature = ("support_assistant".to_string(), 0.9);
        assert_eq!(
            label("`length` finish", &["cut".into(), "mid sentence".into()], Some(&feature)),
            "`length` finish · cut, mid sentence · support_assistant"
        );
        assert_eq!(label("refusals", &[], Some(&("coding".to_string(), 0.5))), "refusals");
        assert_eq!(dominant(["a", "b", "b", ""].into_iter()), Some(("b".into(), 2.0 / 3.0)));
        let mix = BTreeMap::from([("thumbs_down".to_string(), 5), ("regenerate".to_string(), 2), ("edit".to_string(), 1)]);
        assert_eq!(signal_phrase(&mix), "thumbs-down, regenerate");
    }

    #[test]
    fn the_cause_comes_first() {
        use crate::features::tests_support::failure;
        let rules = crate::rules::Rules::defaults();
        let tool = |t: &str, e: &str| {
            let mut f = failure(t, &["tool_error"]);
            f.tool_errors = vec![e.to_string()];
            f
        };
        let fs = [
            tool("t1", "lookup_order: ValidationError: order_id: Input should be a valid integer, got 'NW-1'"),
            tool("t2", "lookup_order: ValidationError: order_id: Input should be a valid integer, got 'NW-7'"),
            tool("t3", "cancel_order: ValidationError: 'reason' is a required property"),
        ];
        let key = crate::cause::of(&rules, &fs[0]).key;
        let members: Vec<&Failure> = fs.iter().collect();
        assert_eq!(
            cause_phrase(&key, &members),
            "`lookup_order`, `cancel_order` arguments rejected: “order_id: Input should be a valid integer, got <*>” (ValidationError)"
        );
        let mut rate = failure("t4", &["error_status"]);
        rate.call.error_type = "openai.RateLimitError".into();
        rate.call.error_message = "Rate limit reached for gpt-4.1 in organization org-Ab12 on tokens per min (TPM): Limit 30000".into();
        let key = crate::cause::of(&rules, &rate).key;
        assert_eq!(
            cause_phrase(&key, &[&rate]),
            "model calls rate limited: “Rate limit reached for <n> in organization <n> on tokens per min (TPM): Limit <n>” (RateLimitError)"
        );
        let mut cut = failure("t5", &["finish_reason:length"]);
        cut.call.output_tokens = 256;
        assert_eq!(cause_phrase("finish_reason:length", &[&cut, &cut]), "answers cut at `max_tokens` = 256");
        let mut lang = failure("t6", &["language_mismatch"]);
        lang.languages = Some(("English".into(), "French".into()));
        assert_eq!(cause_phrase("language_mismatch", &[&lang]), "answers in French to users writing in English");
    }
}
