//! The storage contract of flywheel, shared by the collector, the analyzer and the TUI.
//!
//! * [`rows`]: one Rust type per ClickHouse table, field for field.
//! * [`migrate`]: the versioned DDL in `schemas/sql/`, applied idempotently (optionally
//!   `ON CLUSTER`, with Replicated + Distributed tables).
//! * [`store`]: the only way any crate talks to ClickHouse: connect, ping, migrate, batched
//!   inserts and typed queries, over the official `clickhouse` crate (HTTP, RowBinary, schema
//!   validation on).
//! * [`engine`]: the local ClickHouse engine used for development, the demo and CI (chDB behind
//!   a ClickHouse-HTTP-compatible server); production points [`config::ClickHouseConfig`] at a
//!   real server instead and nothing else changes.
//!
//! Non-goals: no business logic (normalisation, detection, clustering) lives here.

pub mod bench;
pub mod config;
pub mod engine;
pub mod error;
pub mod messages;
pub mod migrate;
pub mod rows;
pub mod store;

pub use config::{ClickHouseConfig, Retention};
pub use error::StoreError;
pub use store::Store;
