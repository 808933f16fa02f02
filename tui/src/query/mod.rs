//! Queries → view models, run off the UI thread.
//!
//! Every query filters on `project_id` and a time range (the leading keys of the tables' ORDER
//! BY or their day partitions) and is bounded by a LIMIT, so that the cost of a screen does not
//! grow with the size of the tables: the benchmark (`flywheel bench tui`) holds them to this on
//! 10 million spans. Aggregation runs in ClickHouse; only results travel.
//!
//! [`Worker`] runs each [`Request`] as a task on a tokio runtime and answers on a channel; the
//! UI thread never waits on it. One module per screen holds its queries and the rows they read:
//! [`overview`], [`pattern`], [`trace`] (traces and sessions), [`search`].

mod overview;
mod pattern;
mod search;
mod trace;

pub use overview::overview;
pub use pattern::{facets_of, pattern_detail};
pub use search::search;
pub use trace::{session, session_view, trace, trace_view, turns_of};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::Sender;

use clickhouse::Row;
use flywheel_schemas::failure::FailureDetails;
use flywheel_schemas::messages::Message;
use flywheel_schemas::queries::{self, nanos};
use flywheel_schemas::rows::SignalRow;
use flywheel_schemas::{Store, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::Exporter;
use crate::model::*;

/// Members of a pattern joined to their calls and shown in the detail view (nearest first);
/// the timeline counts every member.
pub const MEMBERS_SHOWN: usize = 200;
/// Characters of a call's input and output text fetched for a member row.
const EXCERPT_CHARS: usize = 400;
const SESSION_TURNS: usize = 200;
const SEARCH_HITS: usize = 100;
const TRACE_SPANS: usize = 5000;

/// A piece of work for the data layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `project`: `None` picks the project with the most calls in the window.
    Overview {
        project: Option<String>,
        window: Window,
    },
    /// `project`: `None` picks the project with the most patterns (else the most calls).
    Patterns {
        project: Option<String>,
    },
    Pattern {
        project: String,
        item: Box<PatternItem>,
    },
    /// `around`: when the trace happened, if known, to prune by time.
    Trace {
        project: String,
        trace_id: String,
        around: Option<OffsetDateTime>,
    },
    Session {
        project: String,
        session_id: String,
        around: Option<OffsetDateTime>,
    },
    Search {
        project: String,
        query: String,
        window: Window,
    },
    Triage {
        project: String,
        pattern_id: String,
        status: String,
        by: String,
    },
    /// Each feature's agency readiness, through the exporter (the analyzer decides it).
    Readiness {
        project: String,
    },
    Export {
        project: String,
        pattern_id: String,
        /// `jsonl`, `openai-evals`, `promptfoo` or `csv`.
        format: String,
        /// Export cases already exported in this format too.
        again: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Overview(Overview),
    Patterns { project: String, items: Vec<PatternItem> },
    Pattern(Box<PatternDetail>),
    Trace(Box<TraceView>),
    Session(Box<SessionView>),
    Search(SearchResults),
    Triaged { pattern_id: String, status: String },
    Exported(String),
    Readiness(Vec<ReadinessLine>),
}

#[derive(Debug)]
pub struct Response {
    pub id: u64,
    pub result: Result<Payload, String>,
}

/// Runs requests as tasks on a runtime; answers arrive on the channel given at creation.
pub struct Worker {
    handle: tokio::runtime::Handle,
    store: Store,
    exporter: Arc<dyn Exporter>,
    tx: Sender<Response>,
}

impl Worker {
    pub fn new(handle: tokio::runtime::Handle, store: Store, exporter: Arc<dyn Exporter>, tx: Sender<Response>) -> Worker {
        Worker { handle, store, exporter, tx }
    }

    pub fn submit(&self, id: u64, request: Request) {
        let tx = self.tx.clone();
        if let Request::Readiness { project } = request {
            let exporter = self.exporter.clone();
            self.handle.spawn_blocking(move || {
                let result = exporter.readiness(&project).map(Payload::Readiness);
                let _ = tx.send(Response { id, result });
            });
            return;
        }
        if let Request::Export { project, pattern_id, format, again } = request {
            // The exporter is synchronous (it may block on files and queries of its own).
            let exporter = self.exporter.clone();
            self.handle.spawn_blocking(move || {
                let result = exporter.export_pattern(&project, &pattern_id, &format, again).map(Payload::Exported);
                let _ = tx.send(Response { id, result });
            });
            return;
        }
        let store = self.store.clone();
        self.handle.spawn(async move {
            let started = std::time::Instant::now();
            let result = execute(&store, request).await.map_err(|e| one_line(&e.to_string()));
            tracing::debug!(id, ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "tui request");
            // The UI may have quit meanwhile: nobody to tell.
            let _ = tx.send(Response { id, result });
        });
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs one request to completion (the worker's task body; the benchmark calls it directly).
pub async fn execute(store: &Store, request: Request) -> Result<Payload, StoreError> {
    Ok(match request {
        Request::Overview { project, window } => Payload::Overview(overview(store, project, window).await?),
        Request::Patterns { project } => {
            let project = match project {
                Some(p) => p,
                None => default_project(store).await?,
            };
            let items = patterns(store, &project).await?;
            Payload::Patterns { project, items }
        }
        Request::Pattern { project, item } => Payload::Pattern(Box::new(pattern_detail(store, &project, *item).await?)),
        Request::Trace { project, trace_id, around } => Payload::Trace(Box::new(trace(store, &project, &trace_id, around).await?)),
        Request::Session { project, session_id, around } => {
            Payload::Session(Box::new(session(store, &project, &session_id, around).await?))
        }
        Request::Search { project, query, window } => Payload::Search(search(store, &project, &query, window).await?),
        Request::Triage { project, pattern_id, status, by } => {
            queries::set_triage(store, &project, &pattern_id, &status, "", &by).await?;
            Payload::Triaged { pattern_id, status }
        }
        Request::Export { .. } | Request::Readiness { .. } => {
            return Err(StoreError::Config("export and readiness run through the exporter, not a query".into()));
        }
    })
}

// Reads with FINAL per partition: `flywheel_schemas::read::read` says why.
use flywheel_schemas::read::read;

/// `('a','b')` for an `IN`, quoting every id; an empty list matches nothing.
fn sql_list(ids: &[&str]) -> String {
    if ids.is_empty() {
        return "('')".into();
    }
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{}'", id.replace('\\', "\\\\").replace('\'', "\\'"))).collect();
    format!("({})", quoted.join(","))
}

#[derive(Row, Deserialize)]
struct Name {
    name: String,
}

/// Projects that have keys or patterns (small tables); when there are none (a collector run
/// with `--no-auth` and no analysis yet), those with calls since `since`.
async fn projects(store: &Store, since: OffsetDateTime) -> Result<Vec<String>, StoreError> {
    let rows: Vec<Name> = read(
        store,
        "SELECT name FROM (SELECT project_id AS name FROM api_keys UNION DISTINCT SELECT project_id AS name FROM patterns) \
             GROUP BY name ORDER BY name LIMIT 100",
    )
    .fetch_all()
    .await?;
    if !rows.is_empty() {
        return Ok(rows.into_iter().map(|r| r.name).collect());
    }
    let rows: Vec<Name> = read(
        store,
        "SELECT project_id AS name FROM llm_calls WHERE start_time >= fromUnixTimestamp64Nano(?) \
             GROUP BY project_id ORDER BY count() DESC, project_id LIMIT 100",
    )
    .bind(nanos(since))
    .fetch_all()
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// The project to open when none is given: the one with the most patterns, else with the most
/// calls of the last 30 days, else `default`.
pub async fn default_project(store: &Store) -> Result<String, StoreError> {
    let with_patterns: Vec<Name> =
        read(store, "SELECT project_id AS name FROM patterns GROUP BY project_id ORDER BY uniqExact(pattern_id) DESC, project_id LIMIT 1")
            .fetch_all()
            .await?;
    if let Some(p) = with_patterns.into_iter().next() {
        return Ok(p.name);
    }
    let since = OffsetDateTime::now_utc() - Window::Month.duration();
    Ok(projects(store, since).await?.into_iter().next().unwrap_or_else(|| "default".into()))
}

pub async fn patterns(store: &Store, project: &str) -> Result<Vec<PatternItem>, StoreError> {
    Ok(queries::current_patterns(store, project).await?.into_iter().map(|row| PatternItem { row }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call of `trace` at minute `m` answering `said`; `tool` makes it ask for a tool.
    fn call(trace: &str, m: i64, said: &str, tool: bool) -> CallView {
        use flywheel_schemas::messages::Part;
        let mut c = crate::fixtures::call(trace, crate::fixtures::T0 + time::Duration::minutes(m), false);
        c.input = vec![Message::text("user", said)];
        c.output = if tool {
            vec![Message {
                role: "assistant".into(),
                name: None,
                parts: vec![Part::ToolCall { id: None, name: "lookup_order".into(), arguments: serde_json::json!({}) }],
                finish_reason: Some("tool_calls".into()),
            }]
        } else {
            vec![Message::text("assistant", "done")]
        };
        c.finish_reasons = vec![if tool { "tool_calls" } else { "stop" }.into()];
        c
    }

    #[test]
    fn a_turn_is_what_the_user_said_and_every_call_that_answered_it() {
        let calls = vec![
            // An agent's loop in one trace: one turn.
            call("t1", 0, "Where is my order?", true),
            call("t1", 0, "Where is my order?", false),
            // The user regenerates: the same words, a new trace after an answer — a new turn.
            call("t2", 1, "Where is my order?", false),
            // A loop whose follow-up request starts a new trace: still one turn.
            call("t3", 2, "Cancel it", true),
            call("t4", 2, "Cancel it", false),
            // Something else.
            call("t5", 3, "Thanks", false),
        ];
        let turns = turns_of(calls);
        let shape: Vec<(String, usize)> = turns.iter().map(|t| (t.request(), t.calls.len())).collect();
        assert_eq!(
            shape,
            [("Where is my order?", 2), ("Where is my order?", 1), ("Cancel it", 2), ("Thanks", 1)].map(|(s, n)| (s.to_string(), n))
        );
        assert_eq!(turns[2].traces(), ["t3", "t4"]);
        assert_eq!(turns[0].answer().output_text, turns[0].calls[1].output_text);
    }

    #[test]
    fn ids_are_quoted_for_in_lists() {
        assert_eq!(sql_list(&["ab", "c'd"]), "('ab','c\\'d')");
        assert_eq!(sql_list(&[]), "('')");
    }
}
