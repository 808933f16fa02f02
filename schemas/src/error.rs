//! Errors of the storage boundary. Each message says what failed and what to do about it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "cannot reach ClickHouse at {url}: {source}. Start the local engine with `flywheel clickhouse start` \
         or set FLYWHEEL_CLICKHOUSE_URL to a running server"
    )]
    Unreachable {
        url: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("ClickHouse rejected `{context}`: {message}")]
    Query { context: String, message: String },
    #[error("rows of `{table}` do not match the table's schema: {message}. Run `flywheel migrate`")]
    Schema { table: String, message: String },
    #[error(
        "migration {version} ({name}) was changed after it was applied (checksum {applied} != {current}); migrations are append-only: add a new one instead"
    )]
    MigrationChanged { version: u32, name: String, applied: String, current: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

impl StoreError {
    /// Classifies a client error: network failures say how to get a server, server exceptions
    /// keep ClickHouse's own text (which names the column, table or syntax at fault).
    pub(crate) fn from_client(url: &str, context: &str, err: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as E;
        match err {
            E::Network(_) | E::TimedOut => StoreError::Unreachable { url: url.to_string(), source: err },
            E::SchemaMismatch(message) => StoreError::Schema { table: context.to_string(), message },
            E::BadResponse(message) => StoreError::Query { context: summarize(context), message: message.trim().to_string() },
            other => StoreError::Query { context: summarize(context), message: other.to_string() },
        }
    }
}

impl StoreError {
    pub(crate) fn from_insert(url: &str, table: &str, err: clickhouse::error::Error) -> Self {
        match err {
            clickhouse::error::Error::SchemaMismatch(message) => StoreError::Schema { table: table.to_string(), message },
            other => StoreError::from_client(url, &format!("INSERT INTO {table}"), other),
        }
    }
}

/// The first line of a statement, shortened: enough to recognise it in an error message.
fn summarize(sql: &str) -> String {
    let line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 120 { format!("{}…", line.chars().take(120).collect::<String>()) } else { line }
}
