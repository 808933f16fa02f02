//! gRPC bodies in the memory budget, as they arrive.
//!
//! tonic buffers and decodes a whole message before the service sees it: a budget checked in
//! the service comes too late (500 concurrent 10 MB exports would all be in memory first). This
//! layer sits in front of tonic and reserves each body's bytes in the shared [`BodyBudget`] frame
//! by frame — twice the bytes (tonic's buffer, then the message decoded from it), eight times
//! for gzip (its decompressed copy) — and refuses a request as soon as the budget cannot take
//! its next frame, before tonic buffers more. The reservation lasts as long as tonic holds the
//! body; the service then reserves the decoded message (see `grpc::Service::reserve`).
//!
//! The request's key is authenticated here, from its headers, before any of its body is read:
//! a request with a made-up key is refused without a byte in the budget, and the share of the
//! budget one key may hold (`max_inflight_body_bytes_per_key`) is counted only for keys that
//! exist — a flood of invented keys cannot each take a share.
//!
//! Refusals are `RESOURCE_EXHAUSTED` with a `RetryInfo` detail: OTLP exporters retry that code
//! only when the server says when (OTLP specification, "Failures"), and a busy collector wants
//! the data again in a moment, not dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

use super::Receiver;
use super::budget::{BodyBudget, Reservation, Spent};
use super::reply::Refusal;

/// Reserved when a request arrives, before its first frame: a request that cannot get even this
/// is refused without reading anything.
const FIRST: u64 = 64 * 1024;
/// Bytes reserved per byte received: tonic's buffer and the decoded message.
const PLAIN_FACTOR: u64 = 2;
/// For gzip bodies: the buffer, the decompressed copy (OTLP protobuf compresses 5–10×) and the
/// decoded message. A body that decompresses further is still bounded by tonic's
/// `max_decoding_message_size`.
const GZIP_FACTOR: u64 = 8;

/// The refusal of a request the memory budget (or its key's share) cannot take now: retried a
/// second later.
pub fn over_budget(spent: Spent) -> Status {
    super::reply::busy(spent.message(), Duration::from_secs(1))
}

/// The project a request's key was authenticated for here, passed on to the service (in the
/// request's extensions) so that it does not authenticate the key again.
#[derive(Clone)]
pub struct Admitted(pub String);

/// The credential a gRPC request presents, read as the receivers read it.
pub fn presented_key(headers: &axum::http::HeaderMap) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    crate::auth::key_from_headers(get("authorization"), get("x-flywheel-key"))
}

#[derive(Clone)]
pub struct BudgetLayer {
    pub receiver: Arc<Receiver>,
}

impl<S> tower::Layer<S> for BudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Budgeted<S> {
        Budgeted { inner, receiver: self.receiver.clone() }
    }
}

#[derive(Clone)]
pub struct Budgeted<S> {
    inner: S,
    receiver: Arc<Receiver>,
}

impl<S> tower::Service<axum::http::Request<Body>> for Budgeted<S>
where
    S: tower::Service<axum::http::Request<Body>, Response = axum::http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = axum::http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<axum::http::Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<Body>) -> Self::Future {
        // The service polled ready is the one to call (tower's contract); a clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let receiver = self.receiver.clone();
        Box::pin(async move {
            let metrics = &receiver.pipeline.metrics;
            let presented = presented_key(request.headers());
            let mut request = request;
            match receiver.auth.project(presented.as_deref()).await {
                Ok(project) => {
                    request.extensions_mut().insert(Admitted(project));
                }
                Err(e) => {
                    metrics.reject("grpc", "auth", 1);
                    return Ok(Refusal::of_auth(&e).grpc(e.to_string()).into_http());
                }
            }
            let budget = &receiver.body_budget;
            let mut reservation = budget.empty(receiver.auth.budget_key(presented.as_deref()));
            if let Err(spent) = budget.grow(&mut reservation, FIRST) {
                metrics.reject("grpc", spent.reason(), 1);
                return Ok(over_budget(spent).into_http());
            }
            let gzip = request.headers().get("grpc-encoding").is_some_and(|v| v.as_bytes() != b"identity");
            let (parts, body) = request.into_parts();
            let counted = Counted {
                inner: body,
                budget: budget.clone(),
                metrics: metrics.clone(),
                reservation,
                prepaid: FIRST,
                factor: if gzip { GZIP_FACTOR } else { PLAIN_FACTOR },
            };
            inner.call(axum::http::Request::from_parts(parts, Body::new(counted))).await
        })
    }
}

/// A request body that reserves its bytes as they arrive, and releases them when dropped.
struct Counted {
    inner: Body,
    budget: BodyBudget,
    metrics: Arc<crate::metrics::Metrics>,
    reservation: Reservation,
    /// Bytes reserved at arrival not yet used by frames.
    prepaid: u64,
    factor: u64,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let need = data.len() as u64 * this.factor;
                    let prepaid = need.min(this.prepaid);
                    this.prepaid -= prepaid;
                    if let Err(spent) = this.budget.grow(&mut this.reservation, need - prepaid) {
                        this.metrics.reject("grpc", spent.reason(), 1);
                        return Poll::Ready(Some(Err(over_budget(spent))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
