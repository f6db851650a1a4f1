//! A minimal Server-Sent Events reader for the topics part of `cargo xtask bench`: opens
//! `GET /v1/topics/{topic}/events?after=N` on a plain HTTP/1.1 connection and hands every event
//! (`id: <offset>` + `data: ...`) to a channel together with the instant its bytes arrived, so
//! latencies are measured on the client's clock.

use std::time::Instant;

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

/// One event as received: its id and when it arrived.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub id: u64,
    pub at: Instant,
}

/// Connects to `addr` and follows `topic` after offset `after`; returns once the stream is open
/// (`200`), with a task that sends every event to the returned channel until the stream ends.
pub async fn follow(
    addr: &str,
    topic: &str,
    after: u64,
) -> anyhow::Result<(
    mpsc::UnboundedReceiver<Received>,
    tokio::task::JoinHandle<()>,
)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!(
        "GET /v1/topics/{topic}/events?after={after} HTTP/1.1\r\nHost: {addr}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("{addr} closed the event stream before its response head");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    if head.split_whitespace().nth(1) != Some("200") {
        bail!(
            "GET /v1/topics/{topic}/events on {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    let chunked = head.contains("transfer-encoding: chunked");
    let (tx, rx) = mpsc::unbounded_channel();
    let mut pending = raw[head_end + 4..].to_vec();
    let task = tokio::spawn(async move {
        let mut decoder = Dechunk::default();
        let mut text = String::new();
        let mut buf = [0u8; 16384];
        loop {
            let at = Instant::now();
            let mut body = Vec::new();
            let ended = if chunked {
                decoder.raw.append(&mut pending);
                decoder.take(&mut body).unwrap_or(true)
            } else {
                body.append(&mut pending);
                false
            };
            text.extend(
                String::from_utf8_lossy(&body)
                    .chars()
                    .filter(|c| *c != '\r'),
            );
            for id in take_ids(&mut text) {
                if tx.send(Received { id, at }).is_err() {
                    return;
                }
            }
            if ended {
                return;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    });
    Ok((rx, task))
}

/// An incremental decoder of a chunked body.
#[derive(Default)]
struct Dechunk {
    raw: Vec<u8>,
}

impl Dechunk {
    /// Moves the bytes of every complete chunk received into `out`; `Ok(true)` once the last
    /// (empty) chunk came.
    fn take(&mut self, out: &mut Vec<u8>) -> anyhow::Result<bool> {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return Ok(false);
            };
            let line = String::from_utf8_lossy(&self.raw[..eol]).into_owned();
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("not a chunk size: {line:?}"))?;
            if size == 0 {
                return Ok(true);
            }
            let end = eol + 2 + size;
            if self.raw.len() < end + 2 {
                return Ok(false);
            }
            out.extend_from_slice(&self.raw[eol + 2..end]);
            self.raw.drain(..end + 2);
        }
    }
}

/// Takes every complete event off the front of `text` and returns the ids of those with one.
fn take_ids(text: &mut String) -> Vec<u64> {
    let mut ids = Vec::new();
    while let Some(end) = text.find("\n\n") {
        let block: String = text.drain(..end + 2).collect();
        if let Some(id) = block
            .lines()
            .find_map(|l| l.strip_prefix("id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_events() {
        let mut d = Dechunk::default();
        d.raw
            .extend_from_slice(b"6\r\nid: 7\n\r\nb;x\r\ndata: {}\n\n:\r\n5\r\nid");
        let mut body = Vec::new();
        assert!(!d.take(&mut body).unwrap_or(true));
        assert_eq!(body, b"id: 7\ndata: {}\n\n:");
        d.raw.extend_from_slice(b": 9\r\n0\r\n\r\n");
        assert!(d.take(&mut body).unwrap_or(false));
        assert_eq!(body, b"id: 7\ndata: {}\n\n:id: 9");
        let mut text = String::from_utf8_lossy(&body).into_owned();
        text.push_str("\n\nid: 8\ndata: 1\n\nid: 10");
        assert_eq!(take_ids(&mut text), vec![7, 8]);
        assert_eq!(text, "id: 10");
        assert!(
            Dechunk {
                raw: b"zz\r\n".to_vec()
            }
            .take(&mut body)
            .is_err()
        );
    }
}
