//! Pattern identity across runs. A run's clusters are matched to the previous patterns: by
//! shared members first (the same failures seen again), then by the same explicit signature,
//! then by text centroid; the best pairs win, each pattern once. Unmatched clusters get a new
//! id derived from their content (the same data gives the same id), unmatched old patterns
//! are resolved. Triage decisions live apart (pattern_triage) and are never touched here.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::represent::cosine;

/// A cluster of this run, as tracking sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub signature: String,
    pub members: BTreeSet<(String, String)>,
    pub centroid: Vec<f32>,
    pub representation: String,
}

/// A pattern of an earlier run.
#[derive(Debug, Clone)]
pub struct Previous {
    pub pattern_id: String,
    pub signature: String,
    pub members: BTreeSet<(String, String)>,
    pub centroid: Vec<f32>,
    pub representation: String,
    pub size: u64,
    pub resolved: bool,
}

/// Text centroids this close describe the same failure.
pub const CENTROID_MATCH: f32 = 0.8;

/// For each candidate, the previous pattern it continues (index into `previous`).
pub fn match_patterns(candidates: &[Candidate], previous: &[Previous]) -> Vec<Option<usize>> {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (ci, c) in candidates.iter().enumerate() {
        for (pi, p) in previous.iter().enumerate() {
            let shared = c.members.intersection(&p.members).count();
            let jaccard = if shared == 0 { 0.0 } else { shared as f32 / c.members.union(&p.members).count() as f32 };
            let same_signature = c.signature == p.signature;
            let cos = if c.representation == p.representation && !c.centroid.is_empty() && c.centroid.len() == p.centroid.len() {
                cosine(&c.centroid, &p.centroid)
            } else {
                0.0
            };
            // Same named failure, or the same text failure; shared members say so too, but
            // not across different explicit signatures.
            let eligible =
                if !c.signature.is_empty() || !p.signature.is_empty() { same_signature } else { jaccard >= 0.3 || cos >= CENTROID_MATCH };
            if eligible {
                pairs.push((2.0 * jaccard + cos + if same_signature { 0.5 } else { 0.0 }, ci, pi));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut out = vec![None; candidates.len()];
    let mut taken = vec![false; previous.len()];
    for (_, ci, pi) in pairs {
        if out[ci].is_none() && !taken[pi] {
            out[ci] = Some(pi);
            taken[pi] = true;
        }
    }
    out
}

/// A stable id for a new pattern: its project, signature and first member.
pub fn new_id(project: &str, candidate: &Candidate) -> String {
    let mut h = Sha256::new();
    h.update(project.as_bytes());
    h.update([0]);
    h.update(candidate.signature.as_bytes());
    if let Some((t, s)) = candidate.members.iter().next() {
        h.update([0]);
        h.update(t.as_bytes());
        h.update(s.as_bytes());
    }
    format!("pat_{}", &hex::encode(h.finalize())[..12])
}

/// Trend from the share of calls a pattern takes now and in its previous run.
pub fn trend(previous: Option<&Previous>, size: u64, calls: u64, previous_calls: u64) -> &'static str {
    let Some(p) = previous else { return "new" };
    if p.resolved || p.size == 0 {
        return "growing";
    }
    let now = size as f64 / calls.max(1) as f64;
    let before = p.size as f64 / previous_calls.max(1) as f64;
    if now > before * 1.25 {
        "growing"
    } else if now < before * 0.8 {
        "shrinking"
    } else {
        "stable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(range: std::ops::Range<u32>) -> BTreeSet<(String, String)> {
        range.map(|i| (format!("t{i:04}"), "s".to_string())).collect()
    }

    fn cand(signature: &str, members: std::ops::Range<u32>, centroid: Vec<f32>) -> Candidate {
        Candidate { signature: signature.into(), members: keys(members), centroid, representation: "m".into() }
    }

    fn prev(id: &str, signature: &str, members: std::ops::Range<u32>, centroid: Vec<f32>) -> Previous {
        Previous {
            pattern_id: id.into(),
            signature: signature.into(),
            size: members.len() as u64,
            members: keys(members),
            centroid,
            representation: "m".into(),
            resolved: false,
        }
    }

    #[test]
    fn a_pattern_keeps_its_id_when_its_members_change_a_little() {
        let previous = vec![prev("pat_a", "", 0..50, vec![1.0, 0.0]), prev("pat_b", "", 100..150, vec![0.0, 1.0])];
        // The same text failures plus a few new ones, minus a few old ones.
        let candidates = vec![cand("", 105..160, vec![0.1, 0.99]), cand("", 5..58, vec![0.98, 0.05])];
        assert_eq!(match_patterns(&candidates, &previous), vec![Some(1), Some(0)]);
    }

    #[test]
    fn next_weeks_failures_match_by_signature_or_centroid() {
        let previous = vec![prev("pat_len", "finish_reason:length", 0..50, vec![]), prev("pat_txt", "", 100..150, vec![0.6, 0.8])];
        let candidates = vec![cand("", 900..950, vec![0.62, 0.78]), cand("finish_reason:length", 500..520, vec![])];
        assert_eq!(match_patterns(&candidates, &previous), vec![Some(1), Some(0)]);
    }

    #[test]
    fn a_new_mode_gets_a_new_id_and_ids_are_stable() {
        let previous = vec![prev("pat_len", "finish_reason:length", 0..50, vec![]), prev("pat_txt", "", 100..150, vec![1.0, 0.0])];
        let new_mode = cand("error_status · RateLimitError", 0..30, vec![]);
        let other_text = cand("", 300..340, vec![0.0, 1.0]);
        assert_eq!(match_patterns(&[new_mode.clone(), other_text.clone()], &previous), vec![None, None]);
        assert_eq!(new_id("p", &new_mode), new_id("p", &new_mode.clone()));
        assert_ne!(new_id("p", &new_mode), new_id("p", &other_text));
        assert_ne!(new_id("p", &new_mode), new_id("q", &new_mode));
        assert!(new_id("p", &new_mode).starts_with("pat_"));
    }

    #[test]
    fn trends_compare_shares_of_calls() {
        let p = prev("x", "", 0..50, vec![]);
        assert_eq!(trend(None, 10, 100, 100), "new");
        assert_eq!(trend(Some(&p), 100, 1000, 1000), "growing");
        assert_eq!(trend(Some(&p), 20, 1000, 1000), "shrinking");
        assert_eq!(trend(Some(&p), 100, 2000, 1000), "stable", "twice the traffic, same share");
        let gone = Previous { resolved: true, size: 0, ..p };
        assert_eq!(trend(Some(&gone), 5, 100, 100), "growing", "a resolved pattern is back");
    }
}
