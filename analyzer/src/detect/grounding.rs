//! The `ungrounded_figure` rule: the answer states a figure — a price, a percentage, a clock
//! time — that appears nowhere in what the model was given (retrieved pages, tool
//! results, the user's words, the system instructions), although that input holds figures of
//! the same kind. The model had the facts and gave others: a misread tool result, an invented
//! policy ("25 % off", "90 days"), a number from its training data instead of the page. This is
//! the deterministic part of a groundedness check (RAGAS' faithfulness, Phoenix's hallucination
//! eval ask a judge model the same question of every claim); figures are the claims whose
//! support can be checked exactly, in any language.
//!
//! Periods ("90 days") are checked only to explain an answer users flagged ([`Reading`]): then
//! the invented term is the likeliest cause of their complaint, and the failure joins the others
//! that state what their sources do not give instead of a cluster of its wording.
//!
//! Not flagged: a figure the input holds in another notation (`7:45` for `07:45`, `$1,299` for
//! `1299.00`), a figure derived from the input's (a sum or a difference; for amounts also a
//! multiple by 2–12 or a share: totals and "twice the fee" are arithmetic, not invention),
//! figures in code blocks,
//! and answers whose input has no figure of that kind (nothing to be faithful to).

use std::sync::LazyLock;

use regex::Regex;

use super::inputs::GroundingCandidate;

/// The kinds of figure whose support is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FigureKind {
    Money,
    Percent,
    Time,
    Duration,
}

/// What a check is for: finding failures, or explaining one users already flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Every call is checked; a finding makes the call a failure. Only kinds whose absence from
    /// the sources is itself wrong count.
    Detect,
    /// The call is a failure already (users flagged its answer) and the check looks for its
    /// cause: a period the sources do not give is then the likeliest thing users objected to
    /// ("returns for 90 days" beside a page that says 30), though on its own it is no failure.
    Explain,
}

impl FigureKind {
    /// Whether an answer's figure of this kind must be found in its input. Durations are read
    /// (they support other figures) but only checked to explain a failure users flagged:
    /// healthy answers state delays from the product's general terms ("within 24 hours",
    /// "3–5 business days") that no retrieved page or tool result repeats — on the 7-mode
    /// scenario detecting with them put 163 healthy interactions into one pattern.
    pub fn checked(self, reading: Reading) -> bool {
        reading == Reading::Explain || !matches!(self, FigureKind::Duration)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FigureKind::Money => "amount",
            FigureKind::Percent => "percentage",
            FigureKind::Time => "time",
            FigureKind::Duration => "duration",
        }
    }
}

/// A figure as written, its kind and its value (minutes for a time).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub text: String,
    pub kind: FigureKind,
    pub value: f64,
}

const NUMBER: &str = r"\d{1,3}(?:[,.\x{a0} ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?";

static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?i)(?:[$€£¥]\s?(?P<a>{NUMBER}))|(?:\b(?P<b>{NUMBER})\s?(?:[$€£¥]|\b(?:usd|eur|gbp|dollars?|euros?|dólares|dolares|reais|pounds?)\b))"
    ))
    .expect("money pattern")
});
static PERCENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?P<a>\d{1,3}(?:[.,]\d{1,2})?)\s?(?:%|\bper ?cent\b|\bpour ?cent\b|\bpor ?ciento\b|\bprozent\b)").expect("percent")
});
static TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?P<h>[01]?\d|2[0-3])(?::|h)(?P<m>[0-5]\d)\b(?:\s?(?P<ap>[ap])\.?m\b\.?)?").expect("time pattern"));
static DURATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?P<a>\d{1,4})[ \x{a0}-]?(?:business |working )?(?:minutes?|hours?|days?|weeks?|months?|years?|heures?|jours?|semaines?|mois|ans|années|minutos?|horas?|días|dias|dia|día|semanas?|meses|mês|años|anos|stunden?|tage?n?|wochen?|monate?n?|jahre?n?)\b",
    )
    .expect("duration pattern")
});
/// What an answer must contain to be a candidate, in ClickHouse's RE2: a currency sign or
/// code, a percent sign, a clock time, or a number before a word (durations in any language).
/// Loose on purpose — the exact reading is [`figures`] — so that few calls leave the database.
pub const CANDIDATE_RE: &str = r"[$€£¥%]|\d\s?(?:USD|EUR|GBP|dollar|euro)|\b\d{1,2}[:h][0-5]\d\b|\d[ -]?(?:business |working )?\pL{3,}";

/// Any number of the input, for support in another notation or kind ("within 30" of a table).
static ANY_NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(NUMBER).expect("number"));
static CODE_BLOCK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)```.*?(?:```|$)|`[^`\n]*`").expect("code"));

/// Parses a written number: `1,299.00`, `1.299,00`, `1 299`, `12,5`, `45`.
fn parse_number(text: &str) -> Option<f64> {
    let t: String = text.chars().filter(|c| !c.is_whitespace() && *c != '\u{a0}').collect();
    // The last separator followed by one or two digits is the decimal mark; the others group.
    let last = t.rfind([',', '.']);
    let cleaned = match last {
        Some(i) if t.len() - i - 1 <= 2 => {
            let (int, frac) = t.split_at(i);
            format!("{}.{}", int.replace([',', '.'], ""), &frac[1..])
        }
        _ => t.replace([',', '.'], ""),
    };
    cleaned.parse().ok()
}

/// The figures of `text`, outside code.
pub fn figures(text: &str) -> Vec<Figure> {
    let prose = CODE_BLOCK.replace_all(text, " ");
    placed(&prose).into_iter().map(|(f, _)| f).collect()
}

/// Words that mark the figure after them as a former value: "$49 (previously $39)", "(was
/// $9)", "down from 20%", in the languages pages are written in. A bare "was" is not one: "your
/// total was $79.99" states a current fact.
static SUPERSEDED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:\b(?:previously|formerly|used to be|(?:down|up|reduced|raised|rose|risen|increased|went up|decreased|dropped|fell|changed|cut) from|instead of|no longer|old price|anciennement|auparavant|précédemment|anteriormente|antes|antigamente|früher|vorher|bisher|zuvor|statt|precedentemente|voorheen)|\(\s*(?:was|were|before|avant|era|war))\s*[:(]?\s*$",
    )
    .expect("superseded")
});

/// Whether the figure at byte `at` of `prose` is marked as a former value.
fn marked_former(prose: &str, at: usize) -> bool {
    let mut start = at.saturating_sub(32);
    while !prose.is_char_boundary(start) {
        start -= 1;
    }
    SUPERSEDED.is_match(&prose[start..at])
}

/// The figures of `prose` (code already blanked) with their byte offsets.
fn placed(prose: &str) -> Vec<(Figure, usize)> {
    let mut out = Vec::new();
    let mut taken: Vec<(usize, usize)> = Vec::new();
    let mut push = |kind: FigureKind, whole: regex::Match<'_>, value: Option<f64>, out: &mut Vec<(Figure, usize)>| {
        if taken.iter().any(|&(s, e)| whole.start() < e && s < whole.end()) {
            return;
        }
        if let Some(value) = value {
            taken.push((whole.start(), whole.end()));
            out.push((Figure { text: whole.as_str().trim().to_string(), kind, value }, whole.start()));
        }
    };
    for c in MONEY.captures_iter(prose) {
        let n = c.name("a").or(c.name("b")).and_then(|m| parse_number(m.as_str()));
        push(FigureKind::Money, c.get(0).expect("whole"), n, &mut out);
    }
    for c in PERCENT.captures_iter(prose) {
        push(FigureKind::Percent, c.get(0).expect("whole"), c.name("a").and_then(|m| parse_number(m.as_str())), &mut out);
    }
    for c in TIME.captures_iter(prose) {
        let h: Option<f64> = c.name("h").and_then(|m| m.as_str().parse().ok());
        let m: Option<f64> = c.name("m").and_then(|m| m.as_str().parse().ok());
        // Twelve-hour notation to minutes of the day: 7:45 pm is 1185, 12:10 am is 10.
        let h = match (h, c.name("ap").map(|m| m.as_str().to_ascii_lowercase())) {
            (Some(h), Some(ap)) if h <= 12.0 => Some(h % 12.0 + if ap == "p" { 12.0 } else { 0.0 }),
            (h, _) => h,
        };
        push(FigureKind::Time, c.get(0).expect("whole"), h.zip(m).map(|(h, m)| h * 60.0 + m), &mut out);
    }
    for c in DURATION.captures_iter(prose) {
        push(FigureKind::Duration, c.get(0).expect("whole"), c.name("a").and_then(|m| parse_number(m.as_str())), &mut out);
    }
    out
}

/// What the input gives: its times, its periods, and every number it holds.
struct Support {
    times: Vec<f64>,
    durations: Vec<f64>,
    numbers: Vec<f64>,
}

/// At most this many distinct numbers of the input take part in the arithmetic check.
const MAX_NUMBERS: usize = 300;

impl Support {
    fn of(input: &str) -> Support {
        let found = figures(input);
        let of_kind = |kind: FigureKind| found.iter().filter(|f| f.kind == kind).map(|f| f.value).collect::<Vec<f64>>();
        let (times, mut durations) = (of_kind(FigureKind::Time), of_kind(FigureKind::Duration));
        durations.sort_by(f64::total_cmp);
        durations.dedup();
        durations.truncate(MAX_NUMBERS);
        let mut numbers: Vec<f64> = ANY_NUMBER.find_iter(input).filter_map(|m| parse_number(m.as_str())).collect();
        numbers.extend(found.iter().filter(|f| f.kind != FigureKind::Time).map(|f| f.value));
        numbers.sort_by(f64::total_cmp);
        numbers.dedup();
        numbers.truncate(MAX_NUMBERS);
        Support { times, durations, numbers }
    }

    fn holds(&self, f: &Figure) -> bool {
        let same = |a: f64, b: f64| (a - b).abs() < 0.005;
        if f.kind == FigureKind::Time {
            // An answer's "7:45" without am/pm may be the input's 19:45; its "22:55" is not the
            // input's 10:55 — that is the misread to catch.
            let ambiguous = f.value < 780.0 && !f.text.to_ascii_lowercase().contains('m');
            return self.times.iter().any(|&t| same(t, f.value) || (ambiguous && same(t, f.value + 720.0)));
        }
        if self.numbers.iter().any(|&n| same(n, f.value)) {
            return true;
        }
        // Derived: for amounts a sum or a difference of the input's numbers, a multiple or a
        // share (a quantity times a unit price, a fee split); for periods only a sum or a
        // difference of the input's periods ("14 days plus 5 for delivery"). Not a multiple:
        // "90 days" where the page says 30 is the invention to catch, not three times the page;
        // nor a sum of any two numbers: a page of prices and ids sums to most small periods.
        let sum_or_difference = |ns: &[f64]| {
            ns.iter().enumerate().any(|(i, &a)| ns[i + 1..].iter().any(|&b| same(a + b, f.value) || same((a - b).abs(), f.value)))
        };
        match f.kind {
            FigureKind::Money => {
                let ns = &self.numbers;
                ns.iter().any(|&a| (2..=12).any(|k| same(a * k as f64, f.value) || same(a / k as f64, f.value))) || sum_or_difference(ns)
            }
            FigureKind::Duration => sum_or_difference(&self.durations),
            _ => false,
        }
    }
}

/// What one answer states that its input does not give.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported {
    pub kind: FigureKind,
    /// Found to explain a failure users flagged, not to detect one ([`Reading::Explain`]).
    pub explains: bool,
    /// The figure is in the sources, but only as a former value ("$49 (previously $39)"): an
    /// outdated fact the model preferred to the current one, a cause of its own.
    pub superseded: bool,
    pub evidence: String,
}

impl Unsupported {
    /// The word that takes part in the failure's cause.
    pub fn qualifier(&self) -> String {
        let what = if self.superseded { format!("superseded {}", self.kind.as_str()) } else { self.kind.as_str().to_string() };
        if self.explains { format!("{what} {EXPLAINS}") } else { what }
    }
}

/// The qualifier's last word when the finding explains a failure users flagged.
pub const EXPLAINS: &str = "(users flagged)";

/// What a qualifier written by [`Unsupported::qualifier`] says, read back where the cause and
/// the label are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qualifier<'a> {
    /// The kind's word (`amount`, `duration`…).
    pub kind: &'a str,
    pub superseded: bool,
    pub explains: bool,
}

impl<'a> Qualifier<'a> {
    pub fn read(q: &'a str) -> Qualifier<'a> {
        let (q, explains) = match q.strip_suffix(EXPLAINS) {
            Some(rest) => (rest.trim_end(), true),
            None => (q, false),
        };
        let (kind, superseded) = match q.strip_prefix("superseded ") {
            Some(kind) => (kind, true),
            None => (q, false),
        };
        Qualifier { kind, superseded, explains }
    }
}

impl Unsupported {}

/// Values the sources give only as former ones, by kind, with the current value given beside
/// the first of them.
fn former_values(sources: &str) -> Vec<(Figure, Option<String>)> {
    let prose = CODE_BLOCK.replace_all(sources, " ");
    let found = placed(&prose);
    let current: Vec<&(Figure, usize)> = found.iter().filter(|(_, at)| !marked_former(&prose, *at)).collect();
    let mut out: Vec<(Figure, Option<String>)> = Vec::new();
    for (f, at) in found.iter().filter(|(_, at)| marked_former(&prose, *at)) {
        if current.iter().any(|(c, _)| c.kind == f.kind && (c.value - f.value).abs() < 0.005) {
            continue;
        }
        // The current value: the figure of that kind just before the former one.
        let now = current.iter().rev().find(|(c, cat)| c.kind == f.kind && *cat < *at && at - cat <= 160).map(|(c, _)| c.text.clone());
        out.push((f.clone(), now));
    }
    out
}

/// The figures of the answer the input does not support, when the input holds figures of
/// their kind; `instructions` are the call's system instructions. Each reading in turn, the
/// first that finds something wins; the answer, sources and input are read once for all.
pub fn check(candidate: &GroundingCandidate, instructions: &str, readings: &[Reading]) -> Option<Unsupported> {
    let stated = figures(&candidate.output);
    if stated.is_empty() {
        return None;
    }
    // The kinds the model was given facts of: in its sources (tool results, pages, the
    // instructions), not in the chat — an amount the user mentioned earlier does not make a
    // general "free over $75" a contradiction. Read first: most answers state no figure of a
    // sourced kind, and then the whole input need not be read for support.
    let sourced = figures(&format!("{}\n{instructions}", candidate.sources));
    let mut support: Option<Support> = None;
    let mut checked: Vec<&Figure> = Vec::new();
    for &reading in readings {
        let checkable: Vec<&Figure> =
            stated.iter().filter(|f| f.kind.checked(reading) && sourced.iter().any(|s| s.kind == f.kind)).collect();
        // A reading that adds no figure to the previous one's finds nothing more.
        if checkable.is_empty() || checkable.len() == checked.len() {
            continue;
        }
        checked = checkable;
        let support = support.get_or_insert_with(|| Support::of(&format!("{}\n{instructions}", candidate.context)));
        let explains = reading == Reading::Explain;
        let unsupported: Vec<&Figure> = checked.iter().copied().filter(|f| !support.holds(f)).collect();
        let Some(first) = unsupported.first() else {
            match outdated(candidate, &checked) {
                Some(u) => return Some(Unsupported { explains, ..u }),
                None => continue,
            }
        };
        let mut given: Vec<&str> = sourced.iter().filter(|f| f.kind == first.kind).map(|f| f.text.as_str()).collect();
        given.dedup();
        given.truncate(3);
        let said: Vec<&str> = unsupported.iter().filter(|f| f.kind == first.kind).map(|f| f.text.as_str()).take(3).collect();
        return Some(Unsupported {
            kind: first.kind,
            explains,
            superseded: false,
            evidence: format!(
                "the answer states {} {} that its input does not give (the input gives {})",
                first.kind.as_str(),
                said.join(", "),
                given.join(", ")
            ),
        });
    }
    None
}

/// The first figure of the answer that its sources give only as a former value, unless the
/// answer itself says it is the former one ("now $49, previously $39").
fn outdated(candidate: &GroundingCandidate, checkable: &[&Figure]) -> Option<Unsupported> {
    let former = former_values(&candidate.sources);
    if former.is_empty() {
        return None;
    }
    let prose = CODE_BLOCK.replace_all(&candidate.output, " ");
    let answer = placed(&prose);
    for f in checkable {
        let Some((old, now)) = former.iter().find(|(o, _)| o.kind == f.kind && (o.value - f.value).abs() < 0.005) else { continue };
        let said_as_former = answer.iter().any(|(a, at)| a.text == f.text && marked_former(&prose, *at));
        if said_as_former {
            continue;
        }
        let now = now.as_ref().map_or(String::new(), |n| format!(", the current one is {n}"));
        return Some(Unsupported {
            kind: f.kind,
            explains: false,
            superseded: true,
            evidence: format!(
                "the answer states {} {} that its sources give as a former value (\"{}\"{now})",
                f.kind.as_str(),
                f.text,
                old.text
            ),
        });
    }
    None
}

/// [`check`] over a window's candidates that are calls of the window (`is_call`): what detects
/// a failure, else what would explain one ([`Unsupported::explains`]) should users flag it.
pub fn check_all<'a>(
    candidates: &'a [GroundingCandidate],
    instructions: impl Fn(&GroundingCandidate) -> &'a str,
    is_call: impl Fn(&GroundingCandidate) -> bool,
) -> Vec<(&'a GroundingCandidate, Unsupported)> {
    candidates
        .iter()
        .filter(|c| is_call(c))
        .filter_map(|c| check(c, instructions(c), &[Reading::Detect, Reading::Explain]).map(|u| (c, u)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(context: &str, output: &str) -> GroundingCandidate {
        GroundingCandidate { context: context.into(), sources: context.into(), output: output.into(), ..Default::default() }
    }

    #[test]
    fn figures_said_in_the_chat_are_no_source() {
        // The user mentioned an amount; the answer's general terms contradict no source.
        let chat = GroundingCandidate {
            context: "I was charged $129.99 twice. Also, do you offer free shipping?".into(),
            sources: String::new(),
            output: "Standard shipping is free for orders over $75; below that it's $6.95.".into(),
            ..Default::default()
        };
        assert_eq!(check(&chat, "", &[Reading::Detect]), None);
        // The same answer beside a tool result that gives other shipping amounts is flagged.
        let tool = GroundingCandidate { sources: r#"{"shipping_fee":"$9.95","free_over":"$100"}"#.into(), ..chat.clone() };
        let tool = GroundingCandidate { context: format!("{} {}", tool.context, tool.sources), ..tool };
        assert!(check(&tool, "", &[Reading::Detect]).is_some());
    }

    #[test]
    fn numbers_are_read_in_any_notation() {
        assert_eq!(parse_number("1,299.00"), Some(1299.0));
        assert_eq!(parse_number("1.299,00"), Some(1299.0));
        assert_eq!(parse_number("12,5"), Some(12.5));
        assert_eq!(parse_number("45"), Some(45.0));
        let f = figures("It costs $1,299 (or 1 299 €), 25 % off, leaves at 7:45 or 17h45, within 30 days, 14 jours.");
        let kinds: Vec<(FigureKind, f64)> = f.iter().map(|f| (f.kind, f.value)).collect();
        assert!(kinds.contains(&(FigureKind::Money, 1299.0)), "{kinds:?}");
        assert!(kinds.contains(&(FigureKind::Percent, 25.0)), "{kinds:?}");
        assert!(kinds.contains(&(FigureKind::Time, 465.0)) && kinds.contains(&(FigureKind::Time, 1065.0)), "{kinds:?}");
        assert!(kinds.contains(&(FigureKind::Duration, 30.0)) && kinds.contains(&(FigureKind::Duration, 14.0)), "{kinds:?}");
    }

    #[test]
    fn a_figure_the_input_does_not_give_is_flagged() {
        // A tool result read wrong.
        let tool = r#"{"role":"tool","content":"{\"flight\":\"NW 412\",\"departure\":\"07:45\",\"checked_bags\":1}"}"#;
        let u = check(&cand(tool, "Flight NW 412 leaves at 17:45 tomorrow."), "", &[Reading::Detect]).unwrap();
        assert_eq!(u.kind, FigureKind::Time);
        assert!(u.evidence.contains("17:45") && u.evidence.contains("07:45"), "{}", u.evidence);
        // Twelve hours off, in the input's own 24-hour notation, is a misread too.
        assert!(check(&cand(tool, "Flight NW 412 leaves at 19:45."), "", &[Reading::Detect]).is_some());
        assert_eq!(check(&cand(tool, "Flight NW 412 leaves at 7:45 am."), "", &[Reading::Detect]), None);
        // An invented policy beside a page that states its own terms.
        let page = "Returns: unused items within 30 days, 10% restocking fee. Membership costs $35 a year.";
        assert!(
            check(&cand(page, "You can return anything for 90 days and members get 25% off everything."), "", &[Reading::Detect]).is_some()
        );
        assert!(check(&cand(page, "L'adhésion coûte 55 € par an."), "", &[Reading::Detect]).is_some());
        // Durations are read, not checked: general terms ("within 24 hours") are no invention.
        assert_eq!(check(&cand(page, "Vous pouvez retourner vos articles pendant 90 jours."), "", &[Reading::Detect]), None);
    }

    #[test]
    fn a_period_the_sources_do_not_give_explains_a_flagged_answer() {
        let page = "Price match: if a major retailer sells the same item for less within 14 days of purchase, we refund the difference. Delivery takes 4 to 9 business days.";
        let invented = "Igualamos cualquier precio durante 90 días y devolvemos el doble de la diferencia.";
        assert_eq!(check(&cand(page, invented), "", &[Reading::Detect]), None, "no failure on its own");
        let u = check(&cand(page, invented), "", &[Reading::Explain]).expect("the cause of a flagged answer");
        assert!(u.explains && u.kind == FigureKind::Duration, "{u:?}");
        assert!(u.evidence.contains("90 días") && u.evidence.contains("14 days"), "{}", u.evidence);
        assert_eq!(u.qualifier(), format!("duration {EXPLAINS}"));
        assert_eq!(Qualifier::read(&u.qualifier()), Qualifier { kind: "duration", superseded: false, explains: true });
        // The page's own periods, and their sum or difference, explain nothing.
        for answer in
            ["Delivery takes 4-9 business days; price matches within 14 days.", "Allow 23 days: 14 days, then 9 days of delivery."]
        {
            assert_eq!(check(&cand(page, answer), "", &[Reading::Explain]), None, "{answer}");
        }
        // A period that is only a sum of other numbers of the page (an article id and a price)
        // is still unsupported.
        let ids = "[kb-100] Price match within 14 days. [kb-102] Tents rent for $12.";
        assert!(check(&cand(ids, "We match prices for 2 days after purchase."), "", &[Reading::Explain]).is_some());
        // check_all gives the explanation only where nothing is detected.
        let cands = vec![cand(page, invented), cand("Discount 10%. Returns within 30 days.", "Members get 25% off for 90 days.")];
        let found: Vec<(bool, FigureKind)> = check_all(&cands, |_| "", |_| true).iter().map(|(_, u)| (u.explains, u.kind)).collect();
        assert_eq!(found, vec![(true, FigureKind::Duration), (false, FigureKind::Percent)]);
    }

    #[test]
    fn supported_or_derived_figures_are_not_flagged() {
        let page = "Rental: $12 per day, deposit $50. Returns within 30 days. Departure 19:45. Discount 10%.";
        for answer in [
            "A rental is $12.00 a day with a $50 deposit.",
            "Two days cost $24; one day with the deposit is $62.",
            "Returns are accepted for 30 days; the flight leaves at 7:45 pm (7:45 in the evening).",
            "You get a 10 % discount.",
            "Use `LIMIT 90` in the query: ```SELECT * FROM t WHERE age > 90 days```",
        ] {
            assert_eq!(check(&cand(page, answer), "", &[Reading::Detect]), None, "{answer}");
        }
        // Nothing of that kind in the input: nothing to be faithful to.
        assert_eq!(check(&cand("The museum is on Main Street.", "It opens at 9:00 and costs $15."), "", &[Reading::Detect]), None);
        // Supported by the system instructions.
        assert_eq!(
            check(
                &cand("Shipping takes 3 days.", "Support answers within 2 hours, shipping takes 3 days."),
                "Reply within 2 hours.",
                &[Reading::Detect]
            ),
            None
        );
    }

    #[test]
    fn a_former_value_of_the_sources_is_outdated() {
        let page = "Trail Club membership (updated May 2026): the annual fee is $49 (previously $39). Members get 10% back.";
        let u = check(&cand(page, "Trail Club costs $39 per year and includes 10% back in rewards."), "", &[Reading::Detect]).unwrap();
        assert!(u.superseded && u.kind == FigureKind::Money, "{u:?}");
        assert!(u.evidence.contains("$39") && u.evidence.contains("$49"), "{}", u.evidence);
        assert_eq!(u.qualifier(), "superseded amount");
        assert_eq!(Qualifier::read(&u.qualifier()), Qualifier { kind: "amount", superseded: true, explains: false });
        // In another language and notation, after "(was …)".
        let rental = "Rentals: tents rent for $12 per day (was $9), with a $50 refundable deposit.";
        assert!(
            check(&cand(rental, "La tente coûte 9 $ par jour, plus une caution de 50 $."), "", &[Reading::Detect])
                .is_some_and(|u| u.superseded)
        );
        // The current value, or the former one said as such, is right.
        for answer in [
            "Trail Club costs $49 per year.",
            "Trail Club now costs $49 a year (previously $39).",
            "It went up from $39 to $49: it was $39 before the update, now $49.",
        ] {
            assert_eq!(check(&cand(page, answer), "", &[Reading::Detect]), None, "{answer}");
        }
        // "Was" in a plain sentence states a current fact.
        let order = "Your order A-1 total was $79.99; shipping was $5.";
        assert_eq!(check(&cand(order, "Your total was $79.99."), "", &[Reading::Detect]), None);
    }

    #[test]
    fn every_call_of_the_window_is_checked() {
        let order = r#"{"order":"A-1","total":"$79.99","status":"shipped"}"#;
        let cands = vec![cand(order, "Express shipping costs $12.40."), cand(order, "Your total was $79.99.")];
        let found = check_all(&cands, |_| "", |_| true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].1.explains);
        assert!(found[0].1.evidence.contains("$12.40"), "{}", found[0].1.evidence);
        assert!(check_all(&cands, |_| "", |_| false).is_empty());
    }
}
