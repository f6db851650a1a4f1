//! TLS for `https://` server URLs (rustls, the `ring` provider): the certificates this process
//! trusts — the system's roots, plus the CA of [`trust_ca`] (the CLI's `--ca FILE` or
//! `CELLA_CA`) — and the handshake, whose failures say what to do (an unknown issuer asks for
//! `--ca`).

use std::{
    net::IpAddr,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::Error;

/// The trust of this process, once built: `None` until first needed or set.
static TRUST: Mutex<Option<Arc<ClientConfig>>> = Mutex::new(None);

/// Trusts the CA certificates in the PEM file `ca` (besides the system's roots) for every later
/// `https://` request of this process; `None` goes back to the system's roots alone.
pub fn trust_ca(ca: Option<&Path>) -> Result<(), Error> {
    let config = config(ca)?;
    *TRUST.lock().unwrap_or_else(PoisonError::into_inner) = Some(config);
    Ok(())
}

/// The configuration of this process's `https://` requests.
fn trusted() -> Result<Arc<ClientConfig>, Error> {
    let mut trust = TRUST.lock().unwrap_or_else(PoisonError::into_inner);
    match &*trust {
        Some(config) => Ok(config.clone()),
        None => {
            let config = config(None)?;
            *trust = Some(config.clone());
            Ok(config)
        }
    }
}

/// rustls's `ring` provider. rustls 0.23.48 deprecated it for its lack of post-quantum key
/// exchange; the `aws-lc-rs` provider has that, but needs a C and CMake build of AWS-LC, which
/// the `ring` crate (C and assembly through `cc` alone) does not.
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A client configuration trusting the system's roots and `ca`, speaking HTTP/1.1 (ALPN).
fn config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: a given CA may be all that is needed.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca {
        let bad = |problem: String| Error::Ca {
            path: path.to_path_buf(),
            problem,
        };
        let text = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("it is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(bad(
                "it holds no certificate (expected a PEM `-----BEGIN CERTIFICATE-----` block)"
                    .into(),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("a certificate in it cannot be used: {e}")))?;
        }
    }
    let provider = Arc::new(ring_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::TlsSetup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS handshake with `host` over `stream`, for the server URL `server`.
pub(crate) async fn connect(
    server: &str,
    host: &url::Host<String>,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, Error> {
    let name = match host {
        url::Host::Domain(domain) => {
            ServerName::try_from(domain.clone()).map_err(|_| Error::BadUrl {
                url: server.to_string(),
                problem: "has a host that cannot be checked against a certificate",
                source: None,
            })?
        }
        url::Host::Ipv4(ip) => ServerName::from(IpAddr::from(*ip)),
        url::Host::Ipv6(ip) => ServerName::from(IpAddr::from(*ip)),
    };
    TlsConnector::from(trusted()?)
        .connect(name, stream)
        .await
        .map_err(|source| Error::Tls {
            server: server.to_string(),
            hint: hint(&source),
            source,
        })
}

/// What to do about a failed handshake, as a `hint:` line (or nothing).
fn hint(error: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error as Tls};
    match error.get_ref().and_then(|e| e.downcast_ref::<Tls>()) {
        Some(Tls::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "\nhint: the server's certificate is signed by a CA this client does not trust: \
             pass that CA's certificate with --ca FILE (or CELLA_CA)"
        }
        Some(Tls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {
            "\nhint: the server's certificate does not name the host of the server URL: use a \
             host it names (see its subject alternative names)"
        }
        Some(Tls::InvalidMessage(_)) => {
            "\nhint: the server does not speak TLS: is it serving plain HTTP? Then use http://"
        }
        _ => "",
    }
}
