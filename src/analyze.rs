//! `flywheel analyze` and `flywheel patterns`: argument handling, the progress bar and the
//! tables; the work is in flywheel-analyzer.

use std::process::ExitCode;

use anyhow::Result;
use flywheel_analyzer::embed::Embedder;
use flywheel_analyzer::name::Namer;
use flywheel_analyzer::rules::Rules;
use flywheel_analyzer::run::{self, Options, Progress};
use flywheel_analyzer::watch::{self, WatchConfig};
use flywheel_schemas::Store;
use flywheel_schemas::queries;
use indicatif::{ProgressBar, ProgressStyle};
use time::OffsetDateTime;

/// An indicatif bar per stage, on stderr (stdout keeps the summary for scripts).
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new() -> Bar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:32} [{bar:30}] {pos}/{len} {elapsed}").expect("template").progress_chars("=> "),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Bar { bar }
    }
}

impl Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        self.bar.set_message(name.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
    }
    fn advance(&self, done: u64) {
        self.bar.set_position(done);
    }
}

pub fn window(since: &str) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let span = flywheel_schemas::lookback::parse(since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let until = OffsetDateTime::now_utc();
    Ok((until - span, until))
}

/// The local embedding model when installed (./setup.sh), else the lexical representation,
/// said in the summary line.
async fn embedder(lexical: bool) -> Result<Option<Embedder>> {
    Ok(match (lexical, Embedder::locate()) {
        (false, Some(dir)) => Some(tokio::task::spawn_blocking(move || Embedder::load(&dir)).await??),
        (false, None) => {
            eprintln!(
                "note: no embedding model in {}: clustering texts lexically (run ./setup.sh to install it)",
                flywheel_analyzer::embed::model_dir().display()
            );
            None
        }
        (true, _) => None,
    })
}

pub async fn analyze(
    store: &Store,
    project: Option<String>,
    since: &str,
    rules: Rules,
    lexical: bool,
    llm_names: bool,
) -> Result<ExitCode> {
    let project = queries::resolve_project(store, project.as_deref()).await?;
    let (since_t, until) = window(since)?;
    // Checked before the run: a missing endpoint should not cost a whole analysis.
    let namer = llm_names.then(Namer::from_env).transpose()?;
    let embedder = embedder(lexical).await?;
    let bar = Bar::new();
    let opts = Options { project: project.clone(), since: since_t, until, rules, embedder: embedder.as_ref(), min_pattern_size: None };
    let outcome = run::analyze(store, &opts, &bar).await;
    bar.bar.finish_and_clear();
    let mut outcome = outcome?;
    if let Some(namer) = &namer {
        let naming = flywheel_analyzer::name::name_patterns(store, &project, namer).await?;
        for p in &mut outcome.patterns {
            if let Some((_, name)) = naming.named.iter().find(|(id, _)| *id == p.pattern_id) {
                p.label = name.clone();
            }
        }
        eprintln!("named {} new patterns with {}", naming.named.len(), namer.model());
        for (id, e) in &naming.failed {
            eprintln!("warning: {id} keeps its rule label: {e}");
        }
    }
    let r = &outcome.run;
    println!(
        "project {project}: {} calls, {} failing interactions, {} in {} patterns, {} unclustered (text: {})",
        r.calls,
        r.failures,
        r.clustered,
        r.patterns,
        r.failures - r.clustered,
        r.representation
    );
    print!("{}", table(&outcome.patterns));
    if !outcome.reopened.is_empty() {
        println!(
            "reopened as regressed (fixed, and failing again): {} — triage them again with `flywheel triage`",
            outcome.reopened.join(", ")
        );
    }
    let total: f64 = outcome.timings.iter().map(|(_, s)| s).sum();
    println!("run {} in {total:.1}s", r.run_id);
    Ok(ExitCode::SUCCESS)
}

/// Behaviour patterns first; operations failures (rate limits, timeouts, latency) in a lane of
/// their own below, as they are fixed elsewhere.
fn table(patterns: &[flywheel_schemas::rows::PatternRow]) -> String {
    use flywheel_schemas::failure::Lane;
    let mut out = format!("{:<16} {:>5} {:>5} {:<9} {:<12} {}\n", "PATTERN", "SIZE", "USERS", "TREND", "STATUS", "LABEL");
    for lane in [Lane::Behaviour, Lane::Operations] {
        let rows: Vec<_> = patterns.iter().filter(|p| Lane::of(p) == lane).collect();
        if lane == Lane::Operations && !rows.is_empty() {
            out.push_str("\noperations (rate limits, timeouts, unavailable services, latency and cost):\n");
        }
        for p in rows {
            // A fixed failure that came back says when and where.
            let life = if p.regression().is_some() && p.size > 0 { format!("  ({})", p.lifecycle()) } else { String::new() };
            out.push_str(&format!("{:<16} {:>5} {:>5} {:<9} {:<12} {}{life}\n", p.pattern_id, p.size, p.users, p.trend, p.status, p.label));
        }
    }
    out
}

pub async fn compare(store: &Store, project: Option<String>, by: &str, since: &str, json: bool) -> Result<ExitCode> {
    let project = queries::resolve_project(store, project.as_deref()).await?;
    let (start, end) = window(since)?;
    let by = flywheel_analyzer::compare::By::parse(by);
    let comparison = flywheel_analyzer::compare::compare(store, &project, &by, start, end).await?;
    if json {
        println!("{}", serde_json::to_string(&comparison)?);
    } else {
        print!("{}", comparison.render());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn triage(store: &Store, project: Option<String>, pattern: &str, status: &str, note: &str) -> Result<ExitCode> {
    let project = queries::resolve_project(store, project.as_deref()).await?;
    let patterns = queries::current_patterns(store, &project).await?;
    let Some(p) = patterns.iter().find(|p| p.pattern_id == pattern) else {
        anyhow::bail!("no pattern `{pattern}` in project {project}: `flywheel patterns --project {project}` lists them");
    };
    let by = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    queries::set_triage(store, &project, pattern, status, note, &by).await?;
    println!("{pattern} ({}) is now {status}", p.label);
    Ok(ExitCode::SUCCESS)
}

pub async fn patterns(store: &Store, project: Option<String>, json: bool, members: bool) -> Result<ExitCode> {
    let project = queries::resolve_project(store, project.as_deref()).await?;
    let (patterns, triage) = queries::current_patterns_and_triage(store, &project).await?;
    if !json {
        if patterns.is_empty() {
            println!("no patterns yet in project {project}: run `flywheel analyze`");
        }
        print!("{}", table(&patterns));
        if members {
            // Each pattern's member traces, nearest to its centre first: what `flywheel tui
            // --trace ID` opens.
            for p in &patterns {
                let m = queries::pattern_members(store, &project, &p.pattern_id).await?;
                println!("\n{} members of {} ({}):", m.len(), p.pattern_id, p.label);
                for m in m {
                    println!("  {} {}  {}", m.trace_id, m.span_id, m.call_time.date());
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    /// The read API's shape, one line per pattern, with its members when asked.
    #[derive(serde::Serialize)]
    struct Line {
        #[serde(flatten)]
        pattern: flywheel_schemas::read::Pattern,
        #[serde(skip_serializing_if = "Option::is_none")]
        members: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        member_spans: Option<Vec<String>>,
    }
    for p in &patterns {
        let note = triage.get(&p.pattern_id).map(|t| t.note.as_str()).unwrap_or("");
        let mut line = Line { pattern: flywheel_schemas::read::Pattern::of(p, note), members: None, member_spans: None };
        if members {
            let m = queries::pattern_members(store, &project, &p.pattern_id).await?;
            line.members = Some(m.iter().map(|m| m.trace_id.clone()).collect());
            line.member_spans = Some(m.into_iter().map(|m| m.span_id).collect());
        }
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `flywheel watch`: a tick now, then one every `every` until interrupted (or once).
pub async fn watch(store: &Store, project: Option<String>, cfg: WatchConfig, rules: Rules, lexical: bool, once: bool) -> Result<ExitCode> {
    let project = queries::resolve_project(store, project.as_deref()).await?;
    let every = cfg.every_duration().map_err(|e| anyhow::anyhow!("--every: {e}"))?;
    let embedder = embedder(lexical).await?;
    let client = watch::deliver::client();
    if cfg.webhooks.is_empty() {
        eprintln!("note: no webhook configured (`--webhook URL`, `--slack-webhook URL` or [[watch.webhooks]]): alerts are printed only");
    }
    loop {
        // Signals derived over the window first, as `flywheel analyze` does.
        let lookback = cfg.window_duration().map_err(anyhow::Error::msg)?.whole_seconds().max(0) as u64;
        let derive = flywheel_collector::signals::derive::DeriveConfig { lookback_secs: lookback, ..Default::default() };
        flywheel_collector::signals::derive::run(store, &derive).await?;
        let now = OffsetDateTime::now_utc();
        let opts = Options {
            project: project.clone(),
            since: now,
            until: now,
            rules: rules.clone(),
            embedder: embedder.as_ref(),
            min_pattern_size: None,
        };
        let tick = watch::tick(store, &client, &cfg, opts, &run::Silent).await?;
        let d = &tick.delivery;
        println!(
            "{} project {project}: {} failures in {} patterns; {} alert(s): {} sent, {} sent before, {} failed",
            now.replace_nanosecond(0).unwrap_or(now),
            tick.outcome.run.failures,
            tick.outcome.run.patterns,
            tick.alerts.len(),
            d.sent,
            d.skipped,
            d.failed.len()
        );
        for a in &tick.alerts {
            println!("  [{}] {}  ({})", a.kind.as_str(), a.title, a.command);
        }
        for (destination, id, why) in &d.failed {
            eprintln!("warning: alert {id} not delivered to {destination}: {why}");
        }
        if once {
            return Ok(if d.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        let wait = std::time::Duration::try_from(every).unwrap_or(std::time::Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `flywheel readiness`: the level each feature's evidence supports, and why.
pub async fn readiness(
    store: &Store,
    project: Option<String>,
    feature: Option<&str>,
    since: &str,
    thresholds: &flywheel_analyzer::readiness::Thresholds,
    json: bool,
) -> Result<ExitCode> {
    let project = queries::resolve_project(store, project.as_deref()).await?;
    let span = flywheel_schemas::lookback::parse(since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let weeks = (span.whole_days() / 7).max(1) as u32;
    let all = flywheel_analyzer::readiness::assess(store, &project, OffsetDateTime::now_utc(), weeks, feature, thresholds).await?;
    if let Some(f) = feature.filter(|_| all.is_empty()) {
        anyhow::bail!(
            "no traffic of feature `{f}` in project {project} over the last {weeks} week(s): `flywheel readiness` lists the features"
        );
    }
    if json {
        println!("{}", serde_json::to_string(&all)?);
    } else {
        println!("project {project}, last {weeks} week(s); levels decided on the last {} week(s)", thresholds.recent_weeks);
        print!("{}", flywheel_analyzer::readiness::render(&all));
    }
    Ok(ExitCode::SUCCESS)
}
