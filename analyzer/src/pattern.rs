//! A group of failures as the reviewer sees it: the `patterns` row (label with the cause first,
//! description, facets, impact, trend, triage state) and its `pattern_members` rows.

use std::collections::{BTreeMap, BTreeSet};

use flywheel_schemas::rows::{PatternMemberRow, PatternRow};
use time::OffsetDateTime;

use crate::cause::{self, Lane};
use crate::detect::Failure;
use crate::impact::Impact;
use crate::label;
use crate::track::Previous;

/// Everything one pattern row is made of.
pub struct Parts<'a> {
    pub project: &'a str,
    pub pattern_id: String,
    pub key: &'a str,
    pub members: &'a [usize],
    pub failures: &'a [Failure],
    pub terms: &'a [String],
    pub impact: &'a Impact,
    pub representation: &'a str,
    pub centroid: Vec<f32>,
    /// Members that only users flagged and joined the cause by their text.
    pub joined: usize,
    pub previous: Option<&'a Previous>,
    pub trend: &'static str,
    pub status: String,
    pub run_id: &'a str,
    pub now: OffsetDateTime,
}

pub fn at(nanos: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(nanos.into()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// How much a reviewer should care, per affected user: wrong or unsafe answers above
/// infrastructure noise (operations failures are real but fixed elsewhere and often retried).
pub fn weight(lane: Lane) -> f32 {
    match lane {
        Lane::Behaviour => 1.0,
        Lane::Operations => 0.5,
    }
}

/// What a member answered, for a label: its text, or when it answered with tool calls only,
/// the calls (`cancel_booking({"booking":"TJAQYG"})`) — what the model did is then the answer.
fn answer_of(f: &Failure) -> Option<(Answer, String)> {
    let text = f.call.output_text.trim();
    if !text.is_empty() {
        return Some((Answer::Text, without_opener(&text.replace('\n', " "))));
    }
    let calls: Vec<String> = f.call.requested_tools().iter().map(|(name, args)| format!("{name}({args})")).collect();
    (!calls.is_empty()).then(|| (Answer::ToolCalls, calls.join(" ")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Text,
    ToolCalls,
}

/// The answer among `members` that holds most of the pattern's distinctive terms (ties: the
/// shorter, then the first), cut for a label; `None` when no member answered.
fn example_answer(members: &[&Failure], terms: &[String]) -> Option<(Answer, String)> {
    let terms: Vec<String> = terms.iter().map(|t| t.to_lowercase()).collect();
    members
        .iter()
        .filter_map(|f| answer_of(f))
        .enumerate()
        .max_by_key(|(i, (_, a))| {
            let lower = a.to_lowercase();
            (terms.iter().filter(|t| lower.contains(t.as_str())).count(), std::cmp::Reverse(a.len()), std::cmp::Reverse(*i))
        })
        // A label is read in the TUI, the report and eval files: no user's e-mail or number in it.
        .map(|(_, (kind, a))| (kind, crate::detect::excerpt(&crate::export::case::mask(&a), 70)))
}

/// An answer without a short opening sentence ("No problem.", "Sure!", "Great question."): the
/// label has room for the substance only.
fn without_opener(answer: &str) -> String {
    let end = [". ", "! "].iter().filter_map(|p| answer.find(p)).min();
    match end {
        Some(i) if answer[..i].split_whitespace().count() <= 3 && answer[i + 2..].trim().len() > 20 => answer[i + 2..].trim().to_string(),
        _ => answer.to_string(),
    }
}

pub fn row(p: Parts) -> PatternRow {
    let members: Vec<&Failure> = p.members.iter().map(|&i| &p.failures[i]).collect();
    let mut signal_mix: BTreeMap<String, u64> = BTreeMap::new();
    let mut reason_counts: BTreeMap<String, u64> = BTreeMap::new();
    for f in &members {
        for s in f.signals.iter().map(|s| s.kind.clone()).collect::<BTreeSet<_>>() {
            *signal_mix.entry(s).or_default() += 1;
        }
        for r in &f.reasons {
            *reason_counts.entry(r.clone()).or_default() += 1;
        }
    }
    // Only users flagged it: no rule names the cause, so the label quotes the answer that best
    // carries the cluster's distinctive terms — what a reviewer reads to name it.
    let evidence = match (p.key.is_empty(), example_answer(&members, p.terms)) {
        (true, Some((Answer::Text, answer))) => format!("answers like “{answer}” (users: {})", label::signal_phrase(&signal_mix)),
        (true, Some((Answer::ToolCalls, calls))) => format!("tool calls like “{calls}” (users: {})", label::signal_phrase(&signal_mix)),
        (true, None) => format!("users flag ({})", label::signal_phrase(&signal_mix)),
        (false, _) => label::cause_phrase(p.key, &members),
    };
    let imp = p.impact;
    let feature = imp.features.first().cloned();
    let label = label::label(&evidence, p.terms, feature.as_ref());
    let lane = cause::lane_of_key(p.key);

    let mut facets: BTreeMap<String, String> = BTreeMap::new();
    facets.insert("signature".into(), p.key.to_string());
    facets.insert("cause".into(), evidence.clone());
    facets.insert("lane".into(), lane.as_str().into());
    facets.insert("representation".into(), p.representation.to_string());
    if p.joined > 0 {
        facets.insert("joined_by_text".into(), p.joined.to_string());
    }
    let shares = |v: &[(String, f64)]| v.iter().take(4).map(|(k, s)| format!("{k} {:.0}%", s * 100.0)).collect::<Vec<_>>().join(", ");
    if let Some((f, _)) = imp.features.first() {
        facets.insert("feature".into(), f.clone());
        facets.insert("features".into(), shares(&imp.features));
    }
    if let Some((m, _)) = imp.models.first() {
        facets.insert("model".into(), m.clone());
        facets.insert("models".into(), shares(&imp.models));
    }
    let pick = |values: Vec<String>| label::dominant(values.iter().map(String::as_str));
    if let Some((e, _)) = pick(members.iter().map(|f| label::error_type(f)).collect()) {
        facets.insert("error_type".into(), e);
    }
    if let Some((r, _)) = pick(members.iter().map(|f| f.call.finish_reasons.first().cloned().unwrap_or_default()).collect()) {
        facets.insert("finish_reason".into(), r);
    }
    if let Some((s, _)) = signal_mix.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) {
        facets.insert("signal".into(), s.clone());
    }
    let mut languages: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &members {
        if let Some((_, answer)) = &f.languages {
            *languages.entry(answer).or_default() += 1;
        }
    }
    let languages: Vec<&str> = languages.iter().filter(|(_, n)| **n * 10 >= members.len()).map(|(l, _)| *l).collect();
    if !languages.is_empty() {
        facets.insert("languages".into(), languages.join(", "));
    }
    let mut reasons: Vec<(String, u64)> = reason_counts.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    facets.insert("reasons".into(), reasons.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", "));
    let description = describe(&evidence, imp, &reasons, &signal_mix, p.terms);
    PatternRow {
        project_id: p.project.into(),
        pattern_id: p.pattern_id,
        label,
        description,
        terms: p.terms.to_vec(),
        facets,
        status: p.status,
        trend: p.trend.into(),
        size: members.len() as u64,
        previous_size: p.previous.map_or(0, |prev| prev.size),
        calls: imp.calls,
        traces: imp.traces,
        sessions: imp.sessions,
        users: imp.users,
        severity: imp.severity,
        cost_usd: imp.cost_usd,
        mean_latency_ms: imp.mean_latency_ms,
        signal_mix,
        centroid: p.centroid,
        first_seen: at(imp.first_seen_ns),
        last_seen: at(imp.last_seen_ns),
        fixed_at: time::OffsetDateTime::UNIX_EPOCH,
        regressed_at: time::OffsetDateTime::UNIX_EPOCH,
        regressed_in: String::new(),
        run_id: p.run_id.to_string(),
        updated_at: p.now,
    }
}

/// One member row per failure of the pattern, with its distance to the pattern's centre.
pub fn member_rows(
    project: &str,
    pattern_id: &str,
    run_id: &str,
    members: &[usize],
    failures: &[Failure],
    distance: &dyn Fn(usize) -> f32,
    now: OffsetDateTime,
) -> Vec<PatternMemberRow> {
    members
        .iter()
        .map(|&i| {
            let f = &failures[i];
            PatternMemberRow {
                project_id: project.into(),
                pattern_id: pattern_id.into(),
                run_id: run_id.into(),
                trace_id: f.call.trace_id.clone(),
                span_id: f.call.span_id.clone(),
                call_time: f.call.start_time,
                distance: distance(i),
                added_at: now,
            }
        })
        .collect()
}

/// Patterns in the order a reviewer reads them: live ones first, then by impact — users
/// affected × severity, weighed by lane — then size, then id.
pub fn sort(patterns: &mut [PatternRow]) {
    let impact = |p: &PatternRow| p.users.max(1) as f32 * p.severity * weight(Lane::of(p));
    patterns.sort_by(|a, b| {
        (b.size > 0)
            .cmp(&(a.size > 0))
            .then(b.is_regressed().cmp(&a.is_regressed()))
            .then(impact(b).total_cmp(&impact(a)))
            .then(b.size.cmp(&a.size))
            .then(a.pattern_id.cmp(&b.pattern_id))
    });
}

/// One paragraph a reviewer can read aloud.
fn describe(cause: &str, imp: &Impact, reasons: &[(String, u64)], signals: &BTreeMap<String, u64>, terms: &[String]) -> String {
    let day = |ns: i64| at(ns).date().to_string();
    let mut s = format!(
        "{cause}: {} failing calls in {} interactions of {} users ({} sessions), {} to {}.",
        imp.calls,
        imp.traces,
        imp.users,
        imp.sessions,
        day(imp.first_seen_ns),
        day(imp.last_seen_ns)
    );
    let top: Vec<String> = reasons.iter().take(3).map(|(r, n)| format!("{r} ({n})")).collect();
    if !top.is_empty() {
        s.push_str(&format!(" Evidence: {}.", top.join(", ")));
    }
    if let Some((f, share)) = imp.features.first() {
        s.push_str(&format!(" Mostly in {f} ({:.0}%)", share * 100.0));
        if let Some((m, ms)) = imp.models.first() {
            s.push_str(&format!(", on {m} ({:.0}%)", ms * 100.0));
        }
        s.push('.');
    }
    if !signals.is_empty() {
        let kinds: Vec<String> = signals.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s.push_str(&format!(" User signals: {}.", kinds.join(", ")));
    }
    if !terms.is_empty() {
        s.push_str(&format!(" Distinctive words: {}.", terms.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{Answer, example_answer, without_opener};
    use crate::features::tests_support::failure;

    #[test]
    fn a_short_opener_leaves_room_for_the_substance() {
        assert_eq!(without_opener("No problem. Refunds come by check within 45 days."), "Refunds come by check within 45 days.");
        assert_eq!(without_opener("Sure! Gift cards are refundable in cash."), "Gift cards are refundable in cash.");
        assert_eq!(without_opener("Refunds post in 5-10 days. Gift cards are final."), "Refunds post in 5-10 days. Gift cards are final.");
        assert_eq!(without_opener("Yes. Done."), "Yes. Done.");
    }

    /// A cluster whose members answered with tool calls only is labelled by the calls they
    /// made (there is no text to quote), and the call that carries the cluster's terms wins.
    #[test]
    fn members_that_answered_with_tool_calls_are_quoted_by_their_calls() {
        let mut members = Vec::new();
        for (booking, tool) in [("TJAQYG", "cancel_booking"), ("KQ7PZD", "lookup_booking")] {
            let mut f = failure("t", &["thumbs_down"]);
            f.call.output_text.clear();
            f.call.tool_calls = format!(
                r#"[{{"role":"assistant","parts":[{{"type":"tool_call","id":"c1","name":"{tool}","arguments":{{"booking":"{booking}"}}}}]}}]"#
            );
            members.push(f);
        }
        let refs: Vec<_> = members.iter().collect();
        let (kind, quoted) = example_answer(&refs, &["cancel".into()]).expect("an answer to quote");
        assert_eq!(kind, Answer::ToolCalls);
        assert_eq!(quoted, r#"cancel_booking({"booking":"TJAQYG"})"#);
        let mut private = failure("t", &["thumbs_down"]);
        private.call.output_text = "Done. I sent the refund to jane.doe@example.com and card 4111111111111111.".into();
        let (_, quoted) = example_answer(&[&private], &[]).unwrap();
        assert!(!quoted.contains("jane.doe") && !quoted.contains("4111111111111111"), "personal data masked in a label: {quoted}");
        members.iter_mut().for_each(|f| f.call.tool_calls.clear());
        let refs: Vec<_> = members.iter().collect();
        assert_eq!(example_answer(&refs, &[]), None, "nothing answered, nothing quoted");
    }
}
