//! Scoring patterns against labelled failure modes (the simulator's ground truth): adjusted
//! Rand index, normalised mutual information, and which modes came out as distinct patterns.
//! Used by the end-to-end tests and `flywheel bench analyze`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Adjusted Rand index between two labelings of the same items (1 = identical partitions,
/// ~0 = chance). Each outlier should get its own label before calling this.
pub fn adjusted_rand_index(truth: &[String], predicted: &[String]) -> f64 {
    let n = truth.len() as f64;
    if truth.len() < 2 {
        return 1.0;
    }
    let c2 = |x: f64| x * (x - 1.0) / 2.0;
    let mut table: HashMap<(&str, &str), f64> = HashMap::new();
    let mut a: HashMap<&str, f64> = HashMap::new();
    let mut b: HashMap<&str, f64> = HashMap::new();
    for (t, p) in truth.iter().zip(predicted) {
        *table.entry((t, p)).or_default() += 1.0;
        *a.entry(t).or_default() += 1.0;
        *b.entry(p).or_default() += 1.0;
    }
    let index: f64 = table.values().map(|&x| c2(x)).sum();
    let sum_a: f64 = a.values().map(|&x| c2(x)).sum();
    let sum_b: f64 = b.values().map(|&x| c2(x)).sum();
    let expected = sum_a * sum_b / c2(n);
    let max = (sum_a + sum_b) / 2.0;
    if (max - expected).abs() < f64::EPSILON { 1.0 } else { (index - expected) / (max - expected) }
}

/// Normalised mutual information (arithmetic mean normalisation).
pub fn normalized_mutual_information(truth: &[String], predicted: &[String]) -> f64 {
    let n = truth.len() as f64;
    let mut table: HashMap<(&str, &str), f64> = HashMap::new();
    let mut a: HashMap<&str, f64> = HashMap::new();
    let mut b: HashMap<&str, f64> = HashMap::new();
    for (t, p) in truth.iter().zip(predicted) {
        *table.entry((t, p)).or_default() += 1.0;
        *a.entry(t).or_default() += 1.0;
        *b.entry(p).or_default() += 1.0;
    }
    let entropy = |m: &HashMap<&str, f64>| -m.values().map(|&x| (x / n) * (x / n).ln()).sum::<f64>();
    let mi: f64 = table.iter().map(|((t, p), &x)| (x / n) * ((x * n) / (a[t] * b[p])).ln()).sum();
    let (ha, hb) = (entropy(&a), entropy(&b));
    if ha + hb == 0.0 { 1.0 } else { 2.0 * mi / (ha + hb) }
}

/// How one injected mode came out.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeResult {
    pub mode: String,
    pub items: usize,
    /// The pattern that holds most of the mode, with its F1 score against the mode.
    pub best_pattern: Option<String>,
    pub f1: f64,
    /// Recovered: a pattern with F1 ≥ 0.5 that no other mode claims with a higher F1.
    pub recovered: bool,
}

/// For each mode, its best-matching pattern; each pattern recovers at most one mode.
/// `predicted[i]` is None for an outlier.
pub fn modes_recovered(truth: &[String], predicted: &[Option<String>]) -> Vec<ModeResult> {
    let modes: BTreeSet<&String> = truth.iter().collect();
    let mut pattern_size: BTreeMap<&str, usize> = BTreeMap::new();
    for p in predicted.iter().flatten() {
        *pattern_size.entry(p).or_default() += 1;
    }
    let mut results: Vec<ModeResult> = Vec::new();
    for mode in modes {
        let items = truth.iter().filter(|t| *t == mode).count();
        let mut overlap: BTreeMap<&str, usize> = BTreeMap::new();
        for (t, p) in truth.iter().zip(predicted) {
            if t == mode
                && let Some(p) = p
            {
                *overlap.entry(p).or_default() += 1;
            }
        }
        let best = overlap
            .iter()
            .map(|(p, &o)| {
                let precision = o as f64 / pattern_size[p] as f64;
                let recall = o as f64 / items as f64;
                (2.0 * precision * recall / (precision + recall), *p)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(a.1)));
        results.push(ModeResult {
            mode: mode.clone(),
            items,
            best_pattern: best.map(|(_, p)| p.to_string()),
            f1: best.map_or(0.0, |(f, _)| f),
            recovered: false,
        });
    }
    // A pattern can stand for one mode only: the one it fits best.
    for i in 0..results.len() {
        let Some(p) = results[i].best_pattern.clone() else { continue };
        let claimed_better = results.iter().enumerate().any(|(j, r)| {
            j != i && r.best_pattern.as_deref() == Some(p.as_str()) && (r.f1 > results[i].f1 || (r.f1 == results[i].f1 && j < i))
        });
        results[i].recovered = results[i].f1 >= 0.5 && !claimed_better;
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ari_and_nmi_match_known_values() {
        let t = s(&["a", "a", "a", "b", "b", "b"]);
        assert!((adjusted_rand_index(&t, &s(&["x", "x", "x", "y", "y", "y"])) - 1.0).abs() < 1e-12);
        assert!((normalized_mutual_information(&t, &s(&["y", "y", "y", "x", "x", "x"])) - 1.0).abs() < 1e-12);
        // sklearn: adjusted_rand_score([0,0,0,1,1,1],[0,0,1,1,2,2]) = 0.24242424...
        let ari = adjusted_rand_index(&t, &s(&["0", "0", "1", "1", "2", "2"]));
        assert!((ari - 0.242_424_242_424).abs() < 1e-9, "{ari}");
        // sklearn: normalized_mutual_info_score(same) = 0.5158037429793889
        let nmi = normalized_mutual_information(&t, &s(&["0", "0", "1", "1", "2", "2"]));
        assert!((nmi - 0.515_803_742_979).abs() < 1e-9, "{nmi}");
    }

    #[test]
    fn modes_are_recovered_once_each() {
        let truth = s(&["a", "a", "a", "a", "b", "b", "b", "c", "c"]);
        let p = |x: &str| Some(x.to_string());
        let predicted = vec![p("1"), p("1"), p("1"), None, p("1"), p("1"), p("2"), None, None];
        let r = modes_recovered(&truth, &predicted);
        assert_eq!(r[0].best_pattern.as_deref(), Some("1"));
        assert!(r[0].recovered, "a owns pattern 1: {r:?}");
        assert!(!r[1].recovered, "b's best pattern is a's");
        assert!(!r[2].recovered);
    }
}
