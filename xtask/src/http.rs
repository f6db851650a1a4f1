//! xtask's requests to a node (health checks, deploys, reading counters) go through the node's
//! own HTTP client, [`cella_client`], driven to completion on a small tokio runtime so
//! the tasks stay plain blocking code.

use std::{
    path::Path,
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;

/// How long one request may take, deploys of large components included.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The runtime every request runs on, made on first use.
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> anyhow::Result<&'static tokio::runtime::Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for HTTP requests")?;
    // Another thread may have made one meanwhile: either serves.
    let _ = RUNTIME.set(runtime);
    RUNTIME.get().context("no tokio runtime for HTTP requests")
}

/// Whether requests speak TLS (`https://`), set by [`use_https`].
static HTTPS: AtomicBool = AtomicBool::new(false);

/// Every later request of this process speaks TLS (`https://`), trusting the CA in the PEM
/// file `ca` (besides the system's roots).
pub fn use_https(ca: &Path) -> anyhow::Result<()> {
    cella_client::trust_ca(Some(ca)).with_context(|| format!("trusting {}", ca.display()))?;
    HTTPS.store(true, Ordering::Relaxed);
    Ok(())
}

/// The URL of the node at `addr` (`host:port`): `https://` after [`use_https`], else `http://`.
pub fn url(addr: &str) -> String {
    let scheme = if HTTPS.load(Ordering::Relaxed) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

/// Sends one request to the node at `addr` (`host:port`) and returns (status, body).
pub fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let server = url(addr);
    let method = method
        .parse()
        .with_context(|| format!("`{method}` is not an HTTP method"))?;
    let send = cella_client::send(&server, method, path, body.to_vec(), None);
    let reply = runtime()?
        .block_on(async { tokio::time::timeout(TIMEOUT, send).await })
        .with_context(|| format!("{path} on {addr}: no reply within {TIMEOUT:?}"))??;
    Ok((reply.status, reply.body))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn a_request_gets_its_reply() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0");
        let Ok(listener) = listener else {
            panic!("cannot listen: {listener:?}");
        };
        let addr = listener.local_addr().map(|a| a.to_string());
        let server = std::thread::spawn(move || -> std::io::Result<String> {
            let (mut stream, _) = listener.accept()?;
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            // The head and the 2-byte body.
            while !String::from_utf8_lossy(&seen).contains("\r\n\r\n42") {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            stream.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello")?;
            Ok(String::from_utf8_lossy(&seen).into_owned())
        });
        let addr = addr.unwrap_or_default();
        let reply = request(&addr, "PUT", "/v1/modules/x", b"42");
        assert_eq!(reply.ok(), Some((201, "hello".to_owned())));
        let seen = server.join().ok().and_then(Result::ok).unwrap_or_default();
        assert!(seen.starts_with("PUT /v1/modules/x HTTP/1.1\r\n"), "{seen}");
        assert!(request(&addr, "NOT A METHOD", "/", b"").is_err());
    }
}
