//! Delivering alerts to webhooks: the body each format wants, retries with backoff, and the
//! record that makes a second delivery of the same event to the same place impossible.
//!
//! Before sending, the tick reads which of its alerts each destination already received
//! (`alerts_sent`); after a 2xx it records the delivery. A 5xx, a 429 or a network error is
//! retried (`attempts`, the delay doubling from `retry_base_ms`, a `Retry-After` honoured, at
//! most a minute); another 4xx is not (the request itself is wrong: retrying cannot help).
//! A delivery that still fails stays unrecorded, so that the next tick tries it again. Between a
//! receiver's 2xx and the record, a crash would send it again at the next tick: the
//! `Idempotency-Key` header (the alert's id) lets a receiver drop that repeat.

use std::collections::HashSet;
use std::time::Duration;

use clickhouse::Row;
use flywheel_schemas::alert::{Alert, AlertSentRow};
use flywheel_schemas::{Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Format, Webhook};

/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// One attempt's deadline.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a tick's deliveries came to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delivery {
    pub sent: usize,
    /// Already delivered to that destination by an earlier tick.
    pub skipped: usize,
    /// `(destination, alert id, why)` of deliveries that failed every attempt.
    pub failed: Vec<(String, String, String)>,
}

impl Webhook {
    /// What deliveries to this webhook are recorded under: its name, else its host and a hash
    /// of the whole URL (which may hold a secret, as Slack's do).
    pub fn destination(&self) -> String {
        if let Some(name) = self.name.as_ref().filter(|n| !n.trim().is_empty()) {
            return name.trim().to_string();
        }
        let host = reqwest::Url::parse(&self.url).ok().and_then(|u| u.host_str().map(String::from)).unwrap_or_default();
        format!("{host}#{}", &hex::encode(Sha256::digest(self.url.as_bytes()))[..8])
    }
}

/// The HTTP client of deliveries (the system's roots for https).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("flywheel/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The body a webhook of `format` receives for `alert`.
pub fn body(alert: &Alert, format: Format) -> Value {
    match format {
        Format::Json => serde_json::to_value(alert).expect("an alert serialises"),
        Format::Slack => {
            let detail = format!("{}\n`{}` · project `{}`", alert.text, alert.command, alert.project);
            json!({
                "text": format!("flywheel: {}", alert.title),
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{}*", alert.title) } },
                    { "type": "section", "text": { "type": "mrkdwn", "text": detail } },
                    { "type": "context", "elements": [ { "type": "mrkdwn", "text": format!("{} · {}", alert.kind.as_str(), alert.id) } ] }
                ]
            })
        }
    }
}

#[derive(Row, Deserialize)]
struct Sent {
    alert_id: String,
    destination: String,
}

/// Sends every alert to every webhook it has not reached yet.
pub async fn deliver(
    store: &Store,
    client: &reqwest::Client,
    webhooks: &[Webhook],
    alerts: &[Alert],
    attempts: u32,
    retry_base: Duration,
) -> Result<Delivery, StoreError> {
    let mut report = Delivery::default();
    if alerts.is_empty() || webhooks.is_empty() {
        return Ok(report);
    }
    let ids: Vec<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
    let sent: Vec<Sent> = store
        .query("SELECT alert_id, destination FROM alerts_sent FINAL WHERE project_id = ? AND alert_id IN ?")
        .bind(&alerts[0].project)
        .bind(&ids)
        .fetch_all()
        .await?;
    let sent: HashSet<(String, String)> = sent.into_iter().map(|s| (s.alert_id, s.destination)).collect();
    for hook in webhooks {
        let destination = hook.destination();
        for alert in alerts {
            if sent.contains(&(alert.id.clone(), destination.clone())) {
                report.skipped += 1;
                continue;
            }
            let body = body(alert, hook.format);
            match post(client, &hook.url, &alert.id, &body, attempts, retry_base).await {
                Ok(()) => {
                    let row = AlertSentRow {
                        project_id: alert.project.clone(),
                        alert_id: alert.id.clone(),
                        destination: destination.clone(),
                        kind: alert.kind.as_str().to_string(),
                        title: alert.title.clone(),
                        body: body.to_string(),
                        sent_at: OffsetDateTime::now_utc(),
                    };
                    store.insert("alerts_sent", &[row]).await?;
                    report.sent += 1;
                }
                Err(why) => {
                    tracing::warn!(destination, alert = alert.id, why, "alert not delivered; the next tick tries again");
                    report.failed.push((destination.clone(), alert.id.clone(), why));
                }
            }
        }
    }
    Ok(report)
}

/// Posts `body` until a 2xx, a 4xx that retrying cannot fix, or the last attempt.
async fn post(client: &reqwest::Client, url: &str, key: &str, body: &Value, attempts: u32, base: Duration) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..attempts {
        let response = client.post(url).header("Idempotency-Key", key).timeout(ATTEMPT_TIMEOUT).json(body).send().await;
        let mut wait = base.saturating_mul(1 << attempt.min(16)).min(MAX_DELAY);
        match response {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let status = r.status();
                if let Some(secs) = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
                {
                    wait = Duration::from_secs(secs).min(MAX_DELAY);
                }
                let text = r.text().await.unwrap_or_default();
                last = format!("HTTP {status}: {}", text.chars().take(200).collect::<String>().trim());
                if status.is_client_error()
                    && status != reqwest::StatusCode::TOO_MANY_REQUESTS
                    && status != reqwest::StatusCode::REQUEST_TIMEOUT
                {
                    return Err(format!("{last} (not retried: the webhook refused the request; check its URL)"));
                }
            }
            Err(e) => last = e.to_string(),
        }
        if attempt + 1 < attempts {
            tokio::time::sleep(wait).await;
        }
    }
    Err(format!("{last} (after {attempts} attempts)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flywheel_schemas::alert::AlertKind;

    fn alert() -> Alert {
        Alert {
            id: "alert_1".into(),
            kind: AlertKind::NewPattern,
            project: "shop".into(),
            title: "New failure pattern: “refund policy invented”".into(),
            text: "12 failures, 5 users.".into(),
            pattern_id: Some("pat_1".into()),
            feature: None,
            metrics: [("users".to_string(), 5.0)].into(),
            command: "flywheel tui --pattern pat_1".into(),
            detected_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn each_format_carries_the_title_and_the_command() {
        let slack = body(&alert(), Format::Slack);
        assert!(slack["text"].as_str().unwrap().contains("refund policy invented"));
        assert!(slack["blocks"].to_string().contains("flywheel tui --pattern pat_1"));
        let generic = body(&alert(), Format::Json);
        assert_eq!(generic["kind"], "new_pattern");
        assert_eq!(generic["metrics"]["users"], 5.0);
        assert_eq!(serde_json::from_value::<Alert>(generic).unwrap(), alert());
    }

    #[test]
    fn a_destination_never_stores_the_secret_url() {
        let hook = Webhook { url: "https://hooks.slack.com/services/T0/B0/SECRET".into(), format: Format::Slack, name: None };
        let d = hook.destination();
        assert!(d.starts_with("hooks.slack.com#") && !d.contains("SECRET"), "{d}");
        let named = Webhook { name: Some("oncall".into()), ..hook };
        assert_eq!(named.destination(), "oncall");
    }
}
