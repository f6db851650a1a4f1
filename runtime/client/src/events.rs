//! A reader of Server-Sent Events (`text/event-stream`), as a node serves a topic's messages at
//! `GET /v1/topics/{topic}/events`: [`follow_events`] opens the stream (following `307`/`308`
//! redirects to the node that serves it, as EventSource does) and [`EventStream::next`] yields
//! its events one by one as they arrive. Comments (keep-alive lines) are skipped.

use std::collections::VecDeque;

use http_body_util::BodyExt;
use hyper::{Method, body::Incoming};

use crate::{Error, Reply, exchange};

/// Redirects followed at most before giving up.
const MAX_REDIRECTS: usize = 5;

/// One event of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its `id` field (a topic message's offset), if it had one.
    pub id: Option<String>,
    /// Its `event` field: `message` unless named (a topic's `gap`).
    pub event: String,
    /// Its `data` lines, joined by `\n`.
    pub data: String,
}

/// What opening a stream gave.
pub enum Opened {
    /// A `200` stream.
    Stream(EventStream),
    /// Any other answer (an error, a redirect too many), read whole.
    Answer(Reply),
}

/// An open event stream.
pub struct EventStream {
    /// The server that serves it (after redirects), as `http[s]://host:port`.
    pub server: String,
    /// The response's headers.
    pub headers: hyper::HeaderMap,
    body: Incoming,
    /// Received text not yet ending an event.
    text: String,
    ready: VecDeque<Event>,
}

/// Opens the event stream at `path` of `server`, resuming after `last_event_id` if given (the
/// `Last-Event-ID` header), and following redirects to other nodes.
pub async fn follow_events(
    server: &str,
    path: &str,
    last_event_id: Option<&str>,
) -> Result<Opened, Error> {
    let (mut server, mut path) = (server.to_string(), path.to_string());
    let mut headers = vec![("accept", "text/event-stream")];
    if let Some(id) = last_event_id {
        headers.push(("last-event-id", id));
    }
    for _ in 0..=MAX_REDIRECTS {
        let response = exchange(&server, Method::GET, &path, Vec::new(), None, &headers).await?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        match (status, location) {
            (200, _) => {
                let (parts, body) = response.into_parts();
                return Ok(Opened::Stream(EventStream {
                    server,
                    headers: parts.headers,
                    body,
                    text: String::new(),
                    ready: VecDeque::new(),
                }));
            }
            (307 | 308, Some(location)) => {
                (server, path) = redirected(&server, &location)?;
            }
            _ => {
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|source| Error::Response {
                        server: server.clone(),
                        source,
                    })?
                    .to_bytes();
                return Ok(Opened::Answer(Reply {
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                }));
            }
        }
    }
    Err(Error::Redirect {
        server,
        problem: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

/// The server and path a redirect from `server` to `location` names.
fn redirected(server: &str, location: &str) -> Result<(String, String), Error> {
    let bad = |problem: String| Error::Redirect {
        server: server.to_string(),
        problem,
    };
    let base = url::Url::parse(server).map_err(|e| bad(format!("{server}: {e}")))?;
    let to = base
        .join(location)
        .map_err(|e| bad(format!("to `{location}`: {e}")))?;
    match (base.scheme(), to.scheme()) {
        ("http" | "https", "https") | ("http", "http") => {}
        ("https", "http") => {
            return Err(bad(format!(
                "to `{location}`, which is plain http:// (from https://: refused)"
            )));
        }
        _ => {
            return Err(bad(format!(
                "to `{location}`, which is not http:// or https://"
            )));
        }
    }
    let host = to
        .host_str()
        .ok_or_else(|| bad(format!("to `{location}`, which has no host")))?;
    let scheme = to.scheme();
    let authority = match to.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    let mut path = to.path().to_string();
    if let Some(query) = to.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok((authority, path))
}

impl EventStream {
    /// The next event; `None` when the server ended the stream. An error: the connection broke.
    pub async fn next(&mut self) -> Result<Option<Event>, Error> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|source| Error::Response {
                server: self.server.clone(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                // Lines may end in CR LF; JSON data never holds a CR of its own.
                self.text.extend(
                    String::from_utf8_lossy(&data)
                        .chars()
                        .filter(|c| *c != '\r'),
                );
                self.ready.extend(take_events(&mut self.text));
            }
        }
    }
}

/// Takes every complete event (ended by a blank line) off the front of `text`; blocks without
/// data (comments, keep-alives) are skipped.
fn take_events(text: &mut String) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(end) = text.find("\n\n") {
        let block: String = text.drain(..end + 2).collect();
        let (mut id, mut event, mut data) = (None, None, Vec::new());
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = Some(value.to_string()),
                "event" => event = Some(value.to_string()),
                "data" => data.push(value),
                _ => {}
            }
        }
        if !data.is_empty() {
            events.push(Event {
                id,
                event: event.unwrap_or_else(|| "message".into()),
                data: data.join("\n"),
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_taken_when_complete() {
        let mut text = String::from(
            "event: gap\ndata: {\"from\":1,\"to\":4}\n\n: keep-alive\n\nid: 5\ndata: {\"a\":1}\n\nid: 6\nda",
        );
        let events = take_events(&mut text);
        assert_eq!(
            events,
            [
                Event {
                    id: None,
                    event: "gap".into(),
                    data: "{\"from\":1,\"to\":4}".into()
                },
                Event {
                    id: Some("5".into()),
                    event: "message".into(),
                    data: "{\"a\":1}".into()
                }
            ]
        );
        assert_eq!(text, "id: 6\nda");
        text.push_str("ta: 1\ndata: 2\n\n");
        let events = take_events(&mut text);
        assert_eq!(events[0].data, "1\n2");
        assert!(text.is_empty());
    }

    #[test]
    fn redirects_name_another_server() {
        assert_eq!(
            redirected(
                "http://127.0.0.1:1",
                "http://127.0.0.1:2/v1/topics/t/events?after=3"
            )
            .unwrap(),
            (
                "http://127.0.0.1:2".to_string(),
                "/v1/topics/t/events?after=3".to_string()
            )
        );
        assert_eq!(
            redirected("http://h:1/base", "/v1/x").unwrap(),
            ("http://h:1".to_string(), "/v1/x".to_string())
        );
        assert_eq!(
            redirected("http://h:1", "https://h:2/x").unwrap(),
            ("https://h:2".to_string(), "/x".to_string())
        );
        assert!(redirected("https://h:1", "http://h:2/x").is_err());
        assert!(redirected("http://h:1", "ftp://h:2/x").is_err());
    }
}
