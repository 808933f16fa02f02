//! The local engine's lifecycle through the real `flywheel clickhouse start|status|stop`: it
//! prints its URL, refuses a second engine on the same data, and keeps its data over a restart.

mod common;

use std::path::{Path, PathBuf};

use common::{flywheel_cmd, scratch_dir, stderr, stdout};
use flywheel_schemas::config::ClickHouseConfig;
use flywheel_schemas::migrate::{self, MigrateOptions};
use flywheel_schemas::rows::ApiKeyRow;
use flywheel_schemas::store::Store;

/// Stops the background engine of a data directory however the test ends.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = flywheel_cmd().args(["clickhouse", "stop", "--data"]).arg(&self.0).output();
    }
}

fn clickhouse(args: &[&str], data: &Path) -> std::process::Output {
    flywheel_cmd().arg("clickhouse").args(args).arg("--data").arg(data).output().unwrap()
}

fn start(data: &Path) -> String {
    let out = clickhouse(&["start", "--port", "0"], data);
    assert!(out.status.success(), "start failed: {}", stderr(&out));
    let text = stdout(&out);
    let url = text.lines().last().unwrap_or_default().to_string();
    assert!(
        url.starts_with("http://default:") && url.contains("@127.0.0.1:"),
        "the last line must be the URL with its credentials: {text}"
    );
    url
}

fn store(url: &str) -> Store {
    Store::new(url, &ClickHouseConfig { database: "lifecycle".into(), ..Default::default() }).unwrap()
}

#[tokio::test]
async fn engine_lifecycle_and_data_survive_a_restart() {
    let data = scratch_dir("lifecycle");
    let _guard = StopOnDrop(data.clone());

    let out = clickhouse(&["status"], &data);
    assert_eq!(out.status.code(), Some(3), "status of a stopped engine: {}", stdout(&out));
    assert!(stdout(&out).contains("not running"));

    let url = start(&data);
    let out = clickhouse(&["status"], &data);
    assert!(out.status.success());
    let bare = url.replace(&format!("default:{}@", password_of(&url)), "");
    assert!(stdout(&out).contains(&format!("running: {bare}")), "{}", stdout(&out));
    assert_eq!(stdout(&out).lines().last(), Some(url.as_str()), "status ends with the URL to use");
    let first_password = password_of(&url);

    // A second engine on the same data directory is refused, with the way out.
    let out = clickhouse(&["start", "--port", "0"], &data);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("already runs") && err.contains("flywheel clickhouse stop"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");

    let at = time::OffsetDateTime::now_utc().replace_nanosecond(1).unwrap();
    let key = ApiKeyRow {
        project_id: "p".into(),
        key_id: "k".into(),
        key_hash: "h".into(),
        name: "n".into(),
        created_at: at,
        revoked_at: None,
        updated_at: at,
    };
    {
        let store = store(&url);
        migrate::migrate(&store, &MigrateOptions::default()).await.unwrap();
        store.insert("api_keys", std::slice::from_ref(&key)).await.unwrap();
    }

    let out = clickhouse(&["stop"], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("stopped"), "{}", stdout(&out));
    assert_eq!(clickhouse(&["status"], &data).status.code(), Some(3));

    let url = start(&data);
    assert_eq!(password_of(&url), first_password, "the password survives a restart: configured clients keep working");
    let store = store(&url);
    let back: Vec<ApiKeyRow> = store.query("SELECT ?fields FROM api_keys").fetch_all().await.unwrap();
    assert_eq!(back, vec![key]);
    let report = migrate::migrate(&store, &MigrateOptions::default()).await.unwrap();
    assert!(report.applied.is_empty(), "the schema survived the restart too: {report:?}");
}

fn password_of(url: &str) -> String {
    url.split_once("default:").and_then(|(_, rest)| rest.split_once('@')).map(|(p, _)| p.to_string()).unwrap_or_default()
}

/// Any local user could read the API keys of an engine without credentials, or insert a key of
/// their own: the engine takes a password, kept where only its owner reads it.
#[tokio::test]
async fn the_local_engine_requires_its_password() {
    use std::os::unix::fs::PermissionsExt;
    let data = scratch_dir("engine-auth");
    let _guard = StopOnDrop(data.clone());
    let url = start(&data);
    let password = password_of(&url);
    assert_eq!(password.len(), 32, "{url}");
    let file = data.join("password");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "readable by its owner only");

    let bare = url.replace(&format!("default:{password}@"), "");
    let http = reqwest::Client::new();
    let query = |req: reqwest::RequestBuilder| async move {
        let resp = req.body("SELECT name FROM system.databases FORMAT TabSeparated").send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    // No credentials, a wrong password, another user: refused, saying where the password is.
    for req in [
        http.post(&bare),
        http.post(&bare).header("X-ClickHouse-User", "default").header("X-ClickHouse-Key", "guess"),
        http.post(&bare).basic_auth("admin", Some(&password)),
        http.post(format!("{bare}/?user=default&password=guess")),
    ] {
        let (status, body) = query(req).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("Code: 516") && body.contains(&file.display().to_string()), "{body}");
    }
    // The three ways ClickHouse takes credentials all work.
    for req in [
        http.post(&bare).header("X-ClickHouse-User", "default").header("X-ClickHouse-Key", &password),
        http.post(&bare).basic_auth("default", Some(&password)),
        http.post(format!("{bare}/?user=default&password={password}")),
    ] {
        let (status, body) = query(req).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("system"), "{body}");
    }
    // Liveness needs no credentials, as on ClickHouse.
    assert_eq!(http.get(format!("{bare}/ping")).send().await.unwrap().text().await.unwrap(), "Ok.\n");

    // flywheel's own error says what to do.
    let err = Store::new(&bare, &ClickHouseConfig::default()).unwrap().ping().await.unwrap_err().to_string();
    assert!(err.contains("refused the credentials") && err.contains("FLYWHEEL_CLICKHOUSE_PASSWORD"), "{err}");

    // Beyond loopback the engine never listens without a password.
    let out = clickhouse(&["stop"], &data);
    assert!(out.status.success());
    std::fs::write(&file, "").unwrap();
    let script = data.join("chdb_http.py");
    let python = flywheel_schemas::engine::python().unwrap();
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["--data"])
        .arg(data.join("other"))
        .args(["--host", "0.0.0.0", "--port", "0", "--password-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("without a password"), "{}", stderr(&out));
}

#[test]
fn commands_fail_with_a_reason_when_clickhouse_is_unreachable() {
    for args in [&["analyze"][..], &["patterns"], &["report"], &["export", "evals", "--all-open"]] {
        let out = flywheel_cmd().args(args).env("FLYWHEEL_CLICKHOUSE_URL", "http://127.0.0.1:9").output().unwrap();
        assert!(!out.status.success(), "{args:?} must fail without a server");
        let err = stderr(&out);
        assert!(err.starts_with("error:") && err.contains("127.0.0.1:9"), "{args:?}: {err}");
        assert!(stdout(&out).is_empty(), "{args:?} printed output it did not produce");
    }
}
