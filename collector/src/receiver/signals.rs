//! `POST /v1/signals` (JSON; a project key or a browser feedback token), `POST
//! /v1/feedback-tokens` (mint a token with a project key), `GET /openapi.json`.
//!
//! One bad signal in a batch is reported by index and field; the others are stored (200). A
//! body that is unusable, or whose every signal is bad, is a 400 that says why.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Receiver, header as request_header};
use crate::auth::{AuthError, key_from_headers};
use crate::signals::token::{self, Claims};
use crate::signals::{SOURCE_API, wire};
use crate::writer::WriteError;

/// Largest signals request body.
const MAX_SIGNALS_BODY: usize = 1 << 20;
const MAX_TOKEN_TTL: i64 = 7 * 24 * 3600;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn auth_error(e: AuthError) -> Response {
    let (status, retry_after) = super::reply::Refusal::of_auth(&e).http();
    let mut r = error(status, e.to_string());
    if let Some(secs) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn write_error(e: WriteError) -> Response {
    let (status, retry) = super::reply::Refusal::of_write(&e).http();
    let mut r = error(status, e.to_string());
    if let Some(secs) = retry {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// A feedback token, if the request carries one instead of a key.
fn feedback_token(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = request_header(headers, "x-flywheel-token") {
        return Some(t.trim().to_string());
    }
    key_from_headers(request_header(headers, "authorization"), None).filter(|k| k.starts_with(token::PREFIX))
}

/// The body, or the answer and the reason it is refused for.
/// `holder` is what the bytes count against in the budget's per-client share.
async fn body_bytes(
    body: Body,
    limit: usize,
    budget: &super::budget::BodyBudget,
    holder: &str,
) -> Result<axum::body::Bytes, (Response, &'static str)> {
    let (bytes, _reservation) = super::read_body(body, limit, budget, Some(holder)).await.map_err(|e| match e {
        super::BodyError::TooLarge => (
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than the limit of {limit} bytes; send fewer signals per request"),
            ),
            "too_large",
        ),
        super::BodyError::Busy(spent) => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, spent.message());
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            (r, spent.reason())
        }
        super::BodyError::Read(e) => (error(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}")), "body"),
    })?;
    // Signal bodies are at most 1 MiB: the reservation bounds how many are read at once; what
    // is done with them afterwards is bounded per signal.
    Ok(bytes)
}

pub async fn submit(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    ingest(&r, &headers, body, wire::parse_body).await
}

/// `POST /v1/span_annotations`: evaluations in the shape of Phoenix's REST API (OpenInference
/// annotations), stored as signals of kind `evaluation` ([`wire::from_span_annotations`]).
pub async fn span_annotations(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    ingest(&r, &headers, body, wire::from_span_annotations).await
}

/// A signals request, its body read into signal objects by `parse`.
async fn ingest(r: &Receiver, headers: &HeaderMap, body: Body, parse: fn(&[u8]) -> Result<Vec<Value>, String>) -> Response {
    let metrics = &r.pipeline.metrics;
    metrics.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (project, claims): (String, Option<Claims>) = match feedback_token(headers) {
        Some(t) => match r.auth.token(&t).await {
            Ok(c) => (c.p.clone(), Some(c)),
            Err(e) => {
                metrics.reject("signals", "auth", 1);
                return auth_error(e);
            }
        },
        None => {
            match r
                .auth
                .project(key_from_headers(request_header(headers, "authorization"), request_header(headers, "x-flywheel-key")).as_deref())
                .await
            {
                Ok(p) => (p, None),
                Err(e) => {
                    metrics.reject("signals", "auth", 1);
                    return auth_error(e);
                }
            }
        }
    };
    if let Some(ct) = request_header(headers, "content-type")
        && !ct.to_ascii_lowercase().starts_with("application/json")
    {
        metrics.reject("signals", "content_type", 1);
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("unsupported content type `{ct}`: send application/json"));
    }
    // Tokens are one per user session: their bodies count against their project together.
    let bytes = match body_bytes(body, MAX_SIGNALS_BODY, &r.body_budget, &format!("project {project}")).await {
        Ok(b) => b,
        Err((resp, reason)) => {
            metrics.reject("signals", reason, 1);
            return resp;
        }
    };
    let mut items = match parse(&bytes) {
        Ok(items) => items,
        Err(e) => {
            metrics.reject("signals", "malformed", 1);
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    if let Some(c) = &claims {
        items.iter_mut().for_each(|item| crate::signals::token_defaults(item, c));
    }
    let validated: Vec<_> = items.iter().enumerate().map(|(i, v)| wire::validate(i, v)).collect();
    let total = validated.len();
    let prepared = r.pipeline.signals.prepare(&project, validated, SOURCE_API, claims.as_ref()).await;
    metrics.reject("signals", "invalid", prepared.rejected.len() as u64);
    let batch = crate::writer::Batch { signals: prepared.rows.clone(), ..Default::default() };
    if let Err(e) = r.pipeline.writer.write(batch).await {
        return write_error(e);
    }
    r.pipeline.signals.stored(&prepared);
    let accepted = prepared.accepted.iter().filter(|a| !a.duplicate).count();
    let duplicates = prepared.accepted.len() - accepted;
    metrics.signals_accepted.fetch_add(accepted as u64, std::sync::atomic::Ordering::Relaxed);
    let status = if prepared.accepted.is_empty() && total > 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let mut reply = json!({
        "accepted": accepted,
        "duplicates": duplicates,
        "signals": prepared.accepted,
        "rejected": prepared.rejected,
    });
    if status == StatusCode::BAD_REQUEST {
        let first = &prepared.rejected[0];
        reply["error"] = Value::String(format!("no signal accepted; signal {} field `{}`: {}", first.index, first.field, first.error));
    }
    (status, Json(reply)).into_response()
}

pub async fn mint_token(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    let raw_key = key_from_headers(request_header(&headers, "authorization"), request_header(&headers, "x-flywheel-key"));
    let key = match r.auth.key(raw_key.as_deref()).await {
        Ok(k) => k,
        Err(e) => return auth_error(e),
    };
    // Checked above: the request carried this key.
    let raw_key = raw_key.unwrap_or_default();
    let bytes = match body_bytes(body, 64 * 1024, &r.body_budget, &raw_key).await {
        Ok(b) => b,
        Err((resp, reason)) => {
            r.pipeline.metrics.reject("feedback_tokens", reason, 1);
            return resp;
        }
    };
    let req: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => return error(StatusCode::BAD_REQUEST, "the body must be a JSON object with trace_id, message_id and/or session_id"),
    };
    // A field of the wrong type is refused, never read as absent: a token scoped to nothing the
    // caller meant, or living an hour when it asked for 60.5 seconds, would be worse than a 400.
    let mut fields = [("trace_id", String::new()), ("message_id", String::new()), ("session_id", String::new())];
    for (name, value) in fields.iter_mut() {
        match req.get(*name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => *value = s.clone(),
            Some(_) => return error(StatusCode::BAD_REQUEST, format!("`{name}` must be a string")),
        }
    }
    let [(_, trace_id), (_, message_id), (_, session_id)] = fields;
    let trace_id = trace_id.to_ascii_lowercase();
    let hex32 = trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit());
    if !trace_id.is_empty() && !hex32 {
        return error(StatusCode::BAD_REQUEST, "`trace_id` must be 32 hexadecimal characters (the OpenTelemetry trace id)");
    }
    let ttl = match req.get("ttl_seconds") {
        None | Some(Value::Null) => Some(3600),
        Some(v) => v.as_i64(),
    };
    let Some(ttl) = ttl.filter(|t| (1..=MAX_TOKEN_TTL).contains(t)) else {
        return error(StatusCode::BAD_REQUEST, format!("`ttl_seconds` must be a whole number of seconds between 1 and {MAX_TOKEN_TTL}"));
    };
    let claims = Claims {
        k: key.key_id,
        p: key.project,
        exp: OffsetDateTime::now_utc().unix_timestamp() + ttl,
        t: trace_id,
        m: message_id,
        s: session_id,
    };
    if claims.t.is_empty() && claims.m.is_empty() && claims.s.is_empty() {
        return error(StatusCode::BAD_REQUEST, "a token needs a scope: trace_id, message_id and/or session_id");
    }
    let expires = OffsetDateTime::from_unix_timestamp(claims.exp).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default();
    Json(json!({ "token": token::mint(&raw_key, &claims), "expires_at": expires })).into_response()
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], flywheel_schemas::api::OPENAPI)
}
