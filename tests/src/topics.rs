//! Topic helpers for the integration tests: a request with extra headers (an `Idempotency-Key`)
//! that reports a lost connection as an error instead of panicking, and a follower of a topic's
//! Server-Sent Events stream (`GET /v1/topics/{topic}/events`) that records every event and,
//! when its stream breaks, reconnects (to the next address of its list) with `Last-Event-ID`.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long one request (or one SSE connection attempt up to its response head) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends `method path` with `body` and extra `headers` to `addr` (`host:port`) over a fresh
/// HTTP/1.1 connection (`Connection: close`): the status and the body. Any failure to connect,
/// send or read (a node being killed) is an `Err`, so callers can retry.
pub async fn request_with_headers(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| {
            format!("{method} {path} on {addr}: no answer in {REQUEST_TIMEOUT:?}")
        })??;
    let raw = String::from_utf8_lossy(&raw);
    let Some((head, rest)) = raw.split_once("\r\n\r\n") else {
        bail!("{method} {path} on {addr}: no complete response head");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status in the response head")?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, rest.to_string()));
    }
    let mut chunked = Chunked::default();
    chunked.raw.extend_from_slice(rest.as_bytes());
    let mut body = Vec::new();
    if !chunked.take(&mut body)? {
        bail!("{method} {path} on {addr}: the chunked body broke off");
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An incremental decoder of a chunked HTTP/1.1 body.
#[derive(Default)]
pub struct Chunked {
    /// Bytes received and not yet decoded.
    pub raw: Vec<u8>,
}

impl Chunked {
    /// Moves every complete chunk of `raw` into `out`; true once the last (empty) chunk came.
    pub fn take(&mut self, out: &mut Vec<u8>) -> anyhow::Result<bool> {
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

/// One Server-Sent Event: its id (the offset) and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: u64,
    pub data: String,
}

/// Takes every complete event (ended by a blank line) off the front of `text`. Comments and
/// fields other than `id` and `data` are skipped; a block without an id is no message.
pub fn parse_events(text: &mut String) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(end) = text.find("\n\n") {
        let block: String = text.drain(..end + 2).collect();
        let (mut id, mut data) = (None, Vec::new());
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = value.trim().parse::<u64>().ok(),
                "data" => data.push(value.to_string()),
                _ => {}
            }
        }
        if let Some(id) = id {
            events.push(Event {
                id,
                data: data.join("\n"),
            });
        }
    }
    events
}

/// What a follower shares with its task.
#[derive(Default)]
struct Shared {
    events: Mutex<Vec<Event>>,
    /// Connections that delivered a `200` stream.
    connections: AtomicUsize,
    /// The address each stream came from, in order.
    served_by: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// Follows topic `topic` over Server-Sent Events, recording every event it receives. The first
/// connection asks for the events after `after` with `?after=`; every later one sends the last id
/// received as `Last-Event-ID`. A stream that breaks or a connection that fails moves on to the
/// next address of the list (round robin), after a short pause when it got nothing.
pub struct Follower {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Follower {
    /// Starts following `topic` at `addrs[0]` (`host:port` each).
    pub fn start(addrs: Vec<String>, topic: &str, after: u64) -> Follower {
        let shared = Arc::new(Shared::default());
        let topic = topic.to_string();
        let task = tokio::spawn(follow(shared.clone(), addrs, topic, after));
        Follower {
            shared,
            task: Some(task),
        }
    }

    /// The events received so far.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.shared.events).clone()
    }

    /// The id of the last event received (`None` before the first).
    pub fn last_id(&self) -> Option<u64> {
        lock(&self.shared.events).last().map(|e| e.id)
    }

    /// How many streams were opened (one more per reconnection).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The addresses that served the streams, in order.
    pub fn served_by(&self) -> Vec<String> {
        lock(&self.shared.served_by).clone()
    }

    /// Stops following; returns every event received.
    pub async fn stop(mut self) -> Vec<Event> {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.events()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The follower's loop: one stream after another until stopped.
async fn follow(shared: Arc<Shared>, addrs: Vec<String>, topic: String, after: u64) {
    let mut at = 0usize;
    while !shared.stop.load(Ordering::SeqCst) {
        let addr = &addrs[at % addrs.len()];
        let last = lock(&shared.events).last().map(|e| e.id);
        let answered = stream_once(&shared, addr, &topic, after, last)
            .await
            .unwrap_or(false);
        // A stream that broke (its node probably went away) or a node that did not answer:
        // the next address, after a pause (a longer one when nothing answered).
        at += 1;
        let pause = if answered { 20 } else { 50 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Opens one stream and records its events until it ends; Ok(true) if it answered `200`.
async fn stream_once(
    shared: &Shared,
    addr: &str,
    topic: &str,
    after: u64,
    last: Option<u64>,
) -> anyhow::Result<bool> {
    let (path, resume) = match last {
        None => (format!("/v1/topics/{topic}/events?after={after}"), None),
        Some(id) => (format!("/v1/topics/{topic}/events"), Some(id)),
    };
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
    );
    if let Some(id) = resume {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    let connect = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        // The response head.
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let head_end = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                bail!("the connection closed before a response head");
            }
            raw.extend_from_slice(&buf[..n]);
        };
        anyhow::Ok((stream, raw, head_end))
    };
    let (mut stream, raw, head_end) = tokio::time::timeout(REQUEST_TIMEOUT, connect).await??;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 200 {
        return Ok(false);
    }
    shared.connections.fetch_add(1, Ordering::SeqCst);
    lock(&shared.served_by).push(addr.to_string());
    let chunked = head.contains("transfer-encoding: chunked");
    let mut decoder = Chunked::default();
    let mut text = String::new();
    let mut pending = raw[head_end + 4..].to_vec();
    let mut buf = [0u8; 16384];
    loop {
        let mut body = Vec::new();
        let ended = if chunked {
            decoder.raw.append(&mut pending);
            decoder.take(&mut body)?
        } else {
            body.append(&mut pending);
            false
        };
        // CR is never part of compact JSON data: `\r\n` line ends become `\n`.
        text.extend(
            String::from_utf8_lossy(&body)
                .chars()
                .filter(|c| *c != '\r'),
        );
        let events = parse_events(&mut text);
        if !events.is_empty() {
            lock(&shared.events).extend(events);
        }
        if ended {
            return Ok(true);
        }
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return Ok(true);
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_chunks() {
        let mut c = Chunked::default();
        c.raw
            .extend_from_slice(b"6\r\nid: 1\n\r\n9;x=y\r\ndata: 1\n\n\r\n3\r\nab");
        let mut out = Vec::new();
        assert!(!c.take(&mut out).unwrap());
        assert_eq!(out, b"id: 1\ndata: 1\n\n");
        c.raw.extend_from_slice(b"c\r\n0\r\n\r\n");
        assert!(c.take(&mut out).unwrap());
        assert_eq!(out, b"id: 1\ndata: 1\n\nabc");
        let mut text =
            "id: 1\ndata: {\"a\":1}\n\n: keep-alive\n\nid: 2\ndata: 2\n\nid: 3\nda".to_string();
        let events = parse_events(&mut text);
        assert_eq!(
            events,
            vec![
                Event {
                    id: 1,
                    data: "{\"a\":1}".into()
                },
                Event {
                    id: 2,
                    data: "2".into()
                }
            ]
        );
        assert_eq!(text, "id: 3\nda");
    }
}
