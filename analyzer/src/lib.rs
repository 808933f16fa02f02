//! flywheel's analyzer: from failing interactions to failure patterns and eval cases.
//!
//! Contract (DESIGN.md, Analyzer): detect failures with rules kept as data ([`rules`],
//! [`detect`]), name each one's cause when the system can ([`cause`]: error class and message
//! template, or the behaviour a rule names), describe it by its texts and facets
//! ([`features`]), represent the texts locally ([`embed`], [`represent`]), group by cause —
//! the failures only users flagged by what went wrong in the answer — deterministically
//! ([`group`], [`cluster`]), and turn each group into a [`pattern`] with a cause-first
//! [`label`], tracked ([`track`]) across runs with its [`impact`] and its [`lifecycle`] (a
//! fixed pattern that comes back is reopened as regressed), all orchestrated by [`run`];
//! then turn patterns into eval cases ([`export`]) and the weekly review ([`report`]), and
//! compare releases, prompts or models with a significance test ([`compare`]), say how much
//! autonomy each feature's evidence supports ([`readiness`]), and run the analysis on a
//! schedule with alerts to webhooks ([`watch`]).
//! No LLM call and no network are needed, and the same data gives the same patterns; naming
//! patterns with an LLM ([`name`]) is opt-in and named patterns keep their name.

pub mod cause;
pub mod cluster;
pub mod compare;
pub mod detect;
pub mod embed;
pub mod error;
pub mod export;
pub mod features;
pub mod group;
pub mod impact;
pub mod label;
pub mod language;
pub mod lifecycle;
pub mod name;
pub mod pattern;
pub mod readiness;
pub mod report;
pub mod represent;
pub mod rules;
pub mod run;
pub mod score;
pub mod text;
pub mod track;
pub mod watch;

pub use error::AnalyzerError;
