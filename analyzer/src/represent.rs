//! How a failure's text becomes a vector: a local sentence-embedding model when installed,
//! else a lexical TF-IDF representation (hashed terms, so no vocabulary is kept), stated in
//! the run's output. Both are L2-normalised, so Euclidean distance orders like cosine.

use crate::text::terms;

/// Dimension of the hashed lexical space: enough to keep collisions rare among the terms of
/// one signature group. Vectors are stored sparse (a failure's text has tens of terms), so a
/// million failures hold a few hundred bytes each, not 4 KB.
pub const LEXICAL_DIM: usize = 1024;

/// Name of the lexical representation in runs and outputs.
pub const LEXICAL: &str = "lexical-tfidf";

/// A sparse vector of the lexical space: (bucket, weight), buckets ascending and distinct.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sparse(pub Vec<(u32, f32)>);

impl Sparse {
    pub fn dense(&self) -> Vec<f32> {
        let mut v = vec![0f32; LEXICAL_DIM];
        for &(b, x) in &self.0 {
            v[b as usize] = x;
        }
        v
    }

    /// Dot product with a dense vector of the lexical space (the cosine when both are unit).
    pub fn dot(&self, dense: &[f32]) -> f32 {
        self.0.iter().map(|&(b, x)| x * dense.get(b as usize).copied().unwrap_or(0.0)).sum()
    }
}

/// Hashed TF-IDF vectors (sublinear tf, smoothed idf over `texts`), L2-normalised.
pub fn lexical(texts: &[String]) -> Vec<Sparse> {
    let docs: Vec<Vec<(u32, f32)>> = texts
        .iter()
        .map(|t| {
            let mut buckets: Vec<u32> = terms(t).iter().map(|w| bucket(w) as u32).collect();
            buckets.sort_unstable();
            let mut counts: Vec<(u32, f32)> = Vec::new();
            for b in buckets {
                match counts.last_mut() {
                    Some((last, n)) if *last == b => *n += 1.0,
                    _ => counts.push((b, 1.0)),
                }
            }
            counts
        })
        .collect();
    let mut df = vec![0u32; LEXICAL_DIM];
    for &(b, _) in docs.iter().flatten() {
        df[b as usize] += 1;
    }
    let n = docs.len() as f32;
    let idf: Vec<f32> = df.iter().map(|&d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0).collect();
    docs.into_iter()
        .map(|mut d| {
            for (b, x) in d.iter_mut() {
                *x = (1.0 + x.ln()) * idf[*b as usize];
            }
            let norm = d.iter().map(|(_, x)| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                d.iter_mut().for_each(|(_, x)| *x /= norm);
            }
            Sparse(d)
        })
        .collect()
}

/// The mean of sparse `vectors[members]`, dense and normalised.
pub fn sparse_centroid(vectors: &[Sparse], members: &[usize]) -> Vec<f32> {
    if members.is_empty() {
        return vec![];
    }
    let mut c = vec![0f32; LEXICAL_DIM];
    for &i in members {
        for &(b, x) in &vectors[i].0 {
            c[b as usize] += x;
        }
    }
    normalize(&mut c);
    c
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

/// The sum of `vectors[members]` (a centroid before normalisation; sums of merged groups add up).
pub fn sum(vectors: &[Vec<f32>], members: &[usize]) -> Vec<f32> {
    let mut c = vec![0f32; members.first().map_or(0, |&i| vectors[i].len())];
    for &i in members {
        for (a, b) in c.iter_mut().zip(&vectors[i]) {
            *a += b;
        }
    }
    c
}

/// The mean of `vectors[members]`, normalised.
pub fn centroid(vectors: &[Vec<f32>], members: &[usize]) -> Vec<f32> {
    let mut c = sum(vectors, members);
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
        let d: Vec<Vec<f32>> = v.iter().map(Sparse::dense).collect();
        assert!(d.iter().all(|x| (x.iter().map(|a| a * a).sum::<f32>() - 1.0).abs() < 1e-5));
        assert!(cosine(&d[0], &d[1]) > cosine(&d[0], &d[2]) + 0.2);
        assert!((v[0].dot(&d[1]) - cosine(&d[0], &d[1])).abs() < 1e-5, "sparse dot = dense cosine");
        assert_eq!(lexical(&texts), v, "deterministic");
        let c = sparse_centroid(&v, &[0, 1]);
        assert!((cosine(&c, &centroid(&d, &[0, 1])) - 1.0).abs() < 1e-5, "sparse centroid = dense centroid");
    }
}
