//! The `language_mismatch` rule: the answer is in another language than the user wrote in.
//!
//! The user's language is read from the user's own words — the text parts of the user turns,
//! never tool results or retrieved documents, which in RAG and agent calls are often in
//! another language than the user's — paragraph by paragraph, so that a question asked in
//! Spanish under a pasted English document still reads as Spanish. The answer agrees when it
//! is in any language of the user's latest readable turn, read at its end (the last 600
//! characters: prompt templates put retrieved documents first and the question last). Code,
//! JSON, URLs and short texts say nothing; an answer that is JSON is data for a program (a
//! ticket's fields, a classification), whose language the schema decides, not the user. When the user's words cannot be read at all ("and the price?"), the language
//! the feature answers in 80 % of the time stands for them. A mismatch whatlang finds is
//! confirmed by lingua reading both sides alone before it counts (whatlang is sometimes sure
//! and wrong).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rayon::prelude::*;

use super::inputs::Call;
use crate::language::Detector;
use crate::rules::Rule;

/// Prose without fenced code blocks.
fn without_code(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split("```").enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
            out.push('\n');
        }
    }
    out
}

/// An answer that is a JSON object or array (the call's text is cut at a bound, so a
/// well-formed start is enough).
fn is_json(text: &str) -> bool {
    let t = text.trim_start();
    let t = t.strip_prefix("```json").unwrap_or(t).trim_start();
    (t.starts_with('{') && (t[1..].trim_start().starts_with('"') || t[1..].trim_start().starts_with('}')))
        || (t.starts_with('[') && serde_json::from_str::<serde_json::Value>(t.trim_end().trim_end_matches("```")).is_ok())
}

/// Languages of the paragraphs of one user turn (JSON and code skipped), those too short to
/// tell alone read together.
fn turn_languages(detector: &Detector, turn: &str, min_confidence: f64) -> BTreeSet<String> {
    let prose = without_code(turn);
    let readable = |p: &&str| {
        let t = p.trim_start();
        !(t.starts_with('{') || t.starts_with('[') || t.starts_with('<'))
    };
    let paragraphs: Vec<&str> = prose.split('\n').filter(readable).collect();
    let mut langs = BTreeSet::new();
    // Paragraphs too short to tell alone (a one-line question under a pasted document) are
    // read together.
    let mut unread: Vec<&str> = Vec::new();
    for p in paragraphs {
        match detector.detect(p, min_confidence) {
            Some(l) => {
                langs.insert(l);
            }
            None => unread.push(p),
        }
    }
    langs.extend(detector.detect(&unread.join(" "), min_confidence));
    langs
}

/// The languages of the user's latest turn that can be read; empty when none can.
pub fn user_languages(detector: &Detector, call: &Call, min_confidence: f64) -> BTreeSet<String> {
    let turns: Vec<&str> =
        if call.user_turns.is_empty() { vec![call.input_text.as_str()] } else { call.user_turns.iter().map(String::as_str).collect() };
    turns.iter().rev().map(|t| turn_languages(detector, t, min_confidence)).find(|l| !l.is_empty()).unwrap_or_default()
}

/// Calls answered in another language than the user's, with (user's language, answer's).
pub fn mismatches(rule: &Rule, calls: &[Call]) -> Vec<(usize, (String, String))> {
    let detector = Detector::new();
    let careful = Detector::careful();
    let min_chars = rule.spec.min_chars.unwrap_or(40);
    let min_confidence = rule.spec.min_confidence.unwrap_or(0.5);
    // Detection is most of the analyzer's `detect` stage: calls are read on every core.
    let answers: Vec<Option<String>> = calls
        .par_iter()
        .map(|c| {
            if is_json(&c.output_text) {
                return None;
            }
            let prose = without_code(&c.output_text);
            if prose.trim().chars().count() >= min_chars { detector.detect(&prose, min_confidence) } else { None }
        })
        .collect();
    let mut per_feature: HashMap<&str, BTreeMap<&str, usize>> = HashMap::new();
    for (c, a) in calls.iter().zip(&answers) {
        if let Some(a) = a {
            *per_feature.entry(&c.feature).or_default().entry(a).or_default() += 1;
        }
    }
    let usual: HashMap<&str, &str> = per_feature
        .iter()
        .filter_map(|(f, langs)| {
            let total: usize = langs.values().sum();
            let (lang, n) = langs.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
            (total >= 20 && *n * 5 >= total * 4).then_some((*f, *lang))
        })
        .collect();
    calls
        .par_iter()
        .zip(&answers)
        .enumerate()
        .filter_map(|(i, (c, answer))| {
            let answer = answer.as_ref()?;
            let mut user = user_languages(&detector, c, min_confidence);
            if user.is_empty() {
                user.extend(usual.get(c.feature.as_str()).map(|l| l.to_string()));
            }
            if user.is_empty() || user.contains(answer) {
                return None;
            }
            // whatlang is sometimes sure and wrong (plain English read as Dutch): an alarm
            // stands only when lingua, reading both sides alone, sees the same mismatch.
            let answer = careful.detect(&without_code(&c.output_text), min_confidence)?;
            let mut confirmed = user_languages(&careful, c, min_confidence);
            if confirmed.is_empty() {
                confirmed.extend(usual.get(c.feature.as_str()).map(|l| l.to_string()));
            }
            if confirmed.is_empty() || confirmed.contains(&answer) {
                return None;
            }
            let question = confirmed.into_iter().next().expect("not empty");
            Some((i, (question, answer)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    fn call(turns: &[&str], answer: &str) -> Call {
        Call {
            feature: "support".into(),
            input_text: turns.last().map(|t| t.to_string()).unwrap_or_default(),
            user_turns: turns.iter().map(|t| t.to_string()).collect(),
            output_text: answer.into(),
            ..Default::default()
        }
    }

    fn flagged(calls: &[Call]) -> Vec<usize> {
        let rules = Rules::defaults();
        mismatches(rules.get("language_mismatch").unwrap(), calls).into_iter().map(|(i, _)| i).collect()
    }

    const FR_ANSWER: &str = "Votre commande a été expédiée hier et devrait arriver vendredi. Merci de votre patience.";
    const ES_ANSWER: &str = "Su pedido fue enviado ayer y debería llegar el viernes. Gracias por su paciencia.";
    const EN_DOC: &str =
        "Shipping policy: orders ship within two business days. Tracking numbers are emailed once the parcel leaves the warehouse.";

    #[test]
    fn an_answer_in_another_language_than_the_user_wrote_in() {
        let c = call(&["Where is my order? It was due last week. Can you check the tracking for me?"], FR_ANSWER);
        assert_eq!(flagged(&[c]), vec![0]);
    }

    #[test]
    fn an_english_question_whatlang_reads_as_dutch_is_not_a_mismatch() {
        // Found on traffic the analyzer had not seen: whatlang is sure this is Dutch.
        let c = call(
            &["Good morning. Can I return the bike helmet I bought about ten days ago? It doesn't fit. Order NW-048775. Appreciate it."],
            "I've started a return for order NW-048775; a prepaid UPS label is on its way to your email. Returns are accepted within 30 days.",
        );
        assert_eq!(flagged(&[c]), Vec::<usize>::new());
    }

    #[test]
    fn healthy_multilingual_rag_and_agent_calls_are_not_flagged() {
        // Spanish user, English retrieved document pasted into the same user turn.
        let rag = call(
            &[&format!("Context:\n{EN_DOC}\n\nPregunta: ¿Dónde está mi pedido NW-4821? Debía llegar la semana pasada, por favor.")],
            ES_ANSWER,
        );
        // The last user turn holds only a tool result (Anthropic layout: no text part), the
        // user's own words are in the turn before.
        let agent = call(&["¿Dónde está mi pedido NW-4821? Debía llegar la semana pasada, por favor."], ES_ANSWER);
        // A French user whose turn quotes English JSON from a tool.
        let json = call(
            &[
                "{\"status\": \"shipped\", \"carrier\": \"UPS\", \"eta\": \"Friday\", \"note\": \"left the warehouse\"}\nOù est ma commande ? Elle devait arriver la semaine dernière.",
            ],
            FR_ANSWER,
        );
        // Retrieved articles as the first part of the user's turn, a one-line question last.
        let articles = call(
            &[&format!(
                "Help-centre articles:\n\n[1] Gear rentals\n{EN_DOC}\n\n[2] Shipping\n{EN_DOC}\nVous louez des tentes ? Quel est le prix par jour ?"
            )],
            FR_ANSWER,
        );
        let calls = [rag, agent, json, articles];
        let rules = Rules::defaults();
        let found = mismatches(rules.get("language_mismatch").unwrap(), &calls);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn code_short_texts_and_names_never_count() {
        let code = call(
            &["How do I read a file line by line in Rust without loading it all?"],
            "```rust\nlet f = BufReader::new(File::open(p)?);\nfor line in f.lines() { println!(\"{}\", line?); }\n```\nUse a BufReader.",
        );
        let short = call(&["Where is my order? It was due last week, can you check?"], "Merci, Jean-Pierre!");
        let ticket = call(
            &["Bonjour, que couvre la garantie des Alpine GTX boots ? J'ai besoin d'une réponse aujourd'hui."],
            "{\"category\":\"warranty_claim\",\"language\":\"fr\",\"summary\":\"Customer asks what the warranty on the Alpine GTX boots covers\"}",
        );
        assert!(flagged(&[code, short, ticket]).is_empty());
    }

    #[test]
    fn a_short_question_falls_back_to_the_features_usual_language() {
        let mut calls: Vec<Call> =
            (0..30).map(|_| call(&["and the price?"], "The jacket costs 120 dollars and ships within two days to your address.")).collect();
        calls[7].output_text = "La chaqueta cuesta 120 dólares y se envía en dos días a su dirección.".into();
        assert_eq!(flagged(&calls), vec![7]);
    }
}
