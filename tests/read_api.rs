//! Issue 18, the read API, end to end: two projects' simulated traffic through the real
//! collector, analysed; then `GET /v1/patterns`, `/v1/patterns/{id}`, `/v1/traces/{id}`,
//! `/v1/failures`, `/v1/search` with each project's key (nothing of one project visible to the
//! other's key), and `flywheel mcp` spoken to as a coding agent's client speaks it: JSON-RPC
//! lines on stdin/stdout (initialize, tools/list, tools/call).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use common::{Collector, TestDb, flywheel_cmd, stderr, stdout};
use serde_json::{Value, json};

async fn get(c: &Collector, key: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", c.http));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")))
}

fn trace_ids(failures: &Value) -> BTreeSet<String> {
    failures["failures"].as_array().unwrap().iter().map(|f| f["trace_id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_reads_its_own_project_over_http_and_mcp_serves_the_same() {
    let c = Collector::start(TestDb::new("read_api"), "[collector]\nsignal_link_interval_secs = 1\n");
    for (project, seed) in [("shop", "7"), ("bank", "8")] {
        c.simulate(project, &["--interactions", "400", "--seed", seed, "--duration", "1d", "--failure-rate", "0.3"]).await;
        let out = c.db.flywheel(&["analyze", "--project", project, "--since", "2d", "--lexical"]);
        assert!(out.status.success(), "analyze {project}: {}{}", stdout(&out), stderr(&out));
    }
    let (shop, bank) = (c.key("shop"), c.key("bank"));

    // No key, a wrong key: refused with a reason.
    let (status, body) = get(&c, None, "/v1/patterns").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("flywheel keys create"), "{body}");
    assert_eq!(get(&c, Some("fwk_not_a_key"), "/v1/patterns").await.0, 401);

    // The pattern list, as `flywheel patterns --json` prints it.
    let (status, list) = get(&c, Some(&shop), "/v1/patterns").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["project"], "shop");
    let patterns = list["patterns"].as_array().unwrap();
    assert!(patterns.len() >= 2, "{list}");
    let cli = c.db.flywheel(&["patterns", "--project", "shop", "--json"]);
    let cli: Vec<Value> = stdout(&cli).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(&cli, patterns, "the API and the CLI disagree");
    let biggest = patterns.iter().max_by_key(|p| p["size"].as_u64().unwrap()).unwrap();
    let id = biggest["id"].as_str().unwrap();
    assert!(biggest["label"].as_str().is_some_and(|l| !l.is_empty()) && biggest["status"].is_string(), "{biggest}");

    // One pattern: its members and examples with the evidence.
    let (status, detail) = get(&c, Some(&shop), &format!("/v1/patterns/{id}?members=5")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["pattern"]["id"], id);
    assert_eq!(detail["members"].as_array().unwrap().len(), 5.min(detail["member_count"].as_u64().unwrap() as usize));
    let examples = detail["examples"].as_array().unwrap();
    assert!(!examples.is_empty(), "{detail}");
    assert!(examples.iter().all(|e| !e["reasons"].as_array().unwrap().is_empty()), "{detail}");
    assert!(examples.iter().any(|e| !e["details"]["request"].as_str().unwrap().is_empty()), "{detail}");

    // The pattern's failures, and a trace of one of them: spans, the call with its messages.
    let (status, members) = get(&c, Some(&shop), &format!("/v1/failures?pattern={id}&limit=1000")).await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(members["failures"].as_array().unwrap().len() as u64, detail["member_count"].as_u64().unwrap());
    let trace_id = detail["members"][0]["trace_id"].as_str().unwrap();
    let (status, trace) = get(&c, Some(&shop), &format!("/v1/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{trace}");
    assert!(!trace["spans"].as_array().unwrap().is_empty(), "{trace}");
    let calls = trace["calls"].as_array().unwrap();
    assert!(calls.iter().any(|c| c["input_messages"].as_array().is_some_and(|m| !m.is_empty())), "{trace}");
    assert!(trace["failures"].as_array().unwrap().iter().any(|f| f["trace_id"] == trace_id), "{trace}");

    // Search finds a failure by words of its request.
    let request = examples.iter().map(|e| e["details"]["request"].as_str().unwrap()).find(|r| r.len() > 12).unwrap();
    let words: String = request.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let (status, found) = get(&c, Some(&shop), &format!("/v1/search?q={}&since=3d", url_escape(&words))).await;
    assert_eq!(status, 200, "{found}");
    assert!(!found["failures"].as_array().unwrap().is_empty(), "`{words}` not found: {found}");

    // Nothing of one project is visible to the other's key.
    let (_, shop_recent) = get(&c, Some(&shop), "/v1/failures?limit=1000&since=3d").await;
    let (_, bank_recent) = get(&c, Some(&bank), "/v1/failures?limit=1000&since=3d").await;
    let (shop_traces, bank_traces) = (trace_ids(&shop_recent), trace_ids(&bank_recent));
    assert!(!shop_traces.is_empty() && !bank_traces.is_empty());
    assert!(shop_traces.is_disjoint(&bank_traces), "failures of one project listed for the other");
    let (status, body) = get(&c, Some(&bank), &format!("/v1/traces/{trace_id}")).await;
    assert_eq!(status, 404, "bank's key read shop's trace: {body}");
    let (_, bank_list) = get(&c, Some(&bank), "/v1/patterns").await;
    assert_eq!(bank_list["project"], "bank");
    if !bank_list["patterns"].as_array().unwrap().iter().any(|p| p["id"] == id) {
        assert_eq!(get(&c, Some(&bank), &format!("/v1/patterns/{id}")).await.0, 404);
    } else {
        // The same cause has the same id in both projects: each key sees its own members.
        let (_, theirs) = get(&c, Some(&bank), &format!("/v1/failures?pattern={id}&limit=1000")).await;
        assert!(trace_ids(&theirs).is_disjoint(&shop_traces));
    }

    // Bad requests say what is wrong.
    let (status, body) = get(&c, Some(&shop), "/v1/failures?since=yesterday").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("30m, 36h, 7d"), "{body}");
    let (status, body) = get(&c, Some(&shop), "/v1/patterns/no-such-pattern").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("/v1/patterns"), "{body}");
    assert_eq!(get(&c, Some(&shop), "/v1/traces/xyz").await.0, 400);
    assert_eq!(get(&c, Some(&shop), "/v1/search").await.0, 400);

    // The endpoints are documented.
    let openapi: Value = reqwest::get(format!("{}/openapi.json", c.http)).await.unwrap().json().await.unwrap();
    for path in ["/v1/patterns", "/v1/patterns/{id}", "/v1/traces/{id}", "/v1/failures", "/v1/search"] {
        assert!(openapi["paths"][path]["get"].is_object(), "{path} missing from /openapi.json");
    }

    // `flywheel mcp`: the same answers over the Model Context Protocol.
    let mut mcp = McpClient::start(&c.db, "shop");
    let init = mcp.request(
        "initialize",
        json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "test", "version": "1" } }),
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "flywheel", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    mcp.notify("notifications/initialized");
    let tools = mcp.request("tools/list", json!({}));
    let names: BTreeSet<&str> = tools["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["list_patterns", "show_pattern", "show_trace", "list_failures", "search_failures"]));

    let listed = mcp.call("list_patterns", json!({}));
    assert_eq!(listed["result"]["isError"], false, "{listed}");
    assert_eq!(&listed["result"]["structuredContent"]["patterns"], &list["patterns"]);
    let shown = mcp.call("show_pattern", json!({ "id": id, "members": 5 }));
    assert_eq!(shown["result"]["structuredContent"], detail);
    let traced = mcp.call("show_trace", json!({ "trace_id": trace_id }));
    assert_eq!(traced["result"]["structuredContent"]["trace_id"], trace_id);
    // A question the data cannot answer is a tool error the agent can read.
    let missing = mcp.call("show_pattern", json!({ "id": "no-such-pattern" }));
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    assert!(missing["result"]["content"][0]["text"].as_str().unwrap().contains("list_patterns"), "{missing}");
    let unknown = mcp.call("drop_tables", json!({}));
    assert!(unknown["error"]["message"].as_str().unwrap().contains("no tool"), "{unknown}");
    mcp.close();
}

fn url_escape(text: &str) -> String {
    text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// A client of `flywheel mcp` on the wire: one JSON-RPC message per line.
struct McpClient {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    next: u64,
}

impl McpClient {
    fn start(db: &TestDb, project: &str) -> McpClient {
        let mut child = flywheel_cmd()
            .args(["mcp", "--project", project])
            .env("FLYWHEEL_CLICKHOUSE_URL", &db.url)
            .env("FLYWHEEL_CLICKHOUSE_DATABASE", &db.database)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        McpClient { child, out, next: 1 }
    }

    fn send(&mut self, message: Value) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str) {
        self.send(json!({ "jsonrpc": "2.0", "method": method }));
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let mut line = String::new();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "flywheel mcp closed its output");
            let message: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON-RPC: {line}"));
            if message["id"] == id {
                return message;
            }
        }
    }

    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({ "name": tool, "arguments": arguments }))
    }

    fn close(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "flywheel mcp exited with {status} when its client closed");
    }
}
