//! The storage contract of flywheel, shared by the collector, the analyzer and the TUI.
//!
//! * [`rows`]: one Rust type per ClickHouse table, field for field.
//! * [`migrate`]: the versioned DDL in `schemas/sql/`, applied idempotently (optionally
//!   `ON CLUSTER`, with Replicated + Distributed tables).
//! * [`store`]: the only way any crate talks to ClickHouse: connect, ping, migrate, batched
//!   inserts and typed queries, over the official `clickhouse` crate (HTTP, RowBinary, schema
//!   validation on), over `http://` or `https://` ([`tls`]: the system's roots and an optional
//!   CA file).
//! * [`rowbinary`]: rows encoded ahead of their insert, as the insert sends them (the
//!   collector's write-ahead log holds its rows so), and [`Store::insert_row_binary`] to send
//!   them.
//! * [`engine`]: the local ClickHouse engine used for development, the demo and CI (chDB behind
//!   a ClickHouse-HTTP-compatible server); production points [`config::ClickHouseConfig`] at a
//!   real server instead and nothing else changes.
//! * [`alert`]: what `flywheel watch` sends to webhooks, and the record of each delivery.
//! * [`failure`]: shared shapes of the analyzer's output (`failures.details`, a pattern's
//!   lane), read by the TUI, the export and the report with the analyzer's own types.
//! * [`read`]: the read model — patterns, failures and traces as the read API, `flywheel mcp`
//!   and `flywheel patterns --json` present them, with their project-scoped, bounded queries.
//! * [`sensitive`]: what personal data and secrets look like (the collector redacts them, the
//!   analyzer flags answers that disclose them).
//!
//! Non-goals: no business logic (normalisation, detection, clustering) lives here.

pub mod alert;
pub mod bench;
pub mod config;
pub mod engine;
pub mod error;
pub mod error_class;
pub mod failure;
pub mod lookback;
pub mod messages;
pub mod migrate;
pub mod queries;
pub mod read;
pub mod rowbinary;
pub mod rows;
pub mod sensitive;
pub mod store;
pub mod tls;

pub use config::{ClickHouseConfig, Retention};
pub use error::StoreError;
pub use store::Store;

/// The published API documents: the JSON Schema of a signals request and the OpenAPI document
/// served at `/openapi.json`.
pub mod api {
    pub const SIGNAL_SCHEMA: &str = include_str!("../api/signal.schema.json");
    pub const OPENAPI: &str = include_str!("../api/openapi.json");
    pub const ALERT_SCHEMA: &str = include_str!("../api/alert.schema.json");
}
