//! The metrics endpoint over TLS (`--metrics-cert-file`, `--metrics-key-file`), with rustls.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// A TLS server configuration from a PEM certificate chain and its PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Error::InvalidArgument(format!("{what} {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("--metrics-cert-file", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("--metrics-cert-file", cert, &e))?;
    if chain.is_empty() {
        return Err(bad("--metrics-cert-file", cert, &"no certificate in it"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("--metrics-key-file", key, &e))?;
    // The provider is named: with the aws feature a second one is linked in, and rustls then
    // picks no default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal("TLS versions", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            bad(
                "--metrics-key-file",
                key,
                &format!("does not go with the certificate: {e}"),
            )
        })?;
    Ok(Arc::new(config))
}
