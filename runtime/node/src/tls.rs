//! TLS for clients on the node's public address (`cella serve --tls-cert FILE --tls-key FILE`):
//! loads the PEM certificate chain and private key into a rustls server configuration (the
//! `ring` provider, TLS 1.3 and 1.2) that offers HTTP/2 and HTTP/1.1 by ALPN. Every failure
//! names the file and what is wrong with it ([`TlsError`]), so a node with a bad certificate
//! refuses to start with a sentence an operator can act on.
//!
//! Mutual TLS between peers (`--peer-ca/--peer-cert/--peer-key`, [`PeerTlsFiles`]): the
//! listener's configuration ([`peer_acceptor`]) serves the peer certificate and asks every
//! client for a certificate, optional (clients of the public API have none). The handshake
//! checks only that the client holds the key of the certificate it presents; its chain is
//! verified against the peer CA right after ([`PeerVerifier::verified`]), so that a client
//! with a certificate from another CA is served as a public client and its peer requests get
//! 401 rather than a broken handshake. The configuration of connections to peers ([`peer_client_config`]) presents
//! the peer certificate and trusts only the peer CA.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
    client::danger::HandshakeSignatureValid,
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, UnixTime,
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

/// The PEM files of `--peer-ca`, `--peer-cert` and `--peer-key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTlsFiles {
    /// The CA that signs every node's peer certificate: the only one peers trust.
    pub ca: PathBuf,
    /// This node's certificate (chain), served to clients and peers and presented to peers.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl PeerTlsFiles {
    fn pair(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
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
    /// The peer CA file cannot serve as the root of trust.
    #[error("the peer CA {} cannot be used: {problem}", path.display())]
    Ca { path: PathBuf, problem: String },
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
    server(files, None)
}

/// The acceptor of a node with peer certificates: [`acceptor`] with the peer certificate,
/// asking every client for a certificate (optional); the verifier tells which of the
/// certificates presented the peer CA signed.
pub fn peer_acceptor(files: &PeerTlsFiles) -> Result<(TlsAcceptor, Arc<PeerVerifier>), TlsError> {
    let roots = Arc::new(load_roots(&files.ca)?);
    let inner = WebPkiClientVerifier::builder_with_provider(roots, Arc::new(ring_provider()))
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Ca {
            path: files.ca.clone(),
            problem: e.to_string(),
        })?;
    let verifier = Arc::new(PeerVerifier { inner });
    let acceptor = server(&files.pair(), Some(verifier.clone()))?;
    Ok((acceptor, verifier))
}

/// The client certificate check of a node with peer certificates: in the handshake, only
/// that the client holds the key of the certificate it presents (its signature); the chain,
/// against the peer CA, by [`PeerVerifier::verified`] once the handshake is done.
#[derive(Debug)]
pub struct PeerVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl PeerVerifier {
    /// Whether `certs` (a connection's client certificates, its own first) chain to the peer
    /// CA and are valid now.
    pub fn verified(&self, certs: &[CertificateDer<'_>]) -> bool {
        certs.split_first().is_some_and(|(end, intermediates)| {
            self.inner
                .verify_client_cert(end, intermediates, UnixTime::now())
                .is_ok()
        })
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    /// Any chain passes here: [`PeerVerifier::verified`] decides whether it is a peer's.
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server configuration with `files`, asking clients for certificates if `verifier`.
fn server(
    files: &TlsFiles,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certificates(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = Arc::new(ring_provider());
    let unusable = |source| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(unusable)?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(unusable)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How this node connects to its peers: presenting the peer certificate, trusting only the
/// peer CA, HTTP/1.1 (the forwarding exchange upgrades).
pub fn peer_client_config(files: &PeerTlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(&files.ca)?;
    let certs = load_certificates(&files.cert)?;
    let key = load_key(&files.key)?;
    let unusable = |source| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(unusable)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// The certificates of the CA file `path`, as roots of trust.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Ca {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    }
    Ok(roots)
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
