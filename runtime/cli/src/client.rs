//! A minimal HTTP/1.1 client (hyper) for the CLI: one request per connection, plain `http://`
//! URLs, and error messages that say what to do when the server cannot be reached.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A response: status code and body text.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Splits `http://host:port[/base]` into the authority and a base path.
fn split_url(server: &str) -> anyhow::Result<(String, String)> {
    let rest = server.strip_prefix("http://").ok_or_else(|| {
        anyhow::anyhow!(
            "the server URL `{server}` must start with http:// (e.g. http://127.0.0.1:8080)"
        )
    })?;
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        anyhow::bail!("the server URL `{server}` has no host");
    }
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, base.to_string()))
}

/// Sends one request and reads the whole response.
pub async fn send(
    server: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> anyhow::Result<Reply> {
    let (authority, base) = split_url(server)?;
    let stream = TcpStream::connect(&authority).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Cella server at {server}: {e}\nhint: start one with `cella serve`, or point to it with --server URL (or CELLA_SERVER)"
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| anyhow::anyhow!("HTTP handshake with {server} failed: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header(header::HOST, authority.as_str())
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = builder.body(Full::new(Bytes::from(body)))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| anyhow::anyhow!("request to {server} failed: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the response from {server} failed: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

pub use cella_node::http::encode_segment;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080".into(), "".into())
        );
        assert_eq!(
            split_url("http://h/x/").unwrap(),
            ("h:80".into(), "/x".into())
        );
        assert!(split_url("https://h").is_err());
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
