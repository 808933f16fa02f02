//! The `flywheel` command line: argument parsing and dispatch to the workspace crates, nothing
//! else. The contract of every subcommand is in DESIGN.md ("CLI contract"); each exits non-zero
//! with a one-line reason on failure.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use flywheel_collector::auth::{self, AuthMode};
use flywheel_collector::config::CollectorConfig;
use flywheel_collector::server;
use flywheel_schemas::config::StorageConfig;
use flywheel_schemas::engine::{self, StartOptions};
use flywheel_schemas::migrate::{self, MigrateOptions};
use flywheel_schemas::{bench, store};

/// mimalloc, not glibc's malloc: see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod analyze;
mod bench_analyze;
mod demo;
mod telemetry;

#[derive(Parser)]
#[command(name = "flywheel", version, about = "See how your LLM features fail in production, and turn the failures into evals.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the local ClickHouse engine (development, demo, CI).
    #[command(subcommand)]
    Clickhouse(ClickhouseCmd),
    /// Create or upgrade the ClickHouse schema (idempotent).
    Migrate {
        /// Create Replicated tables ON CLUSTER, with Distributed tables in front.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Manage project API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// The collector's write-ahead log: what it quarantined, and its replay.
    #[command(subcommand)]
    Wal(WalCmd),
    /// Run the collector: OTLP/HTTP, OTLP/gRPC and the signals API.
    Serve {
        /// OTLP/HTTP and signals address [default: 127.0.0.1:4318, or `[collector] http`]
        #[arg(long)]
        http: Option<String>,
        /// OTLP/gRPC address [default: 127.0.0.1:4317, or `[collector] grpc`]
        #[arg(long)]
        grpc: Option<String>,
        /// Accept requests without an API key, all in `--project` (local demo only).
        #[arg(long)]
        no_auth: bool,
        /// The project of unauthenticated requests with `--no-auth`.
        #[arg(long, default_value = "default", requires = "no_auth")]
        project: String,
    },
    /// Play a realistic LLM application against a collector: OTLP traces, user signals,
    /// injected failures, and the ground truth of what was injected where.
    Simulate(SimulateArgs),
    /// Detect failures and cluster them into patterns.
    Analyze {
        /// The project [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
        /// How far back to look, ending now: 30m, 36h, 7d, 2w, 1d12h.
        #[arg(long, default_value = "7d", allow_hyphen_values = true, value_parser = duration_arg)]
        since: String,
        /// Represent texts lexically (TF-IDF) even when the embedding model is installed.
        #[arg(long)]
        lexical: bool,
        /// Name new patterns with an LLM behind an OpenAI-compatible endpoint (FLYWHEEL_LLM_BASE_URL,
        /// FLYWHEEL_LLM_MODEL, FLYWHEEL_LLM_API_KEY). Sends each new pattern's label, terms and five
        /// example failures to it; a pattern is named once and keeps its name.
        #[arg(long)]
        llm_names: bool,
    },
    /// Record the team's decision on a pattern (what the TUI's a/f/w/n keys do): new,
    /// acknowledged, fixed, wont_fix or regressed. A pattern marked fixed that fails again
    /// after the decision is reopened as regressed by the next `analyze`.
    Triage {
        /// The pattern, by id (`flywheel patterns`).
        pattern: String,
        /// new, regressed, acknowledged, fixed or wont_fix.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(flywheel_schemas::rows::TRIAGE_STATES))]
        status: String,
        /// Why, for the team (e.g. the change that fixed it).
        #[arg(long, default_value = "")]
        note: String,
        /// The project [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
    },
    /// Compare the calls of a window split by release, prompt version, model, feature or any
    /// attribute: failure rate, each pattern's rate, signal rates, cost and latency, with the
    /// statistically significant differences marked.
    Compare {
        /// service.version (or release), prompt, model, feature, or any span/resource attribute.
        #[arg(long, default_value = "service.version")]
        by: String,
        /// How far back to look, ending now: 30m, 36h, 7d, 2w.
        #[arg(long, default_value = "14d", allow_hyphen_values = true, value_parser = duration_arg)]
        since: String,
        /// The project [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
        /// One JSON object: the groups, every test and its p-value.
        #[arg(long)]
        json: bool,
    },
    /// List the current failure patterns.
    Patterns {
        /// The project [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// List each pattern's member traces (trace id, span id, day), nearest first.
        #[arg(long)]
        members: bool,
    },
    /// Export failure patterns as eval cases.
    #[command(subcommand)]
    Export(ExportCmd),
    /// Write the weekly error-analysis review.
    Report {
        /// The ISO week to review, e.g. 2026-W47 (Monday to Monday, UTC).
        #[arg(long, conflicts_with = "since", value_parser = week_arg)]
        week: Option<String>,
        /// The period to review, ending now (30m, 36h, 7d, 2w, 1d12h) [default: 7d].
        #[arg(long, allow_hyphen_values = true, value_parser = duration_arg)]
        since: Option<String>,
        /// Markdown, or HTML with charts.
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
        /// Output file; `-` for standard output [default: ./reports/flywheel-report-<period>.<md|html>]
        #[arg(long)]
        out: Option<PathBuf>,
        /// The project [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
        /// Patterns that get a section with examples.
        #[arg(long, default_value_t = flywheel_analyzer::report::DEFAULT_TOP)]
        top: usize,
    },
    /// How much autonomy each feature's production evidence supports — suggest, draft or act —
    /// from acceptance, edits, regenerations, negative signals, escalations and failures per
    /// week (`[readiness]` in FLYWHEEL_CONFIG sets the limits).
    Readiness {
        /// The project [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
        /// Only this feature.
        #[arg(long)]
        feature: Option<String>,
        /// How far back, in whole weeks ending now: 4w, 8w, 56d.
        #[arg(long, default_value = "8w", value_parser = duration_arg)]
        since: String,
        /// One JSON array: every feature with its weekly figures, rates, trends and reasons.
        #[arg(long)]
        json: bool,
    },
    /// Analyse on a schedule and send alerts to webhooks: new patterns above a number of users,
    /// growing and regressed patterns, signal-rate, cost and latency changes per feature (the
    /// `[watch]` section of FLYWHEEL_CONFIG sets the thresholds and webhooks).
    Watch {
        /// The project [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
        /// Time between ticks [default: [watch] every, else 1h].
        #[arg(long, value_parser = duration_arg)]
        every: Option<String>,
        /// The window each tick analyses [default: [watch] window, else 7d].
        #[arg(long, value_parser = duration_arg)]
        window: Option<String>,
        /// The recent part of the window, compared with the rest [default: [watch] recent, else 24h].
        #[arg(long, value_parser = duration_arg)]
        recent: Option<String>,
        /// A webhook that receives the generic JSON alert (repeatable).
        #[arg(long)]
        webhook: Vec<String>,
        /// A Slack-compatible incoming webhook (repeatable).
        #[arg(long)]
        slack_webhook: Vec<String>,
        /// One tick, then exit (non-zero when a delivery failed): for cron.
        #[arg(long)]
        once: bool,
        /// Represent texts lexically (TF-IDF) even when the embedding model is installed.
        #[arg(long)]
        lexical: bool,
    },
    /// Serve the read API (patterns, failures, traces) to a coding agent over the Model
    /// Context Protocol on stdin/stdout.
    Mcp {
        /// The project it answers for [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
    },
    /// Open the terminal UI.
    Tui {
        /// The project [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
        /// No colours (also with NO_COLOR set).
        #[arg(long)]
        no_color: bool,
        /// Time window of the overview and search: 24h, 7d or 30d.
        #[arg(long, default_value = "7d")]
        window: String,
        /// What impact multiplies severity by: users, sessions, calls or cost.
        #[arg(long, default_value = "users")]
        impact: String,
        /// Open this trace (32 hex digits), as the report's examples link to it.
        #[arg(long, conflicts_with = "pattern")]
        trace: Option<String>,
        /// Open this pattern (its id, as `flywheel patterns` and alerts print it).
        #[arg(long)]
        pattern: Option<String>,
    },
    /// Run the whole loop on a simulated application: engine, collector, traffic, analysis, TUI.
    Demo {
        /// End with the summary instead of opening the terminal UI.
        #[arg(long)]
        no_tui: bool,
    },
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Args)]
struct SimulateArgs {
    /// Which application to play: `default` (support and coding assistants, 7 failure modes) or
    /// `catalogue` (5 applications, 26 failure modes with deliberate confusers).
    #[arg(long, default_value = "default", value_parser = parse_scenario)]
    scenario: flywheel_simulator::Scenario,
    /// Seed of everything generated: same seed (and --base-time), same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Simulated time span of the traffic, ending now or at --base-time (30s, 15m, 2h, 7d).
    #[arg(long, default_value = "7d", value_parser = duration_arg)]
    duration: String,
    /// Write the ground truth here (JSONL: one line per LLM call, then a summary line).
    #[arg(long)]
    truth: Option<PathBuf>,
    /// The collector's OTLP/HTTP address; signals go to the same host.
    #[arg(long, default_value = flywheel_simulator::options::DEFAULT_ENDPOINT)]
    endpoint: String,
    /// Project API key (`flywheel keys create`), sent as a bearer token.
    #[arg(long, env = "FLYWHEEL_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Number of sessions to play.
    #[arg(long, conflicts_with = "interactions")]
    sessions: Option<usize>,
    /// Number of interactions (traces) to play [default: 1000].
    #[arg(long)]
    interactions: Option<usize>,
    /// Share of interactions with an injected failure, 0 to 1 [default: 0.15, catalogue 0.3].
    #[arg(long)]
    failure_rate: Option<f64>,
    /// Failure-mode weights, e.g. `wrong_language=3,slow_answer=0` (0 switches a mode off).
    #[arg(long)]
    modes: Option<String>,
    /// The failure rate at the end of the window, reached linearly from --failure-rate at its
    /// start: a feature getting better or worse over the simulated weeks.
    #[arg(long)]
    failure_rate_end: Option<f64>,
    /// Share of support sessions that open with a question customers ask again and again
    /// (policy or account questions), 0 to 1; `inconsistent_answer=W` in --modes contradicts
    /// some of their answers.
    #[arg(long, default_value_t = 0.0)]
    repeated_questions: f64,
    /// End of the simulated window (RFC 3339) instead of now, for byte-identical reruns.
    #[arg(long)]
    base_time: Option<String>,
    /// The application's release, sent as the resource's `service.version`.
    #[arg(long, default_value = flywheel_simulator::options::DEFAULT_RELEASE)]
    release: String,
}

#[derive(Subcommand)]
enum ClickhouseCmd {
    /// Start the engine in the background; prints its URL, with its password, on the last line.
    Start {
        #[command(flatten)]
        data: DataDir,
        /// The engine's HTTP port.
        #[arg(long, default_value_t = engine::DEFAULT_PORT)]
        port: u16,
        /// The address to listen on; beyond loopback the engine requires its password.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
    /// Stop the engine of a data directory.
    Stop {
        #[command(flatten)]
        data: DataDir,
    },
    /// Tell whether the engine of a data directory runs (exit status 3 when it does not).
    Status {
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Args)]
struct DataDir {
    /// Data directory [default: $FLYWHEEL_DATA_DIR/clickhouse, FLYWHEEL_DATA_DIR defaulting to FLYWHEEL_HOME]
    #[arg(long = "data")]
    dir: Option<PathBuf>,
}

impl DataDir {
    fn path(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(engine::default_data_dir)
    }
}

#[derive(Subcommand)]
enum WalCmd {
    /// List the quarantined records: what ClickHouse refused, what this build could not decode,
    /// bytes cut from a segment.
    Quarantine {
        /// The log's directory [default: `[collector] wal_dir`, FLYWHEEL_WAL_DIR, or
        /// $FLYWHEEL_DATA_DIR/wal/<database>]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Store the quarantined records again, once their cause is fixed; each file stored moves to
    /// `quarantine/replayed/`, a file still refused stays with the reason (exit status 1).
    Replay {
        /// The log's directory [default: as for `quarantine`]
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Say what would be stored, store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only the files whose names contain one of these (e.g. `poison-lsn00000000000000000042`).
        files: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key for a project; prints the key alone on the last line.
    Create {
        /// The project whose data the key may send.
        #[arg(long)]
        project: String,
        /// A label to recognise the key by (e.g. the service that uses it).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke a key by its id (printed by `create`); requests with it are refused from then on.
    Revoke {
        /// The key's id (`k_…`), as `create` printed it.
        key_id: String,
    },
}

#[derive(Subcommand)]
enum ExportCmd {
    /// Eval cases from one pattern or from every open pattern.
    // One of the two targets is required: the error then names both.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["pattern", "all_open"])))]
    Evals {
        /// One pattern, by id (`flywheel patterns`).
        #[arg(long)]
        pattern: Option<String>,
        /// Every open behaviour pattern (triage new, regressed or acknowledged, not resolved).
        #[arg(long)]
        all_open: bool,
        /// Operations patterns too (rate limits, timeouts, latency), as availability and latency
        /// checks; left out by default, as a correct answer fails them too.
        #[arg(long, alias = "include-operations")]
        include_ops: bool,
        /// The eval tool's format.
        #[arg(long, value_enum, default_value_t = EvalFormat::Jsonl)]
        format: EvalFormat,
        /// Representative (diverse) failing calls per pattern.
        #[arg(long, default_value_t = flywheel_analyzer::export::DEFAULT_MAX_PER_PATTERN)]
        max_per_pattern: usize,
        /// Output file [default: ./evals/flywheel-evals.<format>]; replaced when there are new cases.
        #[arg(long, conflicts_with = "append_to")]
        out: Option<PathBuf>,
        /// Merge into this eval file, skipping cases it already has (by content hash).
        #[arg(long)]
        append_to: Option<PathBuf>,
        /// Export cases already exported in this format too.
        #[arg(long)]
        again: bool,
        /// The project [default: the only project with data].
        #[arg(long)]
        project: Option<String>,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Insert and query throughput of the storage boundary.
    Storage {
        /// Rows to insert.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Rows per INSERT; repeat for several sizes.
        #[arg(long, default_values_t = vec![1_000usize, 10_000, 100_000])]
        batch: Vec<usize>,
    },
    /// Collector throughput over OTLP/HTTP protobuf and gRPC, writer off and on; latency at fixed loads.
    Ingest {
        /// Requests per measurement.
        #[arg(long, default_value_t = 400)]
        requests: usize,
        /// Spans per request (a third are agent spans, the rest chat calls with content).
        #[arg(long, alias = "spans-per-request", default_value_t = 60)]
        spans: usize,
        /// Request sizes (spans) of the runs against `flywheel serve` in its own process.
        #[arg(long, value_delimiter = ',', default_values_t = [5, 60])]
        served_sizes: Vec<usize>,
        /// Spans each of those runs sends.
        #[arg(long, default_value_t = 60_000)]
        served_spans: u64,
        /// Only a soak: mixed traffic at `--rate` spans per second for this many seconds, in
        /// requests of `--spans`, the collector's memory sampled every second.
        #[arg(long)]
        soak: Option<u64>,
        /// Spans per second of the soak.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Only one request of this many small spans (OTLP/HTTP protobuf) to a fresh collector: its
        /// memory before, at the peak and after.
        #[arg(long)]
        large_request: Option<usize>,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Fixed loads for the latency table, in requests per second (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [20.0, 50.0, 100.0])]
        rates: Vec<f64>,
    },
    /// Analyzer quality (ARI, NMI, modes recovered, confusion table) and time and memory, on
    /// simulated traffic, for one or more seeds.
    Analyze {
        /// The simulator scenario to play: `default` or `catalogue`.
        #[arg(long, default_value = "default", value_parser = parse_scenario)]
        scenario: flywheel_simulator::Scenario,
        /// Interactions to simulate per seed (failures ≈ interactions × failure rate)
        /// [default: 20000, catalogue 7000].
        #[arg(long)]
        interactions: Option<usize>,
        /// Share of failing interactions [default: 0.5, catalogue 0.3].
        #[arg(long)]
        failure_rate: Option<f64>,
        /// The first seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Seeds to run (seed, seed+1, …), each into a fresh database; min and median follow.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
        seeds: u64,
        /// Which representations to run: the embedding model, lexical TF-IDF, or both.
        #[arg(long, value_enum, default_value_t = bench_analyze::Representations::Both)]
        representation: bench_analyze::Representations,
        /// Keep the traffic in this database: the first run simulates into it, later runs with
        /// the same name analyse it again without simulating (drop it yourself when done).
        #[arg(long)]
        database: Option<String>,
        /// Analyse this many copies of the simulated traffic, made in the engine with new trace,
        /// session and user ids (scale beyond what simulating through the collector allows).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=255))]
        copies: u8,
    },
    /// TUI latencies on generated data: time to the patterns view and between views.
    Tui {
        /// Spans to generate (in the engine) in the bench database, if it has fewer.
        #[arg(long, default_value_t = 10_000_000)]
        spans: u64,
        /// LLM calls to generate.
        #[arg(long, default_value_t = 1_000_000)]
        calls: u64,
        /// Measurements per step.
        #[arg(long, default_value_t = 7)]
        repeat: usize,
        /// The database the benchmark fills (dropped and recreated).
        #[arg(long, default_value = "flywheel_bench_tui")]
        database: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Md,
    Html,
}

#[derive(Clone, Copy, ValueEnum)]
enum EvalFormat {
    Jsonl,
    OpenaiEvals,
    Promptfoo,
    Csv,
}

fn main() -> ExitCode {
    let _telemetry = telemetry::init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version asked for, or help for a bare command group: clap's own output.
        Err(e) if !e.use_stderr() || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("{}", usage_error(&e));
            return ExitCode::from(2);
        }
    };
    if prints_and_exits(&cli.command) {
        // Like every Unix filter: a reader that goes away (`flywheel analyze | head`) ends the
        // command quietly. Rust ignores SIGPIPE, and `println!` then panics on the closed pipe.
        // Not for the long-running commands, whose children and sockets must not kill them.
        reset_sigpipe();
    }
    quiet_on_closed_stdout();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Commands that print their result and exit (everything but the servers and the UI).
fn prints_and_exits(command: &Command) -> bool {
    !matches!(
        command,
        Command::Serve { .. }
            | Command::Demo { .. }
            | Command::Tui { .. }
            | Command::Mcp { .. }
            | Command::Watch { .. }
            | Command::Simulate(_)
            | Command::Bench(_)
            | Command::Clickhouse(_)
    )
}

/// The long-running commands keep SIGPIPE ignored, so their `println!` panics when the reader of
/// their output goes away (`flywheel simulate | head`). That is the reader's choice, not a bug:
/// end as a filter killed by SIGPIPE would (status 141), without a panic message or backtrace.
/// Every other panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

#[cfg(unix)]
fn reset_sigpipe() {
    // SAFETY: restores the default disposition of one signal; no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn reset_sigpipe() {}

/// An error in one line: the chain of causes joined, as scripts and tests expect, leaving out a
/// cause whose text the message already gives (many errors quote their source).
/// A duration argument, checked as the command line is parsed — before anything connects —
/// by the one parser every command reads durations with.
fn duration_arg(spec: &str) -> Result<String, String> {
    flywheel_schemas::lookback::parse(spec).map(|_| spec.to_string())
}

/// An ISO week argument (`2026-W47`), checked as the command line is parsed.
fn week_arg(spec: &str) -> Result<String, String> {
    flywheel_analyzer::report::Period::week(spec).map(|_| spec.to_string()).map_err(|e| e.to_string())
}

/// A command line that does not parse, in one line as every failure (clap writes the missing
/// arguments, the usage and a tip on lines of their own): what is wrong, then where help is.
fn usage_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let said: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    format!("{} (see --help)", said.join(" ").trim_end_matches('.'))
}

fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Clickhouse(cmd) => clickhouse(cmd),
        Command::Migrate { cluster } => {
            let cfg = StorageConfig::load()?;
            let store = store::open(&cfg).await?;
            let options = MigrateOptions { cluster, retention: cfg.retention.clone(), change_retention: true };
            let report = migrate::migrate(&store, &options).await?;
            print!("{}", migrate::describe(&store, &report).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCmd::Storage { rows, batch }) => {
            let cfg = StorageConfig::load()?;
            let store = store::open(&cfg).await?;
            let report = bench::storage(&store, rows, &batch).await?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(cmd) => keys(cmd).await,
        Command::Wal(cmd) => wal(cmd).await,
        Command::Serve { http, grpc, no_auth, project } => serve(http, grpc, no_auth.then_some(project)).await,
        Command::Simulate(args) => simulate(args).await,
        Command::Analyze { project, since, lexical, llm_names } => {
            let cfg = StorageConfig::load()?;
            // Migrated first: on a fresh home the tables do not exist yet, and "no data yet"
            // says more than ClickHouse's UNKNOWN_DATABASE.
            let store = open_migrated().await?;
            // Derived signals (regenerations, retries, abandonment) over the whole window first:
            // the collector derives them only over its recent traffic.
            let (start, _) = analyze::window(&since)?;
            let lookback = (time::OffsetDateTime::now_utc() - start).whole_seconds().max(0) as u64;
            let derive = flywheel_collector::signals::derive::DeriveConfig { lookback_secs: lookback, ..Default::default() };
            let derived = flywheel_collector::signals::derive::run(&store, &derive).await?;
            tracing::info!(derived = derived.len(), "derived signals");
            analyze::analyze(&store, project, &since, analyzer_rules(&cfg)?, lexical, llm_names).await
        }
        Command::Compare { by, since, project, json } => {
            let store = open_migrated().await?;
            analyze::compare(&store, project, &by, &since, json).await
        }
        Command::Triage { pattern, status, note, project } => {
            let store = open_migrated().await?;
            analyze::triage(&store, project, &pattern, &status, &note).await
        }
        Command::Watch { project, every, window, recent, webhook, slack_webhook, once, lexical } => {
            use flywheel_analyzer::watch::{Format, WatchConfig, Webhook};
            let cfg = StorageConfig::load()?;
            let mut watch = match config_file()? {
                Some((text, origin)) => WatchConfig::parse(&text, &origin)?,
                None => WatchConfig::default(),
            };
            watch.every = every.unwrap_or(watch.every);
            watch.window = window.unwrap_or(watch.window);
            watch.recent = recent.unwrap_or(watch.recent);
            let hooks = webhook.into_iter().map(|url| (url, Format::Json)).chain(slack_webhook.into_iter().map(|url| (url, Format::Slack)));
            watch.webhooks.extend(hooks.map(|(url, format)| Webhook { url, format, name: None }));
            watch.validate().map_err(anyhow::Error::msg)?;
            let store = open_migrated().await?;
            analyze::watch(&store, project, watch, analyzer_rules(&cfg)?, lexical, once).await
        }
        Command::Readiness { project, feature, since, json } => {
            let thresholds = readiness_thresholds()?;
            let store = open_migrated().await?;
            analyze::readiness(&store, project, feature.as_deref(), &since, &thresholds, json).await
        }
        Command::Mcp { project } => {
            let store = open_migrated().await?;
            let project = flywheel_schemas::queries::resolve_project(&store, project.as_deref()).await?;
            flywheel_collector::mcp::ReadServer::new(store, project).serve_stdio().await.map_err(anyhow::Error::msg)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Patterns { project, json, members } => {
            let store = open_migrated().await?;
            analyze::patterns(&store, project, json, members).await
        }
        Command::Export(ExportCmd::Evals {
            pattern,
            all_open: _,
            include_ops,
            format,
            max_per_pattern,
            out,
            append_to,
            again,
            project,
        }) => {
            use flywheel_analyzer::export::{self, ExportOptions, Selection};
            let selection = pattern.map(Selection::Pattern).unwrap_or(Selection::AllOpen);
            let format = match format {
                EvalFormat::Jsonl => export::EvalFormat::Jsonl,
                EvalFormat::OpenaiEvals => export::EvalFormat::OpenaiEvals,
                EvalFormat::Promptfoo => export::EvalFormat::Promptfoo,
                EvalFormat::Csv => export::EvalFormat::Csv,
            };
            let opts = ExportOptions {
                project,
                max_per_pattern,
                out,
                append_to,
                again,
                operations: include_ops,
                ..ExportOptions::new(selection, format)
            };
            let store = open_migrated().await?;
            println!("{}", export::export_evals(&store, &opts).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { week, since, format, out, project, top } => {
            use flywheel_analyzer::report::{self, PeriodSpec, ReportOptions};
            let period = match week {
                Some(w) => PeriodSpec::Week(w),
                None => PeriodSpec::Since(since.unwrap_or_else(|| "7d".into())),
            };
            let format = match format {
                ReportFormat::Md => report::ReportFormat::Markdown,
                ReportFormat::Html => report::ReportFormat::Html,
            };
            let opts = ReportOptions { project, out, top, ..ReportOptions::new(period, format) };
            let store = open_migrated().await?;
            let summary = report::write_report(&store, &opts).await?;
            match summary.path {
                Some(_) => println!("{summary}"),
                None => {
                    print!("{}", summary.document);
                    eprintln!("{summary}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tui { project, no_color, window, impact, trace, pattern } => {
            tui(project, no_color, &window, &impact, trace, pattern).await
        }
        Command::Demo { no_tui } => demo::run(demo::Demo { no_tui, interactions: 1500 }).await,
        Command::Bench(BenchCmd::Ingest { requests, spans, concurrency, rates, served_sizes, served_spans, soak, rate, large_request }) => {
            let cfg = StorageConfig::load()?;
            let store = store::open(&cfg).await?;
            let bench = flywheel_collector::bench::IngestBench {
                requests,
                spans_per_request: spans,
                concurrency,
                rates,
                served_sizes,
                served_spans,
                soak_seconds: soak,
                soak_rate: rate,
                large_request,
            };
            print!("{}", flywheel_collector::bench::ingest(&store, &bench).await.map_err(anyhow::Error::msg)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCmd::Analyze { scenario, interactions, failure_rate, seed, seeds, representation, database, copies }) => {
            bench_analyze::run(bench_analyze::BenchAnalyze {
                scenario,
                interactions,
                failure_rate,
                seed,
                seeds,
                representation,
                database,
                copies,
            })
            .await
        }
        Command::Bench(BenchCmd::Tui { spans, calls, repeat, database }) => {
            let cfg = StorageConfig::load()?;
            let store = store::open(&cfg).await?;
            let opts = flywheel_tui::bench::BenchOptions { spans, calls, repeat, database };
            print!("{}", flywheel_tui::bench::run(&store, &opts).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn simulate(args: SimulateArgs) -> Result<ExitCode> {
    use flywheel_simulator::{SimulateOptions, Volume};
    let defaults = SimulateOptions::for_scenario(args.scenario);
    let mut opts = SimulateOptions {
        seed: args.seed,
        window: flywheel_simulator::parse_duration(&args.duration)?,
        base_time: args.base_time.as_deref().map(flywheel_simulator::parse_base_time).transpose()?,
        volume: match (args.sessions, args.interactions) {
            (Some(n), _) => Volume::Sessions(n),
            (None, Some(n)) => Volume::Interactions(n),
            (None, None) => SimulateOptions::default().volume,
        },
        failure_rate: args.failure_rate.unwrap_or(defaults.failure_rate),
        endpoint: args.endpoint,
        key: args.key.filter(|k| !k.is_empty()),
        truth: args.truth,
        release: args.release,
        repeated_questions: args.repeated_questions,
        failure_rate_end: args.failure_rate_end,
        ..defaults
    };
    if let Some(spec) = &args.modes {
        opts.mix.apply_overrides(spec)?;
    }
    let summary = flywheel_simulator::run(&opts).await?;
    println!("{summary}");
    for warning in summary.warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_scenario(value: &str) -> Result<flywheel_simulator::Scenario, String> {
    value.parse().map_err(|e: flywheel_simulator::SimulateError| e.to_string())
}

async fn open_migrated() -> Result<flywheel_schemas::Store> {
    let cfg = StorageConfig::load()?;
    let store = store::open(&cfg).await?;
    // Tables are created if missing; retention changes are `flywheel migrate`'s alone.
    migrate::migrate(&store, &MigrateOptions { retention: cfg.retention.clone(), ..Default::default() }).await?;
    Ok(store)
}

async fn keys(cmd: KeysCmd) -> Result<ExitCode> {
    let store = open_migrated().await?;
    match cmd {
        KeysCmd::Create { project, name } => {
            let (key, row) = auth::create_key(&store, &project, &name).await?;
            println!("created key {} for project `{}` (shown once; stored hashed)", row.key_id, row.project_id);
            println!("{key}");
        }
        KeysCmd::Revoke { key_id } => match auth::revoke_key(&store, &key_id).await? {
            Some(row) => println!("revoked key {} of project `{}`", row.key_id, row.project_id),
            None => bail!("no key with id `{key_id}`"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

async fn wal(cmd: WalCmd) -> Result<ExitCode> {
    use flywheel_collector::wal::replay;
    let cfg = CollectorConfig::load().map_err(anyhow::Error::msg).context("reading the [collector] configuration")?;
    let database = StorageConfig::load()?.clickhouse.database;
    // A directory named on the command line must exist: a typo would read as an empty log.
    let dir_of = |dir: Option<PathBuf>| -> Result<PathBuf> {
        match dir {
            Some(d) if !d.is_dir() => {
                anyhow::bail!("no write-ahead log at {}: give the collector's log directory (`[collector] wal_dir`)", d.display())
            }
            Some(d) => Ok(d),
            None => Ok(cfg.wal_dir_for(&database)),
        }
    };
    match cmd {
        WalCmd::Quarantine { dir } => {
            let dir = dir_of(dir)?;
            let entries = replay::list(&dir)?;
            if entries.is_empty() {
                println!("nothing in quarantine ({})", dir.join("quarantine").display());
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<12} {:>8} {:>7} {:>7}  {:<24} file", "kind", "bytes", "records", "rows", "projects");
            for e in &entries {
                let name = e.path.file_name().unwrap_or_default().to_string_lossy();
                println!("{:<12} {:>8} {:>7} {:>7}  {:<24} {name}", e.kind.as_str(), e.bytes, e.records, e.rows, e.projects.join(","));
                if let Some(problem) = &e.problem {
                    println!("             {problem}");
                }
            }
            let replayable = entries.iter().filter(|e| e.replayable()).count();
            println!("{} file(s), {replayable} replayable with `flywheel wal replay` once the cause is fixed", entries.len());
            Ok(ExitCode::SUCCESS)
        }
        WalCmd::Replay { dir, dry_run, files } => {
            let dir = dir_of(dir)?;
            let store = open_migrated().await?;
            let outcomes = replay::replay(&dir, &store, &files, dry_run).await?;
            if outcomes.is_empty() {
                println!("nothing to replay ({})", dir.join("quarantine").display());
                return Ok(ExitCode::SUCCESS);
            }
            let mut failed = 0;
            for o in &outcomes {
                let name = o.entry.path.file_name().unwrap_or_default().to_string_lossy();
                match &o.result {
                    Ok(rows) if dry_run => println!("would store {rows} rows from {name}"),
                    Ok(rows) if o.entry.problem.is_some() => {
                        println!("stored {rows} rows from {name}; the rest stays: {}", o.entry.problem.as_deref().unwrap_or_default())
                    }
                    Ok(rows) => println!("stored {rows} rows from {name} (moved to quarantine/replayed/)"),
                    Err(reason) => {
                        failed += 1;
                        println!("kept {name}: {reason}");
                    }
                }
            }
            Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
    }
}

async fn serve(http: Option<String>, grpc: Option<String>, open_project: Option<String>) -> Result<ExitCode> {
    let mut cfg = CollectorConfig::load().map_err(anyhow::Error::msg).context("reading the [collector] configuration")?;
    cfg.http = http.unwrap_or(cfg.http);
    cfg.grpc = grpc.unwrap_or(cfg.grpc);
    cfg.spans_retention_days = Some(StorageConfig::load()?.retention.spans);
    let store = open_migrated().await?;
    let mode = match open_project {
        Some(project) => {
            eprintln!("warning: --no-auth: every request is accepted into project `{project}` without a key");
            AuthMode::Open { project }
        }
        None => AuthMode::Keys,
    };
    let url = store.url().to_string();
    server::run(store, cfg, mode, shutdown_signal(), |http, grpc| {
        println!("storing into {url}");
        println!("OTLP/gRPC listening on {grpc}");
        println!("OTLP/HTTP listening on http://{http}");
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM: stop accepting, finish in-flight requests.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// The configuration file's text and path, when FLYWHEEL_CONFIG names one: for the sections
/// the analyzer reads (`[watch]`, `[readiness]`).
fn config_file() -> Result<Option<(String, String)>> {
    let Some(path) = std::env::var_os("FLYWHEEL_CONFIG").filter(|p| !p.is_empty()) else { return Ok(None) };
    let origin = path.to_string_lossy().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read FLYWHEEL_CONFIG file {origin}: {e}"))?;
    Ok(Some((text, origin)))
}

/// The `[readiness]` limits of the configuration file, else the defaults.
fn readiness_thresholds() -> Result<flywheel_analyzer::readiness::Thresholds> {
    Ok(match config_file()? {
        Some((text, origin)) => flywheel_analyzer::readiness::Thresholds::parse(&text, &origin)?,
        None => Default::default(),
    })
}

/// The detection rules: `[analyzer] rules = "file.toml"` in FLYWHEEL_CONFIG, else the defaults.
fn analyzer_rules(_cfg: &StorageConfig) -> Result<flywheel_analyzer::rules::Rules> {
    match std::env::var_os("FLYWHEEL_RULES").filter(|v| !v.is_empty()) {
        Some(path) => Ok(flywheel_analyzer::rules::Rules::load(std::path::Path::new(&path))?),
        None => Ok(flywheel_analyzer::rules::Rules::defaults()),
    }
}

/// `e` in the TUI: the same code path as `flywheel export evals --pattern ID` (JSONL).
struct EvalExporter {
    store: flywheel_schemas::Store,
    runtime: tokio::runtime::Handle,
}

impl flywheel_tui::Exporter for EvalExporter {
    fn export_pattern(&self, project: &str, pattern_id: &str, format: &str, again: bool) -> Result<String, String> {
        use flywheel_analyzer::export::{self, EvalFormat, ExportOptions, Selection};
        let format: EvalFormat = format.parse().map_err(|e: export::ExportError| e.to_string())?;
        // The user chose this pattern on screen: an operations pattern is exported too, as
        // availability and latency checks, rather than refused.
        let opts = ExportOptions {
            project: Some(project.to_string()),
            operations: true,
            again,
            ..ExportOptions::new(Selection::Pattern(pattern_id.to_string()), format)
        };
        // Called on a blocking thread of the TUI's worker: blocking on the runtime is allowed there.
        self.runtime.block_on(export::export_evals(&self.store, &opts)).map(|s| s.to_string()).map_err(|e| e.to_string())
    }

    fn readiness(&self, project: &str) -> Result<Vec<flywheel_tui::model::ReadinessLine>, String> {
        use flywheel_analyzer::readiness::assess;
        let thresholds = readiness_thresholds().map_err(|e| e.to_string())?;
        // Called on a blocking thread of the TUI's worker, as the export is.
        let all = self
            .runtime
            .block_on(assess(&self.store, project, time::OffsetDateTime::now_utc(), 8, None, &thresholds))
            .map_err(|e| e.to_string())?;
        Ok(all
            .into_iter()
            .map(|r| flywheel_tui::model::ReadinessLine {
                feature: r.feature,
                level: r.level.as_str().to_string(),
                reason: r.reasons.into_iter().next().unwrap_or_default(),
            })
            .collect())
    }
}

async fn tui(
    project: Option<String>,
    no_color: bool,
    window: &str,
    impact: &str,
    trace: Option<String>,
    pattern: Option<String>,
) -> Result<ExitCode> {
    if let Some(t) = &trace
        && (t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        anyhow::bail!("--trace {t}: a trace id is 32 hexadecimal digits, as the report and `flywheel patterns --members` print them");
    }
    use flywheel_tui::model::{Impact, Window};
    let window = Window::parse(window).with_context(|| format!("--window {window}: use 24h, 7d or 30d"))?;
    let impact = Impact::parse(impact).with_context(|| format!("--impact {impact}: use users, sessions, calls or cost"))?;
    // Before the engine starts: without a terminal there is nothing to start it for.
    flywheel_tui::terminal::check()?;
    let store = open_migrated().await?;
    let defaults = flywheel_tui::TuiOptions::default();
    let opts = flywheel_tui::TuiOptions { project, window, impact, no_color: no_color || defaults.no_color, trace, pattern, ..defaults };
    // The UI blocks this thread on the terminal; its queries run on this runtime's workers.
    tokio::task::block_in_place(|| {
        flywheel_tui::run(store.clone(), opts, std::sync::Arc::new(EvalExporter { store, runtime: tokio::runtime::Handle::current() }))
    })?;
    Ok(ExitCode::SUCCESS)
}

fn clickhouse(cmd: ClickhouseCmd) -> Result<ExitCode> {
    match cmd {
        ClickhouseCmd::Start { data, port, host } => {
            let opts = StartOptions { host, port, ..StartOptions::new(data.path()) };
            let engine = engine::start(&opts)?;
            println!("engine: {} (pid {})", engine.state.engine, engine.state.pid);
            println!("data: {}", engine.data_dir.display());
            println!("log: {}", engine.data_dir.join(engine::LOG_FILE).display());
            println!("password: {}", engine.data_dir.join(engine::PASSWORD_FILE).display());
            // Last, alone: the URL to give FLYWHEEL_CLICKHOUSE_URL, its credentials included.
            println!("{}", engine.url());
            Ok(ExitCode::SUCCESS)
        }
        ClickhouseCmd::Stop { data } => {
            let dir = data.path();
            match engine::stop(&dir).with_context(|| format!("stopping the engine of {}", dir.display()))? {
                Some(state) => println!("stopped the engine on {} (pid {}, data {})", state.url, state.pid, dir.display()),
                None => println!("no engine runs on {}", dir.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
        ClickhouseCmd::Status { data } => {
            let dir = data.path();
            match engine::status(&dir) {
                Some(state) => {
                    println!("running: {} (pid {}, {}, data {})", state.url, state.pid, state.engine, dir.display());
                    println!("{}", state.client_url());
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    println!("not running (data {})", dir.display());
                    Ok(ExitCode::from(3))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every command and every flag says what it is for in `--help`.
    #[test]
    fn every_command_and_flag_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() {
                missing.push(format!("{path}: no description"));
            }
            for arg in cmd.get_arguments().filter(|a| !["help", "version"].contains(&a.get_id().as_str())) {
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {}: no help text", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }

    /// Durations, weeks and triage states are refused as the command line is parsed, before
    /// anything connects, with the one parser's words.
    #[test]
    fn bad_values_are_refused_before_anything_runs() {
        for (args, expected) in [
            (&["flywheel", "analyze", "--since", "3x"][..], "is not a duration"),
            (&["flywheel", "report", "--since", "3x"], "is not a duration"),
            (&["flywheel", "report", "--week", "47"], "not an ISO week"),
            (&["flywheel", "compare", "--since", "0d"], "longer than zero"),
            (&["flywheel", "readiness", "--since", "soon"], "is not a duration"),
            (&["flywheel", "watch", "--every", "1y"], "is not a duration"),
            (&["flywheel", "simulate", "--duration", "a week"], "is not a duration"),
            (&["flywheel", "triage", "p-1", "done"], "[possible values: new, regressed, acknowledged, fixed, wont_fix]"),
        ] {
            let e = Cli::try_parse_from(args).err().unwrap_or_else(|| panic!("{args:?} parsed"));
            let line = usage_error(&e);
            assert!(line.contains(expected) && !line.contains('\n'), "{args:?}: {line}");
        }
        Cli::try_parse_from(["flywheel", "report", "--week", "2026-W47"]).unwrap();
        Cli::try_parse_from(["flywheel", "analyze", "--since", "1d12h"]).unwrap();
    }
}
