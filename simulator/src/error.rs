//! What can go wrong in a simulation run, each with what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("unknown failure mode `{name}`: use one of {known}")]
    UnknownFailureMode { name: String, known: String },

    #[error("bad failure-mode weight `{item}`: write `name=weight` with a weight ≥ 0, e.g. `wrong_language=2,slow_answer=0`")]
    BadModeSpec { item: String },

    #[error("--duration: {reason}")]
    BadDuration { reason: String },

    #[error("bad base time `{value}`: {reason} (write an RFC 3339 time such as 2025-06-02T12:00:00Z)")]
    BadBaseTime { value: String, reason: String },

    #[error("bad option: {0}")]
    BadOption(String),

    #[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
    ExporterSetup { endpoint: String, reason: String },

    #[error(
        "the collector at {endpoint} refused the traces ({reason}); check that `flywheel serve` runs there and that --key (or FLYWHEEL_KEY) is a valid API key"
    )]
    Export { endpoint: String, reason: String },

    #[error("cannot reach the collector at {endpoint} ({reason}); check that `flywheel serve` runs there and listens on that address")]
    Unreachable { endpoint: String, reason: String },

    #[error(
        "cannot reach the collector at {endpoint} over TLS ({reason}); if it uses a private certificate authority, set OTEL_EXPORTER_OTLP_CERTIFICATE to the authority's PEM file"
    )]
    Tls { endpoint: String, reason: String },

    #[error("cannot reach the signals API at {url}: {reason}; check that the collector runs")]
    SignalsUnreachable { url: String, reason: String },

    #[error("the signals API at {url} refused {count} signals with status {status}: {body}")]
    SignalsRefused { url: String, count: usize, status: u16, body: String },

    #[error("cannot write the truth file {}: {source}; check that its directory exists and is writable", path.display())]
    Truth { path: PathBuf, source: std::io::Error },
}
