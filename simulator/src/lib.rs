//! flywheel's traffic simulator (`flywheel simulate`): a seeded LLM application that sends real
//! OTLP traces and user signals to a collector, with injected failures and a ground-truth file
//! to score the analyzer against.
//!
//! # Contract
//!
//! * **What it plays.** Two features of one application ("Northwind Outfitters"): a
//!   `support_assistant` (agent with tools: orders, refunds, shipping, account, billing),
//!   instrumented with the OTel GenAI 1.37 conventions, and a `coding_assistant` (Rust, Python,
//!   SQL questions with code), instrumented with OpenInference. Many users, multi-turn sessions
//!   with the conversation history in the input messages, several models and providers.
//! * **How it sends.** Spans are made with the OpenTelemetry Rust SDK and exported with the
//!   OTLP HTTP/protobuf exporter to `{endpoint}/v1/traces` (`Authorization: Bearer KEY`), whole
//!   traces per request, as fast as the collector accepts them. Timestamps are explicit and
//!   spread over the simulated window (`--duration`, ending at the base time). Reactions go to
//!   `{endpoint}/v1/signals` in JSON batches of up to 100; a collector without that API (404)
//!   gets a warning, not a failure.
//! * **Failures.** [`FailureMode`]s are injected into `failure_rate` of the interactions, mixed
//!   by configurable weights ([`FailureMix`]), concentrated on some models, each with varied
//!   wording; users react to them ([`reactions`]), and healthy traffic has rare noise signals. A
//!   regenerate or retry also produces a second, near-identical interaction in the session,
//!   whether or not the app reports the signal.
//! * **Deterministic.** Everything (texts, ids, relative timestamps, signals) follows from the
//!   seed; the only other input is the base time ("now" unless pinned), so two runs with the
//!   same seed and base time write identical truth files and send identical data. Trace ids
//!   depend on the seed only: to add more traffic to one project, change the seed.
//!
//! # Truth file
//!
//! JSON Lines. One line per LLM call, in order of interaction start:
//!
//! ```json
//! {"trace_id":"…32 hex…","span_id":"…16 hex…","session_id":"conv_…","user_id":"u_…",
//!  "feature":"support_assistant","convention":"otel_genai_1.37","model":"gpt-4o-mini",
//!  "provider":"openai","call_index":1,"failure_mode":"wrong_language",
//!  "trace_failure_mode":"wrong_language","signals":["thumbs_down"],
//!  "reactions":["thumbs_down"],"response_id":"chatcmpl-…","follow_up_of":null,
//!  "timestamp":"2025-06-02T09:14:03.52Z"}
//! ```
//!
//! `failure_mode` is the failure injected into that call (or `null`); `trace_failure_mode` the
//! failure of its interaction, on every call of the trace (a bad tool call fails the first
//! call, the apology that follows is the second). `signals` are the kinds sent to the signals
//! API about the call, `reactions` everything the user did, reported or not. The last line is
//! `{"summary": {...}}`: seed, base time, window, counts of sessions, users, interactions,
//! calls, failing interactions per mode, signals per kind, and the settings. See
//! docs/simulator.md.

pub mod catalog;
pub mod catalogue;
pub mod coding;
pub mod compose;
pub mod error;
pub mod failure;
pub mod message;
pub mod options;
pub mod plan;
pub mod reactions;
pub mod repeated;
pub mod run;
pub mod scenario;
pub mod signals;
pub mod spans;
pub mod support;
pub mod truth;
pub mod turn;
pub mod wording;

pub use error::SimulateError;
pub use failure::{FailureMix, FailureMode};
pub use options::{SimulateOptions, Volume, parse_base_time, parse_duration};
pub use run::{Summary, run};
pub use scenario::Scenario;
