//! The overview screen: calls, failure rate, each signal's rate and cost over the window, per
//! bucket, and the top patterns.

use super::*;
use flywheel_schemas::failure::Contrast;

#[derive(Row, Deserialize)]
struct CallBucket {
    bucket: i64,
    calls: u64,
    cost: f64,
}

#[derive(Row, Deserialize)]
struct Bucket {
    bucket: i64,
    n: u64,
}

#[derive(Row, Deserialize)]
struct KindBucket {
    bucket: i64,
    kind: String,
    n: u64,
}

pub async fn overview(store: &Store, project: Option<String>, window: Window) -> Result<Overview, StoreError> {
    let now = OffsetDateTime::now_utc();
    let since = now - window.duration();
    let projects = projects(store, since).await?;
    let project = match project {
        Some(p) => p,
        None => projects.first().cloned().unwrap_or_else(|| "default".into()),
    };
    let b = window.bucket_secs();
    let bucket_of = |col: &str| format!("toInt64(toUnixTimestamp(toStartOfInterval({col}, INTERVAL {b} SECOND)))");
    let calls_sql = format!(
        "SELECT {} AS bucket, count() AS calls, sum(ifNull(cost_usd, 0)) AS cost FROM llm_calls FINAL \
         WHERE project_id = ? AND start_time >= fromUnixTimestamp64Nano(?) GROUP BY bucket ORDER BY bucket",
        bucket_of("start_time")
    );
    let failures_sql = format!(
        "SELECT {} AS bucket, count() AS n FROM failures FINAL \
         WHERE project_id = ? AND call_time >= fromUnixTimestamp64Nano(?) GROUP BY bucket ORDER BY bucket",
        bucket_of("call_time")
    );
    let signals_sql = format!(
        "SELECT {} AS bucket, kind, count() AS n FROM signals FINAL \
         WHERE project_id = ? AND timestamp >= fromUnixTimestamp64Nano(?) GROUP BY bucket, kind ORDER BY bucket, kind",
        bucket_of("timestamp")
    );
    // Questions answered two ways: the evidence of `inconsistent` failures, newest first.
    let inconsistent_sql = "SELECT details FROM failures FINAL WHERE project_id = ? AND call_time >= fromUnixTimestamp64Nano(?) \
                            AND has(reasons, 'inconsistent') ORDER BY call_time DESC LIMIT 2000";
    let (calls, failures, signals, top_patterns, inconsistent) = tokio::try_join!(
        read(store, &calls_sql).bind(&project).bind(nanos(since)).fetch_all::<CallBucket>(),
        read(store, &failures_sql).bind(&project).bind(nanos(since)).fetch_all::<Bucket>(),
        read(store, &signals_sql).bind(&project).bind(nanos(since)).fetch_all::<KindBucket>(),
        patterns(store, &project),
        read(store, inconsistent_sql).bind(&project).bind(nanos(since)).fetch_all::<String>(),
    )?;
    let mut inconsistent = Contrast::by_question(inconsistent.iter().filter_map(|d| FailureDetails::parse(d).contrast));
    inconsistent.truncate(INCONSISTENT_SHOWN);
    let mut top_patterns = top_patterns;
    sort_patterns(&mut top_patterns, SortKey::Impact, Impact::Users, false);
    top_patterns.retain(|p| p.row.trend != "resolved");
    top_patterns.truncate(10);
    Ok(Overview {
        project,
        window: Some(window),
        series: build_series(since.unix_timestamp(), now.unix_timestamp(), b, &calls, &failures, &signals),
        top_patterns,
        projects,
        inconsistent,
    })
}

/// Questions answered inconsistently that the overview lists.
const INCONSISTENT_SHOWN: usize = 3;

/// Lays aggregates on the window's buckets (empty buckets are zeros, so that sparklines keep
/// their time scale) and derives the rates.
fn build_series(since: i64, now: i64, b: i64, calls: &[CallBucket], failures: &[Bucket], signals: &[KindBucket]) -> Vec<Series> {
    let first = since.div_euclid(b) * b;
    let n = ((now - first) / b + 1).max(1) as usize;
    let slot = |bucket: i64| -> Option<usize> {
        let i = (bucket - first).div_euclid(b);
        (0..n as i64).contains(&i).then_some(i as usize)
    };
    let mut call_counts = vec![0.0; n];
    let mut cost = vec![0.0; n];
    for c in calls {
        if let Some(i) = slot(c.bucket) {
            call_counts[i] += c.calls as f64;
            cost[i] += c.cost;
        }
    }
    let mut failed = vec![0.0; n];
    for f in failures {
        if let Some(i) = slot(f.bucket) {
            failed[i] += f.n as f64;
        }
    }
    let mut kinds: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for s in signals {
        if let Some(i) = slot(s.bucket) {
            kinds.entry(s.kind.as_str()).or_insert_with(|| vec![0.0; n])[i] += s.n as f64;
        }
    }
    let total_calls: f64 = call_counts.iter().sum();
    let rate = |counts: &[f64]| -> Vec<f64> { counts.iter().zip(&call_counts).map(|(k, c)| if *c > 0.0 { k / c } else { 0.0 }).collect() };
    let overall = |counts: &[f64]| if total_calls > 0.0 { counts.iter().sum::<f64>() / total_calls } else { 0.0 };
    let mut series = vec![
        Series { name: "calls".into(), total: total_calls, values: call_counts.clone(), unit: Unit::Count },
        Series { name: "failure rate".into(), total: overall(&failed), values: rate(&failed), unit: Unit::Rate },
    ];
    for (kind, counts) in &kinds {
        series.push(Series { name: format!("{kind} rate"), total: overall(counts), values: rate(counts), unit: Unit::Rate });
    }
    series.push(Series { name: "cost".into(), total: cost.iter().sum(), values: cost, unit: Unit::Dollars });
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keep_empty_buckets_and_compute_rates() {
        let calls = [CallBucket { bucket: 3600, calls: 10, cost: 0.5 }, CallBucket { bucket: 3 * 3600, calls: 5, cost: 0.25 }];
        let failures = [Bucket { bucket: 3600, n: 2 }];
        let signals = [KindBucket { bucket: 3 * 3600, kind: "thumbs_down".into(), n: 1 }];
        let s = build_series(3600, 3 * 3600 + 10, 3600, &calls, &failures, &signals);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["calls", "failure rate", "thumbs_down rate", "cost"]);
        assert_eq!(s[0].values, [10.0, 0.0, 5.0]);
        assert_eq!(s[1].values, [0.2, 0.0, 0.0]);
        assert!((s[1].total - 2.0 / 15.0).abs() < 1e-9);
        assert_eq!(s[2].values, [0.0, 0.0, 0.2]);
        assert_eq!(s[3].total, 0.75);
    }
}
