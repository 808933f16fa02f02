//! Failures into groups by cause: the step between [`crate::cause`] (what each failure's cause
//! is, when the system names it) and [`crate::pattern`] (what a group shows a reviewer).
//!
//! 1. Failures with a cause key are grouped by it.
//! 2. Failures only users flagged are clustered by what went wrong in the answer (HDBSCAN on
//!    their text vectors, clusters whose centroids are near-parallel merged), never by the
//!    reactions they got: users react alike to different failures.
//! 3. A text cluster must stand out from healthy traffic: users also flag a small share of
//!    good answers, and at volume the good answers to a frequent question make a dense cluster
//!    of such noise. A cluster is kept when its members are a clearly larger share of the
//!    traffic that looks like them than users flag anyway (its *lift* over the base rate).
//! 4. One cause reached through different evidence is one pattern: a users-only cluster or
//!    failure whose text lies as close to a named behaviour (refusals a rule recognised) as
//!    that behaviour's own members do joins it, and two named behaviours with such texts join
//!    each other. Only *open* behaviours take part — those a rule recognises in free text and
//!    so partly misses (refusals, a language) — never one checked as a fact on every call: a
//!    failure whose finish reason is not `length` is not a truncation, however alike the
//!    texts. And only behaviours whose texts agree (coherent groups): a group of refusals of
//!    every kind of request has no text to resemble.
//!
//! Pure and deterministic: indices in, member lists (sorted) out.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::cause::{Cause, Lane};
use crate::cluster::{self, Params};
use crate::represent::{centroid, cosine};

/// The vectors grouping works with, in one representation.
pub struct Represented {
    /// Per failure: its text vector, for the failures only users flagged and a sample of the
    /// members of each behaviour cause (None for the others).
    pub failures: Vec<Option<Vec<f32>>>,
    /// A sample of the calls that did not fail, and how many such calls there are in all.
    pub healthy: Vec<Vec<f32>>,
    pub healthy_total: usize,
    /// Text clusters whose centroids are at least this similar are one failure.
    pub merge: f32,
}

/// A group of failures: its cause key (empty for a text cluster) and members.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub key: String,
    pub members: Vec<usize>,
    /// Members that only users flagged and that joined this cause by their text.
    pub joined: usize,
}

/// Figures of one grouping, for the run's log and the benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub text_clusters: usize,
    /// Text clusters dropped because users flag the traffic they resemble as often anyway.
    pub dropped_as_noise: usize,
    pub joined_clusters: usize,
    pub joined_failures: usize,
    pub merged_causes: usize,
    /// Members of kept text clusters left out because their nearest texts are healthy answers.
    pub trimmed_as_noise: usize,
}

/// Members of a coherent group lie this much closer to its centre than the average pair of
/// texts does to each other (the space's background similarity).
fn coherence_floor(background: f32) -> f32 {
    (2.0 * background).max(background + 0.2)
}

/// A text cluster is a pattern when users flag the traffic that looks like it at least this
/// many times as often as they flag traffic in general.
const MIN_LIFT: f32 = 2.0;

/// Nearest texts read to tell whether one flagged text is like its cluster or like the answers
/// nobody flagged ([`Neighbourhood::like_failures`]).
const NEIGHBOURS: usize = 10;
/// At most this many texts of a group stand for it in those neighbourhoods (evenly strided).
const GROUP_SAMPLE: usize = 1000;

/// The texts one flagged text is compared with: a group's (all, or a strided sample standing
/// for all) and the sample of healthy answers, each weighted by how many texts it stands for.
struct Neighbourhood<'a> {
    group: Vec<&'a Vec<f32>>,
    group_weight: f32,
    healthy: &'a [Vec<f32>],
    healthy_weight: f32,
    /// The lowest share of flagged texts among the neighbours for a text to count as a failure.
    min_rate: f32,
}

impl<'a> Neighbourhood<'a> {
    fn new(group: &[&'a Vec<f32>], rep: &'a Represented, min_rate: f32) -> Neighbourhood<'a> {
        let step = group.len().div_ceil(GROUP_SAMPLE).max(1);
        let sample: Vec<&Vec<f32>> = group.iter().step_by(step).copied().collect();
        Neighbourhood {
            group_weight: group.len() as f32 / sample.len().max(1) as f32,
            group: sample,
            healthy: &rep.healthy,
            healthy_weight: rep.healthy_total as f32 / rep.healthy.len().max(1) as f32,
            min_rate,
        }
    }

    /// Whether `v`'s nearest texts are mostly flagged ones: a flagged answer that reads like
    /// the good answers around it (a correct refund answer someone thumbed down) is noise in
    /// the cluster it fell into, however close it lies to its centre. Itself excluded.
    fn like_failures(&self, v: &Vec<f32>) -> bool {
        if self.healthy.is_empty() {
            return true;
        }
        let mut near: Vec<(f32, bool)> = self
            .group
            .iter()
            .filter(|g| !std::ptr::eq::<Vec<f32>>(**g, v))
            .map(|g| (cosine(g, v), true))
            .chain(self.healthy.iter().map(|h| (cosine(h, v), false)))
            .collect();
        let k = NEIGHBOURS.min(near.len());
        if k == 0 {
            return true;
        }
        near.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        let (flagged, healthy) =
            near[..k].iter().fold(
                (0.0f32, 0.0f32),
                |(f, h), &(_, is_group)| {
                    if is_group { (f + self.group_weight, h) } else { (f, h + self.healthy_weight) }
                },
            );
        flagged / (flagged + healthy).max(f32::MIN_POSITIVE) >= self.min_rate
    }
}

struct Centre {
    centre: Vec<f32>,
    /// Median cosine of the members to the centre.
    radius: f32,
}

fn centre_of(vectors: &[&Vec<f32>]) -> Centre {
    let owned: Vec<Vec<f32>> = vectors.iter().map(|v| (*v).clone()).collect();
    let idx: Vec<usize> = (0..owned.len()).collect();
    let centre = centroid(&owned, &idx);
    let mut cos: Vec<f32> = owned.iter().map(|v| cosine(v, &centre)).collect();
    cos.sort_by(f32::total_cmp);
    let radius = cos.get(cos.len() / 2).copied().unwrap_or(0.0);
    Centre { centre, radius }
}

/// Groups `causes` (one per failure) into patterns of at least `min_size` failures.
pub fn by_cause(causes: &[Cause], rep: &Represented, min_size: usize) -> (Vec<Group>, Stats) {
    let mut stats = Stats::default();
    let mut keyed: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut open: BTreeMap<&str, bool> = BTreeMap::new();
    let mut text_only: Vec<usize> = Vec::new();
    for (i, c) in causes.iter().enumerate() {
        if c.key.is_empty() {
            if rep.failures[i].is_some() {
                text_only.push(i);
            }
        } else {
            keyed.entry(&c.key).or_default().push(i);
            // A key is open when any member's finding was (an explained one among checked ones).
            *open.entry(&c.key).or_default() |= c.open;
        }
    }

    // 2. Text clusters of the failures only users flagged.
    let vectors: Vec<Vec<f32>> = text_only.iter().map(|&i| rep.failures[i].clone().expect("represented")).collect();
    let params = Params { min_cluster_size: min_size, ..Params::for_size(vectors.len()) };
    let labels = cluster::hdbscan(&vectors, params);
    let clusters = cluster::merge_similar(&vectors, cluster::members(&labels), rep.merge);
    stats.text_clusters = clusters.len();

    // 3. Lift over what users flag anyway: of the cluster, then of each member.
    let flagged = text_only.len() as f32;
    let base_rate = flagged / (flagged + rep.healthy_total as f32).max(1.0);
    let min_rate = (MIN_LIFT * base_rate).min(0.5);
    let scale = rep.healthy_total as f32 / rep.healthy.len().max(1) as f32;
    let mut kept: Vec<Vec<usize>> = Vec::new();
    for local in clusters {
        let members: Vec<&Vec<f32>> = local.iter().map(|&k| &vectors[k]).collect();
        let c = centre_of(&members);
        let near_members = members.iter().filter(|v| cosine(v, &c.centre) >= c.radius).count() as f32;
        let near_healthy = rep.healthy.iter().filter(|v| cosine(v, &c.centre) >= c.radius).count() as f32 * scale;
        let rate = near_members / (near_members + near_healthy).max(1.0);
        if !(rep.healthy.is_empty() || rate >= min_rate) {
            stats.dropped_as_noise += 1;
            continue;
        }
        let around = Neighbourhood::new(&members, rep, min_rate);
        let like: Vec<bool> = members.par_iter().map(|v| around.like_failures(v)).collect();
        let trimmed: Vec<usize> = local.iter().zip(&like).filter(|(_, like)| **like).map(|(&k, _)| text_only[k]).collect();
        stats.trimmed_as_noise += local.len() - trimmed.len();
        if trimmed.len() >= min_size {
            kept.push(trimmed);
        } else {
            stats.dropped_as_noise += 1;
        }
    }

    // 4. Joins by text to coherent behaviour causes.
    let all: Vec<&Vec<f32>> = rep.failures.iter().flatten().collect();
    // |mean|² of unit vectors is their mean pairwise cosine: the space's background.
    let background = match all.first() {
        None => 0.0,
        Some(first) => {
            let mut mean = vec![0f32; first.len()];
            for v in &all {
                mean.iter_mut().zip(v.iter()).for_each(|(a, b)| *a += b / all.len() as f32);
            }
            mean.iter().map(|x| x * x).sum::<f32>()
        }
    };
    let floor = coherence_floor(background);
    let mut centres: Vec<(String, Centre)> = Vec::new();
    for (key, members) in &keyed {
        if crate::cause::lane_of_key(key) != Lane::Behaviour || !open[key] {
            continue;
        }
        let sampled: Vec<&Vec<f32>> = members.iter().filter_map(|&i| rep.failures[i].as_ref()).collect();
        if sampled.len() < min_size.max(3) {
            continue;
        }
        let c = centre_of(&sampled);
        if c.radius >= floor {
            centres.push((key.to_string(), c));
        }
    }
    // Named behaviours with texts alike are one cause, under the larger one's key.
    let mut rename: BTreeMap<String, String> = BTreeMap::new();
    for a in 0..centres.len() {
        for b in a + 1..centres.len() {
            let (ka, ca) = &centres[a];
            let (kb, cb) = &centres[b];
            if cosine(&ca.centre, &cb.centre) >= ca.radius.max(cb.radius) {
                let (big, small) = if keyed[ka.as_str()].len() >= keyed[kb.as_str()].len() { (ka, kb) } else { (kb, ka) };
                let target = rename.get(big).cloned().unwrap_or_else(|| big.clone());
                rename.entry(small.clone()).or_insert(target);
            }
        }
    }
    let mut groups: BTreeMap<String, (Vec<usize>, usize)> = BTreeMap::new();
    for (key, members) in &keyed {
        let target = rename.get(*key).cloned().unwrap_or_else(|| key.to_string());
        groups.entry(target).or_default().0.extend(members);
    }
    stats.merged_causes = rename.len();
    let nearest = |v: &Vec<f32>| -> Option<&str> {
        centres
            .iter()
            .filter(|(k, _)| !rename.contains_key(k))
            .map(|(k, c)| (k, cosine(v, &c.centre), c.radius))
            .filter(|(_, cos, radius)| cos >= radius)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(k, _, _)| k.as_str())
    };
    let mut text_groups: Vec<Vec<usize>> = Vec::new();
    let mut clustered = vec![false; causes.len()];
    for members in kept {
        let vs: Vec<&Vec<f32>> = members.iter().map(|&i| rep.failures[i].as_ref().expect("represented")).collect();
        match nearest(&centre_of(&vs).centre) {
            Some(key) => {
                let g = groups.get_mut(key).expect("a centre is a group");
                g.0.extend(&members);
                g.1 += members.len();
                stats.joined_clusters += 1;
                stats.joined_failures += members.len();
            }
            None => text_groups.push(members.clone()),
        }
        members.iter().for_each(|&i| clustered[i] = true);
    }
    // A lone flagged text joins a cause only when it reads like the cause's texts rather than
    // like the answers nobody flagged.
    let neighbourhoods: BTreeMap<&str, Neighbourhood> = centres
        .iter()
        .map(|(key, _)| {
            let texts: Vec<&Vec<f32>> = keyed[key.as_str()].iter().filter_map(|&i| rep.failures[i].as_ref()).collect();
            (key.as_str(), Neighbourhood::new(&texts, rep, min_rate))
        })
        .collect();
    for &i in &text_only {
        if clustered[i] {
            continue;
        }
        let v = rep.failures[i].as_ref().expect("represented");
        if let Some(key) = nearest(v).filter(|key| neighbourhoods[key].like_failures(v)) {
            let g = groups.get_mut(key).expect("a centre is a group");
            g.0.push(i);
            g.1 += 1;
            stats.joined_failures += 1;
        }
    }

    let mut out: Vec<Group> = groups
        .into_iter()
        .filter(|(_, (m, _))| m.len() >= min_size)
        .map(|(key, (mut members, joined))| {
            members.sort_unstable();
            Group { key, members, joined }
        })
        .collect();
    out.extend(text_groups.into_iter().map(|mut members| {
        members.sort_unstable();
        Group { key: String::new(), members, joined: 0 }
    }));
    out.sort_by(|a, b| b.members.len().cmp(&a.members.len()).then(a.key.cmp(&b.key)).then(a.members[0].cmp(&b.members[0])));
    (out, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(key: &str) -> Cause {
        let open = ["refusal", "language_mismatch"].contains(&key);
        Cause { key: key.into(), lane: crate::cause::lane_of_key(key), open }
    }

    /// A unit vector near axis `axis` of 8, with a small deterministic wobble.
    fn near(axis: usize, k: usize) -> Vec<f32> {
        let mut v = vec![0.02f32; 8];
        v[axis] = 1.0;
        v[(axis + 1 + k % 5) % 8] += 0.15 * ((k % 3) as f32);
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn a_flagged_text_among_healthy_answers_is_not_like_its_cluster() {
        // The cluster: 20 flagged texts near axis 3. Healthy traffic: answers near axis 5 and,
        // as often, answers like `good` (between axes 3 and 4), which users also flag now and
        // then: such a flagged copy sits in the cluster's reach but among healthy answers.
        let unit = |v: Vec<f32>| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let good = |k: usize| {
            let mut v = near(3, k);
            v[4] += 0.9;
            unit(v)
        };
        let cluster: Vec<Vec<f32>> = (0..20).map(|k| near(3, k)).collect();
        let healthy: Vec<Vec<f32>> = (0..400).map(|k| if k % 2 == 0 { near(5, k) } else { good(k) }).collect();
        let rep = Represented { failures: vec![], healthy, healthy_total: 2000, merge: 0.95 };
        let flagged_good = good(7);
        let mut members: Vec<&Vec<f32>> = cluster.iter().collect();
        members.push(&flagged_good);
        let around = Neighbourhood::new(&members, &rep, 0.2);
        assert!(cluster.iter().all(|v| around.like_failures(v)), "the cluster's own texts are failures");
        assert!(!around.like_failures(&flagged_good), "a flagged healthy-looking answer is noise");
        // Without healthy traffic to compare with, every text is kept.
        let none = Represented { failures: vec![], healthy: vec![], healthy_total: 0, merge: 0.95 };
        assert!(Neighbourhood::new(&members, &none, 0.2).like_failures(&flagged_good));
    }

    #[test]
    fn named_causes_text_clusters_noise_and_joins() {
        let mut causes = Vec::new();
        let mut vectors: Vec<Option<Vec<f32>>> = Vec::new();
        // 30 refusals a rule named (texts near axis 0), 20 a user-only refusal cluster near
        // axis 0 too, 25 user-only failures about something else (axis 3), 20 user-only
        // failures near axis 5 where healthy traffic is dense (noise), 30 rate limits.
        for k in 0..30 {
            causes.push(cause("refusal"));
            vectors.push(Some(near(0, k)));
        }
        for k in 0..20 {
            causes.push(cause(""));
            vectors.push(Some(near(0, k + 7)));
        }
        for k in 0..25 {
            causes.push(cause(""));
            vectors.push(Some(near(3, k)));
        }
        for k in 0..20 {
            causes.push(cause(""));
            vectors.push(Some(near(5, k)));
        }
        for _ in 0..30 {
            causes.push(cause("error · model · rate_limit"));
            vectors.push(None);
        }
        // Healthy traffic: 2,000 calls, sampled 400, most of them like axis 5.
        let healthy: Vec<Vec<f32>> = (0..400).map(|k| near(if k % 4 == 0 { 6 } else { 5 }, k)).collect();
        let rep = Represented { failures: vectors, healthy, healthy_total: 2000, merge: 0.95 };
        let (groups, stats) = by_cause(&causes, &rep, 5);
        let keys: Vec<(&str, usize, usize)> = groups.iter().map(|g| (g.key.as_str(), g.members.len(), g.joined)).collect();
        assert_eq!(keys, vec![("refusal", 50, 20), ("error · model · rate_limit", 30, 0), ("", 25, 0)], "{stats:?}");
        assert_eq!(stats.dropped_as_noise, 1);
        assert_eq!(by_cause(&causes, &rep, 5).0, groups, "deterministic");
    }
}
