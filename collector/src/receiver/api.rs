//! The read API: what the TUI shows, as JSON, for dashboards, notebooks and coding agents.
//!
//! `GET /v1/patterns`, `/v1/patterns/{id}?members=N`, `/v1/traces/{id}`,
//! `/v1/failures?pattern=ID&since=7d&limit=N`, `/v1/search?q=TEXT&since=30d&limit=N`. Each
//! request is authenticated with a project key (as ingestion is) and answers for that key's
//! project only: another project's pattern or trace is a 404, exactly as one that does not
//! exist, so that a key cannot probe what other projects hold. The shapes are
//! [`flywheel_schemas::read`]'s, documented in `/openapi.json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flywheel_schemas::read::{self, FailureFilter};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Receiver, header as get_header};
use crate::auth::key_from_headers;
use crate::deadline::{QUERY, within};

/// An answer that is not the data asked for: a status and one line that says what to do.
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<flywheel_schemas::StoreError> for ApiError {
    fn from(e: flywheel_schemas::StoreError) -> ApiError {
        tracing::warn!(error = %e, "read API query failed");
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message: format!("storage unavailable: {e}"), retry_after: Some(5) }
    }
}

/// The project of a read request.
async fn project(r: &Receiver, headers: &HeaderMap) -> Result<String, ApiError> {
    let key = key_from_headers(get_header(headers, "authorization"), get_header(headers, "x-flywheel-key"));
    r.auth.project(key.as_deref()).await.map_err(|e| {
        let (status, retry_after) = super::reply::Refusal::of_auth(&e).http();
        ApiError { status, message: e.to_string(), retry_after }
    })
}

fn since(spec: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    read::since(spec).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("since: {e}")))
}

/// A store query within the collector's query deadline.
async fn query<T>(r: &Receiver, q: impl std::future::Future<Output = Result<T, flywheel_schemas::StoreError>>) -> Result<T, ApiError> {
    Ok(within(&r.store, QUERY, q).await?)
}

fn not_found(what: &str, id: &str, project: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no {what} `{id}` in project {project}: `GET /v1/patterns` lists the patterns"))
}

pub async fn patterns(State(r): State<Arc<Receiver>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let project = project(&r, &headers).await?;
    let patterns = query(&r, read::patterns(&r.store, &project)).await?;
    Ok(Json(read::PatternList { project, patterns }).into_response())
}

#[derive(Deserialize)]
pub struct PatternQuery {
    members: Option<usize>,
}

pub async fn pattern(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PatternQuery>,
) -> Result<Response, ApiError> {
    let project = project(&r, &headers).await?;
    let detail = query(&r, read::pattern(&r.store, &project, &id, read::limit(q.members))).await?;
    detail.map(|d| Json(d).into_response()).ok_or_else(|| not_found("pattern", &id, &project))
}

pub async fn trace(State(r): State<Arc<Receiver>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let project = project(&r, &headers).await?;
    let trace_id = id.trim().to_ascii_lowercase();
    if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("`{id}` is not a trace id: 32 hexadecimal digits")));
    }
    let trace = query(&r, read::trace(&r.store, &project, &trace_id)).await?;
    trace.map(|t| Json(t).into_response()).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("no trace `{trace_id}` in project {project} (or its retention has passed)"))
    })
}

#[derive(Deserialize)]
pub struct FailuresQuery {
    pattern: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

pub async fn failures(State(r): State<Arc<Receiver>>, headers: HeaderMap, Query(q): Query<FailuresQuery>) -> Result<Response, ApiError> {
    let project = project(&r, &headers).await?;
    let filter = FailureFilter { pattern: q.pattern.clone(), since: since(q.since.as_deref())?, limit: read::limit(q.limit) };
    let page = query(&r, read::failures(&r.store, &project, &filter)).await?;
    page.map(|p| Json(p).into_response()).ok_or_else(|| not_found("pattern", q.pattern.as_deref().unwrap_or(""), &project))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

pub async fn search(State(r): State<Arc<Receiver>>, headers: HeaderMap, Query(q): Query<SearchQuery>) -> Result<Response, ApiError> {
    let project = project(&r, &headers).await?;
    let text = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "search needs `q`: the text to find in failures' requests, answers and errors")
    })?;
    let since = since(q.since.as_deref())?.unwrap_or_else(|| OffsetDateTime::now_utc() - read::SEARCH_LOOKBACK);
    let page = query(&r, read::search(&r.store, &project, text, since, read::limit(q.limit))).await?;
    Ok(Json(page).into_response())
}
