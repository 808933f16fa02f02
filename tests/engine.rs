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
    assert!(url.starts_with("http://127.0.0.1:"), "the last line must be the URL: {text}");
    url
}

fn store(url: &str) -> Store {
    Store::new(url, &ClickHouseConfig { database: "lifecycle".into(), ..Default::default() })
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
    assert!(stdout(&out).contains(&format!("running: {url}")), "{}", stdout(&out));

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
    let store = store(&url);
    let back: Vec<ApiKeyRow> = store.query("SELECT ?fields FROM api_keys").fetch_all().await.unwrap();
    assert_eq!(back, vec![key]);
    let report = migrate::migrate(&store, &MigrateOptions::default()).await.unwrap();
    assert!(report.applied.is_empty(), "the schema survived the restart too: {report:?}");
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
