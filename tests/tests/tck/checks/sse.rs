//! A minimal Server-Sent Events client for the topic streams (`GET /v1/topics/{topic}/events`):
//! one HTTP/1.1 connection of its own, the body read as it comes (chunked or until the end), cut
//! into events (`event:`, `id:` and `data:` fields; `:` comment lines are keep-alives). Every read is
//! bounded by a deadline; dropping the [`EventStream`] disconnects.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One event of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (`None` for the default type, `message`).
    pub event: Option<String>,
    /// The `id:` field: the message's offset.
    pub id: Option<u64>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// An open event stream.
pub struct EventStream {
    what: String,
    stream: TcpStream,
    /// Bytes read and not yet decoded from the transfer coding.
    raw: Vec<u8>,
    /// The decoded body not yet cut into events.
    text: String,
    chunked: bool,
    /// The connection was closed (or the last chunk came).
    ended: bool,
}

impl EventStream {
    /// Connects to `addr` and asks for `path` (with `Last-Event-ID: last_event_id` if given);
    /// returns once the response head is in, asserting `200` and `text/event-stream`.
    pub async fn open(
        addr: &str,
        path: &str,
        last_event_id: Option<u64>,
        within: Duration,
    ) -> EventStream {
        let what = match last_event_id {
            Some(id) => format!("GET {path} (Last-Event-ID: {id})"),
            None => format!("GET {path}"),
        };
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n"
        );
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{what}: cannot connect to {addr}: {e}"));
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: cannot send the request: {e}"));
        let mut es = EventStream {
            what,
            stream,
            raw: Vec::new(),
            text: String::new(),
            chunked: false,
            ended: false,
        };
        let deadline = Instant::now() + within;
        let head_end = loop {
            if let Some(end) = es.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            assert!(
                es.fill(deadline).await,
                "{}: no response head within {} s (got {:?})",
                es.what,
                within.as_secs(),
                String::from_utf8_lossy(&es.raw)
            );
        };
        let head = String::from_utf8_lossy(&es.raw[..head_end]).into_owned();
        es.raw.drain(..head_end + 4);
        let status = head
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse::<u16>().ok());
        let header = |name: &str| {
            head.split("\r\n").skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_ascii_lowercase())
            })
        };
        if status != Some(200) {
            // Read what body there is, for the message.
            let _ = es.fill(Instant::now() + Duration::from_secs(1)).await;
            panic!(
                "{}: expected 200, got {head:?} {:?}",
                es.what,
                String::from_utf8_lossy(&es.raw)
            );
        }
        let content_type = header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{}: the content type is {content_type:?}",
            es.what
        );
        es.chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        es.decode();
        es
    }

    /// The next event, waiting for it until `deadline`; `None` if none came by then. Panics if
    /// the server closes the stream.
    pub async fn next_before(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            if let Some(event) = self.cut() {
                return Some(event);
            }
            assert!(!self.ended, "{}: the server closed the stream", self.what);
            if !self.fill(deadline).await {
                return None;
            }
            self.decode();
        }
    }

    /// The next event, which must come within `within`.
    pub async fn next(&mut self, within: Duration) -> Event {
        let deadline = Instant::now() + within;
        match self.next_before(deadline).await {
            Some(event) => event,
            None => panic!(
                "{}: no event within {} s (pending text {:?})",
                self.what,
                within.as_secs(),
                self.text
            ),
        }
    }

    /// Reads more bytes into `raw`; false if the deadline passed first.
    async fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut buf = [0u8; 8192];
        match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
            Err(_) => false,
            Ok(Ok(0)) => {
                self.ended = true;
                true
            }
            Ok(Ok(n)) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Ok(Err(e)) => panic!("{}: cannot read the stream: {e}", self.what),
        }
    }

    /// Moves whatever `raw` holds of the body into `text`, undoing the chunked coding.
    fn decode(&mut self) {
        if !self.chunked {
            self.text.push_str(&String::from_utf8_lossy(&self.raw));
            self.raw.clear();
            return;
        }
        loop {
            let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..end]).into_owned();
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .unwrap_or_else(|e| panic!("{}: chunk size {size_text:?}: {e}", self.what));
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < end + 2 + size + 2 {
                return;
            }
            let chunk = self.raw[end + 2..end + 2 + size].to_vec();
            self.raw.drain(..end + 2 + size + 2);
            // Chunks may split a UTF-8 character; the stream's text is JSON, whose multi-byte
            // characters a test does not use, so a lossy decoding per chunk is enough.
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Cuts the first complete event out of `text` (skipping blocks of comments only).
    fn cut(&mut self) -> Option<Event> {
        loop {
            let normalized = self.text.replace("\r\n", "\n");
            if normalized.len() != self.text.len() {
                self.text = normalized;
            }
            let end = self.text.find("\n\n")?;
            let block: String = self.text[..end].to_owned();
            self.text.drain(..end + 2);
            let mut id = None;
            let mut event = None;
            let mut data: Option<String> = None;
            for line in block.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => {
                        id = Some(value.parse::<u64>().unwrap_or_else(|e| {
                            panic!("{}: the id {value:?} is not an offset: {e}", self.what)
                        }))
                    }
                    "event" => event = Some(value.to_owned()),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    },
                    _ => {}
                }
            }
            if let Some(data) = data {
                return Some(Event { event, id, data });
            }
        }
    }
}
