//! The node's own HTTP/1.1 client (hyper), used by the CLI, the tests and `cargo xtask`: one
//! request per connection ([`send`]), or several one after the other on a kept [`Connection`],
//! to an `http://host[:port][/base]` or `https://…` URL (TLS trusting
//! the system's roots and, with [`trust_ca`], a CA file: [`tls`]), and errors ([`Error`]) that
//! say what to do when the node cannot be reached; and a reader of a node's Server-Sent Events
//! streams ([`follow_events`], a topic's messages), which follows redirects.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, body::Incoming, header};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use url::Url;

pub use cella_core::encode_segment;
pub use events::{Event, EventStream, Opened, follow_events};
pub use tls::trust_ca;

mod events;
mod tls;

/// A response: status code and body text.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Why a request got no response. Each variant keeps its cause as its
/// [`source`](std::error::Error::source), which `anyhow`'s `{:#}` prints after the message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL is not an `http://host[:port][/base]` or `https://…` URL.
    #[error("the server URL `{url}` {problem}")]
    BadUrl {
        url: String,
        /// What is wrong with it, completing the sentence "the server URL `…` …".
        problem: &'static str,
        #[source]
        source: Option<url::ParseError>,
    },
    /// No connection could be opened to the server.
    #[error(
        "cannot reach the Cella server at {server}\nhint: start one with `cella serve`, or point \
         to it with --server URL (or CELLA_SERVER)"
    )]
    Unreachable {
        server: String,
        #[source]
        source: std::io::Error,
    },
    /// The CA file (`--ca`) cannot be used.
    #[error("cannot use the CA file {}: {problem}", path.display())]
    Ca {
        path: std::path::PathBuf,
        problem: String,
    },
    /// rustls refused the client's configuration (no protocol version in common with the
    /// provider).
    #[error("cannot set up TLS")]
    TlsSetup(#[source] rustls::Error),
    /// The TLS handshake failed (`hint` is empty or a `\nhint: ` line saying what to do).
    #[error("TLS handshake with {server} failed{hint}")]
    Tls {
        server: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The connection opened, but HTTP/1.1 could not be set up on it.
    #[error("HTTP handshake with {server} failed")]
    Handshake {
        server: String,
        #[source]
        source: hyper::Error,
    },
    /// The path or the token cannot be part of an HTTP request.
    #[error("cannot form the request {method} {path}")]
    InvalidRequest {
        method: Method,
        path: String,
        #[source]
        source: hyper::http::Error,
    },
    /// The request was not sent, or no response head came back (`hint` is empty or a
    /// `\nhint: ` line: an answer that is not HTTP may come from a TLS server).
    #[error("request to {server} failed{hint}")]
    Request {
        server: String,
        hint: &'static str,
        #[source]
        source: hyper::Error,
    },
    /// A redirect could not be followed.
    #[error("following a redirect from {server} failed: {problem}")]
    Redirect { server: String, problem: String },
    /// The response's body broke off.
    #[error("reading the response from {server} failed")]
    Response {
        server: String,
        #[source]
        source: hyper::Error,
    },
}

/// The problem of a URL that is not `http://…` or `https://…`.
const NOT_HTTP: &str = "must start with http:// or https:// (e.g. http://127.0.0.1:8080)";

/// Where a server URL points.
#[derive(Debug, PartialEq)]
struct Target {
    /// `https://`: speak TLS.
    tls: bool,
    host: url::Host<String>,
    /// `host:port` to connect to (port 80, or 443 with TLS, by default).
    authority: String,
    /// The base path without a trailing `/`, which request paths are appended to.
    base: String,
}

/// Splits `http[s]://host[:port][/base]` into what to connect to and the base path.
fn split_url(server: &str) -> Result<Target, Error> {
    let bad = |problem, source| Error::BadUrl {
        url: server.to_string(),
        problem,
        source,
    };
    let url = Url::parse(server).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => bad(NOT_HTTP, None),
        url::ParseError::EmptyHost => bad("has no host", None),
        e => bad("is not a valid URL (e.g. http://127.0.0.1:8080)", Some(e)),
    })?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(bad(NOT_HTTP, None)),
    };
    let (Some(host), Some(host_str)) = (url.host(), url.host_str().filter(|h| !h.is_empty()))
    else {
        return Err(bad("has no host", None));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "carries credentials, which this client does not send (use --admin-token)",
            None,
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "has a query or a fragment; request paths are appended to it",
            None,
        ));
    }
    let port = url.port().unwrap_or(if tls { 443 } else { 80 });
    Ok(Target {
        tls,
        host: host.to_owned(),
        authority: format!("{host_str}:{port}"),
        base: url.path().trim_end_matches('/').to_string(),
    })
}

/// Sends one request and reads the whole response.
pub async fn send(
    server: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Result<Reply, Error> {
    send_with_headers(server, method, path, body, token, &[]).await
}

/// Sends one request with extra `headers` (name, value) and reads the whole response.
pub async fn send_with_headers(
    server: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Reply, Error> {
    Connection::open(server)
        .await?
        .send_with(method, path, body, token, headers)
        .await
}

/// Opens a connection to `server`, sends one request and returns the response head with its
/// body still to read.
async fn exchange(
    server: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<hyper::Response<Incoming>, Error> {
    Connection::open(server)
        .await?
        .exchange(method, path, body, token, headers)
        .await
}

/// One HTTP/1.1 connection to a server, kept open for the requests sent on it one after the
/// other (a client timing the server, not the connection's set-up).
pub struct Connection {
    server: String,
    target: Target,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Connects to `server` (`http://host:port` or `https://…`).
    pub async fn open(server: &str) -> Result<Connection, Error> {
        let target = split_url(server)?;
        let stream = TcpStream::connect(&target.authority)
            .await
            .map_err(|source| Error::Unreachable {
                server: server.to_string(),
                source,
            })?;
        let sender = if target.tls {
            handshake(server, tls::connect(server, &target.host, stream).await?).await?
        } else {
            handshake(server, stream).await?
        };
        Ok(Connection {
            server: server.to_string(),
            target,
            sender,
        })
    }

    /// Sends one request on this connection and reads the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Reply, Error> {
        self.send_with(method, path, body, None, &[]).await
    }

    async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, Error> {
        let response = self.exchange(method, path, body, token, headers).await?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|source| Error::Response {
                server: self.server.clone(),
                source,
            })?
            .to_bytes();
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<Incoming>, Error> {
        let Target {
            tls,
            authority,
            base,
            ..
        } = &self.target;
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{base}{path}"))
            .header(header::HOST, authority.as_str())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|source| Error::InvalidRequest {
                method,
                path: path.to_string(),
                source,
            })?;
        // A kept connection takes the next request once the previous answer is done.
        self.sender.ready().await.map_err(|source| Error::Request {
            server: self.server.clone(),
            hint: "",
            source,
        })?;
        self.sender
            .send_request(request)
            .await
            .map_err(|source| Error::Request {
                server: self.server.clone(),
                hint: if source.is_parse() && !tls {
                    "\nhint: the answer is not HTTP: if the server serves TLS, use https://"
                } else {
                    ""
                },
                source,
            })
    }
}

/// HTTP/1.1 on `io`, whose connection task runs until the exchange ends.
async fn handshake<I>(
    server: &str,
    io: I,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|source| Error::Handshake {
            server: server.to_string(),
            source,
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(server: &str) -> String {
        split_url(server).unwrap_err().to_string()
    }

    fn split(server: &str) -> (bool, String, String) {
        let target = split_url(server).unwrap();
        (target.tls, target.authority, target.base)
    }

    #[test]
    fn urls() {
        assert_eq!(
            split("http://127.0.0.1:8080"),
            (false, "127.0.0.1:8080".into(), "".into())
        );
        assert_eq!(split("http://h/x/"), (false, "h:80".into(), "/x".into()));
        assert_eq!(
            split("http://localhost:7001/base"),
            (false, "localhost:7001".into(), "/base".into())
        );
        assert_eq!(
            split("http://[::1]:8080/"),
            (false, "[::1]:8080".into(), "".into())
        );
        assert_eq!(split("https://h/x"), (true, "h:443".into(), "/x".into()));
        assert_eq!(
            split_url("https://[::1]:8443").unwrap().host,
            url::Host::<String>::Ipv6(std::net::Ipv6Addr::LOCALHOST)
        );
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(problem("127.0.0.1:8080").contains("must start with http://"));
        assert!(problem("localhost:8080").contains("must start with http://"));
        assert!(problem("ftp://h").contains("must start with http://"));
        assert!(problem("http://").contains("has no host"));
        assert!(problem("http://u:p@h").contains("credentials"));
        assert!(problem("http://h/x?y=1").contains("query"));
        let error = split_url("http://h:99999").unwrap_err();
        assert!(error.to_string().contains("is not a valid URL"), "{error}");
        assert!(std::error::Error::source(&error).is_some());
    }

    #[tokio::test]
    async fn unreachable_keeps_its_cause_and_hint() {
        // Port 9 (discard) on loopback: nothing listens there.
        let Err(error) = send("http://127.0.0.1:9", Method::GET, "/", Vec::new(), None).await
        else {
            panic!("something answers on 127.0.0.1:9");
        };
        assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
        assert!(error.to_string().contains("hint: start one"), "{error}");
        assert!(std::error::Error::source(&error).is_some());
        let chained = format!("{:#}", anyhow::Error::from(error));
        assert!(chained.contains("at http://127.0.0.1:9"), "{chained}");
    }
}
