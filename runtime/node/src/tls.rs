//! TLS for clients on the node's public address (`cella serve --tls-cert FILE --tls-key FILE`):
//! loads the PEM certificate chain and private key into a rustls server configuration (the
//! `ring` provider, TLS 1.3 and 1.2) that offers HTTP/2 and HTTP/1.1 by ALPN. Every failure
//! names the file and what is wrong with it ([`TlsError`]), so a node with a bad certificate
//! refuses to start with a sentence an operator can act on.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::ServerConfig;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer,
    pem::{self, PemObject},
};
use tokio_rustls::TlsAcceptor;

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the node's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// The private key of the node's certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why the certificate or key cannot be used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read the TLS {what} {}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("the TLS {what} {} is not valid PEM: {problem}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    /// The certificate file holds no certificate.
    #[error(
        "the TLS certificate {} holds no certificate (expected a PEM `-----BEGIN \
         CERTIFICATE-----` block{})",
        path.display(),
        if *holds_key { "; it holds a private key: is it the key file?" } else { "" }
    )]
    NoCertificate { path: PathBuf, holds_key: bool },
    /// The key file holds no private key.
    #[error(
        "the TLS key {} holds no private key (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` \
         or `EC PRIVATE KEY` block{})",
        path.display(),
        if *holds_certificate { "; it holds a certificate: is it the certificate file?" } else { "" }
    )]
    NoKey {
        path: PathBuf,
        holds_certificate: bool,
    },
    /// rustls refused the pair (a key that does not match the certificate, an unsupported key
    /// type).
    #[error(
        "the TLS key {} cannot serve the certificate {}",
        key.display(),
        cert.display()
    )]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The acceptor for `files`: a server configuration with the certificate chain and key,
/// offering `h2` and `http/1.1`.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certificates(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = Arc::new(ring_provider());
    let unusable = |source| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(unusable)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// rustls's `ring` provider. rustls 0.23.48 deprecated it for its lack of post-quantum key
/// exchange; the `aws-lc-rs` provider has that, but needs a C and CMake build of AWS-LC, which
/// the `ring` crate (C and assembly through `cc` alone) does not.
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Reads `path` whole.
fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(what: &'static str, path: &Path, e: pem::Error) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_path_buf(),
        problem: e.to_string(),
    }
}

/// The certificate chain in the PEM file `path`, in file order.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read("certificate", path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            holds_key: PrivateKeyDer::from_pem_slice(&text).is_ok(),
        });
    }
    Ok(certs)
}

/// The first private key in the PEM file `path`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
            holds_certificate: CertificateDer::from_pem_slice(&text).is_ok(),
        },
        e => pem_error("key", path, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope-key.pem"),
        };
        let error = acceptor(&missing).err().unwrap().to_string();
        assert!(error.contains("cannot read the TLS certificate"), "{error}");
        assert!(error.contains("nope.pem"), "{error}");

        let empty = files(dir.path(), "hello\n", "");
        let error = acceptor(&empty).err().unwrap().to_string();
        assert!(error.contains("holds no certificate"), "{error}");
        assert!(error.contains("cert.pem"), "{error}");

        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let swapped = files(dir.path(), key, "");
        let error = acceptor(&swapped).err().unwrap().to_string();
        assert!(error.contains("is it the key file?"), "{error}");

        let broken = files(dir.path(), "-----BEGIN CERTIFICATE-----\nAAAA\n", "");
        let error = acceptor(&broken).err().unwrap().to_string();
        assert!(error.contains("is not valid PEM"), "{error}");

        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let no_key = files(dir.path(), cert, cert);
        let error = acceptor(&no_key).err().unwrap().to_string();
        assert!(error.contains("holds no private key"), "{error}");
        assert!(error.contains("is it the certificate file?"), "{error}");
        assert!(error.contains("key.pem"), "{error}");

        // Well-formed PEM that is no certificate and no key rustls can use.
        let garbage = files(dir.path(), cert, key);
        let error = acceptor(&garbage).err().unwrap().to_string();
        assert!(error.contains("cannot serve the certificate"), "{error}");
    }
}
