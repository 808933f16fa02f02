//! Versioned, append-only schema migrations (`schemas/sql/NNNN_name.sql`).
//!
//! `migrate` is idempotent: it creates the database and the `schema_migrations` ledger if
//! needed, applies each migration not yet recorded (statements are `IF NOT EXISTS`, so a run
//! interrupted half-way is safe to repeat), refuses to continue if an applied migration was
//! edited since, then brings each table's TTL in line with the configured retention.
//!
//! With a cluster name, tables are created `ON CLUSTER` as `Replicated*MergeTree` tables named
//! `<table>_local`, and `<table>` becomes a `Distributed` table over them: every query in
//! flywheel stays the same on one node and on a cluster.

use std::sync::LazyLock;

use clickhouse::Row;
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Retention;
use crate::error::StoreError;
use crate::store::Store;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Append only: an applied migration must never change.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../sql/0001_initial.sql") },
    Migration { version: 2, name: "log_records", sql: include_str!("../sql/0002_log_records.sql") },
    Migration { version: 3, name: "analysis", sql: include_str!("../sql/0003_analysis.sql") },
    Migration { version: 4, name: "pattern_names", sql: include_str!("../sql/0004_pattern_names.sql") },
    Migration { version: 5, name: "token_keys", sql: include_str!("../sql/0005_token_keys.sql") },
    Migration { version: 6, name: "error_class", sql: include_str!("../sql/0006_error_class.sql") },
    Migration { version: 7, name: "pattern_lifecycle", sql: include_str!("../sql/0007_pattern_lifecycle.sql") },
    Migration { version: 8, name: "alerts_sent", sql: include_str!("../sql/0008_alerts_sent.sql") },
];

#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    pub cluster: Option<String>,
    /// The retention new tables are created with.
    pub retention: Retention,
    /// Whether existing tables' TTLs are changed to `retention`: only `flywheel migrate` does.
    /// Every other command migrates too (to create missing tables), and a shell without the
    /// configuration file would otherwise shorten a retention someone set — and the next
    /// merges would delete the data past it.
    pub change_retention: bool,
}

#[derive(Debug, Default, PartialEq)]
pub struct MigrationReport {
    pub database: String,
    /// `(version, name)` of the migrations applied by this run.
    pub applied: Vec<(u32, String)>,
    /// Migrations that were already recorded.
    pub already_applied: usize,
    /// `(table, old days, new days)` for each TTL changed by this run.
    pub retention_changes: Vec<(String, u32, u32)>,
}

impl Migration {
    /// A short fingerprint of the template, recorded when applied. Retention values and the
    /// cluster name are rendered in later, so configuration changes do not alter it.
    pub fn checksum(&self) -> String {
        hex::encode(&Sha256::digest(self.sql.as_bytes())[..8])
    }
}

static RETENTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\{\{retention:([a-z_]+)\}\}").unwrap());
static CREATE_TABLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)^CREATE TABLE IF NOT EXISTS\s+([A-Za-z_][A-Za-z0-9_]*)\s*(.*)$").unwrap());
static ALTER_TABLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?is)^ALTER TABLE\s+([A-Za-z_][A-Za-z0-9_]*)\s+(.*)$").unwrap());
static ENGINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"ENGINE\s*=\s*(\w*MergeTree)").unwrap());
static TTL_DAYS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"TTL toDateTime\((\w+)\) \+ toIntervalDay\((\d+)\)").unwrap());

/// Renders a migration into the statements to run, in order.
pub fn render(migration: &Migration, database: &str, cluster: Option<&str>, retention: &Retention) -> Result<Vec<String>, StoreError> {
    let without_comments: String = migration.sql.lines().filter(|l| !l.trim_start().starts_with("--")).map(|l| format!("{l}\n")).collect();
    let mut missing = None;
    let text = RETENTION.replace_all(&without_comments, |c: &regex::Captures| match retention_key(&c[1]).and_then(|k| retention.days(k)) {
        Some(days) => days.to_string(),
        None => {
            missing = Some(c[1].to_string());
            String::new()
        }
    });
    if let Some(table) = missing {
        return Err(StoreError::Config(format!("migration {} asks for the retention of unknown table `{table}`", migration.version)));
    }
    let mut out = Vec::new();
    for statement in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        match cluster {
            None => out.push(statement.to_string()),
            Some(cluster) => out.extend(
                on_cluster(statement, database, cluster)
                    .map_err(|e| StoreError::Config(format!("migration {} cannot run on a cluster: {e}", migration.version)))?,
            ),
        }
    }
    Ok(out)
}

/// Which retention setting governs a table's TTL.
fn retention_key(table: &str) -> Option<&'static str> {
    match table {
        "spans" | "log_records" => Some("spans"),
        "llm_calls" | "contents" => Some("llm_calls"),
        "signals" => Some("signals"),
        "failures" | "pattern_members" | "embeddings" => Some("failures"),
        _ => None,
    }
}

fn on_cluster(statement: &str, database: &str, cluster: &str) -> Result<Vec<String>, String> {
    // A column added to a table is added to its local tables and to the Distributed front.
    if let Some(c) = ALTER_TABLE.captures(statement) {
        let (table, rest) = (&c[1], &c[2]);
        return Ok(vec![
            format!("ALTER TABLE {table}_local ON CLUSTER `{cluster}` {rest}"),
            format!("ALTER TABLE {table} ON CLUSTER `{cluster}` {rest}"),
        ]);
    }
    let Some(c) = CREATE_TABLE.captures(statement) else {
        return Err(format!(
            "only CREATE TABLE IF NOT EXISTS and ALTER TABLE are rendered for clusters, got `{}`",
            statement.lines().next().unwrap_or("")
        ));
    };
    let (table, rest) = (&c[1], &c[2]);
    let local = format!("{table}_local");
    let rest = ENGINE.replace(rest, "ENGINE = Replicated$1");
    // Rows are sharded by their sorting key: a ReplacingMergeTree replaces a row only by one of
    // the same key on the same shard (a call completed later by the storage join, a pattern
    // rewritten by the next analysis), and `FINAL` never merges across shards.
    let key = sorting_key(&rest).ok_or_else(|| format!("no ORDER BY in the statement creating `{table}`"))?;
    let shard = if key.starts_with('(') { format!("cityHash64{key}") } else { format!("cityHash64({key})") };
    Ok(vec![
        format!("CREATE TABLE IF NOT EXISTS {local} ON CLUSTER `{cluster}` {rest}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {table} ON CLUSTER `{cluster}` AS {local} ENGINE = Distributed(`{cluster}`, `{database}`, {local}, {shard})"
        ),
    ])
}

/// The expression after `ORDER BY`: a parenthesised tuple, or one column.
fn sorting_key(statement: &str) -> Option<&str> {
    let rest = statement[statement.find("ORDER BY")? + "ORDER BY".len()..].trim_start();
    if !rest.starts_with('(') {
        return rest.split(|c: char| c.is_whitespace() || c == ';').next().filter(|k| !k.is_empty());
    }
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[derive(Row, Deserialize)]
struct Applied {
    version: u32,
    name: String,
    checksum: String,
}

#[derive(Row, Deserialize)]
struct TableDdl {
    name: String,
    create_table_query: String,
}

/// Applies every pending migration to the store's database. Safe to run any number of times.
pub async fn migrate(store: &Store, options: &MigrateOptions) -> Result<MigrationReport, StoreError> {
    options.retention.validate().map_err(StoreError::Config)?;
    let database = store.database().to_string();
    let cluster = options.cluster.as_deref();
    let on_cluster = cluster.map(|c| format!(" ON CLUSTER `{c}`")).unwrap_or_default();
    store.with_database("default").execute(&format!("CREATE DATABASE IF NOT EXISTS `{database}`{on_cluster}")).await?;
    let ledger_engine = if cluster.is_some() { "ReplicatedReplacingMergeTree(applied_at)" } else { "ReplacingMergeTree(applied_at)" };
    store
        .execute(&format!(
            "CREATE TABLE IF NOT EXISTS schema_migrations{on_cluster} (version UInt32, name String, checksum String, \
             applied_at DateTime64(9, 'UTC')) ENGINE = {ledger_engine} ORDER BY version"
        ))
        .await?;

    let applied: Vec<Applied> =
        store.query("SELECT version, name, checksum FROM schema_migrations FINAL ORDER BY version").fetch_all().await?;
    let mut report = MigrationReport { database, ..Default::default() };
    for migration in MIGRATIONS {
        if let Some(done) = applied.iter().find(|a| a.version == migration.version) {
            if done.checksum != migration.checksum() {
                return Err(StoreError::MigrationChanged {
                    version: migration.version,
                    name: done.name.clone(),
                    applied: done.checksum.clone(),
                    current: migration.checksum(),
                });
            }
            report.already_applied += 1;
            continue;
        }
        for statement in render(migration, store.database(), cluster, &options.retention)? {
            store.execute(&statement).await?;
        }
        store
            .query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, now64(9))")
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .execute()
            .await?;
        tracing::info!(version = migration.version, name = migration.name, "migration applied");
        report.applied.push((migration.version, migration.name.to_string()));
    }
    if options.change_retention {
        report.retention_changes = apply_retention(store, cluster, &options.retention).await?;
    }
    Ok(report)
}

/// Brings each table's TTL to the configured number of days. Only metadata changes: existing
/// parts are not rewritten (`materialize_ttl_after_modify = 0`), they expire as parts are merged
/// or dropped whole (`ttl_only_drop_parts`).
async fn apply_retention(store: &Store, cluster: Option<&str>, retention: &Retention) -> Result<Vec<(String, u32, u32)>, StoreError> {
    let tables: Vec<TableDdl> = store
        .query("SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() ORDER BY name")
        .fetch_all()
        .await?;
    let mut changes = Vec::new();
    for t in tables {
        let base = t.name.strip_suffix("_local").unwrap_or(&t.name);
        if cluster.is_some() && !t.name.ends_with("_local") {
            continue; // Distributed tables hold no data and no TTL
        }
        let (Some(key), Some(c)) = (retention_key(base), TTL_DAYS.captures(&t.create_table_query)) else { continue };
        let Some(want) = retention.days(key) else { continue };
        let have: u32 = c[2].parse().unwrap_or(0);
        if have == want {
            continue;
        }
        let on_cluster = cluster.map(|c| format!(" ON CLUSTER `{c}`")).unwrap_or_default();
        store
            .query(&format!("ALTER TABLE {}{on_cluster} MODIFY TTL toDateTime({}) + toIntervalDay({want})", t.name, &c[1]))
            .with_setting("materialize_ttl_after_modify", "0")
            .execute()
            .await?;
        changes.push((t.name.clone(), have, want));
    }
    Ok(changes)
}

#[derive(Row, Deserialize)]
struct TableInfo {
    name: String,
    engine: String,
    total_rows: Option<u64>,
}

/// A human summary of a migration run and of the tables it left, for `flywheel migrate`.
pub async fn describe(store: &Store, report: &MigrationReport) -> Result<String, StoreError> {
    use std::fmt::Write;
    let version = store.server_version().await?;
    let tables: Vec<TableInfo> = store
        .query("SELECT name, engine, total_rows FROM system.tables WHERE database = currentDatabase() ORDER BY name")
        .fetch_all()
        .await?;
    let mut out = String::new();
    let _ = writeln!(out, "database `{}` on {} (ClickHouse {version})", report.database, store.url());
    for (v, name) in &report.applied {
        let _ = writeln!(out, "applied migration {v:04} {name}");
    }
    if report.applied.is_empty() {
        let _ = writeln!(out, "schema up to date ({} migrations already applied)", report.already_applied);
    }
    for (table, old, new) in &report.retention_changes {
        let _ = writeln!(out, "retention of {table}: {old} -> {new} days");
    }
    for t in tables {
        let _ = writeln!(out, "  {:<18} {:<30} {:>10} rows", t.name, t.engine, t.total_rows.unwrap_or(0));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_retention_per_table() {
        let retention = Retention { spans: 7, ..Retention::default() };
        let statements = render(&MIGRATIONS[0], "flywheel", None, &retention).unwrap();
        let spans = statements.iter().find(|s| s.contains("TABLE IF NOT EXISTS spans")).unwrap();
        assert!(spans.contains("toIntervalDay(7)"), "{spans}");
        let calls = statements.iter().find(|s| s.contains("TABLE IF NOT EXISTS llm_calls")).unwrap();
        assert!(calls.contains("toIntervalDay(90)"), "{calls}");
        assert!(statements.iter().all(|s| !s.contains("{{")));
    }

    #[test]
    fn every_table_orders_by_project_first() {
        for s in MIGRATIONS.iter().flat_map(|m| render(m, "flywheel", None, &Retention::default()).unwrap()) {
            if !s.starts_with("CREATE TABLE") {
                continue;
            }
            let order = s.split("ORDER BY").nth(1).unwrap_or_else(|| panic!("no ORDER BY in {s}"));
            assert!(order.trim_start().starts_with("(project_id"), "{s}");
        }
    }

    #[test]
    fn cluster_rendering_makes_replicated_local_tables_and_distributed_fronts() {
        let statements = render(&MIGRATIONS[0], "fw", Some("prod"), &Retention::default()).unwrap();
        assert_eq!(statements.len(), 2 * MIGRATIONS[0].sql.matches("CREATE TABLE").count(), "every table of migration 1, twice");
        let local = &statements[0];
        assert!(local.starts_with("CREATE TABLE IF NOT EXISTS spans_local ON CLUSTER `prod`"), "{local}");
        assert!(local.contains("ENGINE = ReplicatedReplacingMergeTree(ingested_at)"), "{local}");
        assert_eq!(
            statements[1],
            "CREATE TABLE IF NOT EXISTS spans ON CLUSTER `prod` AS spans_local ENGINE = Distributed(`prod`, `fw`, spans_local, cityHash64(project_id, trace_id, span_id))"
        );
        // A call rewritten later (its log events joined in storage) lands on its first row's shard.
        let calls = statements.iter().find(|s| s.starts_with("CREATE TABLE IF NOT EXISTS llm_calls ")).unwrap();
        assert!(calls.ends_with("cityHash64(project_id, toStartOfHour(start_time), trace_id, span_id))"), "{calls}");
    }

    #[test]
    fn columns_added_on_a_cluster_reach_local_tables_and_fronts() {
        let statements = render(&MIGRATIONS[5], "fw", Some("prod"), &Retention::default()).unwrap();
        assert_eq!(
            statements[0],
            "ALTER TABLE llm_calls_local ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS error_class LowCardinality(String) DEFAULT '' AFTER error_message"
        );
        assert!(statements[1].starts_with("ALTER TABLE llm_calls ON CLUSTER `prod` ADD COLUMN"), "{}", statements[1]);
        assert_eq!(statements.len(), 4);
    }

    #[test]
    fn checksums_are_stable_and_distinct() {
        assert_eq!(MIGRATIONS[0].checksum(), MIGRATIONS[0].checksum());
        assert_eq!(MIGRATIONS[0].checksum().len(), 16);
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "versions must increase: {versions:?}");
    }
}
