//! Which language a text is in, for the `language_mismatch` rule. Only confident verdicts
//! count: a short or mixed text says nothing, rather than a false alarm.
//!
//! Two detectors, each where it is good: whatlang (trigrams, fast) decides texts it is sure
//! of — most answers, a few sentences long; lingua (n-grams up to five) reads what whatlang
//! cannot — the one-line questions users actually type ("¿Envían a Japón?"), on which
//! whatlang is unsure more often than not. Names are whatlang's English names, whichever
//! detector spoke.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{LazyLock, Mutex};

use lingua::{LanguageDetector, LanguageDetectorBuilder};
use whatlang::Lang;

/// lingua, with the languages this build carries; models load on first use.
static LINGUA: LazyLock<LanguageDetector> = LazyLock::new(|| LanguageDetectorBuilder::from_all_languages().build());

/// Texts are read up to this many characters: the language does not change further on.
const READ_CHARS: usize = 600;

pub struct Detector {
    inner: whatlang::Detector,
    /// lingua alone: slower, and right where whatlang is sure and wrong.
    careful: bool,
    /// Verdicts by the hash of the text read (`min_confidence` with it): one window repeats
    /// texts — a conversation's turns in each of its calls, templated questions, canned
    /// answers — and detection is most of `detect`'s time. 16 bytes and a verdict per
    /// distinct text, for one analysis.
    memo: Mutex<HashMap<(u64, u64), Option<Lang>>>,
    hasher: RandomState,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

/// Code, URLs and numbers say nothing about the language and skew short texts.
fn prose(text: &str) -> String {
    let head: String = text.chars().take(READ_CHARS).collect();
    head.split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_alphabetic() || ",.;:!?¿¡'\"()«»-".contains(c)) && !w.contains("://"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Detector {
    pub fn new() -> Detector {
        Detector { inner: whatlang::Detector::new(), careful: false, memo: Mutex::default(), hasher: RandomState::new() }
    }

    /// A detector that reads with lingua only: for confirming a verdict before it raises an
    /// alarm. whatlang is sometimes *sure* and wrong — "Good morning. Can I return the bike
    /// helmet I bought about ten days ago? It doesn't fit." is reliable Dutch to it, English
    /// (0.99) to lingua.
    pub fn careful() -> Detector {
        Detector { inner: whatlang::Detector::new(), careful: true, memo: Mutex::default(), hasher: RandomState::new() }
    }

    /// The language's English name when a detector is at least `min_confidence` sure.
    pub fn detect(&self, text: &str, min_confidence: f64) -> Option<String> {
        let prose = prose(text);
        if prose.chars().filter(|c| c.is_alphabetic()).count() < 12 {
            return None;
        }
        let key = (self.hasher.hash_one(&prose), min_confidence.to_bits());
        if let Some(known) = self.memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return known.map(name);
        }
        let verdict = self.read(&prose, min_confidence);
        self.memo.lock().unwrap_or_else(|e| e.into_inner()).insert(key, verdict);
        verdict.map(name)
    }

    fn read(&self, prose: &str, min_confidence: f64) -> Option<Lang> {
        if !self.careful
            && let Some(info) = self.inner.detect(prose)
            && info.is_reliable()
            && info.confidence() >= min_confidence
        {
            return Some(info.lang());
        }
        let ranked = LINGUA.compute_language_confidence_values(prose);
        let (lang, confidence) = *ranked.first()?;
        let runner_up = ranked.get(1).map_or(0.0, |r| r.1);
        // lingua's values share one unit over every language it carries, so a short text's
        // clear winner ("Was kostet der Versand nach Japan?": German 0.46, Dutch 0.09) can
        // sit under the bar; a lead of three times the next language is as decisive
        // ("How many bags can I check on": English 0.38, Polish 0.10).
        if confidence < min_confidence && confidence < 3.0 * runner_up.max(0.05) {
            return None;
        }
        Lang::from_code(lang.iso_code_639_3().to_string())
    }
}

fn name(lang: Lang) -> String {
    lang.eng_name().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_common_languages_apart_and_abstains_on_little_text() {
        let d = Detector::new();
        assert_eq!(d.detect("Where is my order? It was supposed to arrive last week.", 0.5).as_deref(), Some("English"));
        assert_eq!(d.detect("¿Dónde está mi pedido? Debía llegar la semana pasada.", 0.5).as_deref(), Some("Spanish"));
        assert_eq!(d.detect("Wo ist meine Bestellung? Sie sollte letzte Woche ankommen.", 0.5).as_deref(), Some("German"));
        assert_eq!(d.detect("ok", 0.5), None);
        assert_eq!(d.detect("fn main() { println!(\"{}\", 1 + 2); } // 42", 0.5), None);
    }

    #[test]
    fn one_line_questions_read_as_what_they_are() {
        let d = Detector::new();
        for (text, lang) in [
            ("¿Envían a Japón? ¿Cuánto tarda?", "Spanish"),
            ("Quanto custa o frete para Japão?", "Portuguese"),
            ("Was kostet der Versand nach Japan?", "German"),
            ("Vous louez des tentes ? Quel est le prix par jour ?", "French"),
            ("How many bags can I check on SX6FAX?", "English"),
        ] {
            assert_eq!(d.detect(text, 0.5).as_deref(), Some(lang), "{text}");
        }
        // Product names in another language make a short question unsure, never English.
        assert_eq!(d.detect("Que couvre la garantie du Trailblazer 45 backpack ?", 0.5), None);
    }

    #[test]
    fn the_careful_reader_corrects_what_whatlang_is_sure_of() {
        let text =
            "Good morning. Can I return the bike helmet I bought about ten days ago? It doesn't fit. Order NW-048775. Appreciate it.";
        assert_eq!(Detector::careful().detect(text, 0.5).as_deref(), Some("English"));
        assert_eq!(Detector::careful().detect(FRENCH, 0.5).as_deref(), Some("French"));
    }

    const FRENCH: &str = "Votre commande a été expédiée hier et devrait arriver vendredi. Merci de votre patience.";
}
