//! Inconsistent answers: one question, asked again and again by different users or sessions of
//! a feature under the same instructions, answered with facts that contradict each other — "you
//! have 30 days to return it" to most, "14 days" to some. Users notice this before any rule on a
//! single call could: each answer reads fine alone.
//!
//! Deterministic and local:
//! 1. **Same question.** Calls group by feature, system instructions and the *normalised*
//!    conversation the user wrote (every user turn of the input: the same words in another
//!    conversation are another question): lower case, pleasantries and function words dropped,
//!    the remaining words as a set. Paraphrases of the question in other words are not joined —
//!    a limit, paid for precision.
//! 2. **Facts, not wording.** Each answer is read for the facts a reader would compare:
//!    quantities with their unit (durations in one unit, so "24 hours" meets "5-10 business
//!    days"; amounts; percentages; number words read as digits, ranges as one value), clock
//!    times, weekdays and dates, and a leading yes or no. Facts the question itself states are
//!    set aside.
//! 3. **Same sources.** Answers grounded in different material may rightly differ — a tool's
//!    order date, a query's result, other retrieved pages, the user's own account: only calls
//!    given the same sources (tool results, retrieved pages, other non-chat input) are
//!    compared. Personal answers never meet; the same question answered from the same sources,
//!    or from none, does.
//! 4. **Contradiction.** Two answers contradict each other when, for one unit, each states a
//!    value the other does not: "30 days" and "14 days" do; "30 days" and "30 days, refunds in
//!    5-10 days" do not (one says more); an answer without facts contradicts nothing.
//! 5. **Stances.** Answers that state facts join the first stance they do not contradict, most
//!    frequent facts first; answers without facts (a refusal, an apology, another language)
//!    take no side. The reference stance wins a vote: each of its answers counts one, two when
//!    users accepted it (copied, rated up), none when they rejected it (thumbs down, regenerated,
//!    edited, escalated) — so between stances as frequent the accepted one wins, and a stray
//!    signal moves one vote, not a majority. The other stances' calls are the failures; when
//!    the vote ties, all of them are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use flywheel_schemas::failure::{Contrast, Stance};
use regex::Regex;

use super::{Call, Signal, excerpt};

/// A fact an answer states: (unit or kind, normalised value).
type Fact = (String, String);

/// An inconsistent call: what to record on its failure.
#[derive(Debug, Clone)]
pub struct Found {
    pub evidence: String,
    /// The question's key: one pattern per question asked.
    pub qualifier: String,
    pub contrast: Contrast,
}

/// Words that carry no question of their own: function words and pleasantries. Negations are
/// kept: "are gift cards refundable" and "are gift cards not refundable" are two questions.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "been",
    "being",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "for",
    "from",
    "get",
    "got",
    "had",
    "has",
    "have",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "just",
    "me",
    "my",
    "of",
    "on",
    "or",
    "our",
    "please",
    "so",
    "some",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "to",
    "us",
    "was",
    "we",
    "were",
    "what",
    "whats",
    "when",
    "where",
    "which",
    "who",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank",
    "team",
    "quick",
    "question",
    "good",
    "morning",
    "afternoon",
    "evening",
    "appreciate",
    "advance",
    "advise",
    "help",
    "ok",
    "okay",
    "great",
    "dear",
    "there",
    "wondering",
    "want",
    "know",
    "like",
    "tell",
    "let",
    "should",
    "may",
    "might",
    "much",
    "many",
    "one",
    "s",
    "re",
    "ve",
    "ll",
    "d",
];

/// The normalised question of a call: its user turns' content words as a sorted set, or `None`
/// when too little is left to be a question of its own ("thanks!", "and that one?").
pub fn question_key(turns: &[String]) -> Option<String> {
    let mut words = BTreeSet::new();
    for turn in turns {
        let text = turn.to_lowercase().replace("n't", " not").replace("cannot", "can not").replace('’', "'");
        for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            if STOPWORDS.contains(&w) {
                continue;
            }
            // A crude plural fold: "items" and "item" ask the same.
            let w = if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") { &w[..w.len() - 1] } else { w };
            words.insert(w.to_string());
        }
    }
    (words.len() >= 2).then(|| words.into_iter().collect::<Vec<_>>().join(" "))
}

const NUMBER_WORDS: &[(&str, &str)] = &[
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("forty-five", "45"),
    ("fifty", "50"),
    ("sixty", "60"),
    ("ninety", "90"),
    ("hundred", "100"),
    ("a week", "1 week"),
    ("a month", "1 month"),
    ("a year", "1 year"),
    ("a day", "1 day"),
    ("an hour", "1 hour"),
];

static NUMBER_WORD_RE: LazyLock<Regex> = LazyLock::new(|| {
    let mut words: Vec<&str> = NUMBER_WORDS.iter().map(|(w, _)| *w).collect();
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    Regex::new(&format!(r"\b({})\b", words.join("|"))).expect("number words")
});

/// A quantity with its unit: "30 days", "5-10 business days", "30-day", "2 to 3 weeks", "15%".
static QUANTITY_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?P<a>\d+(?:[.,]\d+)?)
        (?:\s*(?:-|–|to|or)\s*(?P<b>\d+(?:[.,]\d+)?))?
        [\s-]*
        (?P<unit>%|percent\b|(?:business\s+|working\s+|calendar\s+)?days?\b|weeks?\b|months?\b|years?\b|hours?\b|hrs?\b|minutes?\b|mins?\b)",
    )
    .expect("quantity")
});

/// An amount of money: "$75", "$5.99", "€20", "USD 40".
static MONEY_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:[$€£]|\b(?:usd|eur|gbp)\s?)\s?(\d+(?:[.,]\d{1,2})?)").expect("money"));

/// A clock time: "9am", "9:30 pm", "17:00".
static TIME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)|\b([01]?\d|2[0-3]):([0-5]\d)\b").expect("time"));

/// A weekday or a month's day: "Thursday", "March 3".
static DATE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|(?:january|february|march|april|may|june|july|august|september|october|november|december)\s+\d{1,2})\b",
    )
    .expect("date")
});

/// A leading yes or no, after a greeting at most.
static YES_NO_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:(?:hi|hello|hey)[^.!,]*[.!,]\s*)?(yes|yeah|yep|yup|no|nope)\b").expect("yes/no"));

fn number(s: &str) -> String {
    // "5,000" is five thousand; "4,5" a decimal comma.
    let s = if s.len() > 4 && s.as_bytes()[s.len() - 4] == b',' { s.replace(',', "") } else { s.replace(',', ".") };
    match s.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 => format!("{}", v as i64),
        Ok(v) => format!("{v}"),
        Err(_) => s,
    }
}

/// A quantity's unit, and for durations how many hours one of it lasts: "24 hours", "1 day"
/// and "3 to 4 weeks" compare as one kind of fact.
fn unit(u: &str) -> (&'static str, f64) {
    let u = u.trim().trim_start_matches("business").trim_start_matches("working").trim_start_matches("calendar").trim();
    match u {
        "%" | "percent" => ("%", 1.0),
        _ if u.starts_with("day") => ("duration", 24.0),
        _ if u.starts_with("week") => ("duration", 168.0),
        _ if u.starts_with("month") => ("duration", 720.0),
        _ if u.starts_with("year") => ("duration", 8760.0),
        _ if u.starts_with('h') => ("duration", 1.0),
        _ => ("duration", 1.0 / 60.0),
    }
}

fn scaled(n: &str, by: f64) -> String {
    let v = number(n).parse::<f64>().unwrap_or(0.0) * by;
    number(&format!("{:.2}", v))
}

/// The facts `text` states (see the module's docs).
pub fn facts(text: &str) -> BTreeSet<Fact> {
    let lower = text.to_lowercase();
    let lower = NUMBER_WORD_RE.replace_all(&lower, |c: &regex::Captures| {
        NUMBER_WORDS.iter().find(|(w, _)| *w == &c[1]).map_or(c[1].to_string(), |(_, d)| d.to_string())
    });
    let mut out = BTreeSet::new();
    for c in QUANTITY_RE.captures_iter(&lower) {
        let (unit, by) = unit(&c["unit"]);
        let a = scaled(&c["a"], by);
        let value = match c.name("b") {
            Some(b) => format!("{a}-{}", scaled(b.as_str(), by)),
            None => a,
        };
        out.insert((unit.to_string(), value));
    }
    for c in MONEY_RE.captures_iter(&lower) {
        out.insert(("$".to_string(), number(&c[1])));
    }
    for c in TIME_RE.captures_iter(&lower) {
        let value = match (c.get(1), c.get(4)) {
            (Some(h), _) => {
                let pm = c.get(3).is_some_and(|m| m.as_str().starts_with('p'));
                let h: u32 = h.as_str().parse().unwrap_or(0) % 12 + if pm { 12 } else { 0 };
                format!("{h:02}:{}", c.get(2).map_or("00", |m| m.as_str()))
            }
            (None, Some(h)) => format!("{:02}:{}", h.as_str().parse::<u32>().unwrap_or(0), &c[5]),
            _ => continue,
        };
        out.insert(("time".to_string(), value));
    }
    for c in DATE_RE.captures_iter(&lower) {
        out.insert(("date".to_string(), c[1].split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    if let Some(c) = YES_NO_RE.captures(lower.trim_start()) {
        let yes = matches!(&c[1], "yes" | "yeah" | "yep" | "yup");
        out.insert(("answer".to_string(), if yes { "yes" } else { "no" }.to_string()));
    }
    out
}

/// Whether two answers' facts contradict: for some unit each states a value the other does not.
pub fn contradict(a: &BTreeSet<Fact>, b: &BTreeSet<Fact>) -> bool {
    let units: BTreeSet<&str> = a.iter().map(|(u, _)| u.as_str()).filter(|u| b.iter().any(|(v, _)| v == u)).collect();
    units.into_iter().any(|u| {
        let of = |s: &BTreeSet<Fact>| s.iter().filter(|(v, _)| v == u).map(|(_, x)| x.clone()).collect::<BTreeSet<_>>();
        let (x, y) = (of(a), of(b));
        !x.is_subset(&y) && !y.is_subset(&x)
    })
}

/// How users took one answer: accepted (+1), rejected (-1), or neither.
fn verdicts(signals: &[Signal]) -> HashMap<&str, (u32, u32)> {
    let mut out: HashMap<&str, (u32, u32)> = HashMap::new();
    for s in signals.iter().filter(|s| !s.trace_id.is_empty()) {
        let e = out.entry(s.trace_id.as_str()).or_default();
        match s.kind.as_str() {
            "copy" | "thumbs_up" => e.0 += 1,
            "rating" if s.value.zip(s.scale.or(Some(5.0))).is_some_and(|(v, scale)| v / scale >= 0.8) => e.0 += 1,
            "thumbs_down" | "regenerate" | "retry" | "edit" | "escalate" => e.1 += 1,
            "rating" => e.1 += 1,
            _ => {}
        }
    }
    out
}

/// Calls whose answer can take part: a captured, complete text answer to a real question.
fn eligible(c: &Call) -> bool {
    c.output_captured
        && !c.output_text.trim().is_empty()
        && c.status != "error"
        && c.tool_calls.is_empty()
        && !c.finish_reasons.iter().any(|r| matches!(r.as_str(), "length" | "content_filter" | "max_tokens"))
}

/// The groups worth reading the inputs of: indices of calls asking one question in at least
/// `min_calls` calls from two sessions or more, whose answers state facts that disagree before
/// their sources are compared. ClickHouse then hands over those calls' sources only.
pub fn candidates(min_calls: usize, calls: &[Call]) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<(&str, &str, String), Vec<usize>> = BTreeMap::new();
    for (i, c) in calls.iter().enumerate().filter(|(_, c)| eligible(c)) {
        if let Some(key) = question_key(&c.user_turns) {
            groups.entry((c.feature.as_str(), c.system_hash.as_str(), key)).or_default().push(i);
        }
    }
    groups
        .into_values()
        .filter(|g| g.len() >= min_calls && g.iter().map(|&i| calls[i].session_id.as_str()).collect::<BTreeSet<_>>().len() >= 2)
        .filter(|g| {
            let all: Vec<BTreeSet<Fact>> = g.iter().map(|&i| facts(&calls[i].output_text)).collect();
            all.iter().enumerate().any(|(k, a)| all[k + 1..].iter().any(|b| contradict(a, b)))
        })
        .collect()
}

/// The inconsistent calls among `groups` ([`candidates`]); `contexts` holds what each call's
/// sources were (tool results, retrieved pages: their text or a hash of it), by (trace, span).
pub fn find(
    min_calls: usize,
    calls: &[Call],
    groups: &[Vec<usize>],
    contexts: &HashMap<(String, String), String>,
    signals: &[Signal],
) -> Vec<(usize, Found)> {
    let verdicts = verdicts(signals);
    // Answers grounded in different material may rightly differ — a tool's order date, a
    // query's result, other retrieved pages: only calls given the same sources are compared.
    let mut same_sources: Vec<Vec<usize>> = Vec::new();
    for group in groups {
        let mut by_context: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for &i in group {
            let c = &calls[i];
            by_context.entry(contexts.get(&(c.trace_id.clone(), c.span_id.clone())).map_or("", |t| t.trim())).or_default().push(i);
        }
        same_sources.extend(
            by_context
                .into_values()
                .filter(|g| g.len() >= min_calls && g.iter().map(|&i| calls[i].session_id.as_str()).collect::<BTreeSet<_>>().len() >= 2),
        );
    }
    let mut out = Vec::new();
    for group in &same_sources {
        // A fact the question states is not the answer's ("after 45 days?" — "45 days is past…").
        let asked: BTreeSet<Fact> = calls[group[0]].user_turns.last().map(|q| facts(q)).unwrap_or_default();
        let answers: Vec<BTreeSet<Fact>> =
            group.iter().map(|&i| facts(&calls[i].output_text).into_iter().filter(|f| !asked.contains(f)).collect()).collect();
        // Stances: the most frequent fact sets found them; answers without facts take no side.
        let mut order: Vec<usize> = (0..group.len()).filter(|&k| !answers[k].is_empty()).collect();
        let count = |k: usize| answers.iter().filter(|a| **a == answers[k]).count();
        order.sort_by_key(|&k| (std::cmp::Reverse(count(k)), std::cmp::Reverse(answers[k].len()), k));
        let mut stances: Vec<(BTreeSet<Fact>, Vec<usize>)> = Vec::new();
        for k in order {
            match stances.iter_mut().find(|(core, _)| !contradict(core, &answers[k])) {
                Some((_, members)) => members.push(k),
                None => stances.push((answers[k].clone(), vec![k])),
            }
        }
        if stances.len() < 2 {
            continue;
        }
        let sessions_of = |members: &[usize]| members.iter().map(|&k| calls[group[k]].session_id.as_str()).collect::<BTreeSet<_>>().len();
        let votes = |members: &[usize]| {
            members.iter().fold((0u32, 0u32), |(a, r), &k| {
                let (x, y) = verdicts.get(calls[group[k]].trace_id.as_str()).copied().unwrap_or_default();
                (a + x, r + y)
            })
        };
        // Each answer votes for its stance: one, one more when users accepted it, none when
        // they rejected it — a stray signal moves one vote, not a majority.
        let score = |members: &[usize]| {
            let ballot: i64 = members
                .iter()
                .map(|&k| {
                    let (a, r) = verdicts.get(calls[group[k]].trace_id.as_str()).copied().unwrap_or_default();
                    1 + i64::from(a > 0) - i64::from(r > 0)
                })
                .sum();
            (ballot, sessions_of(members), members.len())
        };
        stances.sort_by_key(|(_, m)| std::cmp::Reverse(score(m)));
        // Two stances nothing tells apart: each is the inconsistency.
        let tied = score(&stances[0].1) == score(&stances[1].1);
        let total_sessions = sessions_of(&(0..group.len()).collect::<Vec<_>>());
        // The question in its plainest wording: the shortest of its askers'.
        let question = group
            .iter()
            .filter_map(|&i| calls[i].user_turns.last())
            .min_by_key(|q| (q.chars().count(), q.as_str()))
            .map_or(String::new(), |q| excerpt(q, 200));
        let qualifier = question_key(&calls[group[0]].user_turns).unwrap_or_default();
        // The facts that tell a stance from the others: its values of the units they dispute.
        let disputed = |core: &BTreeSet<Fact>| -> Vec<String> {
            core.iter()
                .filter(|(u, v)| stances.iter().any(|(other, _)| other != core && other.iter().any(|(ou, ov)| ou == u && ov != v)))
                .map(|(u, v)| show(u, v))
                .collect()
        };
        let stance_rows: Vec<(Stance, &Vec<usize>)> = stances
            .iter()
            .enumerate()
            .take(4)
            .map(|(n, (core, members))| {
                let (accepted, rejected) = votes(members);
                let stance = Stance {
                    text: excerpt(&calls[group[members[0]]].output_text, 400),
                    facts: disputed(core),
                    calls: members.len() as u32,
                    sessions: sessions_of(members) as u32,
                    accepted,
                    rejected,
                    reference: n == 0 && !tied,
                    this: false,
                };
                (stance, members)
            })
            .collect();
        for (n, (_, members)) in stances.iter().enumerate() {
            if n == 0 && !tied {
                continue;
            }
            let reference = &stance_rows[0].0;
            for &k in members {
                let mine = disputed(&stances[n].0).join(", ");
                let evidence = if tied {
                    format!(
                        "asked {} times in {total_sessions} sessions, answered two ways as often: \"{}\" and \"{}\"; this one says {mine}",
                        group.len(),
                        stance_rows[0].0.facts.join(", "),
                        stance_rows[1].0.facts.join(", ")
                    )
                } else {
                    format!(
                        "asked {} times in {total_sessions} sessions: {} answers say {}, this one says {mine}",
                        group.len(),
                        reference.calls,
                        reference.facts.join(", ")
                    )
                };
                let answers = stance_rows
                    .iter()
                    .enumerate()
                    .map(|(m, (s, _))| {
                        let mut s = s.clone();
                        s.this = m == n;
                        if s.this {
                            s.text = excerpt(&calls[group[k]].output_text, 400);
                        }
                        s
                    })
                    .collect();
                let contrast = Contrast { question: question.clone(), asked: group.len() as u32, sessions: total_sessions as u32, answers };
                out.push((group[k], Found { evidence, qualifier: qualifier.clone(), contrast }));
            }
        }
    }
    out
}

/// A fact as a reader writes it: "30 days", "5-10 days", "24 hours", "$75", "yes", "thursday".
fn show(unit: &str, value: &str) -> String {
    match unit {
        "$" => format!("${value}"),
        "%" => format!("{value}%"),
        "duration" => {
            let hours: Vec<f64> = value.split('-').filter_map(|v| v.parse().ok()).collect();
            let (per, name) = if hours.iter().all(|h| h % 24.0 == 0.0) { (24.0, "day") } else { (1.0, "hour") };
            let n: Vec<String> = hours.iter().map(|h| number(&format!("{}", h / per))).collect();
            let plural = if n.len() == 1 && n[0] == "1" { "" } else { "s" };
            format!("{} {name}{plural}", n.join("-"))
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    fn set(items: &[(&str, &str)]) -> BTreeSet<Fact> {
        items.iter().map(|(u, v)| (u.to_string(), v.to_string())).collect()
    }

    #[test]
    fn questions_normalise_pleasantries_and_word_order_away() {
        let k = |s: &str| question_key(&[s.to_string()]);
        assert_eq!(k("Hi, how long do I have to return an item? Thanks!"), k("how long do i have to return items"));
        assert_eq!(k("Hello team, are gift cards refundable?"), k("Are gift cards refundable? Please advise."));
        assert_ne!(k("Are gift cards refundable?"), k("Aren't gift cards refundable?"));
        assert_eq!(k("Thanks!"), None);
        assert_eq!(k("and that one?"), None);
        // The same words after another conversation are another question.
        assert_ne!(question_key(&["where is order NW-1".into(), "how long return window".into()]), k("how long return window"));
    }

    #[test]
    fn facts_read_quantities_times_dates_and_yes_no() {
        assert_eq!(facts("You can return it within thirty days."), set(&[("duration", "720")]));
        assert_eq!(
            facts("We offer a 30-day return window; refunds post in 5-10 business days."),
            set(&[("duration", "720"), ("duration", "120-240")])
        );
        assert_eq!(facts("Refunds take five to ten working days."), set(&[("duration", "120-240")]));
        assert_eq!(facts("It takes 3 to 4 weeks, or a month."), set(&[("duration", "504-672"), ("duration", "720")]));
        assert_eq!(facts("within 24 hours"), facts("within a day"));
        assert_eq!(show("duration", "504-672"), "21-28 days");
        assert_eq!(show("duration", "24"), "1 day");
        assert_eq!(show("duration", "36"), "36 hours");
        assert_eq!(facts("Free shipping over $75, 15% off."), set(&[("$", "75"), ("%", "15")]));
        assert_eq!(facts("Chat is open 9am to 5:30 pm, Monday"), set(&[("time", "09:00"), ("time", "17:30"), ("date", "monday")]));
        assert_eq!(facts("Yes, sale items are refundable."), set(&[("answer", "yes")]));
        assert_eq!(facts("Hi! No, gift cards can't be refunded."), set(&[("answer", "no")]));
        assert!(facts("Sorry, I can't help with that.").is_empty());
    }

    #[test]
    fn only_values_each_side_lacks_contradict() {
        let a = set(&[("duration", "720")]);
        assert!(contradict(&a, &set(&[("duration", "336")])));
        assert!(contradict(&set(&[("duration", "720"), ("duration", "120-240")]), &set(&[("duration", "336"), ("duration", "120-240")])));
        assert!(!contradict(&a, &set(&[("duration", "720"), ("duration", "120-240")])), "one says more");
        assert!(!contradict(&a, &set(&[("$", "75")])), "different units");
        assert!(!contradict(&a, &BTreeSet::new()));
        assert!(contradict(&set(&[("answer", "yes")]), &set(&[("answer", "no")])));
    }

    fn call(n: usize, question: &str, answer: &str) -> Call {
        Call {
            trace_id: format!("t{n:02}"),
            span_id: format!("s{n:02}"),
            session_id: format!("sess{n}"),
            feature: "support".into(),
            system_hash: "h".into(),
            user_turns: vec![question.into()],
            output_text: answer.into(),
            output_captured: true,
            status: "ok".into(),
            finish_reasons: vec!["stop".into()],
            ..Default::default()
        }
    }

    fn run(calls: &[Call], contexts: &HashMap<(String, String), String>, signals: &[Signal]) -> Vec<(usize, Found)> {
        let rule = Rules::defaults().rules.into_iter().find(|r| r.spec.id == "inconsistent").expect("the shipped rule");
        let min = rule.spec.min_calls.unwrap_or(3) as usize;
        find(min, calls, &candidates(min, calls), contexts, signals)
    }

    #[test]
    fn the_minority_answer_is_flagged_against_the_majority() {
        let q = "How long do I have to return an item?";
        let mut calls: Vec<Call> = (0..5).map(|n| call(n, q, "You can return unused items within 30 days of delivery.")).collect();
        calls.push(call(
            5,
            "Hi! how long do I have to return an item",
            "Returns are accepted for thirty days; refunds take 5-10 business days.",
        ));
        calls.push(call(6, q, "You have 14 days to return an item."));
        let found = run(&calls, &HashMap::new(), &[]);
        assert_eq!(found.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![6], "{found:?}");
        let f = &found[0].1;
        assert!(f.evidence.contains("asked 7 times in 7 sessions: 6 answers say 30 days, this one says 14 days"), "{}", f.evidence);
        assert_eq!(f.contrast.answers.len(), 2);
        assert!(f.contrast.answers[0].reference && !f.contrast.answers[0].this);
        assert!(f.contrast.answers[1].this && f.contrast.answers[1].text.contains("14 days"));
        assert_eq!(f.qualifier, question_key(&[q.to_string()]).unwrap());
    }

    #[test]
    fn paraphrases_and_personal_answers_are_not_inconsistent() {
        let q = "When will my refund arrive?";
        let calls: Vec<Call> = (0..6)
            .map(|n| {
                let answer = if n % 2 == 0 {
                    format!("Your refund of ${}.00 was issued on March {}; it posts in 5-10 business days.", 20 + n, n + 1)
                } else {
                    format!("We issued ${}.00 on March {} — expect it within five to ten business days.", 20 + n, n + 1)
                };
                call(n, q, &answer)
            })
            .collect();
        let contexts: HashMap<(String, String), String> = calls
            .iter()
            .enumerate()
            .map(|(n, c)| {
                ((c.trace_id.clone(), c.span_id.clone()), format!("{{\"amount\": \"${}.00\", \"issued\": \"March {}\"}}", 20 + n, n + 1))
            })
            .collect();
        assert!(run(&calls, &contexts, &[]).is_empty());
        // Without the tool results, the amounts and dates would be the feature's answers.
        assert!(!run(&calls, &HashMap::new(), &[]).is_empty());
    }

    #[test]
    fn the_answer_users_accepted_is_the_reference_and_a_tie_flags_both() {
        let q = "Are gift cards refundable?";
        let calls = vec![
            call(0, q, "Yes, gift cards can be refunded."),
            call(1, q, "Yes — within 30 days."),
            call(2, q, "No, gift cards are not refundable."),
            call(3, q, "No. Gift cards are final."),
        ];
        let both = run(&calls, &HashMap::new(), &[]);
        assert_eq!(both.len(), 4, "nothing tells the stances apart: {both:?}");
        let copied = Signal { kind: "copy".into(), trace_id: "t02".into(), ..Default::default() };
        let found = run(&calls, &HashMap::new(), &[copied]);
        assert_eq!(found.iter().map(|(i, _)| *i).collect::<BTreeSet<_>>(), BTreeSet::from([0, 1]));
        assert!(found[0].1.contrast.answers[0].facts == vec!["no".to_string()] && found[0].1.contrast.answers[0].accepted == 1);
    }

    #[test]
    fn one_session_asking_twice_is_not_a_pattern_of_users() {
        let q = "How long do I have to return an item?";
        let mut calls: Vec<Call> = (0..4).map(|n| call(n, q, if n == 3 { "14 days." } else { "30 days." })).collect();
        for c in &mut calls {
            c.session_id = "one".into();
        }
        assert!(run(&calls, &HashMap::new(), &[]).is_empty());
    }
}
