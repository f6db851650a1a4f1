//! The TCK's view of a node: [`Api`] sends commands (also with request headers, such as
//! `Idempotency-Key`), inspection requests and other requests with headers ([`Api::raw`]), and
//! asserts on their answers, with messages that name the language and the request.

use std::time::{SystemTime, UNIX_EPOCH};

use cella_tests::{Reply, TestNode, encode_segment};
use hyper::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Suite;

/// Requests to one node, with assertions that name the language and the request.
pub struct Api<'a> {
    pub lang: &'static str,
    pub node: &'a TestNode,
}

impl<'a> Api<'a> {
    pub fn new(suite: &'a Suite) -> Self {
        Api {
            lang: suite.lang,
            node: &suite.node,
        }
    }

    fn what(&self, ty: &str, key: &str, command: &str, payload: &Value) -> String {
        format!("[{}] {ty}/{key} {command} {payload}", self.lang)
    }

    /// Sends a command with a JSON payload.
    pub async fn send(&self, ty: &str, key: &str, command: &str, payload: &Value) -> Reply {
        self.node.call(ty, key, command, &payload.to_string()).await
    }

    /// Sends a command with a JSON payload and extra request headers (`(name, value)`), over a
    /// connection of its own (see [`raw`](Api::raw)).
    pub async fn send_with_headers(
        &self,
        ty: &str,
        key: &str,
        command: &str,
        payload: &Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let path = format!(
            "/v1/entities/{}/{}/{}",
            encode_segment(ty),
            encode_segment(key),
            encode_segment(command)
        );
        let what = self.what(ty, key, command, payload);
        self.raw("POST", &path, &payload.to_string(), headers, &what)
            .await
    }

    /// Sends `method path` with `body` (JSON) and extra request headers over a connection of
    /// its own (HTTP/1.1, `Connection: close`); `what` names the request in panics.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
        what: &str,
    ) -> Reply {
        let addr = self.node.addr();
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
        let mut stream = TcpStream::connect(&addr)
            .await
            .unwrap_or_else(|e| panic!("{what}: cannot connect to {addr}: {e}"));
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{what}: cannot send the request: {e}"));
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .unwrap_or_else(|e| panic!("{what}: cannot read the response: {e}"));
        let (status, body) =
            parse_response(&raw).unwrap_or_else(|e| panic!("{what}: a malformed response: {e}"));
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Reply { status, body, json }
    }

    /// A command that must succeed; returns its reply.
    pub async fn ok(&self, ty: &str, key: &str, command: &str, payload: Value) -> Value {
        let r = self.send(ty, key, command, &payload).await;
        let what = self.what(ty, key, command, &payload);
        assert_eq!(r.status, 200, "{what}: expected a reply, got {}", r.body);
        serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{what}: the reply is not JSON ({e}): {}", r.body))
    }

    /// A command that must reply `expected`.
    pub async fn expect(
        &self,
        ty: &str,
        key: &str,
        command: &str,
        payload: Value,
        expected: Value,
    ) {
        let what = self.what(ty, key, command, &payload);
        let reply = self.ok(ty, key, command, payload).await;
        assert_eq!(reply, expected, "{what}: the reply");
    }

    /// A command that must fail with `status` and error `code`; returns the error message.
    pub async fn fails(
        &self,
        ty: &str,
        key: &str,
        command: &str,
        payload: Value,
        (status, code): (u16, &str),
    ) -> String {
        let r = self.send(ty, key, command, &payload).await;
        let what = self.what(ty, key, command, &payload);
        assert_eq!(
            (r.status, r.json["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: expected {status} `{code}`, got {}",
            r.body
        );
        r.json["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: the error has no message: {}", r.body))
            .to_owned()
    }

    /// A command that must be rejected with exactly `message`.
    pub async fn rejected(
        &self,
        ty: &str,
        key: &str,
        command: &str,
        payload: Value,
        message: &str,
    ) {
        let what = self.what(ty, key, command, &payload);
        let got = self
            .fails(ty, key, command, payload, (400, "rejected"))
            .await;
        assert_eq!(got, message, "{what}: the rejection message");
    }

    /// A command that must be a bad request.
    pub async fn bad_request(&self, ty: &str, key: &str, command: &str, payload: Value) {
        self.fails(ty, key, command, payload, (400, "bad_request"))
            .await;
    }

    /// A command name the entity does not have.
    pub async fn unknown_command(&self, ty: &str, key: &str, command: &str) {
        let what = self.what(ty, key, command, &Value::Null);
        let message = self
            .fails(ty, key, command, Value::Null, (404, "unknown_command"))
            .await;
        assert!(
            message.contains(command),
            "{what}: the message does not name the command: {message}"
        );
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self.node.request(Method::GET, path, "").await;
        assert_eq!(r.status, 200, "[{}] GET {path}: {}", self.lang, r.body);
        r.json
    }

    /// `GET /v1/entities/{ty}/{key}`: the whole inspection.
    pub async fn inspection(&self, ty: &str, key: &str) -> Value {
        let path = format!(
            "/v1/entities/{}/{}",
            encode_segment(ty),
            encode_segment(key)
        );
        self.get(&path).await
    }

    /// The inspected (state, sequence).
    pub async fn state(&self, ty: &str, key: &str) -> (Value, u64) {
        let v = self.inspection(ty, key).await;
        let seq = v["sequence"]
            .as_u64()
            .unwrap_or_else(|| panic!("[{}] {ty}/{key}: no sequence in {v}", self.lang));
        (v["state"].clone(), seq)
    }

    /// Asserts the inspected state and sequence.
    pub async fn assert_state(&self, ty: &str, key: &str, state: Value, sequence: u64) {
        assert_eq!(
            self.state(ty, key).await,
            (state, sequence),
            "[{}] {ty}/{key}: the inspected (state, sequence)",
            self.lang
        );
    }

    /// `GET /v1/entities/{ty}/{key}/journal`: the entries.
    pub async fn journal(&self, ty: &str, key: &str) -> Vec<Value> {
        let path = format!(
            "/v1/entities/{}/{}/journal",
            encode_segment(ty),
            encode_segment(key)
        );
        match self.get(&path).await["entries"].as_array() {
            Some(entries) => entries.clone(),
            None => panic!("[{}] GET {path}: no entries", self.lang),
        }
    }

    /// The journal's (seq, rendered state or events) pairs.
    pub async fn journal_payloads(&self, ty: &str, key: &str, field: &str) -> Vec<(u64, Value)> {
        self.journal(ty, key)
            .await
            .iter()
            .map(|e| (e["seq"].as_u64().unwrap_or(0), e[field].clone()))
            .collect()
    }
}

/// The status and body of a whole HTTP/1.1 response (`Content-Length`, chunked, or read to the
/// end of the connection).
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("a chunk size without an end")?;
            let size_text = String::from_utf8_lossy(&rest[..end]);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
            rest = &rest[end + 2..];
            if size == 0 {
                break;
            }
            let chunk = rest.get(..size).ok_or("a chunk shorter than its size")?;
            body.extend_from_slice(chunk);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|e| format!("content-length {length:?}: {e}"))?;
        rest.get(..length)
            .ok_or("a body shorter than its content-length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `{"actions": actions}`.
pub fn process(actions: Value) -> Value {
    json!({ "actions": actions })
}

/// A `forward` (or `call`) action argument.
pub fn target(ty: &str, key: &str, command: &str, payload: Value) -> Value {
    json!({"type": ty, "key": key, "command": command, "payload": payload})
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
