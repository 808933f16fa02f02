//! Words of a failure's text, shared by the lexical representation and the labels, and the
//! stems and sentences the detectors and the eval cases compare texts by.

use std::collections::BTreeSet;

/// English function words and chat filler that say nothing about a failure.
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before", "but", "by", "can",
    "could", "did", "do", "does", "for", "from", "get", "had", "has", "have", "he", "her", "here", "his", "how", "i", "if", "in", "into",
    "is", "it", "its", "just", "let", "me", "more", "my", "no", "not", "now", "of", "on", "one", "or", "our", "out", "please", "so",
    "some", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "up", "us", "use", "was", "we", "were",
    "what", "when", "where", "which", "while", "who", "why", "will", "with", "would", "you", "your", "yours", "im", "ive", "dont", "cant",
    "its", "thats", "youre", "ill", "id", "hi", "hello", "thanks", "thank", "sure", "ok", "okay", "yes",
];

/// Lowercase words of two or more letters, digits folded to `0` (ids and amounts vary, their
/// presence does not), stopwords dropped.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_lowercase();
            if w.chars().any(|c| c.is_ascii_digit()) { w.chars().map(|c| if c.is_ascii_digit() { '0' } else { c }).collect() } else { w }
        })
        .filter(|w| w.chars().count() >= 2 && !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// Words and adjacent pairs of words.
pub fn terms(text: &str) -> Vec<String> {
    let w = words(text);
    let pairs = w.windows(2).map(|p| format!("{} {}", p[0], p[1]));
    w.iter().cloned().chain(pairs).collect()
}

/// Stems that say nothing about the subject: the words of a "no information, contact us"
/// answer and of any request, in the languages read.
const GENERIC: &[&str] = &[
    "infor", "websi", "custo", "servi", "conta", "pleas", "check", "polic", "terms", "order", "confi", "speci", "about", "recom", "would",
    "could", "their", "there", "which", "where", "these", "those", "other", "thank", "happy", "sorry", "unfor", "detai", "preci", "exact",
    "consu", "clien", "atten", "kunde", "bitte", "leide", "nosso", "nuest", "notre", "votre", "vous", "avoir", "tengo", "habe", "tenho",
    "sobre", "dispo", "geral", "gener", "avail", "store", "magas", "tiend", "shop", "websit", "página", "pagin", "seite", "donné", "datos",
    "dados", "daten", "angab", "genau", "konkr", "näher", "have", "your", "with", "this", "that", "what", "from", "will", "when", "they",
    "them", "then", "than", "here", "more", "also", "just", "only", "some", "like", "does", "need", "much", "many", "each", "very", "been",
    "were", "into", "over", "site", "help", "info", "data", "dans", "pour", "avec", "nous", "mais", "sont", "quel", "para", "como", "esta",
    "este", "pero", "cual", "eine", "sind", "nicht", "auch", "oder", "wird", "kann", "sich", "mein", "meine", "você", "voce", "mais",
    "isso", "essa", "esse", "know", "sure", "find", "able",
];

/// Content stems of `text`: the first five letters of its words of four letters or more
/// ("club", "membe[rship]", "garan[tie]").
pub fn stems(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| w.chars().count() >= 4)
        .map(|w| w.to_lowercase().chars().take(5).collect::<String>())
        .filter(|s| !GENERIC.contains(&s.as_str()))
        .collect()
}

/// The sentences of `text`, cut after `.`, `!`, `?` and at line ends, trimmed.
pub fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(['.', '!', '?', '\n']).map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_drop_noise_and_fold_digits() {
        assert_eq!(words("I'm sorry, but I can't help with order #12345!"), vec!["sorry", "help", "order", "00000"]);
        assert_eq!(terms("refund within 90 days"), vec!["refund", "within", "00", "days", "refund within", "within 00", "00 days"]);
    }
}
