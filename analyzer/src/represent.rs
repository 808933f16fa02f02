//! How a failure's text becomes a vector: a local sentence-embedding model when installed,
//! else a lexical TF-IDF representation (hashed terms, so no vocabulary is kept), stated in
//! the run's output. Both are L2-normalised, so Euclidean distance orders like cosine.

use crate::text::terms;

/// Dimension of the hashed lexical space: enough to keep collisions rare among the terms of
/// one signature group, small enough for a dense matrix of 100k rows.
pub const LEXICAL_DIM: usize = 1024;

/// Name of the lexical representation in runs and outputs.
pub const LEXICAL: &str = "lexical-tfidf";

/// Hashed TF-IDF vectors (sublinear tf, smoothed idf over `texts`), L2-normalised.
pub fn lexical(texts: &[String]) -> Vec<Vec<f32>> {
    let docs: Vec<Vec<usize>> = texts.iter().map(|t| terms(t).iter().map(|w| bucket(w)).collect()).collect();
    let mut df = vec![0u32; LEXICAL_DIM];
    for d in &docs {
        let mut seen = d.clone();
        seen.sort_unstable();
        seen.dedup();
        for b in seen {
            df[b] += 1;
        }
    }
    let n = docs.len() as f32;
    let idf: Vec<f32> = df.iter().map(|&d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0).collect();
    docs.iter()
        .map(|d| {
            let mut v = vec![0f32; LEXICAL_DIM];
            for &b in d {
                v[b] += 1.0;
            }
            for (b, x) in v.iter_mut().enumerate() {
                if *x > 0.0 {
                    *x = (1.0 + x.ln()) * idf[b];
                }
            }
            normalize(&mut v);
            v
        })
        .collect()
}

/// FNV-1a: stable across runs and platforms, unlike the std hasher.
fn bucket(term: &str) -> usize {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in term.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % LEXICAL_DIM as u64) as usize
}

pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let (na, nb) = (a.iter().map(|x| x * x).sum::<f32>().sqrt(), b.iter().map(|x| x * x).sum::<f32>().sqrt());
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}

/// The mean of `vectors[members]`, normalised.
pub fn centroid(vectors: &[Vec<f32>], members: &[usize]) -> Vec<f32> {
    let Some(dim) = members.first().map(|&i| vectors[i].len()) else { return vec![] };
    let mut c = vec![0f32; dim];
    for &i in members {
        for (a, b) in c.iter_mut().zip(&vectors[i]) {
            *a += b;
        }
    }
    normalize(&mut c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_texts_are_closer_than_different_ones() {
        let texts: Vec<String> = [
            "Refunds are available within 90 days in cash at any store.",
            "You can get a cash refund within 90 days, no receipt needed.",
            "Use a HashMap and iterate over its entries with a for loop.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let v = lexical(&texts);
        assert!(v.iter().all(|x| (x.iter().map(|a| a * a).sum::<f32>() - 1.0).abs() < 1e-5));
        assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
        assert_eq!(lexical(&texts), v, "deterministic");
    }
}
