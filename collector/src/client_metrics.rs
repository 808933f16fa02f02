//! OTLP metrics (`POST /v1/metrics`, gRPC `MetricsService/Export`): accepted and counted, not
//! stored.
//!
//! Every `opentelemetry-instrument` and Traceloop set-up exports the GenAI client metrics
//! (`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`) to the same endpoint as
//! its traces; a 404 there is an export error in the application's log every minute. flywheel
//! computes tokens, cost and latency per call from the spans, which carry the same numbers per
//! call and per user, so the aggregated points add nothing it would keep: they are decoded
//! (a malformed body still gets a 400), counted per metric at `/metrics`, and dropped.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

/// The GenAI metrics counted by name; every other metric is counted as `other`, so that a
/// producer's metric names cannot grow `/metrics` without bound.
const KNOWN: &[&str] = &[
    "gen_ai.client.token.usage",
    "gen_ai.client.operation.duration",
    "gen_ai.client.operation.time_to_first_chunk",
    "gen_ai.client.operation.time_per_output_chunk",
    "gen_ai.server.request.duration",
    "gen_ai.server.time_to_first_token",
    "gen_ai.server.time_per_output_token",
];

/// Data points per metric name (`KNOWN`, or `other`).
pub fn points(request: &ExportMetricsServiceRequest) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for metric in request.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
        let name = KNOWN.iter().copied().find(|k| *k == metric.name).unwrap_or("other");
        let n = match &metric.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        };
        *out.entry(name).or_default() += n as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics};

    #[test]
    fn counts_points_per_known_metric_and_the_rest_as_other() {
        let metric = |name: &str, n: usize| Metric {
            name: name.into(),
            data: Some(Data::Histogram(Histogram { data_points: vec![HistogramDataPoint::default(); n], aggregation_temporality: 2 })),
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric("gen_ai.client.token.usage", 2),
                        metric("gen_ai.client.operation.duration", 1),
                        metric("http.x", 3),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let counted = points(&request);
        assert_eq!(counted["gen_ai.client.token.usage"], 2);
        assert_eq!(counted["gen_ai.client.operation.duration"], 1);
        assert_eq!(counted["other"], 3);
    }
}
