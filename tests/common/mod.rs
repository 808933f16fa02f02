//! Shared harness for the end-to-end tests: one real local ClickHouse engine per test binary
//! (fresh data directory, free port, stopped when the test process exits) and one fresh
//! database per test, so tests run in parallel without seeing each other's rows.
//!
//! With `FLYWHEEL_CLICKHOUSE_URL` set, the tests use that server instead (databases are still
//! per test).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use flywheel_schemas::config::{ClickHouseConfig, StorageConfig};
use flywheel_schemas::engine::{self, RunningEngine, StartOptions};
use flywheel_schemas::migrate::{self, MigrateOptions};
use flywheel_schemas::store::Store;

static ENGINE: OnceLock<(String, Option<RunningEngine>)> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A day of simulated traffic ([`Collector::simulate_day`]).
#[allow(dead_code)]
pub struct Day<'a> {
    pub days_ago: i64,
    pub interactions: usize,
    pub seed: u64,
    pub release: &'a str,
    /// Failure-mode weights, e.g. `truncated_answer=0`.
    pub modes: &'a str,
    pub truth: Option<&'a Path>,
}

/// A scratch directory under cargo's target tmp dir, unique to this test process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An engine of its own (in `<name>-<pid>/engine`, created by [`scratch_dir`]) for a test that
/// stops and restarts it; `port` 0 picks a free one, a previous port restarts it in place.
pub fn dedicated_engine(name: &str, port: u16) -> RunningEngine {
    dedicated_engine_with(name, port, &[])
}

/// [`dedicated_engine`] with extra environment for the engine (fault injection).
pub fn dedicated_engine_with(name: &str, port: u16, env: &[(&str, &str)]) -> RunningEngine {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id())).join("engine");
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let opts = StartOptions { port, exit_with_parent: true, env, ..StartOptions::new(&dir) };
    engine::start(&opts).unwrap_or_else(|e| panic!("cannot start a dedicated engine: {e}"))
}

/// The URL of the engine shared by this test binary, started on first use.
pub fn engine_url() -> String {
    ENGINE
        .get_or_init(|| {
            if let Ok(url) = std::env::var("FLYWHEEL_CLICKHOUSE_URL")
                && !url.is_empty()
            {
                return (url, None);
            }
            remove_stale_scratch();
            let opts = StartOptions { port: 0, exit_with_parent: true, ..StartOptions::new(scratch_dir("engine")) };
            let running = engine::start(&opts).unwrap_or_else(|e| panic!("cannot start the local ClickHouse engine: {e}"));
            (running.url().to_string(), Some(running))
        })
        .0
        .clone()
}

/// Engines of earlier test runs have exited with their process; their data need not stay.
fn remove_stale_scratch() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    pub database: String,
}

impl TestDb {
    pub fn new(test: &str) -> TestDb {
        let n = NEXT_DB.fetch_add(1, Ordering::SeqCst);
        let database = format!("t_{}_{}_{n}", test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"), std::process::id());
        TestDb { url: engine_url(), database }
    }

    pub fn config(&self) -> StorageConfig {
        StorageConfig {
            clickhouse: ClickHouseConfig { url: Some(self.url.clone()), database: self.database.clone(), ..Default::default() },
            ..Default::default()
        }
    }

    /// A store on this database (created lazily by `migrate`). Build one per test runtime: a
    /// client's pooled connections belong to the runtime that opened them.
    pub fn store(&self) -> Store {
        Store::new(&self.url, &self.config().clickhouse).expect("a valid ClickHouse URL")
    }

    pub async fn migrated(&self) -> Store {
        let store = self.store();
        migrate::migrate(&store, &MigrateOptions::default()).await.expect("migrations apply");
        store
    }

    /// Runs the real `flywheel` binary against this database.
    pub fn flywheel(&self, args: &[&str]) -> Output {
        self.flywheel_with(args, &[])
    }

    pub fn flywheel_with(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut cmd = flywheel_cmd();
        cmd.args(args).env("FLYWHEEL_CLICKHOUSE_URL", &self.url).env("FLYWHEEL_CLICKHOUSE_DATABASE", &self.database);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

/// The `flywheel` binary with no ClickHouse configuration inherited from the environment.
pub fn flywheel_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flywheel"));
    for var in [
        "FLYWHEEL_CLICKHOUSE_URL",
        "FLYWHEEL_CLICKHOUSE_DATABASE",
        "FLYWHEEL_CLICKHOUSE_USER",
        "FLYWHEEL_CLICKHOUSE_PASSWORD",
        "FLYWHEEL_CLICKHOUSE_CA_FILE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "FLYWHEEL_CONFIG",
        "FLYWHEEL_LLM_BASE_URL",
        "FLYWHEEL_LLM_MODEL",
        "FLYWHEEL_LLM_API_KEY",
        "OPENAI_API_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A running `flywheel serve` (the real binary) on free ports, stopped with SIGTERM on drop.
pub struct Collector {
    pub http: String,
    pub grpc: String,
    child: std::process::Child,
    pub db: TestDb,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Collector {
    /// Starts the collector on `db` with `config` (TOML) appended to the test configuration.
    ///
    /// The captured fixtures carry the real timestamps of their capture: with the default
    /// retention they would expire (TTL) once they are 30 days old and the tests would break
    /// with time. Test databases therefore keep everything for the longest retention allowed.
    pub fn start(db: TestDb, config: &str) -> Collector {
        Self::start_with_env(db, config, &[])
    }

    /// [`Collector::start`] with extra environment for the collector process.
    pub fn start_with_env(db: TestDb, config: &str, env: &[(&str, &str)]) -> Collector {
        let dir = scratch_dir(&format!("collector-{}", db.database));
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_in(db, config, dir, env)
    }

    /// Kills the collector with SIGKILL (no drain, no goodbye) and starts a new one on the
    /// same database, configuration and write-ahead log.
    pub fn crash_and_restart(self, config: &str) -> Collector {
        self.crash_and_restart_with(config, |_| {})
    }

    /// [`Collector::crash_and_restart`], with `between` run on the write-ahead log directory
    /// while no collector runs: to leave it as a crash at another instant, or an older build,
    /// would have left it.
    pub fn crash_and_restart_with(mut self, config: &str, between: impl FnOnce(&Path)) -> Collector {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        between(&self.wal_dir());
        let db = TestDb { url: self.db.url.clone(), database: self.db.database.clone() };
        let dir = self.dir.clone();
        let env = self.env.clone();
        std::mem::forget(self); // already dead: no SIGTERM on drop
        Self::start_in(db, config, dir, env)
    }

    /// Another collector on this one's database, with its own write-ahead log: two collectors
    /// behind a load balancer.
    #[allow(dead_code)] // not every test binary runs two collectors
    pub fn beside(&self, config: &str) -> Collector {
        let db = TestDb { url: self.db.url.clone(), database: self.db.database.clone() };
        let dir = scratch_dir(&format!("collector-{}-beside", db.database));
        Self::start_in(db, config, dir, vec![])
    }

    /// Stops the collector as an operator does (SIGTERM) and waits until it has exited; how
    /// long that took.
    #[allow(dead_code)] // the drain's tests stop a collector
    pub fn stop(mut self) -> std::time::Duration {
        let started = std::time::Instant::now();
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        std::mem::forget(self); // exited already: no second SIGTERM on drop
        started.elapsed()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }

    /// The collector's write-ahead log directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.dir.join("wal")
    }

    /// The value of a line of `/metrics`, named with its labels when it has some
    /// (`name{label="v"}`), 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let metrics = reqwest::get(format!("{}/metrics", self.http)).await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    fn start_in(db: TestDb, config: &str, dir: PathBuf, extra_env: Vec<(String, String)>) -> Collector {
        use std::io::BufRead;
        let path = dir.join("flywheel.toml");
        let retention = "[retention]\nspans = 20000\nllm_calls = 20000\nsignals = 20000\nfailures = 20000\n";
        let retention = if config.contains("[retention]") { "" } else { retention };
        std::fs::write(&path, format!("{retention}{config}")).unwrap();
        let env =
            [("FLYWHEEL_CONFIG", path.to_str().unwrap().to_string()), ("FLYWHEEL_WAL_DIR", dir.join("wal").to_str().unwrap().to_string())];
        // `serve` migrates too, but keys are created before it starts.
        let out = db.flywheel_with(&["migrate"], &env);
        assert!(out.status.success(), "migrate: {}", stderr(&out));
        let mut cmd = flywheel_cmd();
        cmd.args(["serve", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .env("FLYWHEEL_CLICKHOUSE_URL", &db.url)
            .env("FLYWHEEL_CLICKHOUSE_DATABASE", &db.database)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        for (k, v) in env.iter().map(|(k, v)| (k.to_string(), v.clone())).chain(extra_env.iter().cloned()) {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("flywheel serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let (mut http, mut grpc) = (String::new(), String::new());
        while http.is_empty() || grpc.is_empty() {
            let line = lines.next().unwrap_or_else(|| panic!("flywheel serve exited: {:?}", child.try_wait())).unwrap();
            if let Some(addr) = line.strip_prefix("OTLP/HTTP listening on ") {
                http = addr.to_string(); // "http://host:port"
            }
            if let Some(addr) = line.strip_prefix("OTLP/gRPC listening on ") {
                grpc = format!("http://{addr}");
            }
        }
        // Keep draining stdout so the collector never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Collector { http, grpc, child, db, dir, env: extra_env }
    }

    /// Waits until everything acknowledged is in ClickHouse (the write-ahead log is drained).
    pub async fn wait_stored(&self) {
        for _ in 0..400 {
            let metrics = reqwest::get(format!("{}/metrics", self.http)).await.unwrap().text().await.unwrap();
            let pending = metrics.lines().find_map(|l| l.strip_prefix("flywheel_wal_pending_records ")).map(|v| v.trim().to_string());
            // No log (`wal = false`): acknowledged already means stored.
            if pending.is_none() || pending.as_deref() == Some("0") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the write-ahead log did not drain within 10 s");
    }

    /// Plays `flywheel simulate` into `project` (with a fresh key; `args` appended), then waits
    /// until everything is stored and signals sent by message id had time to link.
    pub async fn simulate(&self, project: &str, args: &[&str]) -> Output {
        let key = self.key(project);
        let mut all = vec!["simulate", "--endpoint", self.http.as_str(), "--key", key.as_str()];
        all.extend_from_slice(args);
        let out = self.db.flywheel(&all);
        assert!(out.status.success(), "simulate: {}{}", stdout(&out), stderr(&out));
        self.wait_stored().await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        out
    }

    /// Plays one simulated day of traffic ending `day.days_ago` days before `now`, at a 30 %
    /// failure rate, in `day.release`, with the failure-mode weights `day.modes`.
    #[allow(dead_code)] // the tests of releases and lifecycles play days
    pub async fn simulate_day(&self, project: &str, now: time::OffsetDateTime, day: Day<'_>) -> Output {
        use time::format_description::well_known::Rfc3339;
        let base = (now - time::Duration::days(day.days_ago)).format(&Rfc3339).unwrap();
        let (interactions, seed) = (day.interactions.to_string(), day.seed.to_string());
        let mut args = vec![
            "--interactions",
            &interactions,
            "--seed",
            &seed,
            "--duration",
            "1d",
            "--failure-rate",
            "0.3",
            "--base-time",
            &base,
            "--release",
            day.release,
            "--modes",
            day.modes,
        ];
        let truth = day.truth.map(|p| p.to_str().unwrap().to_string());
        if let Some(t) = &truth {
            args.extend(["--truth", t.as_str()]);
        }
        self.simulate(project, &args).await
    }

    /// Posts an OTLP/HTTP protobuf trace request with `key`.
    #[allow(dead_code)] // not every test binary posts traces
    pub async fn post_traces(&self, key: &str, body: Vec<u8>) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/traces", self.http))
            .bearer_auth(key)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A new API key for `project`.
    pub fn key(&self, project: &str) -> String {
        let out = self.db.flywheel(&["keys", "create", "--project", project]);
        assert!(out.status.success(), "keys create: {}", stderr(&out));
        stdout(&out).lines().last().unwrap().to_string()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
