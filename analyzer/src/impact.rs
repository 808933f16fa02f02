//! Impact per pattern, aggregated in the failure frame: calls, traces, sessions and users
//! affected, cost, latency, severity, first and last seen, and the spread of features and
//! models (what tells a one-off from a systemic problem).

use polars::prelude::*;

use crate::error::AnalyzerError;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impact {
    pub calls: u64,
    pub traces: u64,
    pub sessions: u64,
    pub users: u64,
    pub cost_usd: f64,
    pub mean_latency_ms: f64,
    pub severity: f32,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    /// (value, share) per facet, most frequent first.
    pub features: Vec<(String, f64)>,
    pub models: Vec<(String, f64)>,
}

/// Impact of each pattern `0..n`; `assignment[i]` is failure `i`'s pattern (None = outlier).
pub fn impacts(frame: &DataFrame, assignment: &[Option<usize>], n: usize) -> Result<Vec<Impact>, AnalyzerError> {
    let pattern: Vec<Option<u32>> = assignment.iter().map(|a| a.map(|p| p as u32)).collect();
    let df =
        frame.clone().lazy().with_column(lit(Series::new("pattern".into(), pattern)).alias("pattern")).filter(col("pattern").is_not_null());
    let aggregated = df
        .clone()
        .group_by([col("pattern")])
        .agg([
            len().alias("calls"),
            col("trace_id").n_unique().alias("traces"),
            col("session_id").filter(col("session_id").neq(lit(""))).n_unique().alias("sessions"),
            col("user_id").filter(col("user_id").neq(lit(""))).n_unique().alias("users"),
            col("cost_usd").sum().alias("cost_usd"),
            col("latency_ms").mean().alias("mean_latency_ms"),
            col("severity").mean().alias("severity"),
            col("time_ns").min().alias("first_seen_ns"),
            col("time_ns").max().alias("last_seen_ns"),
        ])
        .sort(["pattern"], Default::default())
        .collect()
        .map_err(AnalyzerError::frame("aggregate pattern impact"))?;
    let mut out = vec![Impact::default(); n];
    let get = |name: &str| aggregated.column(name).map_err(AnalyzerError::frame("read impact"));
    let ids = get("pattern")?.u32().map_err(AnalyzerError::frame("read pattern ids"))?.clone();
    let as_f64 = |name: &str| -> Result<Vec<f64>, AnalyzerError> {
        let c = get(name)?.cast(&DataType::Float64).map_err(AnalyzerError::frame("cast impact"))?;
        Ok(c.f64().map_err(AnalyzerError::frame("read impact"))?.iter().map(|v| v.unwrap_or(0.0)).collect())
    };
    let as_i64 = |name: &str| -> Result<Vec<i64>, AnalyzerError> {
        let c = get(name)?.cast(&DataType::Int64).map_err(AnalyzerError::frame("cast impact"))?;
        Ok(c.i64().map_err(AnalyzerError::frame("read impact"))?.iter().map(|v| v.unwrap_or(0)).collect())
    };
    let (calls, traces, sessions, users) = (as_i64("calls")?, as_i64("traces")?, as_i64("sessions")?, as_i64("users")?);
    let (cost, latency, severity) = (as_f64("cost_usd")?, as_f64("mean_latency_ms")?, as_f64("severity")?);
    let (first, last) = (as_i64("first_seen_ns")?, as_i64("last_seen_ns")?);
    for (row, id) in ids.iter().enumerate() {
        let Some(p) = id.map(|p| p as usize).filter(|&p| p < n) else { continue };
        out[p] = Impact {
            calls: calls[row] as u64,
            traces: traces[row] as u64,
            sessions: sessions[row] as u64,
            users: users[row] as u64,
            cost_usd: cost[row],
            mean_latency_ms: latency[row],
            severity: severity[row] as f32,
            first_seen_ns: first[row],
            last_seen_ns: last[row],
            features: shares(&df, "feature", n)?.swap_remove_or_default(p),
            models: shares(&df, "model", n)?.swap_remove_or_default(p),
        };
    }
    Ok(out)
}

trait SwapRemoveOrDefault<T> {
    fn swap_remove_or_default(self, i: usize) -> T;
}

impl<T: Default> SwapRemoveOrDefault<T> for Vec<T> {
    fn swap_remove_or_default(mut self, i: usize) -> T {
        if i < self.len() { self.swap_remove(i) } else { T::default() }
    }
}

/// Share of each value of `facet` within each pattern, most frequent first.
fn shares(df: &LazyFrame, facet: &str, n: usize) -> Result<Vec<Vec<(String, f64)>>, AnalyzerError> {
    let counts = df
        .clone()
        .group_by([col("pattern"), col(facet)])
        .agg([len().alias("n")])
        .with_column(
            (col("n").cast(DataType::Float64)
                / col("n").sum().over([col("pattern")]).map_err(AnalyzerError::frame("facet share window"))?.cast(DataType::Float64))
            .alias("share"),
        )
        .sort_by_exprs(
            [col("pattern"), col("n"), col(facet)],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
        .collect()
        .map_err(AnalyzerError::frame("facet shares"))?;
    let mut out = vec![Vec::new(); n];
    let p = counts.column("pattern").and_then(|c| c.u32().cloned()).map_err(AnalyzerError::frame("read facet shares"))?;
    let v = counts.column(facet).and_then(|c| c.str().cloned()).map_err(AnalyzerError::frame("read facet shares"))?;
    let s = counts.column("share").and_then(|c| c.f64().cloned()).map_err(AnalyzerError::frame("read facet shares"))?;
    for ((p, v), s) in p.iter().zip(v.iter()).zip(s.iter()) {
        if let (Some(p), Some(v), Some(s)) = (p, v, s)
            && (p as usize) < n
            && !v.is_empty()
        {
            out[p as usize].push((v.to_string(), s));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features;
    use crate::rules::Rules;

    #[test]
    fn impact_counts_distinct_entities_and_shares() {
        let mut fs = Vec::new();
        for (i, (user, feature)) in [("u1", "support"), ("u1", "support"), ("u2", "coding"), ("u3", "support")].iter().enumerate() {
            let mut f = crate::features::tests_support::failure(&format!("t{i}"), &["thumbs_down"]);
            f.call.user_id = user.to_string();
            f.call.session_id = format!("s{}", i / 2);
            f.call.feature = feature.to_string();
            f.call.cost_usd = Some(0.5);
            f.call.start_time = time::OffsetDateTime::from_unix_timestamp(1_000 + i as i64).unwrap();
            fs.push(f);
        }
        let df = features::frame(&fs, &crate::cause::causes(&Rules::defaults(), &fs)).unwrap();
        let out = impacts(&df, &[Some(0), Some(0), Some(0), None], 1).unwrap();
        let i = &out[0];
        assert_eq!((i.calls, i.traces, i.sessions, i.users), (3, 3, 2, 2));
        assert!((i.cost_usd - 1.5).abs() < 1e-9);
        assert_eq!(i.first_seen_ns, 1_000_000_000_000);
        assert_eq!(i.last_seen_ns, 1_002_000_000_000);
        assert_eq!(i.features[0].0, "support");
        assert!((i.features[0].1 - 2.0 / 3.0).abs() < 1e-9);
    }
}
