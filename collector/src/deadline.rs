//! Time bounds on every ClickHouse call of the collector.
//!
//! A ClickHouse that accepts connections but never answers (a full disk, a stuck merge, a
//! network black hole) must not hold a request, the drain or `/readyz` forever: each call gets
//! a deadline, and one that passes it fails as `Unreachable` (timed out), which every caller
//! already treats as "ClickHouse is away": retried by the drain, 503 for the client, not ready.

use std::future::Future;
use std::time::Duration;

use flywheel_schemas::{Store, StoreError};

/// `/readyz`'s ping: a probe must answer fast, whatever the server does.
pub const PING: Duration = Duration::from_secs(2);
/// Lookups on a request's path (keys, signal deduplication and links).
pub const QUERY: Duration = Duration::from_secs(10);
/// One insert of up to `drain_rows` rows; retried (deduplicated) when it passes.
pub const INSERT: Duration = Duration::from_secs(120);
/// One round of a background job (linking pending signals, deriving implicit ones): a server
/// that stops answering must not stall the job loop for good; the next tick retries.
pub const JOB: Duration = Duration::from_secs(120);

/// Runs `call` with a deadline of `limit`.
pub async fn within<T>(store: &Store, limit: Duration, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unreachable { url: store.url().to_string(), reason: format!("no answer within {limit:?}") }),
    }
}
