//! `flywheel demo`: the whole loop on a simulated application, on this machine, with no
//! configuration — local engine, collector, traffic with injected failures and user signals,
//! analysis, an eval file and a report, then the TUI (or, with `--no-tui`, the top patterns).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flywheel_collector::auth::{self, AuthMode};
use flywheel_collector::config::CollectorConfig;
use flywheel_collector::server;
use flywheel_schemas::config::StorageConfig;
use flywheel_schemas::engine;
use flywheel_schemas::migrate::{self, MigrateOptions};
use flywheel_schemas::{queries, store};
use indicatif::{ProgressBar, ProgressStyle};

pub const PROJECT: &str = "demo";

pub struct Demo {
    pub no_tui: bool,
    pub interactions: usize,
}

fn spinner(msg: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"));
    bar.set_message(msg.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub async fn run(demo: Demo) -> Result<ExitCode> {
    let started = Instant::now();
    let mut cfg = StorageConfig::load()?;
    // The local engine, unless the user points at a server of their own.
    let local_engine = std::env::var_os("FLYWHEEL_CLICKHOUSE_URL").is_none_or(|v| v.is_empty());
    if local_engine {
        let bar = spinner("starting the local ClickHouse engine");
        let state = tokio::task::spawn_blocking(|| engine::ensure_running(&engine::default_data_dir())).await??;
        bar.finish_and_clear();
        cfg.clickhouse.url = Some(state.client_url());
        println!("ClickHouse engine: {}", state.url);
    }
    let store = store::open(&cfg).await?;
    migrate::migrate(&store, &MigrateOptions { retention: cfg.retention.clone(), ..Default::default() }).await?;

    let collector = LocalCollector::start(&store, PROJECT, cfg.retention.spans).await?;
    println!("collector: OTLP/HTTP on {}", collector.endpoint);

    // Traffic: a different seed each run, so that a second demo adds new interactions.
    let seed = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    // What was injected where, to score what the analysis finds against it.
    let truth = std::env::temp_dir().join(format!("flywheel-demo-{}-{seed}.truth.jsonl", std::process::id()));
    let opts = flywheel_simulator::SimulateOptions {
        seed,
        volume: flywheel_simulator::Volume::Interactions(demo.interactions),
        endpoint: collector.endpoint.clone(),
        key: Some(collector.key.clone()),
        truth: Some(truth.clone()),
        ..Default::default()
    };
    let bar = spinner(&format!("simulating {} interactions of a support and a coding assistant", demo.interactions));
    let summary = flywheel_simulator::run(&opts).await?;
    bar.finish_and_clear();
    // The summary without its truth line: the demo reads that file itself, then deletes it.
    let text = summary.to_string();
    let lines: Vec<&str> = text.trim_end().lines().filter(|l| !l.trim_start().starts_with("truth:")).collect();
    println!("{}", lines.join("\n"));
    collector.stop().await?;

    let derive = flywheel_collector::signals::derive::DeriveConfig { lookback_secs: 8 * 86_400, ..Default::default() };
    flywheel_collector::signals::derive::run(&store, &derive).await?;
    crate::analyze::analyze(&store, Some(PROJECT.into()), "8d", flywheel_analyzer::rules::Rules::defaults(), false, false).await?;

    let patterns = queries::current_patterns(&store, PROJECT).await?;
    println!("\ntop patterns:");
    for p in patterns.iter().filter(|p| p.size > 0).take(8) {
        println!("  {:>4} calls · {:>3} users · {}", p.size, p.users, p.label);
    }
    print!("{}", scoreboard(&store, &patterns, &truth).await?);
    let _ = std::fs::remove_file(&truth);

    // The loop's outputs: an eval file of every open pattern and the weekly review.
    use flywheel_analyzer::export::{self, EvalFormat, ExportOptions, Selection};
    use flywheel_analyzer::report::{self, PeriodSpec, ReportFormat, ReportOptions};
    let dir = std::env::current_dir()?.join("flywheel-demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let evals = ExportOptions {
        project: Some(PROJECT.into()),
        out: Some(dir.join("evals.jsonl")),
        again: true,
        ..ExportOptions::new(Selection::AllOpen, EvalFormat::Jsonl)
    };
    println!("\neval cases: {}", export::export_evals(&store, &evals).await?);
    for (format, name) in [(ReportFormat::Html, "report.html"), (ReportFormat::Markdown, "report.md")] {
        let opts = ReportOptions {
            project: Some(PROJECT.into()),
            out: Some(dir.join(name)),
            ..ReportOptions::new(PeriodSpec::Since("7d".into()), format)
        };
        println!("report: {}", report::write_report(&store, &opts).await?);
    }
    println!("\ndemo done in {:.0}s", started.elapsed().as_secs_f64());
    // The engine's line comes last, whether the demo ends here or after the TUI: it is what
    // the user must act on.
    let engine_note = || {
        if local_engine {
            println!(
                "the local ClickHouse engine keeps running with the demo's data ({}); stop it with `flywheel clickhouse stop`",
                engine::default_data_dir().display()
            );
        }
    };
    // Without a terminal (piped, in CI) the demo ends here, as with --no-tui.
    if demo.no_tui || flywheel_tui::terminal::check().is_err() {
        println!("explore with `flywheel tui --project {PROJECT}`");
        engine_note();
        return Ok(ExitCode::SUCCESS);
    }
    let code = crate::tui(Some(PROJECT.into()), false, "7d", "users", None, None).await;
    engine_note();
    code
}

/// The injected failure modes against the patterns found: for each mode, the pattern that holds
/// most of its interactions and how well (F1), as `flywheel bench analyze` scores them.
async fn scoreboard(
    store: &flywheel_schemas::Store,
    patterns: &[flywheel_schemas::rows::PatternRow],
    truth: &std::path::Path,
) -> Result<String> {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    let text = std::fs::read_to_string(truth).with_context(|| format!("reading {}", truth.display()))?;
    let mut mode_of: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with("{\"summary\"")) {
        let call: flywheel_simulator::truth::TruthCall = serde_json::from_str(line)?;
        if let Some(mode) = call.trace_failure_mode {
            mode_of.insert(call.trace_id, mode);
        }
    }
    let mut pattern_of: BTreeMap<String, String> = BTreeMap::new();
    for p in patterns.iter().filter(|p| p.size > 0) {
        for m in queries::pattern_members(store, PROJECT, &p.pattern_id).await? {
            pattern_of.insert(m.trace_id, p.pattern_id.clone());
        }
    }
    let truth_labels: Vec<String> = mode_of.values().cloned().collect();
    let predicted: Vec<Option<String>> = mode_of.keys().map(|t| pattern_of.get(t).cloned()).collect();
    let modes = flywheel_analyzer::score::modes_recovered(&truth_labels, &predicted);
    let label = |id: &str| patterns.iter().find(|p| p.pattern_id == id).map_or("?", |p| p.label.as_str()).to_string();
    let mut out = String::from("\ninjected failure modes → the pattern that holds them (F1):\n");
    let width = modes.iter().map(|m| m.mode.len()).max().unwrap_or(0);
    for m in &modes {
        let found = match &m.best_pattern {
            Some(p) => format!("{} ({:.2})", label(p), m.f1),
            None => "no pattern".to_string(),
        };
        let _ = writeln!(out, "  {} {:<width$} {:>4} interactions → {found}", if m.recovered { "✔" } else { "✘" }, m.mode, m.items);
    }
    let _ = writeln!(out, "recovered {} of {} injected modes", modes.iter().filter(|m| m.recovered).count(), modes.len());
    Ok(out)
}

/// A collector on free local ports in this process, with a fresh key of `project`.
pub struct LocalCollector {
    pub endpoint: String,
    pub key: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), server::ServeError>>,
}

impl LocalCollector {
    pub async fn start(store: &flywheel_schemas::Store, project: &str, spans_retention_days: u32) -> Result<LocalCollector> {
        let (key, _) = auth::create_key(store, project, "local").await?;
        let cfg = CollectorConfig {
            http: "127.0.0.1:0".into(),
            grpc: "127.0.0.1:0".into(),
            spans_retention_days: Some(spans_retention_days),
            signal_link_interval_secs: 1,
            ..Default::default()
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let server_store = store.clone();
        let task = tokio::spawn(async move {
            server::run(
                server_store,
                cfg,
                AuthMode::Keys,
                async {
                    let _ = stop_rx.await;
                },
                move |http, _grpc| {
                    let _ = bound_tx.send(http);
                },
            )
            .await
        });
        let http = bound_rx.await.context("the collector did not start")?;
        Ok(LocalCollector { endpoint: format!("http://{http}"), key, stop, task })
    }

    /// Lets message-id signals link, then stops (the write-ahead log drains on the way out).
    pub async fn stop(self) -> Result<()> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = self.stop.send(());
        self.task.await.context("the collector task failed")??;
        Ok(())
    }
}
