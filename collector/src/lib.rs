//! flywheel's collector: the front door for LLM traces and feedback signals.
//!
//! Contract (DESIGN.md, Ingestion and Durability): the OTLP/HTTP and OTLP/gRPC receivers decode
//! requests ([`otlp`]), keep every span raw in `spans`, normalise each model call of every GenAI
//! convention into an `llm_calls` row ([`normalize`]), and acknowledge a request only once its
//! rows are stored ([`writer`]). Nothing is dropped silently: a span refused for bad ids is
//! reported back as OTLP partial success. OTLP metrics are accepted and counted, not stored
//! ([`client_metrics`]).
//!
//! Data path: `receiver` → `otlp` (decode) → `pipeline` (normalize, redact, price, join log
//! events) → `writer` (ClickHouse).
//!
//! Read path: the same HTTP port answers project-scoped reads of patterns, failures and traces
//! (`receiver::api`), and [`mcp`] serves them to coding agents over the Model Context Protocol.

pub mod auth;
pub mod bench;
pub mod client_metrics;
pub mod config;
pub mod deadline;
pub mod expansion;
pub mod mcp;
pub mod metrics;
pub mod normalize;
pub mod otlp;
pub mod pipeline;
pub mod price;
pub mod receiver;
pub mod redact;
pub mod server;
pub mod signals;
pub mod wal;
pub mod writer;
