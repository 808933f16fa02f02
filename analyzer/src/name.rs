//! Optional pattern names from an LLM behind an OpenAI-compatible chat-completions endpoint
//! (`flywheel analyze --llm-names`): a local server (Ollama, vLLM, llama.cpp) or a provider.
//! Off by default and never required — the analyzer's own labels are complete without it, and
//! nothing leaves the machine unless asked. A pattern is named once (`pattern_names`); later
//! runs show that name without asking again, so names stay stable while the model's answers
//! would not. The rule-built label stays in the pattern's facets (`rule_label`).

use std::time::Duration;

use flywheel_schemas::rows::{PatternNameRow, PatternRow};
use flywheel_schemas::{Store, queries};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::AnalyzerError;

/// Examples of a pattern shown to the model: the members nearest its centre.
const EXAMPLES: usize = 5;
/// Characters of each text of an example.
const EXCERPT: usize = 300;
const MAX_NAME: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error(
        "--llm-names needs an OpenAI-compatible endpoint: set FLYWHEEL_LLM_BASE_URL (e.g. http://localhost:11434/v1 for Ollama) \
         and FLYWHEEL_LLM_MODEL (and FLYWHEEL_LLM_API_KEY or OPENAI_API_KEY when it asks for a key)"
    )]
    NotConfigured,
    #[error("calling {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url} did not answer with a chat completion carrying a name: {detail}")]
    Shape { url: String, detail: String },
}

/// A client of one chat-completions endpoint and model.
pub struct Namer {
    url: String,
    model: String,
    api_key: Option<String>,
    client: reqwest::Client,
}

impl Namer {
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> Namer {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap_or_default();
        Namer { url: format!("{}/chat/completions", base_url.trim_end_matches('/')), model: model.into(), api_key, client }
    }

    /// From FLYWHEEL_LLM_BASE_URL, FLYWHEEL_LLM_MODEL and FLYWHEEL_LLM_API_KEY (or OPENAI_API_KEY).
    pub fn from_env() -> Result<Namer, NameError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        match (var("FLYWHEEL_LLM_BASE_URL"), var("FLYWHEEL_LLM_MODEL")) {
            (Some(url), Some(model)) => Ok(Namer::new(&url, &model, var("FLYWHEEL_LLM_API_KEY").or_else(|| var("OPENAI_API_KEY")))),
            _ => Err(NameError::NotConfigured),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// One name for `pattern`, from its label, terms, facets and example failures.
    pub async fn name(&self, pattern: &PatternRow, examples: &[Value]) -> Result<String, NameError> {
        let mut request = self.client.post(&self.url).json(&request_body(&self.model, pattern, examples));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let http = |source| NameError::Http { url: self.url.clone(), source };
        let response = request.send().await.map_err(http)?;
        let status = response.status();
        let body = response.text().await.map_err(http)?;
        if !status.is_success() {
            return Err(NameError::Status { url: self.url.clone(), status: status.as_u16(), body: body.chars().take(300).collect() });
        }
        let shape = |detail: String| NameError::Shape { url: self.url.clone(), detail };
        let value: Value = serde_json::from_str(&body).map_err(|e| shape(format!("not JSON ({e})")))?;
        let content = value["choices"][0]["message"]["content"].as_str().ok_or_else(|| shape("no choices[0].message.content".into()))?;
        clean(content).ok_or_else(|| shape(format!("an empty name in {content:?}")))
    }
}

/// The chat request: deterministic settings, the evidence the analyzer found, a few examples.
pub fn request_body(model: &str, pattern: &PatternRow, examples: &[Value]) -> Value {
    let cut = |v: &Value| v.as_str().map(|s| s.chars().take(EXCERPT).collect::<String>()).unwrap_or_default();
    let shown: Vec<String> = examples
        .iter()
        .take(EXAMPLES)
        .enumerate()
        .map(|(i, d)| format!("{}. user: {}\n   answer: {}\n   error: {}", i + 1, cut(&d["request"]), cut(&d["output"]), cut(&d["error"])))
        .collect();
    let facets: Vec<String> = ["feature", "model", "error_type", "finish_reason", "signal", "reasons", "languages"]
        .iter()
        .filter_map(|k| pattern.facets.get(*k).map(|v| format!("{k}: {v}")))
        .collect();
    let user = format!(
        "Failure pattern found in production traffic of an LLM application.\nCurrent label: {}\nDescription: {}\nDistinctive words: {}\n{}\n\nExamples:\n{}",
        pattern.label,
        pattern.description,
        pattern.terms.join(", "),
        facets.join("\n"),
        shown.join("\n")
    );
    json!({
        "model": model,
        "temperature": 0,
        "max_tokens": 40,
        "messages": [
            {"role": "system", "content": "You name failure patterns of LLM applications for an engineering review. Answer with one name of at most 8 words that says what goes wrong (not the topic alone), without quotes or punctuation at the end."},
            {"role": "user", "content": user},
        ],
    })
}

/// The first non-empty line, without quotes, markdown or a "Name:" prefix, at most 80 characters.
pub fn clean(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.trim_start_matches(['#', '*', '-', ' ']);
    let line = line.strip_prefix("Name:").or_else(|| line.strip_prefix("name:")).unwrap_or(line);
    let name = line.trim().trim_matches(['"', '\'', '*', '`', '“', '”']).trim().trim_end_matches('.').trim();
    let name: String = name.chars().take(MAX_NAME).collect();
    (!name.is_empty()).then_some(name)
}

/// Shows an LLM's name on a pattern, keeping the rule label in its facets.
pub fn apply(pattern: &mut PatternRow, named: &PatternNameRow) {
    pattern.facets.insert("rule_label".into(), std::mem::replace(&mut pattern.label, named.name.clone()));
    pattern.facets.insert("named_by".into(), named.model.clone());
}

/// What naming did: patterns named now, and the ones the endpoint failed on (kept with their
/// rule label; the next `--llm-names` run tries them again).
#[derive(Debug, Default)]
pub struct Naming {
    pub named: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
}

/// Names the current patterns that have no name yet and shows the names at once.
pub async fn name_patterns(store: &Store, project: &str, namer: &Namer) -> Result<Naming, AnalyzerError> {
    let names = queries::pattern_names(store, project).await?;
    let patterns = queries::current_patterns(store, project).await?;
    let mut naming = Naming::default();
    for mut pattern in patterns.into_iter().filter(|p| p.size > 0 && !names.contains_key(&p.pattern_id)) {
        let examples = examples(store, project, &pattern).await?;
        match namer.name(&pattern, &examples).await {
            Ok(name) => {
                let now = OffsetDateTime::now_utc();
                let row = PatternNameRow {
                    project_id: project.into(),
                    pattern_id: pattern.pattern_id.clone(),
                    name: name.clone(),
                    model: namer.model().into(),
                    rule_label: pattern.label.clone(),
                    named_at: now,
                };
                apply(&mut pattern, &row);
                store.insert("pattern_names", &[row]).await?;
                pattern.updated_at = now;
                store.insert("patterns", std::slice::from_ref(&pattern)).await?;
                naming.named.push((pattern.pattern_id, name));
            }
            Err(e) => {
                tracing::warn!(pattern = %pattern.pattern_id, "naming failed, the rule label stays: {e}");
                naming.failed.push((pattern.pattern_id, e.to_string()));
            }
        }
    }
    Ok(naming)
}

/// The `details` of the failures nearest the pattern's centre.
async fn examples(store: &Store, project: &str, pattern: &PatternRow) -> Result<Vec<Value>, AnalyzerError> {
    let members = queries::pattern_members(store, project, &pattern.pattern_id).await?;
    let keys: Vec<(String, String)> = members.into_iter().take(EXAMPLES).map(|m| (m.trace_id, m.span_id)).collect();
    let mut out = Vec::new();
    for (trace, span) in keys {
        let details: Vec<String> = store
            .query("SELECT details FROM failures FINAL WHERE project_id = ? AND trace_id = ? AND span_id = ?")
            .bind(project)
            .bind(&trace)
            .bind(&span)
            .fetch_all()
            .await?;
        out.extend(details.iter().filter_map(|d| serde_json::from_str(d).ok()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_of_quotes_markdown_and_prefixes() {
        assert_eq!(clean("\"Refund policy invented by the assistant.\"").as_deref(), Some("Refund policy invented by the assistant"));
        assert_eq!(clean("\n\n**Name:** Answers cut mid-sentence\nBecause…").as_deref(), Some("Answers cut mid-sentence"));
        assert_eq!(clean("# Tool called with invalid arguments").as_deref(), Some("Tool called with invalid arguments"));
        assert_eq!(clean("  \n  "), None);
        assert_eq!(clean(&"x".repeat(200)).map(|n| n.len()), Some(MAX_NAME));
    }

    #[test]
    fn the_request_carries_the_evidence_and_examples_deterministically() {
        let pattern = PatternRow {
            label: "thumbs-down, escalate · refund, days · support".into(),
            description: "40 failing calls.".into(),
            terms: vec!["refund".into(), "days".into()],
            facets: [("feature".to_string(), "support".to_string())].into(),
            ..PatternRow::default()
        };
        let example = json!({"request": "Can I get a refund after 60 days?", "output": "Yes, within 90 days in cash.", "error": ""});
        let body = request_body("llama3.2", &pattern, &[example]);
        assert_eq!(body["model"], "llama3.2");
        assert_eq!(body["temperature"], 0);
        let user = body["messages"][1]["content"].as_str().unwrap();
        for needle in ["thumbs-down, escalate", "refund, days", "feature: support", "after 60 days", "within 90 days in cash"] {
            assert!(user.contains(needle), "{needle} missing from {user}");
        }
    }
}
