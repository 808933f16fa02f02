//! flywheel's collector: the front door for LLM traces and feedback signals.
//!
//! Contract (DESIGN.md, Ingestion and Durability): OTLP/HTTP and OTLP/gRPC receivers and the
//! signals API decode requests, normalise every GenAI convention into `llm_calls` rows, keep
//! every span raw in `spans`, and acknowledge a request only once its data is durable (in the
//! write-ahead log, fsynced, or in ClickHouse). Nothing is dropped silently.
//!
//! Status: the receivers, normalisation, WAL and writer land with issues #3–#5; until then
//! `flywheel serve` says so and exits non-zero.
