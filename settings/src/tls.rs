//! Reading certificates and keys (PEM) into tonic's rustls configs, with errors that name the file.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A TLS file that cannot be used, and the setting that named it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct TlsFileError {
    /// The setting (`tls_cert_file`, `ca_file`, ...).
    pub setting: &'static str,
    /// What is wrong with the file.
    pub message: String,
}

/// Reads a PEM file and checks it holds what it should (`CERTIFICATE` or `PRIVATE KEY`).
pub fn read_pem(setting: &'static str, path: &Path, holds: &str) -> Result<Vec<u8>, TlsFileError> {
    let fail = |message: String| TlsFileError { setting, message };
    let bytes =
        std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN") || !text.contains(holds) {
        return Err(fail(format!(
            "{} is not a PEM file with a {holds} (expected a `-----BEGIN ...{holds}-----` block)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The server side: certificate and key, plus an optional CA that client certificates must be
/// signed by. Client certificates stay optional at the TLS layer (the CLI has none); the
/// coordinator then requires one where it matters (worker sessions).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, TlsFileError> {
    let identity = Identity::from_pem(
        read_pem("tls_cert_file", cert, "CERTIFICATE")?,
        read_pem("tls_key_file", key, "PRIVATE KEY")?,
    );
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = client_ca {
        config = config
            .client_ca_root(Certificate::from_pem(read_pem(
                "worker_ca_file",
                ca,
                "CERTIFICATE",
            )?))
            .client_auth_optional(true);
    }
    Ok(config)
}

/// The client side: a CA to trust (instead of none: there are no built-in roots) and an
/// optional client certificate and key for mutual TLS.
pub fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<ClientTlsConfig, TlsFileError> {
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = ca {
        config = config.ca_certificate(Certificate::from_pem(read_pem(
            "ca_file",
            ca,
            "CERTIFICATE",
        )?));
    }
    match (cert, key) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read_pem("cert_file", cert, "CERTIFICATE")?,
                read_pem("key_file", key, "PRIVATE KEY")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(TlsFileError {
                setting: "cert_file",
                message: "goes with key_file: set both or neither".into(),
            });
        }
    }
    Ok(config)
}
