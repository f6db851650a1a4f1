//! TLS for clients and the limits of a node's edge, against real `cella` processes: certificates
//! from `cella cluster certs`; a node with `--tls-cert/--tls-key` serves the CLI (`--ca`,
//! `CELLA_CA`, `follow` included), the Rust client and HTTP/2 (ALPN), and refuses clients that
//! do not trust its CA with a message naming the unknown issuer; plain HTTP to the TLS port and
//! a stalled handshake are closed while the node keeps serving. On plain nodes: a request head
//! sent half and stalled (slowloris) is closed at `--header-read-timeout-secs` while others are
//! served, connections beyond `--max-connections` are closed at once while the earlier ones are
//! served, and oversized or too many headers get 431.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use cella_tests::{TestNode, cella_bin, component, output_text as text, wait_until};
use hyper::{Method, Request};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long any one expected thing may take.
const WAIT: Duration = Duration::from_secs(20);

fn cella(args: &[&str]) -> Output {
    Command::new(cella_bin())
        .args(args)
        .env_remove("CELLA_CA")
        .output()
        .expect("run cella")
}

/// The files `cella cluster certs --nodes 1` wrote.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    fn make(dir: &Path) -> Certs {
        let out = dir.join("certs");
        let done = cella(&[
            "cluster",
            "certs",
            "--out",
            out.to_str().unwrap(),
            "--nodes",
            "1",
        ]);
        assert!(done.status.success(), "{}", text(&done).1);
        assert!(
            out.join("ca-key.pem").exists(),
            "ca-key.pem was not written"
        );
        // Every certificate the CA signs is a peer's: no client certificate is made.
        assert!(!out.join("client.pem").exists());
        Certs {
            ca: out.join("ca.pem"),
            cert: out.join("node1.pem"),
            key: out.join("node1-key.pem"),
        }
    }

    /// `serve` arguments for TLS with the node's certificate.
    fn serve_args(&self) -> Vec<&str> {
        vec![
            "--tls-cert",
            self.cert.to_str().unwrap(),
            "--tls-key",
            self.key.to_str().unwrap(),
        ]
    }
}

/// Reads from `stream` until the peer closes it (or it breaks): what came, and how long it took.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the node did not close the connection");
    (got, start.elapsed())
}

/// Sends `GET path` on a kept-alive connection and reads one whole response: its status.
async fn get_on(stream: &mut TcpStream, path: &str) -> std::io::Result<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let exchange = async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
                    return status.ok_or_else(|| std::io::Error::other(head.clone()));
                }
            }
            match stream.read(&mut buf).await? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// A GET over HTTP/2 (negotiated by ALPN, checked) to `addr`, trusting `ca`: the status.
async fn h2_get(addr: &str, ca: &Path, path: &str) -> u16 {
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)] // The provider the node and the client use too.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = Request::get(format!("https://localhost{path}"))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    response.status().as_u16()
}

/// A running `cella follow`; killed on drop.
struct Following(Child);

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_clients_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let ca = certs.ca.to_str().unwrap();
    let cart = component("shopping-cart");
    // The node deploys through its own API over TLS, trusting --ca.
    let deploy = format!("cart={}", cart.display());
    let mut args = certs.serve_args();
    args.extend(["--ca", ca, "--deploy", &deploy]);
    let mut node = TestNode::start(&dir.path().join("data"), &args).unwrap();
    let url = node.url.clone();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // The deploy follows the node's first line: wait for it.
    let listed = wait_until(WAIT, || async {
        let out = cella(&["--ca", ca, "modules", "--server", &url]);
        assert!(out.status.success(), "{}", text(&out).1);
        text(&out).0.contains("\"cart\"")
    })
    .await;
    assert!(listed, "the node did not deploy `cart` over TLS");
    // CELLA_CA, and the certificate's other name.
    let localhost = url.replace("127.0.0.1", "localhost");
    let counter = component("counter");
    let out = Command::new(cella_bin())
        .env("CELLA_CA", ca)
        .args(["deploy", counter.to_str().unwrap(), "--name", "counter"])
        .args(["--server", &localhost])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("\"version\": 1"), "{}", text(&out).0);
    // The global flag after the command.
    let out = cella(&[
        "call",
        "counter/alice",
        "add",
        "41",
        "--server",
        &url,
        "--ca",
        ca,
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0.trim(), "41");

    // `cella follow` over TLS.
    let out = cella(&[
        "--ca",
        ca,
        "publish",
        "orders",
        r#"{"id": 1}"#,
        "--server",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let mut child = Command::new(cella_bin())
        .args([
            "--ca", ca, "follow", "orders", "--from", "1", "--server", &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let following = Following(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "1\t{\"id\":1}");
    drop(following);

    // The Rust client (this test alone sets this process's trust).
    cella_cli::client::trust_ca(Some(&certs.ca)).unwrap();
    let reply = node
        .request(Method::GET, "/v1/entities/counter/alice", "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json["state"]["total"], 41, "{}", reply.body);

    // HTTP/2, negotiated by ALPN.
    assert_eq!(h2_get(&node.addr(), &certs.ca, "/v1/modules").await, 200);

    // Without the CA: the unknown issuer, and what to do.
    let out = cella(&["modules", "--server", &url]);
    let stderr = text(&out).1;
    assert!(!out.status.success());
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(stderr.contains("--ca FILE"), "{stderr}");
    // A CA file that holds no certificate.
    let out = cella(&[
        "--ca",
        certs.key.to_str().unwrap(),
        "modules",
        "--server",
        &url,
    ]);
    let stderr = text(&out).1;
    assert!(stderr.contains("holds no certificate"), "{stderr}");
    // http:// to the TLS port: the answer is no HTTP.
    let plain = url.replace("https://", "http://");
    let out = cella(&["modules", "--server", &plain]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("use https://"), "{}", text(&out).1);

    // A handshake in progress (the timeout is 60 s here) does not hold up a shutdown, which
    // waits up to 10 s for the connections it serves.
    let _pending = TcpStream::connect(node.addr()).await.unwrap();
    let out = cella(&["--ca", ca, "modules", "--server", &url]);
    assert!(out.status.success(), "{}", text(&out).1);
    let started = Instant::now();
    assert!(node.terminate().unwrap(), "the node exits cleanly");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_and_stalled_handshakes_on_the_tls_port_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let ca = certs.ca.to_str().unwrap();
    let mut args = certs.serve_args();
    args.extend(["--header-read-timeout-secs", "1"]);
    let node = TestNode::start(&dir.path().join("data"), &args).unwrap();

    // A plain HTTP request: no HTTP answer (a TLS alert at most), and the connection closes.
    let mut stream = TcpStream::connect(node.addr()).await.unwrap();
    stream
        .write_all(b"GET /v1/modules HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = read_until_closed(&mut stream).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    if let Some(first) = got.first() {
        assert_eq!(*first, 0x15, "a TLS alert record");
    }

    // A connection that never starts its handshake is closed at the timeout.
    let mut stalled = TcpStream::connect(node.addr()).await.unwrap();
    let (got, took) = read_until_closed(&mut stalled).await;
    assert!(got.is_empty());
    assert!(took < Duration::from_secs(10), "closed after {took:?}");

    // The node still serves.
    let out = cella(&["--ca", ca, "modules", "--server", &node.url]);
    assert!(out.status.success(), "{}", text(&out).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_closed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &["--header-read-timeout-secs", "1"]).unwrap();
    let mut slow = TcpStream::connect(node.addr()).await.unwrap();
    slow.write_all(b"GET /v1/modules HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    // Others are served meanwhile.
    let reply = node.request(Method::GET, "/v1/modules", "").await;
    assert_eq!(reply.status, 200);
    let (got, _) = read_until_closed(&mut slow).await;
    let took = started.elapsed();
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
    let reply = node.request(Method::GET, "/v1/modules", "").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &["--max-connections", "2"]).unwrap();
    let mut first = TcpStream::connect(node.addr()).await.unwrap();
    let mut second = TcpStream::connect(node.addr()).await.unwrap();
    assert_eq!(get_on(&mut first, "/v1/modules").await.unwrap(), 200);
    assert_eq!(get_on(&mut second, "/v1/modules").await.unwrap(), 200);

    // A third: closed without an answer.
    let mut third = TcpStream::connect(node.addr()).await.unwrap();
    let _ = third
        .write_all(b"GET /v1/modules HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let (got, _) = read_until_closed(&mut third).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));

    // The earlier ones are still served.
    assert_eq!(get_on(&mut first, "/v1/modules").await.unwrap(), 200);
    assert_eq!(get_on(&mut second, "/v1/modules").await.unwrap(), 200);

    // Once one ends, a new connection gets its slot.
    drop(first);
    let addr = node.addr();
    let served = wait_until(WAIT, || async {
        let Ok(mut stream) = TcpStream::connect(&addr).await else {
            return false;
        };
        matches!(get_on(&mut stream, "/v1/modules").await, Ok(200))
    })
    .await;
    assert!(served, "no slot came free after a connection ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_431() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(
        dir.path(),
        &["--max-header-bytes", "16384", "--max-headers", "20"],
    )
    .unwrap();
    // One header too large.
    let mut stream = TcpStream::connect(node.addr()).await.unwrap();
    let big = format!(
        "GET /v1/modules HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = stream.write_all(big.as_bytes()).await;
    let (got, _) = read_until_closed(&mut stream).await;
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // Too many headers.
    let mut stream = TcpStream::connect(node.addr()).await.unwrap();
    let mut many = String::from("GET /v1/modules HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    stream.write_all(many.as_bytes()).await.unwrap();
    let (got, _) = read_until_closed(&mut stream).await;
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // Within the limits: served.
    let mut stream = TcpStream::connect(node.addr()).await.unwrap();
    assert_eq!(get_on(&mut stream, "/v1/modules").await.unwrap(), 200);
}
