//! TLS to ClickHouse and from the OTLP exporters, through a real TLS front (rustls, a
//! certificate of a private authority made for the test) before the real engine and a real
//! collector — as ClickHouse Cloud, or a load balancer before a server, presents them.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Collector, TestDb, flywheel_cmd, scratch_dir, stderr};
use flywheel_schemas::config::ClickHouseConfig;
use flywheel_schemas::migrate::{self, MigrateOptions};
use flywheel_schemas::rows::ApiKeyRow;
use flywheel_schemas::{Store, StoreError};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private authority (its certificate written to `ca.pem` in `dir`) and a TLS front on a free
/// port of 127.0.0.1, with a certificate for `localhost` signed by it, relaying to `backend`.
/// Returns the front's port.
async fn tls_front(dir: &Path, backend: String) -> u16 {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name.push(DnType::CommonName, "flywheel test authority");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca).unwrap();

    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate aborts the handshake: nothing to relay.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    port
}

/// `http://user:pass@host:port` → (`user:pass@` or "", `host:port`).
fn split_url(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r).trim_end_matches('/');
    match rest.rsplit_once('@') {
        Some((credentials, host)) => (format!("{credentials}@"), host.to_string()),
        None => (String::new(), rest.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_over_https_behind_a_private_authority() {
    let dir = scratch_dir("tls-clickhouse");
    let db = TestDb::new("tls");
    let (credentials, backend) = split_url(&db.url);
    let port = tls_front(&dir, backend).await;
    let https = format!("https://{credentials}localhost:{port}");
    let ca_file = dir.join("ca.pem");

    // Trusted through the CA file: the whole storage boundary works over TLS.
    let cfg = ClickHouseConfig { database: db.database.clone(), ca_file: Some(ca_file.clone()), ..Default::default() };
    let store = Store::new(&https, &cfg).unwrap();
    assert_eq!(store.url(), format!("https://localhost:{port}"), "no credentials in what is printed");
    migrate::migrate(&store, &MigrateOptions::default()).await.unwrap();
    let at = time::OffsetDateTime::now_utc().replace_nanosecond(1000).unwrap();
    let key = ApiKeyRow {
        project_id: "p".into(),
        key_id: "k".into(),
        key_hash: "h".into(),
        name: "over tls".into(),
        created_at: at,
        revoked_at: None,
        updated_at: at,
    };
    store.insert("api_keys", std::slice::from_ref(&key)).await.unwrap();
    let back: Vec<ApiKeyRow> = store.query("SELECT ?fields FROM api_keys").fetch_all().await.unwrap();
    assert_eq!(back, vec![key]);

    // Not trusted without it: refused as a TLS failure, saying what to configure.
    let untrusted = ClickHouseConfig { ca_file: None, ..cfg.clone() };
    let err = Store::new(&https, &untrusted).unwrap().ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("certificate") && text.contains("ca_file"), "{text}");
    assert!(!credentials.is_empty() || !text.contains('@'), "no credentials in the message: {text}");

    // The command line reads the CA file from the environment.
    let out = flywheel_cmd()
        .args(["migrate"])
        .env("FLYWHEEL_CLICKHOUSE_URL", &https)
        .env("FLYWHEEL_CLICKHOUSE_DATABASE", &db.database)
        .env("FLYWHEEL_CLICKHOUSE_CA_FILE", &ca_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(printed.contains(&format!("on https://localhost:{port}")), "{printed}");
    let out = flywheel_cmd()
        .args(["migrate"])
        .env("FLYWHEEL_CLICKHOUSE_URL", &https)
        .env("FLYWHEEL_CLICKHOUSE_DATABASE", &db.database)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot use TLS") && err.contains("FLYWHEEL_CLICKHOUSE_CA_FILE"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// flywheel's own traces, exported to a collector behind TLS, trusting the CA file named by
/// the OpenTelemetry exporter variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_traces_reach_a_collector_over_https() {
    let dir = scratch_dir("tls-otlp");
    let sink = Collector::start(TestDb::new("tlssink"), "");
    let sink_key = sink.key("flywheel-itself");
    let port = tls_front(&dir, sink.http.trim_start_matches("http://").to_string()).await;
    let endpoint = format!("https://localhost:{port}");
    let ca = dir.join("ca.pem");
    let c = Collector::start_with_env(
        TestDb::new("tlstraced"),
        "",
        &[
            ("FLYWHEEL_SELF_TRACES", endpoint.as_str()),
            ("FLYWHEEL_SELF_TRACES_KEY", sink_key.as_str()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap()),
        ],
    );
    // The traced collector's work (an ingest) makes its spans.
    let key = c.key("p");
    let body = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp/oi/chat_plain.pb")).unwrap();
    assert_eq!(c.post_traces(&key, body).await.status(), 200);
    let store = sink.db.store();
    let mut spans = 0u64;
    for _ in 0..80 {
        sink.wait_stored().await;
        spans = store.query("SELECT count() FROM spans WHERE project_id = 'flywheel-itself'").fetch_one().await.unwrap();
        if spans > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(spans > 0, "the collector's own spans crossed TLS");
}

/// `flywheel simulate` sends its spans and its signals to a collector behind TLS, trusting the
/// CA file named by the OpenTelemetry exporter variable; without it, it stops with a one-line
/// reason naming the certificate problem instead of sending nothing silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_reaches_a_collector_over_https() {
    let dir = scratch_dir("tls-simulate");
    let sink = Collector::start(TestDb::new("tlssim"), "");
    let key = sink.key("sim");
    let port = tls_front(&dir, sink.http.trim_start_matches("http://").to_string()).await;
    let endpoint = format!("https://localhost:{port}");
    let ca = dir.join("ca.pem");
    let args =
        ["simulate", "--endpoint", endpoint.as_str(), "--key", key.as_str(), "--interactions", "40", "--seed", "3", "--duration", "1d"];
    let out = sink.db.flywheel_with(&args, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap().to_string())]);
    assert!(out.status.success(), "{}{}", common::stdout(&out), common::stderr(&out));
    sink.wait_stored().await;
    let store = sink.db.store();
    let calls: u64 = store.query("SELECT count() FROM llm_calls WHERE project_id = 'sim'").fetch_one().await.unwrap();
    let signals: u64 = store.query("SELECT count() FROM signals WHERE project_id = 'sim'").fetch_one().await.unwrap();
    assert!(calls >= 40, "{calls} calls crossed TLS");
    assert!(signals > 0, "signals crossed TLS");

    let out = sink.db.flywheel_with(&args, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", String::new())]);
    assert!(!out.status.success(), "an unknown authority must not be trusted");
    let err = common::stderr(&out);
    assert!(err.contains("UnknownIssuer") && err.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
