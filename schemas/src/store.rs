//! The storage boundary: every ClickHouse round trip of flywheel goes through [`Store`].
//!
//! It wraps the official `clickhouse` crate (HTTP, RowBinary with names and types, schema
//! validation on, LZ4 compression) and turns its errors into [`StoreError`]s that carry the
//! statement at fault and say how to fix the usual causes.

use clickhouse::query::Query;
use clickhouse::sql::Bind;
use clickhouse::{Client, RowOwned, RowRead, RowWrite};
use serde::Serialize;

use crate::config::{ClickHouseConfig, StorageConfig};
use crate::error::StoreError;

/// Rows per INSERT statement when a caller hands over more: large enough that the engine
/// writes few parts (each INSERT makes one part per partition), small enough to bound memory.
pub const DEFAULT_BATCH_ROWS: usize = 100_000;

#[derive(Clone)]
pub struct Store {
    client: Client,
    url: String,
    database: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).field("database", &self.database).finish()
    }
}

/// Connects to the configured server, or to the local engine when none is configured (starting
/// it if needed), and checks that it answers.
pub async fn open(cfg: &StorageConfig) -> Result<Store, StoreError> {
    let clickhouse = cfg.clickhouse.clone();
    let url = tokio::task::spawn_blocking(move || crate::engine::resolve_url(&clickhouse))
        .await
        .map_err(|e| StoreError::Config(format!("engine start-up task failed: {e}")))??;
    let store = Store::new(&url, &cfg.clickhouse);
    store.ping().await?;
    Ok(store)
}

impl Store {
    /// A handle on `url` (the server to use, already resolved: see `engine::resolve_url`) with the
    /// database and credentials of `cfg`. No I/O happens until the first query.
    pub fn new(url: &str, cfg: &ClickHouseConfig) -> Store {
        // Batched lookups bind thousands of ids into one statement (`has([...], trace_id)`):
        // allow statements beyond the 256 KiB default rather than fail on a large batch.
        let mut client = Client::default().with_url(url).with_database(&cfg.database).with_setting("max_query_size", "16777216");
        if let Some(user) = &cfg.user {
            client = client.with_user(user);
        }
        if let Some(password) = &cfg.password {
            client = client.with_password(password);
        }
        Store { client, url: url.to_string(), database: cfg.database.clone() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The underlying client, for the rare caller that needs a crate feature not wrapped here.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The same server and credentials, on another database.
    pub fn with_database(&self, database: &str) -> Store {
        Store { client: self.client.clone().with_database(database), url: self.url.clone(), database: database.to_string() }
    }

    /// Succeeds when the server answers a query (on the `default` database, so that a missing
    /// flywheel database is reported by `migrate`, not here).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let one: u8 = self
            .client
            .clone()
            .with_database("default")
            .query("SELECT 1")
            .fetch_one()
            .await
            .map_err(|e| StoreError::from_client(&self.url, "SELECT 1", e))?;
        debug_assert_eq!(one, 1);
        Ok(())
    }

    /// The server's version string, e.g. `26.9.2.1`.
    pub async fn server_version(&self) -> Result<String, StoreError> {
        self.query("SELECT version()").fetch_one::<String>().await
    }

    /// Runs a statement that returns no rows (DDL, `INSERT … SELECT`, `SET`, …).
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.query(sql).execute().await
    }

    /// Starts a typed query. `?` placeholders are bound client-side with [`StoreQuery::bind`];
    /// `?fields` expands to the columns of the row type.
    pub fn query(&self, sql: &str) -> StoreQuery<'_> {
        StoreQuery { store: self, sql: sql.to_string(), inner: self.client.query(sql) }
    }

    /// Inserts `rows` into `table`, in INSERT statements of at most [`DEFAULT_BATCH_ROWS`] rows.
    /// Rows are validated against the live table schema on the first insert per table.
    pub async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: RowOwned + RowWrite + Serialize,
    {
        self.insert_batched(table, rows, DEFAULT_BATCH_ROWS, None).await
    }

    /// Like [`Store::insert`], with the batch size chosen by the caller and an optional
    /// deduplication token: ClickHouse ignores a second insert of the same block with the same
    /// token, which makes a replayed batch harmless (the token gets a per-batch suffix).
    pub async fn insert_batched<T>(&self, table: &str, rows: &[T], batch_rows: usize, dedup_token: Option<&str>) -> Result<(), StoreError>
    where
        T: RowOwned + RowWrite + Serialize,
    {
        for (i, batch) in rows.chunks(batch_rows.max(1)).enumerate() {
            let err = |e| StoreError::from_insert(&self.url, table, e);
            let mut insert = self.client.insert::<T>(table).await.map_err(err)?;
            if let Some(token) = dedup_token {
                insert = insert.with_setting("insert_deduplication_token", format!("{token}-{i}"));
            }
            for row in batch {
                insert.write(row).await.map_err(err)?;
            }
            insert.end().await.map_err(err)?;
        }
        Ok(())
    }
}

/// A query bound to a [`Store`]; errors carry the statement.
pub struct StoreQuery<'a> {
    store: &'a Store,
    sql: String,
    inner: Query,
}

impl StoreQuery<'_> {
    pub fn bind(mut self, value: impl Bind) -> Self {
        self.inner = self.inner.bind(value);
        self
    }

    /// A server-side `{name:Type}` parameter.
    pub fn param(mut self, name: &str, value: impl Serialize) -> Self {
        self.inner = self.inner.param(name, value);
        self
    }

    pub fn with_setting(mut self, name: &str, value: impl Into<String>) -> Self {
        self.inner = self.inner.with_setting(name, value);
        self
    }

    pub async fn execute(self) -> Result<(), StoreError> {
        let (store, sql) = (self.store, self.sql);
        self.inner.execute().await.map_err(|e| StoreError::from_client(&store.url, &sql, e))
    }

    pub async fn fetch_all<T: RowOwned + RowRead>(self) -> Result<Vec<T>, StoreError> {
        let (store, sql) = (self.store, self.sql);
        self.inner.fetch_all::<T>().await.map_err(|e| StoreError::from_client(&store.url, &sql, e))
    }

    pub async fn fetch_one<T: RowOwned + RowRead>(self) -> Result<T, StoreError> {
        let (store, sql) = (self.store, self.sql);
        self.inner.fetch_one::<T>().await.map_err(|e| StoreError::from_client(&store.url, &sql, e))
    }

    pub async fn fetch_optional<T: RowOwned + RowRead>(self) -> Result<Option<T>, StoreError> {
        let (store, sql) = (self.store, self.sql);
        self.inner.fetch_optional::<T>().await.map_err(|e| StoreError::from_client(&store.url, &sql, e))
    }

    /// Streams rows to `each` without collecting them: for scans too large to hold in memory.
    pub async fn for_each<T, F>(self, mut each: F) -> Result<u64, StoreError>
    where
        T: RowOwned + RowRead,
        F: FnMut(T),
    {
        let mut cursor = self.inner.fetch::<T>().map_err(|e| StoreError::from_client(&self.store.url, &self.sql, e))?;
        let mut n = 0;
        loop {
            match cursor.next().await {
                Ok(Some(row)) => {
                    each(row);
                    n += 1;
                }
                Ok(None) => return Ok(n),
                Err(e) => return Err(StoreError::from_client(&self.store.url, &self.sql, e)),
            }
        }
    }
}
