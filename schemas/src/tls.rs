//! TLS for flywheel's own clients (ClickHouse over `https://`, the OTLP export of its traces).
//!
//! rustls with the ring provider (already built for feedback tokens; no C toolchain needed, unlike
//! aws-lc), trusting the system's roots — `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured — plus
//! an optional CA file of the operator's (a private ClickHouse behind an internal CA).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error(
        "cannot use the CA file {path}: {reason}; give a PEM file holding the certificate(s) of the authority that signed \
         the server's certificate"
    )]
    CaFile { path: String, reason: String },
    #[error(
        "no trusted root certificates: the system has none (install the ca-certificates package, or set SSL_CERT_FILE) \
         and no CA file is configured"
    )]
    NoRoots,
    #[error("cannot set TLS up: {0}")]
    Setup(String),
}

/// The CA file an OTLP exporter trusts besides the system's roots, by the OpenTelemetry
/// exporter convention: `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, else `OTEL_EXPORTER_OTLP_CERTIFICATE`.
pub fn otlp_ca_file() -> Option<std::path::PathBuf> {
    ["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"]
        .iter()
        .find_map(|name| std::env::var_os(name).filter(|v| !v.is_empty()))
        .map(std::path::PathBuf::from)
}

/// The system's root certificates, read once per process (a few hundred files on a Debian).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a system root certificate could not be read");
        }
        found.certs
    })
}

/// The certificates of a PEM file: at least one, all valid X.509 DER.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::CaFile { path: path.display().to_string(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(fail("it holds no `BEGIN CERTIFICATE` block".into()));
    }
    Ok(certs)
}

/// A client configuration trusting the system's roots and the certificates of `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsError::CaFile { path: path.display().to_string(), reason: e.to_string() })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client_config(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(err.contains("no `BEGIN CERTIFICATE`"), "{err}");
    }
}
