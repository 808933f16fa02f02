//! `flywheel analyze --llm-names` end to end: the real binary analyses seeded traffic and asks
//! an OpenAI-compatible chat-completions endpoint (a stand-in server in this test, speaking the
//! wire format over real HTTP) to name each new pattern; names show in `flywheel patterns` with
//! the rule label kept; a pattern is named once (later runs, with or without the flag, keep the
//! name and do not ask again); an endpoint that fails leaves the rule labels and says so; no
//! endpoint configured is a clear error.

mod common;
mod seed;

use std::sync::{Arc, Mutex};

use common::{TestDb, stderr, stdout};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the endpoint received: (authorization header, JSON body).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP/1.1 server answering every POST with a chat completion naming "Name <n>" (or 500).
async fn endpoint(fail: bool) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let head = text[..end].to_ascii_lowercase();
                    let length: usize =
                        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    assert!(head.starts_with("post /v1/chat/completions "), "{head}");
                    let auth = head.lines().find_map(|l| l.strip_prefix("authorization:")).unwrap_or("").trim().to_string();
                    let body: Value = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap();
                    let n = {
                        let mut seen = record.lock().unwrap();
                        seen.push((auth, body));
                        seen.len()
                    };
                    let (status, reply) = if fail {
                        ("500 Internal Server Error", r#"{"error":{"message":"model not loaded"}}"#.to_string())
                    } else {
                        let content = format!("\"Name {n}.\"\nbecause the examples show it");
                        (
                            "200 OK",
                            serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
                                .to_string(),
                        )
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    return;
                }
            });
        }
    });
    (url, seen)
}

fn patterns(db: &TestDb) -> Vec<Value> {
    let out = db.flywheel(&["patterns", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn analyze(db: &TestDb, names: bool, url: &str) -> std::process::Output {
    let mut args = vec!["analyze", "--since", "8d", "--lexical"];
    if names {
        args.push("--llm-names");
    }
    let env =
        [("FLYWHEEL_LLM_BASE_URL", url.to_string()), ("FLYWHEEL_LLM_MODEL", "llama3.2".into()), ("FLYWHEEL_LLM_API_KEY", "sk-test".into())];
    db.flywheel_with(&args, &env)
}

#[tokio::test(flavor = "multi_thread")]
async fn new_patterns_are_named_once_and_keep_their_names() {
    let db = TestDb::new("naming");
    let store = db.migrated().await;
    seed::Seed::build(OffsetDateTime::now_utc()).insert(&store).await;
    for table in ["patterns", "pattern_members", "failures"] {
        store.execute(&format!("TRUNCATE TABLE {table}")).await.unwrap();
    }
    let (url, seen) = endpoint(false).await;

    let out = analyze(&db, true, &url);
    assert!(out.status.success(), "{}", stderr(&out));
    let asked = seen.lock().unwrap().clone();
    let named = patterns(&db);
    assert!(!named.is_empty(), "the seeded traffic has patterns: {}", stdout(&out));
    assert_eq!(asked.len(), named.len(), "one request per new pattern");
    assert!(stderr(&out).contains(&format!("named {} new patterns with llama3.2", named.len())), "{}", stderr(&out));
    for (auth, body) in &asked {
        assert_eq!(auth, "bearer sk-test");
        assert_eq!(body["model"], "llama3.2");
        assert_eq!(body["temperature"], 0);
        let user = body["messages"][1]["content"].as_str().unwrap();
        assert!(user.contains("Current label: ") && user.contains("Examples:\n1. user: "), "{user}");
    }
    for p in &named {
        let label = p["label"].as_str().unwrap();
        assert!(label.starts_with("Name ") && !label.ends_with('.'), "the cleaned LLM name: {label}");
        assert!(!p["facets"]["rule_label"].as_str().unwrap().is_empty(), "the rule label is kept: {p}");
        assert_eq!(p["facets"]["named_by"], "llama3.2");
        assert!(stdout(&out).contains(label), "the summary table shows the name: {}", stdout(&out));
    }

    // Named once: a second run with the flag asks nothing, and one without it keeps the names.
    let labels =
        |ps: &[Value]| ps.iter().map(|p| (p["id"].to_string(), p["label"].to_string())).collect::<std::collections::BTreeMap<_, _>>();
    let out = analyze(&db, true, &url);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(seen.lock().unwrap().len(), asked.len(), "no pattern is named twice");
    let out = analyze(&db, false, &url);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(labels(&patterns(&db)), labels(&named), "names survive runs without --llm-names");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_endpoint_leaves_the_rule_labels_and_no_endpoint_is_a_clear_error() {
    let db = TestDb::new("naming_fail");
    let store = db.migrated().await;
    seed::Seed::build(OffsetDateTime::now_utc()).insert(&store).await;
    let (url, seen) = endpoint(true).await;
    let out = analyze(&db, true, &url);
    assert!(out.status.success(), "naming is never required: {}", stderr(&out));
    assert!(!seen.lock().unwrap().is_empty());
    let err = stderr(&out);
    assert!(err.contains("keeps its rule label") && err.contains("answered 500") && err.contains("model not loaded"), "{err}");
    assert!(patterns(&db).iter().all(|p| p["facets"].get("named_by").is_none()));

    let out = db.flywheel(&["analyze", "--since", "8d", "--lexical", "--llm-names"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("set FLYWHEEL_LLM_BASE_URL"), "{}", stderr(&out));
}
