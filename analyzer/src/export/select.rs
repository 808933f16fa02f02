//! Representative members of a pattern: diverse, not the first N rows.
//!
//! Greedy farthest-point sampling: start from the most central member (the first one, as
//! `pattern_members` orders them by distance to the centre), then repeatedly take the member
//! farthest from everything taken so far. Distances are cosine distances between the failures'
//! sentence embeddings when every member has one under the same model; otherwise cosine
//! distances between TF-IDF vectors of the request and output text (the lexical fallback, which
//! the export summary mentions). Deterministic: ties go to the earlier member.

use std::collections::{BTreeMap, HashMap};

/// How the members were compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Representation {
    /// Sentence embeddings of `failures.details.text_hash`, from this model.
    Embeddings(String),
    /// TF-IDF over the tokens of request and output: no embedding covered every member.
    Lexical,
}

/// Indices of at most `k` members chosen by farthest-point sampling under `distance`.
pub fn farthest_points(n: usize, k: usize, distance: impl Fn(usize, usize) -> f64) -> Vec<usize> {
    if n == 0 || k == 0 {
        return Vec::new();
    }
    let mut chosen = vec![0];
    let mut nearest: Vec<f64> = (0..n).map(|i| distance(0, i)).collect();
    while chosen.len() < k.min(n) {
        let mut best: Option<(usize, f64)> = None;
        for (i, d) in nearest.iter().enumerate() {
            if chosen.contains(&i) {
                continue;
            }
            if best.is_none_or(|(_, bd)| *d > bd) {
                best = Some((i, *d));
            }
        }
        let Some((next, _)) = best else { break };
        chosen.push(next);
        for (i, d) in nearest.iter_mut().enumerate() {
            *d = d.min(distance(next, i));
        }
    }
    chosen
}

pub fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += *x as f64 * *y as f64;
        na += *x as f64 * *x as f64;
        nb += *y as f64 * *y as f64;
    }
    if na == 0.0 || nb == 0.0 { 1.0 } else { 1.0 - dot / (na.sqrt() * nb.sqrt()) }
}

/// Unit-length TF-IDF vectors (sparse, token → weight) of `texts`.
pub fn tfidf(texts: &[String]) -> Vec<BTreeMap<String, f64>> {
    let docs: Vec<HashMap<String, f64>> = texts
        .iter()
        .map(|t| {
            let mut tf = HashMap::new();
            for token in tokens(t) {
                *tf.entry(token).or_insert(0.0) += 1.0;
            }
            tf
        })
        .collect();
    let mut df: HashMap<&str, f64> = HashMap::new();
    for d in &docs {
        for token in d.keys() {
            *df.entry(token).or_insert(0.0) += 1.0;
        }
    }
    let n = docs.len() as f64;
    docs.iter()
        .map(|d| {
            let mut v: BTreeMap<String, f64> =
                d.iter().map(|(t, tf)| (t.clone(), tf * ((1.0 + n) / (1.0 + df[t.as_str()])).ln() + tf)).collect();
            let norm = v.values().map(|w| w * w).sum::<f64>().sqrt();
            if norm > 0.0 {
                v.values_mut().for_each(|w| *w /= norm);
            }
            v
        })
        .collect()
}

pub fn sparse_cosine_distance(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() && b.is_empty() { 0.0 } else { 1.0 };
    }
    let dot: f64 = a.iter().filter_map(|(t, w)| b.get(t).map(|v| v * w)).sum();
    (1.0 - dot).max(0.0)
}

fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| t.chars().count() >= 2).map(str::to_lowercase)
}

/// Picks `k` representatives among `texts` (request + output per member, most central first)
/// using `vectors` when every member has one, the lexical fallback otherwise.
pub fn representatives(texts: &[String], vectors: Option<(&str, &[Vec<f32>])>, k: usize) -> (Vec<usize>, Representation) {
    match vectors {
        Some((model, vectors)) if vectors.len() == texts.len() => (
            farthest_points(texts.len(), k, |i, j| cosine_distance(&vectors[i], &vectors[j])),
            Representation::Embeddings(model.to_string()),
        ),
        _ => {
            let v = tfidf(texts);
            (farthest_points(texts.len(), k, |i, j| sparse_cosine_distance(&v[i], &v[j])), Representation::Lexical)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn farthest_points_spread_over_clusters() {
        // Three tight groups on a line; the first member is in the middle group.
        let points: [f64; 8] = [5.0, 5.1, 4.9, 0.0, 0.1, 10.0, 10.2, 5.05];
        let picked = farthest_points(points.len(), 3, |i, j| (points[i] - points[j]).abs());
        assert_eq!(picked[0], 0);
        let mut groups: Vec<i32> = picked.iter().map(|&i| (points[i] / 5.0_f64).round() as i32).collect();
        groups.sort();
        assert_eq!(groups, vec![0, 1, 2], "one per group, not the first three rows: {picked:?}");
        assert_eq!(farthest_points(2, 5, |_, _| 1.0).len(), 2);
        assert!(farthest_points(0, 5, |_, _| 1.0).is_empty());
    }

    #[test]
    fn lexical_fallback_prefers_different_texts() {
        let texts: Vec<String> = [
            "refund policy thirty days full refund",
            "refund policy thirty days full refund please",
            "réponse en français au lieu de anglais",
            "refund policy thirty days full refund now",
        ]
        .map(String::from)
        .to_vec();
        let (picked, how) = representatives(&texts, None, 2);
        assert_eq!(how, Representation::Lexical);
        assert_eq!(picked, vec![0, 2]);
    }

    #[test]
    fn embeddings_are_used_when_complete() {
        let texts = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let vectors = vec![vec![1.0, 0.0], vec![0.9, 0.1], vec![0.0, 1.0]];
        let (picked, how) = representatives(&texts, Some(("m", &vectors)), 2);
        assert_eq!(how, Representation::Embeddings("m".into()));
        assert_eq!(picked, vec![0, 2]);
        let (_, how) = representatives(&texts, Some(("m", &vectors[..2])), 2);
        assert_eq!(how, Representation::Lexical);
    }
}
