//! Readable, deterministic names for patterns: the dominant evidence and facets, and the terms
//! that set the pattern's texts apart from every other failure's (class-based TF-IDF).

use std::collections::{BTreeMap, HashMap, HashSet};

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

/// What a signature reads as in a label.
pub fn signature_phrase(signature: &str, languages: &[String]) -> String {
    let (id, qualifier) = signature.split_once(" · ").unwrap_or((signature, ""));
    match id {
        "error_status" if !qualifier.is_empty() => format!("{qualifier} errors"),
        "error_status" => "calls in error".into(),
        "exception" => format!("{qualifier} exceptions"),
        "tool_error" if !qualifier.is_empty() => format!("tool calls failing with {qualifier}"),
        "tool_error" => "failing tool calls".into(),
        "empty_output" => "empty answers".into(),
        "refusal" => "refusals".into(),
        "language_mismatch" if !languages.is_empty() => format!("answers in the wrong language ({})", languages.join(", ")),
        "language_mismatch" => "answers in the wrong language".into(),
        "slow" => "slow answers".into(),
        "costly" => "unusually expensive calls".into(),
        id => match id.strip_prefix("finish_reason:") {
            Some(reason) => format!("`{reason}` finish"),
            None => id.replace('_', " "),
        },
    }
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
        assert_eq!(signature_phrase("finish_reason:length", &[]), "`length` finish");
        assert_eq!(signature_phrase("error_status · RateLimitError", &[]), "RateLimitError errors");
        assert_eq!(
            signature_phrase("language_mismatch", &["French".into(), "Spanish".into()]),
            "answers in the wrong language (French, Spanish)"
        );
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
}
