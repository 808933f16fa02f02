//! Errors of the storage boundary. Each message says what failed and what to do about it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "cannot reach ClickHouse at {url}: {reason}. Start the local engine with `flywheel clickhouse start` \
         or set FLYWHEEL_CLICKHOUSE_URL to a running server"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "cannot use TLS to ClickHouse at {url}: {reason}. If the server's certificate is signed by a private authority, \
         give its certificate in `ca_file` of [clickhouse] (or FLYWHEEL_CLICKHOUSE_CA_FILE)"
    )]
    Tls { url: String, reason: String },
    #[error(
        "ClickHouse at {url} refused the credentials: {message}. Set `user` and `password` of [clickhouse] \
         (FLYWHEEL_CLICKHOUSE_USER, FLYWHEEL_CLICKHOUSE_PASSWORD) or put them in the URL (http://user:password@host:port); \
         `flywheel clickhouse start` prints the local engine's URL with its password"
    )]
    Unauthorized { url: String, message: String },
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
    /// The project to work on is not known or not given: the message says which exist.
    #[error("{0}")]
    Project(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

impl StoreError {
    /// Classifies a client error: network failures say how to get a server, server exceptions
    /// keep ClickHouse's own text (which names the column, table or syntax at fault).
    pub(crate) fn from_client(url: &str, context: &str, err: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as E;
        match err {
            E::Network(_) | E::TimedOut => {
                // The top-level text of a connection error is "client error (Connect)": the
                // cause (refused, DNS, an unknown certificate authority) is further down.
                let reason = chain(&err);
                if reason.contains("certificate") || reason.contains("TLS") || reason.contains("tls") {
                    StoreError::Tls { url: url.to_string(), reason }
                } else {
                    StoreError::Unreachable { url: url.to_string(), reason }
                }
            }
            E::SchemaMismatch(message) => StoreError::Schema { table: context.to_string(), message },
            E::BadResponse(message) if message.contains("Code: 516") || message.contains("AUTHENTICATION_FAILED") => {
                StoreError::Unauthorized { url: url.to_string(), message: message.trim().to_string() }
            }
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

/// An error and its causes, each once: "client error (Connect): invalid peer certificate: UnknownIssuer".
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

/// The first line of a statement, shortened: enough to recognise it in an error message.
fn summarize(sql: &str) -> String {
    let line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 120 { format!("{}…", line.chars().take(120).collect::<String>()) } else { line }
}
