//! User reactions reported through the collector's public signals API
//! (`POST {endpoint}/v1/signals`, a JSON array per request).

use std::time::Duration;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::SimulateError;
use crate::reactions::Kind;

/// Signals per request.
pub const BATCH: usize = 100;

/// One signal as the application would report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub kind: Kind,
    pub timestamp: OffsetDateTime,
    /// Whether the app reports it; an unreported reaction shows only in the traffic.
    pub sent: bool,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub session_id: Option<String>,
    /// The LLM response id (`gen_ai.response.id`).
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub feature: Option<String>,
    pub value: Option<f64>,
    pub comment: Option<String>,
    /// The final text of an `edit`.
    pub text: Option<String>,
    pub idempotency_key: String,
}

impl Signal {
    /// The wire form of the signals API.
    pub fn to_wire(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!(self.kind.id()));
        m.insert("timestamp".into(), json!(self.timestamp.format(&Rfc3339).expect("timestamps format as RFC 3339")));
        let optional = [
            ("trace_id", &self.trace_id),
            ("span_id", &self.span_id),
            ("session_id", &self.session_id),
            ("message_id", &self.message_id),
            ("user_id", &self.user_id),
            ("feature", &self.feature),
            ("comment", &self.comment),
            ("text", &self.text),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                m.insert(key.into(), json!(v));
            }
        }
        if let Some(v) = self.value {
            m.insert("value".into(), json!(v));
        }
        m.insert("idempotency_key".into(), json!(self.idempotency_key));
        m.insert("attributes".into(), json!({"source": "flywheel-simulator"}));
        Value::Object(m)
    }
}

/// What became of the signals of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    pub sent: usize,
    /// Not sent because the collector has no signals API (404).
    pub no_api: usize,
}

/// Posts `signals` in batches. A collector without the signals API (404) is not an error: the
/// traces are still useful, and the caller warns. Any other refusal is.
pub async fn send(endpoint: &str, key: Option<&str>, signals: &[&Signal]) -> Result<Delivery, SimulateError> {
    let url = format!("{}/v1/signals", endpoint.trim_end_matches('/'));
    let unreachable = |reason: String| SimulateError::SignalsUnreachable { url: url.clone(), reason };
    let tls =
        flywheel_schemas::tls::client_config(flywheel_schemas::tls::otlp_ca_file().as_deref()).map_err(|e| unreachable(e.to_string()))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut delivery = Delivery::default();
    for (n, batch) in signals.chunks(BATCH).enumerate() {
        let body = serde_json::to_vec(&Value::Array(batch.iter().map(|s| s.to_wire()).collect())).expect("signals serialise");
        let mut wait = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            let mut request = client.post(&url).header("content-type", "application/json").body(body.clone());
            if let Some(key) = key {
                request = request.header("authorization", format!("Bearer {key}"));
            }
            let response =
                request.send().await.map_err(|e| SimulateError::SignalsUnreachable { url: url.clone(), reason: e.to_string() })?;
            let status = response.status().as_u16();
            match status {
                200..=299 => {
                    delivery.sent += batch.len();
                    break;
                }
                404 | 405 => {
                    delivery.no_api = signals.len() - n * BATCH;
                    return Ok(delivery);
                }
                429 | 503 if attempt < 8 => {
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    tokio::time::sleep(retry_after.unwrap_or(wait).min(Duration::from_secs(10))).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                    attempt += 1;
                }
                _ => {
                    let body = response.text().await.unwrap_or_default();
                    return Err(SimulateError::SignalsRefused {
                        url,
                        count: batch.len(),
                        status,
                        body: body.chars().take(300).collect::<String>().replace('\n', " "),
                    });
                }
            }
        }
    }
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What a fake collector received: (path, authorization header, body).
    type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

    /// A minimal HTTP/1.1 server answering every request with `status` and `body`.
    async fn fake_collector(status: u16, body: &'static str) -> (String, Received) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received: Received = Arc::default();
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut chunk = [0u8; 8192];
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let header = |name: &str| {
                            head.lines()
                                .find_map(|l| {
                                    l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
                                })
                                .unwrap_or_default()
                        };
                        let length: usize = header("content-length").parse().unwrap_or(0);
                        while buf.len() < end + 4 + length {
                            let mut chunk = [0u8; 8192];
                            let n = conn.read(&mut chunk).await.unwrap();
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let path = head.split_whitespace().nth(1).unwrap_or_default().to_string();
                        let json = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                        log.lock().unwrap().push((path, header("authorization"), json));
                        buf.drain(..end + 4 + length);
                        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                        conn.write_all(reply.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (url, received)
    }

    fn signals(n: usize) -> Vec<Signal> {
        (0..n)
            .map(|i| Signal {
                kind: Kind::Regenerate,
                timestamp: OffsetDateTime::from_unix_timestamp(1_748_865_600 + i as i64).unwrap(),
                sent: true,
                trace_id: None,
                span_id: None,
                session_id: Some(format!("s{i}")),
                message_id: None,
                user_id: None,
                feature: Some("coding_assistant".into()),
                value: None,
                comment: None,
                text: None,
                idempotency_key: format!("k{i}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn signals_go_in_batches_of_a_hundred_with_the_key() {
        let (url, received) = fake_collector(202, "").await;
        let all = signals(250);
        let delivery = send(&url, Some("fw_key"), &all.iter().collect::<Vec<_>>()).await.unwrap();
        assert_eq!(delivery, Delivery { sent: 250, no_api: 0 });
        let received = received.lock().unwrap();
        assert_eq!(received.iter().map(|(_, _, b)| b.as_array().unwrap().len()).collect::<Vec<_>>(), [100, 100, 50]);
        assert!(received.iter().all(|(path, auth, _)| path == "/v1/signals" && auth == "Bearer fw_key"));
        assert_eq!(received[2].2[49]["idempotency_key"], "k249");
    }

    #[tokio::test]
    async fn a_collector_without_the_signals_api_is_reported_not_fatal() {
        let (url, received) = fake_collector(404, "not found").await;
        let all = signals(250);
        let delivery = send(&url, None, &all.iter().collect::<Vec<_>>()).await.unwrap();
        assert_eq!(delivery, Delivery { sent: 0, no_api: 250 });
        assert_eq!(received.lock().unwrap().len(), 1, "stops at the first 404");
    }

    #[tokio::test]
    async fn a_refusal_says_what_the_collector_answered() {
        let (url, _) = fake_collector(400, "unknown signal kind").await;
        let all = signals(3);
        let err = send(&url, None, &all.iter().collect::<Vec<_>>()).await.unwrap_err().to_string();
        assert!(err.contains("400") && err.contains("unknown signal kind") && err.contains("3 signals"), "{err}");
    }

    #[test]
    fn wire_form_has_only_what_is_set() {
        let s = Signal {
            kind: Kind::ThumbsDown,
            timestamp: OffsetDateTime::from_unix_timestamp(1_748_865_600).unwrap(),
            sent: true,
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: None,
            session_id: None,
            message_id: None,
            user_id: Some("u_1".into()),
            feature: None,
            value: None,
            comment: Some("I asked in English.".into()),
            text: None,
            idempotency_key: "k".into(),
        };
        let wire = s.to_wire();
        assert_eq!(wire["kind"], "thumbs_down");
        assert_eq!(wire["timestamp"], "2025-06-02T12:00:00Z");
        assert_eq!(wire["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(wire["comment"], "I asked in English.");
        assert!(wire.get("span_id").is_none() && wire.get("value").is_none() && wire.get("text").is_none());
    }
}
