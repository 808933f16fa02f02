//! `flywheel bench analyze`: the analyzer's quality and cost on the simulator's ground truth.
//! For each seed, a scenario's seeded traffic goes through a collector in this process into a
//! fresh database, then one analyzer run per representation (the embedding model when
//! installed, and lexical); each prints its timings per stage, peak memory, ARI, NMI, the modes
//! recovered, the share of healthy interactions put in patterns and the confusion table of
//! modes against patterns. The last table has every seed's scores, then their min and median:
//! a change is judged on the worst seed as much as on the typical one.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use flywheel_analyzer::embed::Embedder;
use flywheel_analyzer::run::{self, Options, Silent};
use flywheel_analyzer::score;
use flywheel_schemas::config::StorageConfig;
use flywheel_schemas::migrate::{self, MigrateOptions};
use flywheel_schemas::store;
use flywheel_simulator::Scenario;

use crate::demo::LocalCollector;

pub struct BenchAnalyze {
    pub scenario: Scenario,
    /// Interactions per seed; `None`: the scenario's default ([`default_volume`]).
    pub interactions: Option<usize>,
    pub failure_rate: Option<f64>,
    /// The first seed; seeds run `seed`, `seed + 1`, …
    pub seed: u64,
    pub seeds: u64,
    pub representation: Representations,
    pub database: Option<String>,
    /// Copies of the simulated traffic to analyse (1 = as simulated); see [`replicate`].
    pub copies: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Representations {
    Both,
    Model,
    Lexical,
}

/// Interactions and failure rate per seed when not given. The catalogue's volume gives every one
/// of its 26 modes at least ~40 failing interactions per seed and runs in a few minutes on 2
/// cores; the default scenario keeps the volume its published figures were measured at.
pub fn default_volume(scenario: Scenario) -> (usize, f64) {
    match scenario {
        Scenario::Default => (20_000, 0.5),
        Scenario::Catalogue => (7_000, 0.3),
    }
}

/// A memory figure of this process from /proc/self/status (Linux), in MB.
fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// Peak resident memory of this process since the last reset.
fn peak_rss_mb() -> Option<f64> {
    status_mb("VmHWM:")
}

/// Resets the peak to the current resident memory (Linux ≥ 4.0), which it returns in MB: what
/// the process already held (the simulation's, when it ran in this process) is in the peak too.
fn reset_peak_rss() -> f64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_mb("VmRSS:").unwrap_or(0.0)
}

/// The scores of one analyzer run on one seed's traffic.
#[derive(Debug, Clone)]
struct Scores {
    seed: u64,
    representation: String,
    interactions: usize,
    /// Failing interactions in the truth.
    failing: usize,
    /// Failures the analyzer detected.
    detected: usize,
    patterns: u64,
    ari: f64,
    nmi: f64,
    recovered: usize,
    modes: usize,
    healthy_share: f64,
}

/// The label rows of the confusion table give to healthy interactions.
const HEALTHY: &str = "healthy";

pub async fn run(bench: BenchAnalyze) -> Result<ExitCode> {
    let cfg = StorageConfig::load()?;
    let embedder = match Embedder::locate().filter(|_| bench.representation != Representations::Lexical) {
        Some(dir) => Some(tokio::task::spawn_blocking(move || Embedder::load(&dir)).await??),
        None => None,
    };
    if bench.representation == Representations::Model && embedder.is_none() {
        anyhow::bail!(
            "the embedding model is not installed in {}: run ./setup.sh --only model",
            flywheel_analyzer::embed::model_dir().display()
        );
    }
    let (interactions, failure_rate) = default_volume(bench.scenario);
    let interactions = bench.interactions.unwrap_or(interactions);
    let failure_rate = bench.failure_rate.unwrap_or(failure_rate);
    println!(
        "bench analyze: scenario {}, seeds {}..={}, {interactions} interactions per seed, failure rate {failure_rate}",
        bench.scenario,
        bench.seed,
        bench.seed + bench.seeds - 1
    );
    let mut all: Vec<Scores> = Vec::new();
    for seed in bench.seed..bench.seed + bench.seeds {
        let database = match &bench.database {
            Some(name) if bench.seeds == 1 => name.clone(),
            Some(name) => format!("{name}_s{seed}"),
            None => format!("flywheel_bench_analyze_{}_s{seed}", std::process::id()),
        };
        println!("\n## seed {seed} ({} scenario, database {database})\n", bench.scenario);
        all.extend(one_seed(&cfg, &bench, seed, &database, interactions, failure_rate, embedder.as_ref()).await?);
    }
    print!("\n{}", summary(&all));
    Ok(ExitCode::SUCCESS)
}

/// Simulates one seed into `database` (or reuses the traffic kept there), analyses it with each
/// representation, prints the run table and the confusion tables, and returns the scores.
async fn one_seed(
    cfg: &StorageConfig,
    bench: &BenchAnalyze,
    seed: u64,
    database: &str,
    interactions: usize,
    failure_rate: f64,
    embedder: Option<&Embedder>,
) -> Result<Vec<Scores>> {
    let mut cfg = cfg.clone();
    let keep = bench.database.is_some();
    cfg.clickhouse.database = database.to_string();
    let store = store::open(&cfg).await?;
    migrate::migrate(&store, &MigrateOptions { retention: cfg.retention.clone(), ..Default::default() }).await?;
    let project = "bench";
    let truth_path = std::env::temp_dir().join(format!("{database}.truth.jsonl"));
    let stored: Vec<u64> = store.query("SELECT count() FROM llm_calls WHERE project_id = ?").bind(project).fetch_all().await?;
    let reused = keep && stored.first().is_some_and(|&n| n > 0) && truth_path.exists();
    if reused {
        println!("reusing the traffic in database {database} ({} calls; truth {})", stored[0], truth_path.display());
    } else {
        let collector = LocalCollector::start(&store, project, cfg.retention.spans).await?;
        let opts = flywheel_simulator::SimulateOptions {
            seed,
            volume: flywheel_simulator::Volume::Interactions(interactions),
            failure_rate,
            endpoint: collector.endpoint.clone(),
            key: Some(collector.key.clone()),
            truth: Some(truth_path.clone()),
            base_time: Some(pinned_base_time()),
            ..flywheel_simulator::SimulateOptions::for_scenario(bench.scenario)
        };
        let started = std::time::Instant::now();
        let summary = flywheel_simulator::run(&opts).await?;
        collector.stop().await?;
        println!("{}", summary.to_string().trim_end());
        println!("ingested in {:.1}s into database {database}", started.elapsed().as_secs_f64());
        // The pinned window ends up to a week ago: derive over two weeks.
        let derive = flywheel_collector::signals::derive::DeriveConfig { lookback_secs: 15 * 86_400, ..Default::default() };
        flywheel_collector::signals::derive::run(&store, &derive).await?;
    }

    let truth = std::fs::read_to_string(&truth_path).with_context(|| format!("reading {}", truth_path.display()))?;
    let mut mode_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    for line in truth.lines().filter(|l| !l.starts_with("{\"summary\"")) {
        let call: flywheel_simulator::truth::TruthCall = serde_json::from_str(line)?;
        for k in 0..bench.copies {
            mode_of.insert(copy_trace_id(&call.trace_id, k), call.trace_failure_mode.clone());
        }
    }
    let base = store.clone();
    let store = if bench.copies > 1 { replicate(&base, bench.copies).await? } else { base.clone() };

    let mut table = String::from(
        "| representation | failures | patterns | clustered | ARI | NMI | modes recovered | healthy in patterns | time s | peak MB (before) | stages (s) |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    // A first analysis embeds every text (cold cache); re-analysing kept traffic reuses the
    // vectors, as a second `flywheel analyze` would.
    let cached: u64 = store.query("SELECT count() FROM embeddings").fetch_one().await?;
    if reused && cached > 0 {
        println!("embedding cache warm: {cached} vectors from an earlier run on this database");
    } else {
        store.execute("TRUNCATE TABLE embeddings").await?;
    }
    let mut confusions = String::new();
    let mut scores = Vec::new();
    let lexical = (bench.representation != Representations::Model).then_some(None);
    for embedder in embedder.map(Some).into_iter().chain(lexical) {
        // Same data, fresh state: drop what the previous run wrote so that tracking starts over.
        for table in ["patterns", "pattern_members", "failures", "analysis_runs"] {
            store.execute(&format!("TRUNCATE TABLE {table}")).await?;
        }
        let before = reset_peak_rss();
        let until = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
        let window_start = pinned_base_time() - time::Duration::days(8);
        let opts = Options {
            project: project.into(),
            since: window_start.min(until - time::Duration::days(8)),
            until,
            rules: flywheel_analyzer::rules::Rules::defaults(),
            embedder,
            min_pattern_size: None,
        };
        let t = std::time::Instant::now();
        let outcome = run::analyze(&store, &opts, &Silent).await?;
        let secs = t.elapsed().as_secs_f64();
        let peak = peak_rss_mb().unwrap_or(f64::NAN);
        let pattern_of: BTreeMap<&str, &str> = outcome.assignment.iter().map(|((t, _), p)| (t.as_str(), p.as_str())).collect();
        let failing: Vec<(&String, &String)> = mode_of.iter().filter_map(|(t, m)| m.as_ref().map(|m| (t, m))).collect();
        let truth_labels: Vec<String> = failing.iter().map(|(_, m)| m.to_string()).collect();
        let predicted: Vec<Option<String>> = failing.iter().map(|(t, _)| pattern_of.get(t.as_str()).map(|p| p.to_string())).collect();
        let flat: Vec<String> =
            failing.iter().zip(&predicted).map(|((t, _), p)| p.clone().unwrap_or_else(|| format!("outlier-{t}"))).collect();
        let modes = score::modes_recovered(&truth_labels, &predicted);
        let healthy = mode_of.values().filter(|m| m.is_none()).count();
        let healthy_in = mode_of.iter().filter(|(t, m)| m.is_none() && pattern_of.contains_key(t.as_str())).count();
        let stages: Vec<String> = outcome.timings.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
        let s = Scores {
            seed,
            representation: outcome.run.representation.clone(),
            interactions: mode_of.len(),
            failing: failing.len(),
            detected: outcome.failures,
            patterns: outcome.run.patterns,
            ari: score::adjusted_rand_index(&truth_labels, &flat),
            nmi: score::normalized_mutual_information(&truth_labels, &flat),
            recovered: modes.iter().filter(|m| m.recovered).count(),
            modes: modes.len(),
            healthy_share: healthy_in as f64 / healthy.max(1) as f64,
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {}/{} | {:.1}% ({healthy_in}/{healthy}) | {secs:.1} | {peak:.0} ({before:.0}) | {} |\n",
            s.representation,
            s.detected,
            s.patterns,
            outcome.run.clustered,
            s.ari,
            s.nmi,
            s.recovered,
            s.modes,
            100.0 * s.healthy_share,
            stages.join(", ")
        ));
        // Rows: every interaction, healthy ones included; cells: interactions per pattern.
        let all_labels: Vec<String> = mode_of.values().map(|m| m.clone().unwrap_or_else(|| HEALTHY.to_string())).collect();
        let all_predicted: Vec<Option<String>> = mode_of.keys().map(|t| pattern_of.get(t.as_str()).map(|p| p.to_string())).collect();
        let table_of = score::confusion(&all_labels, &all_predicted);
        let labels: BTreeMap<&str, &str> = outcome.patterns.iter().map(|p| (p.pattern_id.as_str(), p.label.as_str())).collect();
        let name = |p: &str| format!("{} ({})", abbreviate(labels.get(p).copied().unwrap_or("?"), 90), abbreviate(p, 12));
        let recovered: Vec<&str> = modes.iter().filter(|m| !m.recovered).map(|m| m.mode.as_str()).collect();
        confusions.push_str(&format!(
            "\nconfusion, seed {seed}, {} (rows: truth; columns: patterns; cells: interactions)\n{}not recovered: {}\n",
            s.representation,
            table_of.render(&name, HEALTHY),
            if recovered.is_empty() { "none".to_string() } else { recovered.join(", ") }
        ));
        scores.push(s);
    }
    print!("{table}");
    print!("{confusions}");
    if bench.copies > 1 {
        store.with_database("default").execute(&format!("DROP DATABASE IF EXISTS `{}`", store.database())).await?;
    }
    if keep {
        println!("kept database {database}; drop it with: DROP DATABASE `{database}`");
    } else {
        base.with_database("default").execute(&format!("DROP DATABASE IF EXISTS `{database}`")).await?;
        let _ = std::fs::remove_file(&truth_path);
    }
    Ok(scores)
}

/// The end of the simulated window: the last Monday, 00:00 UTC. A plan depends on the weekday
/// and hour of its base time (sessions follow working hours), so pinning it makes a seed play the
/// same traffic whenever the bench runs — runs of two analyzer versions compare — while staying
/// recent enough for the tables' retention.
fn pinned_base_time() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_time(time::Time::MIDNIGHT) - time::Duration::days(now.weekday().number_days_from_monday().into())
}

/// At most `max` characters of `text`, with an ellipsis when cut.
fn abbreviate(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max { one_line } else { format!("{}…", one_line.chars().take(max - 1).collect::<String>()) }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// One row per seed and representation, then the min and the median of each score.
fn summary(all: &[Scores]) -> String {
    let mut out = String::from(
        "| seed | representation | interactions | failing (truth) | failures detected | patterns | ARI | NMI | modes recovered | healthy in patterns |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in all {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {}/{} | {:.1}% |\n",
            s.seed,
            s.representation,
            s.interactions,
            s.failing,
            s.detected,
            s.patterns,
            s.ari,
            s.nmi,
            s.recovered,
            s.modes,
            100.0 * s.healthy_share
        ));
    }
    let representations: Vec<&str> =
        all.iter().map(|s| s.representation.as_str()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    for representation in representations {
        let of: Vec<&Scores> = all.iter().filter(|s| s.representation == representation).collect();
        let pick = |f: &dyn Fn(&Scores) -> f64| of.iter().map(|s| f(s)).collect::<Vec<f64>>();
        let modes = of.first().map_or(0, |s| s.modes);
        for (what, agg) in [("min", 0), ("median", 1)] {
            let reduce = |mut v: Vec<f64>| if agg == 0 { v.iter().copied().fold(f64::INFINITY, f64::min) } else { median(&mut v) };
            // The worst healthy share is the highest.
            let healthy =
                if agg == 0 { pick(&|s| s.healthy_share).into_iter().fold(0.0, f64::max) } else { median(&mut pick(&|s| s.healthy_share)) };
            out.push_str(&format!(
                "| {what} ({} seeds) | {representation} | | | | | {:.3} | {:.3} | {}/{modes} | {:.1}%{} |\n",
                of.len(),
                reduce(pick(&|s| s.ari)),
                reduce(pick(&|s| s.nmi)),
                reduce(pick(&|s| s.recovered as f64)),
                100.0 * healthy,
                if agg == 0 { " (max)" } else { "" }
            ));
        }
    }
    out
}

/// The trace id of copy `k` of a trace: copy 0 is the trace itself, copy k replaces the first
/// byte by k (a 30-hex-digit suffix keeps copies of different traces apart).
fn copy_trace_id(trace_id: &str, k: u8) -> String {
    if k == 0 || trace_id.len() < 2 { trace_id.to_string() } else { format!("{k:02x}{}", &trace_id[2..]) }
}

/// Scale without simulating again: `copies` copies of the simulated calls, spans and signals,
/// made in the engine into `<database>_x<copies>` with new trace, session, user and signal ids
/// (same texts and times), so the analyzer sees `copies` times the interactions, users and
/// sessions. Texts repeat across copies: the embedding cache embeds each distinct text once.
async fn replicate(base: &store::Store, copies: u8) -> Result<store::Store> {
    let target = base.with_database(&format!("{}_x{copies}", base.database()));
    target.with_database("default").execute(&format!("DROP DATABASE IF EXISTS `{}`", target.database())).await?;
    migrate::migrate(&target, &MigrateOptions::default()).await?;
    let started = std::time::Instant::now();
    let suffixed = |column: &str, k: u8| format!("if({column} = '', '', concat({column}, '~{k}')) AS {column}");
    for k in 0..copies {
        let trace = format!("if(trace_id = '' OR {k} = 0, trace_id, concat('{k:02x}', substring(trace_id, 3))) AS trace_id");
        let replace = |columns: &[String]| columns.join(", ");
        for (table, columns) in [
            ("llm_calls", replace(&[trace.clone(), suffixed("session_id", k), suffixed("user_id", k)])),
            ("spans", replace(std::slice::from_ref(&trace))),
            (
                "signals",
                replace(&[
                    trace.clone(),
                    suffixed("session_id", k),
                    suffixed("user_id", k),
                    suffixed("signal_id", k),
                    suffixed("idempotency_key", k),
                ]),
            ),
        ] {
            let columns = if k == 0 { String::new() } else { format!(" REPLACE ({columns})") };
            target
                .execute(&format!("INSERT INTO `{0}`.{table} SELECT *{columns} FROM `{1}`.{table}", target.database(), base.database()))
                .await?;
        }
    }
    let calls: u64 = target.query("SELECT count() FROM llm_calls").fetch_one().await?;
    println!("copied the traffic {copies}x into {} in {:.1}s ({calls} calls)", target.database(), started.elapsed().as_secs_f64());
    Ok(target)
}
