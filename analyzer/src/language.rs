//! Which language a text is in, for the `language_mismatch` rule. Only confident verdicts
//! count: a short or mixed text says nothing, rather than a false alarm.

use whatlang::Lang;

pub struct Detector {
    inner: whatlang::Detector,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

impl Detector {
    pub fn new() -> Detector {
        Detector { inner: whatlang::Detector::new() }
    }

    /// The language's English name when the detector is at least `min_confidence` sure.
    pub fn detect(&self, text: &str, min_confidence: f64) -> Option<String> {
        // Code, URLs and numbers say nothing about the language and skew short texts.
        let prose: String = text
            .split_whitespace()
            .filter(|w| w.chars().all(|c| c.is_alphabetic() || ",.;:!?¿¡'\"()«»-".contains(c)) && !w.contains("://"))
            .collect::<Vec<_>>()
            .join(" ");
        if prose.chars().filter(|c| c.is_alphabetic()).count() < 20 {
            return None;
        }
        let info = self.inner.detect(&prose)?;
        (info.is_reliable() && info.confidence() >= min_confidence).then(|| name(info.lang()))
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
}
