//! Density clustering of failures into patterns, deterministic for the same input.
//!
//! A cause group (failures the system itself named alike, see [`crate::cause`]) is one
//! pattern: within it, text differences are topics (which order, which language), not
//! different failures. Failures only users flagged have no such name: they are clustered by
//! the text of what went wrong with HDBSCAN (petal-clustering), after PCA (linfa) to a few
//! dimensions where density means something; points in no dense region stay unclustered.

use std::collections::BTreeMap;

use linfa::traits::{Fit, Predict};
use linfa_reduction::Pca;
use petal_clustering::{Fit as _, HDbscan};

/// Clustering parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Smallest pattern; groups below it are outliers. [`Params::for_size`] scales it.
    pub min_cluster_size: usize,
    pub min_samples: usize,
    /// Dimensions kept by PCA before HDBSCAN.
    pub dims: usize,
}

impl Params {
    /// Patterns must be worth a look: at least 3 failures, or 1 % of a large set.
    pub fn for_size(n: usize) -> Params {
        let min_cluster_size = (n / 100).clamp(3, 50);
        Params { min_cluster_size, min_samples: min_cluster_size.min(5), dims: 16 }
    }
}

/// Cluster labels for `vectors` (None = outlier); clusters numbered by their first member.
pub fn hdbscan(vectors: &[Vec<f32>], params: Params) -> Vec<Option<usize>> {
    let n = vectors.len();
    if n < params.min_cluster_size.max(2) {
        return vec![None; n];
    }
    let reduced = reduce(vectors, params.dims);
    let dim = reduced.first().map_or(0, Vec::len);
    let flat: Vec<f64> = reduced.into_iter().flatten().collect();
    let data = ndarray::Array2::from_shape_vec((n, dim), flat).expect("rows of one dimension");
    let mut model = HDbscan {
        alpha: 1.0,
        min_samples: params.min_samples,
        min_cluster_size: params.min_cluster_size,
        metric: petal_neighbors::distance::Euclidean::default(),
        boruvka: false,
    };
    let (clusters, _outliers, _) = model.fit(&data, None);
    let mut ordered: Vec<Vec<usize>> = clusters
        .into_values()
        .map(|mut m| {
            m.sort_unstable();
            m
        })
        .collect();
    ordered.sort_by_key(|m| m[0]);
    let mut labels = vec![None; n];
    for (label, members) in ordered.into_iter().enumerate() {
        for i in members {
            labels[i] = Some(label);
        }
    }
    labels
}

/// Rows the PCA is fitted on: the principal axes of a few thousand failures are those of all of
/// them, and fitting on every row would hold an n × 1024 matrix of f64 at a million failures.
const PCA_FIT_ROWS: usize = 20_000;

/// PCA to `dims` (seeded SVD inside linfa), fitted on an evenly strided sample and applied to
/// every row in chunks; the vectors as they are when that cannot help.
fn reduce(vectors: &[Vec<f32>], dims: usize) -> Vec<Vec<f64>> {
    let n = vectors.len();
    let dim = vectors[0].len();
    let as_f64 = || vectors.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
    if dim <= dims || n <= dims + 1 {
        return as_f64();
    }
    let matrix = |rows: &[&Vec<f32>]| {
        let flat: Vec<f64> = rows.iter().flat_map(|v| v.iter().map(|&x| x as f64)).collect();
        ndarray16::Array2::from_shape_vec((rows.len(), dim), flat).expect("rows of one dimension")
    };
    let stride = n.div_ceil(PCA_FIT_ROWS);
    let sample: Vec<&Vec<f32>> = vectors.iter().step_by(stride).collect();
    let dataset = linfa::DatasetBase::from(matrix(&sample));
    match Pca::params(dims).fit(&dataset) {
        Ok(pca) => {
            let mut out = Vec::with_capacity(n);
            for chunk in vectors.chunks(PCA_FIT_ROWS) {
                let rows: Vec<&Vec<f32>> = chunk.iter().collect();
                let projected = pca.predict(&matrix(&rows));
                out.extend(projected.outer_iter().map(|row| row.to_vec()));
            }
            out
        }
        Err(e) => {
            tracing::warn!("PCA failed ({e}); clustering on the full vectors");
            as_f64()
        }
    }
}

/// Merges clusters that are one failure, most similar pair first, until none is left: two
/// clusters merge when their centroids point the same way (cosine ≥ `threshold`). Density
/// clustering of many failures finds dense sub-groups of one failure — the same kind of
/// invented refund policy, worded a dozen ways — that a reviewer would name once. What users
/// did about them is no evidence that they are one: users react alike to different failures.
/// Deterministic: ties go to the lowest indices; member lists stay sorted.
pub fn merge_similar(vectors: &[Vec<f32>], clusters: Vec<Vec<usize>>, threshold: f32) -> Vec<Vec<usize>> {
    let mut clusters = clusters;
    let mut sums: Vec<Vec<f32>> = clusters.iter().map(|m| crate::represent::sum(vectors, m)).collect();
    // Pairwise similarities once, then one row per merge: thousands of small clusters (a
    // million failures) would otherwise cost k² cosines of 384–1024 dimensions per merge.
    let n = clusters.len();
    let mut alive = vec![true; n];
    let mut sim = vec![vec![f32::NEG_INFINITY; n]; n];
    for a in 0..n {
        for b in a + 1..n {
            sim[a][b] = crate::represent::cosine(&sums[a], &sums[b]);
        }
    }
    loop {
        let mut best: Option<(f32, usize, usize)> = None;
        for a in (0..n).filter(|&a| alive[a]) {
            for b in (a + 1..n).filter(|&b| alive[b]) {
                let c = sim[a][b];
                if c >= threshold && best.is_none_or(|(bc, _, _)| c > bc) {
                    best = Some((c, a, b));
                }
            }
        }
        let Some((_, a, b)) = best else { break };
        alive[b] = false;
        let absorbed = std::mem::take(&mut clusters[b]);
        clusters[a].extend(absorbed);
        clusters[a].sort_unstable();
        let sum = std::mem::take(&mut sums[b]);
        sums[a].iter_mut().zip(&sum).for_each(|(x, y)| *x += y);
        for other in (0..n).filter(|&o| alive[o] && o != a) {
            let c = crate::represent::cosine(&sums[a], &sums[other]);
            if other < a {
                sim[other][a] = c;
            } else {
                sim[a][other] = c;
            }
        }
    }
    let mut clusters: Vec<Vec<usize>> = clusters.into_iter().zip(alive).filter(|(_, alive)| *alive).map(|(m, _)| m).collect();
    clusters.sort_by_key(|m| m[0]);
    clusters
}

/// Groups labels into member lists, in label order.
pub fn members(labels: &[Option<usize>]) -> Vec<Vec<usize>> {
    let mut by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        if let Some(l) = l {
            by.entry(*l).or_default().push(i);
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tight blobs and scattered points in 8 dimensions.
    fn blobs() -> (Vec<Vec<f32>>, Vec<Option<usize>>) {
        let mut v = Vec::new();
        let mut truth = Vec::new();
        let mut state = 7u64;
        let mut rnd = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for c in 0..3 {
            for _ in 0..40 {
                let mut x: Vec<f32> = (0..8).map(|_| rnd() * 0.1).collect();
                x[c] += 3.0;
                v.push(x);
                truth.push(Some(c));
            }
        }
        for _ in 0..6 {
            v.push((0..8).map(|_| rnd() * 8.0).collect());
            truth.push(None);
        }
        (v, truth)
    }

    #[test]
    fn finds_the_blobs_leaves_scattered_points_out_and_is_deterministic() {
        let (v, truth) = blobs();
        let labels = hdbscan(&v, Params { min_cluster_size: 10, min_samples: 5, dims: 4 });
        assert_eq!(members(&labels).len(), 3);
        for c in 0..3 {
            let got: std::collections::BTreeSet<_> = (0..v.len()).filter(|&i| truth[i] == Some(c)).map(|i| labels[i]).collect();
            assert_eq!(got.len(), 1, "blob {c} split: {got:?}");
            assert!(got.iter().next().unwrap().is_some());
        }
        let noise = (120..126).filter(|&i| labels[i].is_none()).count();
        assert!(noise >= 4, "scattered points should mostly stay out: {noise}/6");
        assert_eq!(hdbscan(&v, Params { min_cluster_size: 10, min_samples: 5, dims: 4 }), labels);
    }

    #[test]
    fn near_parallel_clusters_merge_and_distinct_ones_do_not() {
        // Two sub-groups of one direction (x) and one of another (y).
        let v = vec![
            vec![1.0, 0.1, 0.0],
            vec![1.0, 0.12, 0.0],
            vec![1.0, -0.1, 0.0],
            vec![1.0, -0.12, 0.0],
            vec![0.0, 1.0, 0.1],
            vec![0.0, 1.0, 0.12],
        ];
        let clusters = || vec![vec![0, 1], vec![2, 3], vec![4, 5]];
        assert_eq!(merge_similar(&v, clusters(), 0.9), vec![vec![0, 1, 2, 3], vec![4, 5]]);
        assert_eq!(merge_similar(&v, clusters(), 0.999).len(), 3, "a strict threshold keeps them apart");
    }

    #[test]
    fn too_few_points_are_all_outliers() {
        assert_eq!(hdbscan(&[vec![1.0, 0.0], vec![0.0, 1.0]], Params::for_size(2)), vec![None, None]);
    }
}
