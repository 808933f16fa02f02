//! flywheel's analyzer: from failing interactions to failure patterns and eval cases.
//!
//! Contract (DESIGN.md, Analyzer): detect failures with rules kept as data, build features,
//! embed locally, cluster deterministically, label and track patterns across runs, then export
//! eval cases and the weekly report. No LLM call is needed and the same data gives the same
//! patterns.
//!
//! Status: lands with issues #6 and #7.

pub mod export;
pub mod report;
