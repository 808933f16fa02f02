//! flywheel's own logs and, when asked, its own traces.
//!
//! Logs go to stderr (filter `FLYWHEEL_LOG`, default `warn`; colours only on a terminal). With
//! `FLYWHEEL_SELF_TRACES=http://host:4318` the spans of flywheel itself (ingestion, the
//! write-ahead log, ClickHouse queries) are also exported over OTLP/HTTP — to any OTel backend,
//! or to another flywheel. Off by default. `FLYWHEEL_SELF_TRACES_KEY` adds
//! `Authorization: Bearer <key>`; `FLYWHEEL_SELF_TRACES_FILTER` chooses what is exported
//! (default `flywheel_collector=info,clickhouse=info`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes exported spans when dropped (at the end of `main`).
pub struct Guard(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

pub fn init() -> Guard {
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(EnvFilter::try_from_env("FLYWHEEL_LOG").unwrap_or_else(|_| "warn".into()));
    let endpoint = std::env::var("FLYWHEEL_SELF_TRACES").ok().filter(|e| !e.is_empty());
    let Some(endpoint) = endpoint else {
        tracing_subscriber::registry().with(stderr).init();
        return Guard(None);
    };
    let mut headers = std::collections::HashMap::new();
    if let Ok(key) = std::env::var("FLYWHEEL_SELF_TRACES_KEY") {
        headers.insert("authorization".to_string(), format!("Bearer {key}"));
    }
    // https:// endpoints: the system's roots plus the CA file of the OTLP convention.
    let client = flywheel_schemas::tls::client_config(flywheel_schemas::tls::otlp_ca_file().as_deref())
        .map_err(|e| e.to_string())
        .and_then(|tls| reqwest_otlp::blocking::Client::builder().tls_backend_preconfigured(tls).build().map_err(|e| e.to_string()));
    let exporter = client.map_err(opentelemetry_otlp::ExporterBuildError::InternalFailure).and_then(|client| {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .with_headers(headers)
            .with_http_client(client)
            .build()
    });
    match exporter {
        Ok(exporter) => {
            let resource = opentelemetry_sdk::Resource::builder().with_service_name("flywheel").build();
            let provider =
                opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
            let filter =
                EnvFilter::try_from_env("FLYWHEEL_SELF_TRACES_FILTER").unwrap_or_else(|_| "flywheel_collector=info,clickhouse=info".into());
            let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("flywheel")).with_filter(filter);
            tracing_subscriber::registry().with(stderr).with(otel).init();
            Guard(Some(provider))
        }
        Err(e) => {
            tracing_subscriber::registry().with(stderr).init();
            tracing::warn!(error = %e, %endpoint, "cannot export flywheel's own traces; continuing without");
            Guard(None)
        }
    }
}
