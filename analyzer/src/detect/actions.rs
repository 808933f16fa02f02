//! The `unperformed_action` rule: the answer tells the user an action is done — "I've cancelled
//! your order", "your booking has been changed", "Done: booking K7Q2 is now on NW 412" after
//! "please move my flight" — while no tool that performs that action ran in the interaction,
//! although the feature has one. MAST names it (2.6 reasoning–action mismatch, 3.1 premature
//! termination); users find out later, when nothing changed, which makes it one of the most
//! damaging agent failures and one no reaction reliably reveals.
//!
//! An action is read by meaning, not by one tool's name: a verb family (change: change, move,
//! rebook, update, modify…; cancel: cancel, delete, remove, void…) names the action in the
//! answer or in the user's request, and any tool whose name contains a word of that family
//! performs it (`change_booking`, `modifyReservation`, `rebook-flight`) when the claim or the
//! request names what the tool acts on (the booking, the reservation). A claim is read in
//! English: a first-person perfect ("I've moved"), a passive perfect ("has been cancelled") or
//! a completion word ("Done", "All set", "is now on") when the user asked for that action.
//!
//! Not flagged: a claim whose action no tool of the feature performs (a writing assistant
//! "updated the summary" itself), a claim in a negated, conditional or future sentence ("I
//! couldn't change…", "once I've booked…", "I'll cancel…"), an answer that itself calls a tool,
//! and any claim after a tool of its family ran in the trace or, earlier, in the session.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use regex::Regex;
use time::Duration;

use super::inputs::Call;

/// What an answer must contain to be read for a claim, in ClickHouse's RE2: loose on purpose
/// (the exact reading is [`claims`]), so that only the traces of such answers send their tool
/// spans.
pub const CANDIDATE_RE: &str =
    r"(?i)\b(?:i|we)(?:'ve| have)?\s|\bbeen\b|successfully|\bnow\b|^\W*(?:done|all set|all done|completed|success)\b";

/// Verb families: the action, then the words that name it (base forms).
const FAMILIES: &[(&str, &[&str])] = &[
    ("change", &["change", "modify", "move", "rebook", "reschedule", "update", "switch", "edit", "amend", "upgrade", "downgrade"]),
    ("cancellation", &["cancel", "void", "delete", "remove", "revoke", "unsubscribe", "terminate"]),
    ("booking", &["book", "reserve", "schedule", "order", "purchase", "buy", "register", "subscribe", "enroll", "enrol"]),
    ("message", &["send", "email", "mail", "notify", "message", "forward"]),
    ("refund", &["refund", "reimburse", "compensate"]),
    ("payment", &["pay", "charge", "transfer"]),
    ("reset", &["reset", "unlock", "restore", "reactivate"]),
    ("escalation", &["escalate", "assign", "transfer"]),
];

/// Past forms of a base verb: English spelling rules and the irregular ones.
fn past_forms(base: &str) -> Vec<String> {
    let irregular: &[(&str, &[&str])] = &[
        ("send", &["sent"]),
        ("pay", &["paid"]),
        ("buy", &["bought"]),
        ("reset", &["reset"]),
        ("cancel", &["cancelled", "canceled"]),
        ("transfer", &["transferred"]),
        ("enrol", &["enrolled"]),
    ];
    if let Some((_, forms)) = irregular.iter().find(|(b, _)| *b == base) {
        return forms.iter().map(|f| f.to_string()).collect();
    }
    if let Some(stem) = base.strip_suffix('y').filter(|s| !s.ends_with(['a', 'e', 'o', 'u'])) {
        return vec![format!("{stem}ied")];
    }
    if base.ends_with('e') {
        return vec![format!("{base}d")];
    }
    vec![format!("{base}ed")]
}

/// Words of `text` as the verb families read them: lower case, split at anything not a letter
/// and at camel-case humps (`changeBooking` → change, booking).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for ch in text.chars() {
        if !ch.is_alphabetic() {
            prev_lower = false;
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            continue;
        }
        if ch.is_uppercase() && prev_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        prev_lower = ch.is_lowercase();
        word.extend(ch.to_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Verbs that open the name of a tool that only reads (`get_booking`, `list_orders`,
/// `search_messages`): it performs no action, whatever it reads.
const READS: &[&str] =
    &["get", "list", "search", "find", "read", "fetch", "lookup", "look", "query", "show", "check", "view", "describe", "retrieve"];

/// Words of a tool name that say nothing of what it acts on.
const NOT_OBJECTS: &[&str] =
    &["to", "a", "an", "the", "for", "by", "of", "on", "new", "user", "api", "tool", "do", "and", "with", "from", "v"];

/// Whether the claim is about what the tool acts on: a word of the tool's name that is not its
/// verb (`booking` of `change_booking`, `account`/`link` of `send_account_link`) appears in the
/// claim or the request, inflected or not. "I've emailed you the invoice" is no claim that
/// `send_account_link` ran; a tool named by its verb alone (`refund`) acts on anything.
fn same_object(tool: &str, about: &str) -> bool {
    let family_words: BTreeSet<&str> = FAMILIES.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let objects: Vec<String> = words(tool)
        .into_iter()
        .filter(|w| w.len() >= 3 && !family_words.contains(w.as_str()) && !NOT_OBJECTS.contains(&w.as_str()))
        .collect();
    if objects.is_empty() {
        return true;
    }
    let said = words(about);
    objects.iter().any(|o| {
        let stem: String = o.chars().take(5).collect();
        said.iter().any(|w| w.starts_with(&stem) || (w.len() >= 4 && o.starts_with(w.as_str())))
    })
}

/// The families a tool performs, by the words of its name.
fn tool_families(tool: &str) -> BTreeSet<&'static str> {
    let ws = words(tool);
    if ws.first().is_some_and(|w| READS.contains(&w.as_str())) {
        return BTreeSet::new();
    }
    FAMILIES.iter().filter(|(_, bases)| ws.iter().any(|w| bases.contains(&w.as_str()))).map(|(f, _)| *f).collect()
}

static PAST: LazyLock<BTreeMap<String, &'static str>> = LazyLock::new(|| {
    let mut m = BTreeMap::new();
    for (family, bases) in FAMILIES {
        for base in *bases {
            for form in past_forms(base) {
                m.entry(form).or_insert(*family);
            }
        }
    }
    m
});

fn alternation<'a>(words: impl Iterator<Item = &'a str>) -> String {
    words.map(regex::escape).collect::<Vec<_>>().join("|")
}

/// "I've moved", "we have just cancelled", "I successfully booked".
static FIRST_PERSON: LazyLock<Regex> = LazyLock::new(|| {
    let forms = alternation(PAST.keys().map(String::as_str));
    Regex::new(&format!(
        r"(?i)\b(?:i|we)(?:'ve|’ve| have)?\s+(?:(?:now|just|already|successfully|gone ahead and|went ahead and)\s+)*(?P<v>{forms})\b"
    ))
    .expect("first-person claim")
});

/// "has been cancelled", "have now been moved", "was successfully updated" — not "is
/// scheduled for 07:45" or "was charged to the card", which describe a state, not this turn's act.
static PASSIVE: LazyLock<Regex> = LazyLock::new(|| {
    let forms = alternation(PAST.keys().map(String::as_str));
    Regex::new(&format!(
        r"(?i)\b(?:(?:has|have)\s+(?:(?:now|just|already|successfully)\s+)*been|(?:was|were|is|are)\s+(?:now\s+)?successfully)\s+(?:successfully\s+)?(?P<v>{forms})\b"
    ))
    .expect("passive claim")
});

/// A completion said without the verb: the action is the one the user asked for.
static DONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^\W*(?:done|all set|all done|completed|success)\b\s*[:!.,—–-]|\b(?:is|are) now (?:on|set|confirmed|booked)\b")
        .expect("completion")
});

/// What the user asked for: a family's verb after a request opener ("please move", "can you
/// change", "I need to rebook", or the request's first word).
static REQUEST: LazyLock<Regex> = LazyLock::new(|| {
    let bases = alternation(FAMILIES.iter().flat_map(|(_, b)| b.iter().copied()));
    Regex::new(&format!(
        r"(?i)(?:^|[.!?]\s+|\b(?:please|can you|could you|would you|can u|i need to|i want to|i'd like to|i would like to|help me|go ahead and)\s+)(?:\w+\s+)?(?P<v>{bases})\b"
    ))
    .expect("request")
});

/// A sentence that does not assert the action happened.
static NOT_ASSERTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:not|n't|never|unable|failed|cannot|can't|couldn't|wasn't|weren't|haven't|hasn't|if|once|when|after|before|until|unless|will|would|should|could|can|might|shall|want me|let me know)\b|\?\s*$",
    )
    .expect("condition")
});

/// A negation anywhere in a sentence ("Done: I couldn't change it" asserts nothing).
static NEGATED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:not|n't|never|unable|failed|cannot|can't|couldn't|wasn't|weren't|haven't|hasn't)\b|\?\s*$").expect("negation")
});

fn family_of_base(word: &str) -> Option<&'static str> {
    let w = word.to_lowercase();
    FAMILIES.iter().find(|(_, bases)| bases.contains(&w.as_str())).map(|(f, _)| *f)
}

/// An action the answer says is done: its family and the sentence that says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub family: &'static str,
    pub sentence: String,
}

/// The actions `answer` asserts are done; `request` is the user's last turn.
pub fn claims(answer: &str, request: &str) -> Vec<Claim> {
    let asked: Vec<&'static str> =
        REQUEST.captures_iter(request).filter_map(|c| c.name("v")).filter_map(|v| family_of_base(v.as_str())).collect();
    let mut out: Vec<Claim> = Vec::new();
    for s in crate::text::sentences(answer) {
        // Only the clause before a negation or condition counts: "I've moved it, but couldn't…"
        // asserts the move.
        let mut found: Vec<&'static str> = Vec::new();
        for re in [&*FIRST_PERSON, &*PASSIVE] {
            for c in re.captures_iter(s) {
                let v = c.name("v").expect("verb");
                let before = &s[..v.start()];
                if NOT_ASSERTED.is_match(before) {
                    continue;
                }
                if let Some(&family) = PAST.get(&v.as_str().to_lowercase()) {
                    found.push(family);
                }
            }
        }
        if let Some(m) = DONE.find(s)
            && !NOT_ASSERTED.is_match(&s[..m.start()])
            && !NEGATED.is_match(s)
        {
            found.extend(asked.iter().copied());
        }
        for family in found {
            if !out.iter().any(|c| c.family == family) {
                out.push(Claim { family, sentence: s.to_string() });
            }
        }
    }
    out
}

/// A claimed action no tool performed.
#[derive(Debug, Clone, PartialEq)]
pub struct Unperformed {
    /// The feature's tool that performs it (the first by name).
    pub tool: String,
    pub family: &'static str,
    pub evidence: String,
}

/// How far back in a session an action may have run for a later answer to report it.
const SESSION_REACH: Duration = Duration::minutes(30);

/// Calls (indices) whose answer claims an action no tool performed. `calls_by_trace` and
/// `calls_by_session` hold indices sorted by start; `defined` are the tools each feature's
/// requests offered the model, `ran` the tools whose spans ran in each trace.
pub fn find(
    calls: &[Call],
    calls_by_trace: &BTreeMap<&str, Vec<usize>>,
    calls_by_session: &HashMap<&str, Vec<usize>>,
    defined: &BTreeMap<String, BTreeSet<String>>,
    ran: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<(usize, Unperformed)> {
    // The tools of each feature: offered to the model, or asked for by any of its calls.
    let mut tools: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in calls {
        tools.entry(&c.feature).or_default().extend(c.tool_names.iter().map(String::as_str));
    }
    for (feature, names) in defined {
        tools.entry(feature).or_default().extend(names.iter().map(String::as_str));
    }
    let mut out = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        if !c.tool_names.is_empty() || c.output_text.is_empty() || c.status == "error" {
            continue;
        }
        let Some(feature_tools) = tools.get(c.feature.as_str()).filter(|t| !t.is_empty()) else { continue };
        let request = c.user_turns.last().map_or("", String::as_str);
        let claimed = claims(&c.output_text, request);
        if claimed.is_empty() {
            continue;
        }
        // What ran before this answer: tools the trace's calls asked for or whose spans ran, and
        // those the session's calls shortly before asked for while serving the same request (a
        // tool loop continued in a new trace) — not an earlier turn's: "rebook my flight" done
        // an hour ago does not make today's second "done" true.
        let mut performed: BTreeSet<&str> = ran.get(&c.trace_id).map(|t| t.iter().map(String::as_str).collect()).unwrap_or_default();
        let same_turn = |j: usize| calls[j].user_turns.last().map(String::as_str) == Some(request);
        let earlier = calls_by_trace.get(c.trace_id.as_str()).into_iter().flatten().chain(
            calls_by_session
                .get(c.session_id.as_str())
                .into_iter()
                .flatten()
                .filter(|&&j| c.start_time - calls[j].start_time <= SESSION_REACH && same_turn(j)),
        );
        for &j in earlier {
            if calls[j].start_time <= c.start_time {
                performed.extend(calls[j].tool_names.iter().map(String::as_str));
            }
        }
        let done: BTreeSet<&str> = performed.iter().flat_map(|t| tool_families(t)).collect();
        for claim in claimed {
            if done.contains(claim.family) {
                continue;
            }
            let about = format!("{} {request}", claim.sentence);
            let Some(tool) = feature_tools.iter().find(|t| tool_families(t).contains(claim.family) && same_object(t, &about)) else {
                continue;
            };
            out.push((
                i,
                Unperformed {
                    tool: tool.to_string(),
                    family: claim.family,
                    evidence: format!(
                        "the answer reports a {} as done (\"{}\") but no `{tool}` ran in the interaction",
                        claim.family,
                        super::excerpt(&claim.sentence, 120)
                    ),
                },
            ));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn call(trace: &str, minute: i64, output: &str, request: &str, tools: &[&str]) -> Call {
        Call {
            trace_id: trace.into(),
            span_id: format!("{trace}-{minute}"),
            session_id: format!("s-{trace}"),
            feature: "trip_agent".into(),
            start_time: OffsetDateTime::from_unix_timestamp(1_790_000_000 + minute * 60).unwrap(),
            status: "ok".into(),
            output_text: output.into(),
            tool_names: tools.iter().map(|t| t.to_string()).collect(),
            user_turns: vec![request.into()],
            ..Default::default()
        }
    }

    type Index<'a> = (BTreeMap<&'a str, Vec<usize>>, HashMap<&'a str, Vec<usize>>);

    fn index(calls: &[Call]) -> Index<'_> {
        let mut t: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut s: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, c) in calls.iter().enumerate() {
            t.entry(&c.trace_id).or_default().push(i);
            s.entry(&c.session_id).or_default().push(i);
        }
        (t, s)
    }

    fn run(calls: &[Call], defined: &[&str]) -> Vec<(usize, Unperformed)> {
        let (t, s) = index(calls);
        let defined = BTreeMap::from([("trip_agent".to_string(), defined.iter().map(|d| d.to_string()).collect())]);
        find(calls, &t, &s, &defined, &BTreeMap::new())
    }

    #[test]
    fn claims_are_read_by_meaning() {
        let family = |answer: &str, request: &str| claims(answer, request).first().map(|c| c.family);
        assert_eq!(family("I've cancelled booking K7Q2 for you.", "What are my options?"), Some("cancellation"));
        assert_eq!(family("Your reservation has been successfully modified.", ""), Some("change"));
        assert_eq!(family("We have just refunded $40 to your card.", ""), Some("refund"));
        assert_eq!(family("I sent the invoice to your e-mail.", ""), Some("message"));
        assert_eq!(family("Done: booking K7Q2 is now on NW 412 at 07:45.", "Please move my flight K7Q2 to May 3."), Some("change"));
        assert_eq!(family("All set! See you on board.", "I need to rebook my flight."), Some("change"));
        // Nothing asserted: negated, conditional, future, a question, an offer, a search.
        for answer in [
            "I couldn't change your booking: the fare does not allow it.",
            "I haven't cancelled anything yet.",
            "Once I've changed the flight, you'll get an e-mail.",
            "I will cancel it if you confirm.",
            "Should I book the 07:45 flight?",
            "I found 3 flights from LIS to CDG on May 3.",
            "Done: here are the flights I found.",
            "Done: I couldn't change it, the fare does not allow changes.",
        ] {
            assert_eq!(claims(answer, "Find me flights to Paris."), vec![], "{answer}");
        }
    }

    #[test]
    fn a_claim_without_its_tool_is_flagged() {
        let request = "Can you change my flight K7Q2 to May 3?";
        let done = "Done: booking K7Q2 is now on NW 412 departing LIS on May 3 at 07:45.";
        // The agent looked the booking up and searched, then reported a change it never made.
        let calls = vec![
            call("t1", 0, "", request, &["get_booking"]),
            call("t1", 1, "", request, &["search_flights"]),
            call("t1", 2, done, request, &[]),
        ];
        let found = run(&calls, &["get_booking", "search_flights", "change_booking", "cancel_booking"]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, 2);
        assert_eq!(found[0].1.tool, "change_booking");
        assert!(found[0].1.evidence.contains("change") && found[0].1.evidence.contains("Done: booking K7Q2"), "{}", found[0].1.evidence);
    }

    #[test]
    fn a_claim_after_its_tool_ran_is_not() {
        let request = "Please move my flight K7Q2 to May 3.";
        let done = "Done: booking K7Q2 is now on NW 412 departing LIS on May 3 at 07:45.";
        let tools = ["get_booking", "search_flights", "changeBooking"];
        let calls = vec![call("t1", 0, "", request, &["changeBooking"]), call("t1", 1, done, request, &[])];
        assert!(run(&calls, &tools).is_empty());
        // The tool's span alone (a producer that records no tool calls in the output) counts.
        let calls = vec![call("t2", 0, done, request, &[])];
        let (t, s) = index(&calls);
        let defined = BTreeMap::from([("trip_agent".to_string(), BTreeSet::from(["changeBooking".to_string()]))]);
        let ran = BTreeMap::from([("t2".to_string(), BTreeSet::from(["changeBooking".to_string()]))]);
        assert!(find(&calls, &t, &s, &defined, &ran).is_empty());
        // An earlier trace of the session ran it (a tool loop continued in a new trace).
        let mut first = call("t3", 0, "", request, &["rebook-flight"]);
        first.session_id = "s".into();
        let mut then = call("t4", 1, done, request, &[]);
        then.session_id = "s".into();
        assert!(run(&[first, then], &["rebook-flight"]).is_empty());
        // An earlier turn of the session ran it for an earlier request: this turn's "done" is
        // still unfounded.
        let mut before = call("t5", 0, "", "I need to rebook my flight K7Q2 to May 1.", &["rebook-flight"]);
        before.session_id = "s2".into();
        let mut now = call("t6", 5, done, request, &[]);
        now.session_id = "s2".into();
        assert_eq!(run(&[before, now], &["rebook-flight"]).len(), 1);
    }

    #[test]
    fn a_claim_no_tool_of_the_feature_performs_is_not() {
        // A writing assistant "updated" the text itself; an agent whose tools only read.
        let calls = vec![call("t1", 0, "I've updated the summary to mention the new pricing.", "Update the summary.", &[])];
        assert!(run(&calls, &[]).is_empty());
        assert!(run(&calls, &["search_docs", "get_page"]).is_empty());
        // A tool of the family that acts on something else: the invoice was not an account link.
        let calls = vec![call("t2", 0, "I've emailed you the invoice with the breakdown.", "Why was I charged $84.20?", &[])];
        assert!(run(&calls, &["send_account_link", "lookup_order"]).is_empty());
        assert_eq!(run(&calls, &["send_invoice"]).len(), 1);
        assert_eq!(run(&calls, &["email"]).len(), 1);
        assert_eq!(tool_families("modifyReservation"), BTreeSet::from(["change"]));
        assert_eq!(tool_families("send_email"), BTreeSet::from(["message"]));
        assert!(tool_families("search_flights").is_empty());
        assert!(tool_families("get_messages").is_empty());
        // A state, not an act: no claim.
        assert_eq!(claims("Your flight is scheduled for 07:45; the fare difference was charged to the card.", ""), vec![]);
    }
}
