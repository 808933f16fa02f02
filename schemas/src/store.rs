//! The storage boundary: every ClickHouse round trip of flywheel goes through [`Store`].
//!
//! It wraps the official `clickhouse` crate (HTTP, RowBinary with names and types, schema
//! validation on, LZ4 compression unless the server is on this machine) and turns its errors into [`StoreError`]s that carry the
//! statement at fault and say how to fix the usual causes.

use std::time::Duration;

use clickhouse::query::Query;
use clickhouse::sql::Bind;
use clickhouse::{Client, RowOwned, RowRead, RowWrite};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::config::{ClickHouseConfig, StorageConfig};
use crate::error::StoreError;

/// As the `clickhouse` crate's own client: ClickHouse closes idle HTTP connections after 3 s.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// A ClickHouse URL taken apart: where (printable) and as whom (the credentials it carried).
#[derive(Debug, PartialEq)]
struct Endpoint {
    url: String,
    https: bool,
    /// The server is on this machine (a loopback address or `localhost`).
    loopback: bool,
    user: Option<String>,
    password: Option<String>,
}

impl Endpoint {
    fn parse(raw: &str) -> Result<Endpoint, StoreError> {
        let mut url = url::Url::parse(raw).map_err(|e| {
            StoreError::Config(format!("the ClickHouse URL is not a URL ({e}): write it as http://host:8123 or https://host:8443"))
        })?;
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(StoreError::Config(format!(
                    "the ClickHouse URL has scheme `{other}`: flywheel speaks ClickHouse's HTTP interface, use http://host:8123 or https://host:8443"
                )));
            }
        };
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        let decode = |part: &str| percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned();
        let user = Some(url.username()).filter(|u| !u.is_empty()).map(decode);
        let password = url.password().map(decode);
        // Both setters fail only on URLs that cannot carry credentials, which http(s) URLs can.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut printable = url.to_string();
        if url.path() == "/" && url.query().is_none() && !raw.ends_with('/') {
            printable.pop();
        }
        Ok(Endpoint { url: printable, https, loopback, user, password })
    }
}

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
    let store = Store::new(&url, &cfg.clickhouse)?;
    store.ping().await?;
    Ok(store)
}

impl Store {
    /// A handle on `url` (the server to use, already resolved: see `engine::resolve_url`) with the
    /// database and credentials of `cfg`. No I/O happens until the first query; a malformed
    /// URL or an unreadable CA file fails here.
    pub fn new(url: &str, cfg: &ClickHouseConfig) -> Result<Store, StoreError> {
        let endpoint = Endpoint::parse(url)?;
        let client = if endpoint.https {
            let tls = crate::tls::client_config(cfg.ca_file.as_deref())
                .map_err(|e| StoreError::Tls { url: endpoint.url.clone(), reason: e.to_string() })?;
            let mut connector = HttpConnector::new();
            connector.set_keepalive(Some(TCP_KEEPALIVE));
            connector.enforce_http(false);
            let connector =
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(connector);
            Client::with_http_client(HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT).build(connector))
        } else {
            if cfg.ca_file.is_some() {
                tracing::warn!(url = %endpoint.url, "a CA file is configured for ClickHouse but its URL is http://: the CA file is not used");
            }
            Client::default()
        };
        // Batched lookups bind thousands of ids into one statement (`has([...], trace_id)`):
        // allow statements beyond the 256 KiB default rather than fail on a large batch.
        // LZ4 over a network; none to a server on this machine (the local engine), where it
        // costs both sides CPU — a few percent of the collector's at ingest — and saves nothing.
        let compression = if endpoint.loopback { clickhouse::Compression::None } else { clickhouse::Compression::Lz4 };
        let mut client = client
            .with_url(&endpoint.url)
            .with_database(&cfg.database)
            .with_compression(compression)
            .with_setting("max_query_size", "16777216");
        if let Some(user) = cfg.user.as_ref().or(endpoint.user.as_ref()) {
            client = client.with_user(user);
        }
        if let Some(password) = cfg.password.as_ref().or(endpoint.password.as_ref()) {
            client = client.with_password(password);
        }
        Ok(Store { client, url: endpoint.url, database: cfg.database.clone() })
    }

    /// The server's URL, without credentials: safe to print.
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

impl Store {
    /// Inserts rows of `T` already encoded in `RowBinary` ([`crate::rowbinary::encode`]), the
    /// parts sent one after the other as one INSERT. The statement names `T`'s columns, so the
    /// table's other columns take their defaults, and a table without one of them refuses the
    /// insert (a schema mismatch, `StoreError::Schema`: run `flywheel migrate`).
    pub async fn insert_row_binary<T: clickhouse::Row>(&self, table: &str, parts: &[&[u8]]) -> Result<(), StoreError> {
        let columns: Vec<String> = T::COLUMN_NAMES.iter().map(|c| format!("`{c}`")).collect();
        let sql = format!("INSERT INTO `{table}` ({}) FORMAT RowBinary", columns.join(", "));
        let err = |e| StoreError::from_insert(&self.url, table, e);
        // The table's columns checked against `T`'s, as a typed insert does (the client fetches
        // the schema once per table and caches it): a table a migration has not reached is a
        // schema error, retried, never rows refused one by one.
        drop(self.client.insert::<T>(table).await.map_err(err)?);
        // Written through a buffer: parts are often a few KB (one request's rows), sent in
        // frames of 256 KB (compressed unless the server is local).
        let mut insert = self.client.insert_formatted_with(sql).buffered();
        for &part in parts {
            let mut part = part;
            while !part.is_empty() {
                let n = insert.write(part).await.map_err(err)?;
                part = &part[n..];
            }
        }
        insert.end().await.map_err(|e| match e {
            clickhouse::error::Error::BadResponse(m) if m.contains("NO_SUCH_COLUMN_IN_TABLE") || m.contains("Code: 16.") => {
                StoreError::Schema { table: table.to_string(), message: m }
            }
            other => err(other),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_its_credentials_and_keeps_them_out_of_messages() {
        let e = Endpoint::parse("https://reader:p%40ss%3Aw0rd@ch.example.com:8443").unwrap();
        assert_eq!(e.url, "https://ch.example.com:8443");
        assert!(e.https);
        assert_eq!((e.user.as_deref(), e.password.as_deref()), (Some("reader"), Some("p@ss:w0rd")));

        let e = Endpoint::parse("http://127.0.0.1:8123").unwrap();
        assert_eq!(e, Endpoint { url: "http://127.0.0.1:8123".into(), https: false, loopback: true, user: None, password: None });
        assert!(!Endpoint::parse("https://reader@ch.example.com:8443").unwrap().loopback);
        for local in ["http://localhost:8123", "http://127.0.0.2:8123", "http://[::1]:8123"] {
            assert!(Endpoint::parse(local).unwrap().loopback, "{local}");
        }

        for bad in ["127.0.0.1:8123", "tcp://127.0.0.1:9000", "not a url"] {
            let err = Endpoint::parse(bad).unwrap_err().to_string();
            assert!(err.contains("http://host:8123"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_store_prints_no_password() {
        let store = Store::new("http://default:s3cret@127.0.0.1:8123", &ClickHouseConfig::default()).unwrap();
        assert_eq!(store.url(), "http://127.0.0.1:8123");
        assert!(!format!("{store:?}").contains("s3cret"));
    }
}
