//! `flywheel mcp`: the read API over the Model Context Protocol on stdio, for coding agents.
//!
//! The same reads as `GET /v1/patterns…` ([`flywheel_schemas::read`]), as MCP tools:
//! `list_patterns`, `show_pattern`, `show_trace`, `list_failures`, `search_failures`. The
//! server answers for one project, chosen when it starts (an agent is given the project it
//! works on, not a key to every project), and only reads. A question the data cannot answer (an
//! unknown pattern, a bad duration) is a tool result marked as an error whose text says what to
//! do, so that the agent can correct itself; a storage failure is too.

use std::sync::Arc;

use flywheel_schemas::Store;
use flywheel_schemas::read::{self, FailureFilter};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The MCP server of one project.
#[derive(Clone)]
pub struct ReadServer {
    store: Store,
    project: String,
}

impl ReadServer {
    pub fn new(store: Store, project: String) -> ReadServer {
        ReadServer { store, project }
    }

    /// Serves on stdin/stdout until the client closes them.
    pub async fn serve_stdio(self) -> Result<(), String> {
        let running = self.serve(rmcp::transport::stdio()).await.map_err(|e| format!("MCP session did not start: {e}"))?;
        running.waiting().await.map_err(|e| format!("MCP session ended abnormally: {e}"))?;
        Ok(())
    }

    async fn call(&self, name: &str, args: &JsonObject) -> Result<Value, String> {
        let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
        let number = |key: &str| args.get(key).and_then(Value::as_u64).map(|n| n as usize);
        let since = |key: &str| read::since(text(key)).map_err(|e| format!("{key}: {e}"));
        let (store, project) = (&self.store, self.project.as_str());
        let storage = |e: flywheel_schemas::StoreError| format!("storage unavailable: {e}");
        match name {
            "list_patterns" => {
                let patterns = read::patterns(store, project).await.map_err(storage)?;
                Ok(value(&read::PatternList { project: project.to_string(), patterns }))
            }
            "show_pattern" => {
                let id = text("id").ok_or("show_pattern needs `id`: a pattern id from list_patterns")?;
                let detail = read::pattern(store, project, id, read::limit(number("members"))).await.map_err(storage)?;
                detail.map(|d| value(&d)).ok_or_else(|| format!("no pattern `{id}` in project {project}: list_patterns lists them"))
            }
            "show_trace" => {
                let id = text("trace_id").ok_or("show_trace needs `trace_id`: 32 hexadecimal digits")?.to_ascii_lowercase();
                let trace = read::trace(store, project, &id).await.map_err(storage)?;
                trace.map(|t| value(&t)).ok_or_else(|| format!("no trace `{id}` in project {project} (or its retention has passed)"))
            }
            "list_failures" => {
                let filter = FailureFilter {
                    pattern: text("pattern").map(String::from),
                    since: since("since")?,
                    limit: read::limit(number("limit")),
                };
                let page = read::failures(store, project, &filter).await.map_err(storage)?;
                page.map(|p| value(&p)).ok_or_else(|| {
                    format!("no pattern `{}` in project {project}: list_patterns lists them", filter.pattern.unwrap_or_default())
                })
            }
            "search_failures" => {
                let q = text("text").ok_or("search_failures needs `text`: words to find in failures' requests, answers and errors")?;
                let since = since("since")?.unwrap_or_else(|| OffsetDateTime::now_utc() - read::SEARCH_LOOKBACK);
                let page = read::search(store, project, q, since, read::limit(number("limit"))).await.map_err(storage)?;
                Ok(value(&page))
            }
            other => Err(format!("no tool `{other}`: the tools are {}", TOOLS.iter().map(|t| t.0).collect::<Vec<_>>().join(", "))),
        }
    }
}

/// A shape as JSON, through its text: `to_value` would widen an `f32` to its `f64` digits
/// (0.59007144 → 0.5900714397430420), and the HTTP API's answer would differ from this one.
fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_string(v).and_then(|text| serde_json::from_str(&text)).unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

/// Name, description and input schema of each tool.
const TOOLS: &[(&str, &str, &str)] = &[
    (
        "list_patterns",
        "The project's failure patterns (failures grouped by cause), regressed first, then by impact: label, lane, triage status, trend, size, users, severity, lifecycle.",
        r#"{"type":"object","properties":{}}"#,
    ),
    (
        "show_pattern",
        "One pattern with its member calls (nearest to its centre first) and example failures: request, answer, evidence per rule.",
        r#"{"type":"object","properties":{"id":{"type":"string","description":"A pattern id from list_patterns"},"members":{"type":"integer","minimum":1,"maximum":1000,"description":"How many members to list (100)"}},"required":["id"]}"#,
    ),
    (
        "show_trace",
        "One trace: its spans with attributes and events, its model calls with messages, parameters, system instructions and tools, the failures found in it and the users' signals.",
        r#"{"type":"object","properties":{"trace_id":{"type":"string","pattern":"^[0-9a-fA-F]{32}$"}},"required":["trace_id"]}"#,
    ),
    (
        "list_failures",
        "Failing calls: a pattern's members (nearest first), or the most recent failures of the project.",
        r#"{"type":"object","properties":{"pattern":{"type":"string"},"since":{"type":"string","description":"How far back: 30m, 36h, 7d, 2w"},"limit":{"type":"integer","minimum":1,"maximum":1000}}}"#,
    ),
    (
        "search_failures",
        "Failures whose request, answer or error contains the text (case-insensitive), newest first.",
        r#"{"type":"object","properties":{"text":{"type":"string"},"since":{"type":"string","description":"How far back (30d)"},"limit":{"type":"integer","minimum":1,"maximum":1000}},"required":["text"]}"#,
    ),
];

impl ServerHandler for ReadServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("flywheel", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Read-only access to flywheel's failure analysis of project `{}`: failure patterns (grouped by cause), their failing calls, and traces. Start with list_patterns.",
                self.project
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = TOOLS
            .iter()
            .map(|(name, description, schema)| {
                let schema: JsonObject = serde_json::from_str(schema).expect("tool schemas are valid JSON objects");
                Tool::new(*name, *description, Arc::new(schema))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(&self, request: CallToolRequestParams, _context: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        if !TOOLS.iter().any(|t| t.0 == request.name) {
            let known = TOOLS.iter().map(|t| t.0).collect::<Vec<_>>().join(", ");
            return Err(ErrorData::invalid_params(format!("no tool `{}`: the tools are {known}", request.name), None));
        }
        let args = request.arguments.unwrap_or_default();
        let result = match self.call(&request.name, &args).await {
            Ok(value) => CallToolResult::structured(value),
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
        };
        Ok(result.into())
    }
}
