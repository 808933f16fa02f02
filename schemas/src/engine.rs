//! The local ClickHouse engine for development, the demo and CI.
//!
//! A real ClickHouse 26.x engine (PyPI's `chdb-core`, installed by `./setup.sh`) runs inside a
//! small ClickHouse-HTTP-compatible server (`schemas/engine/chdb_http.py`, embedded in this
//! binary). flywheel talks to it through the same HTTP + RowBinary path as to a production
//! server. One engine owns one data directory; its state file (`engine.json`) says where it
//! listens, so every flywheel process finds the running engine from the data directory alone.
//!
//! The engine requires a password, as a server would: any local user could otherwise read the
//! API keys or insert one. It is generated at the first start, kept in `<data>/password`
//! (mode 0600, so only the owner reads it) and the same over restarts; flywheel reads it with
//! the state file, and [`EngineState::client_url`] carries it for other processes.
//!
//! When `FLYWHEEL_CLICKHOUSE_URL` is set none of this is used.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;

use crate::config::ClickHouseConfig;

/// The server script, embedded so that the binary and the script it runs never disagree.
pub const SERVER_SCRIPT: &str = include_str!("../engine/chdb_http.py");
pub const STATE_FILE: &str = "engine.json";
pub const LOG_FILE: &str = "engine.log";
pub const PASSWORD_FILE: &str = "password";
/// The engine's one user, as on a fresh ClickHouse server.
pub const USER: &str = "default";
pub const DEFAULT_PORT: u16 = 8123;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(
        "the local ClickHouse engine needs Python with chdb-core, not found at {0}: run ./setup.sh, \
         or set FLYWHEEL_PYTHON to a Python that has chdb-core, or FLYWHEEL_CLICKHOUSE_URL to a ClickHouse server"
    )]
    PythonMissing(PathBuf),
    #[error("a flywheel engine already runs on {data_dir} (pid {pid}, {url}); stop it with `flywheel clickhouse stop --data {data_dir}`")]
    AlreadyRunning { data_dir: String, pid: u32, url: String },
    #[error("the local engine did not start: {reason} (log: {log})")]
    StartFailed { reason: String, log: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let context = context.into();
    move |source| EngineError::Io { context, source }
}

/// What a running engine wrote into its state file, and its password.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct EngineState {
    pub pid: u32,
    pub host: String,
    pub port: u16,
    /// Where it listens, without credentials: safe to print.
    pub url: String,
    pub engine: String,
    /// From `<data>/password`, not from the state file.
    #[serde(skip)]
    pub password: String,
}

impl EngineState {
    /// The URL with the engine's credentials, for `FLYWHEEL_CLICKHOUSE_URL` or `[clickhouse] url`.
    pub fn client_url(&self) -> String {
        if self.password.is_empty() {
            return self.url.clone();
        }
        match self.url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{USER}:{}@{rest}", self.password),
            None => self.url.clone(),
        }
    }
}

/// flywheel's own directory: `FLYWHEEL_HOME`, else `$XDG_DATA_HOME/flywheel`, else
/// `~/.local/share/flywheel`. The setup command installs the Python environment here.
pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLYWHEEL_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("flywheel");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/flywheel")
}

/// Where flywheel keeps data (the local engine's databases, the collector's write-ahead log):
/// `FLYWHEEL_DATA_DIR`, else [`home`]. Apart from the install (the engine's Python, the
/// embedding model), so that data can live on its own disk or volume and an install can be
/// replaced without touching it.
pub fn data_home() -> PathBuf {
    match std::env::var_os("FLYWHEEL_DATA_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => home(),
    }
}

pub fn default_data_dir() -> PathBuf {
    data_home().join("clickhouse")
}

/// The Python that has chdb-core: `FLYWHEEL_PYTHON`, else the setup command's virtualenv.
pub fn python() -> Result<PathBuf, EngineError> {
    let path =
        std::env::var_os("FLYWHEEL_PYTHON").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| home().join("venv/bin/python"));
    if path.exists() { Ok(path) } else { Err(EngineError::PythonMissing(path)) }
}

#[derive(Debug, Clone)]
pub struct StartOptions {
    pub data_dir: PathBuf,
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// Stop the engine when the starting process exits (test runs); otherwise it runs in the
    /// background until `flywheel clickhouse stop`.
    pub exit_with_parent: bool,
    pub timeout: Duration,
    /// Extra environment of the engine process (e.g. `FLYWHEEL_ENGINE_DEBUG=1`).
    pub env: Vec<(String, String)>,
}

impl StartOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StartOptions {
            data_dir: data_dir.into(),
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            exit_with_parent: false,
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }
}

/// A started engine. Dropping it leaves a background engine running; an engine started with
/// `exit_with_parent` is killed on drop.
#[derive(Debug)]
pub struct RunningEngine {
    pub state: EngineState,
    pub data_dir: PathBuf,
    child: Option<Child>,
    kill_on_drop: bool,
}

impl RunningEngine {
    /// The URL with the engine's credentials (see [`EngineState::client_url`]).
    pub fn url(&self) -> String {
        self.state.client_url()
    }

    /// Stops the engine and waits for it to release its data directory.
    pub fn stop(mut self) -> Result<(), EngineError> {
        self.kill_on_drop = false;
        stop_pid(self.state.pid, Duration::from_secs(30));
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        Ok(())
    }
}

impl Drop for RunningEngine {
    fn drop(&mut self) {
        if self.kill_on_drop
            && let Some(mut child) = self.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts an engine on `opts.data_dir` and waits until it answers queries.
pub fn start(opts: &StartOptions) -> Result<RunningEngine, EngineError> {
    if let Some(state) = status(&opts.data_dir) {
        return Err(EngineError::AlreadyRunning { data_dir: opts.data_dir.display().to_string(), pid: state.pid, url: state.url });
    }
    let python = python()?;
    std::fs::create_dir_all(&opts.data_dir).map_err(io(format!("cannot create the data directory {}", opts.data_dir.display())))?;
    let data_dir = opts.data_dir.canonicalize().map_err(io(format!("cannot resolve {}", opts.data_dir.display())))?;
    let state_path = data_dir.join(STATE_FILE);
    let _ = std::fs::remove_file(&state_path); // stale: its engine is gone (checked above)
    let password_path = ensure_password(&data_dir)?;
    let script = data_dir.join("chdb_http.py");
    std::fs::write(&script, SERVER_SCRIPT).map_err(io(format!("cannot write {}", script.display())))?;
    let log_path = data_dir.join(LOG_FILE);
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io(format!("cannot open {}", log_path.display())))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);

    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--data")
        .arg(&data_dir)
        .arg("--host")
        .arg(&opts.host)
        .arg("--port")
        .arg(opts.port.to_string())
        .arg("--state-file")
        .arg(&state_path)
        .arg("--password-file")
        .arg(&password_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("cannot share the engine log"))?)
        .stderr(log);
    cmd.envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if opts.exit_with_parent {
        cmd.arg("--exit-with-parent");
    } else {
        // Its own process group: a Ctrl-C meant for the CLI must not stop the background engine.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    }
    let mut child = cmd.spawn().map_err(io(format!("cannot run {}", python.display())))?;

    let deadline = Instant::now() + opts.timeout;
    loop {
        if let Some(exit) = child.try_wait().map_err(io("cannot watch the engine process"))? {
            let tail = log_tail(&log_path, log_start);
            let reason = if tail.contains("No module named") {
                format!("chdb-core is not installed for {} (run ./setup.sh)", python.display())
            } else if exit.code() == Some(3) {
                format!("the data directory {} is locked by another process", data_dir.display())
            } else {
                format!("{exit}: {}", tail.lines().last().unwrap_or("no output"))
            };
            return Err(EngineError::StartFailed { reason, log: log_path.display().to_string() });
        }
        if let Some(state) = read_state(&data_dir)
            && state.pid == child.id()
            && ping(&state.host, state.port)
        {
            return Ok(RunningEngine { state, data_dir, child: Some(child), kill_on_drop: opts.exit_with_parent });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(EngineError::StartFailed {
                reason: format!("no answer within {:?}", opts.timeout),
                log: log_path.display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The running engine of `data_dir`, if there is one that answers.
pub fn status(data_dir: &Path) -> Option<EngineState> {
    let state = read_state(data_dir)?;
    (pid_alive(state.pid) && ping(&state.host, state.port)).then_some(state)
}

/// Stops the engine of `data_dir`; returns what was stopped, or `None` if nothing ran.
pub fn stop(data_dir: &Path) -> Result<Option<EngineState>, EngineError> {
    let Some(state) = read_state(data_dir) else { return Ok(None) };
    if !pid_alive(state.pid) {
        let _ = std::fs::remove_file(data_dir.join(STATE_FILE));
        return Ok(None);
    }
    stop_pid(state.pid, Duration::from_secs(30));
    let _ = std::fs::remove_file(data_dir.join(STATE_FILE));
    Ok(Some(state))
}

/// The engine of `data_dir`, started in the background on a free port if none runs.
pub fn ensure_running(data_dir: &Path) -> Result<EngineState, EngineError> {
    if let Some(state) = status(data_dir) {
        return Ok(state);
    }
    let opts = StartOptions { port: 0, ..StartOptions::new(data_dir) };
    Ok(start(&opts)?.state.clone())
}

/// The ClickHouse URL to use: the configured server if any, else the local engine in the
/// default data directory (started if needed).
pub fn resolve_url(cfg: &ClickHouseConfig) -> Result<String, EngineError> {
    match &cfg.url {
        Some(url) => Ok(url.clone()),
        None => {
            let state = ensure_running(&default_data_dir())?;
            tracing::info!(url = %state.url, "using the local ClickHouse engine");
            Ok(state.client_url())
        }
    }
}

fn read_state(data_dir: &Path) -> Option<EngineState> {
    let text = std::fs::read_to_string(data_dir.join(STATE_FILE)).ok()?;
    let mut state: EngineState = serde_json::from_str(&text).ok()?;
    state.password = std::fs::read_to_string(data_dir.join(PASSWORD_FILE)).map(|p| p.trim().to_string()).unwrap_or_default();
    Some(state)
}

/// The engine's password file: kept when it holds one, else created with 32 random hex
/// characters, readable by its owner only.
fn ensure_password(data_dir: &Path) -> Result<PathBuf, EngineError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = data_dir.join(PASSWORD_FILE);
    let existing = std::fs::read_to_string(&path).map(|p| p.trim().to_string()).unwrap_or_default();
    if existing.is_empty() {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(io("cannot read /dev/urandom for the engine's password"))?;
        let tmp = data_dir.join(format!("{PASSWORD_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(format!("cannot create {}", tmp.display())))?;
        file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io(format!("cannot write {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("cannot create {}", path.display())))?;
    } else {
        // A copy or an old umask may have opened it up: only the owner may read a password.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(io(format!("cannot restrict {} to its owner", path.display())))?;
    }
    Ok(path)
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn stop_pid(pid: u32, timeout: Duration) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let pid = nix::unistd::Pid::from_raw(raw);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    while pid_alive(raw as u32) && Instant::now() < deadline {
        // Reap it if it is our child, so that it does not linger as a zombie that looks alive.
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(50));
    }
    if pid_alive(raw as u32) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

/// `GET /ping` answered with `Ok.`: the server accepts queries.
pub fn ping(host: &str, port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((host, port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(format!("GET /ping HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") && answer.ends_with("Ok.\n")
}

fn log_tail(path: &Path, from: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(0).min(text.len());
    String::from_utf8_lossy(&text[start..]).trim().to_string()
}
