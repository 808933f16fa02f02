//! Time bounds on every ClickHouse call of the collector.
//!
//! A ClickHouse that accepts connections but never answers (a full disk, a stuck merge, a
//! network black hole) must not hold a request, the drain or `/readyz` forever: each call gets
//! a deadline, and one that passes it fails as `Unreachable` (timed out), which every caller
//! already treats as "ClickHouse is away": retried by the drain, 503 for the client, not ready.

use std::future::Future;
use std::time::Duration;

use flywheel_schemas::{Store, StoreError};

use crate::metrics::Event;

/// A kind of ClickHouse call and its time bound; a call past it is counted
/// (`flywheel_clickhouse_timeouts_total{call}`).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub limit: Duration,
    event: Event,
}

/// `/readyz`'s ping: a probe must answer fast, whatever the server does.
pub const PING: Deadline = Deadline { limit: Duration::from_secs(2), event: Event::PingTimeout };
/// Lookups on a request's path (keys, signal deduplication and links).
pub const QUERY: Deadline = Deadline { limit: Duration::from_secs(10), event: Event::LookupTimeout };
/// One insert of up to `drain_rows` rows; retried (deduplicated) when it passes.
pub const INSERT: Deadline = Deadline { limit: Duration::from_secs(120), event: Event::InsertTimeout };
/// One round of a background job (linking pending signals, deriving implicit ones): a server
/// that stops answering must not stall the job loop for good; the next tick retries.
pub const JOB: Deadline = Deadline { limit: Duration::from_secs(120), event: Event::JobTimeout };

/// Runs `call` within `deadline`.
pub async fn within<T>(store: &Store, deadline: Deadline, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let limit = deadline.limit;
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => {
            crate::metrics::count(deadline.event);
            Err(StoreError::Unreachable { url: store.url().to_string(), reason: format!("no answer within {limit:?}") })
        }
    }
}
