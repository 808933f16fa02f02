//! Scoring patterns against labelled failure modes (the simulator's ground truth): adjusted
//! Rand index, normalised mutual information, and which modes came out as distinct patterns.
//! Used by the end-to-end tests and `flywheel bench analyze`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A truth row split over patterns: (row, columns with their counts, unclustered).
pub type Split = (usize, Cells, usize);

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

/// Cells of one row or column of a confusion table: (index, count).
pub type Cells = Vec<(usize, usize)>;

/// The confusion table of a run: truth labels (rows) against patterns (columns), counting items.
/// Every merge (a column holding several rows) and split (a row spread over several columns or
/// left unclustered) shows in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    /// Distinct truth labels, sorted.
    pub rows: Vec<String>,
    /// Patterns holding at least one item, ordered along the diagonal: by the row that owns most
    /// of each, then by size.
    pub columns: Vec<String>,
    /// `counts[r][c]`: items of row `r` in column `c`.
    pub counts: Vec<Vec<usize>>,
    /// Items of each row in no pattern.
    pub unclustered: Vec<usize>,
}

/// The confusion table of `truth` against `predicted` (`None`: in no pattern).
pub fn confusion(truth: &[String], predicted: &[Option<String>]) -> Confusion {
    let rows: Vec<String> = truth.iter().collect::<BTreeSet<_>>().into_iter().cloned().collect();
    let row_of: BTreeMap<&str, usize> = rows.iter().enumerate().map(|(i, r)| (r.as_str(), i)).collect();
    let mut by_pattern: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut unclustered = vec![0; rows.len()];
    for (t, p) in truth.iter().zip(predicted) {
        let r = row_of[t.as_str()];
        match p {
            Some(p) => by_pattern.entry(p.as_str()).or_insert_with(|| vec![0; rows.len()])[r] += 1,
            None => unclustered[r] += 1,
        }
    }
    let mut columns: Vec<(usize, usize, &str)> = by_pattern
        .iter()
        .map(|(p, counts)| {
            // The owning row: most items, the first row on ties.
            let owner = counts.iter().enumerate().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0))).map_or(0, |(i, _)| i);
            (owner, counts.iter().sum::<usize>(), *p)
        })
        .collect();
    columns.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    let counts = (0..rows.len()).map(|r| columns.iter().map(|(_, _, p)| by_pattern[p][r]).collect()).collect();
    Confusion { rows, columns: columns.iter().map(|(_, _, p)| p.to_string()).collect(), counts, unclustered }
}

impl Confusion {
    /// Whether `n` items of a group of `total` count as a real share of it, not noise.
    fn notable(n: usize, total: usize) -> bool {
        n >= 3 && n * 10 >= total
    }

    /// Columns that hold a notable share of several rows other than `ignore`: (column, rows
    /// with their counts).
    pub fn merges(&self, ignore: &str) -> Vec<(usize, Cells)> {
        (0..self.columns.len())
            .filter_map(|c| {
                let total: usize = self.counts.iter().map(|row| row[c]).sum();
                let rows: Cells = (0..self.rows.len())
                    .filter(|&r| self.rows[r] != ignore && Self::notable(self.counts[r][c], total))
                    .map(|r| (r, self.counts[r][c]))
                    .collect();
                (rows.len() > 1).then_some((c, rows))
            })
            .collect()
    }

    /// Rows other than `ignore` spread over several columns (or a column and the unclustered):
    /// (row, columns with their counts, unclustered).
    pub fn splits(&self, ignore: &str) -> Vec<Split> {
        (0..self.rows.len())
            .filter(|&r| self.rows[r] != ignore)
            .filter_map(|r| {
                let total = self.counts[r].iter().sum::<usize>() + self.unclustered[r];
                let cols: Cells =
                    (0..self.columns.len()).filter(|&c| Self::notable(self.counts[r][c], total)).map(|c| (c, self.counts[r][c])).collect();
                let parts = cols.len() + usize::from(Self::notable(self.unclustered[r], total));
                (parts > 1).then_some((r, cols, self.unclustered[r]))
            })
            .collect()
    }

    /// The table as text: columns `P1…Pn` with a legend naming each pattern (`name` gives its
    /// label), `·` for zero, then the merges and splits in words. `ignore` is the row of
    /// healthy items, left out of the merges and splits.
    pub fn render(&self, name: &dyn Fn(&str) -> String, ignore: &str) -> String {
        let width = self.rows.iter().map(|r| r.chars().count()).max().unwrap_or(4).max(4);
        let cell = |n: usize| if n == 0 { "·".to_string() } else { n.to_string() };
        let col_w: Vec<usize> = (0..self.columns.len())
            .map(|c| {
                let widest = self.counts.iter().map(|row| cell(row[c]).chars().count()).max().unwrap_or(1);
                widest.max(format!("P{}", c + 1).len())
            })
            .collect();
        let uncl_w = self.unclustered.iter().map(|&n| cell(n).chars().count()).max().unwrap_or(1).max(11);
        let mut out = format!("{:width$} |", "truth \\ pattern");
        for (c, w) in col_w.iter().enumerate() {
            out.push_str(&format!(" {:>w$}", format!("P{}", c + 1)));
        }
        out.push_str(&format!(" | {:>uncl_w$}\n", "unclustered"));
        for (r, row) in self.rows.iter().enumerate() {
            out.push_str(&format!("{row:width$} |"));
            for (c, w) in col_w.iter().enumerate() {
                out.push_str(&format!(" {:>w$}", cell(self.counts[r][c])));
            }
            out.push_str(&format!(" | {:>uncl_w$}\n", cell(self.unclustered[r])));
        }
        for (c, p) in self.columns.iter().enumerate() {
            out.push_str(&format!("P{} = {}\n", c + 1, name(p)));
        }
        for (c, rows) in self.merges(ignore) {
            let parts: Vec<String> = rows.iter().map(|(r, n)| format!("{} {n}", self.rows[*r])).collect();
            out.push_str(&format!("merge: P{} holds {}\n", c + 1, parts.join(" + ")));
        }
        for (r, cols, uncl) in self.splits(ignore) {
            let mut parts: Vec<String> = cols.iter().map(|(c, n)| format!("P{} {n}", c + 1)).collect();
            if uncl > 0 {
                parts.push(format!("unclustered {uncl}"));
            }
            out.push_str(&format!("split: {} over {}\n", self.rows[r], parts.join(", ")));
        }
        out
    }
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
    fn confusion_counts_every_merge_and_split() {
        let truth = s(&["a", "a", "a", "a", "b", "b", "b", "c", "c", "c", "c", "healthy", "healthy"]);
        let p = |x: &str| Some(x.to_string());
        let predicted = vec![p("x"), p("x"), p("x"), None, p("x"), p("x"), p("x"), p("y"), p("y"), p("z"), p("z"), p("y"), None];
        let c = confusion(&truth, &predicted);
        assert_eq!(c.rows, s(&["a", "b", "c", "healthy"]));
        // x is owned by a (3 of a vs 3 of b: the first row on ties), then c's two columns.
        assert_eq!(c.columns, s(&["x", "y", "z"]));
        assert_eq!(c.counts, vec![vec![3, 0, 0], vec![3, 0, 0], vec![0, 2, 2], vec![0, 1, 0]]);
        assert_eq!(c.unclustered, vec![1, 0, 0, 1]);
        // Every item is counted once.
        let total: usize = c.counts.iter().flatten().sum::<usize>() + c.unclustered.iter().sum::<usize>();
        assert_eq!(total, truth.len());
        assert_eq!(c.merges("healthy"), vec![(0, vec![(0, 3), (1, 3)])]);
        // Splits below 3 items are noise: c's two columns of 2 are not reported, a's lone outlier neither.
        assert!(c.splits("healthy").is_empty());
        let text = c.render(&|p| format!("pattern {p}"), "healthy");
        assert!(text.contains("P1 = pattern x") && text.contains("merge: P1 holds a 3 + b 3"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("healthy") && l.contains('·')), "{text}");
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
