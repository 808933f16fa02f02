//! The `ignored_sources` rule: the answer says it has no information on what it was asked ("I
//! don't have specific information about X, please check the website"), while the sources
//! it was given — retrieved pages, tool results — are about X. Retrieval worked and the model
//! did not use it: TRAIL's poor information retrieval, RAG benchmarks' failed "information
//! integration". The opposite, saying so when the sources are about something else, is the
//! right behaviour, so the sources must share the question's terms.
//!
//! Read in English, French, Spanish, Portuguese, German, Italian and Dutch; near the start of
//! the answer (its main message, not a hedge after an answer); not when the answer states a
//! figure of its sources (it used them).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

use super::inputs::IgnoranceCandidate;

/// Saying there is no information, in the languages users write in. One pattern for ClickHouse
/// (RE2, to pick the candidates) and for the exact reading here.
pub const NO_INFORMATION_RE: &str = concat!(
    r"(?i)\b(?:i|we) (?:don't|do not|didn't|did not|don’t) have (?:any |specific |detailed |precise |exact |enough |the |more )?(?:information|info|details|data|specifics)\b",
    r"|\b(?:i|we) (?:couldn't|could not|can't|cannot|was unable to|wasn't able to) find (?:any |specific )?(?:information|details|anything)\b",
    r"|\bno (?:specific |detailed |precise )?information (?:is )?(?:available|about|on)\b",
    r"|\bje n'ai pas (?:d'|de |d’)(?:information|précision|détail|renseignement)|\baucune information\b",
    r"|\bno (?:tengo|dispongo de|cuento con) (?:información|datos|detalles)",
    r"|\bnão (?:tenho|disponho de) (?:informaç|dados|detalhes)",
    r"|\b(?:habe ich|ich habe|haben wir|wir haben) keine (?:genauen |konkreten |näheren |weiteren )?(?:informationen|angaben|details)",
    r"|\bnon (?:ho|abbiamo|dispongo di) (?:informazioni|dati|dettagli)",
    r"|\b(?:ik heb|heb ik|wij hebben) geen (?:specifieke |precieze )?(?:informatie|gegevens)",
);

static NO_INFORMATION: LazyLock<Regex> = LazyLock::new(|| Regex::new(NO_INFORMATION_RE).expect("no-information pattern"));

/// The answer's main message: the statement must come this early (bytes).
const MAIN_MESSAGE: usize = 240;

/// Sources shorter than this hold nothing to ignore.
const MIN_SOURCES: usize = 200;

/// What the answer ignored: the statement and the shared terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Ignored {
    pub evidence: String,
}

/// Whether `c`'s answer says it has no information its sources give.
pub fn check(c: &IgnoranceCandidate) -> Option<Ignored> {
    let m = NO_INFORMATION.find(&c.output)?;
    if m.start() > MAIN_MESSAGE || c.sources.trim().len() < MIN_SOURCES {
        return None;
    }
    // An answer that quotes the sources' figures used them.
    let given: Vec<f64> = super::grounding::figures(&c.sources).into_iter().map(|f| f.value).collect();
    if super::grounding::figures(&c.output).iter().any(|f| given.iter().any(|&g| (g - f.value).abs() < 0.005)) {
        return None;
    }
    let asked: BTreeSet<String> = crate::text::stems(&format!("{} {}", c.question, c.output));
    let sourced = crate::text::stems(&c.sources);
    let shared: Vec<&String> = asked.intersection(&sourced).collect();
    if shared.len() < 2 {
        return None;
    }
    Some(Ignored {
        evidence: format!(
            "the answer says it has no information (\"{}\") while its sources are about it (shared terms: {})",
            super::excerpt(m.as_str(), 80),
            shared.iter().take(4).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "[1] Trail Club membership\nTrail Club membership (updated May 2026): the annual fee is $49. Members get free standard shipping, 10% back in rewards and two free repairs a year. Cancel anytime in Account > Membership.\n\n[2] Warranty\nNorthwind-brand products are covered for 2 years against manufacturing defects.";

    fn cand(question: &str, output: &str, sources: &str) -> IgnoranceCandidate {
        IgnoranceCandidate { question: question.into(), output: output.into(), sources: sources.into(), ..Default::default() }
    }

    #[test]
    fn no_information_beside_sources_about_it() {
        for (q, a) in [
            (
                "How much is the Trail Club membership per year?",
                "I don't have specific information about Trail Club. Please check our website.",
            ),
            (
                "Combien coûte l'abonnement Trail Club par an ?",
                "Je n'ai pas d'information précise sur le Trail Club. Consultez notre site.",
            ),
            ("¿Cuánto cuesta la membresía Trail Club al año?", "No tengo información específica sobre Trail Club. Consulta nuestra web."),
            ("Was kostet die Trail-Club-Mitgliedschaft pro Jahr?", "Zu den Trail Club habe ich keine genauen Informationen."),
        ] {
            let found = check(&cand(q, a, PAGE));
            assert!(found.is_some(), "{a}");
            assert!(found.unwrap().evidence.contains("trail"), "{a}");
        }
    }

    #[test]
    fn saying_so_is_right_when_the_sources_are_elsewhere() {
        // Retrieval returned neighbours of another subject: "no information" is the right answer.
        let q = "Do you sell gift cards for kayaking lessons?";
        let a = "I don't have information about gift cards for lessons; please contact the store.";
        assert_eq!(check(&cand(q, a, PAGE)), None);
        // No sources at all, or a hedge after an answer, or an answer that used the sources.
        assert_eq!(check(&cand("How much is Trail Club?", "I don't have specific information about Trail Club.", "")), None);
        let late = format!("{} I don't have more details about the Trail Club repairs.", "Trail Club costs $49 a year. ".repeat(10));
        assert_eq!(check(&cand("How much is Trail Club?", &late, PAGE)), None);
        let used = "I don't have the exact renewal date, but Trail Club membership costs $49 a year with 10% back.";
        assert_eq!(check(&cand("How much is Trail Club membership?", used, PAGE)), None);
        // Healthy answers never say it.
        assert_eq!(check(&cand("How much is Trail Club?", "Trail Club costs $49 per year and includes free shipping.", PAGE)), None);
    }
}
